"""Audit 89 (theory.testing, theory.problems, theory.certify as the helpers use it).

F1: ``assert_rate`` at slack 0 passes plain GD that attains its rate exactly over long runs
(its allowance for the iterates' rounding grows as the fitting window nears the noise floor),
and still fails a run 1 % slower and a stalled one.
F2: the float32 noise floor follows what a float32 run resolves (f* never enters a float32
trajectory), so an optimizer that never moves, or a biased one, fails in float32; a
certificate that compared nothing above the floor is "not checked", never held.
F3: ``logistic_problem`` no longer claims non-separable data, and refuses kappa above its
stated limit with a ValueError.
F4: ``least_squares_problem`` keeps L / mu = kappa (to its stated accuracy) or refuses kappa.
F5: problems are the same bits whatever torch's thread count.
F6: ``assert_converges`` argument handling.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize
import torch

import theory
from theory.bounds import (
    gd_optimal_step_bound,
    gd_strongly_convex_bound,
    gd_strongly_convex_tight_bound,
    pl_bound,
)
from theory.certify import certify, run
from theory.problems import LeastSquares, Quadratic
from theory.testing import (
    assert_bound_holds,
    assert_converges,
    assert_rate,
    least_squares_problem,
    logistic_problem,
    quadratic_problem,
)

EPS64 = float(np.finfo(np.float64).eps)


# ----------------------------------------------------------------------------- test optimizers
class _ScaledSGD(torch.optim.SGD):
    """Declares plain SGD at ``lr`` (what the bound checks) but steps with ``factor * lr``."""

    def __init__(self, params, lr: float, factor: float):
        super().__init__(params, lr=lr)
        self.factor = factor

    def step(self, closure=None):
        declared = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = group["lr"] * self.factor
        try:
            return super().step(closure)
        finally:
            for group, lr in zip(self.param_groups, declared):
                group["lr"] = lr


class _StallingSGD(torch.optim.SGD):
    """Plain SGD for ``moving`` updates, then it stops moving (the loss is still evaluated)."""

    def __init__(self, params, lr: float, moving: int):
        super().__init__(params, lr=lr)
        self.moving, self.updates = moving, 0

    def step(self, closure=None):
        self.updates += 1
        if self.updates > self.moving:
            with torch.enable_grad():
                return closure()
        return super().step(closure)


class _DoNothing(torch.optim.SGD):
    """Declares plain SGD at ``lr`` but never moves."""

    def step(self, closure=None):
        with torch.enable_grad():
            return closure()


class _BiasedSGD(torch.optim.SGD):
    """Plain SGD plus a constant push ``lr * offset`` per update: it converges to a point
    A^{-1} offset away from x*, not to x*."""

    def __init__(self, params, lr: float, offset: float):
        super().__init__(params, lr=lr)
        self.offset = offset

    def step(self, closure=None):
        loss = super().step(closure)
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(torch.full_like(p, self.offset), alpha=group["lr"])
        return loss


# ------------------------------------------------------------------------------------------ F1
@pytest.fixture(scope="module")
def kappa_100():
    return quadratic_problem(100.0, seed=0, dim=20)


def _rate_bound(problem, kind):
    lr = 2 / (problem.mu + problem.L)
    if kind == "distance":
        return gd_optimal_step_bound(problem), lr
    return gd_strongly_convex_tight_bound(problem, lr), lr


@pytest.mark.parametrize("kind", ["distance", "distance_sq"])
@pytest.mark.parametrize("steps", [1000, 3000, 5000])
def test_assert_rate_passes_plain_gd_that_attains_its_rate_over_long_runs(kappa_100, kind, steps):
    problem = kappa_100
    bound, lr = _rate_bound(problem, kind)
    # the rate GD attains at lr = 2/(mu + L) on a quadratic, from the spectrum: the extreme
    # eigen-modes contract by exactly (kappa - 1)/(kappa + 1) per step
    q = max(abs(1 - lr * problem.mu), abs(1 - lr * problem.L))
    assert q == pytest.approx(99 / 101, rel=1e-14)
    assert bound.rate == pytest.approx(q if kind == "distance" else q**2, rel=1e-14)
    certificate = certify(problem, lambda p: torch.optim.SGD(p, lr=lr), steps, bound)
    assert certificate.held
    assert_rate(certificate)  # slack = 0
    assert certificate.rate_consistent(0.0)


@pytest.mark.parametrize("kind", ["distance", "distance_sq"])
@pytest.mark.parametrize("steps", [1000, 5000])
def test_assert_rate_still_fails_a_run_one_percent_slower(kappa_100, kind, steps):
    problem = kappa_100
    bound, lr = _rate_bound(problem, kind)
    certificate = certify(problem, lambda p: _ScaledSGD(p, lr, 0.99), steps, bound)
    assert certificate.applicable  # it declares the bound's lr
    # the slowest mode of GD at 0.99 lr contracts by 1 - 0.99 lr mu per step
    slow = 1 - 0.99 * lr * problem.mu
    expected = slow if kind == "distance" else slow**2
    assert certificate.fitted_rate == pytest.approx(expected, rel=1e-6)
    assert expected > bound.rate * (1 + 1e-4)
    with pytest.raises(AssertionError, match="exceeds the predicted"):
        assert_rate(certificate)


@pytest.mark.parametrize("kind", ["distance", "distance_sq"])
def test_assert_rate_still_fails_a_stalled_run(kappa_100, kind):
    problem = kappa_100
    bound, lr = _rate_bound(problem, kind)
    certificate = certify(problem, lambda p: _StallingSGD(p, lr, 300), 1000, bound)
    assert certificate.fitted_rate > bound.rate * 1.001
    with pytest.raises(AssertionError, match="exceeds the predicted"):
        assert_rate(certificate)


# ------------------------------------------------------------------------------------------ F2
def _noisy_least_squares_near_optimum():
    """Targets with noise of std 2 (f* about 2), started 0.01 per coordinate from x*."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 10))
    y = X @ rng.standard_normal(10) + 2.0 * rng.standard_normal(200)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    return LeastSquares(X, y, x0=w + 0.01 * rng.standard_normal(10))


