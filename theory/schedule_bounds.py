"""From a step-size schedule to its convergence bound: SGD on convex Lipschitz problems.

The engine turns any sequence of step sizes η_1, ..., η_T (a ``schedulers`` schedule evaluated
over t = 0..T-1, any callable of the step, or a plain sequence / array / tensor) into the
worst-case bound convex theory gives for it, as a number, as a curve over the horizon, and as a
``Bound`` that ``theory.certify`` checks against real runs.

Setting ([DCMM23], [SHTSB25]): f convex, x_{t+1} = x_t - η_t g_t with E[g_t | x_t] ∈ ∂f(x_t),
||g_t|| <= G_t, D = ||x_1 - x*||. In this package's convention (``t`` counts updates already
made, ``schedule(0)`` is the step of the first update) the paper's x_t is the point after t - 1
updates and its η_t is ``lrs[t - 1]``: **the bound for η_1..η_T is about the point after T - 1
updates**, the one η_T would be applied at (x_T does not depend on η_T; the bound does, and is
infinite when η_T = 0). A schedule that ends at 0 is therefore bounded up to its last positive
step: for ``schedulers.wsd(..., final_lr=0)`` over N updates (the last one at step 0), the
bound reaches the point after N - 2 updates, one small cooldown step before the final point,
exactly as [SHTSB25] evaluate it.

* Last iterate, [DCMM23] Theorem 10 (the bound Schaipp et al. [SHTSB25] evaluate)::

      E f(x_T) - f* <= (D² + Σ_{t=1}^T η_t² G_t²) / (2 Σ_{t=1}^T η_t)
                       + 1/2 Σ_{k=1}^{T-1} η_k / (Σ_{t=k+1}^T η_t)
                                         · (Σ_{t=k}^T η_t² G_t²) / (Σ_{t=k}^T η_t)

* Average iterate (classical; the first term above): for x̄_T = Σ_t η_t x_t / Σ_t η_t,
  E f(x̄_T) - f* <= (D² + Σ_{t=1}^T η_t² G_t²) / (2 Σ_{t=1}^T η_t) ([NJLS09] section 2.2, with
  the step sizes as weights; equation number not checked here).

* Both are A/γ + γB for the schedule γ·s (A = D²/(2 Σ s), B the rest at γ = 1), so the best
  base rate is γ* = √(A/B) and the bound there 2√(AB) (``optimal_base_lr``, [SHTSB25]).

Computation. With prefix sums P_j = Σ_{t<=j} η_t, Q_j = Σ_{t<=j} η_t² G_t² and the identity
η_k / ((P_T - P_k)(P_T - P_{k-1})) = 1/(P_T - P_k) - 1/(P_T - P_{k-1}), summation by parts turns
the double sum into

      Σ_{k=1}^{T-1} ... = (η_{T-1}² G_{T-1}² + η_T² G_T²)/η_T - Q_T/P_T
                          + Σ_{k=1}^{T-2} η_k² G_k² / (P_T - P_k),

so one horizon costs O(T) and the whole curve (every horizon 1..N) O(N²) flops, vectorised in
blocks (about half a second at N = 10⁴ on one core); the tests compare it with the formula
evaluated literally. The tails P_T - P_k are formed from compensated prefix sums
(``_prefix_sums``), so they keep their relative accuracy when tiny steps follow big ones
(P_T - P_k of a plain running sum loses the digits P_T and P_k share: 3.6e-3 relative for five
steps of 1 then steps of 1e-13).

Sources:
* [DCMM23] A. Defazio, A. Cutkosky, H. Mehta, K. Mishchenko, "When, Why and How Much? Adaptive
  Learning Rate Scheduling by Refinement", arXiv:2310.07831 (2023), Theorem 10. (The theorem
  number is the one Schaipp et al.'s code cites for this formula, ``src/scheduled/schedules/
  base.py`` of github.com/fabian-sp/lr-scheduling; the paper's text was not available here.)
* [SHTSB25] F. Schaipp, A. Hägele, A. Taylor, U. Simsekli, F. Bach, "The Surprising Agreement
  Between Convex Optimization Theory and Learning-Rate Scheduling for Large Model Training",
  ICML 2025, arXiv:2501.18965: the bound above as a function of the schedule, its optimal base
  rate, and a closed-form upper bound for WSD with linear cooldown (``wsd_closed_form_bound``;
  the authors' repository, ``tests/test_theory.py``, labels it "Thm. 9"; the main-text number
  was not checked).
* [NJLS09] A. Nemirovski, A. Juditsky, G. Lan, A. Shapiro, "Robust Stochastic Approximation
  Approach to Stochastic Programming", SIAM J. Optim. 19(4), 2009.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from theory.bounds import Bound, sgd_hyperparameters
from theory.problems import _finite_float, _integer

__all__ = [
    "average_iterate_bound",
    "average_iterate_bound_curve",
    "constant_closed_form_bound",
    "harmonic_number",
    "last_iterate_bound",
    "last_iterate_bound_curve",
    "optimal_base_lr",
    "plot_schedule_bound",
    "sgd_average_iterate_bound",
    "sgd_last_iterate_bound",
    "step_sizes",
    "wsd_closed_form_bound",
]

ITERATES = ("last", "average")
# Elements of the (horizons x steps) block evaluated at once by the curve.
_BLOCK = 2_000_000


# ----------------------------------------------------------------------------------------------
# input
# ----------------------------------------------------------------------------------------------
def step_sizes(schedule: Any, steps: int | None = None) -> np.ndarray:
    """The step sizes η_1..η_T of ``schedule`` as a float64 array (``lrs[t]`` for update t).

    ``schedule`` is a callable of the step (a ``schedulers`` schedule or any function; it is
    called once on ``np.arange(steps)`` and, if that does not give ``steps`` values, once per
    int t), or a 1-D sequence / array / tensor of step sizes (then ``steps``, if given, keeps
    the first ``steps`` values). Every value must be finite and >= 0, and not all 0.

    >>> step_sizes(lambda t: 0.1 / (t + 1), 4).tolist()
    [0.1, 0.05, 0.03333333333333333, 0.025]
    >>> step_sizes([0.3, 0.2, 0.1], 2).tolist()
    [0.3, 0.2]
    """
    if callable(schedule) and not torch.is_tensor(schedule):
        if steps is None:
            raise ValueError("steps is required for a callable schedule, got steps=None")
        steps = _integer("steps", steps, 1)
        values = None
        try:
            out = schedule(np.arange(steps))
            if torch.is_tensor(out):
                out = out.detach().cpu().numpy()
            out = np.asarray(out, dtype=np.float64)
            if out.shape == (steps,):
                values = out
        except (TypeError, ValueError, IndexError):
            values = None
        if values is None:
            values = np.array([_scalar(schedule(t), t) for t in range(steps)], dtype=np.float64)
    else:
        if torch.is_tensor(schedule):
            schedule = schedule.detach().cpu().numpy()
        try:
            values = np.array(schedule, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"lrs must be a schedule (a callable of the step) or a sequence of step sizes, "
                f"got {type(schedule).__name__}"
            ) from err
        if values.ndim != 1 or values.size == 0:
            raise ValueError(
                f"lrs must be a non-empty 1-D sequence of step sizes, got shape {values.shape}"
            )
        if steps is not None:
            steps = _integer("steps", steps, 1)
            if values.size < steps:
                raise ValueError(
                    f"lrs has {values.size} step sizes, fewer than steps={steps}; give at "
                    "least as many as steps"
                )
            values = values[:steps]
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"step sizes must be finite and >= 0, got lrs[{index}]={float(values[index])!r}"
        )
    if not values.any():
        raise ValueError("step sizes must not all be 0 (then nothing moves and no bound holds)")
    return values


def _scalar(value: Any, t: int) -> float:
    if torch.is_tensor(value):
        value = value.detach().cpu()
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"schedule({t}) must be a number, got {value!r}") from err


def _gradient_bounds(G: Any, size: int) -> np.ndarray:
    """G as an array of G_t² for t = 1..size (a number: the same at every step)."""
    if torch.is_tensor(G):
        G = G.detach().cpu().numpy()
    if isinstance(G, bool):
        raise TypeError(f"G must be a number or one number per step, got G={G!r}")
    try:
        array = np.asarray(G, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"G must be a number or one number per step, got G={G!r}") from err
    if array.ndim == 0:
        array = np.full(size, float(array))
    elif array.ndim != 1 or array.size < size:
        raise ValueError(
            f"G must be a number or a 1-D array with at least {size} values (one per step), "
            f"got shape {array.shape}"
        )
    array = array[:size]
    if not (np.all(np.isfinite(array)) and np.all(array >= 0)):
        raise ValueError(f"G must be finite and >= 0, got G={G!r}")
    return array**2


def _distance(D: Any, name: str = "D") -> float:
    """``D`` (or the quantity ``name``) as a finite float >= 0, or an error naming it."""
    D = _finite_float(name, D)
    if D < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {name}={D!r}")
    return D


# ----------------------------------------------------------------------------------------------
# the engine
# ----------------------------------------------------------------------------------------------
def _prefix_sums(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compensated prefix sums: (hi, lo) with hi = ``np.cumsum(values)`` and hi_j + lo_j the
    exact Σ_{t<=j} values_t up to O(j ε²) relative. lo accumulates the rounding error of each
    addition hi_j = fl(hi_{j-1} + v_j), which Knuth's TwoSum recovers exactly:
    b = hi_j - hi_{j-1}, e_j = (hi_{j-1} - (hi_j - b)) + (v_j - b).

    A tail P_T - P_k of non-negative steps, formed as ``_tail_sums``, is then accurate to a few
    ε relative to itself, even where it is tiny against P_T: a plain difference of the running
    sum loses the digits the two sums share (big steps, then tiny ones)."""
    hi = np.cumsum(values)
    previous = np.concatenate([[0.0], hi[:-1]])
    b = hi - previous
    errors = (previous - (hi - b)) + (values - b)
    return hi, np.cumsum(errors)


