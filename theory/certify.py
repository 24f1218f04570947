"""Run any torch optimizer on a problem with a known answer and certify a bound along the run.

``run(problem, make_optimizer, steps)`` records the trajectory x_0, ..., x_steps (k counts updates
already made); ``certify(problem, make_optimizer, steps, bound=...)`` compares the measured
quantity with the bound at every step and returns a ``Certificate``: whether the bound held at
every step, the first violating step, the worst observed/bound ratio, the fitted empirical rate
beside the predicted one, the curves, and ``plot()``.

A run that produces NaN or inf is never certified: ``held`` is False and ``first_violation`` is
the first non-finite step. Neither is a run the bound says nothing about: when the optimizer's
hyperparameters at some update (read from its param group just before each ``step``) differ from
those the bound assumes (``Bound.hyperparameters``; a missing one counts as different), or the
bound was built for another problem, the certificate is *not applicable* (``applicable`` False,
``held`` False, the reason in ``not_applicable``). A gap f(x_k) - f* below minus the noise floor
means the problem's f* is wrong (above the true minimum): it is flagged
(``negative_gap_step``) and the certificate does not hold.

Bounds on an expectation over a stochastic oracle (``Bound.expectation``) are certified with
``seeds=``: one run per oracle seed (``problem.reseeded(seed)``), the bound compared with the
mean over seeds at every step, and a 95 % Student-t confidence band around the mean reported
(``band_lower``, ``band_upper``): ``held`` means the sample mean stayed below the bound;
``refuted_step`` is the first step where even the band's lower edge is above it (a violation
that sampling noise does not explain).
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.sparse import issparse as scipy_sparse_issparse

from theory.bounds import QUANTITIES, Bound, _non_negative
from theory.problems import DTYPE, Problem, _integer

__all__ = [
    "Certificate",
    "Trajectory",
    "certify",
    "default_rtol",
    "fit_order",
    "fit_rate",
    "lr_schedule",
    "not_applicable_reason",
    "numerical_floor",
    "rate_rtol",
    "run",
]

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
Observe = Callable[[torch.Tensor, torch.optim.Optimizer], torch.Tensor]
BeforeStep = Callable[[torch.optim.Optimizer, int], None]

BAND_LEVEL = 0.95


def _check_dtype(dtype: Any) -> None:
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(
            f"dtype must be a floating torch.dtype (torch.float64, torch.float32, ...), got "
            f"dtype={dtype!r}"
        )


def _check_problem(problem: Any) -> None:
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a theory.problems.Problem, got {type(problem).__name__}")


@dataclass
class Trajectory:
    """The points of a run and the quantities measured on them.

    ``points[k]`` is x_k (k = 0..steps, float64, NaN rows after a non-finite step), ``gap[k]`` =
    f(x_k) - f*, ``distance[k]`` = ||x_k - x*||, ``grad_sq[k]`` = ||∇f(x_k)||² (a subgradient's
    for non-smooth problems), ``online_loss[t]`` = f_t(x_t) for t < steps (the loss the
    optimizer was given at update t; f(x_t) for offline problems), ``hyperparameters[name][t]``
    the value of each scalar setting of the optimizer's param group when update t ran (after
    ``before_step``), ``first_nonfinite`` the first k whose point or loss is NaN/inf (None if
    all finite), ``optimizer`` the names of the optimizer's class and of its base classes
    (``type(optimizer).__mro__``, the class first), ``dtype`` the dtype of the parameter the
    optimizer updated (the points are stored in float64 whatever it was).

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])  # f(x) = x²/2
        >>> trajectory = run(problem, lambda p: torch.optim.SGD(p, lr=0.5), steps=2)  # x_k = 0.5^k
        >>> trajectory.steps, trajectory.distance.tolist(), trajectory.gap.tolist()  # x_k²/2
        (2, [1.0, 0.5, 0.25], [0.5, 0.125, 0.03125])
    """

    points: torch.Tensor
    gap: np.ndarray
    distance: np.ndarray
    online_loss: np.ndarray
    first_nonfinite: int | None
    grad_sq: np.ndarray | None = None
    hyperparameters: dict[str, np.ndarray] = field(default_factory=dict)
    optimizer: tuple[str, ...] = ()
    dtype: torch.dtype = DTYPE

    @property
    def finite(self) -> bool:
        return self.first_nonfinite is None

    @property
    def steps(self) -> int:
        return self.gap.size - 1

    def quantity(self, name: str) -> np.ndarray:
        """The curve of ``"gap"``, ``"distance"``, ``"distance_sq"`` or ``"grad_sq_min"``
        (min_{j<k} ||∇f(x_j)||², and ||∇f(x0)||² at k = 0)."""
        if name == "gap":
            return self.gap
        if name == "distance":
            return self.distance
        if name == "distance_sq":
            return self.distance**2
        if name == "grad_sq_min":
            if self.grad_sq is None:
                raise ValueError("this trajectory has no gradient norms (grad_sq)")
            shifted = np.concatenate([self.grad_sq[:1], self.grad_sq[:-1]])
            return np.fmin.accumulate(shifted)
        raise ValueError(f"quantity must be one of {sorted(QUANTITIES)}, got quantity={name!r}")


def _group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict[str, Any]:
    return next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))


def _scalar_settings(group: dict[str, Any]) -> dict[str, float]:
    """The group's scalar settings as floats (bools as 0/1; tensors read on the host: a
    deliberate sync point, outside the optimizer's step)."""
    values = {}
    for name, value in group.items():
        if name == "params":
            continue
        scalar = isinstance(value, (bool, int, float, np.integer, np.floating))
        if scalar or (torch.is_tensor(value) and value.numel() == 1):
            values[name] = float(value)
    return values


