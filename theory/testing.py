"""One-line pytest assertions for optimizers on problems with known answers.

    from theory.testing import assert_converges, assert_bound_holds
    from theory.problems import Quadratic
    from theory.bounds import gd_bound

    problem = Quadratic.from_condition_number(dim=10, kappa=10, seed=0)
    assert_converges(problem, lambda p: torch.optim.Adam(p, lr=0.05), steps=500, tol=1e-6)
    assert_bound_holds(problem, lambda p: torch.optim.SGD(p, lr=1 / problem.L), 200,
                       gd_bound(problem, 1 / problem.L))

Failures raise ``AssertionError`` with a message naming the step, the observed value and the
bound or tolerance. Argument order everywhere: problem, make_optimizer, steps, then the rest (as
``theory.certify.certify``).

Test problems with a chosen condition number ``kappa = L / mu`` and seed, for the pytest plugin's
fixtures (``pytest_stepsize``) and for direct use: :func:`quadratic_problem`,
:func:`least_squares_problem`, :func:`logistic_problem`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from theory.bounds import QUANTITIES, Bound, _non_negative, _positive
from theory.certify import (
    _NEGATIVE_GAP,
    BeforeStep,
    Certificate,
    Observe,
    OptimizerFactory,
    Trajectory,
    _negative_gap_step,
    certify,
    numerical_floor,
    run,
)
from theory.problems import (
    DTYPE,
    LeastSquares,
    LogisticRegression,
    Problem,
    Quadratic,
    _finite_float,
    _generator,
    _haar_rotation,
    _integer,
)

__all__ = [
    "assert_bound_holds",
    "assert_converges",
    "assert_rate",
    "least_squares_problem",
    "logistic_problem",
    "quadratic_problem",
]


def assert_converges(
    problem: Problem,
    make_optimizer: OptimizerFactory,
    steps: int,
    tol: float = 1e-6,
    *,
    quantity: str = "gap",
    relative: bool = True,
    observe: Observe | None = None,
    before_step: BeforeStep | None = None,
) -> Trajectory:
    """Assert that after ``steps`` updates the ``quantity`` (``"gap"`` f(x) - f*, ``"distance"``
    or ``"distance_sq"``) is at most ``tol``, relative to its value at x0 when ``relative``
    (the default): quantity(x_steps) <= tol * quantity(x_0). Fails on any NaN/inf, naming the
    step, and, as ``certify`` does, when the gap f(x_k) - f* at some step is below minus its
    noise floor (``numerical_floor(problem, "gap", dtype)``): then the problem's f* is above the
    true minimum (or x* is wrong) and convergence to it means nothing. Returns the
    trajectory."""
    if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive finite number, got tol={tol!r}")
    trajectory = run(problem, make_optimizer, steps, observe=observe, before_step=before_step)
    curve = trajectory.quantity(quantity)
    label = QUANTITIES[quantity]
    if not trajectory.finite:
        k = trajectory.first_nonfinite
        raise AssertionError(
            f"{problem!r}: the run became non-finite at step {k} "
            f"({label} = {curve[k]!r}); expected convergence to {tol:g}"
        )
    floor = numerical_floor(problem, "gap", trajectory.dtype)
    k = _negative_gap_step(trajectory.gap, floor)
    if k is not None:
        raise AssertionError(
            f"{problem!r}: f(x_k) - f* = {trajectory.gap[k]:.6g} < 0 at step {k}, below minus "
            f"the noise floor {floor:.6g}: {_NEGATIVE_GAP}"
        )
    start, final = float(curve[0]), float(curve[-1])
    threshold = tol * abs(start) if relative else tol
    if not final <= threshold:
        best = int(np.nanargmin(curve))
        scale = f" x {label} at step 0 ({start:.6g})" if relative else ""
        raise AssertionError(
            f"{problem!r}: not converged after {steps} steps: {label} = {final:.6g} at step "
            f"{steps} > tol {tol:g}{scale} = {threshold:.6g} (best {curve[best]:.6g} at step "
            f"{best})"
        )
    return trajectory


def assert_bound_holds(
    problem: Problem,
    make_optimizer: OptimizerFactory,
    steps: int,
    bound: Bound,
    **certify_options: Any,
) -> Certificate:
    """Assert that ``bound`` held at every step of the run (``theory.certify.certify``; options
    such as ``rtol``, ``atol``, ``observe`` are passed on). The failure message names the first
    violating step, the observed value and the bound there. Returns the certificate."""
    certificate = certify(problem, make_optimizer, steps, bound, **certify_options)
    if not certificate.held:
        raise AssertionError(f"{problem!r}: {certificate.violation_message()}")
    return certificate


def assert_rate(
    certificate: Certificate, slack: float = 0.0, *, at_least: float | None = None
) -> None:
    """Assert that the fitted rate is no worse than the bound's predicted rate (allowing for its
    polynomial factor, see ``Certificate.rate_consistent``) times (1 + ``slack``) and the
    rounding factor (1 + ``certificate.rate_rtol``) (100 ε of the run's dtype: 2.2e-14 for
    float64, so a run that attains the predicted rate passes at slack = 0), and, with
    ``at_least``, no better than ``at_least`` (to show a rate is attained, not just bounded).

    Fails (AssertionError) on a certificate whose bound does not apply to the run (its rate
    says nothing about it) and when no rate could be fitted (fewer than 3 steps above the
    numerical floor: the run reached it at once, or stopped). ``slack`` must be a non-negative
    finite number, ``at_least`` a positive one."""
    if not isinstance(certificate, Certificate):
        raise TypeError(
            f"certificate must be a theory.certify.Certificate (from certify or "
            f"assert_bound_holds), got certificate={certificate!r}"
        )
    slack = _non_negative("slack", slack)
    if at_least is not None:
        at_least = _positive("at_least", at_least)
    bound = certificate.bound
    if certificate.predicted_rate is None:
        raise ValueError(f"bound {bound.name!r} has no predicted rate (sublinear bound)")
    if not certificate.applicable:
        raise AssertionError(
            f"bound {bound.name!r} is not applicable to the run, so its rate says nothing "
            f"about it: {certificate.not_applicable}"
        )
    fitted = certificate.fitted_rate
    if not math.isfinite(fitted):
        stop = certificate.trajectory.first_nonfinite
        why = "the run reached it at once" if stop is None else f"the run stopped at step {stop}"
        raise AssertionError(
            f"bound {bound.name!r}: no rate could be fitted: fewer than 3 steps of the run lie "
            f"above 10 x the numerical floor {certificate.atol:.6g} ({why}); run more steps or "
            f"compare the values with assert_bound_holds instead"
        )
    rounding = certificate.rate_rtol
    tolerance = (1 + slack) * (1 + rounding)
    if not certificate.rate_consistent(slack) and bound.direction == "lower":
        raise AssertionError(
            f"bound {bound.name!r}: fitted rate {fitted:.12g} per step is below the predicted "
            f"growth {certificate.predicted_rate:.12g} / ((1 + {slack:g}) (1 + rounding "
            f"{rounding:.3g})) = {certificate.predicted_rate / tolerance:.12g}"
        )
    if not certificate.rate_consistent(slack):
        limit = certificate.predicted_rate * certificate.rate_allowance * tolerance
        raise AssertionError(
            f"bound {bound.name!r}: fitted rate {fitted:.12g} per step exceeds the predicted "
            f"{certificate.predicted_rate:.12g} x allowance {certificate.rate_allowance:.6g} "
            f"x (1 + {slack:g}) x (1 + rounding {rounding:.3g}) = {limit:.12g}"
        )
    if at_least is not None and not fitted >= at_least:
        raise AssertionError(
            f"bound {bound.name!r}: fitted rate {fitted:.6g} per step is faster "
            f"than expected (below {at_least:.6g})"
        )


# ----------------------------------------------------------------------------------------------
# problems with a chosen condition number (the pytest plugin's fixtures)
# ----------------------------------------------------------------------------------------------
def _check_kappa(kappa: Any, *, strict: bool = False) -> float:
    kappa = _finite_float("kappa", kappa)
    if kappa < 1 or (strict and kappa == 1):
        allowed = "> 1 (mu = l2 > 0 needs L > mu)" if strict else ">= 1 (it is L / mu)"
        raise ValueError(f"kappa must be {allowed}, got kappa={kappa!r}")
    return kappa


def _data_with_spectrum(n: int, eigenvalues: np.ndarray, seed: int) -> np.ndarray:
    """X (n x d) with X^T X / n = V diag(eigenvalues) V^T: X = U diag(sqrt(n eigenvalues)) V^T,
    U the first d columns of a Haar rotation and V a Haar rotation, both seeded."""
    generator = _generator(seed)
    U = _haar_rotation(n, generator)[:, : eigenvalues.size]
    V = _haar_rotation(eigenvalues.size, generator)
    singular = np.sqrt(n * eigenvalues)
    return ((U * torch.as_tensor(singular, dtype=DTYPE)) @ V.T).numpy()


def quadratic_problem(kappa: float = 10.0, seed: int = 0, dim: int = 10) -> Quadratic:
    """``Quadratic.from_condition_number(dim, kappa, L=1, seed=seed)``: eigenvalues spaced linearly
    from 1/kappa to 1, so ``problem.kappa == kappa``.

    >>> quadratic_problem(kappa=100.0).kappa
    100.0
    """
    return Quadratic.from_condition_number(dim, kappa, seed=seed)


def least_squares_problem(
    kappa: float = 10.0, seed: int = 0, dim: int = 10, n: int = 50
) -> LeastSquares:
    """``LeastSquares`` on ``n`` seeded rows whose Gram matrix X^T X / n has eigenvalues spaced
    linearly from 1/kappa to 1 (so L = 1 and mu = 1/kappa up to rounding), targets
    y = X w + 0.1 noise (f* > 0).

    >>> problem = least_squares_problem(kappa=100.0)
    >>> round(problem.kappa, 6), problem.x_star.shape
    (100.0, torch.Size([10]))
    """
    kappa, dim = _check_kappa(kappa), _integer("dim", dim, 1)
    n = _integer("n", n, dim)
    X = _data_with_spectrum(n, np.linspace(1.0 / kappa, 1.0, dim), seed)
    generator = torch.Generator().manual_seed(seed + 1_000_003)
    w = torch.randn(dim, generator=generator, dtype=DTYPE).numpy()
    noise = torch.randn(n, generator=generator, dtype=DTYPE).numpy()
    return LeastSquares(X, X @ w + 0.1 * noise, seed=seed)


def logistic_problem(
    kappa: float = 10.0, seed: int = 0, dim: int = 10, n: int = 100
) -> LogisticRegression:
    """``LogisticRegression`` on ``n`` seeded rows with L / mu = kappa: the rows have
    X^T X / (4n) with eigenvalues spaced linearly from 0.1 to 1 and ``l2 = 1 / (kappa - 1)``, so
    L = 1 + l2 and mu = l2 (``kappa > 1``); labels are the signs of a seeded linear model plus
    noise (not separable).

    >>> problem = logistic_problem(kappa=50.0)
    >>> round(problem.kappa, 6)
    50.0
    """
    kappa, dim = _check_kappa(kappa, strict=True), _integer("dim", dim, 1)
    n = _integer("n", n, dim)
    X = _data_with_spectrum(n, 4.0 * np.linspace(0.1, 1.0, dim), seed)
    generator = torch.Generator().manual_seed(seed + 1_000_003)
    w = torch.randn(dim, generator=generator, dtype=DTYPE).numpy()
    noise = torch.randn(n, generator=generator, dtype=DTYPE).numpy()
    y = np.where(X @ w + noise >= 0, 1.0, -1.0)
    return LogisticRegression(X, y, l2=1.0 / (kappa - 1.0), seed=seed)