def _tail_sums(hi: np.ndarray, lo: np.ndarray, horizon: Any, k: np.ndarray) -> np.ndarray:
    """P_T - P_k = Σ_{t=k+1}^T values_t from ``_prefix_sums`` (index T, k; broadcasting):
    (hi_T - hi_k) + (lo_T - lo_k). The first difference is exact when hi_k >= hi_T / 2
    (Sterbenz) and without cancellation otherwise."""
    return (hi[horizon] - hi[k]) + (lo[horizon] - lo[k])


def _terms(eta: np.ndarray, g2: np.ndarray, iterate: str) -> tuple[float, float]:
    """(P_T, rest) for the horizon T = len(eta): the bound is D²/(2 P_T) + rest, with rest
    homogeneous of degree 1 in η. rest = inf when the last-iterate bound is infinite (η_T = 0)."""
    q = eta**2 * g2
    P = math.fsum(eta)
    Q = math.fsum(q)
    rest = Q / (2 * P)
    if iterate == "average" or eta.size == 1:
        return P, rest
    if eta[-1] == 0:
        return P, math.inf
    hi, lo = _prefix_sums(eta)
    # Σ_{t=k+1}^T η_t for k = 1..T-2 (positive: η_T > 0)
    tail = _tail_sums(hi, lo, eta.size - 1, np.arange(eta.size - 2))
    third = (q[-2] + q[-1]) / eta[-1] - Q / P + float(np.sum(q[:-2] / tail))
    return P, rest + third / 2