def run(
    problem: Problem,
    make_optimizer: OptimizerFactory,
    steps: int,
    *,
    observe: Observe | None = None,
    before_step: BeforeStep | None = None,
    dtype: torch.dtype = DTYPE,
    gradients: bool = False,
) -> Trajectory:
    """Run ``make_optimizer([x])`` for ``steps`` updates on ``problem`` from ``problem.x0``.

    Update t calls ``optimizer.step(closure)`` where the closure zeroes the gradient and
    back-propagates ``problem.loss_at(x, t)`` (so closure-based optimizers such as LBFGS work),
    then projects x onto the feasible set (``problem.project``). ``before_step(optimizer, t)``,
    if given, runs before update t (to set a step-size schedule, e.g. lr = α/√(t+1), or a
    momentum schedule in ``param_groups``); the settings of the parameter's group are then
    recorded (``Trajectory.hyperparameters``). After each update the point
    ``observe(x, optimizer)`` (default: x itself) is recorded. The parameter has ``dtype``
    (float64 by default); the recorded points and every measurement are float64. With
    ``gradients`` the full gradient norm ||∇f(x_k)||² of every point is measured too
    (``Trajectory.grad_sq``, needed by ``"grad_sq_min"`` bounds). The run stops at the first
    non-finite point or loss; the remaining rows are NaN.

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])  # f(x) = x²/2
        >>> trajectory = run(problem, lambda p: torch.optim.SGD(p, lr=0.5), steps=3)
        >>> trajectory.points[:, 0].tolist()  # x_{k+1} = x_k - 0.5 x_k
        [1.0, 0.5, 0.25, 0.125]
        >>> trajectory.hyperparameters["lr"].tolist(), trajectory.optimizer[0]
        ([0.5, 0.5, 0.5], 'SGD')
    """
    _check_problem(problem)
    steps = _integer("steps", steps, 1, "a positive integer")
    _check_dtype(dtype)
    if not callable(make_optimizer):
        raise TypeError(
            f"make_optimizer must be callable as make_optimizer(params), got {make_optimizer!r}"
        )
    if before_step is not None and not callable(before_step):
        raise TypeError(
            f"before_step must be callable as before_step(optimizer, t), got {before_step!r}"
        )
    param = problem.parameter(dtype)
    optimizer = make_optimizer([param])
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"make_optimizer(params) must return a torch.optim.Optimizer, got "
            f"{type(optimizer).__name__}"
        )
    read = observe if observe is not None else (lambda p, _opt: p.detach().clone())

    points = torch.full((steps + 1, problem.dim), math.nan, dtype=DTYPE)
    online_loss = np.full(steps, math.nan)
    settings: dict[str, np.ndarray] = {}
    first_nonfinite: int | None = None

    def record(k: int) -> bool:
        point = read(param, optimizer).detach().to(DTYPE).reshape(-1)
        points[k] = point
        return bool(torch.isfinite(point).all())

    if not record(0):
        first_nonfinite = 0
    for t in range(steps):
        if first_nonfinite is not None:
            break
        with torch.no_grad():
            online_loss[t] = float(problem.loss_at(param.detach(), t))
        if not math.isfinite(online_loss[t]):
            first_nonfinite = t
            break

        def closure(t: int = t) -> torch.Tensor:
            optimizer.zero_grad()
            with torch.enable_grad():
                loss = problem.loss_at(param, t)
                loss.backward()
            return loss

        if before_step is not None:
            before_step(optimizer, t)
        for name, value in _scalar_settings(_group_of(optimizer, param)).items():
            settings.setdefault(name, np.full(steps, math.nan))[t] = value
        optimizer.step(closure)
        with torch.no_grad():
            param.copy_(problem.project(param))
        if not record(t + 1):
            first_nonfinite = t + 1

    gap, distance, grad_sq = _measure(problem, points, gradients)
    if first_nonfinite is None:
        bad = ~np.isfinite(gap)
        if bad.any():
            first_nonfinite = int(np.argmax(bad))
    return Trajectory(
        points=points,
        gap=gap,
        distance=distance,
        online_loss=online_loss,
        first_nonfinite=first_nonfinite,
        grad_sq=grad_sq,
        hyperparameters=settings,
        optimizer=tuple(cls.__name__ for cls in type(optimizer).__mro__),
        dtype=dtype,
    )


def _scaled_norm(rows: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm of every row; where torch's (a plain sum of squares, which overflows
    once entries pass about 1e154 in float64) is infinite for a finite row, s ||row / s|| with
    s = max |row|, finite up to the overflow threshold of the norm itself."""
    norms = torch.linalg.vector_norm(rows, dim=1)
    overflow = ~torch.isfinite(norms) & torch.isfinite(rows).all(dim=1)
    if overflow.any():
        big = rows[overflow]
        scale = big.abs().amax(dim=1, keepdim=True)
        norms[overflow] = torch.linalg.vector_norm(big / scale, dim=1) * scale.squeeze(1)
    return norms


def _measure(
    problem: Problem, points: torch.Tensor, gradients: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """f(x) - f*, ||x - x*|| and (with ``gradients``) ||∇f(x)||² of every finite row of
    ``points`` (NaN elsewhere; None for the gradients when not asked)."""
    count = points.shape[0]
    gap, distance = np.full(count, math.nan), np.full(count, math.nan)
    grad_sq = np.full(count, math.nan) if gradients else None
    valid = torch.isfinite(points).all(dim=1)
    rows = torch.nonzero(valid).flatten().tolist()
    with torch.no_grad():
        for k in rows:
            gap[k] = float(problem.loss(points[k])) - problem.f_star
        distance[rows] = _scaled_norm(points[rows] - problem.x_star).numpy()
    if gradients:
        for k in rows:
            grad_sq[k] = float(problem.grad(points[k]).square().sum())
    return gap, distance, grad_sq


def default_rtol(dtype: torch.dtype = DTYPE) -> float:
    """The default relative tolerance of ``certify`` for a run in ``dtype``: max(1e-9, 1e4 ε)
    with ε the machine epsilon of ``dtype`` (1e-9 for float64, 1.19e-3 for float32; 1e4 ε as in
    ``numerical_floor``: the rounding of the loss, of x - x* and of the optimizer's own
    arithmetic, compounded over a run).

    >>> default_rtol(torch.float64), round(default_rtol(torch.float32), 6)
    (1e-09, 0.001192)
    """
    _check_dtype(dtype)
    return max(1e-9, 1e4 * float(torch.finfo(dtype).eps))


def rate_rtol(dtype: torch.dtype = DTYPE) -> float:
    """The rounding tolerance of the fit's own arithmetic for a run in ``dtype``: 100 ε (2.2e-14
    for float64, 1.19e-5 for float32), the error of a least-squares slope through logarithms
    of values that are themselves exact (GD at |1 - lr L| = 1.5 per step gives
    1.4999999999999998). ``Certificate.rate_consistent`` allows this factor on top of its
    ``slack``, together with the rounding of the iterates themselves
    (``Certificate.rate_rounding``), which is derived from the fitting window: a run that
    attains its predicted rate exactly passes at slack = 0 with both. It is far below
    ``default_rtol`` on purpose: a rate is a ratio of values fitted over many steps, and a
    looser factor would pass a stalled run (rate 1) against a predicted rate just below 1.

    >>> rate_rtol(torch.float64) == 100 * torch.finfo(torch.float64).eps
    True
    """
    _check_dtype(dtype)
    return 100 * float(torch.finfo(dtype).eps)


_NEGATIVE_GAP = "the problem's f* is above the true minimum (or x* is wrong)"


def _negative_gap_step(gap: np.ndarray, floor: float) -> int | None:
    """The first step k with f(x_k) - f* < -``floor`` (below minus the noise floor: then
    ``_NEGATIVE_GAP``), else None."""
    below = np.isfinite(gap) & (np.asarray(gap) < -floor)
    return int(np.argmax(below)) if below.any() else None


_MEASURE_EPS = float(torch.finfo(DTYPE).eps)
"""The machine epsilon of every measurement: ``_measure`` evaluates float64 points in float64."""


def _distance_factor(problem: Problem, dtype: torch.dtype) -> float:
    """F of the distance floor x_star_tol + F ε (||x*|| + ||x0 - x*||): 1e4 for float64 (and
    wider) runs; min(1e4, 100 κ) for narrower ones (κ = L / mu, inf when mu = 0)."""
    if float(torch.finfo(dtype).eps) <= _MEASURE_EPS:
        return 1e4
    kappa = float(problem.kappa)
    return min(1e4, 100 * kappa) if kappa >= 1 else 1e4  # (NaN or < 1: no information)


def _scale(problem: Problem) -> float:
    """||x*|| + ||x0 - x*||: the size of the numbers an iterate is made of."""
    dist0 = float(torch.linalg.vector_norm(problem.x0 - problem.x_star))
    return float(problem.x_star.norm()) + dist0


def _floor_terms(problem: Problem, quantity: str, distance: float) -> tuple[float, float]:
    """(linear, quadratic): the change of a measured ``quantity`` caused by moving the point
    by ``distance`` from x* plus the float64 rounding of the measurement itself, split into a
    part that enters linearly (a value v becomes v + linear) and one that enters as a square
    (v becomes (√v + √quadratic)²). Their sum is the quantity's noise level at that distance."""
    if quantity == "distance":
        return distance, 0.0
    if quantity == "distance_sq":
        return 0.0, distance**2
    if quantity == "gap":
        with torch.no_grad():
            gap0 = abs(float(problem.loss(problem.x0)) - problem.f_star)
        rounding = 1e4 * _MEASURE_EPS * (abs(problem.f_star) + gap0)
        if distance == 0:
            return rounding, 0.0
        smooth, lipschitz = problem.L * distance**2 / 2, problem.G * distance
        if smooth <= lipschitz:
            return rounding, smooth
        return rounding + lipschitz, 0.0
    if quantity == "grad_sq_min":
        start = float(problem.grad(problem.x0).square().sum())
        finite = math.isfinite(problem.L) and distance > 0
        curvature = (problem.L * distance) ** 2 if finite else 0.0
        return 1e4 * _MEASURE_EPS * start, curvature
    raise ValueError(f"quantity must be one of {sorted(QUANTITIES)}, got quantity={quantity!r}")