def _float32_problems():
    return {
        "f*=0": quadratic_problem(10.0, seed=0),
        "f*=1e4": Quadratic.from_condition_number(10, 10.0, seed=0, f_star=1e4),
        "noisy least squares near x*": _noisy_least_squares_near_optimum(),
    }


@pytest.mark.parametrize("name", list(_float32_problems()))
def test_an_optimizer_that_never_moves_fails_in_float32(name):
    problem = _float32_problems()[name]
    gap0 = problem.gap(problem.x0)
    assert gap0 > 0
    with pytest.raises(AssertionError, match=r"violated at step|not checked"):
        assert_bound_holds(
            problem,
            lambda p: _DoNothing(p, lr=1 / problem.L),
            200,
            pl_bound(problem),
            dtype=torch.float32,
        )


@pytest.mark.parametrize("name", list(_float32_problems()))
def test_float32_gradient_descent_still_passes(name):
    problem = _float32_problems()[name]
    lr = 1 / problem.L
    for bound in (pl_bound(problem), gd_strongly_convex_bound(problem, lr)):
        for steps in (300, 2000):
            certificate = assert_bound_holds(
                problem, lambda p: torch.optim.SGD(p, lr=lr), steps, bound, dtype=torch.float32
            )
            assert certificate.held
            assert certificate.status == "held"


def test_f_star_does_not_change_a_float32_run_nor_hide_a_biased_optimizer():
    plain = quadratic_problem(10.0, seed=1)
    shifted = Quadratic.from_condition_number(10, 10.0, seed=1, f_star=1e4)
    lr = 1 / plain.L

    def make(p):
        return torch.optim.SGD(p, lr=lr)

    # f* shifts no gradient: the float32 trajectories are the same points
    a = run(plain, make, 200, dtype=torch.float32)
    b = run(shifted, make, 200, dtype=torch.float32)
    assert torch.equal(a.points, b.points)
    for problem in (plain, shifted):
        for bound in (pl_bound(problem), gd_strongly_convex_bound(problem, lr)):
            # GD pushed by 1e-3 per coordinate per unit lr stalls 1e-3 A^{-1} 1 from x*
            with pytest.raises(AssertionError, match="violated at step"):
                assert_bound_holds(
                    problem, lambda p: _BiasedSGD(p, lr, 1e-3), 300, bound, dtype=torch.float32
                )


