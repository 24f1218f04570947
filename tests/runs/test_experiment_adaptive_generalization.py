"""The Wilson et al. (2017, §3.3) study: GD/SGD generalise, AdaGrad/RMSprop/Adam do not.

The limits are written here independently from the paper: the minimum-norm interpolant
X^T (X X^T)^{-1} y (by a linear solve, not theory's least-squares solver) and the ray
sign(X^T y) on which Lemma 3.1 keeps every adaptive iterate started at 0.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from runs.experiments import adaptive_generalization as study
from theory import WilsonSeparable


@pytest.fixture(scope="module")
def results():
    computed = study.compute(quick=True, seeds=(0,))
    return json.loads(json.dumps(computed))  # what results.json will hold


def _summary(results, method):
    (row,) = [r for r in results["summary"] if r["method"] == method]
    return row


@pytest.mark.parametrize("method", study.METHODS)
def test_every_method_reaches_near_zero_training_loss(results, method):
    assert _summary(results, method)["train_loss"]["mean"] < 1e-6


@pytest.mark.parametrize("method", ["GD", "SGD"])
def test_gd_and_sgd_have_zero_test_error(results, method):
    assert _summary(results, method)["test_error"]["mean"] == 0.0
    assert _summary(results, method)["distance_to_limit"]["mean"] < 1e-2


@pytest.mark.parametrize("method", study.ADAPTIVE)
def test_adaptive_methods_call_every_test_point_positive(results, method):
    """Test error = fraction of negative test labels, drawn independently here; about 1 - p."""
    problem = WilsonSeparable(n=study.N, p=study.P, seed=0)
    _, labels = problem.test_set(study.TEST_POINTS, study.TEST_SEED_OFFSET)
    negative = float(np.mean(labels < 0))
    row = _summary(results, method)
    assert row["test_error"]["mean"] == pytest.approx(negative, abs=1e-12)
    assert abs(row["test_error"]["mean"] - (1 - study.P)) < 0.06  # 1000 points: sd 0.015
    assert row["distance_to_limit"]["mean"] < 1e-4


@pytest.fixture(scope="module")
def problem():
    return WilsonSeparable(n=study.N, p=study.P, seed=0)


def test_gd_converges_to_the_minimum_norm_interpolant(problem):
    X, y = problem.X_data, problem.y_data
    min_norm = X.T @ np.linalg.solve(X @ X.T, y)
    w, _, lr = study.train("GD", problem, 2000, seed=0, record=[])
    assert lr == pytest.approx(1 / np.linalg.eigvalsh(X.T @ X / len(y))[-1], rel=1e-9)
    np.testing.assert_allclose(w.numpy(), min_norm, atol=1e-8)
    # it scores a fresh point x by w_1 y + w_2 + w_3: correct for both labels when w_1 > |w_2 + w_3|
    assert min_norm[0] > abs(min_norm[1] + min_norm[2])


@pytest.mark.parametrize("method", study.ADAPTIVE)
def test_adaptive_iterates_stay_on_the_sign_ray(problem, method):
    """Lemma 3.1: w_t = λ_t sign(X^T y) for every t; the limit interpolates, so λ = 1/4 here.

    The lemma holds exactly for eps = 0; the optimizers' eps (1e-8, 1e-10) against second
    moments of about 1e-6 bends the ray by a relative 1e-5 at most."""
    X, y = problem.X_data, problem.y_data
    assert y.sum() > 0
    direction = np.sign(X.T @ y)
    np.testing.assert_allclose(X @ direction, 4 * y)  # the paper's X sign(X^T y) = 4y
    record = [1, 10, 100, 1000]
    w, snapshots, _ = study.train(method, problem, 1000, seed=0, record=record)
    for t in record:
        v = snapshots[t].numpy()
        scale = v @ direction / (direction @ direction)
        np.testing.assert_allclose(v, scale * direction, atol=1e-4 * abs(scale))
    np.testing.assert_allclose(w.numpy(), direction / 4, atol=1e-3)


def test_sgd_uses_single_examples(problem):
    """One SGD update from 0 moves w along exactly one training row."""
    w, _, lr = study.train("SGD", problem, 1, seed=0, record=[])
    assert lr == pytest.approx(1 / 8)
    rows = problem.X_data
    matches = [
        i for i in range(problem.n) if np.allclose(w.numpy(), lr * problem.y_data[i] * rows[i])
    ]
    assert len(matches) == 1


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


def test_curves_start_at_zero_and_end_at_the_last_step(results):
    for run in results["runs"]:
        t = run["curve"]["t"]
        assert t[0] == 0
        assert t[-1] == results["setup"]["steps"]
        assert t == sorted(set(t))
        assert run["curve"]["test_error"][-1] == run["test_error"]


def test_report_writes_a_table_and_a_png(results, tmp_path):
    markdown, figures = study.report(results, tmp_path / "figures")
    assert "| method | lr |" in markdown
    for method in study.METHODS:
        assert f"\n| {method} |" in markdown
    assert figures
    for figure in figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_are_deterministic(problem):
    first, _, _ = study.train("SGD", problem, 50, seed=3, record=[])
    second, _, _ = study.train("SGD", problem, 50, seed=3, record=[])
    assert torch.equal(first, second)
