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
* [N04] Y. Nesterov, "Introductory Lectures on Convex Optimization: A Basic Course", Kluwer
  Academic Publishers, 2004 (the first English edition; every number below refers to it):
  Theorem 2.1.14 (GD with 0 < h < 2/L), Theorem 2.1.15 (GD with 0 < h <= 2/(mu + L)), section
  2.2.1 (constant step scheme III, and Theorem 2.2.3 with γ0 = mu for its rate). The second
  edition ("Lectures on Convex Optimization", Springer, 2018) renumbers the chapter; its
  numbers are not used here. (Numbers as the project cited them; not re-checked against the
  book from this machine.)
* [DT14] Y. Drori and M. Teboulle, "Performance of first-order methods for smooth convex
  minimization: a novel approach", Math. Program. 145 (2014), Theorem 3.1 (the bound) and
  Theorem 3.2 (a function attaining it).
* [KNS16] H. Karimi, J. Nutini and M. Schmidt, "Linear convergence of gradient and
  proximal-gradient methods under the Polyak-Łojasiewicz condition", ECML-PKDD 2016, Theorem 1.
* [GLQ19] R. M. Gower, N. Loizou, X. Qian, A. Sailanbayev, E. Shulgin and P. Richtárik, "SGD:
  general analysis and improved rates", ICML 2019, Theorem 3.1 (constant-step SGD on a
  strongly convex finite sum: linear rate to a noise ball); the same result is in [GG] section 5
  and, in the form E||x_k - x*||² <= (1 - 2γmu(1 - γ sup L_i))^k ||x0 - x*||² + γσ²/(mu(1 - γ
  sup L_i)), in D. Needell, N. Srebro and R. Ward, "Stochastic gradient descent, weighted
  sampling, and the randomized Kaczmarz algorithm", NeurIPS 2014, Theorem 2.1.
* The bounds for arbitrary step-size sequences (last and average iterate) live in
  ``theory.schedule_bounds`` with their own sources.
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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from theory.problems import Problem, _finite_float

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
    "gd_nonconvex_bound",
    "gd_nonconvex_grad_sq_min",
    "gd_optimal_step_bound",
    "gd_optimal_step_distance",
    "gd_strongly_convex_bound",
    "gd_strongly_convex_distance_sq",
    "gd_strongly_convex_tight_bound",
    "gd_strongly_convex_tight_distance_sq",
    "gd_tight_bound",
    "gd_tight_convex_gap",
    "heavy_ball_bound",
    "heavy_ball_distance",
    "heavy_ball_parameters",
    "heavy_ball_rate",
    "nesterov_bound",
    "nesterov_convex_gap",
    "nesterov_extrapolation",
    "nesterov_momentum",
    "nesterov_strongly_convex_bound",
    "nesterov_strongly_convex_gap",
    "optimal_step_rate",
    "pl_bound",
    "pl_gap",
    "safe_step",
    "sgd_hyperparameters",
    "sgd_noise_ball_bound",
    "sgd_noise_ball_distance_sq",
    "stability_edge",
    "step_size_limits",
]

