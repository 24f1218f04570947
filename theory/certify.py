"""Run any torch optimizer on a problem with a known answer and certify a bound along the run.

``run(problem, make_optimizer, steps)`` records the trajectory x_0, ..., x_steps (k counts updates
already made); ``certify(problem, make_optimizer, steps, bound=...)`` compares the measured
quantity with the bound at every step and returns a ``Certificate``: whether the bound held at
every step, the first violating step, the worst observed/bound ratio, the fitted empirical rate
beside the predicted one, the curves, and ``plot()``.

A run that produces NaN or inf is never certified: ``held`` is False and ``first_violation`` is
the first non-finite step.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from theory.bounds import QUANTITIES, Bound
from theory.problems import DTYPE, Problem

__all__ = [
    "Certificate",
    "Trajectory",
    "certify",
    "fit_order",
    "fit_rate",
    "numerical_floor",
    "run",
    "sgd_nesterov_gradient_point",
]

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
Observe = Callable[[torch.Tensor, torch.optim.Optimizer], torch.Tensor]
BeforeStep = Callable[[torch.optim.Optimizer, int], None]

_EPS = float(np.finfo(np.float64).eps)


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got steps={steps!r}")
    return int(steps)


def _check_problem(problem: Any) -> None:
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a theory.problems.Problem, got {type(problem).__name__}")


def sgd_nesterov_gradient_point(
    param: torch.Tensor, optimizer: torch.optim.Optimizer
) -> torch.Tensor:
    """The gradient-step iterate x_k of Nesterov's method run as ``SGD(nesterov=True)``.

    torch's SGD with constant momentum β and ``nesterov=True`` keeps the look-ahead point
    y_k = x_k + β (x_k - x_{k-1}) in the parameter and b_{k-1} = (x_{k-1} - x_k)/lr in
    ``state["momentum_buffer"]`` (so x_{k+1} = y_k - lr ∇f(y_k) is Nesterov's gradient step);
    hence x_k = y_k + lr β b_{k-1}. Before the first update (no buffer) x_0 = y_0. Works for any
    optimizer with torch's SGD state layout (``optim.SGD`` included).
    """
    group = next((g for g in optimizer.param_groups if any(p is param for p in g["params"])), None)
    if group is None:
        raise ValueError("param is not in any of the optimizer's param_groups")
    if group.get("nesterov") is not True:
        raise ValueError(
            f"sgd_nesterov_gradient_point needs an SGD param group with nesterov=True, got "
            f"nesterov={group.get('nesterov')!r}"
        )
    state = optimizer.state.get(param, {})
    point = param.detach()
    if not state:  # before the first update
        return point.clone()
    if "momentum_buffer" not in state:
        raise ValueError(
            f"optimizer state has no 'momentum_buffer' (keys: {sorted(state)}); "
            f"sgd_nesterov_gradient_point needs torch.optim.SGD's state layout"
        )
    buffer = state["momentum_buffer"].detach()
    return point + float(group["lr"]) * float(group["momentum"]) * buffer


@dataclass
class Trajectory:
    """The points of a run and the quantities measured on them.

    ``points[k]`` is x_k (k = 0..steps, float64, NaN rows after a non-finite step), ``gap[k]`` =
    f(x_k) - f*, ``distance[k]`` = ||x_k - x*||, ``online_loss[t]`` = f_t(x_t) for t < steps
    (the loss the optimizer was given at update t; f(x_t) for offline problems),
    ``first_nonfinite`` the first k whose point or loss is NaN/inf (None if all finite).
    """

    points: torch.Tensor
    gap: np.ndarray
    distance: np.ndarray
    online_loss: np.ndarray
    first_nonfinite: int | None

    @property
    def finite(self) -> bool:
        return self.first_nonfinite is None

    @property
    def steps(self) -> int:
        return self.gap.size - 1

    def quantity(self, name: str) -> np.ndarray:
        """The curve of ``"gap"``, ``"distance"`` or ``"distance_sq"``."""
        if name == "gap":
            return self.gap
        if name == "distance":
            return self.distance
        if name == "distance_sq":
            return self.distance**2
        raise ValueError(f"quantity must be one of {sorted(QUANTITIES)}, got quantity={name!r}")


def run(
    problem: Problem,
    make_optimizer: OptimizerFactory,
    steps: int,
    *,
    observe: Observe | None = None,
    before_step: BeforeStep | None = None,
    dtype: torch.dtype = DTYPE,
) -> Trajectory:
    """Run ``make_optimizer([x])`` for ``steps`` updates on ``problem`` from ``problem.x0``.

    Update t calls ``optimizer.step(closure)`` where the closure zeroes the gradient and
    back-propagates ``problem.loss_at(x, t)`` (so closure-based optimizers such as LBFGS work),
    then projects x onto the feasible set (``problem.project``). ``before_step(optimizer, t)``,
    if given, runs before update t (to set a step-size schedule, e.g. lr = α/√(t+1), or a
    momentum schedule in ``param_groups``). After each update the point
    ``observe(x, optimizer)`` (default: x itself) is recorded. The run stops at the first
    non-finite point or loss; the remaining rows are NaN.
    """
    _check_problem(problem)
    steps = _check_steps(steps)
    if not callable(make_optimizer):
        raise TypeError(
            f"make_optimizer must be callable as make_optimizer(params), got {make_optimizer!r}"
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
            online_loss[t] = float(problem.loss_at(param.detach().to(DTYPE), t))
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
        optimizer.step(closure)
        with torch.no_grad():
            param.copy_(problem.project(param))
        if not record(t + 1):
            first_nonfinite = t + 1

    with torch.no_grad():
        valid = torch.isfinite(points).all(dim=1)
        gap = np.full(steps + 1, math.nan)
        distance = np.full(steps + 1, math.nan)
        for k in torch.nonzero(valid).flatten().tolist():
            gap[k] = float(problem.loss(points[k])) - problem.f_star
            distance[k] = float(torch.linalg.vector_norm(points[k] - problem.x_star))
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
    )


def numerical_floor(problem: Problem, quantity: str) -> float:
    """The level below which a float64 measurement of ``quantity`` is rounding noise.

    distance: x_star_tol + 1e4 eps (||x*|| + ||x0 - x*||); distance_sq: its square;
    gap: 1e4 eps (|f*| + f(x0) - f*) + L distance_floor² / 2. (1e4 eps ≈ 2e-12 covers the
    rounding of the loss, of x - x* and of the optimizer's own arithmetic near x*.)
    """
    dist0 = float(torch.linalg.vector_norm(problem.x0 - problem.x_star))
    distance_floor = problem.x_star_tol + 1e4 * _EPS * (float(problem.x_star.norm()) + dist0)
    if quantity == "distance":
        return distance_floor
    if quantity == "distance_sq":
        return distance_floor**2
    if quantity == "gap":
        with torch.no_grad():
            gap0 = abs(float(problem.loss(problem.x0)) - problem.f_star)
        return 1e4 * _EPS * (abs(problem.f_star) + gap0) + problem.L * distance_floor**2 / 2
    raise ValueError(f"quantity must be one of {sorted(QUANTITIES)}, got quantity={quantity!r}")


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
    per-step factor. NaN when fewer than 3 points remain."""
    values = np.asarray(values, dtype=np.float64)
    window = _tail(values, floor, start)
    if window.size < 3:
        return math.nan
    slope = np.polyfit(window.astype(np.float64), np.log(values[window]), 1)[0]
    return float(math.exp(slope))


def fit_order(values: np.ndarray, floor: float = 0.0, start: int | None = None) -> float:
    """Slope of log(values[k]) against log(k) on the same window as ``fit_rate``: the empirical
    power of a sublinear rate (about -1 for GD's gap, -2 for Nesterov's)."""
    values = np.asarray(values, dtype=np.float64)
    window = _tail(values, floor, start)
    if window.size < 3:
        return math.nan
    return float(np.polyfit(np.log(window.astype(np.float64)), np.log(values[window]), 1)[0])


@dataclass
class Certificate:
    """The result of ``certify``.

    ``held``: the bound held at every step with a finite run; ``first_violation``: first step k
    where it did not (or where the run became non-finite), else None; ``worst_ratio``,
    ``worst_step``: the largest observed/bound (upper bounds) or bound/observed (lower bounds)
    over the steps where the bound is finite and above ``atol``, and where; ``fitted_rate`` /
    ``predicted_rate``: the empirical per-step factor on the second half of the part of the run
    above the numerical floor, and the bound's asymptotic one;
    ``rate_allowance``: the factor by which a k^p rate^k bound's fitted rate may exceed ``rate``
    (see ``rate_consistent``); ``fitted_order`` / ``predicted_order`` for sublinear bounds;
    ``steps``, ``observed``, ``bound_values``: the curves; ``rtol``, ``atol``: the tolerance
    used (observed <= bound (1 + rtol) + atol for upper bounds).
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

    @property
    def finite(self) -> bool:
        return self.trajectory.finite

    def rate_consistent(self, slack: float = 0.0) -> bool:
        """fitted_rate <= predicted_rate x rate_allowance x (1 + slack) (upper bounds), or >=
        predicted_rate / (1 + slack) (lower bounds).

        The polynomial factor: for a curve C k^p q^k, log of it is log C + p log k + k log q and
        the least-squares slope over a window [a, b] is log q + p times the least-squares slope of
        log k, which is a weighted mean of 1/k over the window, hence at most 1/a. So the fitted
        rate of such a curve is at most q exp(p / a): ``rate_allowance`` = exp(p / a) with a the
        first step of the fitting window (1 when p = 0).
        """
        if self.predicted_rate is None or not math.isfinite(self.fitted_rate):
            return False
        if self.bound.direction == "lower":
            return self.fitted_rate >= self.predicted_rate / (1 + slack)
        return self.fitted_rate <= self.predicted_rate * self.rate_allowance * (1 + slack)

    def violation_message(self) -> str:
        """One line naming the step, the observed value and the bound (empty when it held)."""
        name = f"bound {self.bound.name!r} ({self.bound.formula})"
        if self.held:
            return ""
        k = self.first_violation
        if k is None:  # pragma: no cover - held is False only with a violation or non-finite
            return f"{name} did not hold"
        observed = self.observed[k]
        if not math.isfinite(observed):
            return (
                f"{name} not certified: the run produced a non-finite value at step {k} "
                f"({QUANTITIES[self.bound.quantity]} = {observed!r})"
            )
        relation = ">" if self.bound.direction == "upper" else "<"
        return (
            f"{name} violated at step {k}: observed {QUANTITIES[self.bound.quantity]} = "
            f"{observed:.6g} {relation} bound {self.bound_values[k]:.6g} "
            f"(worst ratio {self.worst_ratio:.6g} at step {self.worst_step})"
        )

    def summary(self) -> str:
        status = "held" if self.held else "FAILED"
        rate = (
            f", fitted rate {self.fitted_rate:.6g} vs predicted {self.predicted_rate:.6g}"
            if self.predicted_rate is not None
            else f", fitted order {self.fitted_order:.3g} vs predicted {self.predicted_order}"
        )
        text = (
            f"{self.bound.name}: {status} over {self.steps[-1]} steps, worst ratio "
            f"{self.worst_ratio:.6g}{rate}"
        )
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
        ax.semilogy(self.steps, positive, label=f"observed {label}")
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
        ax.set_title(f"{self.bound.name}: {'held' if self.held else 'violated'}")
        ax.legend(fontsize="small")
        if path is not None:
            path = os.fspath(path)
            directory = os.path.dirname(os.path.abspath(path))
            suffix = os.path.splitext(path)[1] or ".png"
            handle, temporary = tempfile.mkstemp(suffix=suffix, dir=directory)
            os.close(handle)
            try:
                figure.savefig(temporary)
                os.replace(temporary, path)
            except BaseException:
                if os.path.exists(temporary):
                    os.remove(temporary)
                raise
        return figure


def certify(
    problem: Problem,
    make_optimizer: OptimizerFactory,
    steps: int,
    bound: Bound,
    *,
    observe: Observe | None = None,
    before_step: BeforeStep | None = None,
    rtol: float = 1e-9,
    atol: float | None = None,
    fit_start: int | None = None,
) -> Certificate:
    """Run ``make_optimizer`` on ``problem`` for ``steps`` updates and check ``bound`` at every
    step k = 0..steps where the bound is finite.

    An upper bound holds at k when observed_k <= bound_k (1 + rtol) + atol, a lower bound when
    observed_k >= bound_k (1 - rtol) - atol. ``atol`` defaults to ``numerical_floor(problem,
    bound.quantity)``, the float64 noise level. Any NaN/inf in the run makes ``held`` False.
    ``observe`` (default ``bound.observe``, else the parameter) says which point the bound is
    about; ``before_step`` is passed to ``run``. ``fit_start`` is the first step of the
    rate-fitting window (default: half of the part of the run above the numerical floor).
    ``worst_ratio`` is taken over the steps where the bound exceeds ``atol`` (below it the
    comparison is within rounding).
    """
    if not isinstance(bound, Bound):
        raise TypeError(f"bound must be a theory.bounds.Bound, got {type(bound).__name__}")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and not (
            isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a non-negative finite number, got {name}={value!r}")
    trajectory = run(
        problem, make_optimizer, steps, observe=observe if observe is not None else bound.observe
    )
    floor = numerical_floor(problem, bound.quantity) if atol is None else float(atol)
    ks = np.arange(trajectory.steps + 1)
    observed = trajectory.quantity(bound.quantity)
    values = bound(ks)
    checked = np.isfinite(values)
    finite_observed = np.isfinite(observed)
    with np.errstate(divide="ignore", invalid="ignore"):
        if bound.direction == "upper":
            ok = observed <= values * (1 + rtol) + floor
            ratio = np.where(values > 0, observed / values, np.where(observed > floor, np.inf, 0))
        else:
            ok = observed >= values * (1 - rtol) - floor
            ratio = np.where(observed > 0, values / observed, np.inf)
    failed = (checked & ~ok) | ~finite_observed
    first_violation = int(np.argmax(failed)) if failed.any() else None
    usable = checked & finite_observed & (values > floor)
    if usable.any():
        masked = np.where(usable, ratio, -np.inf)
        worst_step = int(np.argmax(masked))
        worst_ratio = float(masked[worst_step])
    else:
        worst_step, worst_ratio = None, math.nan
    window = _tail(observed, floor, fit_start) if trajectory.finite else np.arange(0)
    fitted_rate = fit_rate(observed, floor, fit_start) if trajectory.finite else math.nan
    fitted_order = fit_order(observed, floor, fit_start) if trajectory.finite else math.nan
    window_start = int(window[0]) if window.size else 1
    return Certificate(
        bound=bound,
        steps=ks,
        observed=observed,
        bound_values=values,
        held=bool(trajectory.finite and first_violation is None and checked.any()),
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
        trajectory=trajectory,
    )
