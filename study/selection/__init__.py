"""Choosing models: non-dominated sorting kernels (``pareto``), which trials
count and the champion (``choose``), and a study's decisions joined up for the
commands (``choice``)."""