def numerical_floor(problem: Problem, quantity: str, dtype: torch.dtype = DTYPE) -> float:
    """The level below which a measurement of ``quantity`` on a run in ``dtype`` is rounding
    noise.

    Every point is measured in float64 (``run`` stores float64 points whatever the run's
    dtype), so the run's dtype enters only through the distance floor d, how far from x* a
    point of such a run can be resolved: d = x_star_tol + F ε (||x*|| + ||x0 - x*||), ε the
    machine epsilon of ``dtype`` (2.2e-16 for float64, 1.2e-7 for float32). F = 1e4 for
    float64 (a generous allowance for any optimizer's compounded rounding, 2.2e-12 relative);
    for narrower dtypes, where a flat 1e4 ε (1.2e-3 for float32) would hide real errors,
    F = min(1e4, 100 κ) with κ = L / mu (1e4 when mu = 0): a float32 run of gradient descent
    stalls about 0.1 κ ε (||x*|| + ||x0 - x*||) from x* (errors of ε per step, contracted at
    1 - 1/κ), accelerated methods nearer.

    distance: d; distance_sq: d²; gap: 1e4 ε64 (|f*| + f(x0) - f*) (the float64 rounding of
    the loss) + min(L d²/2, G d) (the gap of a point d away from x*: quadratic growth for
    smooth f, Lipschitz for non-smooth); grad_sq_min: 1e4 ε64 ||∇f(x0)||² + (L d)² (0
    curvature term when L is infinite). f* shifts no gradient, so it enters only the
    measurement's rounding, at float64's ε whatever the run's dtype.

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])  # ||x*|| = 0, ||x0 - x*|| = 1
        >>> d = 1e4 * torch.finfo(torch.float64).eps * (0.0 + 1.0)  # x_star_tol = 0
        >>> numerical_floor(problem, "distance") == d
        True
        >>> numerical_floor(problem, "distance_sq") == d**2
        True
    """
    _check_dtype(dtype)
    eps = float(torch.finfo(dtype).eps)
    distance_floor = problem.x_star_tol + _distance_factor(problem, dtype) * eps * _scale(problem)
    linear, quadratic = _floor_terms(problem, quantity, distance_floor)
    return linear + quadratic


def _point_rounding(problem: Problem, dtype: torch.dtype) -> float:
    """How far rounding moves the iterates of a run in ``dtype`` from their exact-arithmetic
    path: x_star_tol (x* itself) + min(1e4, κ) ε (||x*|| + ||x0 - x*||) (an error of about ε
    per step, contracted at 1 - 1/κ per step by a convergent method; gradient descent's is
    measured at about 0.1 κ ε). Used for the rate's rounding allowance, not for the floor."""
    eps = float(torch.finfo(dtype).eps)
    kappa = float(problem.kappa)
    factor = min(1e4, kappa) if kappa >= 1 else 1e4
    return problem.x_star_tol + factor * eps * _scale(problem)


def _rate_rounding(
    problem: Problem, quantity: str, dtype: torch.dtype, values: np.ndarray, window: np.ndarray
) -> float:
    """The most the rounding of the iterates can move the least-squares slope of log v_k over
    ``window`` (see ``Certificate.rate_rounding``): Σ_k |w_k| |log(1 - η_k)|, w_k the slope's
    weights (k - k̄) / Σ (k - k̄)² and η_k the relative perturbation of v_k caused by moving
    the point by ``_point_rounding`` (plus the measurement's rounding); inf where η_k >= 1."""
    if window.size < 3:
        return 0.0
    linear, quadratic = _floor_terms(problem, quantity, _point_rounding(problem, dtype))
    v = np.asarray(values, dtype=np.float64)[window]
    eta = linear / v + 2 * np.sqrt(quadratic / v) + quadratic / v
    if not np.all(eta < 1):
        return math.inf
    k = window.astype(np.float64)
    centred = k - k.mean()
    weights = np.abs(centred) / float(np.sum(centred**2))
    return float(np.sum(weights * -np.log1p(-eta)))