def test_a_certificate_that_compared_nothing_above_the_floor_is_not_held():
    base = quadratic_problem(10.0, seed=0)
    at_optimum = Quadratic(base.A, x_star=base.x_star, x0=base.x_star.clone())
    lr = 1 / base.L
    certificate = certify(
        at_optimum,
        lambda p: torch.optim.SGD(p, lr=lr),
        50,
        gd_strongly_convex_bound(at_optimum, lr),
    )
    assert np.all(certificate.observed == 0)
    assert np.all(certificate.bound_values == 0)
    assert not certificate.held
    assert certificate.status == "not checked"
    assert certificate.first_violation is None
    assert "nan" not in certificate.summary()
    assert "NOT CHECKED" in certificate.summary()
    assert "not checked" in certificate.violation_message()
    with pytest.raises(AssertionError, match="not checked"):
        assert_bound_holds(
            at_optimum,
            lambda p: torch.optim.SGD(p, lr=lr),
            50,
            gd_strongly_convex_bound(at_optimum, lr),
        )
    # an atol above every bound value: nothing compared either
    huge = certify(
        base, lambda p: torch.optim.SGD(p, lr=lr), 50, pl_bound(base), atol=1e6 * base.gap(base.x0)
    )
    assert not huge.held
    assert huge.status == "not checked"
    assert "worst ratio nan" not in huge.summary()


# ------------------------------------------------------------------------------------------ F3
def _linearly_separable(X, y):
    """Whether y_i x_i^T w >= 1 for all i is feasible (an LP; scipy's HiGHS)."""
    n, d = X.shape
    result = scipy.optimize.linprog(
        np.zeros(d),
        A_ub=-(y[:, None] * X),
        b_ub=-np.ones(n),
        bounds=[(None, None)] * d,
        method="highs",
    )
    return result.status == 0


def test_logistic_problem_does_not_claim_non_separable_data():
    problem = logistic_problem(10.0, seed=0)
    assert _linearly_separable(problem.X_data, problem.y_data)
    doc = " ".join(inspect.getdoc(logistic_problem).split())
    assert "not separable" not in doc
    assert "separable" in doc


def test_logistic_problem_refuses_kappa_beyond_its_limit_with_a_value_error():
    with pytest.raises(ValueError, match=r"kappa must be <= 100000 .*got kappa=1000000000000.0"):
        logistic_problem(1e12, seed=0)
    with pytest.raises(ValueError, match="kappa must be <= 100000"):
        logistic_problem(1.0001e5, seed=1)
    doc = " ".join(inspect.getdoc(logistic_problem).split())
    assert "1e5" in doc


@pytest.mark.parametrize("seed", range(6))
def test_logistic_problem_builds_at_its_kappa_limit(seed):
    problem = logistic_problem(1e5, seed=seed)
    assert problem.kappa == pytest.approx(1e5, rel=1e-12)
    assert problem.x_star_tol <= 1e-10 * max(1.0, float(problem.x_star.norm()))
    # strong convexity from torch's closed-form gradient (not the solver's numpy one):
    # ||x* - w*|| <= ||grad f(x*)|| / mu, within 1e-10 relative
    gradient = float(problem.grad(problem.x_star).norm())
    assert gradient / problem.mu <= 1e-10 * max(1.0, float(problem.x_star.norm()))


# ------------------------------------------------------------------------------------------ F4
@pytest.mark.parametrize(("kappa", "dim"), [(4.6e12, 10), (1e12, 100), (1e13, 2)])
def test_least_squares_problem_refuses_a_kappa_float64_cannot_deliver(kappa, dim):
    limit = 1 / (1000 * dim * EPS64)
    assert kappa > limit
    with pytest.raises(ValueError, match=rf"kappa must be <= .*dim={dim}.*kappa={kappa!r}"):
        least_squares_problem(kappa, seed=0, dim=dim, n=max(50, dim))


@pytest.mark.parametrize("dim", [2, 10, 100])
def test_least_squares_problem_keeps_kappa_up_to_its_limit(dim):
    limit = 1 / (1000 * dim * EPS64)
    for kappa in (1e6, 1e9, 0.99 * limit):
        for seed in (0, 1):
            problem = least_squares_problem(kappa, seed=seed, dim=dim, n=max(50, dim))
            # L / mu from an independent eigen-solve of the Gram matrix
            gram = problem.X_data.T @ problem.X_data / problem.n
            eigenvalues = np.linalg.eigvalsh(gram)
            assert problem.mu > 0
            assert math.isfinite(problem.kappa)
            # the documented accuracy: relative error about kappa dim eps at most
            assert abs(problem.kappa / kappa - 1) <= kappa * dim * EPS64
            assert abs(eigenvalues[-1] / eigenvalues[0] / kappa - 1) <= kappa * dim * EPS64


