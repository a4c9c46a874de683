"""Studies: search-space files (``spaces``, ``space_parser``), Optuna's side
(``samplers``), what runs in a worker (``trials``), the end summary
(``summary``), and Ray Tune (``tune``, the only module that imports Ray)."""
