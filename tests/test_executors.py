"""Local executors: forked workers inherit what the parent warmed, keep input order, and pass user errors on."""

from __future__ import annotations

import sys

import pytest

from unirouter_cli.errors import DataError
from unirouter_cli.runs.executors import lazy_progress, run_tasks

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers are used on Linux only")
_WARMED: list[str] = []


def _state_and_square(x: int) -> tuple[list[str], int]:
    return list(_WARMED), x * x


def _refuse(x: int) -> int:
    if x == 2:
        raise DataError(f"row {x}: not a number")
    return x


@linux_only
def test_forked_workers_inherit_the_warmed_state_and_keep_input_order() -> None:
    _WARMED.clear()
    done: list[int] = []
    out = run_tasks(_state_and_square, [(i,) for i in range(6)], jobs=2, progress=done.append,
                    warm=lambda: _WARMED.append("dataset"))
    assert out == [(["dataset"], i * i) for i in range(6)]
    assert sum(done) == 6


@linux_only
def test_a_user_error_in_a_forked_worker_reaches_the_caller_unchanged() -> None:
    with pytest.raises(DataError, match="row 2: not a number"):
        run_tasks(_refuse, [(i,) for i in range(4)], jobs=2, warm=lambda: None)


def test_lazy_progress_starts_its_bar_at_the_first_advance() -> None:
    made: list[tuple[int, str]] = []
    steps: list[int] = []

    def factory(total: int, label: str):
        made.append((total, label))
        return steps.append

    advance = lazy_progress(factory, 3, "fit")
    assert made == []
    advance(1)
    advance(2)
    assert made == [(3, "fit")] and steps == [1, 2]
    assert lazy_progress(None, 3, "fit") is None
