"""Serving: a router built once and used outside the benchmark loop.

* ``build``: ``unirouter router build`` (encoder + router fitted on a table, a probe reserve);
* ``router``: ``DeployedRouter``: route prompts under a budget, list probes, add or remove LLMs;
* ``store``: the router directory on disk (checks, lock, atomic swap);
* ``server``: the HTTP endpoint.
"""
