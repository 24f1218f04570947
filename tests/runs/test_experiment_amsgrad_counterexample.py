"""The Reddi et al. counterexample study: Adam drifts to +1, AMSGrad to x* = -1.

The study's numbers are checked against a plain-Python Adam/AMSGrad written from the paper's
Algorithm (with torch's bias corrections) and the definition of the regret, not against the
code under test.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from runs.experiments import amsgrad_counterexample as study
from theory import ReddiCounterexample

BETA1, BETA2, EPS, ALPHA = 0.9, 0.99, 1e-8, 1.0


def reference_adam(coefficients: np.ndarray, x0: float, amsgrad: bool) -> np.ndarray:
    """x_0..x_T of projected Adam/AMSGrad with lr_t = ALPHA/sqrt(t + 1), one float at a time."""
    x, m, v, v_max = x0, 0.0, 0.0, 0.0
    points = [x]
    for t, g in enumerate(coefficients.tolist()):
        k = t + 1  # bias corrections use the number of updates including this one
        m = BETA1 * m + (1 - BETA1) * g
        v = BETA2 * v + (1 - BETA2) * g * g
        v_max = max(v_max, v)
        second = v_max if amsgrad else v
        lr = ALPHA / math.sqrt(t + 1)
        x -= lr / (1 - BETA1**k) * m / (math.sqrt(second) / math.sqrt(1 - BETA2**k) + EPS)
        x = min(1.0, max(-1.0, x))
        points.append(x)
    return np.asarray(points)


@pytest.fixture(scope="module")
def results():
    computed = study.compute(quick=True, seeds=(0,))
    return json.loads(json.dumps(computed))  # what results.json will hold


def _summary(results, version, method):
    (row,) = [r for r in results["summary"] if r["version"] == version and r["method"] == method]
    return row


def _run(results, version, method):
    (run,) = [r for r in results["runs"] if r["version"] == version and r["method"] == method]
    return run


def test_setup_is_the_papers():
    assert study.BETAS == (BETA1, BETA2)
    assert study.ALPHA == ALPHA
    assert study.EPS == EPS


@pytest.mark.parametrize("version", ["deterministic", "stochastic"])
def test_adam_ends_near_plus_one_and_amsgrad_near_minus_one(results, version):
    adam, ams = _summary(results, version, "Adam"), _summary(results, version, "AMSGrad")
    assert adam["final_x"]["mean"] > 0.8
    assert adam["tail_mean_x"]["mean"] > 0.8
    assert ams["final_x"]["mean"] < -0.5
    assert ams["tail_mean_x"]["mean"] < -0.5
    # on average AMSGrad plays closer to the optimum
    assert ams["average_suboptimality"]["mean"] < adam["average_suboptimality"]["mean"]


def test_deterministic_average_regret_of_amsgrad_below_adams(results):
    adam = _summary(results, "deterministic", "Adam")
    ams = _summary(results, "deterministic", "AMSGrad")
    assert ams["average_regret"]["mean"] < adam["average_regret"]["mean"]
    curve = _run(results, "deterministic", "AMSGrad")["curve_average_regret"]["value"]
    assert curve[-1] < max(curve)  # AMSGrad's R_t/t comes down


@pytest.mark.parametrize("version", ["deterministic", "stochastic"])
@pytest.mark.parametrize("method", ["Adam", "AMSGrad"])
def test_numbers_match_an_independent_reference(results, version, method):
    steps = results["setup"]["steps"]
    problem = ReddiCounterexample(stochastic=version == "stochastic", seed=0)
    c = np.array([problem.coefficient(t) for t in range(steps)])
    if version == "deterministic":  # the paper's t mod 101 = 1 with t = 1, 2, ...
        paper_t = np.arange(1, steps + 1)
        np.testing.assert_array_equal(c, np.where(paper_t % 101 == 1, 1010.0, -10.0))
    points = reference_adam(c, float(problem.x0[0]), amsgrad=method == "AMSGrad")
    played = points[:-1]
    regret = np.cumsum(c * played) + np.abs(np.cumsum(c))  # min over [-1, 1] of s x is -|s|
    run = _run(results, version, method)
    tail = round(0.1 * steps)
    assert run["x0"] == pytest.approx(points[0], abs=1e-15)
    assert run["final_x"] == pytest.approx(points[-1], abs=1e-7)
    assert run["tail_mean_x"] == pytest.approx(points[-tail:].mean(), abs=1e-7)
    assert run["average_regret"] == pytest.approx(regret[-1] / steps, rel=1e-6, abs=1e-9)
    mean_c = 10 / 101 if version == "deterministic" else 0.01 * 1010 - 0.99 * 10
    expected = np.mean(mean_c * (played + 1))
    assert run["average_suboptimality"] == pytest.approx(expected, rel=1e-6)


def test_batched_runs_equal_separate_runs():
    """Several (version, seed) runs as coordinates of one parameter = separate scalar runs."""
    problems = [
        ReddiCounterexample(stochastic=stochastic, seed=seed)
        for stochastic in (False, True)
        for seed in (0, 3)
    ]
    points = study.run_method(problems, amsgrad=True, steps=300).numpy()
    for column, problem in enumerate(problems):
        c = np.array([problem.coefficient(t) for t in range(300)])
        expected = reference_adam(c, float(problem.x0[0]), amsgrad=True)
        np.testing.assert_allclose(points[:, column], expected, rtol=0, atol=1e-12)


def _numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_every_number_is_finite(results):
    numbers = list(_numbers(results))
    assert numbers
    assert all(math.isfinite(x) for x in numbers)


def test_report_writes_a_table_and_a_png(results, tmp_path):
    markdown, figures = study.report(results, tmp_path / "figures")
    assert "| version | method |" in markdown
    assert markdown.count("\n| deterministic |") == 2
    assert "Adam ends at x = " in markdown
    assert figures
    for figure in figures:
        assert figure.parent == tmp_path / "figures"
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_are_short(results):
    for run in results["runs"]:
        assert len(run["curve_x"]["x"]) <= 2000
        assert len(run["curve_average_regret"]["value"]) <= 2000