def _tail(values: np.ndarray, floor: float, start: int | None) -> np.ndarray:
    """Indices of the fitting window. The useful run ends at the last finite value above
    10 x floor (beyond it the curve is rounding noise); the window runs from ``start`` (default:
    half of that useful length) to there, keeping finite values above 10 x floor."""
    steps = np.arange(values.size)
    above = np.isfinite(values) & (values > 10 * floor)
    if not above.any():
        return steps[:0]
    last = int(steps[above][-1])
    first = last // 2 if start is None else start
    return steps[above & (steps >= max(first, 1)) & (steps <= last)]


def fit_rate(values: np.ndarray, floor: float = 0.0, start: int | None = None) -> float:
    """exp(slope) of the least-squares line through log(values[k]) over the fitting window
    (the second half of the part of the run above 10 x floor, or from ``start``): the empirical
    per-step factor. NaN when fewer than 3 points remain.

    Example::

        >>> round(fit_rate(3.0 * 0.5 ** np.arange(10)), 6)  # values 3 * 0.5^k
        0.5
        >>> math.isnan(fit_rate([1.0, 0.5]))  # fewer than 3 points
        True
    """
    values = np.asarray(values, dtype=np.float64)
    window = _tail(values, floor, start)
    if window.size < 3:
        return math.nan
    slope = np.polyfit(window.astype(np.float64), np.log(values[window]), 1)[0]
    return float(math.exp(slope))


def fit_order(values: np.ndarray, floor: float = 0.0, start: int | None = None) -> float:
    """Slope of log(values[k]) against log(k) on the same window as ``fit_rate``: the empirical
    power of a sublinear rate (about -1 for GD's gap, -2 for Nesterov's).

    Example::

        >>> k = np.arange(1, 21)
        >>> round(fit_order(np.r_[5.0, 5.0 / k**2]), 6)  # values[k] = 5/k² (k = 0 not fitted)
        -2.0
    """
    values = np.asarray(values, dtype=np.float64)
    window = _tail(values, floor, start)
    if window.size < 3:
        return math.nan
    return float(np.polyfit(np.log(window.astype(np.float64)), np.log(values[window]), 1)[0])