# ------------------------------------------------------------------------------------------ F5
_BUILD = r"""
import json, sys, hashlib
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from theory.testing import least_squares_problem, logistic_problem, quadratic_problem
problems = {
    "quadratic": quadratic_problem(100.0, 3, dim=300),
    "least_squares": least_squares_problem(100.0, 3, dim=200, n=400),
    "logistic": logistic_problem(100.0, 3, dim=50, n=300),
}
out = {"threads": torch.get_num_threads()}
for name, p in problems.items():
    h = hashlib.sha256()
    for t in (p.x0, p.x_star, getattr(p, "A", torch.zeros(1))):
        h.update(t.numpy().tobytes())
    if hasattr(p, "X_data"):
        h.update(np.ascontiguousarray(p.X_data).tobytes())
    h.update(np.float64([p.L, p.mu, p.f_star]).tobytes())
    out[name] = h.hexdigest()
out["theory"] = __import__("theory").__file__
print(json.dumps(out))
"""


def _build_with_threads(threads: int) -> dict:
    # the subprocess imports the theory package this test imported
    root = os.path.dirname(os.path.dirname(os.path.abspath(theory.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-c", _BUILD, str(threads)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_problems_are_the_same_bits_whatever_the_thread_count():
    one, two = _build_with_threads(1), _build_with_threads(2)
    assert one.pop("theory") == two.pop("theory") == theory.__file__
    assert one.pop("threads") == 1
    assert two.pop("threads") == 2
    assert one == two


def test_building_a_problem_restores_the_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        quadratic_problem(10.0, seed=0, dim=40)
        least_squares_problem(10.0, seed=0, dim=20, n=60)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ F6
def test_assert_converges_refuses_a_bool_tol():
    problem = quadratic_problem(10.0)
    with pytest.raises(TypeError, match=r"tol must be .*tol=True"):
        assert_converges(problem, lambda p: torch.optim.SGD(p, lr=0.0), 5, tol=True)


def test_assert_converges_accepts_numpy_floats():
    problem = quadratic_problem(10.0)
    lr = 1 / problem.L
    trajectory = assert_converges(
        problem, lambda p: torch.optim.SGD(p, lr=lr), 200, tol=np.float32(1e-6)
    )
    assert trajectory.gap[-1] <= 1e-6 * trajectory.gap[0]


def test_assert_converges_checks_quantity_and_relative_before_running():
    problem = quadratic_problem(10.0)
    built = []

    def make(p):
        built.append(1)
        return torch.optim.SGD(p, lr=1 / problem.L)

    with pytest.raises(ValueError, match=r"quantity must be one of .*quantity='gapp'"):
        assert_converges(problem, make, 20_000, quantity="gapp")
    with pytest.raises(TypeError, match="relative must be a bool, got relative='no'"):
        assert_converges(problem, make, 20_000, relative="no")
    assert built == []


def test_assert_converges_on_grad_sq_min():
    problem = quadratic_problem(10.0)
    lr = 1 / problem.L
    trajectory = assert_converges(
        problem, lambda p: torch.optim.SGD(p, lr=lr), 300, tol=1e-10, quantity="grad_sq_min"
    )
    # independent: ||A (x_k - x*)||² of the recorded points
    residual = (trajectory.points - problem.x_star) @ problem.A
    grad_sq = residual.square().sum(dim=1).numpy()
    assert np.min(grad_sq[:-1]) <= 1e-10 * grad_sq[0]
    with pytest.raises(AssertionError, match="not converged"):
        assert_converges(
            problem, lambda p: _DoNothing(p, lr=lr), 20, tol=1e-3, quantity="grad_sq_min"
        )


def test_assert_converges_prints_plain_floats():
    problem = quadratic_problem(10.0)
    with pytest.raises(AssertionError) as failure:
        assert_converges(problem, lambda p: torch.optim.SGD(p, lr=1e300), 50)
    message = str(failure.value)
    assert "np.float" not in message
    assert re.search(r"f\(x_k\) - f\* = (nan|inf)", message)
