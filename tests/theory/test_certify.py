"""Certificates: held / violated / non-finite, the fitted rates, plot, run's hooks."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from theory.bounds import Bound, gd_bound, gd_strongly_convex_bound, sgd_nesterov_gradient_point
from theory.certify import (
    certify,
    fit_order,
    fit_rate,
    numerical_floor,
    run,
)
from theory.problems import Quadratic


@pytest.fixture
def problem():
    return Quadratic.from_condition_number(5, kappa=4.0, L=2.0, seed=8)


def _sgd(lr):
    return lambda params: torch.optim.SGD(params, lr=lr)


def _geometric_bound(problem, factor, rate):
    start = problem.gap(problem.x0)
    return Bound(
        name="test",
        quantity="gap",
        values=lambda k: factor * start * rate ** np.asarray(k, dtype=float),
        formula="test",
        rate=rate,
    )


def test_certificate_held_on_the_textbook_bound(problem):
    lr = 1 / problem.L
    certificate = certify(problem, _sgd(lr), 100, gd_strongly_convex_bound(problem, lr))
    assert certificate.held
    assert certificate.first_violation is None
    assert certificate.finite
    assert certificate.worst_ratio <= 1.0
    assert certificate.steps.tolist() == list(range(101))
    # the curve is ||x_k - x*||² along the run, recomputed here from GD's closed form
    A, r = problem.A.numpy(), (problem.x0 - problem.x_star).numpy()
    for k in (0, 1, 7):
        exact = np.linalg.matrix_power(np.eye(5) - lr * A, k) @ r
        assert certificate.observed[k] == pytest.approx(exact @ exact, rel=1e-10)
    assert certificate.summary().startswith("gd_strongly_convex: held")


def test_certificate_reports_the_first_violation(problem):
    # a bound that decays faster than GD can: gap0 * 0.5^k against a rate of about (1 - 1/4)^2
    bound = _geometric_bound(problem, 1.0, 0.5)
    certificate = certify(problem, _sgd(0.25 / problem.L), 50, bound)
    trajectory = run(problem, _sgd(0.25 / problem.L), 50)
    expected = int(np.argmax(trajectory.gap > bound(np.arange(51)) * (1 + 1e-9)))
    assert expected > 0
    assert not certificate.held
    assert certificate.first_violation == expected
    values = bound(np.arange(51))
    # the worst ratio is taken where the bound is above the rounding floor
    ratios = np.where(values > certificate.atol, trajectory.gap / values, -np.inf)
    assert certificate.worst_ratio == pytest.approx(ratios.max())
    assert certificate.worst_step == int(np.argmax(ratios))
    message = certificate.violation_message()
    assert f"violated at step {expected}" in message
    assert f"{trajectory.gap[expected]:.6g}" in message
    assert f"{bound(expected):.6g}" in message


class _NaNAfter(torch.optim.Optimizer):
    """Gradient descent that writes NaN into the parameter at update ``bad_step``."""

    def __init__(self, params, lr, bad_step):
        super().__init__(params, {"lr": lr})
        self.bad_step, self.count = bad_step, 0

    @torch.no_grad()
    def step(self, closure):
        with torch.enable_grad():
            closure()
        for group in self.param_groups:
            for p in group["params"]:
                p.sub_(p.grad, alpha=group["lr"])
                if self.count == self.bad_step:
                    p.fill_(math.nan)
        self.count += 1


@pytest.mark.parametrize("value", ["nan", "overflow"])
def test_a_non_finite_run_is_never_certified(problem, value):
    lr = 1 / problem.L
    loose = Bound(
        name="loose",
        quantity="gap",
        values=lambda k: np.full(np.shape(k), 1e300),
        formula="anything",
    )
    if value == "nan":
        make, expected = (lambda p: _NaNAfter(p, lr, bad_step=4)), 5
    else:
        make, expected = _sgd(1e200), None  # overflows to inf within a few steps
    certificate = certify(problem, make, 40, loose)
    assert not certificate.held
    assert not certificate.finite
    if expected is not None:
        assert certificate.first_violation == expected
    assert "non-finite" in certificate.violation_message()
    assert math.isnan(certificate.fitted_rate)
    lower = Bound(
        name="lower",
        quantity="distance",
        direction="lower",
        values=lambda k: np.zeros(np.shape(k)),
        formula="0",
    )
    assert not certify(problem, make, 40, lower).held


def test_lower_bounds(problem):
    growth = Bound(
        name="grows",
        quantity="distance",
        direction="lower",
        values=lambda k: 1.5 ** np.asarray(k, dtype=float),
        formula="1.5^k",
    )
    certificate = certify(problem, _sgd(1 / problem.L), 30, growth)
    assert not certificate.held  # GD converges, it does not grow
    assert certificate.first_violation is not None
    assert "<" in certificate.violation_message()


def test_rounding_noise_near_the_optimum_is_not_a_violation(problem):
    # κ = 4, lr = 1/L: the distance bound reaches 1e-40 long before step 400 while the run sits
    # at the float64 floor; the default atol (the numerical floor) absorbs that
    lr = 1 / problem.L
    bound = gd_strongly_convex_bound(problem, lr)
    assert bound(400) < 1e-40
    certificate = certify(problem, _sgd(lr), 400, bound)
    assert certificate.held
    assert certificate.atol == numerical_floor(problem, "distance_sq")
    assert 0 < certificate.atol < 1e-20
    strict = certify(problem, _sgd(lr), 400, bound, atol=0.0)
    assert not strict.held  # without it, rounding noise would be reported


def test_fit_rate_and_order_on_exact_curves():
    k = np.arange(200, dtype=float)
    assert fit_rate(0.9**k) == pytest.approx(0.9, rel=1e-12)
    with np.errstate(divide="ignore"):
        assert fit_order(1.0 / k) == pytest.approx(-1.0, rel=1e-9)
        assert fit_order(3.0 / k**2) == pytest.approx(-2.0, rel=1e-9)
    # a k q^k curve: fitted rate between q and q exp(1/a), a = the window start (100)
    jordan = k * 0.8**k
    fitted = fit_rate(jordan)
    assert 0.8 < fitted <= 0.8 * math.exp(1 / 100)
    # values below 10 x floor are noise and leave the window
    noisy = np.maximum(0.5**k, 1e-30)
    assert fit_rate(noisy, floor=1e-28) == pytest.approx(0.5, rel=1e-12)
    assert math.isnan(fit_rate(np.array([1.0, 0.5])))


def test_plot_writes_the_figure(tmp_path, problem):
    lr = 1 / problem.L
    certificate = certify(problem, _sgd(lr), 30, gd_bound(problem, lr))
    path = tmp_path / "certificate.png"
    figure = certificate.plot(path)
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["certificate.png"]  # no temporary file left behind
    axis = figure.axes[0]
    assert axis.get_yscale() == "log"
    assert len(axis.get_lines()) == 2


def test_run_supports_closure_optimizers_and_before_step(problem):
    seen = []

    def before_step(optimizer, t):
        seen.append(t)
        optimizer.param_groups[0]["lr"] = 1 / problem.L / (t + 1)

    trajectory = run(problem, _sgd(123.0), 5, before_step=before_step)
    assert seen == [0, 1, 2, 3, 4]
    # the lr set before update t is the one used: x_{t+1} = x_t - lr_t A (x_t - x*)
    A, x_star = problem.A, problem.x_star
    x = problem.x0.clone()
    for t in range(5):
        x = x - (1 / problem.L / (t + 1)) * (A @ (x - x_star))
        torch.testing.assert_close(trajectory.points[t + 1], x)
    lbfgs = run(
        problem,
        lambda p: torch.optim.LBFGS(p, max_iter=50, tolerance_grad=1e-15, tolerance_change=0),
        2,
    )
    assert lbfgs.gap[-1] < 1e-20


def test_bad_arguments(problem):
    lr = 1 / problem.L
    bound = gd_bound(problem, lr)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        certify(problem, _sgd(lr), 0, bound)
    with pytest.raises(TypeError, match=r"must return a torch\.optim\.Optimizer"):
        run(problem, lambda params: "sgd", 3)
    with pytest.raises(TypeError, match="make_optimizer must be callable"):
        run(problem, "sgd", 3)
    with pytest.raises(TypeError, match=r"problem must be a theory\.problems\.Problem"):
        run("quadratic", _sgd(lr), 3)
    with pytest.raises(TypeError, match=r"bound must be a theory\.bounds\.Bound"):
        certify(problem, _sgd(lr), 3, "1/L")
    with pytest.raises(ValueError, match="rtol"):
        certify(problem, _sgd(lr), 3, bound, rtol=-1.0)
    with pytest.raises(ValueError, match="nesterov=True"):
        run(problem, _sgd(lr), 3, observe=sgd_nesterov_gradient_point)