def _check_iterate(iterate: str) -> str:
    if iterate not in ITERATES:
        raise ValueError(f"iterate must be one of {ITERATES}, got iterate={iterate!r}")
    return iterate


def last_iterate_bound(lrs: Any, D: float, G: Any, *, steps: int | None = None) -> float:
    """The bound on E f(x_T) - f* of SGD with step sizes η_1..η_T on a convex f with
    ||g_t|| <= G_t and D = ||x_1 - x*|| ([DCMM23] Theorem 10)::

        (D² + Σ_{t=1}^T η_t² G_t²) / (2 Σ_{t=1}^T η_t)
          + 1/2 Σ_{k=1}^{T-1} η_k / (Σ_{t=k+1}^T η_t) · (Σ_{t=k}^T η_t² G_t²) / (Σ_{t=k}^T η_t)

    x_T is the point after T - 1 updates (see the module docstring). ``lrs``: a schedule
    (with ``steps`` = T) or a sequence of T step sizes; ``G``: a number or one per step.
    Infinite when η_T = 0. O(T).

    >>> last_iterate_bound([1.0, 1.0], D=1.0, G=1.0)  # (1 + 2)/4 + 1/2 * 1/1 * 2/2
    1.25
    """
    eta = step_sizes(lrs, steps)
    g2 = _gradient_bounds(G, eta.size)
    P, rest = _terms(eta, g2, "last")
    return float(_distance(D) ** 2 / (2 * P) + rest)


