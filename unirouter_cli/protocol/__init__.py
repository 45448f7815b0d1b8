"""The evaluation protocol, trial by trial (no file I/O):

* ``universe``: the prompts and LLMs trials draw from (fixed per dataset), seeded trial splits;
* ``probes``: probe strategies (which validation prompts a new LLM answers);
* ``trial``: fitting the routers of one trial and evaluating them on a pool of LLMs;
* ``metrics``: exact deferral curves and the metrics read off them (Area, Area(50%), QNC, ...).
"""
