"""Reddi, Kale & Kumar (2018) and Wilson et al. (2017, section 3.3), checked against the papers'
definitions written out independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theory.certify import run
from theory.problems import ReddiCounterexample, WilsonSeparable


# -------------------------------------------------------------------------------------- Reddi
def test_reddi_coefficients_follow_the_paper():
    problem = ReddiCounterexample()
    # paper time τ = t + 1 = 1, 2, ...: f_τ(x) = 1010 x if τ mod 101 = 1 else -10 x
    expected = [1010.0 if tau % 101 == 1 else -10.0 for tau in range(1, 404)]
    np.testing.assert_array_equal(problem.coefficients(403), expected)
    assert [problem.coefficient(t) for t in (0, 1, 100, 101, 202)] == [1010, -10, -10, 1010, 1010]
    assert problem.f_star == pytest.approx(-10 / 101)
    assert float(problem.loss(problem.x_star)) == pytest.approx(problem.f_star)
    x = torch.tensor([0.3], dtype=torch.float64)
    assert float(problem.loss_at(x, 0)) == pytest.approx(303.0)
    assert float(problem.loss_at(x, 5)) == pytest.approx(-3.0)
    torch.testing.assert_close(
        problem.project(torch.tensor([2.0, -3.0, 0.5])), torch.tensor([1.0, -1.0, 0.5])
    )


def test_reddi_stochastic_draws_are_seeded_and_have_the_paper_frequency():
    problem = ReddiCounterexample(stochastic=True, seed=4)
    draws = problem.coefficients(100_000)
    assert set(np.unique(draws)) == {-10.0, 1010.0}
    large = int(np.sum(draws == 1010.0))
    assert abs(large - 1000) < 4 * math.sqrt(100_000 * 0.01 * 0.99)  # Binomial(1e5, 0.01)
    again = ReddiCounterexample(stochastic=True, seed=4)
    assert [again.coefficient(t) for t in (0, 5000, 99_999)] == list(draws[[0, 5000, 99_999]])
    other = ReddiCounterexample(stochastic=True, seed=5).coefficients(100_000)
    assert not np.array_equal(draws, other)
    assert problem.f_star == pytest.approx(-(0.01 * 1010 - 0.99 * 10))


def test_reddi_regret_against_brute_force():
    problem = ReddiCounterexample(stochastic=True, seed=1)
    points = np.random.default_rng(0).uniform(-1, 1, 700)
    result = problem.regret(points)
    c = problem.coefficients(700)
    grid = np.linspace(-1, 1, 2001)  # includes both ends, where a linear function is minimal
    for t in (1, 50, 333, 700):
        played = sum(c[s] * points[s] for s in range(t))
        best = min(np.sum(c[:t]) * grid)
        assert result.regret[t - 1] == pytest.approx(played - best, rel=1e-12, abs=1e-9)
        assert result.average[t - 1] == pytest.approx((played - best) / t, rel=1e-12, abs=1e-9)


def _adam_run(problem, amsgrad: bool, steps: int):
    """Adam/AMSGrad with β1 = 0.9, β2 = 0.99 and α_t = α/√t (α = 1), as in the paper."""

    def schedule(optimizer, t):
        optimizer.param_groups[0]["lr"] = 1.0 / math.sqrt(t + 1)

    return run(
        problem,
        lambda p: torch.optim.Adam(p, lr=1.0, betas=(0.9, 0.99), amsgrad=amsgrad),
        steps,
        before_step=schedule,
    )


def test_adam_drifts_to_the_worst_point_while_amsgrad_approaches_the_optimum():
    problem = ReddiCounterexample(x0=[0.0])
    steps, window = 6060, 2020  # 60 periods; the window is the last 20
    adam, amsgrad = _adam_run(problem, False, steps), _adam_run(problem, True, steps)
    for trajectory in (adam, amsgrad):
        assert trajectory.finite
        assert float(trajectory.points.abs().max()) <= 1.0  # projected onto [-1, 1]
    assert float(adam.points[-window:, 0].mean()) > 0.8  # near +1, the worst point
    assert float(amsgrad.points[-window:, 0].mean()) < -0.6  # near -1, the optimum
    adam_regret = problem.regret(adam.points[:-1, 0].numpy())
    ams_regret = problem.regret(amsgrad.points[:-1, 0].numpy())
    # R_t / t: AMSGrad's falls below Adam's and keeps falling; Adam's does not vanish: over the
    # last 20 periods it adds regret at a rate above 20/101 per step (what x = +1 alone costs)
    assert ams_regret.average[-1] < adam_regret.average[-1]
    assert np.all(np.diff(ams_regret.average[steps // 2 :: 101]) < 0)
    adam_rate = (adam_regret.regret[-1] - adam_regret.regret[-window - 1]) / window
    assert adam_rate > 20 / 101


def test_stochastic_version_separates_adam_and_amsgrad():
    problem = ReddiCounterexample(stochastic=True, seed=0, x0=[0.0])
    adam, amsgrad = _adam_run(problem, False, 4000), _adam_run(problem, True, 4000)
    # the expected loss 0.2 x: over the last 1000 steps Adam sits on the wrong side of 0
    assert float(adam.points[-1000:, 0].mean()) > 0.0
    assert float(amsgrad.points[-1000:, 0].mean()) < 0.0
    assert np.mean(adam.gap[-1000:]) > 2 * np.mean(amsgrad.gap[-1000:])


def test_reddi_rejects_bad_input():
    with pytest.raises(ValueError, match="x0 must lie in the feasible set"):
        ReddiCounterexample(x0=[1.5])
    with pytest.raises(TypeError, match="stochastic"):
        ReddiCounterexample(stochastic="yes")
    with pytest.raises(ValueError, match="t must be a non-negative integer"):
        ReddiCounterexample().coefficient(-1)


# ------------------------------------------------------------------------------------- Wilson
def _paper_features(labels, n_columns):
    """x_ij = y_i (j = 1); 1 (j = 2, 3); 1 (j = 4 + 5(i-1), ..., 4 + 5(i-1) + 2(1 - y_i));
    0 otherwise, with 1-based i and j as in the paper."""
    X = np.zeros((len(labels), n_columns))
    for i, y in enumerate(labels, start=1):
        for j in range(1, n_columns + 1):
            if j == 1:
                X[i - 1, j - 1] = y
            elif j in (2, 3) or 4 + 5 * (i - 1) <= j <= 4 + 5 * (i - 1) + 2 * (1 - y):
                X[i - 1, j - 1] = 1
    return X


def test_wilson_features_are_the_papers():
    problem = WilsonSeparable(n=12, p=0.6, seed=2)
    labels = problem.y_data
    np.testing.assert_array_equal(problem.X_data, _paper_features(labels, 3 + 5 * 12))
    assert set(labels) <= {-1.0, 1.0}
    ones = problem.X_data[:, 3:].sum(axis=1)
    np.testing.assert_array_equal(ones, np.where(labels > 0, 1, 5))  # 1 or 5 private features
    assert problem.label_sum == int(labels.sum())
    assert torch.equal(problem.x0, torch.zeros(3 + 5 * 12, dtype=torch.float64))


def test_wilson_lemma_condition_and_the_two_solutions():
    problem = WilsonSeparable(n=30, p=0.7, seed=0)
    X, y = problem.X_data, problem.y_data
    assert problem.label_sum > 0  # the paper's assumption b > 0 holds for this seed
    np.testing.assert_array_equal(X @ np.sign(X.T @ y), 4 * y)  # X sign(X^T y) = 4 y
    adaptive = problem.adaptive_solution().numpy()
    np.testing.assert_allclose(X @ adaptive, y, atol=1e-15)  # it interpolates
    np.testing.assert_allclose(problem.x_star.numpy(), np.linalg.pinv(X) @ y, atol=1e-12)
    # the minimum-norm solution has the smaller norm, by a margin
    assert np.linalg.norm(problem.x_star.numpy()) < 0.8 * np.linalg.norm(adaptive)


def test_wilson_adaptive_methods_overfit_while_gradient_descent_generalises():
    problem = WilsonSeparable(n=30, p=0.7, seed=0)
    _, test_labels = problem.test_set(2000, seed=9)
    negative_fraction = float(np.mean(test_labels < 0))
    assert abs(negative_fraction - 0.3) < 4 * math.sqrt(0.21 / 2000)  # test error near 1 - p
    adaptive = problem.adaptive_solution()
    optimizers = {
        "Adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1),
        "RMSprop": lambda p: torch.optim.RMSprop(p, lr=0.01),
        "Adam": lambda p: torch.optim.Adam(p, lr=0.01),
    }
    for name, make in optimizers.items():
        w = run(problem, make, 600).points[-1]
        cosine = float(w @ adaptive / (w.norm() * adaptive.norm()))
        assert cosine > 1 - 1e-9, name  # the direction sign(X^T y), as Lemma 3.1 says
        assert problem.test_error(w, 2000, seed=9) == negative_fraction, name
    gd = run(problem, lambda p: torch.optim.SGD(p, lr=1 / problem.L), 600).points[-1]
    torch.testing.assert_close(gd, problem.x_star, atol=1e-9, rtol=0)
    assert problem.test_error(gd, 2000, seed=9) == 0.0


def test_wilson_rejects_bad_input():
    with pytest.raises(ValueError, match="p must lie in"):
        WilsonSeparable(n=10, p=0.4)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        WilsonSeparable(n=0)