QUANTITIES = {
    "gap": "f(x_k) - f*",
    "distance": "||x_k - x*||",
    "distance_sq": "||x_k - x*||^2",
    "grad_sq_min": "min_{j<k} ||grad f(x_j)||^2",
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


def _constants(
    L: Any, mu: Any = 0.0, *, strongly_convex: bool = False, name: str = "mu"
) -> tuple[float, float]:
    """L and the lower curvature constant (``mu``, or the PL constant ``pl``: ``name``)."""
    L = _positive("L", L)
    mu = _positive(name, mu) if strongly_convex else _non_negative(name, mu)
    if mu > L * (1 + _RTOL):
        raise ValueError(f"{name} must not exceed L, got {name}={mu!r} > L={L!r}")
    return L, min(mu, L)


def _steps(k: Any) -> np.ndarray:
    """k as a float64 array of step counts: non-negative whole numbers (ints, or floats with
    integral values); bools, strings and fractional counts are refused (a bound is stated at
    the points x_k only, and some closed forms are meaningless between them)."""
    array = np.asarray(k) if not torch.is_tensor(k) else k.detach().cpu().numpy()
    if array.dtype.kind not in "iuf":
        raise TypeError(
            f"k must be step counts (non-negative integers), got k={k!r} (dtype {array.dtype})"
        )
    steps = array.astype(np.float64)
    if np.any(steps < 0) or not np.all(np.isfinite(steps)) or np.any(steps != np.floor(steps)):
        raise ValueError(f"k must be non-negative integer step counts, got k={k!r}")
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
    """1/L: the constant step that maximises the guaranteed decrease of gradient descent on an
    L-smooth function. The gradient-descent bounds of this module hold at it, each on its own
    class of f: ``gd_bound``, ``gd_tight_bound`` and ``gd_long_step_bound`` (convex),
    ``gd_strongly_convex_bound`` and ``gd_strongly_convex_tight_bound`` (strongly convex),
    ``pl_bound`` (PL) and ``gd_nonconvex_bound`` ([GG] Thms 3.4, 3.6); not the bounds of other
    methods (``gd_optimal_step_bound``: lr = 2/(mu + L), ``heavy_ball_bound``,
    ``nesterov_*``, ``sgd_noise_ball_bound``: lr <= 1/(2 L_max), ``gd_divergence_bound``:
    lr > 2/L).

    The descent lemma gives f(x - η∇f(x)) <= f(x) - η(1 - ηL/2)||∇f(x)||², so f decreases at
    every step for *every* 0 < η < 2/L (see ``stability_edge``); the guaranteed decrease
    η(1 - ηL/2) is largest at η = 1/L, where it is ||∇f(x)||²/(2L). 1/L is therefore not the
    largest step that decreases f, only the one with the best worst-case decrease.

    >>> safe_step(4.0)
    0.25
    """
    return 1.0 / _positive("L", L)


def stability_edge(L: float) -> float:
    """2/L: gradient descent on a quadratic with largest Hessian eigenvalue L converges for
    0 < η < 2/L and diverges for η > 2/L (the top mode is multiplied by |1 - ηL| > 1 per step)
    unless x_0 - x* has no component along the top eigenvector ([N04] section 1.2.3).

    Example::

        >>> stability_edge(4.0)  # 2/4
        0.5
        >>> stability_edge(4.0) == 2 * safe_step(4.0)
        True
    """
    return 2.0 / _positive("L", L)


def optimal_step_rate(L: float, mu: float) -> float:
    """(κ - 1)/(κ + 1) = (L - mu)/(L + mu): the contraction per step of ||x_k - x*|| for gradient
    descent with the step 2/(mu + L) on an L-smooth, mu-strongly convex f ([N04] Thm 2.1.15).

    Example::

        >>> optimal_step_rate(3.0, 1.0)  # (3 - 1)/(3 + 1)
        0.5
        >>> optimal_step_rate(2.0, 2.0)  # κ = 1: the step 2/(mu + L) = 1/L reaches x* at once
        0.0
    """
    L, mu = _constants(L, mu, strongly_convex=True)
    return (L - mu) / (L + mu)


def heavy_ball_parameters(L: float, mu: float) -> tuple[float, float]:
    """Polyak's optimal heavy-ball step and momentum on a quadratic with spectrum in [mu, L]
    ([P64], [P87] section 3.2.1): α = 4/(√L + √mu)², β = ((√κ - 1)/(√κ + 1))².

    The update is x_{k+1} = x_k - α∇f(x_k) + β(x_k - x_{k-1}) with x_{-1} = x_0, which is exactly
    ``torch.optim.SGD(lr=α, momentum=β)`` (buffer b_k = β b_{k-1} + ∇f(x_k), x_{k+1} = x_k - α b_k).

    Example::

        >>> alpha, beta = heavy_ball_parameters(9.0, 1.0)  # √L = 3, √mu = 1, √κ = 3
        >>> alpha, beta  # 4/(3 + 1)², ((3 - 1)/(3 + 1))²
        (0.25, 0.25)
    """
    L, mu = _constants(L, mu, strongly_convex=True)
    alpha = 4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2
    return alpha, heavy_ball_rate(L, mu) ** 2


def heavy_ball_rate(L: float, mu: float) -> float:
    """q = (√κ - 1)/(√κ + 1): the asymptotic contraction per step of optimal heavy ball
    ([P87] section 3.2.1, Theorem 1 there: ||x_k - x*|| <= C (q + ε)^k for every ε > 0).

    Example::

        >>> heavy_ball_rate(9.0, 1.0)  # √κ = 3: (3 - 1)/(3 + 1)
        0.5
        >>> heavy_ball_rate(4.0, 4.0)  # κ = 1
        0.0
    """
    L, mu = _constants(L, mu, strongly_convex=True)
    root = math.sqrt(L / mu)
    return (root - 1) / (root + 1)


def nesterov_momentum(L: float, mu: float) -> float:
    """(√κ - 1)/(√κ + 1): the constant momentum of Nesterov's method for an L-smooth,
    mu-strongly convex f ([N04] constant step scheme III); with step 1/L.

    Example::

        >>> round(nesterov_momentum(4.0, 1.0), 6)  # √κ = 2: (2 - 1)/(2 + 1) = 1/3
        0.333333
        >>> nesterov_momentum(4.0, 1.0) == heavy_ball_rate(4.0, 1.0)  # the same number
        True
    """
    return heavy_ball_rate(L, mu)


@dataclass(frozen=True)
class StepSizeLimits:
    """The step sizes theory gives for an L-smooth (and mu-strongly convex) function.

    Attributes: ``safe`` = 1/L (monotone decrease; the 1/L bounds hold), ``edge`` = 2/L
    (stability edge on quadratics: diverges above it), ``optimal`` = 2/(mu + L) when mu > 0
    (fastest constant GD step on quadratics, rate (κ-1)/(κ+1)), ``heavy_ball`` = (α, β) of
    Polyak's method and ``nesterov`` = (1/L, (√κ-1)/(√κ+1)) when mu > 0; ``assumptions`` states
    for each entry what it needs.

    Example::

        >>> limits = step_size_limits(4.0)  # mu = 0: no optimal, heavy-ball or Nesterov step
        >>> limits.safe, limits.edge, limits.optimal, limits.heavy_ball
        (0.25, 0.5, None, None)
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
    and Nesterov parameters, each with its assumptions (see ``StepSizeLimits``).

    Example::

        >>> limits = step_size_limits(4.0, 1.0)  # κ = 4, √κ = 2
        >>> limits.safe, limits.edge, limits.optimal  # 1/L, 2/L, 2/(mu + L)
        (0.25, 0.5, 0.4)
        >>> [round(value, 6) for value in limits.heavy_ball]  # 4/(2 + 1)², (1/3)²
        [0.444444, 0.111111]
    """
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
    has f(x_k) - f* at most this ([GG] Theorem 3.4). Infinite at k = 0 (no claim).

    Example::

        >>> float(gd_convex_gap(4, lr=0.5, dist0_sq=2.0))  # 2/(2 * 0.5 * 4)
        0.5
        >>> gd_convex_gap([0, 1, 2], lr=0.5, dist0_sq=2.0).tolist()  # no claim at k = 0
        [inf, 2.0, 1.0]
    """
    steps = _steps(k)
    lr, dist0_sq = _positive("lr", lr), _non_negative("dist0_sq", dist0_sq)
    with np.errstate(divide="ignore", over="ignore"):  # (k = 0, discarded: no claim)
        return np.where(steps > 0, dist0_sq / (2 * lr * np.maximum(steps, 1e-300)), np.inf)


def gd_long_step_gap(k: Any, lr: float, L: float, gap0: float, dist0_sq: float) -> np.ndarray:
    """2 Δ0 r0² / (2 r0² + k lr (2 - L lr) Δ0), with Δ0 = f(x0) - f* and r0² = ||x0 - x*||²:
    gradient descent with any 0 < lr < 2/L on a convex L-smooth f has f(x_k) - f* at most this
    ([N04] Theorem 2.1.14). Equal to Δ0 at k = 0; O(1/k) afterwards.

    Derivation (as in [N04]): each step decreases f by at least ω ||∇f(x_k)||², ω = lr (1 -
    L lr / 2); ||x_k - x*|| <= r0; convexity gives Δ_k <= r0 ||∇f(x_k)||, so Δ_{k+1} <= Δ_k -
    (ω / r0²) Δ_k², hence 1/Δ_k >= 1/Δ0 + k ω / r0².

    Example::

        >>> # L = 1, lr = 1.5, Δ0 = 0.5, r0² = 1: k = 8 gives 2 * 0.5 / (2 + 8 * 1.5 * 0.5 * 0.5)
        >>> gd_long_step_gap([0, 8], lr=1.5, L=1.0, gap0=0.5, dist0_sq=1.0).tolist()
        [0.5, 0.2]
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
    mu-strongly convex f has ||x_k - x*||² at most this ([GG] Theorem 3.6).

    Example::

        >>> float(gd_strongly_convex_distance_sq(2, lr=0.5, mu=1.0, dist0_sq=4.0))  # 0.5² * 4
        1.0
        >>> gd_strongly_convex_distance_sq([0, 1], lr=0.25, mu=1.0, dist0_sq=4.0).tolist()
        [4.0, 3.0]
    """
    steps = _steps(k)
    lr, mu = _positive("lr", lr), _positive("mu", mu)
    if not lr * mu <= 1:  # (lr <= 1/L and mu <= L; above it the "bound" changes sign)
        raise ValueError(
            f"lr * mu must be at most 1 (the theorem's lr <= 1/L, with mu <= L), got "
            f"lr={lr!r}, mu={mu!r}"
        )
    return (1 - lr * mu) ** steps * _non_negative("dist0_sq", dist0_sq)


def gd_optimal_step_distance(k: Any, L: float, mu: float, dist0: float) -> np.ndarray:
    """((κ - 1)/(κ + 1))^k ||x0 - x*||: gradient descent with lr = 2/(mu + L) on an L-smooth,
    mu-strongly convex f ([N04] Theorem 2.1.15).

    Example::

        >>> float(gd_optimal_step_distance(2, L=3.0, mu=1.0, dist0=2.0))  # ((3-1)/(3+1))² * 2
        0.5
        >>> gd_optimal_step_distance([0, 1], L=2.0, mu=2.0, dist0=2.0).tolist()  # κ = 1
        [2.0, 0.0]
    """
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

    Example::

        >>> q = 0.5  # L = 9, mu = 1: √κ = 3, q = (3 - 1)/(3 + 1); at k = 1 the bound is √2 m
        >>> float(heavy_ball_distance(0, 9.0, 1.0, dist0=1.0))
        1.0
        >>> m = math.sqrt(1 + 4 * q**2 + q**4)
        >>> math.isclose(heavy_ball_distance(1, 9.0, 1.0, dist0=1.0), math.sqrt(2) * m)
        True
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
    Needs a momentum that grows with k: a constant-momentum method has no such guarantee.

    Example::

        >>> float(nesterov_convex_gap(3, L=2.0, dist0_sq=1.0))  # 2 * 2 * 1 / (3 + 1)²
        0.25
        >>> float(nesterov_convex_gap(0, L=2.0, dist0_sq=1.0))  # finite at k = 0: 2 L r0²
        4.0
    """
    steps = _steps(k)
    L, dist0_sq = _positive("L", L), _non_negative("dist0_sq", dist0_sq)
    return 2 * L * dist0_sq / (steps + 1) ** 2


def nesterov_strongly_convex_gap(
    k: Any, L: float, mu: float, gap0: float, dist0_sq: float
) -> np.ndarray:
    """(1 - √(mu/L))^k (f(x0) - f* + mu/2 ||x0 - x*||²): Nesterov's method with step 1/L and
    constant momentum (√κ-1)/(√κ+1) on an L-smooth, mu-strongly convex f, for the gradient-step
    sequence x_{k+1} = y_k - ∇f(y_k)/L.

    Source: [N04] = Nesterov, "Introductory Lectures on Convex Optimization: A Basic Course",
    Kluwer 2004 (first English edition), section 2.2.1: constant step scheme III, whose rate is
    Theorem 2.2.3 of that edition taken with γ0 = mu (the theorem bounds f(x_k) - f* by
    λ_k (f(x0) - f* + γ0/2 ||x0 - x*||²) with λ_k <= (1 - √(mu/L))^k when γ0 >= mu). The
    edition and theorem number are those the project's earlier citation named; they could not
    be checked against the book from here, and the 2018 second edition ("Lectures on Convex
    Optimization", Springer) renumbers section 2.2. The bound itself is certified by tests
    against an independent numpy implementation of scheme III.

    >>> float(nesterov_strongly_convex_gap(2, L=4.0, mu=1.0, gap0=1.0, dist0_sq=2.0))
    0.5
    """
    L, mu = _constants(L, mu, strongly_convex=True)
    start = _non_negative("gap0", gap0) + mu / 2 * _non_negative("dist0_sq", dist0_sq)
    return (1 - math.sqrt(mu / L)) ** _steps(k) * start


def gd_divergence_distance(k: Any, lr: float, L: float, top_component: float) -> np.ndarray:
    """|1 - lr L|^k |<v, x0 - x*>|: on a quadratic, x_k - x* = (I - lr A)^k (x0 - x*), so the
    component along the top eigenvector v is multiplied by exactly (1 - lr L) per step and
    ||x_k - x*|| is at least this. For lr > 2/L it grows geometrically: divergence ([N04] 1.2.3).

    Example::

        >>> float(gd_divergence_distance(3, lr=3.0, L=1.0, top_component=0.5))  # |1 - 3|³ * 0.5
        4.0
        >>> float(gd_divergence_distance(3, lr=1.5, L=1.0, top_component=0.5))  # |1 - 1.5|³ * 0.5
        0.0625
    """
    steps = _steps(k)
    lr, L = _positive("lr", lr), _positive("L", L)
    return abs(1 - lr * L) ** steps * abs(_finite_float("top_component", top_component))


# ----------------------------------------------------------------------------------------------
# bounds tied to a problem
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bound:
    """A closed-form bound on a quantity measured along a run, checked by ``theory.certify``.

    Attributes
    ----------
    name: short identifier (``"gd_convex"``, ...).
    quantity: ``"gap"`` (f(x_k) - f*), ``"distance"``, ``"distance_sq"`` or ``"grad_sq_min"``
        (min_{j<k} ||∇f(x_j)||², the quantity of non-convex bounds; no claim at k = 0).
    values: k (array of step counts) -> bound values (inf where the bound says nothing).
    direction: ``"upper"`` (observed <= bound) or ``"lower"`` (observed >= bound).
    formula: the bound as text, for messages and plots.
    rate: asymptotic per-step factor of the bound (None for sublinear bounds).
    polynomial_degree: p when the bound decays like k^p rate^k (1 for heavy ball), 0 otherwise;
        ``theory.certify`` allows for it when it compares the fitted rate with ``rate``.
    order: the power of k for sublinear bounds (-1 for GD, -2 for Nesterov), else None.
    hyperparameters: the optimizer settings the bound assumes (``lr``, ``momentum``,
        ``nesterov``, ...), each a number (the same at every update) or a 1-D array (the value
        at update t = 0, 1, ...: a step-size schedule). ``theory.certify`` reads them from the
        optimizer's param group before every update and reports a run whose settings differ
        (or whose optimizer lacks one of them) as not applicable; a test can also build the
        optimizer it certifies from them.
    observe: how to read the point the bound is about from (parameter, optimizer); None means
        the parameter itself (see :func:`sgd_nesterov_gradient_point`).
    problem: the ``Problem`` the bound was built for (its constants are in ``values``);
        ``certify`` refuses, as not applicable, a run on a different problem. None: any problem.
    expectation: the bound is on the expectation of the quantity over the randomness of a
        stochastic gradient oracle; ``certify(..., seeds=...)`` compares the mean over seeds.
    average_weights: when given, the bound is about the weighted average iterate
        x̄_k = Σ_{j<=k} w_j x_j / Σ_{j<=k} w_j (w_j = ``average_weights[j]``), not x_k.
    optimizers: names of the optimizer classes the bound is about (``("Prodigy",)``); a run
        whose optimizer is neither one of them nor a subclass of one is not applicable. Empty:
        any optimizer with the stated ``hyperparameters``.
    assumptions, source: what the bound needs and where it comes from.

    Example::

        >>> bound = Bound(name="one_over_k", quantity="gap", values=lambda k: 1 / (k + 1),
        ...               formula="f(x_k) - f* <= 1/(k + 1)")
        >>> bound([0, 1, 3]).tolist(), bound.direction  # 1/1, 1/2, 1/4; an upper bound
        ([1.0, 0.5, 0.25], 'upper')
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
    problem: Any = field(default=None, compare=False, repr=False)
    expectation: bool = False
    average_weights: np.ndarray | None = field(default=None, compare=False, repr=False)
    optimizers: tuple[str, ...] = ()

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

    def scaled(self, factor: float, name: str | None = None) -> Bound:
        """The same bound multiplied by ``factor`` (> 0), with every assumption kept: a
        deliberately too-small bound (factor < 1) shows that a certificate can fail.

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic.from_spectrum([1.0, 2.0], seed=0)
        >>> half = gd_bound(problem, 0.5).scaled(0.5)
        >>> bool(half(3) == gd_bound(problem, 0.5)(3) / 2), half.name
        (True, 'gd_convex x 0.5')
        """
        factor = _positive("factor", factor)
        values = self.values
        return replace(
            self,
            name=name or f"{self.name} x {factor:g}",
            values=lambda k: factor * np.asarray(values(k), dtype=np.float64),
            formula=f"{factor:g} x ({self.formula})",
        )


def _learning_rate(lr: Any) -> float | np.ndarray:
    """``lr`` as a positive finite number, or a 1-D array of non-negative finite ones (a
    per-update schedule, which may decay to 0)."""
    if isinstance(lr, (np.ndarray, list, tuple)) or torch.is_tensor(lr):
        array = np.asarray(lr.detach().cpu() if torch.is_tensor(lr) else lr)
        if array.ndim != 1 or array.size == 0 or array.dtype.kind not in "iuf":
            raise TypeError(
                f"lr must be a positive number or a non-empty 1-D array of them (one per "
                f"update), got an array of shape {array.shape} and dtype {array.dtype}"
            )
        array = array.astype(np.float64)
        if not (np.all(np.isfinite(array)) and np.all(array >= 0)):
            raise ValueError(
                f"lr must hold non-negative finite step sizes, got "
                f"{np.count_nonzero(~(array >= 0))} negative or NaN and "
                f"{np.count_nonzero(np.isinf(array))} infinite values"
            )
        return array
    return _positive("lr", lr)


def sgd_hyperparameters(lr: Any, momentum: float = 0.0, nesterov: bool = False) -> dict:
    """The ``torch.optim.SGD`` settings a gradient-method bound assumes: ``lr`` (a positive
    number, or a per-update array of non-negative ones), ``momentum`` (in [0, 1)),
    ``nesterov`` (a bool; it needs momentum > 0, as torch does), no dampening or weight decay
    (either would change the update the bound is about) and ``maximize`` False (every bound
    here is about descent on f). ``theory.certify`` reads a ``maximize`` missing from an
    optimizer's param group as False, and ignores ``dampening`` at updates that ran without
    momentum (it has no effect there).

    >>> settings = sgd_hyperparameters(0.1)
    >>> settings["lr"], settings["dampening"], settings["nesterov"], settings["maximize"]
    (0.1, 0.0, False, False)
    """
    lr = _learning_rate(lr)
    momentum = _non_negative("momentum", momentum)
    if not momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got momentum={momentum!r}")
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"nesterov must be a bool, got nesterov={nesterov!r}")
    if nesterov and momentum == 0:
        raise ValueError(
            "nesterov=True needs momentum > 0 (torch.optim.SGD refuses it otherwise; with "
            "momentum 0 Nesterov's method is gradient descent: pass nesterov=False)"
        )
    return {
        "lr": lr,
        "momentum": momentum,
        "dampening": 0.0,
        "weight_decay": 0.0,
        "nesterov": bool(nesterov),
        "maximize": False,
    }


def _start_distance(problem: Any) -> tuple[float, float]:
    distance = float(torch.linalg.vector_norm(problem.x0 - problem.x_star))
    return distance, distance**2


def _require_problem(problem: Any, name: str) -> None:
    if not isinstance(problem, Problem):
        raise TypeError(
            f"{name} needs a theory.problems.Problem, got problem={problem!r} "
            f"({type(problem).__name__})"
        )


def _require_global_smoothness(problem: Any, name: str) -> float:
    """``problem.L``, an L-smoothness constant 0 < L < inf valid everywhere; else
    ``ValueError`` (a non-smooth problem, L = inf; L = 0, a linear f, for which no step
    size bound 1/L exists; or an L local to x*, ``L_is_global=False``)."""
    _require_problem(problem, name)
    L = float(problem.L)
    if not (math.isfinite(L) and L > 0) or not getattr(problem, "L_is_global", True):
        raise ValueError(
            f"{name} needs f L-smooth everywhere with 0 < L < inf, got "
            f"{type(problem).__name__} with L={L:.6g}"
            + ("" if math.isfinite(L) else " (not smooth)")
            + ("" if L != 0 else " (linear: no step size 1/L)")
            + ("" if getattr(problem, "L_is_global", True) else " (the smoothness at x* only)")
        )
    return L


def _require_deterministic(problem: Any, name: str) -> None:
    """A ValueError for a problem whose oracle samples (``problem.stochastic``): the bounds of
    gradient descent and its momentum variants are about full gradients."""
    _require_problem(problem, name)
    if getattr(problem, "stochastic", False):
        raise ValueError(
            f"{name} is about full-gradient descent, got {problem!r} whose oracle samples "
            f"(batch_size={getattr(problem, 'batch_size', None)!r}): build it on the problem "
            f"with batch_size=None, or use a stochastic bound (sgd_noise_ball_bound, "
            f"sgd_last_iterate_bound, ...) and certify(..., seeds=...)"
        )


def _require_gd_setting(problem: Any, name: str) -> float:
    """The setting of every full-gradient bound: a deterministic oracle and a global
    0 < L < inf; returns L."""
    _require_deterministic(problem, name)
    return _require_global_smoothness(problem, name)


def _require_convex(problem: Any, name: str) -> None:
    _require_problem(problem, name)
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
    """f(x_k) - f* <= ||x0 - x*||²/(2 lr k) for GD with 0 < lr <= 1/L on convex f ([GG] 3.4).

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0, 0.0], [0.0, 0.5]], x_star=[0.0, 0.0], x0=[1.0, 0.0])
        >>> bound = gd_bound(problem, lr=1.0)  # L = 1, lr = 1/L, ||x0 - x*|| = 1
        >>> float(bound(4)), bound.hyperparameters["lr"]  # 1/(2 * 1 * 4)
        (0.125, 1.0)
    """
    _require_convex(problem, "gd_bound")
    L = _require_gd_setting(problem, "gd_bound")
    lr = _check_safe_lr(lr, L)
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="gd_convex",
        quantity="gap",
        order=-1.0,
        values=lambda k: gd_convex_gap(k, lr, dist0_sq),
        formula="f(x_k) - f* <= ||x0 - x*||^2 / (2 lr k)",
        hyperparameters=sgd_hyperparameters(lr),
        problem=problem,
        assumptions="f convex and L-smooth, 0 < lr <= 1/L, plain gradient descent",
        source="Garrigos & Gower (2023), Theorem 3.4",
    )


def gd_long_step_bound(problem: Any, lr: float) -> Bound:
    """f(x_k) - f* <= 2 Δ0 r0² / (2 r0² + k lr (2 - L lr) Δ0) for GD with 0 < lr < 2/L on convex
    f ([N04] 2.1.14): the guarantee on merely convex f between the safe step 1/L and the edge
    2/L. On mu-strongly convex f, ``gd_strongly_convex_tight_bound`` also covers
    1/L < lr <= 2/(mu + L) (a linear rate); for 2/(mu + L) < lr < 2/L this O(1/k) bound is
    the one left.

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0, 0.0], [0.0, 0.5]], x_star=[0.0, 0.0], x0=[1.0, 0.0])
        >>> # L = 1, Δ0 = f(x0) - f* = 0.5, r0² = 1: 2 * 0.5 / (2 + 8 * 1.5 * 0.5 * 0.5) at k = 8
        >>> gd_long_step_bound(problem, lr=1.5)([0, 8]).tolist()
        [0.5, 0.2]
    """
    _require_convex(problem, "gd_long_step_bound")
    L = _require_gd_setting(problem, "gd_long_step_bound")
    lr = _positive("lr", lr)
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
        hyperparameters=sgd_hyperparameters(lr),
        problem=problem,
        assumptions="f convex and L-smooth, 0 < lr < 2/L, plain gradient descent",
        source="Nesterov (2004), Theorem 2.1.14",
    )


def gd_strongly_convex_bound(problem: Any, lr: float) -> Bound:
    """||x_k - x*||² <= (1 - lr mu)^k ||x0 - x*||² for GD with 0 < lr <= 1/L ([GG] 3.6).

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[2.0, 0.0], [0.0, 1.0]], x_star=[0.0, 0.0], x0=[0.0, 1.0])
        >>> bound = gd_strongly_convex_bound(problem, lr=0.5)  # L = 2, mu = 1, r0² = 1
        >>> bound.rate, float(bound(2))  # 1 - 0.5 * 1, 0.5²
        (0.5, 0.25)
    """
    _require_strongly_convex(problem, "gd_strongly_convex_bound")
    L = _require_gd_setting(problem, "gd_strongly_convex_bound")
    lr = _check_safe_lr(lr, L)
    mu = problem.mu
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="gd_strongly_convex",
        quantity="distance_sq",
        rate=1 - lr * mu,
        values=lambda k: gd_strongly_convex_distance_sq(k, lr, mu, dist0_sq),
        formula="||x_k - x*||^2 <= (1 - lr mu)^k ||x0 - x*||^2",
        hyperparameters=sgd_hyperparameters(lr),
        problem=problem,
        assumptions="f mu-strongly convex and L-smooth, 0 < lr <= 1/L, plain gradient descent",
        source="Garrigos & Gower (2023), Theorem 3.6",
    )


def gd_optimal_step_bound(problem: Any) -> Bound:
    """||x_k - x*|| <= ((κ-1)/(κ+1))^k ||x0 - x*|| for GD with lr = 2/(mu + L) ([N04] 2.1.15).

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[3.0, 0.0], [0.0, 1.0]], x_star=[0.0, 0.0], x0=[0.0, 1.0])
        >>> bound = gd_optimal_step_bound(problem)  # κ = 3: lr = 2/(1 + 3), rate 2/4
        >>> bound.hyperparameters["lr"], bound.rate, float(bound(3))  # 0.5³ * 1
        (0.5, 0.5, 0.125)
    """
    _require_strongly_convex(problem, "gd_optimal_step_bound")
    L = _require_gd_setting(problem, "gd_optimal_step_bound")
    mu = problem.mu
    dist0, _ = _start_distance(problem)
    return Bound(
        name="gd_optimal_step",
        quantity="distance",
        rate=optimal_step_rate(L, mu),
        values=lambda k: gd_optimal_step_distance(k, L, mu, dist0),
        formula="||x_k - x*|| <= ((kappa - 1)/(kappa + 1))^k ||x0 - x*||",
        hyperparameters=sgd_hyperparameters(2.0 / (L + mu)),
        problem=problem,
        assumptions="f mu-strongly convex and L-smooth, lr = 2/(mu + L), plain gradient descent",
        source="Nesterov (2004), Theorem 2.1.15",
    )


def heavy_ball_bound(problem: Any) -> Bound:
    """Optimal heavy ball on a quadratic: ||x_k - x*|| <= √2 q^{k-1}(k m + (k-1) q)||x0 - x*||,
    asymptotic rate q = (√κ-1)/(√κ+1) with a factor linear in k (see ``heavy_ball_distance``).

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[9.0, 0.0], [0.0, 1.0]], x_star=[0.0, 0.0], x0=[0.0, 1.0])
        >>> bound = heavy_ball_bound(problem)  # √κ = 3: α = 4/(3 + 1)², β = (2/4)², q = 2/4
        >>> bound.hyperparameters["lr"], bound.hyperparameters["momentum"], bound.rate
        (0.25, 0.25, 0.5)
        >>> float(bound(0))  # ||x0 - x*||
        1.0
    """
    _require_strongly_convex(problem, "heavy_ball_bound")
    _require_gd_setting(problem, "heavy_ball_bound")
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
        hyperparameters=sgd_hyperparameters(alpha, beta),
        problem=problem,
        assumptions="f quadratic with Hessian spectrum in [mu, L]; lr = 4/(sqrt L + sqrt mu)^2, "
        "momentum = ((sqrt kappa - 1)/(sqrt kappa + 1))^2",
        source="Polyak (1964); Polyak (1987) section 3.2.1; explicit constant derived in "
        "theory.bounds.heavy_ball_distance",
    )


def nesterov_extrapolation(steps: int, schedule: str = "fista") -> np.ndarray:
    """β_0, ..., β_{steps-1}: the coefficient of x_u - x_{u-1} in the point
    y_u = x_u + β_u (x_u - x_{u-1}) at which update u (0-based) of Nesterov's method for convex
    f takes its gradient, x_{u+1} = y_u - ∇f(y_u)/L.

    ``"fista"`` ([BT09] section 4, FISTA with constant step): y_1 = x_0, t_1 = 1,
    t_{k+1} = (1 + √(1 + 4 t_k²))/2, y_{k+1} = x_k + ((t_k - 1)/t_{k+1})(x_k - x_{k-1}); the
    paper's y_{u+1} is update u's point, so β_u = (t_u - 1)/t_{u+1} for u >= 1 (β_1 = 0) and
    β_0 = 0 (x_{-1} = x_0). ``"su-boyd-candes"`` ([SBC16] eq. (1.2)): β_u = (u - 1)/(u + 2) for
    u >= 1, β_0 = 0.

    >>> nesterov_extrapolation(4, "su-boyd-candes").tolist()
    [0.0, 0.0, 0.25, 0.4]
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got steps={steps!r}")
    beta = np.zeros(int(steps))
    if schedule == "fista":
        t = 1.0  # t_u, from t_1
        for u in range(1, int(steps)):
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            beta[u] = (t - 1) / t_next
            t = t_next
    elif schedule == "su-boyd-candes":
        u = np.arange(1, int(steps))
        beta[1:] = (u - 1) / (u + 2)
    else:
        raise ValueError(f"schedule must be 'fista' or 'su-boyd-candes', got schedule={schedule!r}")
    return beta


