"""Serving: a router built once and used outside the benchmark loop.

* ``build``: ``unirouter router build`` (encoder + router fitted on a table, a probe reserve);
* ``router``: ``DeployedRouter``: route prompts (``routing``: lambda, mean_cost, min_quality, the max_cost cap),
  list probes, add or remove LLMs;
* ``store``: the router directory on disk (checks, lock, atomic swap);
* ``server``: ``unirouter router serve``, the HTTP server (extra ``serve``: Starlette, uvicorn, httpx, pydantic):
  ``app`` (endpoints), ``schemas`` (request bodies), ``guard`` (connection and request limits), ``upstream``
  (forwarding to OpenAI-compatible servers), ``live`` (reload on change), ``observe`` (access log, metrics).
  Only ``server`` and the modules it imports load those libraries.
"""
