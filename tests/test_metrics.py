"""Deferral curves and metrics: exactness against brute force, invariants (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unirouter_cli.protocol.metrics import Curve, aiq, area, cost_norm, curve_metrics, deferral_curve, qnc, upper_hull


def _brute(gamma, score, cost, lam):
    """Route every prompt by argmin gamma + lam * cost; ties -> cheaper, then lower gamma."""
    n, m = gamma.shape
    val = gamma + lam * cost
    c, q = 0.0, 0.0
    for i in range(n):
        order = sorted(range(m), key=lambda j: (val[i, j], cost[i, j], gamma[i, j]))
        j = order[0]
        c += cost[i, j]
        q += score[i, j]
    return c / n / cost.max(axis=1).mean(), q / n


def _tables(seed, n, m, per_query):
    rng = np.random.default_rng(seed)
    gamma = rng.random((n, m))
    score = (rng.random((n, m)) < 0.5).astype(float)
    cost = rng.uniform(0.1, 2.0, (n, m)) if per_query else np.tile(rng.uniform(0.1, 2.0, m), (n, 1))
    return gamma, score, cost


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 12), m=st.integers(1, 6), per_query=st.booleans())
def test_curve_matches_brute_force_lambda_sweep(seed, n, m, per_query):
    gamma, score, cost = _tables(seed, n, m, per_query)
    curve = deferral_curve(gamma, score, cost)
    lams = curve.lambdas[1:]
    probes = [lams[0] * 2 + 1 if len(lams) else 1e9]
    probes += [(a + b) / 2 for a, b in zip(lams[:-1], lams[1:], strict=True)]
    probes += [lams[-1] / 2] if len(lams) else []
    assert len(probes) == len(curve.cost)
    unit = cost / cost_norm(cost)  # curve lambdas are per unit of normalised cost
    for k, lam in enumerate(probes):
        c, q = _brute(gamma, score, unit, lam)
        assert curve.cost[k] == pytest.approx(c, abs=1e-9)
        assert curve.quality[k] == pytest.approx(q, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 40), m=st.integers(2, 8), per_query=st.booleans(),
       scale=st.floats(1e-4, 1e4))
def test_invariants(seed, n, m, per_query, scale):
    gamma, score, cost = _tables(seed, n, m, per_query)
    curve = deferral_curve(gamma, score, cost)
    assert np.all(np.diff(curve.cost) > 0), "cost strictly increases along the curve"
    assert curve.cost.min() >= 0 and curve.cost.max() <= 1 + 1e-12
    met = curve_metrics(curve, score, cost)
    assert 0 <= met["area"] <= 1 and 0 <= met["area_50"] <= 0.5 and 0 <= met["qnc"] <= 1
    assert 0 <= met["aiq"] <= 1 and met["aiq"] >= met["area"] - 1e-12
    scaled = curve_metrics(deferral_curve(gamma, score, cost * scale), score, cost * scale)
    for k in ("area", "area_50", "qnc", "aiq"):
        assert scaled[k] == pytest.approx(met[k], abs=1e-9)
    oracle_curve = deferral_curve(1 - score, score, cost)
    om = curve_metrics(oracle_curve, score, cost)
    assert om["area"] >= met["area"] - 1e-9 and om["qnc"] <= met["qnc"] + 1e-9


def test_grouped_rows_equal_ungrouped():
    rng = np.random.default_rng(3)
    K, n, m = 5, 400, 7
    psi = rng.random((K, m))
    gamma = psi[rng.integers(0, K, n)]
    score = (rng.random((n, m)) < 0.6).astype(float)
    cost = np.tile(rng.uniform(0.1, 3, m), (n, 1))
    a = deferral_curve(gamma, score, cost)
    # the same table with per-row noise-free but distinct costs disables grouping
    b = deferral_curve(gamma, score, cost * (1 + 0 * rng.random((n, 1))) + 0.0)
    np.testing.assert_allclose(a.cost, b.cost)
    ungrouped = deferral_curve(gamma[:60], score[:60], cost[:60])  # below the grouping threshold
    assert len(ungrouped.cost) >= 1
    # exactness of the grouped path against brute force
    for k, lam in enumerate([1e9] + [(x + y) / 2 for x, y in zip(a.lambdas[1:-1], a.lambdas[2:], strict=True)]):
        c, q = _brute(gamma, score, cost / cost_norm(cost), lam)
        assert a.cost[k] == pytest.approx(c) and a.quality[k] == pytest.approx(q)


def test_oracle_curve_end_points():
    score = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 1]], dtype=float)
    cost = np.tile([1.0, 2.0, 4.0], (3, 1))
    curve = deferral_curve(1 - score, score, cost)
    # lambda -> 0+: cheapest correct LLM where one exists, else the cheapest
    assert curve.quality[-1] == pytest.approx(2 / 3)
    assert curve.cost[-1] == pytest.approx((1 + 1 + 2) / 3 / 4)
    assert curve.cost[0] == pytest.approx(1 / 4) and curve.quality[0] == pytest.approx(1 / 3)


def test_area_and_qnc_conventions():
    c = Curve(np.array([0.2, 0.6]), np.array([0.5, 0.7]), np.array([np.inf, 1.0]))
    # flat 0.5 on [0, .2], linear to .7 on [.2, .6], flat .7 on [.6, 1]
    assert area(c) == pytest.approx(0.2 * 0.5 + 0.4 * 0.6 + 0.4 * 0.7)
    assert area(c, 0.5) == pytest.approx(0.2 * 0.5 + 0.3 * (0.5 + 0.65) / 2)
    assert qnc(c, 0.6) == (pytest.approx(0.4), True)
    assert qnc(c, 0.5) == (pytest.approx(0.2), True)
    assert qnc(c, 0.8) == (1.0, False)


def test_upper_hull_is_concave_and_non_decreasing():
    x = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.9])
    y = np.array([0.1, 0.5, 0.45, 0.6, 0.62, 0.61])
    hx, hy = upper_hull(x, y)
    assert np.all(np.diff(hy) >= 0)
    slopes = np.diff(hy) / np.diff(hx)
    assert np.all(np.diff(slopes) <= 1e-12)
    assert aiq(Curve(x, y, x)) >= area(Curve(x, y, x))


def test_extreme_costs_are_scaled_before_arithmetic():
    """Costs near the float64 limit give the same curve as the same costs scaled down."""
    from unirouter_cli.protocol.metrics import curve_metrics, deferral_curve

    rng = np.random.default_rng(3)
    gamma = rng.random((50, 4))
    score = (rng.random((50, 4)) < 0.6).astype(float)
    cost = np.broadcast_to(np.array([1.0, 2.0, 5.0, 9.0]), (50, 4))
    big = cost * 1e307  # 9e307: sums of such numbers overflow
    a, b = deferral_curve(gamma, score, cost), deferral_curve(gamma, score, big)
    np.testing.assert_allclose(a.cost, b.cost)
    np.testing.assert_allclose(a.quality, b.quality)
    ma, mb = curve_metrics(a, score, cost), curve_metrics(b, score, big)
    assert np.isfinite(mb["qnc"]) and mb["qnc"] == pytest.approx(ma["qnc"])
    assert mb["area"] == pytest.approx(ma["area"])
