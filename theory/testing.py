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
    _one_thread,
)

__all__ = [
    "LOGISTIC_KAPPA_LIMIT",
    "assert_bound_holds",
    "assert_converges",
    "assert_rate",
    "least_squares_kappa_limit",
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
    """Assert that after ``steps`` updates the ``quantity`` (``"gap"`` f(x) - f*, ``"distance"``,
    ``"distance_sq"`` or ``"grad_sq_min"`` min_{j<k} ||∇f(x_j)||², whose gradients the run then
    measures) is at most ``tol``, relative to its value at x0 when ``relative`` (the default):
    quantity(x_steps) <= tol * quantity(x_0). Fails on any NaN/inf, naming the step, and, as
    ``certify`` does, when the gap f(x_k) - f* at some step is below minus its noise floor
    (``numerical_floor(problem, "gap", dtype)``): then the problem's f* is above the true
    minimum (or x* is wrong) and convergence to it means nothing. Returns the trajectory.

    ``tol``: a positive finite real number (Python or NumPy; a bool is refused, TypeError);
    ``quantity`` is checked before the run (ValueError), ``relative`` must be a bool.

    Example::

        >>> problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])  # f(x) = x²/2
        >>> sgd = lambda p: torch.optim.SGD(p, lr=0.5)  # x_k = 0.5^k, gap 0.5 * 0.25^k
        >>> trajectory = assert_converges(problem, sgd, steps=10, tol=1e-6)  # 0.25^10 < 1e-6
        >>> float(trajectory.gap[-1] / trajectory.gap[0]) == 0.25**10
        True
    """
    tol = _positive("tol", tol)
    if not isinstance(quantity, str) or quantity not in QUANTITIES:
        raise ValueError(f"quantity must be one of {sorted(QUANTITIES)}, got quantity={quantity!r}")
    if not isinstance(relative, (bool, np.bool_)):
        raise TypeError(f"relative must be a bool, got relative={relative!r}")
    relative = bool(relative)
    trajectory = run(
        problem,
        make_optimizer,
        steps,
        observe=observe,
        before_step=before_step,
        gradients=quantity == "grad_sq_min",
    )
    curve = trajectory.quantity(quantity)
    label = QUANTITIES[quantity]
    if not trajectory.finite:
        k = trajectory.first_nonfinite
        raise AssertionError(
            f"{problem!r}: the run became non-finite at step {k} "
            f"({label} = {float(curve[k]):.6g}); expected convergence to {tol:g}"
        )
    floor = numerical_floor(problem, "gap", trajectory.dtype)
    k = _negative_gap_step(trajectory.gap, floor)
    if k is not None:
        raise AssertionError(
            f"{problem!r}: f(x_k) - f* = {float(trajectory.gap[k]):.6g} < 0 at step {k}, below "
            f"minus the noise floor {floor:.6g}: {_NEGATIVE_GAP}"
        )
    start, final = float(curve[0]), float(curve[-1])
    threshold = tol * abs(start) if relative else tol
    if not final <= threshold:
        best = int(np.nanargmin(curve))
        scale = f" x {label} at step 0 ({start:.6g})" if relative else ""
        raise AssertionError(
            f"{problem!r}: not converged after {steps} steps: {label} = {final:.6g} at step "
            f"{steps} > tol {tol:g}{scale} = {threshold:.6g} (best {float(curve[best]):.6g} at "
            f"step {best})"
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
    violating step, the observed value and the bound there. Returns the certificate.

    Example::

        >>> from theory.bounds import gd_bound
        >>> problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])  # f(x) = x²/2
        >>> sgd = lambda p: torch.optim.SGD(p, lr=0.5)  # gap 0.5 * 0.25^k <= 1/(2 * 0.5 k)
        >>> assert_bound_holds(problem, sgd, 5, gd_bound(problem, 0.5)).status
        'held'
    """
    certificate = certify(problem, make_optimizer, steps, bound, **certify_options)
    if not certificate.held:
        raise AssertionError(f"{problem!r}: {certificate.violation_message()}")
    return certificate


def assert_rate(
    certificate: Certificate, slack: float = 0.0, *, at_least: float | None = None
) -> None:
    """Assert that the fitted rate is no worse than the bound's predicted rate (allowing for its
    polynomial factor, see ``Certificate.rate_consistent``) times (1 + ``slack``) and the
    rounding factor ``certificate.rate_rounding_factor``, and, with ``at_least``, no better
    than ``at_least`` (to show a rate is attained, not just bounded).

    The rounding factor is (1 + rate_rtol) exp(rate_rounding): rate_rtol = 100 ε of the run's
    dtype (2.2e-14 for float64) for the fit's own arithmetic, and rate_rounding the most that
    the rounding of the iterates can move the fitted log-rate, derived from the fitting window:
    each value v_k is taken as uncertain by its change when the point moves by
    δ = x_star_tol + min(1e4, κ) ε (||x*|| + ||x0 - x*||) (plus the float64 rounding of a gap),
    and the slope's least-squares weights w_k turn that into Σ |w_k| |log(1 - η_k)|. It is
    negligible while the window stays far above the noise floor and grows as the window
    nears it, so a run that attains the predicted rate passes at slack = 0 however long it
    runs (plain GD at 2/(mu + L) over 5000 steps), while a run 1 % slower than the bound, or
    a stalled one, fails.

    Fails (AssertionError) on a certificate whose bound does not apply to the run (its rate
    says nothing about it) and when no rate could be fitted (fewer than 3 steps above the
    numerical floor: the run reached it at once, or stopped). ``slack`` must be a non-negative
    finite number, ``at_least`` a positive one.

    Example::

        >>> from theory.bounds import gd_optimal_step_bound
        >>> problem = Quadratic([[3.0, 0.0], [0.0, 1.0]], x_star=[0.0, 0.0], x0=[1.0, 1.0])
        >>> sgd = lambda p: torch.optim.SGD(p, lr=0.5)  # both modes shrink by |1 - 0.5 λ| = 0.5
        >>> certificate = assert_bound_holds(problem, sgd, 20, gd_optimal_step_bound(problem))
        >>> assert_rate(certificate, at_least=0.49)  # rate (3 - 1)/(3 + 1) attained
        >>> round(certificate.fitted_rate, 6)
        0.5
    """
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
    rounding = certificate.rate_rounding_factor
    tolerance = (1 + slack) * rounding
    described = (
        f"rounding {rounding - 1:.3g} (fit {certificate.rate_rtol:.3g}, iterates "
        f"{certificate.rate_rounding:.3g})"
    )
    if not certificate.rate_consistent(slack) and bound.direction == "lower":
        raise AssertionError(
            f"bound {bound.name!r}: fitted rate {fitted:.12g} per step is below the predicted "
            f"growth {certificate.predicted_rate:.12g} / ((1 + {slack:g}) (1 + {described})) "
            f"= {certificate.predicted_rate / tolerance:.12g}"
        )
    if not certificate.rate_consistent(slack):
        limit = certificate.predicted_rate * certificate.rate_allowance * tolerance
        raise AssertionError(
            f"bound {bound.name!r}: fitted rate {fitted:.12g} per step exceeds the predicted "
            f"{certificate.predicted_rate:.12g} x allowance {certificate.rate_allowance:.6g} "
            f"x (1 + {slack:g}) x (1 + {described}) = {limit:.12g}"
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
    U the first d columns of a Haar rotation and V a Haar rotation, both seeded; computed on one
    torch thread, so X is the same bits whatever ``torch.get_num_threads()`` is."""
    generator = _generator(seed)
    U = _haar_rotation(n, generator)[:, : eigenvalues.size]
    V = _haar_rotation(eigenvalues.size, generator)
    singular = np.sqrt(n * eigenvalues)
    with _one_thread():  # (the product's rounding must not depend on the thread count)
        return ((U * torch.as_tensor(singular, dtype=DTYPE)) @ V.T).numpy()


