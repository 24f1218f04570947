"""Audit 88 of ``theory.smoothness``: the accelerators' random state, the step limits from the
largest algebraic eigenvalue, the ``max_hvps`` cap and non-convergence for Lanczos, ``tol``,
low-precision models, the seed's range and a loss that uses no trainable parameter.

Expected values come from the exact Hessian (``torch.autograd.functional.hessian`` over
``torch.func.functional_call`` in float64, buffers cloned per call, then ``numpy.linalg.eigh``)
or from matrices built here with a known spectrum; none is read from the code under test.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import theory
from tests.theory.test_smoothness import _Point, _rotated
from theory.smoothness import smoothness


def _exact_hessian(model, loss_fn, batches):
    """The float64 Hessian of the sample-weighted mean loss over the parameters that require
    grad (``model.parameters()`` order), each parameter read in its own dtype from the float64
    vector, buffers cloned for every batch (BatchNorm in train mode uses batch statistics)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    flat = torch.cat([p.detach().reshape(-1).double() for _, p in named])
    sizes = [len(x) for x, _ in batches]

    def loss_of(vector):
        params, offset = {}, 0
        for name, p in named:
            params[name] = vector[offset : offset + p.numel()].view(p.shape).to(p.dtype)
            offset += p.numel()
        total = 0.0
        for (x, y), size in zip(batches, sizes):
            state = {**params, **frozen, **{n: b.clone() for n, b in buffers.items()}}
            total = total + size / sum(sizes) * loss_fn(functional_call(model, state, (x,)), y)
        return total.double()

    hessian = torch.autograd.functional.hessian(loss_of, flat, vectorize=True).cpu().numpy()
    return (hessian + hessian.T) / 2


def _mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)  # the tests run with the global RNG forked (see _forked)
    net = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3))
    return net.to(dtype)  # 147 parameters: ncv = 20


def _batch(n=20, seed=1, features=8, classes=3):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=generator)


@pytest.fixture(autouse=True)
def _forked():
    with torch.random.fork_rng(devices=[]):
        yield


def _on_matrix(matrix, **options):
    A = torch.as_tensor(matrix)
    x, y = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    return smoothness(_Point(len(A)), lambda w, _: 0.5 * w @ A @ w, (x, y), **options)


# --- F1: only the generators the fork saves are seeded ------------------------------------------


def _dropout_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 10), torch.nn.Tanh(), torch.nn.Dropout(0.5), torch.nn.Linear(10, 2)
    ).double()


def test_a_cpu_model_seeds_no_accelerator_generator(monkeypatch):
    """Before: ``torch.manual_seed(seed)`` inside ``fork_rng(devices=[])`` also reseeded CUDA
    (``manual_seed_all``), MPS and XPU, which the fork does not restore."""
    net, (x, y) = _dropout_net().train(), _batch(16, features=5, classes=2)
    calls = []
    for module_name, names in [
        ("cuda", ["manual_seed", "manual_seed_all"]),
        ("mps", ["manual_seed"]),
        ("xpu", ["manual_seed", "manual_seed_all"]),
    ]:
        module = getattr(torch, module_name, None)
        for name in names:
            if module is not None and hasattr(module, name):
                label = f"torch.{module_name}.{name}"
                monkeypatch.setattr(module, name, lambda *a, _l=label, **k: calls.append(_l))
    cpu_state = torch.get_rng_state()
    first = smoothness(net, F.cross_entropy, (x, y), seed=7, tol=1e-10)
    assert calls == []
    assert torch.equal(torch.get_rng_state(), cpu_state)
    # the dropout mask is still drawn from the CPU generator seeded with ``seed``: the exact
    # Hessian of the sub-network whose mask follows torch.manual_seed(7) on the CPU
    torch.random.default_generator.manual_seed(7)
    exact = np.linalg.eigvalsh(_exact_hessian(net, F.cross_entropy, [(x, y)]))
    assert first.eigenvalue == pytest.approx(exact[-1], rel=1e-8)


def _queued_cuda_seed():
    """The seed ``torch.manual_seed`` queued for CUDA's lazy initialisation (CPU-only torch or
    CUDA not yet initialised), or None when torch keeps no such queue."""
    tracker = getattr(torch.cuda, "_lazy_seed_tracker", None)
    callback = getattr(tracker, "manual_seed_all_cb", None)
    if not callback:
        return None
    function = callback[0]
    cells = dict(zip(function.__code__.co_freevars, function.__closure__ or ()))
    return cells["seed"].cell_contents if "seed" in cells else None


