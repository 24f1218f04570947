"""Certified minimisers on hard but well-posed data, and bad input named: each test checks the
problem against an independent reference (a linear program of another formulation, numpy
eigenvalues, a dense Hessian) or checks that bad input raises an error naming the argument."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse
import scipy.special
import torch

from theory.problems import (
    HingeLoss,
    LeastAbsoluteDeviations,
    LeastSquares,
    LogisticRegression,
    Quadratic,
    ReddiCounterexample,
    Rosenbrock,
    WilsonSeparable,
)
from theory.schedule_bounds import (
    constant_closed_form_bound,
    harmonic_number,
    wsd_closed_form_bound,
)
from theory.smoothness import smoothness


# ------------------------------------------------------------- piecewise-linear certificates
def _hinge_lp(X, y):
    """min (1/n) Σ ξ_i s.t. ξ_i >= 1 - y_i x_iᵀw, ξ >= 0 (the SVM slack form)."""
    n, d = X.shape
    cost = np.concatenate([np.zeros(d), np.ones(n) / n])
    A = np.hstack([-(y[:, None] * X), -np.eye(n)])
    bounds = [(None, None)] * d + [(0, None)] * n
    return scipy.optimize.linprog(cost, A_ub=A, b_ub=-np.ones(n), bounds=bounds, method="highs-ds")


def _lad_lp(X, y):
    """min (1/n) Σ (p_i + q_i) s.t. X (a - b) - p + q = y, a, b, p, q >= 0 (split variables)."""
    n, d = X.shape
    cost = np.concatenate([np.zeros(2 * d), np.ones(2 * n) / n])
    A = np.hstack([X, -X, -np.eye(n), np.eye(n)])
    bounds = [(0, None)] * (2 * d + 2 * n)
    return scipy.optimize.linprog(cost, A_eq=A, b_eq=y, bounds=bounds, method="highs-ds")


def _binary_hinge(seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, (40, 3)).astype(float), np.where(rng.random(40) < 0.5, -1.0, 1.0)


def _integer_lad(seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, (40, 3)).astype(float), rng.integers(-2, 3, 40).astype(float)


def _scaled_hinge(seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((20, 3)) * 1e6
    return X, np.where(rng.random(20) < 0.5, -1.0, 1.0)


def _assert_minimum(problem, reference):
    assert reference.status == 0
    w = problem.x_star.numpy()
    # the stated minimum is the value of the stated minimiser (numpy, not the class's formula)
    z = problem.X_data @ w - problem._kinks
    value = np.mean(np.maximum(problem._low * z, problem._high * z))
    assert problem.f_star == pytest.approx(value, rel=1e-12, abs=1e-15)
    assert problem.f_star == pytest.approx(reference.fun, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", [2, 4, 6])
def test_hinge_on_binary_features_is_certified_at_the_lp_minimum(seed):
    # before: RuntimeError "could not certify the minimiser" (lsq_linear's 'trf' stopped early)
    X, y = _binary_hinge(seed)
    _assert_minimum(HingeLoss(X, y, batch_size=None), _hinge_lp(X, y))


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_lad_on_binary_features_and_integer_targets_is_certified_at_the_lp_minimum(seed):
    X, y = _integer_lad(seed)
    _assert_minimum(LeastAbsoluteDeviations(X, y, batch_size=None), _lad_lp(X, y))


@pytest.mark.parametrize("seed", [0, 5])
def test_hinge_on_large_scale_features_is_certified_at_the_lp_minimum(seed):
    # before: the kink tolerance was in X's units (1e-7 * 1e6), not the residual's
    X, y = _scaled_hinge(seed)
    _assert_minimum(HingeLoss(X, y, batch_size=None), _hinge_lp(X, y))


@pytest.mark.parametrize(
    ("cls", "data"),
    [(HingeLoss, _binary_hinge(2)), (LeastAbsoluteDeviations, _integer_lad(0))],
)
def test_the_certificate_still_refuses_a_point_that_is_not_a_minimiser(cls, data):
    X, y = data
    problem = cls(X, y, batch_size=None)
    np.testing.assert_array_equal(problem._certify(problem.x_star.numpy()), problem.x_star)
    rng = np.random.default_rng(0)
    for _ in range(5):
        wrong = problem.x_star.numpy() + 0.3 * rng.standard_normal(3)
        assert problem._numpy_loss(wrong) > problem.f_star  # really not a minimiser
        with pytest.raises(RuntimeError, match="could not certify"):
            problem._certify(wrong)


# --------------------------------------------------- logistic regression with a tiny ridge
def _random_label_logistic(seed=1, n=100, d=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, np.where(rng.random(n) < 0.5, -1.0, 1.0)  # labels independent of X: not separable


def _newton_minimiser(X, y, l2):
    """Damped Newton with the dense numpy Hessian, from 0 (independent of the class's solver)."""
    n, d = X.shape

    def value(w):
        return np.mean(np.logaddexp(0.0, -y * (X @ w))) + 0.5 * l2 * w @ w

    w = np.zeros(d)
    for _ in range(100):
        margins = y * (X @ w)
        gradient = -X.T @ (y * scipy.special.expit(-margins)) / n + l2 * w
        weights = scipy.special.expit(margins) * scipy.special.expit(-margins)
        hessian = X.T @ (weights[:, None] * X) / n + l2 * np.eye(d)
        step = np.linalg.solve(hessian, gradient)
        t = 1.0
        while value(w - t * step) > value(w) and t > 1e-10:
            t /= 2
        w = w - t * step
        if np.linalg.norm(gradient) < 1e-15:
            break
    return w


@pytest.mark.parametrize("l2", [1e-8, 1e-10, 1e-12])
def test_logistic_with_a_tiny_ridge_on_non_separable_data_is_certified(l2):
    # before: RuntimeError, the certificate ||grad|| / l2 ignored the data's curvature
    X, y = _random_label_logistic()
    problem = LogisticRegression(X, y, l2=l2)
    reference = _newton_minimiser(X, y, l2)
    w = problem.x_star.numpy()
    assert problem.x_star_tol <= 1e-10 * max(1.0, float(np.linalg.norm(w)))
    assert np.linalg.norm(w - reference) <= 1e-9 * max(1.0, float(np.linalg.norm(reference)))


@pytest.mark.parametrize("l2", [1e-2, 1e-8])
def test_the_logistic_distance_bound_is_never_below_the_true_distance(l2):
    X, y = _random_label_logistic()
    problem = LogisticRegression(X, y, l2=l2)
    reference = _newton_minimiser(X, y, l2)
    rng = np.random.default_rng(3)
    for size in (1e-9, 1e-6, 1e-3, 1e-1, 1.0, 10.0):
        w = reference + size * rng.standard_normal(reference.size)
        assert problem._distance_bound(w) >= np.linalg.norm(w - reference) * (1 - 1e-6)


def test_logistic_with_l2_1e_8_on_separable_data_is_certified():
    # before: RuntimeError (the 5 undamped polishing steps stopped short of 1e-10 accuracy)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 5))
    y = np.sign(X @ rng.standard_normal(5))
    problem = LogisticRegression(X, y, l2=1e-8)
    reference = _newton_minimiser(X, y, 1e-8)
    assert np.linalg.norm(problem.x_star.numpy() - reference) <= 1e-9 * np.linalg.norm(reference)


# ------------------------------------------------------------------ Rosenbrock's sublevel L
def test_rosenbrock_sublevel_smoothness_refuses_a_negative_or_nan_margin():
    problem = Rosenbrock(dim=2, x0=[1.5, 1.5])
    # before: margin=-0.45 returned 901, below λ_max on the sublevel set; nan returned nan
    for margin in (-0.45, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=rf"margin.*margin={margin!r}"):
            problem.sublevel_smoothness(margin=margin)
    with pytest.raises(TypeError, match="margin"):
        problem.sublevel_smoothness(margin="0.1")


def test_rosenbrock_sublevel_smoothness_at_margin_zero_bounds_sampled_hessians():
    problem = Rosenbrock(dim=2, x0=[1.5, 1.5])
    level = float(problem.loss(problem.x0))
    rng = np.random.default_rng(0)
    head = 1 + rng.uniform(-1, 1, 20000) * math.sqrt(level)
    x = np.stack([head, head**2 + rng.uniform(-1, 1, 20000) * math.sqrt(level / 100)], axis=1)
    inside = x[100 * (x[:, 1] - x[:, 0] ** 2) ** 2 + (1 - x[:, 0]) ** 2 <= level]
    hessians = np.empty((len(inside), 2, 2))  # the closed form, checked by numpy eigenvalues
    hessians[:, 0, 0] = 2 + 1200 * inside[:, 0] ** 2 - 400 * inside[:, 1]
    hessians[:, 0, 1] = hessians[:, 1, 0] = -400 * inside[:, 0]
    hessians[:, 1, 1] = 200
    assert len(inside) > 1000
    assert problem.sublevel_smoothness(margin=0.0) >= np.linalg.eigvalsh(hessians)[:, -1].max()


# ------------------------------------------------------------------------ Quadratic inputs
@pytest.mark.parametrize(
    ("A", "match"),
    [
        (np.eye(2) * 2j, r"A must .*real.*complex128"),
        (np.array([[1, 1j], [-1j, 1]]), r"A must .*real.*complex128"),
        (torch.eye(2, dtype=torch.complex128), r"A must .*real.*complex128"),
        ([["a", "b"], ["c", "d"]], r"A must .*real.*<U1"),
        (scipy.sparse.eye(3), r"A must be a dense .*scipy.sparse"),
        ([[1.0, None], [None, 1.0]], r"A must .*real.*object"),
    ],
)
def test_quadratic_refuses_a_matrix_that_is_not_real_and_dense(A, match):
    # before: complex A lost its imaginary part (or its eigenvalues), strings and sparse gave
    # numpy's own messages
    with pytest.raises(TypeError, match=match):
        Quadratic(A)


@pytest.mark.parametrize(
    ("values", "match"),
    [("ab", r"eigenvalues must .*real"), ([1.0 + 0j, 2.0], r"eigenvalues must .*complex")],
)
def test_quadratic_from_spectrum_refuses_values_that_are_not_real(values, match):
    with pytest.raises(TypeError, match=match):
        Quadratic.from_spectrum(values)


def test_a_real_tensor_or_integer_matrix_is_still_a_quadratic():
    A = np.array([[2, 1], [1, 2]])
    for given in (A, torch.tensor(A, dtype=torch.float32), A.tolist()):
        problem = Quadratic(given)
        np.testing.assert_allclose([problem.mu, problem.L], np.linalg.eigvalsh(A), rtol=1e-14)


@pytest.mark.parametrize("smallest", [1e-13, 1e-15])
def test_from_spectrum_keeps_the_given_smallest_eigenvalue_as_mu(smallest):
    # before: mu = 0 (kappa = inf) below the 1e-12 L cut-off meant for computed eigenvalues
    problem = Quadratic.from_spectrum([smallest, 0.5, 1.0])
    assert (problem.mu, problem.L) == (smallest, 1.0)
    assert problem.kappa == 1.0 / smallest
    assert problem.pl_constant == smallest
    # A's eigenvalues are the given ones up to rounding of Q diag(λ) Q^T (eps λ_max)
    eigenvalues = np.linalg.eigvalsh(problem.A.numpy())
    np.testing.assert_allclose(eigenvalues, [smallest, 0.5, 1.0], rtol=0, atol=1e-15)
    assert Quadratic.from_condition_number(5, 1e13).mu == pytest.approx(1e-13, rel=1e-15)
    assert Quadratic.from_spectrum([0.0, 1.0]).mu == 0.0


# --------------------------------------------------------------- smoothness on edge cases
def _regression_batch(n=16):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    return x, torch.randn(n, 1, generator=generator, dtype=torch.float64)


class _TwoHeads(torch.nn.Module):
    """A model whose auxiliary head the loss never uses."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Linear(3, 1).double()
        self.aux = torch.nn.Linear(3, 2).double()

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_smoothness_of_a_model_with_an_unused_parameter(method):
    # before: RuntimeError "appears to not have been used in the graph"
    x, y = _regression_batch()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1).numpy()
    # mse on the used head: Hessian 2 [X 1]^T [X 1] / n; the unused head adds zero rows
    expected = np.linalg.eigvalsh(2 * design.T @ design / len(x))[-1]
    estimate = smoothness(
        _TwoHeads(), torch.nn.functional.mse_loss, (x, y), method=method, tol=1e-12, max_hvps=800
    )
    assert estimate.eigenvalue == pytest.approx(expected, rel=1e-8)
    assert estimate.eigenvector.numel() == 4 + 8


@pytest.mark.parametrize(
    "loss_fn",
    [
        torch.nn.functional.l1_loss,
        lambda out, y: torch.relu(1 - torch.sign(y) * out).mean(),
        lambda out, y: out.mean(),
    ],
    ids=["l1", "hinge", "linear"],
)
@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_smoothness_of_a_loss_with_zero_hessian_is_zero_with_no_step_limit(loss_fn, method):
    # before: ArpackError "Starting vector is zero" or "does not require grad"
    x, y = _regression_batch()
    model = torch.nn.Linear(3, 1).double()
    estimate = smoothness(model, loss_fn, (x, y), method=method)
    assert estimate.eigenvalue == 0.0
    assert estimate.edge_step == math.inf
    assert estimate.safe_step == math.inf
    assert estimate.converged


def test_smoothness_refuses_an_empty_batch_and_a_non_finite_loss():
    x, y = _regression_batch()
    model = torch.nn.Linear(3, 1).double()
    with pytest.raises(ValueError, match=r"batch.*no samples.*shape \(0, 3\)"):
        smoothness(model, torch.nn.functional.mse_loss, (x[:0], y[:0]))
    with pytest.raises(ValueError, match=r"batch\[1\].*no samples"):
        smoothness(model, torch.nn.functional.mse_loss, [(x, y), (x[:0], y[:0])])
    with pytest.raises(ValueError, match=r"loss.*not finite.*nan"):
        smoothness(model, lambda out, t: ((out - t) ** 2).mean() * math.nan, (x, y))


# ------------------------------------------------------------- sparse X for the piecewise
@pytest.mark.parametrize(
    ("cls", "reference"), [(LeastAbsoluteDeviations, _lad_lp), (HingeLoss, _hinge_lp)]
)
def test_piecewise_problems_accept_a_sparse_x(cls, reference):
    # before: numpy's "setting an array element with a sequence"
    X = scipy.sparse.random(30, 4, density=0.5, random_state=0, format="csr")
    y = np.random.default_rng(0).standard_normal(30)
    y = np.sign(y) if cls is HingeLoss else y
    sparse, dense = cls(X, y, batch_size=None), cls(X.toarray(), y, batch_size=None)
    assert sparse.f_star == dense.f_star
    assert sparse.G == dense.G
    _assert_minimum(sparse, reference(X.toarray(), y))


# ------------------------------------------------- Wilson et al.: when x* generalises
def test_wilson_minimum_norm_solution_is_right_on_every_test_point_iff_both_labels_occur():
    seen = set()
    for seed in range(40):
        problem = WilsonSeparable(n=3, p=0.8, seed=seed)
        X, y = problem.X_data, problem.y_data
        both = bool((y > 0).any() and (y < 0).any())
        seen.add(both)
        w = np.linalg.pinv(X) @ y  # the minimum-norm interpolant, by numpy
        test_X, test_y = problem.test_set(200, seed=seed)
        assert (test_y > 0).any()
        assert (test_y < 0).any()
        wrong = np.sign(test_X @ w) != test_y
        if both:
            assert not wrong.any()
        else:  # all labels +1 (b = n > 0): every negative test point is scored positive
            assert (y > 0).all()
            np.testing.assert_array_equal(wrong, test_y < 0)
    assert seen == {True, False}  # both cases were drawn


# ------------------------------------------------------------------- synthetic generators
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: HingeLoss.synthetic(flip=2.0), ValueError, r"flip must lie in \[0, 1\].*2.0"),
        (lambda: HingeLoss.synthetic(flip=-1), ValueError, r"flip must lie in \[0, 1\].*-1"),
        (lambda: HingeLoss.synthetic(flip=math.nan), ValueError, r"flip.*nan"),
        (lambda: HingeLoss.synthetic(flip="0.1"), TypeError, r"flip"),
        (lambda: HingeLoss.synthetic(n=0), ValueError, r"n must be a positive integer.*n=0"),
        (lambda: LeastAbsoluteDeviations.synthetic(noise=-1), ValueError, r"noise.*noise=-1"),
        (lambda: LeastAbsoluteDeviations.synthetic(noise=math.inf), ValueError, r"noise"),
        (lambda: LeastAbsoluteDeviations.synthetic(n=-1), ValueError, r"n must be .*n=-1"),
        (lambda: LeastAbsoluteDeviations.synthetic(n=2.5), TypeError, r"n must be .*n=2.5"),
        (lambda: LeastAbsoluteDeviations.synthetic(dim=0), ValueError, r"dim must be .*dim=0"),
    ],
)
def test_synthetic_generators_name_a_bad_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------ closed-form bounds
@pytest.mark.parametrize(
    "call",
    [
        lambda G: constant_closed_form_bound(10, 1.0, G),
        lambda G: wsd_closed_form_bound(10, 5, 1.0, G),
    ],
)
@pytest.mark.parametrize(
    ("G", "error"), [(-1.0, ValueError), (math.nan, ValueError), ("1", TypeError)]
)
def test_closed_form_bounds_name_a_bad_G_as_G(call, G, error):
    # before: "D must be a non-negative ..., got D=-1.0" for a bad G
    with pytest.raises(error, match=rf"^G must .*G={re.escape(repr(G))}"):
        call(G)
    with pytest.raises(error, match=rf"^D must .*D={re.escape(repr(G))}"):  # D is still D
        constant_closed_form_bound(10, G, 1.0)


# ------------------------------------------------------- integers, numpy scalars, names
def test_numpy_integers_are_integers_and_bools_are_not():
    X = np.random.default_rng(0).standard_normal((8, 2))
    y = np.ones(8)
    seven = np.int64(7)
    assert Quadratic.from_condition_number(np.int64(3), 10.0, seed=seven).dim == 3
    assert LeastSquares(X, y, batch_size=np.int64(4), oracle_seed=seven).batch(0).size == 4
    assert Rosenbrock(dim=np.int64(3)).dim == 3
    assert WilsonSeparable(n=np.int64(4)).n == 4
    assert harmonic_number(np.int64(3)) == pytest.approx(1 + 1 / 2 + 1 / 3)
    model = torch.nn.Linear(2, 1).double()
    batch = (torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64))
    estimate = smoothness(
        model, torch.nn.functional.mse_loss, batch, max_hvps=np.int64(50), tol=np.float32(1e-6)
    )
    assert estimate.eigenvalue > 0
    for call, name in [
        (lambda: Rosenbrock(dim=True), "dim"),
        (lambda: Quadratic.from_condition_number(3, 10.0, seed=True), "seed"),
        (lambda: LeastSquares(X, y, batch_size=True), "batch_size"),
        (lambda: harmonic_number(True), "n"),
        (lambda: smoothness(model, torch.nn.functional.mse_loss, batch, tol=True), "tol"),
        (lambda: smoothness(model, torch.nn.functional.mse_loss, batch, seed=1.5), "seed"),
        (lambda: smoothness(model, torch.nn.functional.mse_loss, batch, max_hvps=2.0), "max_hvps"),
        (lambda: harmonic_number(2.7), "n"),
    ]:
        with pytest.raises(TypeError, match=rf"^{name} must be"):
            call()


def test_the_oracle_seed_is_named_oracle_seed():
    X, y = np.eye(3), np.ones(3)
    with pytest.raises(
        ValueError,
        match=r"^oracle_seed must be an integer from 0 to 2\*\*64 - 1 \(.*\), got oracle_seed=-1",
    ):
        LeastSquares(X, y, batch_size=1, oracle_seed=-1)


# ---------------------------------------------------------------- the counterexamples' inputs
def test_reddi_refuses_a_bad_horizon_and_points_outside_the_feasible_set():
    problem = ReddiCounterexample()
    with pytest.raises(TypeError, match=r"steps must be .*steps=2.5"):
        problem.coefficients(2.5)
    with pytest.raises(ValueError, match=r"steps must be .*steps=-3"):
        problem.coefficients(-3)
    with pytest.raises(ValueError, match=r"iterates must be finite"):
        problem.regret([math.nan, 0.5])
    # the regret is defined against the feasible set F = [-1, 1] (project clips to it)
    with pytest.raises(ValueError, match=r"iterates must lie in the feasible set \[-1, 1\].*5.0"):
        problem.regret([5.0, 0.5])
    played = problem.regret([1.0, -1.0, 0.25])  # on the boundary and inside: accepted
    c = np.array([1010.0, -10.0, -10.0])
    np.testing.assert_allclose(
        played.regret, np.cumsum(c * [1.0, -1.0, 0.25]) + np.abs(np.cumsum(c))
    )


def test_wilson_test_error_refuses_a_bad_count_or_a_wrong_size_w():
    problem = WilsonSeparable(n=5)
    w = torch.zeros(3 + 5 * 5, dtype=torch.float64)
    for count, error in [(0, ValueError), (-1, ValueError), (2.5, TypeError)]:
        with pytest.raises(error, match=rf"count must be a positive integer, got count={count!r}"):
            problem.test_error(w, count=count)
    with pytest.raises(ValueError, match=r"w must have shape \(28,\), got shape \(5,\)"):
        problem.test_error(torch.zeros(5))


def test_from_condition_number_checks_spacing_even_in_one_dimension():
    with pytest.raises(ValueError, match=r"spacing must be 'linear' or 'log', got spacing='bogus'"):
        Quadratic.from_condition_number(1, 1.0, spacing="bogus")
