"""The guarantees of the learning-rate-free and adaptive step sizes (``optim.Prodigy``,
``optim.DAdapt*``, ``optim.DoG``, ``optim.SPS``, ``optim.SLS``, ``optim.SGDScheduleFree``) as
``Bound``s; for ``optim.DoG`` an observed property instead (no theorem of its paper about
plain DoG could be verified, see :func:`dog_iterate_bound`).

``theory.certify`` measures the point an optimizer holds (``"gap"``, ``"distance"``, ...). A
guarantee about an internal quantity of the optimizer (D-Adaptation's estimate d_k, SPS's step
gamma_k) is certified through the bound's ``observe``: it maps the optimizer to the point
x* + q_k e_1, whose ``"distance"`` to x* is q_k, so ``certify`` checks q_k against the bound at
every step without knowing about the optimizer. (k = 0 reads the value before any update.)

Sources (theorem numbers as stated in the papers' arXiv versions; not re-checked from this
machine):

* [DM23] A. Defazio and K. Mishchenko, "Learning-Rate-Free Learning by D-Adaptation", ICML 2023:
  the estimate never exceeds D = ||x0 - x*|| on convex problems (their Lemma 1 for the
  dual-averaging form; Prodigy: [MD23] K. Mishchenko and A. Defazio, "Prodigy", 2023, Lemma 1).
  Certified for Prodigy and DAdaptSGD only: DAdaptAdam's and DAdaptAdaGrad's estimates are not
  of the lemma's form (see :func:`d_estimate_bound`).
* [LVLL21] N. Loizou, S. Vaswani, I. Laradji, S. Lacoste-Julien, "Stochastic Polyak Step-size for
  SGD", AISTATS 2021, Lemma 1: gamma_k >= min(1 / (2 c L_max), gamma_b) for L_i-smooth f_i.
* [P87] B. T. Polyak, "Introduction to Optimization" (1987), section 5.3; [HK19] E. Hazan and
  S. Kakade, "Revisiting the Polyak step size", arXiv:1905.00313 (2019), Theorem 1: the rates of
  the deterministic Polyak step; the constants below are derived in the functions' docstrings
  from the step's one-step inequality ||x_{k+1} - x*||² <= ||x_k - x*||² - (f_k - f*)² / ||g_k||².
* [VML+19] S. Vaswani et al., "Painless Stochastic Gradient", NeurIPS 2019, Lemma 1 (the
  backtracking step is at least min(eta_max, 2 beta (1 - c) / L); with SLS's first trial
  min(eta_0, eta_max): min(eta_0, eta_max, 2 beta (1 - c) / L)); the gap bound for c >= 1/2 is
  the textbook argument for Armijo backtracking (A. Beck, "First-Order Methods in
  Optimization", SIAM 2017, section 10.4), derived in :func:`armijo_bound`.
* [IHC23] M. Ivgi, O. Hinder and Y. Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic
  Step Size Schedule", ICML 2023 (arXiv:2302.12022). Read from this machine: the abstract only
  (its guarantees are for "a slight variation" of DoG, under locally bounded stochastic
  gradients) and the reference package's README; the theory section (the iterate-stability
  statement of the tamed variant T-DoG, its number and its condition on r_eps) was not
  retrievable. So no theorem of the paper is certified for ``optim.DoG``: see
  :func:`dog_iterate_bound`, which checks an observed property of plain DoG instead.
* [DYM+24] A. Defazio et al., "The Road Less Scheduled", NeurIPS 2024, Theorem 1 (and its proof:
  F(x_T) - F* <= (||z_1 - x*||² / (2 gamma) + gamma G² T / 2) / T for any beta in [0, 1], x_T
  the average of z_1..z_T); the optimizer's x after k updates is that x_T with T = k started
  from z_1 = x0 - gamma g(x0), see :func:`schedulefree_sgd_bound`.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import torch

from theory.bounds import (
    Bound,
    _positive,
    _require_convex,
    _require_global_smoothness,
    _require_problem,
    _start_distance,
)
from theory.problems import _finite_float

__all__ = [
    "armijo_bound",
    "d_estimate_bound",
    "dog_iterate_bound",
    "polyak_bound",
    "schedulefree_sgd_bound",
    "sps_step_bound",
]


def _point_at(problem: Any, value: Any) -> torch.Tensor:
    """x* + value e_1: a point whose distance to x* is ``value`` (the observe trick)."""
    point = problem.x_star.detach().clone().to(torch.float64).reshape(-1)
    point[0] = point[0] + float(value)  # note: a host read, outside the optimizer's step
    return point


def _group_value(name: str):
    def observe(param: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        return _point_at(_PROBLEMS[id(observe)], optimizer.param_groups[0][name])

    return observe


_PROBLEMS: dict[int, Any] = {}


def _observer(problem: Any, name: str):
    observe = _group_value(name)
    _PROBLEMS[id(observe)] = problem
    return observe


# The optimizers whose estimate d_k <= factor ||x0 - x*|| is proven (see d_estimate_bound):
# factor and the settings the proof needs.
_D_ESTIMATE_METHODS: dict[str, tuple[float, dict[str, float]]] = {
    "Prodigy": (1.0, {"d_coef": 1.0, "slice_p": 1.0, "safeguard_warmup": 0.0, "weight_decay": 0.0}),
    "DAdaptSGD": (2.0, {"momentum": 0.0, "weight_decay": 0.0}),
}
_D_ESTIMATE_UNPROVEN = {
    "DAdaptAdam": "its numerator sums <g_k, s_k / (sqrt(v_k) + eps)>, which is not "
    "<g_k, x0 - x_k> for Adam's iterates, so Lemma 1's argument does not apply (d_k reaches "
    "2.02 ||x0 - x*|| on a 2-D quadratic)",
    "DAdaptAdaGrad": "the package's estimate (sum s^2 / (sqrt(alpha) + eps) - G) / ||s||_1 "
    "carries a positive remainder sum lambda^2 g^2 (1/a_k - 1/a_{k+1}) besides "
    "2 sum lambda <g_k, x0 - x_k>, so no factor is proven (d_k reaches 1.026 ||x0 - x*|| on "
    "f(x) = |x|)",
}


def _require_full_loss(problem: Any, name: str, why: str) -> None:
    """``ValueError`` for a problem whose updates are not plain steps on the full loss f
    (``Problem.why_not_full_loss`` is not empty: a sampled loss, an online loss f_t, a
    projection after the update); ``why`` the bound's argument needs them. TypeError for
    anything but a ``theory.problems.Problem``."""
    _require_problem(problem, name)
    reason = problem.why_not_full_loss
    if reason:
        raise ValueError(
            f"{name} needs the full loss ({why}), got {problem!r}: {reason}; allowed: a "
            "problem whose every update is given f itself, with no projection (batch_size=None "
            "for a sampled finite sum)"
        )


def d_estimate_bound(problem: Any, method: str, factor: float | None = None) -> Bound:
    r"""d_k <= factor ||x0 - x*|| at every step, for ``optim.Prodigy`` (factor 1) and
    ``optim.DAdaptSGD`` (factor 2, momentum 0) on a convex problem whose updates are full-loss
    steps: a problem with a ``why_not_full_loss`` (sampled, or online and projected such as
    ``ReddiCounterexample``, where g_i is not a subgradient of f at x_i) raises ValueError.

    The argument ([DM23] Lemma 1; [MD23] Lemma 1 for Prodigy): both estimates are
    d̂ = c r / ||s|| with r = Σ_i w_i <g_i, x0 - x_i> and s = Σ_i w_i g_i over the same weights
    w_i >= 0, g_i a subgradient at x_i, the point the optimizer took it at. Convexity gives
    <g_i, x* - x_i> <= f* - f(x_i) <= 0, so r <= <s, x0 - x*> <= ||s|| ||x0 - x*||_dual, and
    d̂ <= c ||x0 - x*||; d_k is d0 or a maximum of such estimates (growth caps only lower it).

    * ``"Prodigy"``: r = Σ β3^{k-i} (d_i/d0) d_i lr <g_i, x0 - x_i>, s the same sum of g_i,
      ||s||_1 and the ℓ∞ distance (<= the Euclidean one): d̂ <= d_coef ||x0 - x*||, for any
      iterates (Adam's included). Needs d_coef = 1, slice_p = 1 (the sums over every
      coordinate), safeguard_warmup off (else s leaves out the lr that r has) and no weight
      decay (the gradients are f's): the bound's hyperparameters.
    * ``"DAdaptSGD"``: r = Σ λ_i <g_i, s_i>, and with momentum 0 the iterate is
      x_i = x0 - s_i, so <g_i, s_i> = <g_i, x0 - x_i>; the package's estimate is 2 r / ||s||_2
      (twice the paper's), so factor 2. Needs momentum 0 (with momentum the gradient is taken
      at an average, not at x0 - s_i) and no weight decay.
    * ``"DAdaptAdam"`` and ``"DAdaptAdaGrad"`` raise ``ValueError``: no such lemma holds for
      their estimates (see ``_D_ESTIMATE_UNPROVEN``; the measured overshoots are in
      ``tests/theory/test_lr_free_bounds.py``).

    The bound names its optimizer (``Bound.optimizers``) and settings, so ``certify`` reports a
    run of another optimizer, DAdaptAdam included, as not applicable. ``factor`` defaults to
    the method's (a smaller one is a deliberately wrong bound). The assumption is
    d0 <= ||x0 - x*||: a larger d0 breaks the bound at k = 0. Reads ``param_groups[0]["d"]``
    (a host read after each step, outside ``step()``).

    >>> from theory.problems import Quadratic
    >>> problem = Quadratic.from_spectrum([1.0, 4.0], seed=0)
    >>> bound = d_estimate_bound(problem, "Prodigy")
    >>> bool(bound(5) == float((problem.x0 - problem.x_star).norm()))
    True
    """
    _require_convex(problem, "d_estimate_bound")
    _require_full_loss(problem, "d_estimate_bound", "each g_i a subgradient of f at x_i")
    if method in _D_ESTIMATE_UNPROVEN:
        raise ValueError(
            f"d_estimate_bound has no lemma for method={method!r}: "
            f"{_D_ESTIMATE_UNPROVEN[method]}; allowed: {sorted(_D_ESTIMATE_METHODS)}"
        )
    if method not in _D_ESTIMATE_METHODS:
        raise ValueError(
            f"method must be one of {sorted(_D_ESTIMATE_METHODS)} (the optimizers whose "
            f"estimate is proven to stay below the distance), got method={method!r}"
        )
    proven, settings = _D_ESTIMATE_METHODS[method]
    factor = proven if factor is None else _positive("factor", factor)
    distance, _ = _start_distance(problem)
    return Bound(
        name="d_estimate" if factor == 1 else f"d_estimate x {factor:g}",
        quantity="distance",
        values=lambda k: np.full(np.shape(k), factor * distance),
        formula=f"d_k <= {factor:g} ||x0 - x*||" if factor != 1 else "d_k <= ||x0 - x*||",
        hyperparameters=dict(settings),
        observe=_observer(problem, "d"),
        optimizers=(method,),
        assumptions=(
            f"convex f; {method}; d0 <= ||x0 - x*||; quantity 'distance' is the estimate d_k "
            "(observe)"
        ),
        source=(
            "Mishchenko & Defazio (2023), Lemma 1"
            if method == "Prodigy"
            else "Defazio & Mishchenko (2023), Lemma 1 (the package's estimate is twice the "
            "paper's)"
        ),
        problem=problem,
    )


def _moved_from_start(problem: Any):
    """observe: x* + ||x_k - x0|| e_1, so that certify's "distance" is how far x_k moved."""
    start = problem.x0.detach().to(torch.float64).reshape(-1)

    def observe(param: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        del optimizer
        moved = torch.linalg.vector_norm(param.detach().to(torch.float64).reshape(-1) - start)
        return _point_at(problem, moved)

    return observe


def dog_iterate_bound(problem: Any, factor: float = 3.0, reps_rel: float = 1e-6) -> Bound:
    r"""Plain DoG on a deterministic convex problem stays near its start:
    ||x_k - x0|| <= factor ||x0 - x*|| at every step k (factor 3), i.e.
    r̄_k = max(r_eps, max_{i<=k} ||x_i - x0||) <= 3 d_0 with d_0 = ||x0 - x*||. **An observed
    property of ``optim.DoG``, not a theorem of [IHC23]**; the reasons follow.

    **What [IHC23] says, as far as it could be read here.** Its abstract states that the
    parameter-free guarantees (stochastic convex optimization, locally bounded stochastic
    gradients) are proven for "a slight variation of the DoG formula", i.e. not for DoG
    itself; the reference package's README (formll/dog) asks for r_eps "small relative to the
    distance between x_0 and the nearest optimum x*" and warns that a large r_eps diverges. The
    theory section (the variant T-DoG, whose step divides r̄_t by a logarithmically inflated
    sum of squared gradient norms, its iterate-stability statement, the number of that
    statement and its hypotheses on r_eps) could not be retrieved from this machine: the
    stored copies of the paper (``search``, corpus "pages", hf.zsm.im/papers/2302.12022.md)
    return only the abstract and the first paragraph of the introduction, and the package's
    code and README carry no theorem. Recalled, *unverified* (this function's earlier
    docstring, from memory, called it Proposition 3): T-DoG's r̄_T exceeds 3 d_0 with
    probability at most delta when r_eps <= 3 d_0. Nothing stated about plain DoG, nor about
    the deterministic case, could be found, so nothing here cites a statement number.

    **Why plain DoG does not inherit such a bound from the usual argument** (derivation here,
    not the paper's). With exact subgradients of a convex f, <g_t, x_t - x*> >= f(x_t) - f* >=
    0, so every step x_{t+1} = x_t - eta_t g_t has ||x_{t+1} - x*||² <= ||x_t - x*||² +
    eta_t² ||g_t||². DoG's eta_t = r̄_t / sqrt(G_t), G_t = eps + Σ_{i<=t} ||g_i||², and
    Σ_{i<=t} ||g_i||² / G_i <= 1 + ln(G_t / G_0) (the i = 0 term is <= 1, each later one is
    (G_i - G_{i-1}) / G_i <= ln(G_i / G_{i-1})), so
    ||x_{t+1} - x*||² <= d_0² + r̄_t² (1 + ln(G_t / G_0)) and ||x_{t+1} - x0|| <= d_0 +
    ||x_{t+1} - x*||. r̄_t comes back on the right with a factor that grows with ln(G_t / G_0),
    so the recursion does not close into r̄_T <= c d_0: the logarithm is what a tamed step
    size is there to absorb. Hence no proven multiple of d_0 for ``optim.DoG``.

    **What is checked.** The bound at every step k (k = 0 included) of a run of ``optim.DoG``
    on a deterministic convex problem,
    as a regression check of plain DoG's observed stability: it held on the quadratics and the
    logistic regression of the tests and, in a NumPy transcription of the update (20000
    steps, r_eps from 1e-6 (1 + ||x0||) to 3 d_0), on |x|, |x|^1.5, x^4, cosh, a Huber-like and
    an exponential function and an anisotropic quadratic (the largest move, r_eps itself
    aside, 1.71 d_0, on |x|). The settings it needs, and enforces:

    * full gradients: a problem with a ``why_not_full_loss`` (a stochastic one, or an online,
      projected one such as ``ReddiCounterexample``) raises ``ValueError`` (the
      property was observed only with exact gradients; in the stochastic case [IHC23] proves its
      guarantee for the tamed variant only);
    * r_eps = reps_rel (1 + ||x0||) <= factor d_0, checked here (``ValueError`` otherwise): the
      first update moves exactly r_eps (eta_0 = r_eps / sqrt(||g_0||² + eps)), so a larger r_eps
      breaks the bound at k = 1 whatever DoG does next;
    * the bound's hyperparameters ``reps_rel`` (the one checked above), ``lr`` = 1 (the
      paper's c) and ``weight_decay`` = 0, and the optimizer ``DoG``: a run with another
      reps_rel (``init_eta`` sets it to 0), lr or weight decay, or of another optimizer, is not
      applicable.

    Quantity ``"distance"`` is ||x_k - x0|| (``observe``).

    >>> from theory.problems import Quadratic
    >>> problem = Quadratic.from_spectrum([1.0, 4.0], seed=0)
    >>> bound = dog_iterate_bound(problem)
    >>> bool(bound(5) == 3 * float((problem.x0 - problem.x_star).norm()))
    True
    """
    _require_convex(problem, "dog_iterate_bound")
    factor = _positive("factor", factor)
    reps_rel = _positive("reps_rel", reps_rel)
    _require_full_loss(
        problem,
        "dog_iterate_bound",
        "it is checked with full gradients only: no statement about plain DoG with stochastic "
        "gradients was found in Ivgi et al. 2023, whose guarantee is for a tamed variant",
    )
    distance, _ = _start_distance(problem)
    r_eps = reps_rel * (1 + float(torch.linalg.vector_norm(problem.x0.to(torch.float64))))
    if r_eps > factor * distance:
        raise ValueError(
            f"reps_rel={reps_rel!r} gives r_eps = reps_rel (1 + ||x0||) = {r_eps:.6g} > "
            f"{factor:g} ||x0 - x*|| = {factor * distance:.6g}: DoG's first update moves "
            f"exactly r_eps, so the bound fails at k = 1; allowed: reps_rel <= "
            f"{factor * distance / (r_eps / reps_rel):.6g}"
        )
    return Bound(
        name="dog_iterates" if factor == 3 else f"dog_iterates x {factor:g}",
        quantity="distance",
        values=lambda k: np.full(np.shape(k), factor * distance),
        formula=f"||x_k - x0|| <= {factor:g} ||x0 - x*||",
        hyperparameters={"lr": 1.0, "weight_decay": 0.0, "reps_rel": reps_rel},
        observe=_moved_from_start(problem),
        optimizers=("DoG",),
        assumptions=(
            f"convex f, full (exact) gradients; plain DoG with lr = 1, no weight decay, "
            f"r_eps = reps_rel (1 + ||x0||) = {r_eps:.3g} <= {factor:g} ||x0 - x*||; an "
            "observed property of plain DoG, not a theorem; quantity 'distance' is ||x_k - x0||"
        ),
        source=(
            "observed for plain DoG (Ivgi, Hinder & Carmon 2023, arXiv:2302.12022, prove their "
            "guarantees for a tamed variant, T-DoG; its iterate-stability statement, number and "
            "conditions could not be verified from this machine; see "
            "theory.lr_free_bounds.dog_iterate_bound)"
        ),
        problem=problem,
    )


def _sps_observer(problem: Any, c: float, floor: float):
    """observe for :func:`sps_step_bound`: x* + q_k e_1 with q_k = gamma + min(tau / (c ||g||²),
    floor), gamma the step of the last update and g the full gradient where it was taken."""
    from theory.certify import numerical_floor  # (certify imports theory.bounds, not this)

    pending: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def observe(param: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        step = float(optimizer.param_groups[0]["step_size"])  # (a host read, outside step())
        allowance = pending.get(optimizer, 0.0)  # for the step just taken (0 at k = 0)
        tau = numerical_floor(problem, "gap", param.dtype)
        point = param.detach().to(torch.float64).reshape(-1)
        grad_sq = float(problem.grad(point).square().sum())
        # the allowance of the step the next update takes, at this point
        pending[optimizer] = floor if grad_sq == 0 else min(tau / (c * grad_sq), floor)
        return _point_at(problem, step + allowance)

    return observe


def sps_step_bound(problem: Any, c: float = 0.5, gamma_b: float = 1.0) -> Bound:
    r"""gamma_k >= min(1 / (2 c L), gamma_b) for SPS_max on an L-smooth problem ([LVLL21] Lemma 1),
    checked up to the rounding of f(x_k) - f*.

    With the full loss every f_i is f, so L_max = L and f_i* = f*; the optimizer must be built
    with ``c``, ``gamma_b``, ``f_star=problem.f_star`` and ``eps=0`` (the bound's
    hyperparameters; eps > 0 shrinks the step below the floor as ||g|| -> 0). The lemma: for
    L-smooth f, f(x) - f* >= ||g||² / (2L), so (f(x) - f*) / (c ||g||²) >= 1 / (2 c L).

    **Rounding.** SPS computes f(x_k) - f* in floating point; near the minimum it is rounding
    noise (0, or negative and clipped to 0), and the step with it, although the optimizer is
    correct. The certified quantity is therefore
    q_k = gamma_k + min(tau / (c ||∇f(x_k)||²), floor), the step plus the most an error tau in
    the computed f(x_k) - f* changes it, with tau = ``theory.certify.numerical_floor(problem,
    "gap", dtype)`` = 1e4 eps (|f*| + f(x0) - f*) + the gap of a point the distance floor away
    from x* (eps the machine epsilon of the run's dtype), and floor = min(1 / (2 c L),
    gamma_b) (the cap keeps q_k finite; an allowance that large means the step is not checked).
    While f(x_k) - f* is well above tau the allowance is a fraction tau / (f(x_k) - f*) of
    the step, so a step short by more than that is still reported. ``observe`` reads
    ``param_groups[0]["step_size"]`` and computes ∇f where each step was taken; no claim at
    k = 0.

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[2.0, 0.0], [0.0, 1.0]], x_star=[0.0, 0.0], x0=[1.0, 1.0])
        >>> bound = sps_step_bound(problem, c=0.5, gamma_b=1.0)  # L = 2
        >>> bound.direction, float(bound(1))  # min(1/(2 * 0.5 * 2), 1)
        ('lower', 0.5)
    """
    c, gamma_b = _positive("c", c), float(gamma_b)
    if not gamma_b > 0:
        raise ValueError(f"gamma_b must be > 0 (inf allowed), got gamma_b={gamma_b!r}")
    _require_full_loss(problem, "sps_step_bound", "f_i = f, L_max = L, f_i* = f*")
    floor = min(1 / (2 * c * _require_global_smoothness(problem, "sps_step_bound")), gamma_b)
    return Bound(
        name="sps_step",
        quantity="distance",
        direction="lower",
        values=lambda k: np.where(np.asarray(k) >= 1, floor, np.nan),
        formula=(
            "gamma_k + min(tau / (c ||g_k||^2), floor) >= floor = min(1 / (2 c L_max), gamma_b)"
        ),
        hyperparameters={"c": c, "gamma_b": gamma_b, "f_star": float(problem.f_star), "eps": 0.0},
        observe=_sps_observer(problem, c, floor),
        optimizers=("SPS",),
        assumptions=(
            "f_i L_i-smooth, f_i* the minimum of f_i, eps = 0; quantity 'distance' is the step "
            "gamma_k plus its rounding allowance min(tau / (c ||g_k||^2), floor)"
        ),
        source="Loizou et al. (2021), Lemma 1",
        problem=problem,
    )


def polyak_bound(problem: Any) -> Bound:
    r"""The deterministic Polyak step (SPS with c = 1, gamma_b = inf, the full loss, f* exact).

    One step gives ||x_{k+1} - x*||² <= ||x_k - x*||² - (f_k - f*)² / ||g_k||² ([P87] 5.3), and
    L-smoothness gives ||g||² <= 2 L (f - f*). Hence:

    * mu-strongly convex: (f - f*)²/||g||² >= (f - f*)/(2L) >= mu/(4L) ||x - x*||², so
      ||x_k - x*||² <= (1 - mu / (4 L))^k ||x0 - x*||² (quantity ``"distance_sq"``);
    * convex: (f - f*)²/||g||² >= ||g||² / (4 L²), so min_{j<k} ||g_j||² <= 4 L² ||x0 - x*||² / k
      (quantity ``"grad_sq_min"``). [HK19] Theorem 1 states the same rates.

    Example::

        >>> from theory.problems import Quadratic
        >>> strongly = Quadratic([[4.0, 0.0], [0.0, 1.0]], x_star=[0.0, 0.0], x0=[0.0, 1.0])
        >>> polyak_bound(strongly).rate  # 1 - mu/(4L) = 1 - 1/16
        0.9375
        >>> convex = Quadratic([[2.0, 0.0], [0.0, 0.0]], x_star=[0.0, 0.0], x0=[1.0, 0.0])
        >>> float(polyak_bound(convex)(4))  # mu = 0: 4 L² ||x0 - x*||²/k = 4 * 2² * 1/4
        4.0
    """
    _require_convex(problem, "polyak_bound")
    _require_full_loss(problem, "polyak_bound", "the deterministic Polyak step, f* exact")
    L = _require_global_smoothness(problem, "polyak_bound")
    _, dist0_sq = _start_distance(problem)
    settings = {"c": 1.0, "gamma_b": math.inf, "f_star": float(problem.f_star), "eps": 0.0}
    if problem.mu > 0:
        rate = 1 - problem.mu / (4 * L)
        return Bound(
            name="polyak_strongly_convex",
            quantity="distance_sq",
            values=lambda k: rate ** np.asarray(k) * dist0_sq,
            formula="||x_k - x*||^2 <= (1 - mu/(4L))^k ||x0 - x*||^2",
            rate=rate,
            hyperparameters=settings,
            assumptions="f mu-strongly convex and L-smooth, f* exact",
            source="Polyak (1987) section 5.3; Hazan & Kakade (2019) Theorem 1",
            problem=problem,
        )
    return Bound(
        name="polyak_convex",
        quantity="grad_sq_min",
        values=lambda k: np.where(
            np.asarray(k) >= 1, 4 * L * L * dist0_sq / np.maximum(np.asarray(k), 1), np.inf
        ),
        formula="min_{j<k} ||grad f(x_j)||^2 <= 4 L^2 ||x0 - x*||^2 / k",
        order=-1,
        hyperparameters=settings,
        assumptions="f convex and L-smooth, f* exact",
        source="Polyak (1987) section 5.3; Hazan & Kakade (2019) Theorem 1",
        problem=problem,
    )


def armijo_bound(
    problem: Any,
    init_step_size: float,
    c: float,
    beta_b: float,
    eta_max: float = 10.0,
    max_backtracks: int = 100,
    searches_from: float = 1e-8,
) -> Bound:
    r"""Full-batch gradient descent with Armijo backtracking (``optim.SLS`` on the full loss):
    f(x_k) - f* <= max(||x0 - x*||² / (2 k eta_min), searches_from ||x0 - x*||),
    eta_min = min(eta_0, eta_max, 2 beta (1 - c) / L), for c >= 1/2.

    **The smallest step** ([VML+19] Lemma 1, with SLS's cap): L-smoothness makes the Armijo test
    f(x - eta g) <= f(x) - c eta ||g||² pass for every eta <= 2 (1 - c) / L. SLS's first trial is
    min(eta_0, eta_max) at k = 0, and afterwards min(reset(eta_{k-1}), eta_max) with reset
    keeping (option 0), growing (1) or restarting at eta_0 (2); so by induction every first
    trial is at least min(eta_0, eta_max, eta_{k-1}) >= eta_min. A trial that is accepted at
    once is >= eta_min; one reached by backtracking had eta / beta fail, so
    eta > 2 beta (1 - c) / L. Hence every accepted step is >= eta_min (the cap eta_max is part
    of it: with eta_0 > eta_max every step is <= eta_max).

    **The test always passes** within ``max_backtracks`` trials (else SLS falls back to a
    1e-6 step, the authors' safeguard, which no step-size floor covers): trials start at most at
    eta_max, so this needs
    eta_max beta^(max_backtracks - 1) <= 2 (1 - c) / L, checked here.

    **The gap** (A. Beck, First-Order Methods in Optimization, 2017, section 10.4): convexity
    and the test give f(x_{k+1}) - f* <= (||x_k - x*||² - ||x_{k+1} - x*||²) / (2 eta_k) +
    (1/2 - c) eta_k ||g_k||², and with c >= 1/2 the last term is <= 0; the left side is >= 0,
    so each term is at most (||x_k - x*||² - ||x_{k+1} - x*||²) / (2 eta_min); summing and
    using that f(x_k) decreases gives the bound.

    **Where SLS does not search** (``searches_from``, ``optim.polyak.SLS_SEARCHES_FROM``, the
    authors' absolute 1e-8): where ||g_k|| < 1e-8, SLS leaves x where it is, and so at every
    later step. The sum above then stops; the gap stays at f(x_k) - f* <= <g_k, x_k - x*> <=
    1e-8 ||x_k - x*|| <= 1e-8 ||x0 - x*|| (convexity, and the distances to x* do not grow:
    each term of the sum is >= 0). Hence the maximum (without it, a quadratic of curvature
    1e-6 started where ||g|| = 5e-9 was reported violated from step 223).

    The bound pins ``init_step_size``, ``c``, ``beta_b``, ``eta_max`` and ``max_backtracks``.

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0, 0.0], [0.0, 0.5]], x_star=[0.0, 0.0], x0=[1.0, 0.0])
        >>> # L = 1: eta_min = min(1, 10, 0.5 * 2 (1 - 0.5)/1) = 0.5; ||x0 - x*||² = 1
        >>> bound = armijo_bound(problem, init_step_size=1.0, c=0.5, beta_b=0.5)
        >>> float(bound(4))  # max(1/(2 * 4 * 0.5), 1e-8 * 1)
        0.25
    """
    _require_convex(problem, "armijo_bound")
    _require_full_loss(problem, "armijo_bound", "the Armijo test on f itself")
    L = _require_global_smoothness(problem, "armijo_bound")
    eta0 = _positive("init_step_size", init_step_size)
    searches_from = _positive("searches_from", searches_from)
    if not 0.5 <= c < 1:
        raise ValueError(f"armijo_bound needs c in [0.5, 1) (its proof does), got c={c!r}")
    if not 0 < beta_b < 1:
        raise ValueError(f"beta_b must be in (0, 1), got beta_b={beta_b!r}")
    eta_max = _positive("eta_max", eta_max)
    if (
        isinstance(max_backtracks, bool)
        or not isinstance(max_backtracks, int)
        or max_backtracks < 1
    ):
        raise ValueError(
            f"max_backtracks must be an integer >= 1, got max_backtracks={max_backtracks!r}"
        )
    accepted = 2 * (1 - c) / L  # every step up to this passes the test
    if eta_max * beta_b ** (max_backtracks - 1) > accepted:
        raise ValueError(
            f"max_backtracks={max_backtracks!r} is too few: the last trial "
            f"eta_max beta_b^(max_backtracks - 1) = {eta_max * beta_b ** (max_backtracks - 1):.6g}"
            f" may still exceed 2 (1 - c) / L = {accepted:.6g}, where the Armijo test is only "
            "guaranteed, and SLS then falls back to a 1e-6 step; allowed: max_backtracks >= "
            f"{1 + math.ceil(math.log(accepted / eta_max) / math.log(beta_b))}"
        )
    eta_min = min(eta0, eta_max, beta_b * accepted)
    dist0, dist0_sq = _start_distance(problem)
    stalled = searches_from * dist0  # (the gap where SLS stops searching, see above)
    return Bound(
        name="armijo",
        quantity="gap",
        values=lambda k: np.where(
            np.asarray(k) >= 1,
            np.maximum(dist0_sq / (2 * np.maximum(np.asarray(k), 1) * eta_min), stalled),
            np.inf,
        ),
        formula=(
            "f(x_k) - f* <= max(||x0 - x*||^2 / (2 k min(eta_0, eta_max, 2 beta (1 - c) / L)), "
            f"{searches_from:g} ||x0 - x*||)"
        ),
        order=-1,
        hyperparameters={
            "init_step_size": eta0,
            "c": float(c),
            "beta_b": float(beta_b),
            "eta_max": eta_max,
            "max_backtracks": float(max_backtracks),
        },
        assumptions=(
            "f convex and L-smooth, full-batch loss, c >= 1/2, "
            "eta_max beta_b^(max_backtracks - 1) <= 2 (1 - c) / L, no step where "
            f"||grad f|| < {searches_from:g}"
        ),
        source="Vaswani et al. (2019) Lemma 1; Beck (2017) section 10.4",
        problem=problem,
    )


def schedule_free_x(param: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """x, the point Schedule-Free SGD evaluates, from y (the parameter in train mode) and z:
    x = y + (1 - 1/beta)(z - y) (from y = (1 - beta) z + beta x, [DYM+24] eq. (1)). Before the
    first update (no z yet) x = y = x0. After k updates it is x_k of
    :func:`schedulefree_sgd_bound`, the average of z_1, ..., z_k."""
    z = optimizer.state[param].get("z")
    y = param.detach().to(torch.float64)
    if z is None:
        return y.clone()
    beta = float(optimizer.param_groups[0]["momentum"])
    return y + (1 - 1 / beta) * (z.detach().to(torch.float64) - y)


def schedulefree_sgd_bound(problem: Any, lr: float, momentum: float = 0.9) -> Bound:
    r"""E f(x_k) - f* <= (||x0 - x*||² + lr² G²) / (2 lr k) + lr G² / 2 for the point x_k that
    Schedule-Free SGD (``optim.SGDScheduleFree``, the ``schedulefree`` package) holds in
    ``eval()`` mode after k updates ([DYM+24] Theorem 1, applied from z_1; derivation below).

    Setting: f convex, stochastic subgradients with ||g|| <= G, constant lr, no warmup, r = 0,
    any momentum beta in (0, 1) (``optim.SGDScheduleFree`` refuses 0 and 1, and x is recovered
    from (y, z) by dividing by beta; another value raises ValueError), no weight decay (the
    bound's hyperparameters).

    **The theorem** ([DYM+24] eq. (1)-(3), Theorem 1): z_{t+1} = z_t - lr g_t, g_t a stochastic
    subgradient at y_t = (1 - beta) z_t + beta x_t, x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}
    with c_{t+1} = 1/(t + 1), started at x_1 = z_1. So x_T = (z_1 + ... + z_T) / T, which takes
    T - 1 gradient steps, and its proof (the online-to-batch step) bounds
    T (F(x_T) - F*) <= Σ_{t=1}^T <g_t, z_t - x*> <= ||z_1 - x*||² / (2 lr) + lr T G² / 2 (the
    regret of the z-sequence, a gradient step on linear losses; it involves g_T as well), i.e.
    E F(x_T) - F* <= ||z_1 - x*||² / (2 lr T) + lr G² / 2.

    **The optimizer's indexing.** Its averaging weight at its first update is c = 1 (weight_sum
    starts at 0, as in the package), so its first update sets z_1 = x0 - lr g(x0) (y_0 = z_0 =
    x0) and x_1 = z_1, and update j >= 2 sets x_j = (1 - 1/j) x_{j-1} + z_j / j: after k
    updates x_k = (z_1 + ... + z_k) / k. z_0 = x0 is left out of the average, and from z_1 on
    it is the theorem's method (x_1 = z_1, hence y_1 = z_1, and the same steps), so its x_k is
    the theorem's x_T with T = k, started from z_1 instead of x0. Hence
    E f(x_k) - f* <= E ||z_1 - x*||² / (2 lr k) + lr G² / 2.

    **The start.** ||z_1 - x*||² = ||x0 - x*||² - 2 lr <g_0, x0 - x*> + lr² ||g_0||², and
    E <g_0, x0 - x*> = <∂f(x0), x0 - x*> >= f(x0) - f* >= 0 (convexity), ||g_0|| <= G, so
    E ||z_1 - x*||² <= ||x0 - x*||² + lr² G². (Without that term the bound fails at k = 1:
    f(x) = |x|, x0 = 0.01, lr = 1 gives x_1 = -0.99, gap 0.99 > D²/(2 lr) + lr G²/2 = 0.50005;
    the bound here is 1.00005.) lr = D / (G sqrt(k)) gives (D G / sqrt(k)) (1 + 1/(2k)).

    The bound is on x (``schedule_free_x``), the average the optimizer's ``eval()`` returns.

    Example::

        >>> from theory.problems import LeastAbsoluteDeviations
        >>> problem = LeastAbsoluteDeviations([[1.0]], [0.0], x0=[0.01])  # f(x) = |x|, G = 1
        >>> bound = schedulefree_sgd_bound(problem, lr=1.0)  # (0.01² + 1)/(2 k) + 1/2
        >>> round(float(bound(1)), 6), bound.expectation
        (1.00005, True)
    """
    _require_convex(problem, "schedulefree_sgd_bound")
    lr = _positive("lr", lr)
    momentum = _finite_float("momentum", momentum)
    if not 0 < momentum < 1:
        raise ValueError(
            f"momentum must be in (0, 1) (beta of y = (1 - beta) z + beta x; the optimizer's "
            f"x is recovered as y + (1 - 1/beta)(z - y)), got momentum={momentum!r}"
        )
    G = float(problem.G)
    if not math.isfinite(G):
        raise ValueError(f"schedulefree_sgd_bound needs a G-Lipschitz problem, got G={G!r}")
    _, dist0_sq = _start_distance(problem)
    start_sq = dist0_sq + lr * lr * G * G  # the bound on E ||z_1 - x*||²
    return Bound(
        name="schedulefree_sgd",
        quantity="gap",
        values=lambda k: np.where(
            np.asarray(k) >= 1,
            start_sq / (2 * lr * np.maximum(np.asarray(k), 1)) + lr * G * G / 2,
            np.inf,
        ),
        formula="E f(x_k) - f* <= (||x0 - x*||^2 + lr^2 G^2) / (2 lr k) + lr G^2 / 2",
        hyperparameters={
            "lr": lr,
            "momentum": momentum,
            "weight_decay": 0.0,
            "warmup_steps": 0.0,
            "r": 0.0,
        },
        observe=schedule_free_x,
        assumptions=(
            "f convex and G-Lipschitz (||g|| <= G for every stochastic subgradient); constant "
            "lr, no warmup, r = 0, so x_k = (z_1 + ... + z_k)/k (weight c = 1 at the first "
            "update)"
        ),
        source=(
            "Defazio et al. (2024), Theorem 1, applied from z_1 = x0 - lr g(x0) (derivation in "
            "theory.lr_free_bounds.schedulefree_sgd_bound)"
        ),
        problem=problem,
        expectation=bool(getattr(problem, "stochastic", False)),
    )
