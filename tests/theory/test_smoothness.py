"""smoothness(): the top Hessian eigenvalue by HVPs against the exact Hessian."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from theory.problems import LeastSquares
from theory.smoothness import hessian_vector_product, smoothness


def _mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).to(
        dtype
    )


def _classification_batch(n=40, seed=1, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 4, generator=generator, dtype=dtype),
        torch.randint(0, 3, (n,), generator=generator),
    )


def _exact_hessian(model, loss_fn, x, y):
    """The full Hessian over the flattened parameters, by torch.autograd.functional.hessian."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(vector):
        params, offset = {}, 0
        for name, shape in zip(names, shapes):
            size = math.prod(shape)
            params[name] = vector[offset : offset + size].view(shape)
            offset += size
        return loss_fn(functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(loss_of, flat, vectorize=True).numpy()


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalue_matches_the_exact_hessian(method):
    model, (x, y) = _mlp(), _classification_batch()
    loss_fn = torch.nn.functional.cross_entropy
    eigenvalues = np.linalg.eigvalsh(_exact_hessian(model, loss_fn, x, y))
    assert eigenvalues[0] < 0 < eigenvalues[-1]  # indefinite: LA and LM may differ
    estimate = smoothness(model, loss_fn, (x, y), method=method, tol=1e-10, max_hvps=2000)
    top = eigenvalues[-1] if method == "lanczos" else eigenvalues[np.argmax(abs(eigenvalues))]
    assert estimate.eigenvalue == pytest.approx(top, rel=1e-6)
    assert estimate.converged
    assert estimate.safe_step == pytest.approx(1 / estimate.eigenvalue)
    assert estimate.edge_step == pytest.approx(2 / estimate.eigenvalue)
    assert 0 < estimate.hvps <= 2000
    assert estimate.method == method
    # the eigenvector is one: H v = λ v
    hessian = _exact_hessian(model, loss_fn, x, y)
    v = estimate.eigenvector.numpy()
    np.testing.assert_allclose(hessian @ v, estimate.eigenvalue * v, atol=1e-4)


def test_hessian_vector_product_is_exact_and_leaves_the_model_alone():
    model, (x, y) = _mlp(), _classification_batch()
    loss_fn = torch.nn.functional.cross_entropy
    before = [p.detach().clone() for p in model.parameters()]
    product, numel = hessian_vector_product(model, loss_fn, (x, y))
    hessian = _exact_hessian(model, loss_fn, x, y)
    vector = torch.randn(numel, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    np.testing.assert_allclose(product(vector).numpy(), hessian @ vector.numpy(), atol=1e-12)
    smoothness(model, loss_fn, (x, y))
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)
        assert p.grad is None


def test_several_batches_give_the_hessian_of_their_union():
    model, (x, y) = _mlp(), _classification_batch(n=30)
    loss_fn = torch.nn.functional.cross_entropy
    whole = smoothness(model, loss_fn, (x, y), tol=1e-12)
    batches = [(x[:7], y[:7]), (x[7:20], y[7:20]), (x[20:], y[20:])]  # unequal sizes
    split = smoothness(model, loss_fn, iter(batches), tol=1e-12)
    assert split.eigenvalue == pytest.approx(whole.eigenvalue, rel=1e-9)


def test_a_linear_model_with_mse_has_the_least_squares_constant():
    # mean((Xw + b - y)²) has Hessian 2 [X 1]^T [X 1] / n: twice LeastSquares' L on [X 1]
    generator = torch.Generator().manual_seed(4)
    X = torch.randn(50, 5, generator=generator, dtype=torch.float64)
    y = torch.randn(50, 1, generator=generator, dtype=torch.float64)
    model = torch.nn.Linear(5, 1).double()
    reference = LeastSquares(torch.cat([X, torch.ones(50, 1, dtype=torch.float64)], 1), y[:, 0])
    for method in ("lanczos", "power"):
        estimate = smoothness(
            model, torch.nn.functional.mse_loss, (X, y), method=method, tol=1e-12, max_hvps=3000
        )
        assert estimate.eigenvalue == pytest.approx(2 * reference.L, rel=1e-7)


def test_float32_models_and_tiny_models():
    model32 = _mlp(dtype=torch.float32)
    x, y = _classification_batch(dtype=torch.float32)
    model64 = _mlp()
    x64 = x.double()
    loss_fn = torch.nn.functional.cross_entropy
    low = smoothness(model32, loss_fn, (x, y), tol=1e-8).eigenvalue
    high = smoothness(model64, loss_fn, (x64, y), tol=1e-8).eigenvalue
    assert low == pytest.approx(high, rel=1e-4)
    scalar = torch.nn.Linear(1, 1, bias=False).double()  # one parameter: solved densely
    xs = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    estimate = smoothness(scalar, torch.nn.functional.mse_loss, (xs, torch.zeros(2, 1).double()))
    assert estimate.eigenvalue == pytest.approx(2 * (1 + 9) / 2)


def test_bad_arguments():
    model, batch = _mlp(), _classification_batch()
    loss_fn = torch.nn.functional.cross_entropy
    with pytest.raises(ValueError, match="method must be"):
        smoothness(model, loss_fn, batch, method="arnoldi")
    with pytest.raises(ValueError, match="max_hvps"):
        smoothness(model, loss_fn, batch, max_hvps=0)
    with pytest.raises(ValueError, match="non-empty iterable"):
        smoothness(model, loss_fn, [])
    with pytest.raises(TypeError, match="batch"):
        smoothness(model, loss_fn, 3)
    frozen = _mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters that require grad"):
        smoothness(frozen, loss_fn, batch)


# ------------------------------------------------------- power iteration on a ±λ spectrum
class _Point(torch.nn.Module):
    """A model whose output is its parameter vector, so loss(w) = w^T A w / 2 has Hessian A."""

    def __init__(self, dim):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(dim, dtype=torch.float64))

    def forward(self, x):
        return self.w