def quadratic_problem(kappa: float = 10.0, seed: int = 0, dim: int = 10) -> Quadratic:
    """``Quadratic.from_condition_number(dim, kappa, L=1, seed=seed)``: eigenvalues spaced linearly
    from 1/kappa to 1, so ``problem.kappa == kappa``.

    >>> quadratic_problem(kappa=100.0).kappa
    100.0
    """
    return Quadratic.from_condition_number(dim, kappa, seed=seed)


LOGISTIC_KAPPA_LIMIT = 1e5
"""The largest ``kappa`` of :func:`logistic_problem`: with l2 = 1 / (kappa - 1), L = 1 + l2 and
the solver polishing x* until ||∇f(x*)|| <= 1e-15 ||x*|| L, strong convexity certifies
||x* - w*|| <= ||∇f(x*)|| / l2 <= 1e-15 kappa ||x*||, within the 1e-10 relative accuracy that
``LogisticRegression`` requires exactly when kappa <= 1e5."""


def least_squares_kappa_limit(dim: int) -> float:
    """The largest ``kappa`` :func:`least_squares_problem` accepts for ``dim`` features:
    1 / (1000 dim ε), ε = 2.2e-16 (4.5e11 for dim = 10). The Gram matrix's eigenvalues are
    computed in float64 to about dim ε λ_max, and ``LeastSquares`` counts those below
    100 dim ε λ_max as 0; at this limit mu = 1/kappa is 10 times above that, and L / mu
    equals kappa to a relative error of about kappa dim ε (<= 1e-3).

    >>> f"{least_squares_kappa_limit(10):.3g}"
    '4.5e+11'
    """
    dim = _integer("dim", dim, 1)
    return 1.0 / (1000 * dim * float(np.finfo(np.float64).eps))


