"""The `quadratic` study: GD / heavy ball / Nesterov certified on quadratics.

References are written independently of the code under test: gradient descent from the
eigen-decomposition of A (x_k - x* = V diag((1 - ηλ)^k) V^T (x0 - x*)), heavy ball and Nesterov
from hand-written loops with Polyak's and Nesterov's parameters, and the rates and implied gap
bounds from their textbook closed forms.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from runs.experiments import quadratic
from theory import Quadratic

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def results() -> dict:
    return quadratic.compute(quick=True, seeds=SEEDS)


def _row(results: dict, kappa: float, method: str) -> dict:
    (row,) = [r for r in results["rows"] if r["kappa"] == kappa and r["method"] == method]
    return row


def _curve(results: dict, kappa: float, method: str) -> dict:
    (panel,) = [p for p in results["panels"] if p["kappa"] == kappa]
    (curve,) = [c for c in panel["curves"] if c["method"] == method]
    return curve


def _problem(results: dict, kappa: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, x0, x*) of the study's problem, as numpy arrays."""
    problem = Quadratic.from_condition_number(results["setup"]["dim"], kappa, seed=seed)
    return problem.A.numpy(), problem.x0.numpy(), problem.x_star.numpy()


def _gap(A: np.ndarray, error: np.ndarray) -> float:
    return 0.5 * float(error @ A @ error)


def _walk_numbers(value, path="results"):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_numbers(item, f"{path}[{index}]")
    elif isinstance(value, float):
        yield path, value


def test_every_number_is_finite_and_json_ready(results):
    bad = [path for path, value in _walk_numbers(results) if not math.isfinite(value)]
    assert bad == []
    json.dumps(results, allow_nan=False)


def test_rows_cover_every_kappa_and_method(results):
    pairs = {(r["kappa"], r["method"]) for r in results["rows"]}
    assert pairs == {(k, m.key) for k in (10.0, 100.0, 1000.0) for m in quadratic.METHODS}


@pytest.mark.parametrize("seed_index", range(len(SEEDS)))
@pytest.mark.parametrize(("method", "step"), [("gd_0.5", 0.5), ("gd_1", 1.0), ("gd_1.9", 1.9)])
def test_gradient_descent_final_gap_matches_eigen_decomposition(results, seed_index, method, step):
    kappa = 1000.0  # far above the float64 floor after the quick run's steps
    A, x0, x_star = _problem(results, kappa, SEEDS[seed_index])
    eigenvalues, vectors = np.linalg.eigh(A)
    row = _row(results, kappa, method)
    steps = row["steps"]
    lr = step / eigenvalues[-1]
    error = vectors @ ((1 - lr * eigenvalues) ** steps * (vectors.T @ (x0 - x_star)))
    assert row["per_seed"][seed_index]["final_gap"] == pytest.approx(_gap(A, error), rel=1e-6)
    assert row["lr_times_L"] == pytest.approx(step, rel=1e-12)
    assert row["momentum"] == 0.0


def test_gradient_descent_above_two_over_L_diverges_as_the_top_mode(results):
    for kappa in (10.0, 100.0, 1000.0):
        row = _row(results, kappa, "gd_2.1")
        A, x0, x_star = _problem(results, kappa, SEEDS[0])
        eigenvalues, vectors = np.linalg.eigh(A)
        lr = 2.1 / eigenvalues[-1]
        steps = row["steps"]
        error = vectors @ ((1 - lr * eigenvalues) ** steps * (vectors.T @ (x0 - x_star)))
        assert row["per_seed"][0]["final_gap"] == pytest.approx(_gap(A, error), rel=1e-6)
        assert row["certified"] is True
        assert row["held"] is True  # the lower (divergence) bound held at every step
        assert row["final_gap"] > 1e15 * row["initial_gap"]
        assert row["fitted_rate"] >= 1.21 * (1 - 1e-6)
        assert row["theoretical_rate"] == pytest.approx(1.1**2, rel=1e-12)
        # the implied gap lower bound: mu/2 (|1 - 2.1|^k |<v_max, x0 - x*>|)^2
        curve = _curve(results, kappa, "gd_2.1")
        k = np.asarray(curve["k"], dtype=float)
        top = abs(float(vectors[:, -1] @ (x0 - x_star)))
        expected = eigenvalues[0] / 2 * (1.1**k * top) ** 2
        np.testing.assert_allclose(curve["gap_bound"], expected, rtol=1e-8)


def test_gradient_descent_implied_gap_bound_is_the_textbook_one(results):
    kappa = 10.0
    A, x0, x_star = _problem(results, kappa, SEEDS[0])
    eigenvalues = np.linalg.eigvalsh(A)
    L, mu = eigenvalues[-1], eigenvalues[0]
    for method, step in (("gd_0.5", 0.5), ("gd_1", 1.0)):
        curve = _curve(results, kappa, method)
        k = np.asarray(curve["k"], dtype=float)
        dist0_sq = float((x0 - x_star) @ (x0 - x_star))
        expected = L / 2 * (1 - step / L * mu) ** k * dist0_sq  # Garrigos & Gower Thm 3.6
        np.testing.assert_allclose(curve["gap_bound"], expected, rtol=1e-8)