def average_iterate_bound(lrs: Any, D: float, G: Any, *, steps: int | None = None) -> float:
    """(D² + Σ_{t=1}^T η_t² G_t²) / (2 Σ_{t=1}^T η_t): the classical bound on E f(x̄_T) - f*
    for the step-size-weighted average x̄_T = Σ_t η_t x_t / Σ_t η_t of the points x_1..x_T
    (the points after 0..T-1 updates) of SGD on a convex f with ||g_t|| <= G_t ([NJLS09]).

    >>> average_iterate_bound([1.0, 1.0], D=1.0, G=1.0)
    0.75
    """
    eta = step_sizes(lrs, steps)
    g2 = _gradient_bounds(G, eta.size)
    P, rest = _terms(eta, g2, "average")
    return float(_distance(D) ** 2 / (2 * P) + rest)


def _curve_terms(eta: np.ndarray, g2: np.ndarray, iterate: str) -> tuple[np.ndarray, np.ndarray]:
    """P_T and rest_T for every horizon T = 1..N (index T - 1)."""
    q = eta**2 * g2
    hi, lo = _prefix_sums(eta)
    P = hi + lo
    Q = np.sum(_prefix_sums(q), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rest = np.where(P > 0, Q / (2 * P), np.inf)
    if iterate == "average":
        return P, rest
    N = eta.size
    third = np.zeros(N)
    # T >= 2 (index i = T - 1 >= 1): (q_{T-1} + q_T)/η_T - Q_T/P_T + Σ_{k<=T-2} q_k/(P_T - P_k)
    index = np.arange(1, N)
    with np.errstate(divide="ignore", invalid="ignore"):
        third[1:] = (q[index - 1] + q[index]) / eta[index] - Q[index] / P[index]
    rows = max(1, _BLOCK // max(N, 1))
    for start in range(2, N, rows):
        stop = min(N, start + rows)
        block = np.arange(start, stop)  # indices i = T - 1, T >= 3
        width = stop - 2  # k index 0..T-3 at most
        difference = _tail_sums(hi, lo, block[:, None], np.arange(width)[None, :])
        mask = np.arange(width)[None, :] <= (block[:, None] - 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(mask, q[None, :width] / difference, 0.0)
        third[block] += terms.sum(axis=1)
    with np.errstate(invalid="ignore"):
        bound = rest + third / 2
    bound = np.where((eta > 0) & (P > 0), bound, np.inf)
    bound[0] = rest[0] if eta[0] > 0 else np.inf
    return P, bound


def last_iterate_bound_curve(lrs: Any, D: float, G: Any, *, steps: int | None = None) -> np.ndarray:
    """``curve[k]``: the [DCMM23] Theorem 10 bound on E f - f* at the point after k updates,
    k = 0..T-1, i.e. ``last_iterate_bound(lrs[:k + 1], D, G)`` for every k (inf where
    lrs[k] = 0). O(T²) flops in numpy blocks.

    >>> last_iterate_bound_curve([1.0, 1.0], D=1.0, G=1.0).tolist()
    [1.0, 1.25]
    """
    eta = step_sizes(lrs, steps)
    g2 = _gradient_bounds(G, eta.size)
    P, rest = _curve_terms(eta, g2, "last")
    with np.errstate(divide="ignore"):
        return np.where(P > 0, _distance(D) ** 2 / (2 * P), np.inf) + rest


def average_iterate_bound_curve(
    lrs: Any, D: float, G: Any, *, steps: int | None = None
) -> np.ndarray:
    """``curve[k]`` = ``average_iterate_bound(lrs[:k + 1], D, G)``: the bound on E f(x̄) - f*
    for the weighted average of the points after 0..k updates. O(T).

    >>> average_iterate_bound_curve([1.0, 1.0], D=1.0, G=1.0).tolist()
    [1.0, 0.75]
    """
    eta = step_sizes(lrs, steps)
    g2 = _gradient_bounds(G, eta.size)
    P, rest = _curve_terms(eta, g2, "average")
    with np.errstate(divide="ignore"):
        return np.where(P > 0, _distance(D) ** 2 / (2 * P), np.inf) + rest


def optimal_base_lr(
    shape: Any, D: float, G: Any, *, steps: int | None = None, iterate: str = "last"
) -> tuple[float, float]:
    """``(γ*, bound at γ*)`` for the schedule γ·shape ([SHTSB25]).

    The bound of γ·s is A/γ + γB with A = D²/(2 Σ_t s_t) and B the rest of the bound at γ = 1
    (every other term is homogeneous of degree 1 in the step sizes), so γ* = √(A/B) and the
    bound there is 2√(AB). ``iterate`` is ``"last"`` ([DCMM23] Theorem 10) or ``"average"``.

    >>> gamma, value = optimal_base_lr([1.0] * 4, D=1.0, G=1.0)  # constant: DG√((1+H_3)/T)
    >>> round(value, 12) == round(constant_closed_form_bound(4, 1.0, 1.0), 12)
    True
    """
    eta = step_sizes(shape, steps)
    g2 = _gradient_bounds(G, eta.size)
    D = _distance(D)
    if not D > 0:
        raise ValueError(f"D must be positive for an optimal base rate, got D={D!r}")
    P, rest = _terms(eta, g2, _check_iterate(iterate))
    A = D**2 / (2 * P)
    if not rest > 0:
        raise ValueError(
            "the bound does not grow with the step sizes (G = 0): no finite optimal base rate"
        )
    if not math.isfinite(rest):
        raise ValueError(
            f"the last step size is 0 (lrs[-1]={float(eta[-1])!r}), where the last-iterate "
            "bound is infinite; drop the trailing zero steps"
        )
    return math.sqrt(A / rest), 2 * math.sqrt(A * rest)


# ----------------------------------------------------------------------------------------------
# closed forms: oracles for the engine
# ----------------------------------------------------------------------------------------------
def harmonic_number(n: int) -> float:
    """H_n = Σ_{j=1}^n 1/j (0 for n <= 0); ``n`` an integer (numpy's too, not a bool).

    >>> harmonic_number(3)
    1.8333333333333333
    """
    n = _integer("n", n)
    return math.fsum(1.0 / j for j in range(1, n + 1)) if n > 0 else 0.0


def constant_closed_form_bound(T: int, D: float, G: float) -> float:
    """D G √((1 + H_{T-1}) / T): the [DCMM23] bound of the constant schedule at its optimal
    rate γ* = D / (G √(T (1 + H_{T-1}))), exactly (the bound is D²/(2Tγ) + γ G² (1 + H_{T-1})/2
    since each k < T contributes γ G²/(2 (T - k))). [SHTSB25] plot it beside WSD to show the
    log T that a cooldown removes.

    >>> round(constant_closed_form_bound(1, 2.0, 3.0), 12)
    6.0
    """
    T = _integer("T", T, 1)
    return _distance(D) * _distance(G, "G") * math.sqrt((1 + harmonic_number(T - 1)) / T)


def wsd_closed_form_bound(T: int, T0: int, D: float, G: float) -> float:
    """[SHTSB25]'s closed-form upper bound on the optimal-rate bound of WSD with linear
    cooldown, η_t = 1 for t < T0 and η_t = 1 - (t - T0)/(T + 1 - T0) for T0 <= t <= T + 1 (so
    η_{T+1} = 0, and the bound is for x_T with η_1..η_T)::

        D G √( 4/(T + T0) [ 2/3 + (T + 2T0)/(3(T + T0)) + H_{T+T0-2} - H_{T-T0+1}
                            - (T - T0)(T0 - 1)/(3(T - T0 + 2)(T + T0)) + 1/(T - T0)²
                            + H_{T-T0-1}/(T - T0 + 1) ] ),   2 <= T0 < T.

    Transcribed from the authors' test (``theorem_bound`` in ``tests/test_theory.py`` of
    github.com/fabian-sp/lr-scheduling, labelled "Thm. 9" there). It is an upper bound obtained
    with inequalities, not the exact value, and only for T0 >= 2: at T0 = 1 (pure linear
    decay) it is *below* the exact bound (``optimal_base_lr``: 0.93690 > 0.92546 at T = 5,
    relatively about 1/(12 T) below for large T), so T0 = 1 is refused. For 2 <= T0 < T the
    engine's ``optimal_base_lr`` stays below it, measured for every T0 at every T <= 300 and
    for T0 = 2, 3 up to T = 10⁶: by a relative margin from about 5/(12 T) at T0 = 2 (0.04 %
    at T = 1000) up to 27 % at T0 = T - 1 (T = 1000); 7-19 % for cooldowns of 20-80 % of the
    run, T = 100..3000 (the tests state the margins). In ``schedulers`` terms this WSD is
    ``wsd(γ, 0, stable_steps=T0, decay_steps=T + 1 - T0, cooldown="linear")`` over
    t = 0..T-1.

    >>> round(wsd_closed_form_bound(1000, 800, 1.0, 1.0), 6)
    0.084588
    """
    T, T0 = _integer("T", T, 3), _integer("T0", T0, 1)
    if not 2 <= T0 < T:
        raise ValueError(
            f"T0 must satisfy 2 <= T0 < T = {T} (at T0 = 1, pure linear decay, the closed form "
            f"is below the exact bound), got T0={T0!r}"
        )
    H = harmonic_number
    terms = (
        2 / 3
        + (T + 2 * T0) / (3 * (T + T0))
        + H(T + T0 - 2)
        - H(T - T0 + 1)
        - (T - T0) * (T0 - 1) / (3 * (T - T0 + 2) * (T + T0))
        + 1 / (T - T0) ** 2
        + H(T - T0 - 1) / (T - T0 + 1)
    )
    return _distance(D) * _distance(G, "G") * math.sqrt(4 * terms / (T + T0))


# ----------------------------------------------------------------------------------------------
# bounds tied to a problem, for theory.certify
# ----------------------------------------------------------------------------------------------
def _lipschitz_problem(problem: Any, name: str) -> tuple[float, float]:
    if not getattr(problem, "is_convex", False):
        raise ValueError(f"{name} needs a convex problem, got {type(problem).__name__}")
    G = float(getattr(problem, "G", math.inf))
    if not math.isfinite(G):
        raise ValueError(
            f"{name} needs a problem whose stochastic gradients are bounded, ||g_t|| <= G; "
            f"{type(problem).__name__} states G={G!r} (use LeastAbsoluteDeviations or "
            "HingeLoss)"
        )
    D = float(torch.linalg.vector_norm(problem.x0 - problem.x_star))
    return D, G


def _padded(curve: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def values(k: np.ndarray) -> np.ndarray:
        k = np.asarray(k)
        index = np.clip(k.astype(np.int64), 0, curve.size - 1)
        return np.where(k < curve.size, curve[index], np.inf)

    return values


def sgd_last_iterate_bound(problem: Any, lrs: Any, steps: int | None = None) -> Bound:
    """E f(x_k) - f* <= ``last_iterate_bound(lrs[:k + 1], D, G)`` at every k < len(lrs), for
    plain SGD whose update t uses the step ``lrs[t]`` on a convex problem with stochastic
    gradients bounded by ``problem.G`` and D = ||x0 - x*|| ([DCMM23] Theorem 10). A bound on an
    expectation: certify it with ``seeds=``. No claim at k >= len(lrs).

    Example::

        >>> from theory.problems import LeastAbsoluteDeviations
        >>> problem = LeastAbsoluteDeviations([[1.0]], [0.0], x0=[1.0])  # f = |x|: D = G = 1
        >>> bound = sgd_last_iterate_bound(problem, [1.0, 1.0])  # k = 1: (1 + 2)/4 + 1/2
        >>> bound([0, 1, 2]).tolist()  # k = 0: (1 + 1)/2; no claim past the schedule
        [1.0, 1.25, inf]
    """
    D, G = _lipschitz_problem(problem, "sgd_last_iterate_bound")
    eta = step_sizes(lrs, steps)
    curve = last_iterate_bound_curve(eta, D, G)
    return Bound(
        name="sgd_last_iterate",
        quantity="gap",
        values=_padded(curve),
        formula="E f(x_T) - f* <= (D^2 + sum eta^2 G^2)/(2 sum eta) + 1/2 sum_k eta_k / "
        "(sum_{t>k} eta_t) (sum_{t>=k} eta_t^2 G^2) / (sum_{t>=k} eta_t)",
        hyperparameters=sgd_hyperparameters(eta),
        problem=problem,
        expectation=True,
        assumptions=f"f convex, stochastic subgradients with ||g_t|| <= G = {G:.6g}, "
        f"D = ||x0 - x*|| = {D:.6g}, plain SGD with the given step sizes",
        source="Defazio, Cutkosky, Mehta & Mishchenko (2023), Theorem 10; as used by Schaipp "
        "et al. (2025)",
    )


def sgd_average_iterate_bound(problem: Any, lrs: Any, steps: int | None = None) -> Bound:
    """E f(x̄_k) - f* <= (D² + G² Σ_{j<=k} η_j²) / (2 Σ_{j<=k} η_j) for the step-size-weighted
    average x̄_k of the points after 0..k updates of plain SGD (update t uses ``lrs[t]``) on a
    convex problem with stochastic gradients bounded by ``problem.G`` ([NJLS09]): the classical
    guarantee of decreasing steps with iterate averaging. A bound on an expectation.

    Example::

        >>> from theory.problems import LeastAbsoluteDeviations
        >>> problem = LeastAbsoluteDeviations([[1.0]], [0.0], x0=[1.0])  # f = |x|: D = G = 1
        >>> bound = sgd_average_iterate_bound(problem, [1.0, 1.0])
        >>> bound([0, 1]).tolist()  # (1 + 1)/(2 * 1), (1 + 2)/(2 * 2)
        [1.0, 0.75]
    """
    D, G = _lipschitz_problem(problem, "sgd_average_iterate_bound")
    eta = step_sizes(lrs, steps)
    curve = average_iterate_bound_curve(eta, D, G)
    return Bound(
        name="sgd_average_iterate",
        quantity="gap",
        values=_padded(curve),
        formula="E f(xbar_k) - f* <= (D^2 + G^2 sum_{j<=k} eta_j^2) / (2 sum_{j<=k} eta_j)",
        hyperparameters=sgd_hyperparameters(eta),
        problem=problem,
        expectation=True,
        average_weights=eta,
        assumptions=f"f convex, stochastic subgradients with ||g_t|| <= G = {G:.6g}, "
        f"D = {D:.6g}; xbar_k = sum_j eta_j x_j / sum_j eta_j over the points after 0..k updates",
        source="Nemirovski, Juditsky, Lan & Shapiro (2009), section 2.2 (equation number not "
        "checked)",
    )


# ----------------------------------------------------------------------------------------------
# drawing
# ----------------------------------------------------------------------------------------------
def plot_schedule_bound(
    schedules: Any,
    steps: int,
    D: float = 1.0,
    G: Any = 1.0,
    *,
    ax: Any = None,
    base_lr: str = "given",
) -> Any:
    """Draw each schedule beside its [DCMM23] last-iterate bound curve; returns the Figure.

    ``schedules``: one schedule (callable or sequence) or ``{label: schedule}``; evaluated
    over t = 0..steps-1. ``ax``: None (a new figure with the schedules on the left and the
    bounds on the right), a pair of Axes (schedules, bounds), or one Axes (bounds on it,
    schedules on a twin y-axis, dotted). ``base_lr="optimal"`` rescales each schedule by the
    factor that minimises its final bound (``optimal_base_lr``), as [SHTSB25] compare
    schedules; ``"given"`` draws them as they are. The bound axis is logarithmic; the point
    after k updates is drawn at k. Nothing is written to disk (``runs`` saves figures).

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> figure = plot_schedule_bound({"constant": [0.1] * 50}, 50)
    >>> len(figure.axes)
    2
    """
    if base_lr not in ("given", "optimal"):
        raise ValueError(f"base_lr must be 'given' or 'optimal', got base_lr={base_lr!r}")
    steps = _integer("steps", steps, 1)
    if isinstance(schedules, Mapping):
        items = list(schedules.items())
    else:
        items = [("schedule", schedules)]
    if not items:
        raise ValueError("schedules must hold at least one schedule")
    import matplotlib.pyplot as plt

    if ax is None:
        figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    elif isinstance(ax, Sequence) and len(ax) == 2:
        left, right = ax
        figure = right.figure
    elif hasattr(ax, "plot"):
        right = ax
        left = ax.twinx()
        figure = ax.figure
    else:
        raise TypeError(f"ax must be None, a matplotlib Axes or a pair of them, got {ax!r}")
    twin = ax is not None and hasattr(ax, "plot")
    t = np.arange(steps)
    finals = []
    for label, schedule in items:
        eta = step_sizes(schedule, steps)
        name = str(label) if len(str(label)) <= 32 else str(label)[:29] + "..."
        horizon = int(np.nonzero(eta)[0][-1]) + 1  # trailing zero steps: no claim there
        if base_lr == "optimal":
            gamma, _ = optimal_base_lr(eta[:horizon] / eta.max(), D, G)
            eta = gamma * eta / eta.max()
            name = f"{name} (γ* = {gamma:.3g})"
        curve = last_iterate_bound_curve(eta, D, G)
        (line,) = left.plot(t, eta, ":" if twin else "-", lw=1.4, label=name)
        finite = np.where(np.isfinite(curve), curve, np.nan)
        last = float(curve[horizon - 1])
        right.plot(t, finite, color=line.get_color(), lw=1.4, label=f"{name}: {last:.3g}")
        finals.append(last)
    left.set_xlabel("step t (updates made)")
    left.set_ylabel("step size η")
    right.set_xlabel("k (updates made)")
    right.set_ylabel("bound on E f(x_k) − f*")
    right.set_yscale("log")
    finite_finals = [f for f in finals if math.isfinite(f)]
    if finite_finals:
        right.set_ylim(min(finite_finals) / 2, max(finite_finals) * 30)
    right.set_title(f"last-iterate bound (Defazio et al. Thm 10), D = {D:g}, G = {G}")
    right.grid(True, alpha=0.3)
    right.legend(fontsize="small")
    if not twin:
        left.grid(True, alpha=0.3)
        left.legend(fontsize="small", loc="upper right")
    return figure