@dataclass
class Certificate:
    """The result of ``certify``.

    ``held``: the bound applied to the run (see ``applicable``), was above the noise floor
    ``atol`` at one step at least (else nothing was compared: ``status`` "not checked"), and
    held at every step with a finite run and a consistent f*; ``first_violation``: first step k
    where it did not (or where the run became non-finite), else None; ``worst_ratio``,
    ``worst_step``: the largest observed/bound (upper bounds) or bound/observed (lower bounds)
    over the steps where the bound is finite and above ``atol``, and where; ``fitted_rate`` /
    ``predicted_rate``: the empirical per-step factor on the second half of the part of the run
    above the numerical floor, and the bound's asymptotic one; ``rate_allowance``: the factor by
    which a k^p rate^k bound's fitted rate may exceed ``rate`` (see ``rate_consistent``);
    ``fitted_order`` / ``predicted_order`` for sublinear bounds; ``steps``, ``observed``,
    ``bound_values``: the curves (``observed`` is the mean over seeds with ``seeds``); ``rtol``,
    ``atol``: the tolerance used (observed <= bound (1 + rtol) + atol for upper bounds).

    ``applicable`` / ``not_applicable``: False and the reason when the run's problem or
    optimizer settings are not those the bound assumes (then ``held`` is False and nothing
    was compared). ``negative_gap_step``: the first step where f(x_k) - f* < -atol_gap (the
    stated f* is above the true minimum), else None. ``seeds``: the oracle seeds (empty for a
    single run of the problem as given); ``band_lower``, ``band_upper``: the 95 % Student-t
    confidence band of the mean (None for one run); ``refuted_step``: the first step where the
    band's lower edge is above an upper bound (below a lower one), else None;
    ``trajectories``: every run (``trajectory`` is the first). ``rate_rounding``: the most the
    rounding of the iterates can move the log of the fitted rate (see ``rate_consistent``).

    Example::

        >>> from theory.bounds import gd_bound
        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])  # f(x) = x²/2
        >>> sgd = lambda p: torch.optim.SGD(p, lr=0.5)  # gap 0.5 * 0.25^k, bound 1/k
        >>> certificate = certify(problem, sgd, 4, gd_bound(problem, 0.5).scaled(0.1))
        >>> certificate.status, certificate.first_violation  # 0.125 > 0.1/1 at k = 1
        ('violated', 1)
    """

    bound: Bound
    steps: np.ndarray
    observed: np.ndarray
    bound_values: np.ndarray
    held: bool
    first_violation: int | None
    worst_ratio: float
    worst_step: int | None
    fitted_rate: float
    predicted_rate: float | None
    rate_allowance: float
    fitted_order: float
    predicted_order: float | None
    rtol: float
    atol: float
    trajectory: Trajectory
    applicable: bool = True
    not_applicable: str | None = None
    negative_gap_step: int | None = None
    seeds: tuple[int, ...] = ()
    band_lower: np.ndarray | None = None
    band_upper: np.ndarray | None = None
    refuted_step: int | None = None
    trajectories: list[Trajectory] = field(default_factory=list)
    rate_rounding: float = 0.0

    @property
    def finite(self) -> bool:
        return all(t.finite for t in (self.trajectories or [self.trajectory]))

    @property
    def compared(self) -> bool:
        """Whether the bound was finite and above the noise floor ``atol`` at one step at least
        (with a finite observed value there): else the run was compared with nothing but
        rounding noise, and the certificate is vacuous."""
        values, observed = self.bound_values, self.observed
        with np.errstate(invalid="ignore"):
            usable = np.isfinite(values) & np.isfinite(observed) & (values > self.atol)
        return bool(usable.any())

    @property
    def status(self) -> str:
        """``"held"``, ``"violated"``, ``"not applicable"`` or ``"not checked"`` (no step had
        the bound above the noise floor, and nothing else went wrong: a vacuous run, never
        certified)."""
        if not self.applicable:
            return "not applicable"
        if self.held:
            return "held"
        if self._vacuous:
            return "not checked"
        return "violated"

    @property
    def _vacuous(self) -> bool:
        """Not certified only because nothing was compared above the noise floor."""
        return (
            self.applicable
            and not self.compared
            and self.finite
            and self.first_violation is None
            and self.negative_gap_step is None
            and bool(np.isfinite(self.bound_values).any())
        )

    @property
    def rate_rtol(self) -> float:
        """``rate_rtol(dtype)`` of the run's dtype: the rounding allowed on the fitted rate."""
        return rate_rtol(self.trajectory.dtype)

    @property
    def rate_rounding_factor(self) -> float:
        """(1 + rate_rtol) exp(rate_rounding): the whole rounding allowance of the fitted rate."""
        return (1 + self.rate_rtol) * math.exp(self.rate_rounding)

    def rate_consistent(self, slack: float = 0.0) -> bool:
        """fitted_rate <= predicted_rate x rate_allowance x (1 + slack) x rounding (upper
        bounds), or >= predicted_rate / ((1 + slack) rounding) (lower bounds), with rounding =
        ``rate_rounding_factor`` = (1 + rate_rtol) exp(rate_rounding); a run whose rate equals
        the prediction passes at slack = 0.

        The rounding: ``rate_rtol`` (2.2e-14 for a float64 run, 1.19e-5 for float32, see
        ``rate_rtol``) is the fit's own arithmetic. ``rate_rounding`` is that of the iterates,
        which grows as the window nears the noise floor: the fitted log-rate is the slope
        Σ_k w_k log v_k over the window, w_k = (k - k̄) / Σ (k - k̄)², so a relative error η_k of
        each value moves it by at most Σ_k |w_k| |log(1 - η_k)|. η_k is the relative change of
        v_k when the point moves by δ = x_star_tol + min(1e4, κ) ε (||x*|| + ||x0 - x*||) (ε
        of the run's dtype, κ = L / mu; gradient descent's iterates are measured to stray about
        0.1 κ ε (...) from their exact path) plus the float64 rounding of the measurement:
        δ / v for a distance, 2 √(c / v) + c / v for a value c = δ² (distance²), L δ² / 2 (gap)
        away, 1e4 ε64 (|f*| + f(x0) - f*) / v more for the gap. Far above the floor this is
        negligible, and near it still small next to a real slowdown: GD at 2/(mu + L) on
        ``quadratic_problem(100, dim=20)`` is allowed 2e-13 per step over 300 steps (a window
        ending at 1e-3 of the start) and 7e-7 over 3000 (a window reaching the floor), while a
        run 1 % slower exceeds the rate by 2e-4 and a stalled one by 2e-2, and both fail.

        The polynomial factor: for a curve C k^p q^k, log of it is log C + p log k + k log q and
        the least-squares slope over a window [a, b] is log q + p times the least-squares slope of
        log k, which is a weighted mean of 1/k over the window, hence at most 1/a. So the fitted
        rate of such a curve is at most q exp(p / a): ``rate_allowance`` = exp(p / a) with a the
        first step of the fitting window (1 when p = 0).
        """
        if self.predicted_rate is None or not math.isfinite(self.fitted_rate):
            return False
        tolerance = (1 + slack) * self.rate_rounding_factor
        if self.bound.direction == "lower":
            return self.fitted_rate >= self.predicted_rate / tolerance
        return self.fitted_rate <= self.predicted_rate * self.rate_allowance * tolerance

    def violation_message(self) -> str:
        """One line naming the step, the observed value and the bound (empty when it held), or
        why the bound does not apply, or where f* was contradicted."""
        name = f"bound {self.bound.name!r} ({self.bound.formula})"
        if self.held:
            return ""
        if not self.applicable:
            return f"{name} not applicable: {self.not_applicable}"
        if self.negative_gap_step is not None:
            k = self.negative_gap_step
            gap = min(t.gap[k] for t in (self.trajectories or [self.trajectory]))
            return (
                f"{name} not certified: f(x_k) - f* = {gap:.6g} < 0 at step {k}, below the "
                f"noise floor: {_NEGATIVE_GAP}"
            )
        k = self.first_violation
        if k is None and not np.isfinite(self.bound_values).any():
            return f"{name} did not hold: the bound is finite at no step of the run"
        if k is None:
            top = float(
                np.nanmax(np.where(np.isfinite(self.bound_values), self.bound_values, np.nan))
            )
            return (
                f"{name} not checked: the bound is above the noise floor {self.atol:.6g} at no "
                f"step of the run (largest bound value {top:.6g}), so the run was compared with "
                f"rounding noise only; start farther from x*, run fewer steps or in float64"
            )
        observed = self.observed[k]
        what = QUANTITIES[self.bound.quantity]
        if len(self.seeds) > 1:
            what = f"mean over {len(self.seeds)} seeds of {what}"
        runs = self.trajectories or [self.trajectory]
        broken = [t for t in runs if t.first_nonfinite is not None and t.first_nonfinite <= k]
        if broken or not math.isfinite(observed):
            values = [f"{what} = {float(observed):.6g}"]
            if broken:
                trajectory = min(broken, key=lambda t: t.first_nonfinite)
                k = trajectory.first_nonfinite
                values = [f"{what} = {float(self.observed[k]):.6g}"]
                if self.bound.quantity != "gap":
                    values.append(f"f(x_k) - f* = {float(trajectory.gap[k]):.6g}")
                if k < trajectory.online_loss.size and not math.isfinite(trajectory.online_loss[k]):
                    values.append(
                        f"the loss given to update {k} = {float(trajectory.online_loss[k]):.6g}"
                    )
            return (
                f"{name} not certified: the run produced a non-finite value at step {k} "
                f"({'; '.join(values)})"
            )
        relation = ">" if self.bound.direction == "upper" else "<"
        worst = (
            f"worst ratio {self.worst_ratio:.6g} at step {self.worst_step}"
            if self.worst_step is not None
            else f"the bound is above the noise floor {self.atol:.6g} at no step"
        )
        text = (
            f"{name} violated at step {k}: observed {what} = {observed:.6g} {relation} bound "
            f"{self.bound_values[k]:.6g} ({worst})"
        )
        if self.band_lower is not None:
            band = f"{self.band_lower[k]:.6g} .. {self.band_upper[k]:.6g}"
            refuted = (
                f"; refuted beyond sampling noise from step {self.refuted_step}"
                if self.refuted_step is not None
                else "; within sampling noise (the band contains the bound)"
            )
            text += f", {BAND_LEVEL:.0%} band {band}{refuted}"
        return text

    def summary(self) -> str:
        """One line: the outcome ("held", "FAILED", "NOT CHECKED" when nothing was compared
        above the noise floor), the worst ratio, the fitted beside the predicted rate (or
        order), and the violation message unless it held."""
        if not self.applicable:
            return f"{self.bound.name}: not applicable: {self.not_applicable}"
        if self.predicted_rate is not None:
            fitted = (
                f"fitted rate {self.fitted_rate:.6g}"
                if math.isfinite(self.fitted_rate)
                else "no rate fitted"
            )
            rate = f", {fitted} vs predicted {self.predicted_rate:.6g}"
        else:
            fitted = (
                f"fitted order {self.fitted_order:.3g}"
                if math.isfinite(self.fitted_order)
                else "no order fitted"
            )
            rate = f", {fitted} vs predicted {self.predicted_order}"
        seeds = f" (mean over {len(self.seeds)} seeds)" if len(self.seeds) > 1 else ""
        outcome = "held" if self.held else "NOT CHECKED" if self._vacuous else "FAILED"
        worst = (
            f"worst ratio {self.worst_ratio:.6g}"
            if self.worst_step is not None
            else f"no step with the bound above the noise floor {self.atol:.6g}"
        )
        text = f"{self.bound.name}: {outcome} over {self.steps[-1]} steps{seeds}, {worst}{rate}"
        return text if self.held else text + "; " + self.violation_message()

    def plot(self, path: str | os.PathLike[str] | None = None, ax: Any = None) -> Any:
        """Observed quantity and bound against k on a log scale; the first violation is marked.
        Returns the matplotlib Figure; with ``path`` it is also written there (PNG/PDF/SVG by
        extension, through a temporary file and ``os.replace``)."""
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        figure = None
        if ax is None:
            figure, ax = plt.subplots(figsize=(6, 4))
        else:
            figure = ax.figure
        label = QUANTITIES[self.bound.quantity]
        positive = np.where(self.observed > 0, self.observed, np.nan)
        observed = f"mean over {len(self.seeds)} seeds" if len(self.seeds) > 1 else "observed"
        ax.semilogy(self.steps, positive, label=f"{observed} {label}")
        if self.band_lower is not None:
            ax.fill_between(
                self.steps,
                np.where(self.band_lower > 0, self.band_lower, np.nan),
                np.where(self.band_upper > 0, self.band_upper, np.nan),
                alpha=0.25,
                label=f"{BAND_LEVEL:.0%} t-band of the mean",
            )
        bound_values = np.where(
            np.isfinite(self.bound_values) & (self.bound_values > 0), self.bound_values, np.nan
        )
        ax.semilogy(self.steps, bound_values, "--", label=f"bound: {self.bound.formula}")
        if self.first_violation is not None:
            ax.axvline(
                self.first_violation,
                color="red",
                alpha=0.5,
                label=f"first violation (k={self.first_violation})",
            )
        ax.set_xlabel("k (updates made)")
        ax.set_ylabel(label)
        ax.set_title(f"{self.bound.name}: {self.status}")
        ax.legend(fontsize="small")
        if path is not None:
            _save_atomically(figure, os.fspath(path))
        return figure


