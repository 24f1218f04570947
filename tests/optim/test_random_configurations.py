"""Random hyperparameters of the six classic optimizers, on every path, beside torch.optim.

``optim_db`` (``test_torch_optim_db``) holds torch's own chosen configurations; this draws the
options in any combination (``maximize`` with weight decay with ``amsgrad``, Nesterov with weight
decay, ``centered`` with momentum, ...), a path, a dtype, a set of shapes that the default path
runs packed, blocked or as plain lists, and a learning rate given as a number or a 0-dim tensor,
and runs four steps of a non-convex loss beside torch. Expected: torch's foreach path bit for bit
(its for-loop path for ``impl="single"``, i.e. ``foreach=False``, which differs from the foreach
path in bfloat16 and float16; float32, float64, bfloat16, float16; a NaN where torch has one, as
float16's underflowing
``eps`` gives), except bfloat16 on the flat path, whose one op per buffer rounds an element an
ulp apart from torch's here and there (``optim._base``'s docstring says why): its first step is
compared, to within an ulp of the parameter or of its update (float16 is not drawn there).
Parameters start with some signed zeros and some elements have exact zero gradients of either
sign, and the signs of zeros are compared too (but where torch's own kernel gives a zero's sign
by where the element falls in its tensor: Adam's ``lerp`` with weight 1). torch's
Adam and AdamW refuse a tensor ``lr`` on their foreach path, so with one the reference is their
for-loop path, which torch's default takes then, and so does ours (in bfloat16 and float16 the
two paths differ by an ulp here and there). A regression guard: it passed when written (3000
examples run once, 100 here; float16 added later, 1500; a tensor ``lr`` in bfloat16 and
float16 later still, 3000).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import optim
from optim import _paths
from optim._paths import PACK_AT_LEAST, PACK_BELOW

SHAPE_SETS = {
    "packed": [(3, 4)] * (PACK_AT_LEAST + 2) + [(5,)],  # small tensors: packed
    "packed and blocked": [(3, 4)] * (PACK_AT_LEAST + 2) + [(700,), (5,)],
    "blocked": [(3, 4)] * 4 + [(PACK_BELOW + 300,), (5,)],  # one large tensor: blocked
    "few": [(3, 4), (5,), ()],  # plain lists
    "one": [(40,)],
    "kernel": [(3, 4)] * 4 + [(640,), (5,)],  # SGD with momentum: one tensor by torch's kernel
}


def _nesterov_needs_momentum(options: dict) -> dict:
    """Nesterov with momentum > 0 and no dampening (torch refuses anything else)."""
    if not options["nesterov"]:
        return options
    return {**options, "momentum": options["momentum"] or 0.9, "dampening": 0.0}


_LR = st.sampled_from([1.0, 0.1, 0.01, 1e-3])
_WEIGHT_DECAY = st.sampled_from([0.0, 0.01, 0.5])
OPTIONS = {
    "SGD": st.fixed_dictionaries(
        {
            "lr": _LR,
            "momentum": st.sampled_from([0.0, 0.5, 0.9]),
            "dampening": st.sampled_from([0.0, 0.1]),
            "weight_decay": _WEIGHT_DECAY,
            "nesterov": st.booleans(),
            "maximize": st.booleans(),
        }
    ).map(_nesterov_needs_momentum),
    "Adam": st.fixed_dictionaries(
        {
            "lr": _LR,
            "betas": st.sampled_from([(0.9, 0.999), (0.5, 0.9), (0.0, 0.99)]),
            "eps": st.sampled_from([1e-8, 1e-3]),
            "weight_decay": _WEIGHT_DECAY,
            "amsgrad": st.booleans(),
            "maximize": st.booleans(),
        }
    ),
    "Adagrad": st.fixed_dictionaries(
        {
            "lr": _LR,
            "lr_decay": st.sampled_from([0.0, 0.01]),
            "weight_decay": _WEIGHT_DECAY,
            "initial_accumulator_value": st.sampled_from([0.0, 0.1]),
            "eps": st.sampled_from([1e-10, 1e-3]),
            "maximize": st.booleans(),
        }
    ),
    "RMSprop": st.fixed_dictionaries(
        {
            "lr": _LR,
            "alpha": st.sampled_from([0.99, 0.5]),
            "eps": st.sampled_from([1e-8, 1e-3]),
            "weight_decay": _WEIGHT_DECAY,
            "momentum": st.sampled_from([0.0, 0.9]),
            "centered": st.booleans(),
            "maximize": st.booleans(),
        }
    ),
    "Adadelta": st.fixed_dictionaries(
        {
            "lr": st.sampled_from([1.0, 0.5]),
            "rho": st.sampled_from([0.9, 0.5]),
            "eps": st.sampled_from([1e-6, 1e-3]),
            "weight_decay": _WEIGHT_DECAY,
            "maximize": st.booleans(),
        }
    ),
}
OPTIONS["AdamW"] = OPTIONS["Adam"]


@pytest.fixture(autouse=True)
def small_block(monkeypatch):
    monkeypatch.setattr(_paths, "BLOCK", 256)  # the 700-element tensor is blocked
    # SGD's momentum steps over the 640-element tensor run torch's fused kernel
    monkeypatch.setattr(optim.sgd, "KERNEL_FROM", 128)
    monkeypatch.setattr(optim.sgd, "KERNEL_TOTAL_FROM", 256)


def _signed_zeros(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``t`` with about one element in ten replaced by ``-0.0`` or ``+0.0``."""
    zeros = torch.rand(t.shape, generator=generator) < 0.1
    signs = torch.rand(t.shape, generator=generator) < 0.5
    return torch.where(zeros, torch.where(signs, -0.0, 0.0).to(t.dtype), t)


