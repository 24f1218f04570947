"""Many param groups of a few small tensors (per-layer learning rates), beside torch.optim.

The default path runs such groups together, one rule call with one ``lr`` per tensor
(``RuleOptimizer._merged_steps``), when they ran last step as plain lists and differ only in
``lr``. Expected: torch's foreach path bit for bit (the signs of zeros too), with the learning
rates changed at every step as a per-layer schedule changes them, and through everything that
stops a group from running with the others (a parameter without a gradient, momentum switched
on, a different weight decay, a tensor ``lr``, state replaced, a group added mid-training,
another dtype). Each test also checks that groups did run together, so that it tests that path.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optim
from optim import _base, _paths
from tests.optim.conftest import theirs as torch_class
from tests.optim.test_random_configurations import OPTIONS, _signed_zeros

# param group sizes (tensors per group) and shapes: groups of one tensor, and a few of more
GROUP_SIZES = [1, 1, 2, 1, 3, 1, 1, 1]
LR_FACTORS = [1.0, 0.5, 0.5, 0.25, 1.0, 2.0, 0.125, 0.125]  # some groups share their lr


def _int_view(t: torch.Tensor) -> torch.Tensor:
    bits = {torch.float64: torch.int64, torch.float32: torch.int32}.get(t.dtype, torch.int16)
    return t.detach().contiguous().view(bits)


def assert_same_bits(ours: list[torch.Tensor], theirs: list[torch.Tensor], where: str) -> None:
    """The same bit patterns: values, NaNs and the signs of zeros."""
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == b.dtype, f"{where}, tensor {i}"
        assert a.shape == b.shape, f"{where}, tensor {i}"
        assert torch.equal(_int_view(a), _int_view(b)), f"{where}, tensor {i}"


@pytest.fixture
def merged_calls(monkeypatch):
    """How many times groups ran together (``RuleOptimizer._run_merged``)."""
    calls = []
    original = _base.RuleOptimizer._run_merged

    def counting(self, batch, *rest):
        calls.append(len(batch.indices))
        return original(self, batch, *rest)

    monkeypatch.setattr(_base.RuleOptimizer, "_run_merged", counting)
    return calls


def _params(dtypes: list[torch.dtype], seed: int = 0) -> list[list[torch.Tensor]]:
    """One list of parameters per group (shapes (4, 3), (5,), ...), some elements signed zeros."""
    generator = torch.Generator().manual_seed(seed)
    groups = []
    for g, (size, dtype) in enumerate(zip(GROUP_SIZES, dtypes)):
        shapes = [(4, 3), (5,), (2, 2)][:size] if size > 1 else [(3 + g,)]
        groups.append(
            [
                _signed_zeros(torch.randn(s, generator=generator), generator)
                .to(dtype)
                .requires_grad_()
                for s in shapes
            ]
        )
    return groups


def _loss(params: list[torch.Tensor], t: int, masks: list[torch.Tensor]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(100 + t)
    return sum(
        ((p.float() * m - torch.randn(p.shape, generator=generator)) ** 2).sum()
        + 0.1 * torch.sin(3 * p.float() * m).sum()
        for p, m in zip(params, masks)
    )


def _train(make, options: dict, dtypes, events=None, steps: int = 6) -> list[torch.Tensor]:
    """``steps`` updates of param groups with per-group learning rates, each multiplied by a
    per-group factor after every step (a per-layer schedule); ``events(t, optimizer, groups)``
    may change anything before step ``t``. The parameters after the last step."""
    groups = _params(dtypes)
    flat = [p for ps in groups for p in ps]
    generator = torch.Generator().manual_seed(1)
    masks = [(torch.rand(p.shape, generator=generator) >= 0.2).float() for p in flat]
    optimizer = make(
        [{"params": ps, "lr": options["lr"] * factor} for ps, factor in zip(groups, LR_FACTORS)],
        {key: value for key, value in options.items() if key != "lr"},
    )
    for t in range(steps):
        if events is not None:
            events(t, optimizer, groups)
        optimizer.zero_grad(set_to_none=True)
        live = [p for p in flat if getattr(p, "in_loss", True)]
        _loss(live, t, [m for p, m in zip(flat, masks) if getattr(p, "in_loss", True)]).backward()
        optimizer.step()
        for index, group in enumerate(optimizer.param_groups):
            if not isinstance(group["lr"], torch.Tensor):  # (groups 1, 2 and 6, 7 keep equal)
                group["lr"] = group["lr"] * (0.9 if index in (0, 3, 5) else 1.1)
    return [p.detach().clone() for p in flat]


def _ours(name: str):
    return lambda groups, options: getattr(optim, name)(groups, **options)


def _torch(name: str, foreach: bool = True):
    return lambda groups, options: torch_class(name)(groups, foreach=foreach, **options)


@settings(max_examples=60, deadline=None, derandomize=True)  # (the same examples in every CI run)
@given(
    data=st.data(),
    name=st.sampled_from(sorted(OPTIONS)),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
)
def test_groups_run_together_give_torchs_bits(data, name, dtype):
    options = data.draw(OPTIONS[name], label="options")
    dtypes = [dtype] * len(GROUP_SIZES)
    calls = []
    original = _base.RuleOptimizer._run_merged

    def counting(self, batch, *rest):
        calls.append(len(batch.indices))
        return original(self, batch, *rest)

    _base.RuleOptimizer._run_merged = counting
    try:
        ours = _train(_ours(name), options, dtypes)
    finally:
        _base.RuleOptimizer._run_merged = original
    assert calls, "the groups did not run together"
    assert max(calls) == len(GROUP_SIZES), "the groups did not run together"
    assert_same_bits(ours, _train(_torch(name), options, dtypes), f"{name}({options}), {dtype}")
    if dtype in (torch.float32, torch.float64):  # (torch's two paths agree there)
        theirs = _train(_torch(name, foreach=False), options, dtypes)
        assert_same_bits(ours, theirs, f"{name}({options}), {dtype}, torch for-loop")


NAMES_AND_OPTIONS = [
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05}),
    ("Adam", {"lr": 0.02}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.1, "amsgrad": True}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "centered": True}),
    ("RMSprop", {"lr": 0.01}),
    ("Adadelta", {"lr": 0.5}),
]


def _no_gradient_for_group_2_at_step_3(t, optimizer, groups):
    for p in groups[2]:
        p.in_loss = t != 3  # no gradient at step 3 (set_to_none): torch skips the parameters


def _weight_decay_for_group_3_from_step_3(t, optimizer, groups):
    if t == 3:
        optimizer.param_groups[3]["weight_decay"] = 0.05


def _tensor_lr_for_group_1_from_step_3(t, optimizer, groups):
    if t == 3:
        optimizer.param_groups[1]["lr"] = torch.tensor(optimizer.param_groups[1]["lr"])


def _state_of_group_4_reset_at_step_4(t, optimizer, groups):
    if t == 4:
        for p in groups[4]:
            optimizer.state[p] = {}  # starts again, as torch's does


def _group_7_added_at_step_3(t, optimizer, groups):
    if t == 0:  # the last group is not in the optimizer yet, and has no part in the loss
        optimizer.param_groups.pop()
        for p in groups[7]:
            p.in_loss = False
    if t == 3:
        for p in groups[7]:
            p.in_loss = True
        optimizer.add_param_group({"params": groups[7], "lr": 0.01})


def _parameter_of_group_7_moved_to_group_3_at_step_3(t, optimizer, groups):
    if t == 3:  # (torch takes a list edited in place; the state starts at the next step)
        moved = optimizer.param_groups[7]["params"].pop()
        optimizer.param_groups[3]["params"].append(moved)


def _group_3_replaced_by_a_copy_at_step_3(t, optimizer, groups):
    if t == 3:  # (the schedule then sets the copy's lr)
        optimizer.param_groups[3] = dict(optimizer.param_groups[3])


def _equal_values_assigned_again_and_a_key_added_at_step_3(t, optimizer, groups):
    if t == 3:
        for group in optimizer.param_groups[::2]:  # new objects, equal values
            group["weight_decay"] = float(repr(group["weight_decay"]))
            group["eps" if "eps" in group else "maximize"] = (
                float(repr(group["eps"])) if "eps" in group else bool(group["maximize"])
            )
    if t == 4:
        optimizer.param_groups[1]["name"] = "layer 1"


EVENTS = {
    "group replaced by a copy": _group_3_replaced_by_a_copy_at_step_3,
    "equal values assigned, key added": _equal_values_assigned_again_and_a_key_added_at_step_3,
    "parameter moved": _parameter_of_group_7_moved_to_group_3_at_step_3,
    "no gradient": _no_gradient_for_group_2_at_step_3,
    "weight decay changed": _weight_decay_for_group_3_from_step_3,
    "tensor lr": _tensor_lr_for_group_1_from_step_3,
    "state reset": _state_of_group_4_reset_at_step_4,
    "group added": _group_7_added_at_step_3,
}


@pytest.mark.parametrize("event", sorted(EVENTS))
@pytest.mark.parametrize(
    ("name", "options"), NAMES_AND_OPTIONS, ids=[f"{n}{o}" for n, o in NAMES_AND_OPTIONS]
)
def test_what_stops_a_group_from_running_with_the_others_gives_torchs_bits(
    name, options, event, merged_calls
):
    if event == "tensor lr" and name in ("Adam", "AdamW"):
        theirs_make = _torch(name, foreach=False)  # (torch refuses a tensor lr with foreach)
    else:
        theirs_make = _torch(name)
    dtypes = [torch.float32] * len(GROUP_SIZES)
    ours = _train(_ours(name), options, dtypes, EVENTS[event])
    assert merged_calls, "the groups never ran together"
    theirs = _train(theirs_make, options, dtypes, EVENTS[event])
    assert_same_bits(ours, theirs, f"{name}({options}), {event}")


# (torch's RMSprop has no buffer to start mid-training: KeyError)
MOMENTUM = [case for case in NAMES_AND_OPTIONS if case[0] == "SGD" and case[1].get("momentum")]


@pytest.mark.parametrize(("name", "options"), MOMENTUM, ids=[f"{n}{o}" for n, o in MOMENTUM])
def test_momentum_switched_on_in_one_group_gives_torchs_bits(name, options, merged_calls):
    def momentum_for_group_5(t, optimizer, groups):
        if t == 0:
            optimizer.param_groups[5]["momentum"] = 0.0
            optimizer.param_groups[5]["nesterov"] = False
        if t == 3:
            optimizer.param_groups[5]["momentum"] = 0.9

    dtypes = [torch.float32] * len(GROUP_SIZES)
    ours = _train(_ours(name), options, dtypes, momentum_for_group_5)
    assert merged_calls
    assert_same_bits(ours, _train(_torch(name), options, dtypes, momentum_for_group_5), name)


@pytest.mark.parametrize(
    ("name", "options"), NAMES_AND_OPTIONS, ids=[f"{n}{o}" for n, o in NAMES_AND_OPTIONS]
)
def test_groups_of_two_dtypes_and_a_small_block_give_torchs_bits(
    name, options, merged_calls, monkeypatch
):
    """float32 and float64 groups interleaved (as decay and no-decay groups of each layer) run in
    separate calls, and no call holds more than a round of the blocked lists (here 20 elements,
    ``optim._paths.list_round()``)."""
    monkeypatch.setattr(_paths, "BLOCK", 20 * _paths.LIST_ROUNDS_PER_BLOCK)
    dtypes = [torch.float32, torch.float64] * (len(GROUP_SIZES) // 2)
    ours = _train(_ours(name), options, dtypes)
    assert merged_calls
    assert max(merged_calls) < len(GROUP_SIZES) // 2
    assert_same_bits(ours, _train(_torch(name), options, dtypes), name)


NEGATIVE_ZEROS = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": -0.0, "weight_decay": -0.0}),
    ("Adam", {"lr": 0.02, "eps": -0.0, "weight_decay": -0.0, "betas": (0.9, -0.0)}),
    ("Adam", {"lr": 0.02, "betas": (-0.0, 0.99)}),
    ("Adagrad", {"lr": 0.1, "lr_decay": -0.0, "eps": -0.0}),
    ("RMSprop", {"lr": 0.01, "alpha": -0.0, "eps": -0.0, "centered": True, "momentum": -0.0}),
    ("Adadelta", {"lr": 0.5, "rho": -0.0, "eps": -0.0}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    ("name", "options"), NEGATIVE_ZEROS, ids=[f"{n}{o}" for n, o in NEGATIVE_ZEROS]
)
def test_hyperparameters_of_negative_and_positive_zero_run_together_with_torchs_bits(
    name, options, dtype, merged_calls
):
    """Groups alternate between ``-0.0`` and ``0.0`` for the same hyperparameters, which compare
    equal, so they run together (``_merged_steps``' docstring says why the bits agree)."""

    def alternating(make):
        def build(groups, _):
            positive = {
                key: tuple(map(abs, value)) if key == "betas" else abs(value)
                for key, value in options.items()
            }
            groups = [{**g, **(options if i % 2 else positive)} for i, g in enumerate(groups)]
            return make(groups, {})

        return build

    dtypes = [dtype] * len(GROUP_SIZES)
    ours = _train(alternating(_ours(name)), options, dtypes)
    assert max(merged_calls) == len(GROUP_SIZES)
    assert_same_bits(ours, _train(alternating(_torch(name)), options, dtypes), name)


def test_momentum_switched_off_in_two_groups_gives_torchs_bits(merged_calls):
    """Two groups whose momentum goes to 0 together run together without their buffers (which
    their state keeps, as torch's), not as if the buffers still applied (with dampening the
    numbers would differ)."""

    def momentum_off_in_groups_5_and_6(t, optimizer, groups):
        if t == 3:
            for group in optimizer.param_groups[5:7]:
                group["momentum"] = 0.0

    options = {"lr": 0.05, "momentum": 0.9, "dampening": 0.5}
    dtypes = [torch.float32] * len(GROUP_SIZES)
    ours = _train(_ours("SGD"), options, dtypes, momentum_off_in_groups_5_and_6)
    assert merged_calls
    theirs = _train(_torch("SGD"), options, dtypes, momentum_off_in_groups_5_and_6)
    assert_same_bits(ours, theirs, "SGD, momentum off in two groups")
