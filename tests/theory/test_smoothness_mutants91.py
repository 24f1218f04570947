"""Tests that kill the surviving smoothness.py mutants of audit 91 (S03, S04, S05, S09, S12,
S13, S14). Expected values are hand derivations: the Hessians are diagonal (diag(1, -3),
diag(2, 1), 0), so their eigenvalues are the diagonal (checked with numpy.linalg.eigvalsh);
the precision floor is the documented 8 eps of the least precise parameter's dtype."""

import numpy as np
import pytest
import torch

from theory.smoothness import smoothness

X64 = torch.zeros(1, 1, dtype=torch.float64)
Y = torch.zeros(1)


class Vector(torch.nn.Module):
    """model(x) = w: the loss is a function of the parameters alone."""

    def __init__(self, n: int = 2, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(n, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w


def indefinite(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(w0² - 3 w1²)/2: Hessian diag(1, -3)."""
    return 0.5 * (out[0] ** 2 - 3 * out[1] ** 2)


def convex(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(2 w0² + w1²)/2: Hessian diag(2, 1)."""
    return 0.5 * (2.0 * out[0] ** 2 + out[1] ** 2)


def test_two_parameter_la_returns_the_largest_algebraic_eigenvalue():
    # S13: the dense path must pick argmax(λ) for "LA", not argmax |λ|
    expected = float(np.linalg.eigvalsh(np.diag([1.0, -3.0])).max())  # 1
    estimate = smoothness(Vector(), indefinite, (X64, Y), which="LA")
    assert estimate.eigenvalue == pytest.approx(expected, abs=1e-12)
    assert estimate.largest_eigenvalue == pytest.approx(expected, abs=1e-12)


def test_two_parameter_lm_keeps_lambda_max_for_the_steps():
    # S14: largest magnitude is -3 (λ_min), but the steps need λ_max = 1: safe 1, edge 2
    estimate = smoothness(Vector(), indefinite, (X64, Y), which="LM")
    assert estimate.eigenvalue == pytest.approx(-3.0, abs=1e-12)
    assert estimate.largest_eigenvalue == pytest.approx(1.0, abs=1e-12)
    assert estimate.safe_step == pytest.approx(1.0)
    assert estimate.edge_step == pytest.approx(2.0)


def test_two_parameters_are_solved_densely_with_two_products():
    # S12: a 2-parameter Hessian is read column by column: exactly 2 Hessian-vector products
    estimate = smoothness(Vector(), indefinite, (X64, Y), which="LM")
    assert estimate.hvps == 2
    assert estimate.converged


def test_tol_at_the_float64_floor_converges():
    # S03: converged is False only for tol *below* 8 eps; tol = 8 eps exactly is allowed
    estimate = smoothness(Vector(), convex, (X64, Y), tol=8 * torch.finfo(torch.float64).eps)
    assert estimate.eigenvalue == pytest.approx(2.0, abs=1e-12)
    assert estimate.converged


def test_float32_floor_is_eight_epsilons():
    # S04: 5e-7 is above 4 eps32 (4.8e-7) but below the documented floor 8 eps32 (9.5e-7)
    eps32 = torch.finfo(torch.float32).eps
    assert 4 * eps32 < 5e-7 < 8 * eps32
    x32 = torch.zeros(1, 1, dtype=torch.float32)
    below = smoothness(Vector(dtype=torch.float32), convex, (x32, Y), tol=5e-7)
    at_floor = smoothness(Vector(dtype=torch.float32), convex, (x32, Y), tol=8 * eps32)
    assert not below.converged
    assert at_floor.converged


class Mixed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.zeros(1, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a, self.b.double()])


def test_mixed_dtypes_use_the_least_precise_floor():
    # S05: a float32 parameter beside a float64 one: floor 8 eps32, so tol = 1e-10 is below it
    estimate = smoothness(Mixed(), convex, (X64, Y), tol=1e-10)
    assert estimate.eigenvalue == pytest.approx(2.0, rel=1e-6)
    assert not estimate.converged


@pytest.mark.parametrize("method", ["power", "lanczos"])
def test_zero_hessian_takes_one_product(method):
    # S09: H = 0 (a linear loss): one product shows H v = 0; no second (shifted) solve
    estimate = smoothness(Vector(3), lambda out, y: out.sum(), (X64, Y), method=method)
    assert estimate.eigenvalue == 0.0
    assert estimate.hvps == 1
    assert estimate.safe_step == float("inf")
    assert estimate.converged