def least_squares_problem(
    kappa: float = 10.0, seed: int = 0, dim: int = 10, n: int = 50
) -> LeastSquares:
    """``LeastSquares`` on ``n`` seeded rows whose Gram matrix X^T X / n has eigenvalues spaced
    linearly from 1/kappa to 1, targets y = X w + 0.1 noise (f* > 0). L = 1 and mu = 1/kappa
    up to float64's rounding of the eigenvalues (about dim ε), so L / mu = kappa to a relative
    error of about kappa dim ε: 2e-15 at kappa = 1 and dim = 10, 2e-9 at kappa = 1e6. A kappa
    above ``least_squares_kappa_limit(dim)`` = 1 / (1000 dim ε) (4.5e11 at dim = 10), where
    mu would drown in that rounding, raises ValueError; use :func:`quadratic_problem` (exact
    spectrum) beyond it.

    >>> problem = least_squares_problem(kappa=100.0)
    >>> round(problem.kappa, 6), problem.x_star.shape
    (100.0, torch.Size([10]))
    """
    kappa, dim = _check_kappa(kappa), _integer("dim", dim, 1)
    n = _integer("n", n, dim)
    limit = least_squares_kappa_limit(dim)
    if kappa > limit:
        raise ValueError(
            f"kappa must be <= {limit:.4g} for least_squares_problem with dim={dim} "
            f"(1 / (1000 dim eps): beyond it mu = 1/kappa is lost in float64's rounding of "
            f"the Gram eigenvalues), got kappa={kappa!r}; quadratic_problem keeps any kappa"
        )
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
    L = 1 + l2 and mu = l2 (1 < kappa <= ``LOGISTIC_KAPPA_LIMIT`` = 1e5).

    Labels are the signs of a seeded linear model plus standard normal noise. The noise is
    small next to the model's margins, so the data are often linearly separable (seed 0 at
    the default size is; more so as dim approaches n). On separable data only the ridge keeps
    x* finite: ||x*|| grows like log kappa and f flattens around it, which is why kappa is
    limited (see ``LOGISTIC_KAPPA_LIMIT``): a larger kappa raises ValueError.

    >>> problem = logistic_problem(kappa=50.0)
    >>> round(problem.kappa, 6)
    50.0
    """
    kappa, dim = _check_kappa(kappa, strict=True), _integer("dim", dim, 1)
    n = _integer("n", n, dim)
    if kappa > LOGISTIC_KAPPA_LIMIT:
        raise ValueError(
            f"kappa must be <= {LOGISTIC_KAPPA_LIMIT:g} for logistic_problem (l2 = 1/(kappa - 1) "
            f"= {1.0 / (kappa - 1.0):.3g} is too small a ridge for x* to be certified to 1e-10 "
            f"relative accuracy), got kappa={kappa!r}"
        )
    X = _data_with_spectrum(n, 4.0 * np.linspace(0.1, 1.0, dim), seed)
    generator = torch.Generator().manual_seed(seed + 1_000_003)
    w = torch.randn(dim, generator=generator, dtype=DTYPE).numpy()
    noise = torch.randn(n, generator=generator, dtype=DTYPE).numpy()
    y = np.where(X @ w + noise >= 0, 1.0, -1.0)
    try:
        return LogisticRegression(X, y, l2=1.0 / (kappa - 1.0), seed=seed)
    except RuntimeError as err:  # (not seen up to the limit; the solver's polishing stalled)
        raise ValueError(
            f"logistic_problem(kappa={kappa!r}, seed={seed!r}, dim={dim}, n={n}): x* could not "
            f"be certified with l2 = 1/(kappa - 1) ({err}); use a smaller kappa or another seed"
        ) from err
