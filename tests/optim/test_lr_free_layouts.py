"""The learning-rate-free classes on gradients laid out otherwise than their parameters, beside
their reference packages: a gradient that is a strided view (every other element of a larger
buffer), which the packages modify and reduce where it lies.

A reduction or an elementwise op over a strided tensor runs another loop than over a contiguous
one: MKL's strided ``dot`` adds in another order, and torch's elementwise kernels take their
scalar loop, whose complex division and bf16 arithmetic round otherwise than the vectorised
one. So a temporary the packages compute in the gradient's own memory (their in-place coupled
decay, Schedule-Free AdamW's normalised gradient) is kept in the gradient's strides here.
"""

from __future__ import annotations

import pytest
import torch

import optim
from tests.optim.conftest import relative_error

prodigyopt = pytest.importorskip("prodigyopt")
dadaptation = pytest.importorskip("dadaptation")
schedulefree = pytest.importorskip("schedulefree")

SHAPES = [(1000,), (20, 50), (7,)]
"""A vector, a matrix (its strided gradient flattens to a strided view too) and a short vector."""


def strided(values: torch.Tensor) -> torch.Tensor:
    """``values`` as every other element of a buffer twice its size: a gradient whose
    ``flatten()`` is a view with stride 2, as ``p.grad = buffer[::2]`` gives."""
    buffer = torch.zeros(2 * values.numel(), dtype=values.dtype)
    buffer[::2] = values.reshape(-1)
    gradient = buffer[::2].view(values.shape)
    assert values.numel() < 2 or not gradient.is_contiguous()
    return gradient


def bits(t: torch.Tensor) -> torch.Tensor:
    """``t``'s bytes (a complex tensor's as its real pairs): equal exactly when the bits are."""
    t = torch.view_as_real(t) if t.is_complex() else t
    return t.detach().contiguous().view(torch.uint8)


def _estimator_run(make, dtype: torch.dtype, steps: int = 8):
    """``steps`` steps of ``make(params)`` on :data:`SHAPES` in ``dtype``, every gradient
    strided (a noisy quadratic's, computed in float64): (the parameters, ``d`` at each step)."""
    generator = torch.Generator().manual_seed(0)
    starts = [torch.randn(s, dtype=torch.float64, generator=generator) for s in SHAPES]
    targets = [torch.randn(s, dtype=torch.float64, generator=generator) for s in SHAPES]
    params = [x.to(dtype, copy=True).requires_grad_() for x in starts]
    optimizer = make(params)
    noise = torch.Generator().manual_seed(1)
    estimates = []
    for _ in range(steps):
        for p, target in zip(params, targets):
            draw = torch.randn(p.shape, dtype=torch.float64, generator=noise)
            p.grad = strided((3 * (p.detach().double() - target) + draw).to(dtype))
        optimizer.step()
        estimates.append(float(optimizer.param_groups[0]["d"]))
    return params, estimates, [x.to(dtype, copy=True) for x in starts]


# (name, reference, kwargs): the coupled (L2) decay, which the packages add into p.grad in place
# and then dot where it lies; and no decay, the gradient itself dotted where it lies
ESTIMATOR_CASES = [
    ("Prodigy", prodigyopt.Prodigy, {"weight_decay": 0.1, "decouple": False}),
    ("Prodigy", prodigyopt.Prodigy,
     {"weight_decay": 0.1, "decouple": False, "betas": (0.0, 0.99), "d0": 1e-4}),
    ("Prodigy", prodigyopt.Prodigy, {"weight_decay": 0.1}),
    ("Prodigy", prodigyopt.Prodigy, {}),
    ("DAdaptSGD", dadaptation.DAdaptSGD, {"weight_decay": 0.1}),
    ("DAdaptSGD", dadaptation.DAdaptSGD, {}),
    ("DAdaptAdam", dadaptation.DAdaptAdam, {"weight_decay": 0.1}),
    ("DAdaptAdam", dadaptation.DAdaptAdam, {}),
]  # fmt: skip


