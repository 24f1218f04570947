"""Closed-form step-size limits and convergence bounds, as functions of the step k.

Conventions: ``k`` counts updates already made, so k = 0 is the starting point x_0 and the bound
at k describes x_k, the point after k updates. ``lr`` is the step size η. Every bound is written
twice: once as a plain function of k and the constants (``gd_convex_gap`` ...), once as a
``Bound`` built from a ``Problem`` (``gd_bound`` ...), which is what ``theory.certify`` checks.
A ``Bound`` names the measured quantity (``"gap"`` = f(x_k) - f*, ``"distance"`` = ||x_k - x*||,
``"distance_sq"`` = ||x_k - x*||²), says whether it bounds from above or below, carries the
hyper-parameters it assumes (``lr``, ``momentum``, ``nesterov``) and its asymptotic rate.

Sources:
* [GG] G. Garrigos and R. M. Gower, "Handbook of Convergence Theorems for (Stochastic) Gradient
  Methods", arXiv:2301.11235 (2023), Theorems 3.4 and 3.6.
* [N04] Y. Nesterov, "Introductory Lectures on Convex Optimization" (2004): Theorem 2.1.15
  (step 2/(mu+L)), section 2.2.1 (constant step scheme III and Theorem 2.2.3).
* [P64] B. T. Polyak, "Some methods of speeding up the convergence of iteration methods" (1964);
  [P87] Polyak, "Introduction to Optimization" (1987), section 3.2.1 (heavy ball).
* [BT09] A. Beck and M. Teboulle, "A fast iterative shrinkage-thresholding algorithm" (SIAM J.
  Imaging Sci., 2009), Theorem 4.4; [SBC16] W. Su, S. Boyd, E. Candès, "A Differential Equation
  for Modeling Nesterov's Accelerated Gradient Method" (JMLR, 2016), introduction (the bound
  for the momentum (k - 1)/(k + 2)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "QUANTITIES",
    "Bound",
    "StepSizeLimits",
    "gd_bound",
    "gd_convex_gap",
    "gd_divergence_bound",
    "gd_divergence_distance",
    "gd_long_step_bound",
    "gd_long_step_gap",
    "gd_optimal_step_bound",
    "gd_optimal_step_distance",
    "gd_strongly_convex_bound",
    "gd_strongly_convex_distance_sq",
    "heavy_ball_bound",
    "heavy_ball_distance",
    "heavy_ball_parameters",
    "heavy_ball_rate",
    "nesterov_bound",
    "nesterov_convex_gap",
    "nesterov_momentum",
    "nesterov_strongly_convex_bound",
    "nesterov_strongly_convex_gap",
    "optimal_step_rate",
    "safe_step",
    "stability_edge",
    "step_size_limits",
]

QUANTITIES = {
    "gap": "f(x_k) - f*",
    "distance": "||x_k - x*||",
    "distance_sq": "||x_k - x*||^2",
}

# Rounding slack when comparing a step size with 1/L or 2/L.
_RTOL = 1e-12


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive real number, got {name}={value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {name}={value!r}")
    return value


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a non-negative real number, got {name}={value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite number, got {name}={value!r}")
    return value


def _constants(L: Any, mu: Any = 0.0, *, strongly_convex: bool = False) -> tuple[float, float]:
    L = _positive("L", L)
    mu = _positive("mu", mu) if strongly_convex else _non_negative("mu", mu)
    if mu > L * (1 + _RTOL):
        raise ValueError(f"mu must not exceed L, got mu={mu!r} > L={L!r}")
    return L, min(mu, L)


def _steps(k: Any) -> np.ndarray:
    steps = np.asarray(k, dtype=np.float64)
    if np.any(steps < 0) or not np.all(np.isfinite(steps)):
        raise ValueError(f"k must be non-negative step counts, got k={k!r}")
    return steps


def _check_safe_lr(lr: Any, L: float) -> float:
    lr = _positive("lr", lr)
    if lr > (1 + _RTOL) / L:
        raise ValueError(
            f"lr must satisfy 0 < lr <= 1/L = {1 / L:.6g} for this bound, got lr={lr!r} "
            f"(= {lr * L:.6g}/L)"
        )
    return lr


# ----------------------------------------------------------------------------------------------
# step-size limits
# ----------------------------------------------------------------------------------------------
def safe_step(L: float) -> float:
    """1/L: the largest constant step for which gradient descent on an L-smooth function
    decreases f at every step (descent lemma f(x - η∇f) <= f(x) - η(1 - ηL/2)||∇f||², minimised
    at η = 1/L) and for which every bound of this module holds ([GG] Thms 3.4, 3.6)."""
    return 1.0 / _positive("L", L)


def stability_edge(L: float) -> float:
    """2/L: gradient descent on a quadratic with largest Hessian eigenvalue L converges for
    0 < η < 2/L and diverges for η > 2/L (the top mode is multiplied by |1 - ηL| > 1 per step)
    unless x_0 - x* has no component along the top eigenvector ([N04] section 1.2.3)."""
    return 2.0 / _positive("L", L)


def optimal_step_rate(L: float, mu: float) -> float:
    """(κ - 1)/(κ + 1) = (L - mu)/(L + mu): the contraction per step of ||x_k - x*|| for gradient
    descent with the step 2/(mu + L) on an L-smooth, mu-strongly convex f ([N04] Thm 2.1.15)."""
    L, mu = _constants(L, mu, strongly_convex=True)
    return (L - mu) / (L + mu)


def heavy_ball_parameters(L: float, mu: float) -> tuple[float, float]:
    """Polyak's optimal heavy-ball step and momentum on a quadratic with spectrum in [mu, L]
    ([P64], [P87] section 3.2.1): α = 4/(√L + √mu)², β = ((√κ - 1)/(√κ + 1))².

    The update is x_{k+1} = x_k - α∇f(x_k) + β(x_k - x_{k-1}) with x_{-1} = x_0, which is exactly
    ``torch.optim.SGD(lr=α, momentum=β)`` (buffer b_k = β b_{k-1} + ∇f(x_k), x_{k+1} = x_k - α b_k).
    """
    L, mu = _constants(L, mu, strongly_convex=True)
    alpha = 4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2
    return alpha, heavy_ball_rate(L, mu) ** 2


def heavy_ball_rate(L: float, mu: float) -> float:
    """q = (√κ - 1)/(√κ + 1): the asymptotic contraction per step of optimal heavy ball
    ([P87] section 3.2.1, Theorem 1 there: ||x_k - x*|| <= C (q + ε)^k for every ε > 0)."""
    L, mu = _constants(L, mu, strongly_convex=True)
    root = math.sqrt(L / mu)
    return (root - 1) / (root + 1)


def nesterov_momentum(L: float, mu: float) -> float:
    """(√κ - 1)/(√κ + 1): the constant momentum of Nesterov's method for an L-smooth,
    mu-strongly convex f ([N04] constant step scheme III); with step 1/L."""
    return heavy_ball_rate(L, mu)


@dataclass(frozen=True)
class StepSizeLimits:
    """The step sizes theory gives for an L-smooth (and mu-strongly convex) function.

    Attributes: ``safe`` = 1/L (monotone decrease; the 1/L bounds hold), ``edge`` = 2/L
    (stability edge on quadratics: diverges above it), ``optimal`` = 2/(mu + L) when mu > 0
    (fastest constant GD step on quadratics, rate (κ-1)/(κ+1)), ``heavy_ball`` = (α, β) of
    Polyak's method and ``nesterov`` = (1/L, (√κ-1)/(√κ+1)) when mu > 0; ``assumptions`` states
    for each entry what it needs.
    """

    L: float
    mu: float
    safe: float
    edge: float
    optimal: float | None
    heavy_ball: tuple[float, float] | None
    nesterov: tuple[float, float] | None
    assumptions: dict[str, str] = field(default_factory=dict)


def step_size_limits(L: float, mu: float = 0.0) -> StepSizeLimits:
    """The safe step 1/L, the stability edge 2/L and, if mu > 0, the optimal GD step, heavy-ball
    and Nesterov parameters, each with its assumptions (see ``StepSizeLimits``)."""
    L, mu = _constants(L, mu)
    strongly = mu > 0
    return StepSizeLimits(
        L=L,
        mu=mu,
        safe=safe_step(L),
        edge=stability_edge(L),
        optimal=2.0 / (L + mu) if strongly else None,
        heavy_ball=heavy_ball_parameters(L, mu) if strongly else None,
        nesterov=(1.0 / L, nesterov_momentum(L, mu)) if strongly else None,
        assumptions={
            "safe": "f convex and L-smooth (∇f L-Lipschitz); GD with lr <= 1/L has "
            "f(x_k) - f* <= ||x0 - x*||²/(2 lr k)",
            "edge": "f quadratic with largest Hessian eigenvalue L: GD diverges for lr > 2/L "
            "(any x0 with a component on the top eigenvector); for general L-smooth f "
            "lr < 2/L still guarantees descent",
            "optimal": "f L-smooth and mu-strongly convex; ||x_k - x*|| <= ((κ-1)/(κ+1))^k "
            "||x0 - x*||",
            "heavy_ball": "f quadratic with Hessian spectrum in [mu, L]; rate (√κ-1)/(√κ+1) "
            "up to a factor linear in k",
            "nesterov": "f L-smooth and mu-strongly convex; f(x_k) - f* decays like (1 - 1/√κ)^k",
        },
    )


# ----------------------------------------------------------------------------------------------
# closed forms as functions of k
# ----------------------------------------------------------------------------------------------
def gd_convex_gap(k: Any, lr: float, dist0_sq: float) -> np.ndarray:
    """||x0 - x*||² / (2 lr k): gradient descent with 0 < lr <= 1/L on a convex L-smooth f
    has f(x_k) - f* at most this ([GG] Theorem 3.4). Infinite at k = 0 (no claim)."""
    steps = _steps(k)
    lr, dist0_sq = _positive("lr", lr), _non_negative("dist0_sq", dist0_sq)
    with np.errstate(divide="ignore"):
        return np.where(steps > 0, dist0_sq / (2 * lr * np.maximum(steps, 1e-300)), np.inf)


def gd_long_step_gap(k: Any, lr: float, L: float, gap0: float, dist0_sq: float) -> np.ndarray:
    """2 Δ0 r0² / (2 r0² + k lr (2 - L lr) Δ0), with Δ0 = f(x0) - f* and r0² = ||x0 - x*||²:
    gradient descent with any 0 < lr < 2/L on a convex L-smooth f has f(x_k) - f* at most this
    ([N04] Theorem 2.1.14). Equal to Δ0 at k = 0; O(1/k) afterwards.

    Derivation (as in [N04]): each step decreases f by at least ω ||∇f(x_k)||², ω = lr (1 -
    L lr / 2); ||x_k - x*|| <= r0; convexity gives Δ_k <= r0 ||∇f(x_k)||, so Δ_{k+1} <= Δ_k -
    (ω / r0²) Δ_k², hence 1/Δ_k >= 1/Δ0 + k ω / r0².
    """
    steps = _steps(k)
    lr, L = _positive("lr", lr), _positive("L", L)
    if not lr < 2 / L:
        raise ValueError(f"lr must be below 2/L = {2 / L!r}, got lr={lr!r}")
    gap0, dist0_sq = _non_negative("gap0", gap0), _non_negative("dist0_sq", dist0_sq)
    denominator = 2 * dist0_sq + steps * lr * (2 - L * lr) * gap0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, 2 * gap0 * dist0_sq / denominator, 0.0)


def gd_strongly_convex_distance_sq(k: Any, lr: float, mu: float, dist0_sq: float) -> np.ndarray:
    """(1 - lr mu)^k ||x0 - x*||²: gradient descent with 0 < lr <= 1/L on an L-smooth,
    mu-strongly convex f has ||x_k - x*||² at most this ([GG] Theorem 3.6)."""
    steps = _steps(k)
    lr, mu = _positive("lr", lr), _positive("mu", mu)
    return (1 - lr * mu) ** steps * _non_negative("dist0_sq", dist0_sq)


def gd_optimal_step_distance(k: Any, L: float, mu: float, dist0: float) -> np.ndarray:
    """((κ - 1)/(κ + 1))^k ||x0 - x*||: gradient descent with lr = 2/(mu + L) on an L-smooth,
    mu-strongly convex f ([N04] Theorem 2.1.15)."""
    return optimal_step_rate(L, mu) ** _steps(k) * _non_negative("dist0", dist0)


def heavy_ball_distance(k: Any, L: float, mu: float, dist0: float) -> np.ndarray:
    r"""A non-asymptotic bound on ||x_k - x*|| for optimal heavy ball on a quadratic:

        ||x_k - x*|| <= √2 q^{k-1} (k m + (k - 1) q) ||x0 - x*||,  k >= 1   (= ||x0 - x*|| at k=0)

    with q = (√κ-1)/(√κ+1) and m = √(1 + 4q² + q⁴).

    Polyak's theorem ([P87] 3.2.1) only gives the rate asymptotically, ||x_k - x*|| <= C (q+ε)^k,
    because at the extreme eigenvalues mu and L the per-mode iteration matrix
    M_λ = [[1 + β - αλ, -β], [1, 0]] has the double eigenvalue q (a Jordan block), so the error
    there behaves like k q^k. The polynomial factor is made explicit here: for any 2x2 matrix
    with eigenvalues r1, r2 of modulus <= q, M^k = s_k M - det(M) s_{k-1} I with
    s_k = Σ_{j<k} r1^j r2^{k-1-j}, |s_k| <= k q^{k-1}; with α, β optimal, det M_λ = β = q² and
    |1 + β - αλ| <= 2q on [mu, L], so ||M_λ||_2 <= ||M_λ||_F <= m and
    ||M_λ^k|| <= q^{k-1}(k m + (k - 1) q). The state (x_k - x*, x_{k-1} - x*) starts at norm
    √2 ||x0 - x*|| (x_{-1} = x0) and decouples over the eigenvectors of A, which gives the bound.
    """
    steps = _steps(k)
    q = heavy_ball_rate(L, mu)
    m = math.sqrt(1 + 4 * q**2 + q**4)
    dist0 = _non_negative("dist0", dist0)
    with np.errstate(divide="ignore", invalid="ignore"):
        polynomial = math.sqrt(2) * (steps * m + (steps - 1) * q)
        value = np.power(q, np.maximum(steps - 1, 0)) * polynomial * dist0
    return np.where(steps > 0, value, dist0)


def nesterov_convex_gap(k: Any, L: float, dist0_sq: float) -> np.ndarray:
    """2 L ||x0 - x*||² / (k + 1)²: Nesterov's accelerated gradient (step 1/L, momentum
    (t_k - 1)/t_{k+1} with t_1 = 1, t_{k+1} = (1 + √(1 + 4 t_k²))/2 as in FISTA, or (k-1)/(k+2))
    on a convex L-smooth f, for the gradient-step sequence x_k ([BT09] Thm 4.4, [SBC16]).
    Needs a momentum that grows with k: a constant-momentum method has no such guarantee."""
    steps = _steps(k)
    L, dist0_sq = _positive("L", L), _non_negative("dist0_sq", dist0_sq)
    return 2 * L * dist0_sq / (steps + 1) ** 2


def nesterov_strongly_convex_gap(
    k: Any, L: float, mu: float, gap0: float, dist0_sq: float
) -> np.ndarray:
    """(1 - √(mu/L))^k (f(x0) - f* + mu/2 ||x0 - x*||²): Nesterov's method with step 1/L and
    constant momentum (√κ-1)/(√κ+1) on an L-smooth, mu-strongly convex f, for the gradient-step
    sequence x_{k+1} = y_k - ∇f(y_k)/L ([N04] constant step scheme III with Theorem 2.2.3,
    γ0 = mu)."""
    L, mu = _constants(L, mu, strongly_convex=True)
    start = _non_negative("gap0", gap0) + mu / 2 * _non_negative("dist0_sq", dist0_sq)
    return (1 - math.sqrt(mu / L)) ** _steps(k) * start


def gd_divergence_distance(k: Any, lr: float, L: float, top_component: float) -> np.ndarray:
    """|1 - lr L|^k |<v, x0 - x*>|: on a quadratic, x_k - x* = (I - lr A)^k (x0 - x*), so the
    component along the top eigenvector v is multiplied by exactly (1 - lr L) per step and
    ||x_k - x*|| is at least this. For lr > 2/L it grows geometrically: divergence ([N04] 1.2.3)."""
    steps = _steps(k)
    lr, L = _positive("lr", lr), _positive("L", L)
    return abs(1 - lr * L) ** steps * abs(float(top_component))


# ----------------------------------------------------------------------------------------------
# bounds tied to a problem
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bound:
    """A closed-form bound on a quantity measured along a run, checked by ``theory.certify``.

    Attributes
    ----------
    name: short identifier (``"gd_convex"``, ...).
    quantity: ``"gap"`` (f(x_k) - f*), ``"distance"`` or ``"distance_sq"``.
    values: k (array of step counts) -> bound values (inf where the bound says nothing).
    direction: ``"upper"`` (observed <= bound) or ``"lower"`` (observed >= bound).
    formula: the bound as text, for messages and plots.
    rate: asymptotic per-step factor of the bound (None for sublinear bounds).
    polynomial_degree: p when the bound decays like k^p rate^k (1 for heavy ball), 0 otherwise;
        ``theory.certify`` allows for it when it compares the fitted rate with ``rate``.
    order: the power of k for sublinear bounds (-1 for GD, -2 for Nesterov), else None.
    hyperparameters: the optimizer settings the bound assumes (``lr``, ``momentum``,
        ``nesterov``) so a test can build the optimizer it certifies.
    observe: how to read the point the bound is about from (parameter, optimizer); None means
        the parameter itself (see ``theory.certify.sgd_nesterov_gradient_point``).
    assumptions, source: what the bound needs and where it comes from.
    """

    name: str
    quantity: str
    values: Callable[[np.ndarray], np.ndarray]
    formula: str
    direction: str = "upper"
    rate: float | None = None
    polynomial_degree: int = 0
    order: float | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    observe: Callable[[torch.Tensor, torch.optim.Optimizer], torch.Tensor] | None = None
    assumptions: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.quantity not in QUANTITIES:
            raise ValueError(
                f"quantity must be one of {sorted(QUANTITIES)}, got quantity={self.quantity!r}"
            )
        if self.direction not in ("upper", "lower"):
            raise ValueError(
                f"direction must be 'upper' or 'lower', got direction={self.direction!r}"
            )

    def __call__(self, k: Any) -> np.ndarray:
        return np.asarray(self.values(_steps(k)), dtype=np.float64)


def _start_distance(problem: Any) -> tuple[float, float]:
    distance = float(torch.linalg.vector_norm(problem.x0 - problem.x_star))
    return distance, distance**2


def _require_convex(problem: Any, name: str) -> None:
    if not getattr(problem, "is_convex", False):
        raise ValueError(
            f"{name} needs a convex problem, got {type(problem).__name__} (is_convex=False)"
        )


def _require_strongly_convex(problem: Any, name: str) -> None:
    _require_convex(problem, name)
    if not problem.mu > 0:
        raise ValueError(
            f"{name} needs a strongly convex problem (mu > 0), got "
            f"{type(problem).__name__} with mu={problem.mu!r}"
        )


def gd_bound(problem: Any, lr: float) -> Bound:
    """f(x_k) - f* <= ||x0 - x*||²/(2 lr k) for GD with 0 < lr <= 1/L on convex f ([GG] 3.4)."""
    _require_convex(problem, "gd_bound")
    lr = _check_safe_lr(lr, problem.L)
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="gd_convex",
        quantity="gap",
        order=-1.0,
        values=lambda k: gd_convex_gap(k, lr, dist0_sq),
        formula="f(x_k) - f* <= ||x0 - x*||^2 / (2 lr k)",
        hyperparameters={"lr": lr, "momentum": 0.0},
        assumptions="f convex and L-smooth, 0 < lr <= 1/L, plain gradient descent",
        source="Garrigos & Gower (2023), Theorem 3.4",
    )


def gd_long_step_bound(problem: Any, lr: float) -> Bound:
    """f(x_k) - f* <= 2 Δ0 r0² / (2 r0² + k lr (2 - L lr) Δ0) for GD with 0 < lr < 2/L on convex
    f ([N04] 2.1.14): the only classical guarantee between the safe step 1/L and the edge 2/L."""
    _require_convex(problem, "gd_long_step_bound")
    lr, L = _positive("lr", lr), problem.L
    if not lr < 2 / L:
        raise ValueError(f"lr must be below 2/L = {2 / L!r} (the stability edge), got lr={lr!r}")
    _, dist0_sq = _start_distance(problem)
    gap0 = float(problem.loss(problem.x0)) - problem.f_star
    return Bound(
        name="gd_long_step",
        quantity="gap",
        order=-1.0,
        values=lambda k: gd_long_step_gap(k, lr, L, gap0, dist0_sq),
        formula="f(x_k) - f* <= 2 D0 r0^2 / (2 r0^2 + k lr (2 - L lr) D0)",
        hyperparameters={"lr": lr, "momentum": 0.0},
        assumptions="f convex and L-smooth, 0 < lr < 2/L, plain gradient descent",
        source="Nesterov (2004), Theorem 2.1.14",
    )


def gd_strongly_convex_bound(problem: Any, lr: float) -> Bound:
    """||x_k - x*||² <= (1 - lr mu)^k ||x0 - x*||² for GD with 0 < lr <= 1/L ([GG] 3.6)."""
    _require_strongly_convex(problem, "gd_strongly_convex_bound")
    lr = _check_safe_lr(lr, problem.L)
    mu = problem.mu
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="gd_strongly_convex",
        quantity="distance_sq",
        rate=1 - lr * mu,
        values=lambda k: gd_strongly_convex_distance_sq(k, lr, mu, dist0_sq),
        formula="||x_k - x*||^2 <= (1 - lr mu)^k ||x0 - x*||^2",
        hyperparameters={"lr": lr, "momentum": 0.0},
        assumptions="f mu-strongly convex and L-smooth, 0 < lr <= 1/L, plain gradient descent",
        source="Garrigos & Gower (2023), Theorem 3.6",
    )


def gd_optimal_step_bound(problem: Any) -> Bound:
    """||x_k - x*|| <= ((κ-1)/(κ+1))^k ||x0 - x*|| for GD with lr = 2/(mu + L) ([N04] 2.1.15)."""
    _require_strongly_convex(problem, "gd_optimal_step_bound")
    L, mu = problem.L, problem.mu
    dist0, _ = _start_distance(problem)
    return Bound(
        name="gd_optimal_step",
        quantity="distance",
        rate=optimal_step_rate(L, mu),
        values=lambda k: gd_optimal_step_distance(k, L, mu, dist0),
        formula="||x_k - x*|| <= ((kappa - 1)/(kappa + 1))^k ||x0 - x*||",
        hyperparameters={"lr": 2.0 / (L + mu), "momentum": 0.0},
        assumptions="f mu-strongly convex and L-smooth, lr = 2/(mu + L), plain gradient descent",
        source="Nesterov (2004), Theorem 2.1.15",
    )


def heavy_ball_bound(problem: Any) -> Bound:
    """Optimal heavy ball on a quadratic: ||x_k - x*|| <= √2 q^{k-1}(k m + (k-1) q)||x0 - x*||,
    asymptotic rate q = (√κ-1)/(√κ+1) with a factor linear in k (see ``heavy_ball_distance``)."""
    _require_strongly_convex(problem, "heavy_ball_bound")
    if not getattr(problem, "is_quadratic", False):
        raise ValueError(
            f"heavy_ball_bound holds for quadratics only (Polyak's rate is local "
            f"elsewhere), got {type(problem).__name__}"
        )
    L, mu = problem.L, problem.mu
    alpha, beta = heavy_ball_parameters(L, mu)
    dist0, _ = _start_distance(problem)
    return Bound(
        name="heavy_ball",
        quantity="distance",
        rate=heavy_ball_rate(L, mu),
        polynomial_degree=1,
        values=lambda k: heavy_ball_distance(k, L, mu, dist0),
        formula="||x_k - x*|| <= sqrt(2) q^(k-1) (k m + (k-1) q) ||x0 - x*||",
        hyperparameters={"lr": alpha, "momentum": beta, "nesterov": False},
        assumptions="f quadratic with Hessian spectrum in [mu, L]; lr = 4/(sqrt L + sqrt mu)^2, "
        "momentum = ((sqrt kappa - 1)/(sqrt kappa + 1))^2",
        source="Polyak (1964); Polyak (1987) section 3.2.1; explicit constant derived in "
        "theory.bounds.heavy_ball_distance",
    )


def nesterov_bound(problem: Any) -> Bound:
    """f(x_k) - f* <= 2 L ||x0 - x*||²/(k+1)² for Nesterov/FISTA with step 1/L and the growing
    momentum (t_k - 1)/t_{k+1}, measured at the gradient-step sequence ([BT09] 4.4)."""
    _require_convex(problem, "nesterov_bound")
    L = problem.L
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="nesterov_convex",
        quantity="gap",
        order=-2.0,
        values=lambda k: nesterov_convex_gap(k, L, dist0_sq),
        formula="f(x_k) - f* <= 2 L ||x0 - x*||^2 / (k + 1)^2",
        hyperparameters={"lr": 1.0 / L},
        assumptions="f convex and L-smooth; step 1/L; momentum (t_k - 1)/t_{k+1} (FISTA) or "
        "(k - 1)/(k + 2); x_k is the gradient-step sequence",
        source="Beck & Teboulle (2009), Theorem 4.4; Su, Boyd & Candès (2016)",
    )


def nesterov_strongly_convex_bound(problem: Any) -> Bound:
    """f(x_k) - f* <= (1 - 1/√κ)^k (f(x0) - f* + mu/2 ||x0 - x*||²) for Nesterov's method with
    step 1/L and constant momentum (√κ-1)/(√κ+1) ([N04] scheme III, Thm 2.2.3). The bound is
    about the gradient-step sequence x_k; torch's ``SGD(nesterov=True)`` stores the look-ahead
    point y_k instead, so ``observe`` recovers x_k from the momentum buffer."""
    from theory.certify import sgd_nesterov_gradient_point  # certify imports this module

    _require_strongly_convex(problem, "nesterov_strongly_convex_bound")
    L, mu = problem.L, problem.mu
    _, dist0_sq = _start_distance(problem)
    with torch.no_grad():
        gap0 = float(problem.loss(problem.x0)) - problem.f_star
    return Bound(
        name="nesterov_strongly_convex",
        quantity="gap",
        rate=1 - math.sqrt(mu / L),
        values=lambda k: nesterov_strongly_convex_gap(k, L, mu, max(gap0, 0.0), dist0_sq),
        formula="f(x_k) - f* <= (1 - 1/sqrt(kappa))^k (f(x0) - f* + mu/2 ||x0 - x*||^2)",
        hyperparameters={"lr": 1.0 / L, "momentum": nesterov_momentum(L, mu), "nesterov": True},
        observe=sgd_nesterov_gradient_point,
        assumptions="f mu-strongly convex and L-smooth; step 1/L; constant momentum "
        "(sqrt kappa - 1)/(sqrt kappa + 1); x_k is the gradient-step sequence",
        source="Nesterov (2004), section 2.2.1, constant step scheme III and Theorem 2.2.3",
    )


def gd_divergence_bound(problem: Any, lr: float) -> Bound:
    """A lower bound ||x_k - x*|| >= |1 - lr L|^k |<v, x0 - x*>| (v the top eigenvector of A) on
    a ``Quadratic``; with lr > 2/L it grows without limit: gradient descent diverges."""
    if not hasattr(problem, "eigenvectors"):
        raise ValueError(
            f"gd_divergence_bound needs a Quadratic (it uses the top eigenvector), "
            f"got {type(problem).__name__}"
        )
    lr = _positive("lr", lr)
    L = problem.L
    if lr <= 2.0 / L:
        raise ValueError(
            f"lr must exceed the stability edge 2/L = {2 / L:.6g} for a divergence "
            f"bound, got lr={lr!r} (= {lr * L:.6g}/L)"
        )
    top_component = float(problem.eigenvectors[:, -1] @ (problem.x0 - problem.x_star))
    return Bound(
        name="gd_divergence",
        quantity="distance",
        direction="lower",
        rate=abs(1 - lr * L),
        values=lambda k: gd_divergence_distance(k, lr, L, top_component),
        formula="||x_k - x*|| >= |1 - lr L|^k |<v_max, x0 - x*>|",
        hyperparameters={"lr": lr, "momentum": 0.0},
        assumptions="f quadratic with top eigenpair (L, v_max); plain gradient descent",
        source="Nesterov (2004), section 1.2.3 (GD on quadratics)",
    )
