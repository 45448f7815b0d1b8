"""Seconds to profile one new LLM adaptively with 100 probes on a built foldin router (mmlu-pro, bundled).

Builds the router, removes one LLM that answered every reserve prompt, then times ``router.profile(...)``: ten
batches of ``next(10)`` and ``answer(...)`` with the held-out LLM's real answers, and ``done()``. Prints the
median of five profiles as JSON. RANK fixes foldin's rank (default: chosen by the build, as users get it).
Usage, from the repository root: .venv/bin/python benchmarks/adaptive_profile.py [DATASET] [HELD_OUT|-] [RANK]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> int:
    from unirouter_cli.runs.rundir import one_thread
    from unirouter_cli.serving.build import build

    one_thread()
    dataset = sys.argv[1] if len(sys.argv) > 1 else "mmlu-pro"
    t0 = time.perf_counter()
    rank = int(sys.argv[3]) if len(sys.argv) > 3 else None
    base = build(dataset, "foldin", seed=0, params={"rank": rank} if rank else None)
    complete = [m for j, m in enumerate(base.models) if not np.isnan(base.errors[:, j]).any()]
    # (default: an LLM that answered every reserve prompt)
    held = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else complete[0]
    truth = dict(zip(base.reserve_ids.astype(str), 1.0 - base.errors[:, base.models.index(held)].astype(float),
                     strict=True))
    base.remove_llm(held)
    build_s = time.perf_counter() - t0
    runs = []
    for _ in range(5):
        r = base  # done() adds the LLM: remove it again after timing
        t = time.perf_counter()
        s = r.profile("new-llm", 1.0)
        while s.answered < 100:
            ids = list(s.next(10)["prompt_id"])
            s.answer({i: truth[i] for i in ids})
        s.done()
        runs.append(time.perf_counter() - t)
        r.remove_llm("new-llm")
    print(json.dumps({"dataset": dataset, "held_out": held, "reserve": int(len(base.reserve_ids)),
                      "ensemble": base.router.hyperparams_.get("ensemble"), "build_seconds": round(build_s, 2),
                      "profile_100_seconds_median": round(float(np.median(runs)), 3),
                      "profile_100_seconds": [round(x, 3) for x in runs]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