def _save_atomically(figure: Any, path: str) -> None:
    """``figure`` saved to ``path`` as the project writes every file
    (``schedulers.files.atomic_write``, which ``theory`` cannot import: ``schedulers`` imports
    ``theory``): a temporary file in the target's folder renamed onto it, with the permissions
    an ordinary ``open`` would leave (a replaced file keeps its own, a new one ``0o666`` less
    the umask), and a symbolic link written through to the file it points to."""
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mask = os.umask(0o022)  # (read by setting it, then put back)
        os.umask(mask)
        mode = 0o666 & ~mask
    directory = os.path.dirname(os.path.abspath(target))
    suffix = os.path.splitext(path)[1] or ".png"
    handle, temporary = tempfile.mkstemp(suffix=suffix, dir=directory)
    os.close(handle)
    try:
        os.chmod(temporary, mode)  # (mkstemp makes it 0o600)
        figure.savefig(temporary)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _equal(a: Any, b: Any) -> bool:
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and torch.equal(a, b)
    if scipy_sparse_issparse(a) or scipy_sparse_issparse(b):
        return (
            scipy_sparse_issparse(a)
            and scipy_sparse_issparse(b)
            and a.shape == b.shape
            and (a != b).nnz == 0
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return bool(a == b)


# attributes that may differ between the same problem's copies: the oracle seed (``reseeded``)
_SEED_ATTRIBUTES = frozenset({"oracle_seed"})


def _problem_difference(a: Any, b: Any) -> str | None:
    """None when ``a`` and ``b`` are the same problem up to its oracle seed, else what differs.

    Compared: the type, every public attribute (the data: ``A`` and its eigenpairs, ``X_data``,
    ``y_data``, ``l2``, ...; x0, x*, f*, L, mu, the sampling ``batch_size``), whether the
    oracle samples, and f(x0) (which catches data held in private attributes). Cost: one pass
    over the data."""
    if a is b:
        return None
    if type(a) is not type(b):
        return f"the type ({type(a).__name__} vs {type(b).__name__})"
    try:
        left, right = vars(a), vars(b)
        names = {n for n in set(left) | set(right) if not n.startswith("_")} - _SEED_ATTRIBUTES
        for name in sorted(names):
            if name not in left or name not in right or not _equal(left[name], right[name]):
                pair = (left.get(name), right.get(name))
                scalars = all(isinstance(v, (int, float, type(None))) for v in pair)
                return f"{name} ({pair[0]!r} vs {pair[1]!r})" if scalars else name
        if bool(a.stochastic) != bool(b.stochastic):
            return f"stochastic ({a.stochastic!r} vs {b.stochastic!r})"
        with torch.no_grad():
            fa, fb = float(a.loss(a.x0)), float(b.loss(b.x0))
        if not (fa == fb or (math.isnan(fa) and math.isnan(fb))):
            return f"f(x0) ({fa!r} vs {fb!r})"
    except (AttributeError, RuntimeError, TypeError, ValueError) as err:
        return f"they cannot be compared ({err})"
    return None


def _show(value: Any) -> str:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return f"{float(array):.6g}"
    return f"a schedule of {array.size} values ({array[0]:.6g}, ...)"


# settings a hand-written optimizer may leave out of its param group, read as these values:
# an optimizer without a ``maximize`` setting minimises
_DEFAULT_SETTINGS = {"maximize": 0.0}


def not_applicable_reason(problem: Problem, bound: Bound, trajectory: Trajectory) -> str | None:
    """Why ``bound`` says nothing about ``trajectory`` (a run on ``problem``), or None.

    The bound's ``problem`` (if any) must be ``problem`` up to its oracle seed, and every
    setting in ``bound.hyperparameters`` must be in the optimizer's param group with the stated
    value (relative tolerance 1e-9) at every update the run made; a per-update array is
    compared update by update, as far as it goes. A ``maximize`` setting missing from the group
    counts as False (the optimizer minimises); ``dampening`` is not compared at updates that ran
    with momentum 0 (it acts on the momentum buffer only). A bound that names its
    ``optimizers`` applies only to runs of one of those classes (or a subclass).

    Example::

        >>> from theory.bounds import gd_bound
        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])  # f(x) = x²/2
        >>> trajectory = run(problem, lambda p: torch.optim.SGD(p, lr=0.25), steps=2)
        >>> print(not_applicable_reason(problem, gd_bound(problem, 0.25), trajectory))
        None
        >>> not_applicable_reason(problem, gd_bound(problem, 0.5), trajectory)
        'update t=0 ran with lr=0.25, the bound assumes lr=0.5'
    """
    if bound.problem is not None:
        difference = _problem_difference(bound.problem, problem)
        if difference is not None:
            return (
                f"the bound was built for {bound.problem!r}, the run is on {problem!r}: they "
                f"differ in {difference}"
            )
    if bound.optimizers and not set(bound.optimizers) & set(trajectory.optimizer):
        used = trajectory.optimizer[0] if trajectory.optimizer else "an unrecorded optimizer"
        return f"the bound is about {' or '.join(bound.optimizers)}, the run used {used}"
    made = int(np.sum(np.isfinite(trajectory.online_loss)))
    for name, expected in bound.hyperparameters.items():
        recorded = trajectory.hyperparameters.get(name)
        if recorded is None and name in _DEFAULT_SETTINGS:
            recorded = np.full(made, _DEFAULT_SETTINGS[name])
        if recorded is None:
            present = sorted(trajectory.hyperparameters)
            return (
                f"the optimizer has no {name!r} setting (its param group has {present}); the "
                f"bound assumes {name}={_show(expected)}"
            )
        target = np.asarray(expected, dtype=np.float64)
        count = made if target.ndim == 0 else min(made, target.size)
        target = np.broadcast_to(target, (made,))[:count] if target.ndim == 0 else target[:count]
        values = recorded[:count]
        # (NaN: not recorded at that update; an infinite value differs from a finite one)
        differ = ~np.isclose(values, target, rtol=1e-9, atol=0.0) & ~np.isnan(values)
        if name == "dampening" and "momentum" in trajectory.hyperparameters:
            # torch's SGD applies dampening to the momentum buffer only: with momentum 0 the
            # update is the same for every dampening
            differ &= trajectory.hyperparameters["momentum"][:count] != 0
        if differ.any():
            t = int(np.argmax(differ))
            return (
                f"update t={t} ran with {name}={values[t]:.6g}, the bound assumes "
                f"{name}={target[t]:.6g}"
            )
    return None


def _averaged(points: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
    """x̄_k = Σ_{j<=k} w_j x_j / Σ_{j<=k} w_j (weights beyond the array: 0; before the first
    positive weight: x_0)."""
    count = points.shape[0]
    w = np.zeros(count)
    size = min(count, weights.size)
    w[:size] = weights[:size]
    w_t = torch.as_tensor(w, dtype=DTYPE)
    sums = torch.cumsum(w_t[:, None] * points, dim=0)
    totals = torch.cumsum(w_t, dim=0)[:, None]
    averaged = torch.where(totals > 0, sums / torch.where(totals > 0, totals, 1.0), points[:1])
    return averaged


def _seeds(seeds: Any) -> tuple[int, ...]:
    try:
        values = tuple(seeds)
    except TypeError:
        raise TypeError(f"seeds must be a sequence of integers, got seeds={seeds!r}") from None
    if len(values) < 2 or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in values
    ):
        raise ValueError(
            f"seeds must hold at least 2 non-negative integers (a mean and its band need two "
            f"runs), got seeds={seeds!r}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"seeds must be distinct, got seeds={seeds!r}")
    return tuple(int(s) for s in values)


def certify(
    problem: Problem,
    make_optimizer: OptimizerFactory,
    steps: int,
    bound: Bound,
    *,
    observe: Observe | None = None,
    before_step: BeforeStep | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    fit_start: int | None = None,
    dtype: torch.dtype = DTYPE,
    seeds: Any = None,
) -> Certificate:
    """Run ``make_optimizer`` on ``problem`` for ``steps`` updates and check ``bound`` at every
    step k = 0..steps where the bound is finite.

    An upper bound holds at k when observed_k <= bound_k (1 + rtol) + atol, a lower bound when
    observed_k >= bound_k (1 - rtol) - atol. ``rtol`` defaults to ``default_rtol(dtype)``
    (1e-9 for float64, 1e4 ε = 1.2e-3 for float32: the relative rounding a run in ``dtype``
    accumulates, which matters where the observed value is far above ``atol``, e.g. a
    divergence lower bound that is attained exactly); ``atol`` defaults to
    ``numerical_floor(problem, bound.quantity, dtype)``, the noise level of a run in ``dtype``.
    Any NaN/inf in the run makes ``held`` False; so does a run the bound does not apply to
    (``not_applicable``) and a negative gap (f* stated above the true minimum). ``observe``
    (default ``bound.observe``, else the parameter) says which point the bound is about
    (``bound.average_weights``: the weighted average of those points);
    ``before_step(optimizer, t)`` runs before update t (a step-size schedule: see
    ``lr_schedule``); ``dtype`` is the parameter's dtype.
    ``fit_start`` is the first step of the rate-fitting window (default: half of the part of
    the run above the numerical floor). ``worst_ratio`` is taken over the steps where the bound
    exceeds ``atol`` (below it the comparison is within rounding). A run in which the bound
    exceeds ``atol`` at no step was compared with nothing but rounding noise: it is *not
    checked* (``held`` False, ``status`` "not checked"), never certified (x0 = x* is such a
    run: its curves are all zero).

    ``seeds``: for a bound on an expectation over a stochastic oracle (required then), one run
    per seed on ``problem.reseeded(seed)``; the mean over runs is compared with the bound, and
    a 95 % Student-t band (mean ± t_{0.975, n-1} s/√n, s the sample standard deviation) is
    reported beside it (see ``Certificate``).

    Example::

        >>> from theory.bounds import gd_bound
        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0]], x_star=[0.0], x0=[1.0])  # f(x) = x²/2
        >>> sgd = lambda p: torch.optim.SGD(p, lr=0.5)  # gap 0.5 * 0.25^k
        >>> certificate = certify(problem, sgd, 4, gd_bound(problem, 0.5))  # bound 1/(2 * 0.5 k)
        >>> certificate.status, certificate.worst_ratio, certificate.worst_step  # 0.125/1 at k = 1
        ('held', 0.125, 1)
    """
    if not isinstance(bound, Bound):
        raise TypeError(f"bound must be a theory.bounds.Bound, got {type(bound).__name__}")
    _check_problem(problem)
    _check_dtype(dtype)
    rtol = default_rtol(dtype) if rtol is None else _non_negative("rtol", rtol)
    atol = None if atol is None else _non_negative("atol", atol)
    if seeds is None:
        if bound.expectation and problem.stochastic:
            raise ValueError(
                f"bound {bound.name!r} is on an expectation over the stochastic oracle of "
                f"{problem!r}: give seeds=(0, 1, ...) to compare it with a mean over runs"
            )
        problems, seed_list = [problem], ()
    else:
        seed_list = _seeds(seeds)
        if not problem.stochastic:
            raise ValueError(
                f"seeds= needs a stochastic problem (one whose loss_at samples), got {problem!r}"
            )
        problems = [problem.reseeded(seed) for seed in seed_list]
    observe = observe if observe is not None else bound.observe
    gradients = bound.quantity == "grad_sq_min"
    trajectories = [
        run(
            p,
            make_optimizer,
            steps,
            observe=observe,
            before_step=before_step,
            dtype=dtype,
            gradients=gradients,
        )
        for p in problems
    ]
    floor = numerical_floor(problem, bound.quantity, dtype) if atol is None else float(atol)
    gap_floor = numerical_floor(problem, "gap", dtype)
    curves, negative = [], []
    for trajectory in trajectories:
        if bound.average_weights is not None:
            points = _averaged(trajectory.points, np.asarray(bound.average_weights))
            gap, distance, grad_sq = _measure(problem, points, gradients)
            measured = Trajectory(
                points=points,
                gap=gap,
                distance=distance,
                online_loss=trajectory.online_loss,
                first_nonfinite=trajectory.first_nonfinite,
                grad_sq=grad_sq,
                dtype=trajectory.dtype,
            )
        else:
            measured = trajectory
        curves.append(measured.quantity(bound.quantity))
        negative.append(_negative_gap_step(measured.gap, gap_floor))
    matrix = np.vstack(curves)
    with np.errstate(invalid="ignore"):
        observed = matrix.mean(axis=0)
    band_lower = band_upper = None
    refuted_step = None
    ks = np.arange(steps + 1)
    values = bound(ks)
    checked = np.isfinite(values)
    if len(trajectories) > 1:
        import scipy.stats

        count = len(trajectories)
        with np.errstate(invalid="ignore"):
            half = (
                scipy.stats.t.ppf(0.5 + BAND_LEVEL / 2, count - 1)
                * matrix.std(axis=0, ddof=1)
                / math.sqrt(count)
            )
        band_lower, band_upper = observed - half, observed + half
        if bound.direction == "upper":
            refuted = checked & (band_lower > values * (1 + rtol) + floor)
        else:
            refuted = checked & (band_upper < values * (1 - rtol) - floor)
        refuted_step = int(np.argmax(refuted)) if refuted.any() else None
    finite_observed = np.isfinite(observed)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if bound.direction == "upper":
            ok = observed <= values * (1 + rtol) + floor
            ratio = np.where(values > 0, observed / values, np.where(observed > floor, np.inf, 0))
        else:
            ok = observed >= values * (1 - rtol) - floor
            ratio = np.where(observed > 0, values / observed, np.inf)
    failed = (checked & ~ok) | ~finite_observed
    stops = [t.first_nonfinite for t in trajectories if t.first_nonfinite is not None]
    if stops:  # a run that stopped (a non-finite point or loss) fails from there on
        failed |= ks >= min(stops)
    first_violation = int(np.argmax(failed)) if failed.any() else None
    usable = checked & finite_observed & (values > floor)
    if usable.any():
        masked = np.where(usable, ratio, -np.inf)
        worst_step = int(np.argmax(masked))
        worst_ratio = float(masked[worst_step])
    else:
        worst_step, worst_ratio = None, math.nan
    finite = all(t.finite for t in trajectories)
    window = _tail(observed, floor, fit_start) if finite else np.arange(0)
    fitted_rate = fit_rate(observed, floor, fit_start) if finite else math.nan
    fitted_order = fit_order(observed, floor, fit_start) if finite else math.nan
    window_start = int(window[0]) if window.size else 1
    rate_rounding = _rate_rounding(problem, bound.quantity, dtype, observed, window)
    reasons = [not_applicable_reason(p, bound, t) for p, t in zip(problems, trajectories)]
    reason = next((r for r in reasons if r is not None), None)
    negative_steps = [k for k in negative if k is not None]
    negative_gap_step = min(negative_steps) if negative_steps else None
    held = bool(
        reason is None
        and finite
        and first_violation is None
        and usable.any()  # (a comparison above the noise floor ran)
        and negative_gap_step is None
    )
    return Certificate(
        bound=bound,
        steps=ks,
        observed=observed,
        bound_values=values,
        held=held,
        first_violation=first_violation,
        worst_ratio=worst_ratio,
        worst_step=worst_step,
        fitted_rate=fitted_rate,
        predicted_rate=bound.rate,
        rate_allowance=math.exp(bound.polynomial_degree / window_start),
        fitted_order=fitted_order,
        predicted_order=bound.order,
        rtol=float(rtol),
        atol=floor,
        trajectory=trajectories[0],
        applicable=reason is None,
        not_applicable=reason,
        negative_gap_step=negative_gap_step,
        seeds=seed_list,
        band_lower=band_lower,
        band_upper=band_upper,
        refuted_step=refuted_step,
        trajectories=trajectories,
        rate_rounding=rate_rounding,
    )


def lr_schedule(lrs: Any) -> BeforeStep:
    """A ``before_step`` that sets every param group's lr to ``lrs[t]`` before update t (a
    sequence of step sizes, e.g. ``theory.step_sizes(schedule, steps)``).

    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> lr_schedule([0.5, 0.25])(opt, 1)
    >>> opt.param_groups[0]["lr"]
    0.25
    """
    values = [float(v) for v in np.asarray(lrs, dtype=np.float64).reshape(-1)]

    def before_step(optimizer: torch.optim.Optimizer, t: int) -> None:
        if t >= len(values):
            raise ValueError(f"lr_schedule has {len(values)} step sizes, update t={t} needs more")
        for group in optimizer.param_groups:
            group["lr"] = values[t]

    return before_step
