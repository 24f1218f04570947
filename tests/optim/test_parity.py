"""Every optimizer x path x option, side by side with torch.optim for 200 steps."""

import pytest
import torch

from tests.optim.conftest import (
    IMPLS,
    TOLERANCE,
    case_id,
    make_params,
    ours,
    reference_once,
    relative_error,
    theirs,
    train,
    two_groups,
)

STEPS = 200


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("impl", IMPLS)
def test_matches_torch_with_two_param_groups(case, impl, dtype):
    name, kwargs = case
    sign = -1.0 if kwargs.get("maximize") else 1.0

    def reference_run() -> list[torch.Tensor]:
        reference = make_params(dtype)
        train(lambda ps: theirs(name)(two_groups(ps, kwargs), **kwargs), reference, STEPS, sign)
        return reference

    reference = reference_once(("two groups", case_id(case), dtype), reference_run)
    params = make_params(dtype)
    train(lambda ps: ours(name)(two_groups(ps, kwargs), impl=impl, **kwargs), params, STEPS, sign)
    assert relative_error(params, make_params(dtype)) > 1e-3, "the parameters did not move"
    assert relative_error(params, reference) <= TOLERANCE[dtype]


@pytest.mark.parametrize("impl", IMPLS)
def test_tensor_hyperparameters_match_float_ones(case, impl):
    """lr (and momentum / betas where they exist) given as 0-dim tensors change nothing."""
    name, kwargs = case
    sign = -1.0 if kwargs.get("maximize") else 1.0
    as_tensors = dict(kwargs)
    as_tensors["lr"] = torch.tensor(kwargs.get("lr", 1.0), dtype=torch.float64)
    if kwargs.get("momentum"):
        as_tensors["momentum"] = torch.tensor(kwargs["momentum"], dtype=torch.float64)
    reference = make_params(torch.float64)
    train(lambda ps: theirs(name)(ps, **kwargs), reference, 50, sign)
    params = make_params(torch.float64)
    train(lambda ps: ours(name)(ps, impl=impl, **as_tensors), params, 50, sign)
    assert relative_error(params, reference) <= 1e-10


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["SGD", "Adam", "Adagrad", "RMSprop", "Adadelta"])
def test_complex_parameters_match_torch(name, impl):
    kwargs = {"lr": 0.01, "momentum": 0.9} if name == "SGD" else {"lr": 0.01}

    def make():
        generator = torch.Generator().manual_seed(3)
        return [torch.randn(6, dtype=torch.complex128, generator=generator).requires_grad_()]

    def run(make_optimizer):
        params = make()
        optimizer = make_optimizer(params)
        for _ in range(100):
            optimizer.zero_grad()
            (params[0] - (1 + 2j)).abs().pow(2).sum().backward()
            optimizer.step()
        return params

    reference = run(lambda ps: theirs(name)(ps, **kwargs))
    params = run(lambda ps: ours(name)(ps, impl=impl, **kwargs))
    assert relative_error(params, reference) <= 1e-10


@pytest.mark.parametrize("impl", IMPLS)
def test_lr_zero_leaves_parameters_unchanged(impl):
    """lr = 0 (a warmup from zero) must not produce 0/0 in Adam's step-size arithmetic."""
    params = make_params(torch.float64)
    before = [p.detach().clone() for p in params]
    train(lambda ps: ours("Adam")(ps, lr=0.0, impl=impl), params, 3)
    assert all(torch.equal(a, b) for a, b in zip(params, before))


def complex64_steps(make, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """complex64 parameters of these shapes after 4 steps of ``make(params)`` on random
    complex gradients (seed 0)."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(s, dtype=torch.complex64, generator=generator).requires_grad_()
              for s in shapes]  # fmt: skip
    optimizer = make(params)
    for _ in range(4):
        for p in params:
            p.grad = torch.randn(p.shape, dtype=p.dtype, generator=generator)
        optimizer.step()
    return params


COMPLEX_CASES = [
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.5, "dampening": 0.2, "weight_decay": 0.1, "maximize": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("AdamW", {"lr": 0.01}),
    ("Adagrad", {"lr": 0.1}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("Adadelta", {}),
]


@pytest.mark.parametrize("foreach", [True, False], ids=["torch-foreach", "torch-single"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", COMPLEX_CASES, ids=lambda c: f"{c[0]}{sorted(c[1])}")
def test_complex64_parameters_bitwise_as_torch(case, impl, foreach):
    """complex64, 20 small tensors and a large one, 4 steps: torch's bits on every eager path.
    torch.optim.SGD runs complex arithmetic on complex tensors where the others view them as
    real pairs; each of ours does as its torch class does."""
    name, kwargs = case
    shapes = [(4, 3)] * 20 + [(600, 500)]
    reference = complex64_steps(lambda ps: theirs(name)(ps, foreach=foreach, **kwargs), shapes)
    params = complex64_steps(lambda ps: ours(name)(ps, impl=impl, **kwargs), shapes)
    assert all(torch.equal(p, r) for p, r in zip(params, reference))


COMPLEX_CASES_TORCH_SPLITS = [
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "maximize": True, "amsgrad": True}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.1, "lr_decay": 0.01}),
    ("RMSprop", {"lr": 0.01, "weight_decay": 0.1, "centered": True, "momentum": 0.5}),
    ("RMSprop", {"lr": 0.01, "weight_decay": 0.1, "maximize": True}),
    ("Adadelta", {"lr": 0.1}),
    ("Adadelta", {"lr": 0.1, "weight_decay": 0.1, "maximize": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", COMPLEX_CASES_TORCH_SPLITS, ids=lambda c: f"{c[0]}{sorted(c[1])}")
def test_complex_parameters_where_torchs_two_paths_differ_give_each_paths_bits(case, impl):
    """torch's for-loop path adds the weight decay to a complex gradient in complex arithmetic,
    before viewing it as real pairs, and Adadelta's update to a complex parameter (``add_`` with
    ``alpha=-lr``), where its foreach path does both on the pairs: the complex product and sum
    round apart, the real ones fuse, so some elements differ by an ulp (9% for ``add``).
    ``impl="single"`` gives the for-loop path's bits (before: the foreach path's), the default
    and flat paths the foreach path's."""
    name, kwargs = case
    shapes = [(4, 3)] * 20 + [(5,)]
    reference = complex64_steps(
        lambda ps: theirs(name)(ps, foreach=impl != "single", **kwargs), shapes
    )
    params = complex64_steps(lambda ps: ours(name)(ps, impl=impl, **kwargs), shapes)
    assert all(torch.equal(p, r) for p, r in zip(params, reference))
