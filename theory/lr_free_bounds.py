"""The guarantees of the learning-rate-free and adaptive step sizes (``optim.Prodigy``,
``optim.DAdapt*``, ``optim.DoG``, ``optim.SPS``, ``optim.SLS``, ``optim.SGDScheduleFree``) as
``Bound``s.

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
* [LVLL21] N. Loizou, S. Vaswani, I. Laradji, S. Lacoste-Julien, "Stochastic Polyak Step-size for
  SGD", AISTATS 2021, Lemma 1: gamma_k >= min(1 / (2 c L_max), gamma_b) for L_i-smooth f_i.
* [P87] B. T. Polyak, "Introduction to Optimization" (1987), section 5.3; [HK19] E. Hazan and
  S. Kakade, "Revisiting the Polyak step size", arXiv:1905.00313 (2019), Theorem 1: the rates of
  the deterministic Polyak step; the constants below are derived in the functions' docstrings
  from the step's one-step inequality ||x_{k+1} - x*||² <= ||x_k - x*||² - (f_k - f*)² / ||g_k||².
* [VML+19] S. Vaswani et al., "Painless Stochastic Gradient", NeurIPS 2019, Lemma 1 (the
  backtracking step is at least min(eta_max, 2 beta (1 - c) / L)); the gap bound for c >= 1/2 is
  the textbook argument for Armijo backtracking (A. Beck, "First-Order Methods in
  Optimization", SIAM 2017, section 10.4), derived in :func:`armijo_bound`.
* [IHC23] M. Ivgi, O. Hinder and Y. Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic
  Step Size Schedule", ICML 2023 (arXiv:2302.12022): the iterate-stability bound
  r̄_T <= 3 ||x0 - x*|| for r_eps <= 3 ||x0 - x*|| (recalled as Proposition 3, for the tamed
  step size T-DoG; NOT verified from this machine, see :func:`dog_iterate_bound`).
* [DYM+24] A. Defazio et al., "The Road Less Scheduled", NeurIPS 2024, Theorem 1 (and its proof:
  F(x_T) - F* <= (D² / (2 gamma) + gamma G² T / 2) / T for any beta in [0, 1]).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from theory.bounds import Bound, _positive, _require_convex, _start_distance

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


def d_estimate_bound(problem: Any, factor: float = 1.0) -> Bound:
    """d_k <= factor ||x0 - x*|| at every step, for D-Adaptation and Prodigy on a convex problem.

    [DM23] Lemma 1: the estimate built from the weighted gradient sum is a lower bound on D, and
    d_k only takes values of it (or d0). The dadaptation package's ``DAdaptSGD`` uses twice the
    paper's estimate (2 num / ||s|| instead of num / ||s||), so certify it with ``factor=2``.
    The assumption is d0 <= D: a larger d0 breaks the bound at k = 0. Reads
    ``param_groups[0]["d"]`` (a host read after each step, outside ``step()``).

    >>> from theory.problems import Quadratic
    >>> problem = Quadratic.from_spectrum([1.0, 4.0], seed=0)
    >>> bound = d_estimate_bound(problem)
    >>> bool(bound(5) == float((problem.x0 - problem.x_star).norm()))
    True
    """
    _require_convex(problem, "d_estimate_bound")
    factor = _positive("factor", factor)
    distance, _ = _start_distance(problem)
    return Bound(
        name="d_estimate" if factor == 1 else f"d_estimate x {factor:g}",
        quantity="distance",
        values=lambda k: np.full(np.shape(k), factor * distance),
        formula=f"d_k <= {factor:g} ||x0 - x*||" if factor != 1 else "d_k <= ||x0 - x*||",
        observe=_observer(problem, "d"),
        assumptions="convex f; d0 <= ||x0 - x*||; quantity 'distance' is d_k (observe)",
        source="Defazio & Mishchenko (2023), Lemma 1; Mishchenko & Defazio (2023), Lemma 1",
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


def dog_iterate_bound(problem: Any, factor: float = 3.0) -> Bound:
    r"""DoG's iterates stay near the start: ||x_k - x0|| <= factor ||x0 - x*|| at every step k
    (factor 3 in [IHC23]), i.e. r̄_k = max(r_eps, max_{i<=k} ||x_i - x0||) <= 3 d_0.

    The statement, as recalled from [IHC23] section 3 ("iterate stability"; Proposition 3 of
    arXiv:2302.12022, also part of its Theorem 1): for convex f with locally bounded stochastic
    gradients, if r_eps <= 3 d_0 (d_0 = ||x0 - x*||), the iterates of T-DoG, the "tamed" step
    size eta_t = r̄_t / sqrt(G'_t) with G'_t = 8^4 log_+^2(1 + t l̄_t^2 / l̄_0^2)
    (G_{t-1} + 16 l̄_t^2) (l̄_t the running maximum of the gradient-norm bound), satisfy
    P(r̄_T > 3 d_0) <= delta (with log(1/delta) factors in G'_t). **Not verified**: the search
    tools of this project returned only the paper's abstract, so the proposition's number, the
    constants of G'_t and the exact hypotheses are from memory; the factor is a parameter.

    What is certified here is therefore not the theorem itself: ``optim.DoG`` is plain
    (untamed) DoG, eta_t = r̄_t / sqrt(G_t), whose stability [IHC23] reports as an empirical
    observation. On a deterministic convex problem (full gradients) the bound is checked at
    every step as a property of plain DoG; the hyperparameters are DoG's defaults lr = 1 (the
    paper's c) and weight_decay = 0. The assumption is r_eps = reps_rel (1 + ||x0||) <= factor
    d_0: the first update moves exactly r_eps (eta_0 = r_eps / ||g_0||), so a larger r_eps breaks
    the bound at k = 1. Quantity ``"distance"`` is ||x_k - x0|| (observe).

    >>> from theory.problems import Quadratic
    >>> problem = Quadratic.from_spectrum([1.0, 4.0], seed=0)
    >>> bound = dog_iterate_bound(problem)
    >>> bool(bound(5) == 3 * float((problem.x0 - problem.x_star).norm()))
    True
    """
    _require_convex(problem, "dog_iterate_bound")
    factor = _positive("factor", factor)
    distance, _ = _start_distance(problem)
    return Bound(
        name="dog_iterates" if factor == 3 else f"dog_iterates x {factor:g}",
        quantity="distance",
        values=lambda k: np.full(np.shape(k), factor * distance),
        formula=f"||x_k - x0|| <= {factor:g} ||x0 - x*||",
        hyperparameters={"lr": 1.0, "weight_decay": 0.0},
        observe=_moved_from_start(problem),
        assumptions=(
            f"convex f; r_eps = reps_rel (1 + ||x0||) <= {factor:g} ||x0 - x*||; proven for "
            "T-DoG (tamed), checked here on plain DoG; quantity 'distance' is ||x_k - x0||"
        ),
        source=(
            "Ivgi, Hinder & Carmon (2023), arXiv:2302.12022, iterate stability (recalled as "
            "Proposition 3; not verified)"
        ),
        problem=problem,
    )


def sps_step_bound(problem: Any, c: float = 0.5, gamma_b: float = 1.0) -> Bound:
    """gamma_k >= min(1 / (2 c L), gamma_b) for SPS_max on an L-smooth problem ([LVLL21] Lemma 1).

    With the full loss every f_i is f, so L_max = L and f_i* = f*; the optimizer must be built
    with ``c``, ``gamma_b`` and ``f_star=problem.f_star`` (the bound's hyperparameters). Reads
    ``param_groups[0]["step_size"]``; no claim at k = 0.
    """
    c, gamma_b = _positive("c", c), float(gamma_b)
    if not gamma_b > 0:
        raise ValueError(f"gamma_b must be > 0 (inf allowed), got gamma_b={gamma_b!r}")
    floor = min(1 / (2 * c * problem.L), gamma_b)
    return Bound(
        name="sps_step",
        quantity="distance",
        direction="lower",
        values=lambda k: np.where(np.asarray(k) >= 1, floor, np.nan),
        formula="gamma_k >= min(1 / (2 c L_max), gamma_b)",
        hyperparameters={"c": c, "gamma_b": gamma_b, "f_star": float(problem.f_star)},
        observe=_observer(problem, "step_size"),
        assumptions="f_i L_i-smooth, f_i* the minimum of f_i; quantity 'distance' is gamma_k",
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
    """
    _require_convex(problem, "polyak_bound")
    _, dist0_sq = _start_distance(problem)
    settings = {"c": 1.0, "gamma_b": math.inf, "f_star": float(problem.f_star)}
    if problem.mu > 0:
        rate = 1 - problem.mu / (4 * problem.L)
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
    L = problem.L
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


def armijo_bound(problem: Any, init_step_size: float, c: float, beta_b: float) -> Bound:
    r"""Full-batch gradient descent with Armijo backtracking (``optim.SLS`` on the full loss):
    f(x_k) - f* <= ||x0 - x*||² / (2 k eta_min), eta_min = min(eta_0, 2 beta (1 - c) / L), c >= 1/2.

    L-smoothness makes the Armijo test pass for every eta <= 2 (1 - c) / L, so an accepted step
    is at least eta_min ([VML+19] Lemma 1; the trial never drops below the last accepted step
    with reset options 0 and 1, nor below eta_0 with option 2). Convexity and the test give
    f(x_{k+1}) - f* <= (||x_k - x*||² - ||x_{k+1} - x*||²) / (2 eta_k) + (1/2 - c) eta_k ||g_k||²,
    and with c >= 1/2 the last term is <= 0; summing and using that f(x_k) decreases gives the
    bound (Beck 2017, section 10.4).
    """
    _require_convex(problem, "armijo_bound")
    eta0 = _positive("init_step_size", init_step_size)
    if not 0.5 <= c < 1:
        raise ValueError(f"armijo_bound needs c in [0.5, 1) (its proof does), got c={c!r}")
    if not 0 < beta_b < 1:
        raise ValueError(f"beta_b must be in (0, 1), got beta_b={beta_b!r}")
    eta_min = min(eta0, 2 * beta_b * (1 - c) / problem.L)
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="armijo",
        quantity="gap",
        values=lambda k: np.where(
            np.asarray(k) >= 1, dist0_sq / (2 * np.maximum(np.asarray(k), 1) * eta_min), np.inf
        ),
        formula="f(x_k) - f* <= ||x0 - x*||^2 / (2 k min(eta_0, 2 beta (1 - c) / L))",
        order=-1,
        hyperparameters={"init_step_size": eta0, "c": float(c), "beta_b": float(beta_b)},
        assumptions="f convex and L-smooth, full-batch loss, c >= 1/2",
        source="Vaswani et al. (2019) Lemma 1; Beck (2017) section 10.4",
        problem=problem,
    )


def schedule_free_x(param: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """x, the point Schedule-Free SGD evaluates, from y (the parameter in train mode) and z:
    x = y + (1 - 1/beta)(z - y)."""
    z = optimizer.state[param].get("z")
    y = param.detach().to(torch.float64)
    if z is None:
        return y.clone()
    beta = float(optimizer.param_groups[0]["momentum"])
    return y + (1 - 1 / beta) * (z.detach().to(torch.float64) - y)


def schedulefree_sgd_bound(problem: Any, lr: float, momentum: float = 0.9) -> Bound:
    """E f(x_k) - f* <= ||x0 - x*||² / (2 lr k) + lr G² / 2 for Schedule-Free SGD ([DYM+24] Thm 1).

    On a convex G-Lipschitz problem with a constant step lr, no warmup, r = 0 (so c_{k+1} =
    1/(k+1)) and any momentum beta in [0, 1]; lr = D / (G sqrt(T)) gives D G / sqrt(T) at k = T.
    The bound is on x (``schedule_free_x``), the average the optimizer's ``eval()`` returns.
    """
    _require_convex(problem, "schedulefree_sgd_bound")
    lr = _positive("lr", lr)
    G = float(problem.G)
    if not math.isfinite(G):
        raise ValueError(f"schedulefree_sgd_bound needs a G-Lipschitz problem, got G={G!r}")
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="schedulefree_sgd",
        quantity="gap",
        values=lambda k: np.where(
            np.asarray(k) >= 1,
            dist0_sq / (2 * lr * np.maximum(np.asarray(k), 1)) + lr * G * G / 2,
            np.inf,
        ),
        formula="E f(x_k) - f* <= ||x0 - x*||^2 / (2 lr k) + lr G^2 / 2",
        hyperparameters={
            "lr": lr,
            "momentum": float(momentum),
            "weight_decay": 0.0,
            "warmup_steps": 0.0,
            "r": 0.0,
        },
        observe=schedule_free_x,
        assumptions="f convex and G-Lipschitz; constant lr, c_{k+1} = 1/(k+1)",
        source="Defazio et al. (2024), Theorem 1",
        problem=problem,
        expectation=bool(getattr(problem, "stochastic", False)),
    )