def _rotated(eigenvalues, seed):
    """A = Q diag(eigenvalues) Q^T with a seeded orthogonal Q (numpy's QR)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return q @ np.diag(eigenvalues) @ q.T


def _power_on(matrix, **options):
    A = torch.as_tensor(matrix)
    x, y = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    return smoothness(
        _Point(len(A)), lambda w, _: 0.5 * w @ A @ w, (x, y), method="power", **options
    )


@pytest.mark.parametrize("seed", range(3))
def test_power_finds_plus_lambda_when_plus_and_minus_lambda_share_the_top_magnitude(seed):
    # before: the Rayleigh quotient settled at (a² - b²)/(a² + b²) λ (0.93 here), reported as
    # converged; the largest magnitude is shared by +1 and -1, and the positive one limits GD
    matrix = _rotated([1.0, -1.0, 0.5, 0.1, -0.3], seed)
    exact = np.linalg.eigvalsh(matrix)
    assert exact[0] == pytest.approx(-exact[-1], rel=1e-12)
    estimate = _power_on(matrix, tol=1e-8, max_hvps=2000)
    assert estimate.converged
    assert estimate.eigenvalue == pytest.approx(exact[-1], rel=1e-7)
    assert estimate.safe_step == pytest.approx(1 / exact[-1], rel=1e-7)
    v = estimate.eigenvector.numpy()
    assert np.linalg.norm(v) == pytest.approx(1.0)
    assert np.linalg.norm(matrix @ v - estimate.eigenvalue * v) <= 1e-7


def test_power_on_a_saddle_of_a_two_layer_linear_net():
    # at zero initialisation the Hessian of the MSE has only the cross terms W2 x W1: its
    # spectrum is symmetric (+λ, -λ); before, power returned 0.228 against λ = 0.4927
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 3, bias=False), torch.nn.Linear(3, 1, bias=False)
    ).double()
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(16, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(16, 1, generator=generator, dtype=torch.float64)
    loss_fn = torch.nn.functional.mse_loss
    exact = np.linalg.eigvalsh(_exact_hessian(net, loss_fn, x, y))
    assert exact[0] == pytest.approx(-exact[-1], rel=1e-10)  # the ±λ case
    estimate = smoothness(net, loss_fn, (x, y), method="power", tol=1e-9, max_hvps=1000)
    assert estimate.converged
    assert estimate.eigenvalue == pytest.approx(exact[-1], rel=1e-8)


@pytest.mark.parametrize(
    "eigenvalues",
    [
        [1.0, -1.0, 0.5, 0.1],
        [1.0, 0.9999, 0.1, 0.1, 0.1],  # a close top pair
        [-3.0, 1.0, 0.5],  # the largest magnitude is negative
        [2.0, -1.999, 1.0, -0.5],
    ],
)
@pytest.mark.parametrize("max_hvps", [3, 10, 40, 400])
def test_power_reports_converged_only_for_an_eigenpair_within_tol(eigenvalues, max_hvps):
    # converged=True promises ||A v - λ v|| <= tol |λ| (so λ is within tol |λ| of an eigenvalue
    # of A, Weyl); before, two agreeing Rayleigh quotients sufficed
    tol = 1e-6
    matrix = _rotated(eigenvalues, 7)
    exact = np.linalg.eigvalsh(matrix)
    estimate = _power_on(matrix, tol=tol, max_hvps=max_hvps)
    assert estimate.hvps <= max_hvps
    if estimate.converged:
        v = estimate.eigenvector.numpy()
        residual = np.linalg.norm(matrix @ v - estimate.eigenvalue * v)
        assert residual <= tol * abs(estimate.eigenvalue) * (1 + 1e-9)
        assert np.min(np.abs(exact - estimate.eigenvalue)) <= tol * abs(estimate.eigenvalue)
    if max_hvps == 400:
        assert estimate.converged
        expected = max(eigenvalues, key=lambda e: (abs(e), e))  # +λ on a tie
        assert estimate.eigenvalue == pytest.approx(expected, rel=1e-5)