def nesterov_bound(problem: Any, steps: int = 10_000, schedule: str = "fista") -> Bound:
    """f(x_k) - f* <= 2 L ||x0 - x*||²/(k+1)² for Nesterov/FISTA with step 1/L and the growing
    momentum of ``nesterov_extrapolation(steps, schedule)`` ([BT09] 4.4; [SBC16] for
    ``"su-boyd-candes"``), measured at the gradient-step sequence x_k, for k <= ``steps`` (no
    claim beyond: the momentum is pinned for ``steps`` updates).

    The method is identified by its hyperparameters: ``lr`` = 1/L and ``extrapolation``, the
    per-update array β_u, which the optimizer must keep in its param group (the parameter
    holding x_u; a method whose parameter is the look-ahead point, or whose momentum is
    constant, is a different method). ``torch.optim.SGD`` has no ``extrapolation`` setting, so
    ``certify`` reports gradient descent or ``SGD(nesterov=True)`` with a constant momentum as
    not applicable (their constant-momentum Nesterov has no O(1/k²) guarantee on convex f, and
    torch's buffer form with a varying momentum is not this scheme either).

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[2.0, 0.0], [0.0, 1.0]], x_star=[0.0, 0.0], x0=[0.0, 1.0])
        >>> bound = nesterov_bound(problem, steps=10)  # L = 2, ||x0 - x*||² = 1
        >>> bound([3, 11]).tolist(), bound.hyperparameters["lr"]  # 2 * 2 * 1/(3 + 1)²; no claim
        ([0.25, inf], 0.5)
    """
    _require_convex(problem, "nesterov_bound")
    L = _require_gd_setting(problem, "nesterov_bound")
    beta = nesterov_extrapolation(steps, schedule)
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="nesterov_convex",
        quantity="gap",
        order=-2.0,
        values=lambda k: np.where(
            np.asarray(k) <= beta.size, nesterov_convex_gap(k, L, dist0_sq), np.inf
        ),
        formula="f(x_k) - f* <= 2 L ||x0 - x*||^2 / (k + 1)^2",
        hyperparameters={"lr": 1.0 / L, "extrapolation": beta, "maximize": False},
        problem=problem,
        assumptions="f convex and L-smooth; step 1/L; y_u = x_u + beta_u (x_u - x_{u-1}) with "
        + (
            "beta_u = (t_u - 1)/t_{u+1} (FISTA)"
            if schedule == "fista"
            else "beta_u = (u - 1)/(u + 2)"
        )
        + "; x_k (the parameter) is the gradient-step sequence",
        source="Beck & Teboulle (2009), Theorem 4.4; Su, Boyd & Candès (2016)",
    )


