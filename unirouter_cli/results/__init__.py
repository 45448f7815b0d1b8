"""Results of a run directory: statistics, reports and figures.

* ``stats``: 95% intervals over trials and paired sign tests;
* ``runfiles``: reading a run's tables and config;
* ``report`` (+ ``sweep``, ``html``): report.md, summary.csv/json, report.html;
* ``plot`` (+ ``curves``, ``style``, ``plot_probes``): the figures under plots/.
"""