def test_the_callers_cuda_seed_survives_a_cpu_model():
    """On a machine whose CUDA is initialised the generators' states must be unchanged; on one
    without, the seed queued for CUDA's initialisation (before: smoothness's seed, 7)."""
    net, (x, y) = _dropout_net().train(), _batch(16, features=5, classes=2)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states = torch.cuda.get_rng_state_all()
        smoothness(net, F.cross_entropy, (x, y), seed=7)
        assert all(torch.equal(a, b) for a, b in zip(states, torch.cuda.get_rng_state_all()))
        return
    torch.manual_seed(123)
    if _queued_cuda_seed() != 123:
        pytest.skip("this torch queues no CUDA seed to read back")
    smoothness(net, F.cross_entropy, (x, y), seed=7)
    assert _queued_cuda_seed() == 123


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_model_restores_every_generator_and_seeds_its_own_device():
    device = torch.device("cuda", torch.cuda.device_count() - 1)  # not the current one on 2+
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        net = _dropout_net().to(device).train()
        x, y = (t.to(device) for t in _batch(16, features=5, classes=2))
        torch.manual_seed(123)
        cpu, cuda = torch.get_rng_state(), torch.cuda.get_rng_state_all()
        first = smoothness(net, F.cross_entropy, (x, y), seed=7, tol=1e-10)
        assert torch.equal(torch.get_rng_state(), cpu)
        assert all(torch.equal(a, b) for a, b in zip(cuda, torch.cuda.get_rng_state_all()))
        # the mask is drawn from the model's device's generator seeded with ``seed``
        with torch.cuda.device(device):
            torch.cuda.manual_seed(7)
        exact = np.linalg.eigvalsh(_exact_hessian(net, F.cross_entropy, [(x, y)]))
    assert first.eigenvalue == pytest.approx(exact[-1], rel=1e-8)


# --- F2: the steps come from the largest algebraic eigenvalue ----------------------------------


@pytest.mark.parametrize(
    "options", [{"method": "power"}, {"method": "lanczos", "which": "LM"}], ids=["power", "LM"]
)
def test_a_negative_largest_magnitude_still_gives_the_curvature_limit(options):
    """Before: eigenvalue -3 gave safe_step = edge_step = inf ("no curvature limit") although
    GD diverges above 2/1 along the eigenvector of +1."""
    matrix = _rotated([-3.0, 1.0, 0.5, -1.0, 0.2], seed=7)
    estimate = _on_matrix(matrix, tol=1e-9, max_hvps=2000, **options)
    assert estimate.converged
    assert estimate.eigenvalue == pytest.approx(-3.0, rel=1e-8)
    assert estimate.safe_step == pytest.approx(1.0, rel=1e-8)
    assert estimate.edge_step == pytest.approx(2.0, rel=1e-8)
    assert estimate.largest_eigenvalue == pytest.approx(1.0, rel=1e-8)
    assert estimate.hvps <= 2000


def _bn_net(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 6),
        torch.nn.BatchNorm1d(6),
        torch.nn.Tanh(),
        torch.nn.Linear(6, 6),
        torch.nn.BatchNorm1d(6),
        torch.nn.Tanh(),
        torch.nn.Linear(6, 3),
    ).double()


def _bn_batch():
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    return x, torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("seed", [1, 2, 9])
@pytest.mark.parametrize("options", [{"method": "power"}, {"which": "LM"}], ids=["power", "LM"])
def test_batchnorm_networks_whose_most_negative_eigenvalue_dominates(seed, options):
    net, (x, y) = _bn_net(seed), _bn_batch()
    exact = np.linalg.eigvalsh(_exact_hessian(net, F.cross_entropy, [(x, y)]))
    assert -exact[0] > exact[-1] > 0  # the largest magnitude is lambda_min
    estimate = smoothness(net, F.cross_entropy, (x, y), tol=1e-9, max_hvps=3000, **options)
    assert estimate.converged
    assert estimate.eigenvalue == pytest.approx(exact[0], rel=1e-7)
    assert estimate.edge_step == pytest.approx(2 / exact[-1], rel=1e-7)
    assert estimate.largest_eigenvalue == pytest.approx(exact[-1], rel=1e-7)
    assert estimate.hvps <= 3000


@pytest.mark.parametrize("options", [{"method": "power"}, {"which": "LM"}, {"which": "LA"}])
def test_a_positive_top_eigenvalue_is_its_own_curvature_limit(options):
    matrix = _rotated([2.0, -1.5, 0.5, 1.0], seed=7)
    estimate = _on_matrix(matrix, tol=1e-10, max_hvps=2000, **options)
    assert estimate.largest_eigenvalue == estimate.eigenvalue == pytest.approx(2.0, rel=1e-9)
    assert estimate.safe_step == 1.0 / estimate.eigenvalue


