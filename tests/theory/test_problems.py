"""Problems: L, mu, x*, f* and the closed forms against independent numpy / autograd references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse
import torch

from theory.certify import run
from theory.problems import DTYPE, LeastSquares, LogisticRegression, Quadratic, Rosenbrock
from theory.testing import assert_converges


def _autograd_grad(problem, x):
    x = x.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(problem.loss(x), x)
    return gradient


def _data(n=30, d=5, seed=0):
    generator = np.random.default_rng(seed)
    return generator.standard_normal((n, d)), generator.standard_normal(n)


# ---------------------------------------------------------------------------------- Quadratic
def test_quadratic_from_spectrum_has_that_spectrum_and_exact_constants():
    spectrum = [0.5, 1.0, 2.0, 7.5]
    problem = Quadratic.from_spectrum(spectrum, seed=3, f_star=1.25)
    A = problem.A.numpy()
    np.testing.assert_allclose(A, A.T, atol=0)
    np.testing.assert_allclose(np.linalg.eigvalsh(A), spectrum, rtol=1e-12)
    assert (problem.L, problem.mu) == (7.5, 0.5)
    assert problem.kappa == 15.0
    assert problem.x_star.dtype == DTYPE
    assert problem.x0.dtype == DTYPE
    r = (problem.x0 - problem.x_star).numpy()
    assert float(problem.loss(problem.x0)) == pytest.approx(0.5 * r @ A @ r + 1.25, rel=1e-13)
    assert float(problem.loss(problem.x_star)) == 1.25
    assert problem.f_star == 1.25
    torch.testing.assert_close(problem.grad(problem.x0), _autograd_grad(problem, problem.x0))
    assert float(problem.grad(problem.x_star).norm()) == 0.0


def test_quadratic_is_a_pure_function_of_its_seed():
    first, again = (Quadratic.from_condition_number(6, 20.0, seed=5) for _ in range(2))
    other = Quadratic.from_condition_number(6, 20.0, seed=6)
    assert torch.equal(first.A, again.A)
    assert torch.equal(first.x0, again.x0)
    assert not torch.equal(first.A, other.A)
    assert not torch.equal(first.x0, other.x0)


@pytest.mark.parametrize("spacing", ["linear", "log"])
def test_quadratic_from_condition_number(spacing):
    problem = Quadratic.from_condition_number(7, kappa=40.0, L=3.0, seed=1, spacing=spacing)
    assert problem.L == 3.0
    assert problem.mu == pytest.approx(3.0 / 40.0, rel=1e-15)
    eigenvalues = np.linalg.eigvalsh(problem.A.numpy())
    assert eigenvalues[0] == pytest.approx(3.0 / 40.0, rel=1e-12)
    assert eigenvalues[-1] == pytest.approx(3.0, rel=1e-12)
    expected = np.linspace(3 / 40, 3, 7) if spacing == "linear" else np.geomspace(3 / 40, 3, 7)
    np.testing.assert_allclose(eigenvalues, expected, rtol=1e-12)


def test_quadratic_from_a_matrix_reads_its_eigenvalues():
    A = np.array([[2.0, 1.0], [1.0, 2.0]])  # eigenvalues 1 and 3
    problem = Quadratic(A, x_star=[1.0, -1.0], x0=[0.0, 0.0])
    assert pytest.approx(3.0) == problem.L
    assert problem.mu == pytest.approx(1.0)
    assert float(problem.loss(torch.zeros(2, dtype=DTYPE))) == pytest.approx(0.5 * 2.0)
    singular = Quadratic(np.diag([0.0, 4.0]))
    assert singular.mu == 0.0
    assert singular.L == 4.0
    assert singular.kappa == math.inf


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"A": [[1.0, 2.0], [0.0, 1.0]]}, "symmetric"),
        ({"A": [[1.0, 0.0], [0.0, -0.5]]}, "positive semidefinite"),
        ({"A": [[1.0, 0.0, 0.0]]}, "square"),
        ({"A": [[1.0, 0.0], [0.0, 1.0]], "x_star": [1.0]}, "x_star"),
        ({"A": [[1.0, 0.0], [0.0, 1.0]], "x0": [1.0, math.nan]}, "x0"),
    ],
)
def test_quadratic_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Quadratic(**kwargs)


def test_quadratic_constructors_reject_bad_input():
    with pytest.raises(ValueError, match="kappa must be >= 1"):
        Quadratic.from_condition_number(4, kappa=0.5)
    with pytest.raises(ValueError, match="dim"):
        Quadratic.from_condition_number(0, kappa=2.0)
    with pytest.raises(ValueError, match="eigenvalues"):
        Quadratic.from_spectrum([1.0, -0.1])
    with pytest.raises(ValueError, match="spacing"):
        Quadratic.from_condition_number(4, kappa=2.0, spacing="cubic")
    with pytest.raises(ValueError, match="seed"):
        Quadratic.from_condition_number(4, kappa=2.0, seed=-1)


def test_parameter_is_a_fresh_float64_copy_of_x0():
    problem = Quadratic.from_condition_number(3, 2.0)
    first, second = problem.parameter(), problem.parameter()
    assert isinstance(first, torch.nn.Parameter)
    assert first.dtype == DTYPE
    assert torch.equal(first.detach(), problem.x0)
    assert first is not second
    with torch.no_grad():
        first.add_(1.0)
    assert torch.equal(second.detach(), problem.x0)


# ------------------------------------------------------------------------------- LeastSquares
def test_least_squares_constants_and_solution_against_numpy():
    X, y = _data()
    problem = LeastSquares(X, y)
    gram = X.T @ X / 30
    eigenvalues = np.linalg.eigvalsh(gram)
    assert pytest.approx(eigenvalues[-1], rel=1e-12) == problem.L
    assert problem.mu == pytest.approx(eigenvalues[0], rel=1e-12)
    normal_solution = np.linalg.solve(X.T @ X, X.T @ y)
    np.testing.assert_allclose(problem.x_star.numpy(), normal_solution, rtol=1e-10)
    residual = X @ normal_solution - y
    assert problem.f_star == pytest.approx(residual @ residual / 60, rel=1e-12)
    w = problem.x0
    np.testing.assert_allclose(
        float(problem.loss(w)), np.sum((X @ w.numpy() - y) ** 2) / 60, rtol=1e-13
    )
    torch.testing.assert_close(problem.grad(w), _autograd_grad(problem, w))


def test_least_squares_underdetermined_gives_the_minimum_norm_solution():
    X, y = _data(n=4, d=9)
    problem = LeastSquares(X, y)
    assert problem.mu == 0.0
    np.testing.assert_allclose(problem.x_star.numpy(), np.linalg.pinv(X) @ y, atol=1e-12)
    assert problem.f_star == pytest.approx(0.0, abs=1e-25)


def test_least_squares_sparse_matches_dense():
    X = scipy.sparse.random(50, 8, density=0.4, random_state=1, format="csr")
    y = np.random.default_rng(1).standard_normal(50)
    sparse, dense = LeastSquares(X, y), LeastSquares(X.toarray(), y)
    assert pytest.approx(dense.L, rel=1e-10) == sparse.L
    assert sparse.mu == pytest.approx(dense.mu, rel=1e-8)
    torch.testing.assert_close(sparse.x_star, dense.x_star, rtol=1e-9, atol=1e-11)
    w = dense.x0
    assert float(sparse.loss(w)) == pytest.approx(float(dense.loss(w)), rel=1e-13)
    torch.testing.assert_close(sparse.grad(w), dense.grad(w))
    torch.testing.assert_close(_autograd_grad(sparse, w), dense.grad(w))


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.zeros((0, 3)), np.zeros(0), "X must be a non-empty"),
        (np.ones((3, 0)), np.zeros(3), "X must be a non-empty"),
        (np.ones(3), np.zeros(3), "X must be a non-empty 2-D"),
        (np.ones((3, 2)), np.zeros(4), "y must have shape"),
        (np.full((3, 2), np.inf), np.zeros(3), "finite"),
    ],
)
def test_least_squares_rejects_bad_input(X, y, match):
    with pytest.raises(ValueError, match=match):
        LeastSquares(X, y)


# ------------------------------------------------------------------------- LogisticRegression
def _logistic_data(n=60, d=4, seed=2):
    generator = np.random.default_rng(seed)
    X = generator.standard_normal((n, d))
    y = np.where(X @ generator.standard_normal(d) + generator.standard_normal(n) > 0, 1.0, -1.0)
    return X, y


def test_logistic_constants():
    X, y = _logistic_data()
    problem = LogisticRegression(X, y, l2=0.1)
    assert pytest.approx(np.linalg.eigvalsh(X.T @ X)[-1] / (4 * 60) + 0.1, rel=1e-12) == problem.L
    assert problem.mu == 0.1
    # L bounds the Hessian everywhere and is attained at w = 0, where σ'(0) = 1/4
    for scale in (0.0, 0.5, 3.0):
        w = torch.full((4,), scale, dtype=DTYPE)
        hessian = torch.autograd.functional.hessian(problem.loss, w).numpy()
        eigenvalues = np.linalg.eigvalsh(hessian)
        assert eigenvalues[-1] <= problem.L * (1 + 1e-12)
        assert eigenvalues[0] >= problem.mu * (1 - 1e-12)
        if scale == 0.0:
            assert eigenvalues[-1] == pytest.approx(problem.L, rel=1e-12)


def test_logistic_optimum_is_certified_by_the_autograd_gradient():
    X, y = _logistic_data()
    problem = LogisticRegression(X, y, l2=0.01)
    gradient_norm = float(_autograd_grad(problem, problem.x_star).norm())
    # ||w - w*|| <= ||grad f(w)|| / mu: 1e-10 relative accuracy of x*
    assert gradient_norm / problem.mu <= 1e-10 * max(1.0, float(problem.x_star.norm()))
    assert problem.x_star_tol <= 1e-10 * max(1.0, float(problem.x_star.norm()))
    # the loss by an independent numpy formula agrees with f*
    margins = y * (X @ problem.x_star.numpy())
    reference = np.mean(np.log1p(np.exp(-margins))) + 0.005 * float(problem.x_star.norm()) ** 2
    assert problem.f_star == pytest.approx(reference, rel=1e-13)
    torch.testing.assert_close(problem.grad(problem.x0), _autograd_grad(problem, problem.x0))


@pytest.mark.parametrize(
    ("labels", "l2", "match"),
    [
        ("zero_one", 0.1, "labels -1 and \\+1"),
        ("signed", 0.0, "l2 must be positive"),
        ("signed", -1.0, "l2 must be positive"),
    ],
)
def test_logistic_rejects_bad_input(labels, l2, match):
    X, y = _logistic_data()
    if labels == "zero_one":
        y = (y + 1) / 2
    with pytest.raises(ValueError, match=match):
        LogisticRegression(X, y, l2=l2)


# --------------------------------------------------------------------------------- Rosenbrock
def test_rosenbrock_closed_forms():
    problem = Rosenbrock()
    np.testing.assert_array_equal(problem.x_star.numpy(), [1.0, 1.0])
    assert float(problem.loss(problem.x_star)) == 0.0
    assert problem.f_star == 0.0
    # ∇²f(1, 1) = [[2 + 8b, -4b], [-4b, 2b]] = [[802, -400], [-400, 200]]: trace 1002, det 400
    assert pytest.approx((1002 + math.sqrt(1002**2 - 4 * 400)) / 2, rel=1e-12) == problem.L
    assert problem.mu == 0.0
    assert not problem.is_convex
    x = torch.tensor([-1.2, 1.0], dtype=DTYPE)
    assert float(problem.loss(x)) == pytest.approx(2.2**2 + 100 * (1 - 1.44) ** 2, rel=1e-14)
    torch.testing.assert_close(problem.grad(x), _autograd_grad(problem, x))
    chained = Rosenbrock(dim=5, seed=3)
    torch.testing.assert_close(chained.grad(chained.x0), _autograd_grad(chained, chained.x0))
    with pytest.raises(ValueError, match="dim"):
        Rosenbrock(dim=1)


def test_rosenbrock_is_solved_by_lbfgs():
    problem = Rosenbrock(x0=[-1.2, 1.0])
    assert_converges(
        problem,
        lambda p: torch.optim.LBFGS(
            p,
            max_iter=20,
            tolerance_grad=1e-14,
            tolerance_change=1e-16,
            line_search_fn="strong_wolfe",
        ),
        steps=10,
        tol=1e-12,
        relative=False,
    )
    trajectory = run(problem, lambda p: torch.optim.SGD(p, lr=0.5 / problem.L), 50)
    assert trajectory.gap[-1] < trajectory.gap[0]  # 1/L_local is a descent step near x*


def test_a_one_dimensional_quadratic_refuses_a_condition_number_above_one():
    # before: Quadratic.from_condition_number(1, 100.0) silently returned kappa = 1
    with pytest.raises(ValueError, match=r"dim=1 with kappa=100.0"):
        Quadratic.from_condition_number(1, 100.0)
    assert Quadratic.from_condition_number(1, 1.0).kappa == 1.0


def test_logistic_loss_is_exact_at_large_margins_and_grad_is_its_gradient():
    """(1/n) Σ log(1 + exp(-m_i)) at margins past 20, where torch's softplus turns linear (2e-9
    off per term there, and its autograd gradient then not the closed-form sigmoid one)."""
    problem = LogisticRegression(np.array([[1.0], [2.0]]), np.array([1.0, -1.0]), l2=1e-3)
    x = torch.tensor([-25.0], dtype=torch.float64, requires_grad=True)
    margins = np.array([1.0, -1.0]) * (np.array([[1.0], [2.0]]) @ np.array([-25.0]))
    expected = np.mean(np.logaddexp(0.0, -margins)) + 0.5 * 1e-3 * 25.0**2
    loss = problem.loss(x)
    assert float(loss.detach()) == expected
    (autograd,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(autograd, problem.grad(x.detach()), rtol=1e-15, atol=0)


def test_sparse_ill_conditioned_least_squares_has_the_dense_constants():
    """A sparse X of 60 columns whose Gram matrix has condition number about 1e4: Lanczos'
    smallest eigenvalue did not converge (ArpackNoConvergence at construction); the Gram matrix
    of a sparse X this narrow is now solved as the dense one is."""
    X = (
        scipy.sparse.random(400, 60, density=0.3, random_state=2, format="csr")
        @ scipy.sparse.diags(np.geomspace(1, 1e-2, 60))
    ).tocsr()
    y = np.random.default_rng(0).standard_normal(400)
    sparse, dense = LeastSquares(X, y), LeastSquares(X.toarray(), y)
    assert (sparse.L, sparse.mu) == (dense.L, dense.mu)
    assert sparse.mu > 0
