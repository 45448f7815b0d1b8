"""Run directories: many trials on disk, resumable.

* ``config``: the run config schema shared by ``fit`` options, presets and config.yaml;
* ``rundir``: the run directory (layout, lock, per-trial states), ``fit_run`` and ``evaluate_run``;
* ``executors``: local processes, joblib or dask, one thread per task;
* ``merge``: per-trial evaluation files merged into the run's tables;
* ``reproduce``: the presets in configs/ run end to end.
"""