def sgd_nesterov_gradient_point(
    param: torch.Tensor, optimizer: torch.optim.Optimizer
) -> torch.Tensor:
    """The gradient-step iterate x_k of Nesterov's method run as ``SGD(nesterov=True)``.

    torch's SGD with constant momentum β and ``nesterov=True`` keeps the look-ahead point
    y_k = x_k + β (x_k - x_{k-1}) in the parameter and b_{k-1} = (x_{k-1} - x_k)/lr in
    ``state["momentum_buffer"]`` (so x_{k+1} = y_k - lr ∇f(y_k) is Nesterov's gradient step);
    hence x_k = y_k + lr β b_{k-1}. Before the first update (no buffer) x_0 = y_0. Works for any
    optimizer with torch's SGD state layout (``optim.SGD`` included).

    Example::

        >>> x = torch.nn.Parameter(torch.tensor([1.0]))  # f(x) = x²/2, x_0 = 1, ∇f(x_0) = 1
        >>> optimizer = torch.optim.SGD([x], lr=0.5, momentum=0.5, nesterov=True)
        >>> (x**2 / 2).sum().backward(); optimizer.step()  # y_1 = 1 - 0.5 (1 + 0.5 * 1)
        >>> x.item(), sgd_nesterov_gradient_point(x, optimizer).item()  # x_1 = 1 - 0.5 * 1
        (0.25, 0.5)
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


def nesterov_strongly_convex_bound(problem: Any) -> Bound:
    """f(x_k) - f* <= (1 - 1/√κ)^k (f(x0) - f* + mu/2 ||x0 - x*||²) for Nesterov's method with
    step 1/L and constant momentum (√κ-1)/(√κ+1) ([N04] scheme III, Thm 2.2.3). The bound is
    about the gradient-step sequence x_k; torch's ``SGD(nesterov=True)`` stores the look-ahead
    point y_k instead, so ``observe`` recovers x_k from the momentum buffer.

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[4.0, 0.0], [0.0, 1.0]], x_star=[0.0, 0.0], x0=[0.0, 1.0])
        >>> bound = nesterov_strongly_convex_bound(problem)  # κ = 4: momentum (2 - 1)/(2 + 1)
        >>> round(bound.hyperparameters["momentum"], 6), bound.rate  # rate 1 - 1/√4
        (0.333333, 0.5)
        >>> float(bound(2))  # 0.5² (f(x0) - f* + mu/2 ||x0 - x*||²) = 0.25 (0.5 + 0.5)
        0.25
    """

    _require_strongly_convex(problem, "nesterov_strongly_convex_bound")
    L = _require_gd_setting(problem, "nesterov_strongly_convex_bound")
    mu = problem.mu
    _, dist0_sq = _start_distance(problem)
    with torch.no_grad():
        gap0 = float(problem.loss(problem.x0)) - problem.f_star
    # at kappa = 1 the momentum is 0 and the method is gradient descent with step 1/L (torch's
    # SGD refuses nesterov=True without momentum; the iterates are the same)
    momentum = nesterov_momentum(L, mu)
    return Bound(
        name="nesterov_strongly_convex",
        quantity="gap",
        rate=1 - math.sqrt(mu / L),
        values=lambda k: nesterov_strongly_convex_gap(k, L, mu, max(gap0, 0.0), dist0_sq),
        formula="f(x_k) - f* <= (1 - 1/sqrt(kappa))^k (f(x0) - f* + mu/2 ||x0 - x*||^2)",
        hyperparameters=sgd_hyperparameters(1.0 / L, momentum, nesterov=momentum > 0),
        problem=problem,
        observe=sgd_nesterov_gradient_point if momentum > 0 else None,
        assumptions="f mu-strongly convex and L-smooth; step 1/L; constant momentum "
        "(sqrt kappa - 1)/(sqrt kappa + 1); x_k is the gradient-step sequence",
        source="Nesterov, Introductory Lectures on Convex Optimization (Kluwer, 2004, 1st "
        "English edition), section 2.2.1, constant step scheme III and Theorem 2.2.3 with "
        "gamma0 = mu",
    )


def gd_divergence_bound(problem: Any, lr: float) -> Bound:
    """A lower bound ||x_k - x*|| >= |1 - lr L|^k |<v, x0 - x*>| (v the top eigenvector of A) on
    a ``Quadratic``; with lr > 2/L it grows without limit: gradient descent diverges.

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0, 0.0], [0.0, 0.5]], x_star=[0.0, 0.0], x0=[1.0, 0.0])
        >>> bound = gd_divergence_bound(problem, lr=3.0)  # L = 1, x0 - x* on the top eigenvector
        >>> bound.direction, float(bound(3))  # |1 - 3 * 1|³ * 1
        ('lower', 8.0)
    """
    _require_gd_setting(problem, "gd_divergence_bound")
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
        hyperparameters=sgd_hyperparameters(lr),
        problem=problem,
        assumptions="f quadratic with top eigenpair (L, v_max); plain gradient descent",
        source="Nesterov (2004), section 1.2.3 (GD on quadratics)",
    )


# ----------------------------------------------------------------------------------------------
# the classical results added with the schedule engine: non-convex, PL, tight GD, SGD noise ball
# ----------------------------------------------------------------------------------------------
def gd_nonconvex_grad_sq_min(k: Any, lr: float, L: float, gap0: float) -> np.ndarray:
    """(f(x0) - f_low) / (k lr (1 - lr L/2)): gradient descent with 0 < lr < 2/L on an L-smooth
    (not necessarily convex) f bounded below by f_low has min_{j<k} ||∇f(x_j)||² at most this;
    at lr = 1/L it is 2 L (f(x0) - f_low) / k. Infinite at k = 0 (no claim).

    Derivation (Nesterov 2004, section 1.2.3; the same summation as [GG] section 3 for the
    non-convex case; equation numbers not checked here): the descent lemma gives
    f(x_{j+1}) <= f(x_j) - lr (1 - lr L/2) ||∇f(x_j)||²; summing over j < k,
    k min_j ||∇f(x_j)||² <= Σ_j ||∇f(x_j)||² <= (f(x0) - f_low) / (lr (1 - lr L/2)).

    >>> float(gd_nonconvex_grad_sq_min(4, lr=0.5, L=2.0, gap0=3.0))
    3.0
    """
    steps = _steps(k)
    lr, L = _positive("lr", lr), _positive("L", L)
    if not lr < 2 / L:
        raise ValueError(f"lr must be below 2/L = {2 / L!r}, got lr={lr!r}")
    gap0 = _non_negative("gap0", gap0)
    with np.errstate(divide="ignore", over="ignore"):  # (k = 0, discarded: no claim)
        return np.where(
            steps > 0, gap0 / (np.maximum(steps, 1e-300) * lr * (1 - lr * L / 2)), np.inf
        )


def pl_gap(k: Any, L: float, pl: float, gap0: float) -> np.ndarray:
    """(1 - pl/L)^k (f(x0) - f*): gradient descent with step 1/L on an L-smooth f satisfying the
    Polyak-Łojasiewicz inequality ||∇f(x)||²/2 >= pl (f(x) - f*) ([KNS16] Theorem 1). PL holds
    without convexity, and for least squares with a rank-deficient design (pl = the smallest
    positive eigenvalue of X^T X / n) where strong convexity fails.

    >>> float(pl_gap(2, L=4.0, pl=1.0, gap0=16.0))
    9.0
    """
    L, pl = _constants(L, pl, strongly_convex=True, name="pl")
    return (1 - pl / L) ** _steps(k) * _non_negative("gap0", gap0)


def gd_tight_convex_gap(k: Any, lr: float, L: float, dist0_sq: float) -> np.ndarray:
    """L ||x0 - x*||² / (4 k lr L + 2): gradient descent with 0 < lr <= 1/L on a convex
    L-smooth f ([DT14] Theorem 3.1, step h/L with h = lr L <= 1); at lr = 1/L it is
    L ||x0 - x*||² / (4k + 2), and [DT14] Theorem 3.2 exhibits a function attaining it, so no
    bound of the form c/k can be smaller. About twice as tight as ||x0 - x*||²/(2 lr k) ([GG]
    Thm 3.4) for large k, and finite at k = 0.

    >>> float(gd_tight_convex_gap(1, lr=0.5, L=2.0, dist0_sq=3.0))
    1.0
    """
    steps = _steps(k)
    lr, L = _positive("lr", lr), _positive("L", L)
    if lr > (1 + _RTOL) / L:
        raise ValueError(f"lr must satisfy 0 < lr <= 1/L = {1 / L:.6g}, got lr={lr!r}")
    return L * _non_negative("dist0_sq", dist0_sq) / (4 * steps * lr * L + 2)


def gd_strongly_convex_tight_distance_sq(
    k: Any, lr: float, L: float, mu: float, dist0_sq: float
) -> np.ndarray:
    """(1 - 2 lr mu L / (mu + L))^k ||x0 - x*||²: gradient descent with 0 < lr <= 2/(mu + L) on
    an L-smooth, mu-strongly convex f ([N04] Theorem 2.1.15). Tighter than (1 - lr mu)^k ([GG]
    Thm 3.6) by the factor 2L/(mu + L) in the exponent's rate: at lr = 1/L, κ = 100 it is
    1 - 2/101 = 0.9802 per step instead of 0.99. At lr = 2/(mu + L) it is ((κ-1)/(κ+1))^(2k).

    >>> round(float(gd_strongly_convex_tight_distance_sq(1, 0.01, 100.0, 1.0, 1.0)), 6)
    0.980198
    """
    steps = _steps(k)
    L, mu = _constants(L, mu, strongly_convex=True)
    lr = _positive("lr", lr)
    if lr > (1 + _RTOL) * 2 / (mu + L):
        raise ValueError(
            f"lr must satisfy 0 < lr <= 2/(mu + L) = {2 / (mu + L):.6g}, got lr={lr!r}"
        )
    rate = max(1 - 2 * lr * mu * L / (mu + L), 0.0)
    return rate**steps * _non_negative("dist0_sq", dist0_sq)


def sgd_noise_ball_distance_sq(
    k: Any, lr: float, mu: float, dist0_sq: float, sigma_sq: float
) -> np.ndarray:
    """(1 - lr mu)^k ||x0 - x*||² + 2 lr σ*² / mu: constant-step SGD on a mu-strongly convex
    finite sum f = (1/n) Σ f_i of L_i-smooth convex f_i, sampling one f_i uniformly per update,
    with 0 < lr <= 1/(2 L_max), has E||x_k - x*||² at most this; σ*² = (1/n) Σ ||∇f_i(x*)||² is
    the gradient noise at the optimum ([GLQ19] Theorem 3.1 with the expected-smoothness
    constant L_max = max_i L_i of uniform single-element sampling). The second term is the noise
    ball: it does not vanish as k grows, only as lr does.

    >>> float(sgd_noise_ball_distance_sq(1, lr=0.1, mu=1.0, dist0_sq=1.0, sigma_sq=0.5))
    1.0
    """
    steps = _steps(k)
    lr, mu = _positive("lr", lr), _positive("mu", mu)
    if not lr * mu <= 0.5:  # (lr <= 1/(2 L_max), with mu <= L <= L_max)
        raise ValueError(
            f"lr * mu must be at most 1/2 (the theorem's lr <= 1/(2 L_max), with mu <= L_max), "
            f"got lr={lr!r}, mu={mu!r}"
        )
    ball = 2 * lr * _non_negative("sigma_sq", sigma_sq) / mu
    return (1 - lr * mu) ** steps * _non_negative("dist0_sq", dist0_sq) + ball


def _gap0(problem: Any, f_low: float | None = None) -> float:
    with torch.no_grad():
        value = float(problem.loss(problem.x0))
    return value - (problem.f_star if f_low is None else f_low)


def gd_nonconvex_bound(
    problem: Any, lr: float, *, L: float | None = None, f_low: float | None = None
) -> Bound:
    """min_{j<k} ||∇f(x_j)||² <= (f(x0) - f_low) / (k lr (1 - lr L/2)) for GD with
    0 < lr < 2/L on an L-smooth, possibly non-convex f (2 L (f(x0) - f_low)/k at lr = 1/L;
    see ``gd_nonconvex_grad_sq_min``). The only bound here that applies to ``Rosenbrock`` and
    to networks.

    ``L`` must bound the curvature wherever the run can go: the default ``problem.L`` is used
    only for problems whose L is global; for ``Rosenbrock`` (whose ``L`` is local to x*) pass
    ``L=problem.sublevel_smoothness()``, valid on a box around {f <= f(x0)}, which gradient
    descent with lr < 2/L never leaves. ``f_low`` defaults to ``problem.f_star``.

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0, 0.0], [0.0, 0.5]], x_star=[0.0, 0.0], x0=[1.0, 0.0])
        >>> bound = gd_nonconvex_bound(problem, lr=1.0)  # L = 1, f(x0) - f* = 0.5
        >>> bound.quantity, float(bound(4))  # 2 L (f(x0) - f*)/k = 2 * 1 * 0.5/4
        ('grad_sq_min', 0.25)
    """
    _require_deterministic(problem, "gd_nonconvex_bound")
    if L is None:
        if not getattr(problem, "L_is_global", True):
            raise ValueError(
                f"{type(problem).__name__}.L={problem.L:.6g} is the local smoothness at x*, "
                "not a global one: pass L= valid on the region the run visits (for Rosenbrock, "
                "L=problem.sublevel_smoothness())"
            )
        L = problem.L
    L = _positive("L", L)
    lr = _positive("lr", lr)
    if not lr < 2 / L:
        raise ValueError(f"lr must be below 2/L = {2 / L:.6g}, got lr={lr!r}")
    if f_low is None:
        f_low = problem.f_star
    else:
        f_low = _finite_float("f_low", f_low)
        if f_low > problem.f_star:
            raise ValueError(
                f"f_low must be a lower bound on f, at most f* = {problem.f_star!r}, got "
                f"f_low={f_low!r}"
            )
    gap0 = _gap0(problem, f_low)
    return Bound(
        name="gd_nonconvex",
        quantity="grad_sq_min",
        order=-1.0,
        values=lambda k: gd_nonconvex_grad_sq_min(k, lr, L, max(gap0, 0.0)),
        formula="min_{j<k} ||grad f(x_j)||^2 <= (f(x0) - f_low) / (k lr (1 - lr L / 2))",
        hyperparameters=sgd_hyperparameters(lr),
        problem=problem,
        assumptions=f"f L-smooth with L = {L:.6g} on the region the run visits (not "
        "necessarily convex), f >= f_low, 0 < lr < 2/L, plain gradient descent",
        source="Nesterov (2004), section 1.2.3 (the estimate for the gradient method on "
        "non-convex smooth f, summed descent lemma)",
    )


def pl_bound(problem: Any) -> Bound:
    """f(x_k) - f* <= (1 - pl/L)^k (f(x0) - f*) for GD with step 1/L on an L-smooth f with the
    Polyak-Łojasiewicz constant ``problem.pl_constant`` ([KNS16] Theorem 1; see ``pl_gap``).

    Example::

        >>> from theory.problems import Quadratic
        >>> A = [[4.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]  # singular: mu = 0, pl = 1
        >>> problem = Quadratic(A, x_star=[0.0, 0.0, 0.0], x0=[1.0, 0.0, 0.0])
        >>> bound = pl_bound(problem)  # f(x0) - f* = 4/2
        >>> problem.mu, bound.rate, float(bound(2))  # 1 - 1/4, 0.75² * 2
        (0.0, 0.75, 1.125)
    """
    _require_problem(problem, "pl_bound")
    pl = float(getattr(problem, "pl_constant", 0.0))
    if not pl > 0:
        raise ValueError(
            f"pl_bound needs a problem with a Polyak-Łojasiewicz constant pl_constant > 0, got "
            f"{type(problem).__name__} with pl_constant={pl!r}"
        )
    L = _require_gd_setting(problem, "pl_bound")
    gap0 = _gap0(problem)
    return Bound(
        name="gd_pl",
        quantity="gap",
        rate=1 - pl / L,
        values=lambda k: pl_gap(k, L, pl, max(gap0, 0.0)),
        formula="f(x_k) - f* <= (1 - pl/L)^k (f(x0) - f*)",
        hyperparameters=sgd_hyperparameters(1.0 / L),
        problem=problem,
        assumptions="f L-smooth, ||grad f||^2 / 2 >= pl (f - f*) (PL), step 1/L, plain "
        "gradient descent",
        source="Karimi, Nutini & Schmidt (2016), Theorem 1",
    )


def gd_tight_bound(problem: Any, lr: float) -> Bound:
    """f(x_k) - f* <= L ||x0 - x*||² / (4 k lr L + 2) for GD with 0 < lr <= 1/L on convex
    L-smooth f: the tight worst case ([DT14] Theorems 3.1-3.2; see ``gd_tight_convex_gap``).

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[1.0, 0.0], [0.0, 0.5]], x_star=[0.0, 0.0], x0=[1.0, 0.0])
        >>> gd_tight_bound(problem, lr=1.0)([0, 2]).tolist()  # 1 * 1/(4 * 2 * 1 * 1 + 2) at k = 2
        [0.5, 0.1]
    """
    _require_convex(problem, "gd_tight_bound")
    L = _require_gd_setting(problem, "gd_tight_bound")
    lr = _check_safe_lr(lr, L)
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="gd_tight",
        quantity="gap",
        order=-1.0,
        values=lambda k: gd_tight_convex_gap(k, lr, L, dist0_sq),
        formula="f(x_k) - f* <= L ||x0 - x*||^2 / (4 k lr L + 2)",
        hyperparameters=sgd_hyperparameters(lr),
        problem=problem,
        assumptions="f convex and L-smooth, 0 < lr <= 1/L, plain gradient descent",
        source="Drori & Teboulle (2014), Theorem 3.1 (tight: Theorem 3.2)",
    )


def gd_strongly_convex_tight_bound(problem: Any, lr: float) -> Bound:
    """||x_k - x*||² <= (1 - 2 lr mu L/(mu + L))^k ||x0 - x*||² for GD with
    0 < lr <= 2/(mu + L) ([N04] Theorem 2.1.15; see ``gd_strongly_convex_tight_distance_sq``).

    Example::

        >>> from theory.problems import Quadratic
        >>> problem = Quadratic([[3.0, 0.0], [0.0, 1.0]], x_star=[0.0, 0.0], x0=[0.0, 1.0])
        >>> bound = gd_strongly_convex_tight_bound(problem, lr=0.5)  # lr = 2/(1 + 3)
        >>> bound.rate, float(bound(2))  # 1 - 2 * 0.5 * 1 * 3/4 = ((3-1)/(3+1))², 0.25²
        (0.25, 0.0625)
    """
    _require_strongly_convex(problem, "gd_strongly_convex_tight_bound")
    L = _require_gd_setting(problem, "gd_strongly_convex_tight_bound")
    mu = problem.mu
    lr = _positive("lr", lr)
    if lr > (1 + _RTOL) * 2 / (mu + L):
        raise ValueError(
            f"lr must satisfy 0 < lr <= 2/(mu + L) = {2 / (mu + L):.6g} for this bound, got "
            f"lr={lr!r}"
        )
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="gd_strongly_convex_tight",
        quantity="distance_sq",
        rate=max(1 - 2 * lr * mu * L / (mu + L), 0.0),
        values=lambda k: gd_strongly_convex_tight_distance_sq(k, lr, L, mu, dist0_sq),
        formula="||x_k - x*||^2 <= (1 - 2 lr mu L / (mu + L))^k ||x0 - x*||^2",
        hyperparameters=sgd_hyperparameters(lr),
        problem=problem,
        assumptions="f mu-strongly convex and L-smooth, 0 < lr <= 2/(mu + L), plain gradient "
        "descent",
        source="Nesterov, Introductory Lectures on Convex Optimization (Kluwer, 2004), "
        "Theorem 2.1.15",
    )


def sgd_noise_ball_bound(problem: Any, lr: float) -> Bound:
    """E||x_k - x*||² <= (1 - lr mu)^k ||x0 - x*||² + 2 lr σ*²/mu for constant-step SGD sampling
    one term of a strongly convex finite sum per update, 0 < lr <= 1/(2 L_max) ([GLQ19] Theorem
    3.1; see ``sgd_noise_ball_distance_sq``). ``problem`` must be a sampled finite sum with
    ``batch_size`` 1 that states ``L_max`` and ``sigma_star_sq`` (``LeastSquares(...,
    batch_size=1)``).

    Example::

        >>> from theory.problems import LeastSquares
        >>> X, y = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], [1.0, -1.0, 1.0, -1.0]
        >>> problem = LeastSquares(X, y, x0=[1.0, 0.0], batch_size=1)  # x* = 0, ||x0 - x*|| = 1
        >>> problem.mu, problem.L_max, problem.sigma_star_sq  # X^T X/4 = I/2, max ||x_i||², 1
        (0.5, 1.0, 1.0)
        >>> bound = sgd_noise_ball_bound(problem, lr=0.5)  # (1 - 0.25)^k * 1 + 2 * 0.5 * 1/0.5
        >>> bound([1, 2]).round(6).tolist(), bound.expectation
        ([2.75, 2.5625], True)
    """
    _require_strongly_convex(problem, "sgd_noise_ball_bound")
    if getattr(problem, "batch_size", None) != 1 or not hasattr(problem, "sigma_star_sq"):
        raise ValueError(
            f"sgd_noise_ball_bound needs a finite sum sampled one term per update "
            f"(batch_size=1, e.g. LeastSquares(X, y, batch_size=1)), got {problem!r} with "
            f"batch_size={getattr(problem, 'batch_size', None)!r}"
        )
    lr = _positive("lr", lr)
    L_max, mu, sigma_sq = problem.L_max, problem.mu, problem.sigma_star_sq
    if lr > (1 + _RTOL) / (2 * L_max):
        raise ValueError(
            f"lr must satisfy 0 < lr <= 1/(2 L_max) = {1 / (2 * L_max):.6g}, got lr={lr!r}"
        )
    _, dist0_sq = _start_distance(problem)
    return Bound(
        name="sgd_noise_ball",
        quantity="distance_sq",
        values=lambda k: sgd_noise_ball_distance_sq(k, lr, mu, dist0_sq, sigma_sq),
        formula="E||x_k - x*||^2 <= (1 - lr mu)^k ||x0 - x*||^2 + 2 lr sigma*^2 / mu",
        hyperparameters=sgd_hyperparameters(lr),
        problem=problem,
        expectation=True,
        assumptions="f = (1/n) sum f_i mu-strongly convex, each f_i convex and L_i-smooth, one "
        "f_i sampled uniformly per update, 0 < lr <= 1/(2 max L_i), plain SGD",
        source="Gower et al. (2019), Theorem 3.1 (also Garrigos & Gower (2023) section 5; "
        "Needell, Srebro & Ward (2014), Theorem 2.1, in another form)",
    )
