"""Pure analyses of trained models and of their per-image outcomes (numpy, scipy, torch; no I/O)."""