def _run(make, shapes, dtype: torch.dtype, tensor_lr: bool) -> list[list[torch.Tensor]]:
    """Four steps; some parameters start at signed zeros, and about one element in five has no
    part in the loss, so its gradient is an exact zero, ``-0.0`` where the loss's upstream
    gradient is negative (``g * 0``)."""
    generator = torch.Generator().manual_seed(0)
    params = [
        _signed_zeros(torch.randn(s, generator=generator), generator).to(dtype).requires_grad_()
        for s in shapes
    ]
    in_loss = [(torch.rand(s, generator=generator) >= 0.2).float() for s in shapes]
    optimizer = make(params)
    if tensor_lr:
        for group in optimizer.param_groups:
            group["lr"] = torch.tensor(group["lr"])
    history = [[p.detach().clone() for p in params]]  # the start, then after each step
    for t in range(4):
        optimizer.zero_grad()
        generator = torch.Generator().manual_seed(100 + t)
        loss = sum(
            ((p.float() * m - torch.randn(p.shape, generator=generator)) ** 2).sum()
            + 0.1 * torch.sin(3 * p.float() * m).sum()
            for p, m in zip(params, in_loss)
        )
        loss.backward()
        optimizer.step()
        history.append([p.detach().clone() for p in params])
    return history


@settings(max_examples=100, deadline=None, derandomize=True)  # (the same examples in every CI run)
@given(
    data=st.data(),
    name=st.sampled_from(sorted(OPTIONS)),
    impl=st.sampled_from(["foreach", "single", "flat"]),
    shapes=st.sampled_from(sorted(SHAPE_SETS)),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
    tensor_lr=st.booleans(),
)
def test_random_options_give_torchs_bits(data, name, impl, shapes, dtype, tensor_lr):
    low_precision = dtype in (torch.bfloat16, torch.float16)
    # (float16's narrow range: where eps underflows, an ulp apart in a denominator near zero is
    # any distance apart after it, so the flat path's float16 is left to its own tests)
    assume(not (impl == "flat" and dtype == torch.float16))
    options = data.draw(OPTIONS[name], label="options")
    shapes = SHAPE_SETS[shapes]
    torch_class, our_class = getattr(torch.optim, name), getattr(optim, name)
    # (ours: impl="single" is foreach=False; torch's Adam refuses a tensor lr on its foreach
    # path, and its default is then its for-loop path, whose bits our default path gives)
    foreach = impl != "single" and not (tensor_lr and name in ("Adam", "AdamW"))
    expected = _run(
        lambda ps: torch_class(ps, foreach=foreach, **options), shapes, dtype, tensor_lr
    )
    actual = _run(lambda ps: our_class(ps, impl=impl, **options), shapes, dtype, tensor_lr)
    bitwise = impl != "flat" or not low_precision
    # torch's lerp with weight 1 (Adam's beta1 = 0) gives a zero's sign by where the element
    # falls in its own tensor, vectorised body or scalar tail (optim._paths.FAST_DTYPES)
    lerp_weight_one = name in ("Adam", "AdamW") and options["betas"][0] == 0.0 and impl != "single"
    if not bitwise:  # one step: an ulp of the parameter or of its update apart, at most
        for i, (start, a, b) in enumerate(zip(expected[0], actual[1], expected[1])):
            a, b, start = a.double(), b.double(), start.double()
            ulp = torch.finfo(dtype).eps * (b.abs() + (b - start).abs()) + 1e-30
            close = ((a - b).abs() <= ulp) | (a == b) | (a.isnan() & b.isnan())
            assert close.all(), f"{name}({options}), flat, {dtype}, tensor {i}"
        return
    for step, (ours, theirs) in enumerate(zip(actual, expected)):
        for i, (a, b) in enumerate(zip(ours, theirs)):
            where = f"{name}({options}), {impl}, {dtype}, step {step}, tensor {i}"
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
            if not lerp_weight_one:  # (assert_close counts -0.0 equal to +0.0: the signs too)
                numbers = ~a.isnan()
                assert torch.equal(a[numbers].signbit(), b[numbers].signbit()), where
