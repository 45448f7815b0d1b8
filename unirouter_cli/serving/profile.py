"""Adaptive profiling of a new LLM for a built foldin router: ask a batch, read its answers, ask the next.

``router.profile(name, cost)`` opens a ``ProfileSession``: ``next(n)`` lists the next ``n`` probe prompts
(prompt_id, text) chosen from the answers given so far (protocol/adaptive.py: batched V-optimal design under the
fold-in's posterior), ``answer(...)`` records scores in [0, 1] for them, and ``done()`` adds the LLM with the
answers it gave (``add_llm``; nothing is retrained). The user pays only for the probes asked.

Only a foldin router can be profiled adaptively: its fold-in is a likelihood fit, which stays valid when each probe
depends on earlier answers. The plain means of K-means, K-NN and ZeroRouter would be biased by such a design.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from ..protocol.adaptive import BATCH, DesignModel, Session


class ProfileSession:
    """One new LLM's adaptive profile on a built router (see the module docstring)."""

    def __init__(self, deployed: Any, name: str, cost: float) -> None:
        from ..routers.factor import FoldInRouter

        if not isinstance(deployed.router, FoldInRouter):
            raise ConfigError(f"adaptive profiling needs a foldin router (its posterior chooses the probes); this "
                              f"router is {getattr(deployed.router, 'name', '?')}: build one with --router foldin, "
                              "or use `router probes` with a fixed strategy")
        self.deployed = deployed
        self.name, self.cost = deployed.check_new_llm(name, cost)
        self.session = Session(DesignModel.from_foldin(deployed.router, deployed.X_reserve))
        self.ids = pd.Index(deployed.reserve_ids.astype(str))
        self.proposed = np.zeros(0, dtype=np.int64)

    @property
    def answered(self) -> int:
        return int(len(self.session.asked))

    def next(self, n: int = BATCH) -> pd.DataFrame:
        """The next ``n`` probe prompts (prompt_id, text; text empty when the table shipped none)."""
        n = int(n)
        left = len(self.ids) - self.answered
        if not 1 <= n <= left:
            raise ConfigError(f"-n {n}: expected between 1 and the {left} probe prompts not yet answered")
        self.proposed = self.session.next(n)
        texts = self.deployed.reserve_texts
        return pd.DataFrame({"prompt_id": self.ids[self.proposed].to_numpy(dtype=str),
                             "text": [texts[i] for i in self.proposed] if texts is not None else [""] * n})

    def answer(self, scores: Mapping[str, float] | pd.DataFrame) -> None:
        """Record scores in [0, 1] (1 = right) by prompt id: a mapping or a frame with prompt_id, score."""
        if isinstance(scores, pd.DataFrame):
            if not {"prompt_id", "score"} <= set(scores.columns):
                raise DataError("answers: expected columns prompt_id, score")
            scores = dict(zip(scores["prompt_id"].astype(str), scores["score"], strict=True))
        ids = [str(k) for k in scores]
        pos = self.ids.get_indexer(ids)
        if (pos < 0).any():
            raise DataError(f"answers: prompt_id {ids[int(np.flatnonzero(pos < 0)[0])]!r} is not a probe prompt "
                            "of this router")
        try:
            s = np.array([float(v) for v in scores.values()], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise DataError(f"answers: a score is not a number ({e})") from None
        if np.isnan(s).any():
            raise DataError(f"answers: prompt_id {ids[int(np.flatnonzero(np.isnan(s))[0])]!r}: score missing")
        self.session.answer(pos, 1.0 - s)

    def done(self) -> dict:
        """Add the LLM to the router with the answers given (the router's own checks apply: at least its
        minimum number of answers); returns its card entry. Save the router to keep it."""
        asked = self.session.asked
        answers = pd.DataFrame({"prompt_id": self.ids[asked].to_numpy(dtype=str),
                                "score": 1.0 - self.session.errors[asked]})
        entry = self.deployed.add_llm(self.name, self.cost, answers)
        entry["probes"] = "adaptive"
        return entry