def _estimator_case_id(case) -> str:
    name, _, kwargs = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def _estimator_params():
    # (not impl="flat": it copies a strided gradient into its contiguous buffer and dots the
    # copy, whose sum adds in another order; the README says so)
    for case in ESTIMATOR_CASES:
        for impl in ("single", "foreach"):
            yield pytest.param(case, impl, id=f"{_estimator_case_id(case)}-{impl}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(("case", "impl"), list(_estimator_params()))
def test_a_strided_gradient_gives_the_packages_bits(case, impl, dtype):
    """Gradients that are strided views, with the coupled decay (``decouple=False``, D-Adaptation's
    ``weight_decay``) or without: ``d`` at every step and the parameters bit for bit. The
    package adds the decay into ``p.grad`` in place, still strided, and ``torch.dot``s
    ``grad.flatten()``, a strided view, whose MKL sum adds in another order than a contiguous
    vector's; ours added it into a contiguous temporary (Prodigy's float32 ``d`` 1e-7 apart
    from the second step, its parameters 7.6e-8 after 8 steps; float64 7e-17; D-Adaptation's
    the same)."""
    name, reference, kwargs = case
    expected, expected_estimates, start = _estimator_run(lambda ps: reference(ps, **kwargs), dtype)
    ours, estimates, _ = _estimator_run(
        lambda ps: getattr(optim, name)(ps, impl=impl, **kwargs), dtype
    )
    assert relative_error(expected, start) > 1e-6, "nothing moved"
    assert estimates == expected_estimates
    for a, b in zip(ours, expected):
        assert torch.equal(bits(a), bits(b))


@pytest.mark.parametrize("impl", ["single", "foreach"])
@pytest.mark.parametrize("name", ["DoG", "LDoG"])
def test_dog_decay_on_a_strided_bfloat16_gradient_gives_the_packages_bits(name, impl):
    """The dog package adds its weight decay into ``p.grad`` in place, in the gradient's
    strides, whose scalar loop rounds bfloat16 otherwise than a contiguous one's: ours, which
    added it into a contiguous temporary, was apart in the last bits."""
    dog = pytest.importorskip("dog")
    results = []
    for make in (getattr(dog, name), lambda ps, **kw: getattr(optim, name)(ps, impl=impl, **kw)):
        generator = torch.Generator().manual_seed(0)
        params = [  # (their loops differ on tensors this large)
            torch.randn(s, generator=generator).to(torch.bfloat16).requires_grad_()
            for s in [(5000,), (300, 40)]
        ]
        optimizer = make(params, weight_decay=0.1)
        for _ in range(8):
            for p in params:
                p.grad = strided(torch.randn(p.shape, generator=generator).to(torch.bfloat16))
            optimizer.step()
        results.append(params)
    for a, b in zip(*results):
        assert torch.equal(bits(a), bits(b))


@pytest.mark.parametrize("impl", ["single", "foreach"])
def test_prodigy_coupled_decay_leaves_the_gradient_and_keeps_its_strides_out_of_place(impl):
    """Ours does not modify ``p.grad`` (the package adds the decay into it): a strided gradient
    keeps its values and strides after a step with the coupled decay."""
    p = torch.randn(100, dtype=torch.float64, requires_grad=True)
    optimizer = optim.Prodigy([p], weight_decay=0.1, decouple=False, impl=impl)
    values = torch.randn(100, dtype=torch.float64)
    p.grad = strided(values)
    optimizer.step()
    assert p.grad.stride() == (2,)
    assert torch.equal(p.grad, values)


SCHEDULE_FREE_SHAPES = [(64,), (8, 9), (5,)]

# (name, kwargs): Schedule-Free AdamW divides p.grad in place (and adds its decay into it);
# Schedule-Free SGD adds its decay into p.grad in place
SCHEDULE_FREE_CASES = [
    ("AdamWScheduleFree", {"lr": 0.1}),
    ("AdamWScheduleFree", {"lr": 0.1, "weight_decay": 0.05}),
    ("SGDScheduleFree", {"lr": 0.1, "weight_decay": 0.05}),
    ("SGDScheduleFree", {"lr": 0.1}),
]


def _schedule_free_run(make, dtype: torch.dtype, steps: int = 4) -> list[torch.Tensor]:
    """``steps`` train-mode steps of ``make(params)`` on :data:`SCHEDULE_FREE_SHAPES` in
    ``dtype``, every gradient strided; the parameters after."""
    generator = torch.Generator().manual_seed(0)
    params = [
        torch.randn(s, dtype=dtype, generator=generator).requires_grad_()
        for s in SCHEDULE_FREE_SHAPES
    ]
    optimizer = make(params)
    optimizer.train()
    for _ in range(steps):
        for p in params:
            p.grad = strided(torch.randn(p.shape, dtype=dtype, generator=generator))
        optimizer.step()
    return params


@pytest.mark.parametrize("impl", ["single", "foreach", "flat"])
@pytest.mark.parametrize(
    "dtype",
    [torch.complex64, torch.complex128, torch.bfloat16, torch.float32],
    ids=["c64", "c128", "bf16", "f32"],
)
@pytest.mark.parametrize(
    ("name", "kwargs"),
    SCHEDULE_FREE_CASES,
    ids=[f"{n}({','.join(f'{k}={v}' for k, v in kw.items())})" for n, kw in SCHEDULE_FREE_CASES],
)
def test_schedule_free_on_a_strided_gradient_gives_the_packages_bits(name, kwargs, dtype, impl):
    """Strided gradients: the package's bits on the default path (its multi-tensor step) and the
    one-tensor path (its loop, ``foreach=False``). The package divides ``p.grad`` by AdamW's
    denominator and adds its decay into it in place, where it lies, and its later ops read it
    there: the scalar loop of a strided tensor, whose complex division and bf16 arithmetic
    round otherwise than the vectorised loop over our contiguous temporaries did (AdamW on
    complex64 1.2e-7 apart after 3 steps, bf16 2e-3; SGD with decay in bf16 4e-3). The flat
    path, whose one op over a buffer rounds bf16 and complex elements otherwise, gives the
    package's numbers to rounding there, as on dense gradients."""
    reference = getattr(schedulefree, name)
    expected = _schedule_free_run(
        lambda ps: reference(ps, foreach=impl != "single", **kwargs), dtype
    )
    ours = _schedule_free_run(lambda ps: getattr(optim, name)(ps, impl=impl, **kwargs), dtype)
    start = _schedule_free_run(lambda ps: reference(ps, **kwargs), dtype, steps=0)
    assert relative_error(expected, start) > 1e-3, "nothing moved"
    if impl == "flat" and dtype in (torch.bfloat16, torch.complex64, torch.complex128):
        assert relative_error(ours, expected) <= (1e-2 if dtype == torch.bfloat16 else 1e-6)
    else:
        for a, b in zip(ours, expected):
            assert torch.equal(bits(a), bits(b)), (a - b).abs().max()


@pytest.mark.parametrize("impl", ["single", "foreach"])
@pytest.mark.parametrize("dtype", [torch.complex64, torch.float32], ids=["c64", "f32"])
def test_schedule_free_adamw_leaves_a_strided_gradient_as_it_was(dtype, impl):
    """Ours does not modify ``p.grad`` (the package divides it in place): a strided gradient keeps
    its values and strides after a step."""
    p = torch.randn(100, dtype=dtype, requires_grad=True)
    optimizer = optim.AdamWScheduleFree([p], lr=0.1, weight_decay=0.05, impl=impl)
    optimizer.train()
    values = torch.randn(100, dtype=dtype)
    p.grad = strided(values)
    optimizer.step()
    assert p.grad.stride() == (2,)
    assert torch.equal(p.grad, values)