def test_heavy_ball_matches_a_hand_written_polyak_loop(results):
    kappa = 100.0
    A, x0, x_star = _problem(results, kappa, SEEDS[0])
    eigenvalues = np.linalg.eigvalsh(A)
    L, mu = eigenvalues[-1], eigenvalues[0]
    alpha = 4 / (math.sqrt(L) + math.sqrt(mu)) ** 2
    beta = ((math.sqrt(L / mu) - 1) / (math.sqrt(L / mu) + 1)) ** 2
    row = _row(results, kappa, "heavy_ball")
    assert row["lr_times_L"] == pytest.approx(alpha * L, rel=1e-12)
    assert row["momentum"] == pytest.approx(beta, rel=1e-12)
    x, previous, gaps = x0.copy(), x0.copy(), [_gap(A, x0 - x_star)]
    for _ in range(row["steps"]):
        x, previous = x - alpha * A @ (x - x_star) + beta * (x - previous), x
        gaps.append(_gap(A, x - x_star))
    curve = _curve(results, kappa, "heavy_ball")
    reference = np.asarray(gaps)[curve["k"]]
    above = reference > 1e-8 * reference[0]
    assert above.sum() > 10
    np.testing.assert_allclose(np.asarray(curve["gap"])[above], reference[above], rtol=1e-6)


def test_nesterov_matches_a_hand_written_loop_at_the_gradient_step_points(results):
    kappa = 100.0
    A, x0, x_star = _problem(results, kappa, SEEDS[0])
    eigenvalues = np.linalg.eigvalsh(A)
    L, mu = eigenvalues[-1], eigenvalues[0]
    beta = (math.sqrt(L / mu) - 1) / (math.sqrt(L / mu) + 1)
    row = _row(results, kappa, "nesterov")
    assert row["nesterov"] is True
    assert row["momentum"] == pytest.approx(beta, rel=1e-12)
    # Nesterov (2004) scheme III: x_{k+1} = y_k - grad f(y_k)/L,
    # y_{k+1} = x_{k+1} + beta (x_{k+1} - x_k), y_0 = x_0
    x, y, gaps = x0.copy(), x0.copy(), [_gap(A, x0 - x_star)]
    for _ in range(row["steps"]):
        x_next = y - A @ (y - x_star) / L
        y, x = x_next + beta * (x_next - x), x_next
        gaps.append(_gap(A, x - x_star))
    curve = _curve(results, kappa, "nesterov")
    reference = np.asarray(gaps)[curve["k"]]
    above = reference > 1e-8 * reference[0]
    assert above.sum() > 10
    np.testing.assert_allclose(np.asarray(curve["gap"])[above], reference[above], rtol=1e-6)


@pytest.mark.parametrize("kappa", [10.0, 100.0, 1000.0])
def test_theoretical_rates_are_the_textbook_ones(results, kappa):
    root = math.sqrt(kappa)
    q = (root - 1) / (root + 1)
    expected = {
        "gd_0.5": 1 - 0.5 / kappa,  # (1 - eta mu) on ||x - x*||^2
        "gd_1": 1 - 1 / kappa,
        "gd_1.9": max(abs(1 - 1.9 / kappa), 0.9) ** 2,  # exact rho(I - eta A)^2
        "gd_2.1": 1.1**2,
        "heavy_ball": q**2,  # q per step of ||x - x*||
        "nesterov": 1 - 1 / root,
    }
    for method, rate in expected.items():
        assert _row(results, kappa, method)["theoretical_rate"] == pytest.approx(rate, rel=1e-9)


def test_certificates_hold_and_rates_agree(results):
    for row in results["rows"]:
        assert row["certified"] is True, row  # 1.9/L by Nesterov (2004) Thm 2.1.14
        assert row["held"] is True, row
        assert row["first_violation"] is None
        assert row["rate_consistent"] is True, row
        assert row["final_gap_bound"] is not None
    for row in results["rows"]:
        if row["method"].startswith("gd_") and row["method"] != "gd_2.1":
            # a sum of decaying exponentials decays no slower than its slowest mode
            assert row["fitted_rate"] <= row["theoretical_rate"] * (1 + 1e-9)
            # for eta <= 1/L: the gap decays like (1 - eta mu)^(2k), faster than the bound
            if row["method"] != "gd_1.9" and row["kappa"] == 1000.0:
                ratio = math.log(row["fitted_rate"]) / math.log(row["theoretical_rate"])
                assert ratio == pytest.approx(2.0, rel=0.02)


def test_stored_curves_respect_the_implied_gap_bounds(results):
    for panel in results["panels"]:
        floor = panel["gap_floor"]
        for curve in panel["curves"]:
            if curve["gap_bound"] is None:
                continue
            gap, bound = np.asarray(curve["gap"]), np.asarray(curve["gap_bound"])
            if curve["method"] == "gd_2.1":
                assert np.all(gap >= bound * (1 - 1e-9) - floor)
            else:
                assert np.all(gap <= bound * (1 + 1e-9) + floor)


def test_seeds_aggregate_and_runs_are_deterministic(results):
    single = quadratic.compute(quick=True, seeds=(SEEDS[1],))
    for row, alone in zip(results["rows"], single["rows"]):
        assert row["per_seed"][1] == alone["per_seed"][0]
        finals = [record["final_gap"] for record in row["per_seed"]]
        assert row["final_gap"] == pytest.approx(np.mean(finals), rel=1e-12)
        rates = [record["fitted_rate"] for record in row["per_seed"]]
        assert row["fitted_rate"] == pytest.approx(np.mean(rates), rel=1e-12)


def test_report_writes_a_table_and_a_png_from_json(results, tmp_path):
    reloaded = json.loads(json.dumps(results))
    markdown, figures = quadratic.report(reloaded, tmp_path / "figures")
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table_rows) == 1 + 18  # header + one row per (kappa, method)
    assert "|---" in markdown
    assert "All 18 certificates held" in markdown
    assert len(figures) == 1
    figure = figures[0]
    assert figure.parent == tmp_path / "figures"
    header = figure.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert (width, height) == (13 * 110, 4 * 110)


def test_unknown_method_key_is_refused():
    problem = Quadratic.from_condition_number(3, 10.0, seed=0)
    with pytest.raises(ValueError, match="key must be one of"):
        quadratic.method_setup("adam", problem)