@pytest.mark.parametrize("options", [{"method": "power"}, {"which": "LM"}], ids=["power", "LM"])
def test_no_product_left_for_the_second_solve_gives_nan_steps(options):
    # the Rayleigh quotient of any vector is <= 0.5 here: after one product the estimate is
    # negative, and nothing of the budget is left to look for lambda_max
    matrix = _rotated([-3.0, -2.0, -1.0, 0.5], seed=7)
    estimate = _on_matrix(matrix, tol=1e-9, max_hvps=1, **options)
    assert estimate.hvps == 1
    assert estimate.eigenvalue < 0
    assert not estimate.converged
    assert math.isnan(estimate.safe_step)
    assert math.isnan(estimate.edge_step)
    assert math.isnan(estimate.largest_eigenvalue)


def test_a_negative_definite_hessian_has_no_curvature_limit():
    matrix = _rotated([-3.0, -2.0, -1.0, -0.5], seed=7)
    for options in [{"method": "power"}, {"which": "LM"}, {"which": "LA"}]:
        estimate = _on_matrix(matrix, tol=1e-9, max_hvps=4000, **options)
        assert estimate.converged
        assert estimate.largest_eigenvalue == pytest.approx(-0.5, rel=1e-7)
        assert estimate.safe_step == estimate.edge_step == math.inf


# --- F3 / F4: max_hvps is an exact cap; Lanczos returns its best estimate ----------------------


@pytest.mark.parametrize("max_hvps", [1, 5, 10, 19, 25, 39, 59])
@pytest.mark.parametrize("which", ["LA", "LM"])
def test_lanczos_keeps_max_hvps_and_flags_non_convergence(max_hvps, which):
    """Before: 31 products for max_hvps = 1, 5, 10, 19, 25 (documented: at most max_hvps + 20),
    and a RuntimeError instead of a flagged estimate."""
    net, (x, y) = _mlp(), _batch()
    hessian = _exact_hessian(net, F.cross_entropy, [(x, y)])
    exact = np.linalg.eigvalsh(hessian)
    assert exact[-1] > -exact[0] > 0  # LA and LM agree: lambda_max
    estimate = smoothness(net, F.cross_entropy, (x, y), tol=1e-13, max_hvps=max_hvps, which=which)
    assert estimate.hvps <= max_hvps
    v = estimate.eigenvector.numpy()
    assert np.linalg.norm(v) == pytest.approx(1.0)
    # a Ritz pair: its value is the Rayleigh quotient of its vector, at most lambda_max
    assert float(v @ hessian @ v) == pytest.approx(estimate.eigenvalue, rel=1e-9)
    assert estimate.eigenvalue <= exact[-1] * (1 + 1e-12)
    if estimate.converged:  # ||H v - λ v|| <= tol |λ|, checked against the exact Hessian
        residual = np.linalg.norm(hessian @ v - estimate.eigenvalue * v)
        assert residual <= 1e-13 * abs(estimate.eigenvalue) * 10  # exact H's own rounding
    else:
        assert estimate.hvps == max_hvps
    # Lanczos' Ritz values approach lambda_max fast on this spectrum (10 steps: 2e-3 off)
    if max_hvps >= 10:
        assert estimate.eigenvalue == pytest.approx(exact[-1], rel=1e-2)
    if max_hvps >= 19:
        assert estimate.eigenvalue == pytest.approx(exact[-1], rel=1e-6)


def test_lanczos_stopped_by_max_hvps_is_converged_when_its_pair_meets_tol():
    """ARPACK checks convergence only after its first ncv = 20 products; stopped at 19 the
    recorded pair already meets tol = 1e-5 (its residual, checked against the exact Hessian).
    Before: 31 products for max_hvps = 19."""
    net, (x, y) = _mlp(), _batch()
    hessian = _exact_hessian(net, F.cross_entropy, [(x, y)])
    estimate = smoothness(net, F.cross_entropy, (x, y), tol=1e-5, max_hvps=19)
    assert estimate.hvps == 19
    assert estimate.converged
    v = estimate.eigenvector.numpy()
    assert np.linalg.norm(hessian @ v - estimate.eigenvalue * v) <= 1e-5 * estimate.eigenvalue
    assert estimate.eigenvalue == pytest.approx(np.linalg.eigvalsh(hessian)[-1], rel=1e-5)


def test_lanczos_and_power_both_return_a_flagged_estimate_without_convergence():
    """Before: Lanczos raised RuntimeError where power returned converged=False."""
    net, (x, y) = _mlp(), _batch()
    exact = np.linalg.eigvalsh(_exact_hessian(net, F.cross_entropy, [(x, y)]))
    for method in ("lanczos", "power"):
        estimate = smoothness(net, F.cross_entropy, (x, y), method=method, max_hvps=10, tol=1e-13)
        assert not estimate.converged
        assert estimate.hvps == 10
        assert 0.9 * exact[-1] <= estimate.eigenvalue <= exact[-1] * (1 + 1e-12)


