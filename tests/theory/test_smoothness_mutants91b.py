"""Tests for smoothness.py conventions no test pinned (mutation audit 91b).

Expected values: the Hessians are Q diag(λ) Q^T with a seeded orthogonal Q, so their eigenvalues
are the given λ (numpy.linalg.eigvalsh checks it). The documented rule (module docstring and
_power_iteration's): the second solve for λ_max when λ_min dominates is "stopped by the same
relative rule on λ_max", and "a converged θ is within tol |θ| of an eigenvalue of H (H
symmetric)": a Ritz value θ with residual ||H y - θ y|| = r is within r of an eigenvalue
(Parlett, "The Symmetric Eigenvalue Problem", section 4.5: a Ritz value with residual r
is within r of an eigenvalue of a symmetric matrix)."""

import numpy as np
import pytest
import torch

from theory.smoothness import smoothness

X64 = torch.zeros(1, 1, dtype=torch.float64)
Y = torch.zeros(1)


class Vector(torch.nn.Module):
    """model(x) = w: the loss is a function of the parameters alone."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(n, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


def rotated(eigenvalues, seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return q @ np.diag(eigenvalues) @ q.T


@pytest.mark.parametrize("tol", [1e-2, 1e-3])
def test_power_lambda_max_behind_a_dominant_lambda_min_meets_tol_relative_to_lambda_max(tol):
    # λ_min = -100 dominates; λ_max = 1 is found by power iteration on H + 100 I. Converged
    # means λ_max met ||H y - θ y|| <= tol |θ|, so θ is within tol |θ| of an eigenvalue of H
    # (not merely within tol |θ + 100|).
    eigenvalues = [-100.0, 1.0, 0.95, 0.2]
    matrix = rotated(eigenvalues, seed=0)
    assert np.allclose(np.linalg.eigvalsh(matrix), sorted(eigenvalues), atol=1e-12)
    estimate = _power(eigenvalues, 0, tol)
    assert estimate.converged
    assert estimate.eigenvalue == pytest.approx(-100.0, rel=2 * tol)
    theta = estimate.largest_eigenvalue
    nearest = min(abs(theta - value) for value in eigenvalues)
    assert nearest <= tol * abs(theta) * (1 + 1e-9), (theta, nearest)


def _power(eigenvalues, seed, tol):
    A = torch.as_tensor(rotated(eigenvalues, seed))
    return smoothness(
        Vector(len(A)),
        lambda w, _: 0.5 * w @ A @ w,
        (X64, Y),
        method="power",
        tol=tol,
        max_hvps=5000,
    )


@pytest.mark.parametrize("seed", range(3))
def test_power_returns_plus_lambda_on_a_tie_up_to_tol(seed):
    # _power_iteration's docstring: "Between two Ritz values of the same magnitude up to
    # max(tol, 1e-12) relative, the positive one is returned". |-1.005| / 1 - 1 = 0.5 % is within
    # tol = 1 %: +1 is returned (and it is λ_max, so no second solve is needed).
    estimate = _power([1.0, -1.005, 0.0], seed, tol=1e-2)
    assert estimate.converged
    assert estimate.eigenvalue == pytest.approx(1.0, abs=1e-2)
    assert estimate.largest_eigenvalue == estimate.eigenvalue


@pytest.mark.parametrize("seed", range(3))
def test_power_returns_the_larger_magnitude_outside_the_tie(seed):
    # 0.5 % is outside tol = 0.1 %: the largest magnitude -1.005 is returned, λ_max = 1 by the
    # second solve
    estimate = _power([1.0, -1.005, 0.0], seed, tol=1e-3)
    assert estimate.converged
    assert estimate.eigenvalue == pytest.approx(-1.005, abs=1e-3 * 1.005)
    assert estimate.largest_eigenvalue == pytest.approx(1.0, abs=1e-3)