@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("tol", [0.0, -0.0])
def test_tol_must_be_positive_for_both_methods(method, tol):
    """Before: tol=0 was machine precision for Lanczos (converged=True) and an unreachable zero
    residual for power (converged=False)."""
    net, batch = _mlp(), _batch()
    with pytest.raises(ValueError, match=r"tol must be a positive.*tol="):
        smoothness(net, F.cross_entropy, batch, method=method, tol=tol)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_a_tol_below_float64_rounding_is_never_converged(method):
    net, batch = _mlp(), _batch()
    estimate = smoothness(net, F.cross_entropy, batch, method=method, tol=1e-300, max_hvps=200)
    assert not estimate.converged


# --- F6: low-precision models --------------------------------------------------------------------


def _true_residual(model, estimate, batch):
    hessian = _exact_hessian(copy.deepcopy(model).double(), F.cross_entropy, [batch])
    v = estimate.eigenvector.numpy()
    return float(np.linalg.norm(hessian @ v - estimate.eigenvalue * v) / abs(estimate.eigenvalue))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("tol", [1e-6, 1e-4, 1e-2, 0.1])
def test_converged_is_never_claimed_far_above_tol(dtype, method, tol):
    """Before: a bfloat16 model was converged at tol=1e-6 with a true residual of 2e-3 |λ|
    (against the float64 Hessian of the same parameters)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    net = net.to(dtype)
    x, y = _batch(16, features=5, classes=2)
    estimate = smoothness(net, F.cross_entropy, (x.to(dtype), y), method=method, tol=tol)
    if estimate.converged:
        assert _true_residual(net, estimate, (x, y)) <= 1.5 * tol
    if dtype != torch.float32 and tol <= 1e-4:  # below the rounding of the products
        assert not estimate.converged
    if dtype == torch.float32:  # float32 products are precise enough for these tolerances
        assert estimate.converged


# --- F7: the seed's range, a loss that uses no trainable parameter ---------------------------


def test_a_seed_beyond_torchs_range_is_refused_naming_seed():
    net, batch = _mlp(), _batch()
    with pytest.raises(ValueError, match=r"^seed must be .*2\*\*64 - 1.*seed=18446744073709551616"):
        smoothness(net, F.cross_entropy, batch, seed=2**64)
    top = smoothness(net, F.cross_entropy, batch, seed=2**64 - 1, tol=1e-10)
    exact = np.linalg.eigvalsh(_exact_hessian(net, F.cross_entropy, [batch]))
    assert top.eigenvalue == pytest.approx(exact[-1], rel=1e-8)


class _FrozenTrunk(torch.nn.Module):
    """A frozen trunk and a trainable head that this model's output does not use."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = torch.nn.Linear(8, 3).double().requires_grad_(False)
        self.head = torch.nn.Linear(3, 3).double()

    def forward(self, x):
        return self.trunk(x)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_a_loss_that_uses_no_trainable_parameter_has_zero_curvature(method):
    """Before: RuntimeError "element 0 of tensors does not require grad"."""
    estimate = smoothness(_FrozenTrunk(), F.cross_entropy, _batch(), method=method)
    assert estimate.eigenvalue == 0.0
    assert estimate.largest_eigenvalue == 0.0
    assert estimate.safe_step == estimate.edge_step == math.inf
    assert estimate.converged
    assert estimate.eigenvector.numel() == 12


def test_a_batch_whose_loss_uses_no_trainable_parameter_weighs_zero():
    # the loss of the second batch is a constant: the mean Hessian is n_1 / (n_1 + n_2) H_1
    net = _mlp()
    first, second = _batch(20, seed=1), _batch(12, seed=2)

    def loss_fn(out, y):
        return F.cross_entropy(out, y) if len(y) == 20 else F.cross_entropy(out.detach(), y)

    exact = np.linalg.eigvalsh(_exact_hessian(net, F.cross_entropy, [first]))[-1] * 20 / 32
    estimate = smoothness(net, loss_fn, [first, second], tol=1e-10)
    assert estimate.eigenvalue == pytest.approx(exact, rel=1e-8)


@pytest.mark.parametrize(
    "build",
    [
        lambda seed: theory.Quadratic.from_condition_number(4, 10.0, seed=seed),
        lambda seed: theory.Quadratic.from_spectrum([1.0, 2.0], seed=seed),
    ],
    ids=["from_condition_number", "from_spectrum"],
)
def test_a_problem_seed_beyond_64_bits_is_refused_naming_seed(build):
    """torch's generators take an unsigned 64-bit seed; beyond it torch's own error ("Overflow
    when unpacking long long") named nothing. The largest seed still builds, also where a second
    stream is drawn from seed + 1_000_003 (wrapped to 64 bits)."""
    with pytest.raises(ValueError, match=r"seed must be an integer from 0 to 2\*\*64 - 1"):
        build(2**64)
    assert build(2**64 - 1).dim in (2, 4)
