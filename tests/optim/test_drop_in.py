"""The default path as a drop-in: every scenario a training script meets, beside torch.optim.

Each scenario runs twice from the same parameters, once with torch.optim's class and once with
ours (default path, no options), and the parameters, state and state dict must agree. The
parameter sets are chosen to drive every execution strategy of the default path: many small
tensors (packed state), one tensor larger than a block (blocked), and a mix of shapes.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import inspect
import io
import operator
import re
import warnings

import numpy as np
import pytest
import torch
from torch.optim.optimizer import (
    _device_dtype_check_for_fused,
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.utils._python_dispatch import TorchDispatchMode

import optim
from optim import _paths
from optim._base import OneByOne
from optim._paths import PACK_AT_LEAST
from tests.optim.conftest import in_a_forked_child, ours, steps_around_inference_mode, theirs

SMALL_BLOCK = 256  # the tests shrink the block so that small tensors exercise the blocked path
SETS = {
    # packed rounds of 2-D tensors (one multi-tensor copy) and of 1-D tensors (one torch.cat)
    "packed": [(7, 5)] * 10 + [(9,)] * (PACK_AT_LEAST - 4),
    "blocked": [(3 * SMALL_BLOCK + 17,), (SMALL_BLOCK // 2 + 3,), (40, 9)],
    "mixed": [(SMALL_BLOCK // 2 + 3,), (6, 4), (2 * SMALL_BLOCK + 7,), (5,)],
}


@pytest.fixture(autouse=True)
def small_block(monkeypatch):
    monkeypatch.setattr(_paths, "BLOCK", SMALL_BLOCK)


DEFAULT_CASES = [
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {"lr": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adagrad", {"lr": 0.05}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.01, "maximize": True, "weight_decay": 0.01}),
    ("AdamW", {"lr": 0.01, "maximize": True, "amsgrad": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True}),
    ("Adadelta", {"lr": 0.5}),
]


def _params(shapes, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, dtype=dtype, generator=generator).requires_grad_() for s in shapes]


def _loss(params, skip=()):
    total = 0
    for i, p in enumerate(params):
        if i not in skip:
            total = total + ((p - 0.3 * i) ** 2).sum() + 0.1 * torch.sin(3 * p).sum()
    return total


def _close(ours_tensors, torch_tensors, rtol=1e-10):
    for a, b in zip(ours_tensors, torch_tensors):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=rtol, atol=rtol * 1e-2)


def _side_by_side(name, kwargs, shapes, scenario, dtype=torch.float64):
    """Run ``scenario(optimizer, params)`` for torch.optim and for ours; return both."""
    results = []
    for cls in (theirs(name), ours(name)):
        params = _params(shapes, dtype)
        optimizer = cls(params, **kwargs)
        returned = scenario(optimizer, params)
        results.append((optimizer, params, returned))
    return results


def _train(optimizer, params, steps, skip=(), set_to_none=True):
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=set_to_none)
        _loss(params, skip).backward()
        optimizer.step()


def _train_forked(optimizer, params, steps):
    """:func:`_train` as a forked Hogwild worker runs it: ``_loss``'s gradient written out,
    ``2 (p - 0.3 i) + 0.3 cos(3 p)``, since a forked child cannot call ``backward()`` on a
    machine with a GPU (:func:`in_a_forked_child`)."""
    for _ in range(steps):
        optimizer.zero_grad()
        for i, p in enumerate(params):
            p.grad = 2 * (p.detach() - 0.3 * i) + 0.3 * torch.cos(3 * p.detach())
        optimizer.step()


def _assert_same_state(torch_optimizer, our_optimizer, rtol=1e-10, unlike=()):
    """Equal state dicts; ``unlike``: group keys that differ by construction (a path's flag)."""
    theirs_sd, ours_sd = torch_optimizer.state_dict(), our_optimizer.state_dict()
    for saved in (theirs_sd, ours_sd):
        for group in saved["param_groups"]:
            for key in unlike:
                group.pop(key)
    assert theirs_sd["state"].keys() == ours_sd["state"].keys()
    for index, state in theirs_sd["state"].items():
        assert state.keys() == ours_sd["state"][index].keys(), index
        for key, value in state.items():
            torch.testing.assert_close(ours_sd["state"][index][key], value, rtol=rtol, atol=0)
    assert theirs_sd["param_groups"] == ours_sd["param_groups"]


@pytest.fixture(params=DEFAULT_CASES, ids=lambda c: c[0] + str(sorted(c[1].items())))
def default_case(request):
    return request.param


@pytest.fixture(params=list(SETS), ids=list(SETS))
def shapes(request):
    return SETS[request.param]


def test_plain_training_equals_torch_with_the_same_state_dict(default_case, shapes):
    name, kwargs = default_case

    def scenario(optimizer, params):
        _train(optimizer, params, 12)

    (t_opt, t_params, _), (o_opt, o_params, _) = _side_by_side(name, kwargs, shapes, scenario)
    _close(o_params, t_params)
    _assert_same_state(t_opt, o_opt)


def test_freezing_a_parameter_mid_training(default_case, shapes):
    """p.requires_grad_(False) after some steps: zero_grad sets its grad to None, torch skips it."""
    name, kwargs = default_case

    def scenario(optimizer, params):
        _train(optimizer, params, 3)
        params[0].requires_grad_(False)
        frozen = params[0].detach().clone()
        _train(optimizer, params, 4)
        return frozen

    (t_opt, t_params, _), (o_opt, o_params, frozen) = _side_by_side(name, kwargs, shapes, scenario)
    assert torch.equal(o_params[0].detach(), frozen)
    _close(o_params, t_params)
    _assert_same_state(t_opt, o_opt)


def test_parameters_unused_in_some_steps(default_case, shapes):
    name, kwargs = default_case

    def scenario(optimizer, params):
        for step in range(8):
            optimizer.zero_grad()
            _loss(params, skip={0} if step % 3 == 1 else ()).backward()
            optimizer.step()

    (t_opt, t_params, _), (o_opt, o_params, _) = _side_by_side(name, kwargs, shapes, scenario)
    _close(o_params, t_params)
    _assert_same_state(t_opt, o_opt)


def test_parameters_reordered_in_their_group(default_case, shapes):
    """``group["params"]`` reordered in place between steps (torch keys state by parameter, so
    order does not matter to it): every parameter keeps its own state."""
    name, kwargs = default_case

    def scenario(optimizer, params):
        _train(optimizer, params, 3)
        optimizer.param_groups[0]["params"].reverse()
        _train(optimizer, params, 4)

    (t_opt, t_params, _), (o_opt, o_params, _) = _side_by_side(name, kwargs, shapes, scenario)
    for a, b in zip(o_params, t_params):
        assert torch.equal(a, b)
    _assert_same_state(t_opt, o_opt, rtol=0)


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
def test_a_param_group_emptied_in_place_is_skipped(default_case, shapes, impl):
    """The last parameter moved out of its own group between steps, leaving the group empty:
    torch updates nothing of it; on 223f17f the default and flat paths raised IndexError."""
    name, kwargs = default_case
    results = []
    for make in (theirs(name), functools.partial(ours(name), impl=impl)):
        params = _params(shapes)
        optimizer = make([{"params": params[:-1]}, {"params": params[-1:]}], **kwargs)
        _train(optimizer, params, 3)
        optimizer.param_groups[1]["params"].pop()
        _train(optimizer, params, 3, skip={len(params) - 1})
        results.append(params)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("name", "key"), [("SGD", "momentum"), ("RMSprop", "momentum")])
@pytest.mark.parametrize("change", [(0.0, 0.9), (0.9, 0.0)], ids=["0->0.9", "0.9->0"])
def test_momentum_changed_between_steps(name, key, change, shapes):
    """A momentum schedule: SGD creates the buffer from the gradient at its first use (as torch).

    torch's RMSprop raises KeyError when momentum becomes non-zero after its state exists; ours
    creates the buffer as torch's state initialisation would (zeros), so the reference run below
    adds that buffer by hand.
    """

    def scenario(optimizer, params):
        for step in range(6):
            for group in optimizer.param_groups:
                group[key] = change[0] if step < 2 else change[1]
            if type(optimizer) is torch.optim.RMSprop and step == 2:
                for p in params:
                    optimizer.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
            optimizer.zero_grad()
            _loss(params).backward()
            optimizer.step()

    (t_opt, t_params, _), (o_opt, o_params, _) = _side_by_side(
        name, {"lr": 0.02, key: change[0]}, shapes, scenario
    )
    _close(o_params, t_params)
    _assert_same_state(t_opt, o_opt)


CYCLING_SCHEDULERS = {
    "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=12),
    "CyclicLR": lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.005, 0.05, step_size_up=3),
}


@pytest.mark.parametrize("scheduler", list(CYCLING_SCHEDULERS))
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("Adam", {"lr": 0.01}), ("AdamW", {"lr": 0.01, "amsgrad": True}),
     ("SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
     ("RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True})],
)  # fmt: skip
def test_torchs_momentum_cycling_schedulers_give_torchs_bits(name, kwargs, scheduler, shapes):
    """torch's ``OneCycleLR`` and ``CyclicLR`` (``cycle_momentum=True``, their default) write a
    new ``lr`` and a new ``betas`` tuple or ``momentum`` into every group at every step: each
    step's hyperparameters are new values, which the packed and blocked layouts must read
    afresh. float32, so that an ulp shows; compared bit for bit after every step."""

    def scenario(optimizer, params):
        cycling = CYCLING_SCHEDULERS[scheduler](optimizer)
        seen = []
        for _ in range(8):
            optimizer.zero_grad()
            _loss(params).backward()
            optimizer.step()
            cycling.step()
            seen.append([p.detach().clone() for p in params])
        return seen

    (_, _, t_seen), (_, _, o_seen) = _side_by_side(
        name, kwargs, shapes, scenario, dtype=torch.float32
    )
    for step, (o_params, t_params) in enumerate(zip(o_seen, t_seen)):
        for o_param, t_param in zip(o_params, t_params):
            assert torch.equal(o_param, t_param), (step, (o_param - t_param).abs().max())


@pytest.mark.parametrize(
    ("name", "key", "buffer"),
    [("Adam", "amsgrad", "max_exp_avg_sq"), ("AdamW", "amsgrad", "max_exp_avg_sq"),
     ("RMSprop", "centered", "grad_avg")],
)  # fmt: skip
def test_an_option_switched_on_later_starts_its_buffer_at_zeros(name, key, buffer, shapes):
    """torch raises KeyError when ``amsgrad`` or ``centered`` is switched on after the state
    exists (its buffer is made only at a parameter's first step); ours makes the buffer then as
    torch's first step would (zeros), so the reference run adds it by hand."""

    def scenario(optimizer, params):
        for step in range(6):
            for group in optimizer.param_groups:
                group[key] = step >= 2
            if type(optimizer) is theirs(name) and step == 2:
                for p in params:
                    optimizer.state[p].setdefault(buffer, torch.zeros_like(p))
            optimizer.zero_grad()
            _loss(params).backward()
            optimizer.step()

    (t_opt, t_params, _), (o_opt, o_params, _) = _side_by_side(name, {"lr": 0.02}, shapes, scenario)
    for a, b in zip(o_params, t_params):
        assert torch.equal(a, b)
    _assert_same_state(t_opt, o_opt, rtol=0)


@pytest.mark.parametrize("how", ["replace-tensor", "clear", "new-defaultdict", "del-entry"])
def test_state_replaced_or_reset_is_used(how, shapes):
    def scenario(optimizer, params):
        _train(optimizer, params, 3)
        if how == "replace-tensor":
            optimizer.state[params[0]]["exp_avg"] = torch.full_like(params[0], 0.5)
        elif how == "clear":
            optimizer.state.clear()
        elif how == "new-defaultdict":
            optimizer.state = collections.defaultdict(dict)
        else:
            del optimizer.state[params[-1]]
        _train(optimizer, params, 3)

    (t_opt, t_params, _), (o_opt, o_params, _) = _side_by_side(
        "Adam", {"lr": 0.01}, shapes, scenario
    )
    _close(o_params, t_params)
    _assert_same_state(t_opt, o_opt)
    assert o_opt.state_dict()["state"], "the state dict lost the state"


def _rebuilt(container, function):
    """``container`` rebuilt with ``function`` applied to each tensor in it, as generic
    collection helpers rebuild a mapping or a list of another class: lightning_utilities'
    ``apply_to_collection`` (``type(d)(OrderedDict(items))``, and for a ``defaultdict``
    ``type(d)(d.default_factory, OrderedDict(items))``) and accelerate's ``recursively_apply``
    (``type(d)({...})``)."""
    if torch.is_tensor(container):
        return function(container)
    if isinstance(container, collections.defaultdict):
        items = [(k, _rebuilt(v, function)) for k, v in container.items()]
        return type(container)(container.default_factory, collections.OrderedDict(items))
    if isinstance(container, dict):
        items = [(k, _rebuilt(v, function)) for k, v in container.items()]
        return type(container)(collections.OrderedDict(items))
    if isinstance(container, list):
        return type(container)([_rebuilt(v, function) for v in container])
    return container


@pytest.mark.parametrize(
    "how", ["entries-rebuilt", "state-rebuilt", "copy", "copy.copy", "union", "reflected-union"]
)
def test_state_rebuilt_or_copied_as_a_mapping_is_torchs(how, shapes):
    """``optimizer.state`` and its entries behave as torch's ``defaultdict(dict)`` of dicts
    where generic code copies or rebuilds them: each entry rebuilt as ``type(entry)(items)``
    and put back (as Lightning moved optimizer state between devices), the whole state rebuilt
    as ``type(state)(state.default_factory, items)`` and put back, and ``state.copy()``,
    ``copy.copy(state)``, ``state | {}`` and ``{} | state``, whose entries are the live ones,
    edited through the copy. Training then continues as torch's. (Before: a rebuilt entry came
    out empty, its class taking the items for its owner, and lost the state silently; the
    copies raised ``TypeError``, and the unions made copies of the entries.)"""

    def scenario(optimizer, params):
        _train(optimizer, params, 3)
        state = optimizer.state
        if how == "entries-rebuilt":
            for p in list(state):
                state[p] = _rebuilt(state[p], torch.clone)
        elif how == "state-rebuilt":
            optimizer.state = _rebuilt(state, torch.clone)
        else:
            copied = {
                "copy": state.copy,
                "copy.copy": lambda: copy.copy(state),
                "union": lambda: state | {},
                "reflected-union": lambda: {} | state,
            }[how]()
            assert type(copied) is collections.defaultdict
            assert copied.default_factory is dict
            assert all(copied[p] is state[p] for p in state)  # the live entries, as torch's
            copied[params[0]]["exp_avg"] = torch.full_like(params[0], 0.5)
        _train(optimizer, params, 3)
        return optimizer.state

    (t_opt, t_params, t_state), (o_opt, o_params, o_state) = _side_by_side(
        "Adam", {"lr": 0.01}, shapes, scenario
    )
    assert len(o_state) == len(t_state) == len(o_params)
    _close(o_params, t_params, rtol=0)
    _assert_same_state(t_opt, o_opt, rtol=0)


def test_pytree_sees_the_state_as_torchs(shapes):
    """``torch.utils._pytree`` flattens ``optimizer.state``, an entry and a group list as it
    flattens torch's ``defaultdict(dict)`` of dicts: the same leaves in the same order, with
    the same key paths, and ``tree_map_only(Tensor, fn, state)`` rebuilds it as a plain
    ``defaultdict(dict)`` of new tensors, which put back trains on as torch's. (Before: the
    state and each entry were one leaf each, so ``tree_map_only`` returned the state itself,
    ``fn`` applied to nothing.)"""
    import torch.utils._pytree as pytree

    def scenario(optimizer, params):
        _train(optimizer, params, 3)
        state = optimizer.state
        leaves, _ = pytree.tree_flatten_with_path(state)
        mapped = pytree.tree_map_only(torch.Tensor, torch.clone, state)
        assert type(mapped) is collections.defaultdict
        assert mapped.default_factory is dict
        assert all(type(entry) is dict for entry in mapped.values())
        assert mapped[params[0]]["exp_avg"] is not state[params[0]]["exp_avg"]
        optimizer.state = mapped
        _train(optimizer, params, 3)
        return [(path[1:], leaf.clone()) for path, leaf in leaves]

    (t_opt, t_params, t_leaves), (o_opt, o_params, o_leaves) = _side_by_side(
        "Adam", {"lr": 0.01}, shapes, scenario
    )
    assert len(o_leaves) == len(t_leaves) == 3 * len(o_params)
    for (o_path, o_leaf), (t_path, t_leaf) in zip(o_leaves, t_leaves):
        assert o_path == t_path
        assert torch.equal(o_leaf, t_leaf)
    _close(o_params, t_params, rtol=0)
    _assert_same_state(t_opt, o_opt, rtol=0)


def test_parameter_data_replaced_after_the_first_step(default_case, shapes):
    name, kwargs = default_case

    def scenario(optimizer, params):
        _train(optimizer, params, 2)
        params[0].data = torch.linspace(-1, 1, params[0].numel(), dtype=params[0].dtype).view(
            params[0].shape
        )
        _train(optimizer, params, 3)

    (t_opt, t_params, _), (o_opt, o_params, _) = _side_by_side(name, kwargs, shapes, scenario)
    _close(o_params, t_params)
    _assert_same_state(t_opt, o_opt)


@pytest.mark.parametrize("replaced", [0, -1], ids=["2-d", "1-d"])
def test_parameter_data_of_another_size_fails_as_torch_does(replaced, metadata_check):
    """``p.data`` replaced by a tensor of another size leaves state of the old size: torch
    raises at the next step, and so must a packed layout (not broadcast or resize its buffers)."""
    errors = []
    for cls in (torch.optim.Adam, optim.Adam):
        params = _params(SETS["packed"])
        optimizer = cls(params, lr=0.1)
        _train(optimizer, params, 2)
        params[replaced].data = torch.ones(3, dtype=params[replaced].dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no resized-output warning on the way
            with pytest.raises(RuntimeError) as error:
                _train(optimizer, params, 1)
        errors.append(str(error.value))
    assert errors[0] == errors[1]


def test_model_cast_after_the_first_step_fails_as_torch_does(metadata_check):
    """model.double() after a step leaves float32 state: torch refuses, and so do we."""
    errors = []
    for cls in (torch.optim.Adam, optim.Adam):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        optimizer = cls(model.parameters(), lr=0.1)
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        model.double()
        model(torch.randn(2, 4, dtype=torch.float64)).sum().backward()
        with pytest.raises(RuntimeError) as error:
            optimizer.step()
        errors.append(str(error.value))
    assert errors[0] == errors[1]


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("shapes", ["packed", "mixed"])
@pytest.mark.parametrize(
    "how", ["Adagrad-sums-then-model.float()", "Adam-float64-state-set", "Adam-one-float64-state"]
)
def test_state_of_a_wider_dtype_than_its_parameter_computes_as_torch(how, shapes, impl):
    """Adagrad makes its sums at construction, so ``model.float()`` afterwards leaves float64
    sums beside float32 parameters (and a user may set a float64 state tensor): torch computes
    those ops in float64 and trains on. Bitwise torch's default (its for-loop path on a CPU).
    One float64 state tensor widens that tensor's arithmetic only (the flat path gathered it
    with the others into one float64 buffer: every tensor's state became float64)."""
    name = how.split("-")[0]
    widened = slice(0, 1) if how == "Adam-one-float64-state" else slice(None)
    runs = []
    for cls in (theirs(name), ours(name)):
        params = _params(SETS[shapes], torch.float64 if name == "Adagrad" else torch.float32)
        optimizer = cls(params, lr=0.05, **({} if cls is theirs(name) else {"impl": impl}))
        for step in range(5):
            if how.startswith("Adagrad") and step == 0:
                for p in params:
                    p.data = p.data.float()
            if how.startswith("Adam") and step == 2:
                for p in params[widened]:
                    optimizer.state[p]["exp_avg_sq"] = optimizer.state[p]["exp_avg_sq"].double()
            optimizer.zero_grad()
            _loss(params).backward()
            optimizer.step()
        runs.append((params, optimizer))
    (ours_params, ours_optimizer), (torch_params, torch_optimizer) = runs[1], runs[0]
    for a, b in zip(ours_params, torch_params):
        assert a.dtype == b.dtype == torch.float32
        assert torch.equal(a, b)
        for key, value in torch_optimizer.state[b].items():
            assert ours_optimizer.state[a][key].dtype == value.dtype, key


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("shapes", ["packed", "mixed"])
@pytest.mark.parametrize("how", ["data", "set_", "step-data", "step-zero_"])
def test_state_tensor_changed_where_it_stays_the_same_object_is_used(how, shapes, impl):
    """``state[p][key].data = t`` or ``.set_(t)`` keeps the tensor object (no dict entry
    changes) but moves its data; an in-place ``zero_()`` of a step counter restarts the bias
    corrections: torch reads the state at every step and uses them. (The packed and flat
    layouts kept their own buffers, the flat one its host copy of the count: 3e-3 to 0.5
    apart.)"""
    runs = []
    for cls in (torch.optim.Adam, optim.Adam):
        params = _params(SETS[shapes])
        optimizer = cls(params, lr=0.01, **({} if cls is torch.optim.Adam else {"impl": impl}))
        for step in range(5):
            if step == 3:
                state = optimizer.state[params[0]]
                if how == "data":
                    state["exp_avg"].data = torch.full_like(params[0], 0.5)
                elif how == "set_":
                    state["exp_avg"].set_(torch.full_like(params[0], 0.5))
                elif how == "step-data":
                    state["step"].data = torch.tensor(100.0, dtype=state["step"].dtype)
                else:
                    for p in params:
                        optimizer.state[p]["step"].zero_()
            optimizer.zero_grad()
            _loss(params).backward()
            optimizer.step()
        runs.append((optimizer, params))
    (t_opt, t_params), (o_opt, o_params) = runs
    for a, b in zip(o_params, t_params):
        assert torch.equal(a, b)
    _assert_same_state(t_opt, o_opt, rtol=0, unlike=("foreach",))


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
def test_parameter_data_reshaped_to_as_many_elements_fails_as_torch_does(impl, metadata_check):
    """``p.data`` replaced by a tensor of another shape with as many elements leaves state of
    the old shape: torch raises; the flat layout rebuilt itself around it and trained on."""
    errors = []
    for cls, kwargs in ((torch.optim.Adam, {}), (optim.Adam, {"impl": impl})):
        params = _params([(6, 23), (5,)])
        optimizer = cls(params, lr=0.1, **kwargs)
        _train(optimizer, params, 2)
        params[0].data = torch.randn(23, 6, dtype=params[0].dtype)
        with pytest.raises(RuntimeError) as error:
            _train(optimizer, params, 1)
        errors.append(str(error.value))
    assert errors[0] == errors[1]


def _assert_trains_or_fails_as_torch(name, impl, run):
    """``run(cls, options)`` (the parameters it trained) for torch's class and for ours on
    ``impl``: torch's numbers and shapes where torch trains on, its error with its text where it
    raises."""
    outcomes = []
    for cls, options in ((theirs(name), {}), (ours(name), {"impl": impl})):
        try:
            outcomes.append(run(cls, options))
        except RuntimeError as error:
            outcomes.append(str(error))
    expected, got = outcomes
    if isinstance(expected, str):
        assert got == expected  # torch's error, with its text
    else:
        assert [p.shape for p in got] == [p.shape for p in expected]
        _close(got, expected)


def _reshaped_in_place(cls, kwargs, reshape_state, reshaped):
    """Three steps over a set of :data:`SETS`; before the second, ``p.data = p.data.view(shape)``
    (the same memory, another shape) for each ``position: shape`` of ``reshaped[1]`` in the set
    ``reshaped[0]``, and with ``reshape_state`` their state tensors too. Gradients are set
    directly: autograd keeps a leaf's old shape."""
    shapes, reshaped = reshaped
    params = _params(SETS[shapes])
    optimizer = cls(params, **kwargs)
    for step in range(3):
        if step == 1:
            for i, shape in reshaped.items():
                params[i].data = params[i].data.view(shape)
                for key, value in list(optimizer.state[params[i]].items()):
                    if reshape_state and value.dim() > 0:
                        optimizer.state[params[i]][key] = value.view(shape)
        for i, p in enumerate(params):
            p.grad = torch.cos(p.detach() * (i + 1)) + 0.1 * p.detach()
        optimizer.step()
    return params


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize(
    "reshaped",
    [
        ("packed", {0: (5, 7)}),
        ("packed", {-1: (3, 3)}),
        ("packed", {-1: (1, 9)}),
        ("blocked", {0: (5, 157)}),  # larger than a block: updated in flat slices
        ("blocked", {-1: (9, 40)}),
    ],
    ids=["packed-2-d", "packed-1-d", "packed-1-d-to-row", "blocked-1-d", "blocked-2-d"],
)
@pytest.mark.parametrize(
    ("name", "kwargs", "reshape_state"),
    [
        ("SGD", {"lr": 0.05}, False),  # no state: torch trains on
        ("Adam", {"lr": 0.01}, True),  # the state reshaped alike: torch trains on
        ("Adagrad", {"lr": 0.05}, False),  # state of the old shape: torch raises
        ("SGD", {"lr": 0.05, "momentum": 0.9}, False),
    ],
    ids=["SGD-stateless", "Adam-state-reshaped", "Adagrad-state-kept", "SGD-momentum-kept"],
)
def test_parameter_data_reshaped_in_place_trains_or_fails_as_torch_does(
    name, kwargs, reshape_state, reshaped, impl, metadata_check
):
    """``p.data = p.data.view(shape)`` keeps the parameter's memory, address and element count,
    so only its shape tells the layouts (packed state, the flat buffer) that it changed: torch's
    numbers where torch trains on, torch's error with its text where it raises."""
    _assert_trains_or_fails_as_torch(
        name,
        impl,
        lambda cls, options: _reshaped_in_place(
            cls, {**kwargs, **options}, reshape_state, reshaped
        ),
    )


def _square_run(cls, kwargs, count, change, kept_gradients=False):
    """Steps of ``cls(params, **kwargs)`` over ``count`` 6x6 float64 parameters, their gradients
    set directly (autograd keeps a leaf's first strides). Four steps, ``change(optimizer,
    params)`` before the third; with ``kept_gradients``, six steps whose gradients are written
    in place after the first (a loop that keeps its gradients: the flat layout's gradient
    views stay the gradients), ``change`` after the fifth step's are written, when every
    layout is steady (built, then verified at two steps). Returns the parameters."""
    generator = torch.Generator().manual_seed(0)
    params = [
        torch.randn(6, 6, dtype=torch.float64, generator=generator).requires_grad_()
        for _ in range(count)
    ]
    optimizer = cls(params, **kwargs)
    for step in range(6 if kept_gradients else 4):
        if step == 2 and not kept_gradients:
            change(optimizer, params)
        for i, p in enumerate(params):
            grad = torch.cos(p.detach() * (i + 1) + torch.arange(36.0).view(6, 6).to(p))
            if kept_gradients and p.grad is not None:
                p.grad.copy_(grad + step)
            else:
                p.grad = grad
        if step == 4 and kept_gradients:
            change(optimizer, params)
        optimizer.step()
    return params


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("count", [3, PACK_AT_LEAST + 4], ids=["few", "packed"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "Adagrad"])
def test_a_square_parameter_transposed_in_its_own_memory_trains_as_torch(
    name, count, impl, metadata_check
):
    """``p.data = p.data.t()`` on a square matrix keeps the address, the element count and the
    shape; only the strides change. torch pairs the state with the parameter by index, so its
    element (i, j) now meets the state's (i, j), which lies elsewhere in memory. The flat path
    paired them by memory and trained on silently (SGD's parameters 0.52 apart after 4 steps)."""
    kwargs = {"lr": 0.05, "momentum": 0.9} if name == "SGD" else {"lr": 0.05}

    def transpose(optimizer, params):
        params[0].data = params[0].data.t()

    expected = _square_run(theirs(name), kwargs, count, transpose)
    _close(_square_run(ours(name), {**kwargs, "impl": impl}, count, transpose), expected)


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("count", [3, PACK_AT_LEAST + 4], ids=["few", "packed"])
@pytest.mark.parametrize("how", ["t_", "resize_"])
@pytest.mark.parametrize(
    ("name", "key"), [("Adam", "exp_avg"), ("SGD", "momentum_buffer"), ("Adagrad", "sum")]
)
def test_a_state_tensor_reshaped_in_place_is_used_as_torch_uses_it(name, key, how, count, impl):
    """``state[p][key].t_()`` or ``.resize_(n)`` keeps the tensor and its data but changes its
    shape: torch pairs the transposed state with the parameter by index, and refuses the
    resized one. The packed and flat layouts kept their own layout of that state: Adam's
    parameters 0.03 apart after the transpose, and trained on where torch raised."""
    kwargs = {"lr": 0.05, "momentum": 0.9} if name == "SGD" else {"lr": 0.05}

    def reshape(optimizer, params):
        state = optimizer.state[params[0]][key]
        if how == "t_":
            state.t_()
        else:
            state.resize_(36)

    _assert_trains_or_fails_as_torch(
        name,
        impl,
        lambda cls, options: _square_run(cls, {**kwargs, **options}, count, reshape),
    )


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("count", [3, PACK_AT_LEAST + 4], ids=["few", "packed"])
@pytest.mark.parametrize(
    "how", ["state-data-t", "state-data-view", "grad-data", "grad-set_", "grad-data-t"]
)
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_data_moved_under_a_state_or_gradient_in_a_steady_step_is_used_as_torch(
    name, how, count, impl
):
    """``.data = t`` under a state tensor or a gradient keeps the object, its identity and
    every version counter; ``.set_(t)`` keeps the object. torch reads the tensor where it now
    lies, with its strides: a transposed state pairs with the parameter by index, a state of
    36 elements is refused, a gradient moved elsewhere is read there. Steady layouts had
    checked the state views' shapes only after a version counter moved, and the flat layout's
    gradient views by identity only: after a transposed state the parameters were 0.10 (Adam)
    and 0.28 (SGD) apart, packed and flat, where torch refused the 36-element state they
    trained on; after a moved gradient, 0.05 and 0.16-0.17 apart (flat)."""
    kwargs = {"lr": 0.05, "momentum": 0.9} if name == "SGD" else {"lr": 0.05}
    key = "momentum_buffer" if name == "SGD" else "exp_avg"

    def change(optimizer, params):
        state, grad = optimizer.state[params[0]][key], params[0].grad
        if how == "state-data-t":
            state.data = state.data.t()
        elif how == "state-data-view":
            state.data = state.data.view(36)
        elif how == "grad-data":
            grad.data = torch.full_like(grad, 0.5)
        elif how == "grad-set_":
            grad.set_(torch.full_like(grad, 0.5))
        else:
            grad.data = grad.data.t()

    _assert_trains_or_fails_as_torch(
        name,
        impl,
        lambda cls, options: _square_run(cls, {**kwargs, **options}, count, change, True),
    )


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("shapes", ["packed", "mixed"])
@pytest.mark.parametrize(
    ("name", "key"), [("Adam", "exp_avg"), ("SGD", "momentum_buffer"), ("Adagrad", "sum")]
)
def test_a_state_tensor_taken_as_soon_as_it_exists_stays_the_live_state(name, key, shapes, impl):
    """A reference to a state tensor, taken as soon as it exists (after the first step; Adagrad's
    at construction), by a monitor logging a norm every step or to reset the momentum through
    it, is torch's live state at every later step: it is what ``optimizer.state`` holds, it
    reads each step's values, and an in-place write through it is used. The packed and flat
    layouts, built at the second step or the first, put views in its place: the reference read
    the values it had then, and a reset through it was ignored."""
    kwargs = {"lr": 0.05, "momentum": 0.9} if name == "SGD" else {"lr": 0.05}
    runs = []
    for cls, options in ((theirs(name), {}), (ours(name), {"impl": impl})):
        params = _params(SETS[shapes])
        optimizer = cls(params, **kwargs, **options)
        norms = []
        held = optimizer.state[params[-1]].get(key)  # (Adagrad's, made at construction)
        for step in range(5):
            optimizer.zero_grad()
            _loss(params).backward()
            optimizer.step()
            if held is None:
                held = optimizer.state[params[-1]][key]
            norms.append(held.norm().item())
            if step == 2:
                held.zero_()  # (a reset through the reference)
        assert held is optimizer.state[params[-1]][key]
        runs.append((params, norms))
    (torch_params, torch_norms), (our_params, our_norms) = runs
    assert our_norms == torch_norms
    _close(our_params, torch_params)


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("shapes", ["packed", "mixed"])
def test_parameters_sharing_memory_get_every_update_as_torch(shapes, impl):
    """``p1.data = p0.data`` (two parameters, one memory) before the optimizer is made: torch
    writes both updates into it, in its path's order (its two paths differ), so ours gives the
    path's bits (foreach and flat: torch's foreach path; single: its for-loop path). The packed
    step updated copies and wrote the last one back (0.02 apart), the flat layout untied them."""
    runs = []
    torch_kwargs = {"foreach": impl != "single"}
    for cls, kwargs in ((torch.optim.AdamW, torch_kwargs), (optim.AdamW, {"impl": impl})):
        params = _params(SETS[shapes], torch.float32)
        params[1].data = params[0].data  # (p1 takes p0's shape and memory)
        optimizer = cls(params, lr=0.01, weight_decay=0.1, **kwargs)
        _train(optimizer, params, 3)
        runs.append(params)
    assert runs[1][1].data_ptr() == runs[1][0].data_ptr()
    for a, b in zip(runs[1], runs[0]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("path", ["flat", "fused"])
@pytest.mark.parametrize("shapes", ["packed", "mixed"])
def test_parameters_in_shared_memory_are_trained_where_they_lie_as_torch(shapes, path):
    """Parameters in shared memory (``model.share_memory()``), trained by another process, as
    Hogwild trains one model from several: the flat path (``impl="flat"``, ``fused=True``)
    updates them where they lie, so the sharing process sees the updates, with the numbers of
    torch's foreach path (flat) and of its fused kernels (to rounding). Before, the flat path
    moved them into a buffer of its own, and the shared model stayed as it was."""
    torch_kwargs = {"foreach": True} if path == "flat" else {"fused": True}
    our_kwargs = {"impl": "flat"} if path == "flat" else {"fused": True}
    runs = []
    for cls, kwargs in ((torch.optim.AdamW, torch_kwargs), (optim.AdamW, our_kwargs)):
        params = [p.detach().share_memory_().requires_grad_() for p in _params(SETS[shapes])]
        optimizer = cls(params, lr=0.01, **kwargs)
        assert in_a_forked_child(functools.partial(_train_forked, optimizer, params, 4)) == 0
        runs.append(params)
    untouched = _params(SETS[shapes])
    assert not any(torch.equal(a, b) for a, b in zip(runs[0], untouched))
    if path == "flat":
        for a, b in zip(runs[1], runs[0]):
            assert torch.equal(a, b)
    else:
        _close(runs[1], runs[0])


def _shared_adam(base):
    """The shared Adam of A3C implementations (pytorch-a3c's ``SharedAdam``): a subclass that
    makes its state at construction, a 1-element step counter included, and moves all of it
    into shared memory, so that forked workers update one state as they update one model."""

    class SharedAdam(base):
        def __init__(self, params, **kwargs):
            super().__init__(params, **kwargs)
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state[p]
                    state["step"] = torch.zeros(1)
                    state["exp_avg"] = torch.zeros_like(p.data)
                    state["exp_avg_sq"] = torch.zeros_like(p.data)
                    for value in state.values():
                        value.share_memory_()

    return SharedAdam


def _hogwild(optimizer, params):
    """Two workers forked in turn, three steps each, then one step in the parent: each starts
    from the model and the optimizer state the one before it left in shared memory."""
    for _ in range(2):
        assert in_a_forked_child(functools.partial(_train_forked, optimizer, params, 3)) == 0
    _train(optimizer, params, 1)


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("shapes", ["packed", "mixed"])
def test_optimizer_state_in_shared_memory_is_updated_where_it_lies_as_torch(shapes, impl):
    """A3C's shared Adam (:func:`_shared_adam`) on our Adam, its model in shared memory: each
    worker's steps update the shared state where it lies, as torch's do, and the parent's step
    after two workers has torch's bits (its foreach path; ``single``: its for-loop path).
    Before, the default path packed the state into buffers of each process's own: the workers'
    moments and counts never reached shared memory (the parent's step count stayed at 1), and
    the parent's step moved the parameters 0.056 away from torch's in float32."""
    torch_kwargs = {"foreach": impl != "single"}
    runs = []
    for base, kwargs in ((torch.optim.Adam, torch_kwargs), (optim.Adam, {"impl": impl})):
        params = [p.detach().share_memory_().requires_grad_() for p in _params(SETS[shapes])]
        optimizer = _shared_adam(base)(params, lr=0.01, **kwargs)
        _hogwild(optimizer, params)
        runs.append((params, optimizer))
    (theirs_params, theirs_opt), (our_params, our_opt) = runs
    for a, b in zip(our_params, theirs_params):
        assert torch.equal(a, b)
    for p, q in zip(our_params, theirs_params):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(our_opt.state[p][key], theirs_opt.state[q][key])
    assert float(our_opt.state[our_params[0]]["step"]) == 7


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("when", ["at_construction", "after_steps"])
def test_adagrad_share_memory_shares_its_sums_as_torch(when, impl):
    """``Adagrad.share_memory()``, torch's method (before, ours had none: AttributeError): called
    at construction or after the state was packed or laid out, forked workers then accumulate
    into one ``sum`` in shared memory, with torch's bits."""
    torch_kwargs = {"foreach": impl != "single"}
    runs = []
    for cls, kwargs in ((torch.optim.Adagrad, torch_kwargs), (optim.Adagrad, {"impl": impl})):
        params = [p.detach().share_memory_().requires_grad_() for p in _params(SETS["packed"])]
        optimizer = cls(params, lr=0.1, **kwargs)
        if when == "after_steps":
            _train(optimizer, params, 2)
        optimizer.share_memory()
        _hogwild(optimizer, params)
        runs.append((params, optimizer))
    (theirs_params, theirs_opt), (our_params, our_opt) = runs
    for p, q in zip(our_params, theirs_params):
        assert torch.equal(p, q)
        assert torch.equal(our_opt.state[p]["sum"], theirs_opt.state[q]["sum"])
        assert our_opt.state[p]["sum"].is_shared()


def _params_viewing_one_buffer(shapes, dtype=torch.float64):
    """Leaf parameters that are views into one buffer of the user's (a contiguous parameter
    buffer, as Megatron and DeepSpeed keep one); the buffer, and the parameters."""
    sources = _params(shapes, dtype)
    buffer = torch.cat([s.detach().reshape(-1) for s in sources])
    params, start = [], 0
    for s in sources:
        params.append(torch.nn.Parameter(buffer[start : start + s.numel()].view(s.shape)))
        start += s.numel()
    return buffer, params


@pytest.mark.parametrize("compiled", [False, True], ids=["flat", "compiled"])
@pytest.mark.parametrize("shapes", ["packed", "mixed"])
def test_parameters_viewing_a_buffer_of_the_users_are_trained_where_they_lie_as_torch(
    shapes, compiled
):
    """Parameters that are views into one buffer of the user's: torch updates them in place,
    so the buffer holds the trained values, and so does ours on the flat path, with torch's
    foreach bits (compiled: to rounding). Before, the flat path copied them into its own
    buffer, and the user's stayed as it was."""
    runs = []
    for cls, kwargs in (
        (torch.optim.AdamW, {"foreach": True}),
        (optim.AdamW, {"impl": "flat", "compile": compiled}),
    ):
        buffer, params = _params_viewing_one_buffer(SETS[shapes])
        _train(cls(params, lr=0.01, weight_decay=0.1, **kwargs), params, 3)
        assert torch.equal(buffer, torch.cat([p.detach().reshape(-1) for p in params]))
        runs.append(params)
    for a, b in zip(runs[1], runs[0]):
        assert torch.equal(a, b)


def test_a_kept_state_dict_sees_the_updates_as_torchs_on_the_flat_path():
    """``kept = model.state_dict()`` without a copy holds the parameters' memory: torch's
    in-place updates show in it, and so do ours on the flat path (before, the flat path moved
    the parameters out of that memory, and the kept dict stayed at the first values)."""
    kept = []
    for cls, kwargs in ((torch.optim.Adam, {"foreach": True}), (optim.Adam, {"impl": "flat"})):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        state_dict = model.state_dict()
        optimizer = cls(model.parameters(), lr=0.01, **kwargs)
        for _ in range(3):
            optimizer.zero_grad()
            model(torch.ones(4, 6)).square().sum().backward()
            optimizer.step()
        for name, p in model.named_parameters():
            assert torch.equal(state_dict[name], p.detach())
        kept.append(state_dict)
    for name in kept[0]:
        assert torch.equal(kept[1][name], kept[0][name])


@pytest.mark.parametrize("compiled", [False, True], ids=["flat", "compiled"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_a_parameter_whose_elements_overlap_gets_torchs_error_on_the_flat_path(name, compiled):
    """A parameter whose elements share memory (``torch.randn(1).expand(5)``) among 20 others:
    torch's foreach path refuses to write it, and so does ours on every path. Before, the flat
    path (``impl="flat"``, and compiled: ``compile=True``, ``fused=True``) moved it into its
    buffer as five independent elements and trained them apart, without a word (torch's fused
    kernels write the five updates over one another; ours raise torch's foreach error)."""
    overlap = "more than one element of the written-to tensor refers to a single memory location"
    kwargs = {"lr": 0.1, **({"momentum": 0.9} if name == "SGD" else {})}
    for cls, path_kwargs in (
        (theirs(name), {"foreach": True}),
        (ours(name), {"impl": "flat", "compile": compiled}),
    ):
        params = _params([(40,)] * 20, torch.float32)
        params.append(torch.randn(1).expand(5).requires_grad_())
        optimizer = cls(params, **kwargs, **path_kwargs)
        for p in params:
            p.grad = torch.ones(p.shape)
        with pytest.raises(RuntimeError, match=overlap):
            optimizer.step()
        assert params[-1].stride() == (0,)


def test_a_hyperparameter_list_changed_in_place_is_used():
    """``group["betas"]`` set to a list and changed in place later: torch reads the new value.
    (Groups differing only in lr ran as one call, planned once and checked by the values'
    identity: the stale beta1 stayed, 0.04 apart.)"""
    runs = []
    for cls in (torch.optim.Adam, optim.Adam):
        params = _params([(4,)] * 4)
        optimizer = cls([{"params": params[:2], "lr": 0.01}, {"params": params[2:], "lr": 0.02}])
        for group in optimizer.param_groups:
            group["betas"] = [0.9, 0.999]
        for step in range(5):
            if step == 3:
                for group in optimizer.param_groups:
                    group["betas"][0] = 0.0
            _train(optimizer, params, 1)
        runs.append(params)
    for a, b in zip(runs[1], runs[0]):
        assert torch.equal(a, b)


def test_model_moved_to_new_storage_after_the_first_step_keeps_training():
    """``model.to(memory_format=...)`` after a step gives every weight new storage: torch keeps
    training them, and so must we (the flat default silently stopped)."""
    runs = []
    for cls in (torch.optim.Adam, optim.Adam):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 36, 2)
        )
        optimizer = cls(model.parameters(), lr=0.05)
        data = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
        for step in range(6):
            if step == 2:
                model.to(memory_format=torch.channels_last)
            optimizer.zero_grad()
            model(data).pow(2).mean().backward()
            optimizer.step()
        runs.append([p.detach().clone() for p in model.parameters()])
    _close(runs[1], runs[0], rtol=1e-6)


class _PassThrough(TorchDispatchMode):
    """A dispatch mode that only runs each op (as a FLOP counter or a debugging mode would)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _frozen_with_its_gradient(params):
    """``requires_grad`` off for the step, the gradient kept: torch updates the parameter."""
    params[0].requires_grad_(False)
    try:
        yield
    finally:
        params[0].requires_grad_(True)


STEP_CONTEXTS = {
    "autocast": lambda params: torch.autocast("cpu", dtype=torch.bfloat16),
    "dispatch-mode": lambda params: _PassThrough(),
    "frozen-with-its-gradient": _frozen_with_its_gradient,
}


@pytest.mark.parametrize("context", list(STEP_CONTEXTS))
@pytest.mark.parametrize("impl", ["foreach", "flat"])
def test_a_step_in_another_dispatch_context_keeps_its_layout_and_torchs_numbers(context, impl):
    """Steps inside ``torch.autocast`` or a dispatch mode, or with ``requires_grad`` off and a
    gradient kept, show other dispatch keys or flags than the step that laid the state out, which
    torch.compile's tensor guard compares (``optim._paths.Metadata``). They are checked again on
    the metadata the layout depends on, and train on in the same layout with torch's numbers."""
    results = []
    for cls, kwargs in ((torch.optim.Adam, {}), (optim.Adam, {"impl": impl})):
        params = _params(SETS["packed"])
        optimizer = cls(params, lr=0.01, **kwargs)
        _train(optimizer, params, 2)
        laid_out = list(getattr(optimizer, "_layouts", {}).get(0, ()))
        optimizer.zero_grad()
        _loss(params).backward()
        with STEP_CONTEXTS[context](params):
            optimizer.step()
        _train(optimizer, params, 1)
        results.append((optimizer, params))
    (t_opt, t_params), (o_opt, o_params) = results
    _close(o_params, t_params)
    _assert_same_state(t_opt, o_opt)
    assert laid_out
    assert all(map(operator.is_, o_opt._layouts[0], laid_out))


@pytest.mark.parametrize("impl", ["foreach", "flat"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_steps_under_another_default_device_keep_torchs_numbers(name, impl, fresh_process_caches):
    """A script that sets another default device (``torch.set_default_device("cuda")``, ``with
    torch.device(...)``) and keeps its model on the CPU: what a step makes for the CPU
    parameters is made on the CPU, so it trains as torch's. A number operand kept from a first
    step under a "meta" default device was a meta tensor, and Adam's packed steps then ended
    0.02 from torch's. Ours steps first, in a process whose caches are empty; torch's outside
    the context (inside it, torch's RMSprop and Adadelta make their step counters there)."""
    kwargs = {"momentum": 0.9} if name == "SGD" else {}
    results = []
    for cls, extra, default_device in (
        (getattr(optim, name), {"impl": impl}, torch.device("meta")),
        (getattr(torch.optim, name), {}, contextlib.nullcontext()),  # (torch's own fails there)
    ):
        params = _params(SETS["packed"])
        optimizer = cls(params, lr=0.01, **kwargs, **extra)
        for _ in range(3):
            optimizer.zero_grad()
            _loss(params).backward()
            with default_device:
                optimizer.step()
        results.append((optimizer, params))
    (o_opt, o_params), (t_opt, t_params) = results
    _close(o_params, t_params)
    _assert_same_state(t_opt, o_opt)


def _backward_after_a_step(make, shapes: list[tuple[int, ...]], closure: bool = False) -> str:
    """Two steps of ``make``'s optimizer, a graph that saves a parameter, a third step, then
    that graph's backward: its error's message, or "ran"."""
    generator = torch.Generator().manual_seed(3)
    params = [torch.randn(s, generator=generator).requires_grad_() for s in shapes]
    optimizer = make(params)

    def loss() -> torch.Tensor:
        return sum((p * p).sum() for p in params)

    for _ in range(2):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step(loss if closure else None)
    saved = (params[1] * params[1]).sum()  # saves params[1] for its backward
    optimizer.zero_grad()
    loss().backward()
    optimizer.step(loss if closure else None)
    try:
        saved.backward()
    except RuntimeError as error:
        return str(error)
    return "ran"


@pytest.mark.parametrize("shapes", sorted(SETS))
@pytest.mark.parametrize("path", ["single", "foreach", "flat", "default"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_a_parameter_saved_for_backward_then_stepped_fails_that_backward_as_torch(
    name, path, shapes
):
    """torch.optim's step is an in-place op on each parameter, counted in its version: a graph
    that saved a parameter before the step raises at its backward instead of computing with
    the new values. Every path of ours too: the packed default path adds its update below
    autograd's layers and counts it itself (``optim._paths.write_in_place``), and the flat
    path updates a buffer that the parameters' ``.data`` views share no counter with (before
    ``Flat.params_updated``, that backward ran, silently)."""
    kwargs = {"lr": 0.5} if name == "Adadelta" else {"lr": 0.01}
    options = {} if path == "default" else {"impl": path}
    expected = _backward_after_a_step(
        lambda ps: getattr(torch.optim, name)(ps, **kwargs), SETS[shapes]
    )
    assert "modified by an inplace operation" in expected
    ours = _backward_after_a_step(
        lambda ps: getattr(optim, name)(ps, **kwargs, **options), SETS[shapes]
    )
    assert "modified by an inplace operation" in ours


def test_a_compiled_step_also_fails_a_backward_that_saved_a_parameter():
    """As above, on the compiled flat path (one optimizer: compiling is slow)."""
    ours = _backward_after_a_step(
        lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9, compile=True), SETS["packed"]
    )
    assert "modified by an inplace operation" in ours


@pytest.mark.parametrize(
    ("name", "kwargs"), [("SGD", {"momentum": 0.9}), ("Adam", {}), ("RMSprop", {})]
)
def test_inference_tensors_stepped_outside_inference_mode_raise_as_torch(name, kwargs):
    """torch.optim refuses to update parameters made inside ``torch.inference_mode()`` once
    outside it (autograd's layer raises); the packed default path, which otherwise adds its
    update below that layer, raises the same error (a first step inside inference mode, a
    second outside: ours packs its state there)."""
    errors = []
    for module in (torch.optim, optim):
        with torch.inference_mode():
            params = [torch.randn(s) for s in SETS["packed"]]
            for p in params:
                p.grad = torch.ones_like(p)
            optimizer = getattr(module, name)(params, lr=0.01, **kwargs)
            optimizer.step()
        with pytest.raises(RuntimeError, match="Inplace update to inference tensor") as caught:
            optimizer.step()
        errors.append(str(caught.value))
    assert errors[0] == errors[1]


@pytest.mark.parametrize(
    ("impl", "shapes"),
    [("foreach", "blocked"), ("foreach", "packed"), ("flat", "blocked")],
    ids=["plain-state", "packed-state", "flat-state"],
)
@pytest.mark.parametrize("name", ["Adam", "RMSprop"])
def test_a_first_step_inside_inference_mode_then_steps_outside_it(name, impl, shapes):
    """What ``optim._paths.OUTSIDE_INFERENCE_MODE`` states: after a first step inside
    ``torch.inference_mode()``, torch's state (made lazily, at that step) is made of inference
    tensors, and its next step outside raises. Ours raises the same error on the default path,
    where the state stays in those tensors (blocked lists; a packed layout is not built from
    inference tensors: it had copied them into normal buffers and trained on), and trains on
    where the flat layout holds the state in normal buffers, with the numbers torch gives once
    its state is made normal tensors after that first step."""

    def run(optimizer, params, after_first_step=None):
        for step in range(3):
            for p in params:
                p.grad = torch.full_like(p, 0.1 * (step + 1)).sin_().add_(p.detach())
            with torch.inference_mode(step == 0):
                optimizer.step()
            if step == 0 and after_first_step is not None:
                after_first_step(optimizer)

    def as_normal_tensors(optimizer):
        for state in optimizer.state.values():
            for key, value in state.items():
                state[key] = value.clone() if torch.is_tensor(value) else value

    params = _params(SETS[shapes])
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor") as torch_error:
        run(theirs(name)(params, lr=0.01), params)
    if impl == "foreach":  # (the state stays in torch's own tensors)
        params = _params(SETS[shapes])
        with pytest.raises(RuntimeError) as our_error:
            run(ours(name)(params, lr=0.01, impl=impl), params)
        assert str(our_error.value) == str(torch_error.value)
        return
    mine, reference = _params(SETS[shapes]), _params(SETS[shapes])
    run(ours(name)(mine, lr=0.01, impl=impl), mine)
    run(theirs(name)(reference, lr=0.01), reference, as_normal_tensors)
    _close(mine, reference)


@pytest.mark.parametrize("impl", ["foreach", "flat"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_steps_inside_inference_mode_keep_torchs_numbers(name, impl, fresh_process_caches):
    """Steps inside ``torch.inference_mode()`` (gradients set by hand, test-time adaptation):
    from the first step on, and, after normal steps, a step there that lays the state out anew
    (``p.data`` replaced), followed by normal steps again. torch's state made there is made of
    inference tensors; ours lay their own buffers out as normal tensors (an inference tensor has
    no version counter: reading it raised at the second step, and a layout made there failed
    every normal step after it, where torch's trains on)."""
    kwargs = {"momentum": 0.9} if name == "SGD" else {}
    results = []
    for cls, extra in ((getattr(optim, name), {"impl": impl}), (getattr(torch.optim, name), {})):
        params = _params(SETS["packed"])
        optimizer = cls(params, lr=0.01, **kwargs, **extra)
        late = _params(SETS["packed"], seed=1)
        late_optimizer = cls(late, lr=0.01, **kwargs, **extra)
        for step in range(3):
            for p in (*params, *late):
                p.grad = torch.full_like(p, 0.1 * (step + 1)).sin_().add_(p.detach())
            steps_around_inference_mode(optimizer, late_optimizer, late, step)
        results.append((optimizer, params, late_optimizer, late))
    (o_opt, o_params, o_late_opt, o_late), (t_opt, t_params, t_late_opt, t_late) = results
    _close(o_params, t_params)
    _close(o_late, t_late)
    _assert_same_state(t_opt, o_opt)
    _assert_same_state(t_late_opt, o_late_opt)


@pytest.mark.parametrize("impl", ["foreach", "flat"])
def test_steps_always_inside_autocast_take_the_python_passes_once(impl, monkeypatch):
    """A script that steps inside ``torch.autocast`` shows other dispatch keys than the step
    that laid the state out: the passes confirm the layout once (each of its checks: the
    parameters', the state views', the flat gradient views'), and a tensor guard built in that
    context checks the steps after it (``optim._paths.Metadata``)."""
    passes = []
    passes_hold = _paths.Metadata.passes_hold
    monkeypatch.setattr(
        _paths.Metadata,
        "passes_hold",
        lambda self, t: passes.append(id(self)) or passes_hold(self, t),
    )
    params = _params(SETS["packed"])
    optimizer = optim.Adam(params, lr=0.01, impl=impl)
    _train(optimizer, params, 2)  # laid out, then checked by the guard
    assert passes == []
    counts = []
    for _ in range(4):
        optimizer.zero_grad(set_to_none=False)  # (the flat layout's gradient views are checked)
        _loss(params).backward()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            optimizer.step()
        counts.append(len(passes))
    assert counts[0] >= 2
    assert counts == [counts[0]] * 4
    assert len(set(passes)) == len(passes)  # (once per check)


def _guard_of_dtypes_only(laid_out):
    dtypes = [t.dtype for t in laid_out]
    return lambda *tensors: [t.dtype for t in tensors] == dtypes


@pytest.mark.parametrize(
    "new_guard",
    [lambda laid_out: lambda *tensors: True, _guard_of_dtypes_only],
    ids=["says-yes-to-all", "checks-dtypes-only"],
)
def test_a_tensor_guard_that_checks_less_than_shape_and_strides_is_not_used(new_guard, monkeypatch):
    """torch.compile's tensor guard is a private API: a torch whose guard no longer notices a
    change of shape or strides (probed once per process) leaves the check to the Python passes,
    which still notice a reshaped parameter."""
    _paths._tensor_guard_notices_metadata.cache_clear()
    monkeypatch.setattr(_paths, "_new_tensor_guard", new_guard)
    try:
        params = _params([(4, 6), (5,)])
        assert _paths.tensor_guard(params) is None
        metadata = _paths.Metadata(params)
        params[0].data = params[0].data.view(6, 4)
        assert not metadata.holds(params)
    finally:
        _paths._tensor_guard_notices_metadata.cache_clear()


@pytest.mark.parametrize("default_dtype", [torch.float64, torch.bfloat16])
def test_the_tensor_guard_probe_holds_whatever_the_default_dtype(
    default_dtype, fresh_process_caches
):
    """The probe of torch.compile's tensor guard (once per process) gives its tensors' dtype
    itself. Before, a process whose first step ran with ``torch.set_default_dtype(
    torch.float64)`` probed a float64 tensor against a float64 one, took the guard's yes for
    missing a dtype change, and checked every layout with the slower Python passes (and
    called no compiled graph directly) for the rest of its life. The guard found is still the
    one that notices a reshaped parameter."""
    torch.set_default_dtype(default_dtype)  # (restored after each test: tests/conftest.py)
    params = _params([(4, 6), (5,)])
    assert _paths.tensor_guard(params) is not None
    metadata = _paths.Metadata(params)
    assert metadata.holds(params)
    params[0].data = params[0].data.view(6, 4)
    assert not metadata.holds(params)


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
def test_channels_last_parameters_keep_their_memory_format(impl):
    """On every path, the flat one included (its views take the parameter's strides)."""
    results = []
    for cls in (torch.optim.Adam, functools.partial(optim.Adam, impl=impl)):
        torch.manual_seed(0)
        conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
        optimizer = cls(conv.parameters(), lr=0.01)
        x = torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)
        for _ in range(3):
            optimizer.zero_grad()
            conv(x).pow(2).mean().backward()
            optimizer.step()
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        state = optimizer.state[conv.weight]
        assert state["exp_avg"].is_contiguous(memory_format=torch.channels_last)
        results.append(conv.weight.detach().clone())
    torch.testing.assert_close(results[1], results[0], rtol=1e-6, atol=1e-7)


def test_saving_a_submodule_writes_only_its_own_tensors():
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    model.extend(torch.nn.Linear(4, 4) for _ in range(PACK_AT_LEAST))  # enough to be packed
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        optimizer.zero_grad()
        sum(p.sum() for p in model.parameters()).backward()
        optimizer.step()
    head = model[2]
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    own_bytes = sum(t.numel() * t.element_size() for t in head.state_dict().values())
    assert buffer.getbuffer().nbytes < own_bytes + 2048


# --- constructor ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_constructor_signature_is_torchs(name):
    """Same names, order, kinds and defaults as torch.optim; ours adds impl and compile last."""
    theirs_sig = inspect.signature(theirs(name).__init__).parameters
    ours_sig = dict(inspect.signature(ours(name).__init__).parameters)
    extra = [ours_sig.pop("impl"), ours_sig.pop("compile")]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in extra)
    assert list(ours_sig) == list(theirs_sig)
    for key, parameter in theirs_sig.items():
        assert ours_sig[key].kind == parameter.kind, key
        assert ours_sig[key].default == parameter.default, key


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_param_groups_carry_torchs_keys(name):
    params = _params([(3, 2)])
    ours_group = ours(name)(params).param_groups[0]
    theirs_group = theirs(name)(params).param_groups[0]
    assert ours_group.keys() == theirs_group.keys()
    for key, value in theirs_group.items():
        if key != "params":
            assert ours_group[key] == value, key


def test_adagrad_seventh_positional_is_foreach():
    params = _params([(3,)])
    assert optim.Adagrad(params, 0.1, 0, 0, 0, 1e-10, False).impl == "single"
    assert optim.Adagrad(params, 0.1, 0, 0, 0, 1e-10, True).impl == "foreach"


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("shapes", list(SETS.values()), ids=list(SETS))
def test_adagrad_sums_start_at_the_constructors_value_whatever_the_groups_as_torch(shapes, impl):
    """torch.optim.Adagrad starts every tensor's ``sum`` at ``self.defaults
    ["initial_accumulator_value"]``, the constructor's value, in its constructor and for state
    made later (a group added, the state cleared): a group's own value is kept in the group
    but not used. Ours started them at the group's value, so two groups of 0 and 0.1 trained
    apart from torch from the first step (found by a random two-group probe beside torch)."""
    results = []
    for cls, keywords in ((theirs("Adagrad"), {"foreach": impl != "single"}),
                          (optim.Adagrad, {"impl": impl})):  # fmt: skip
        params = _params(shapes)
        half = len(params) // 2
        extra = _params([(4, 3)] * PACK_AT_LEAST, seed=1)
        groups = [
            {"params": params[:half]},
            {"params": params[half:], "initial_accumulator_value": 0.5},
        ]
        optimizer = cls(
            groups,
            lr=0.05,
            initial_accumulator_value=0.1,
            **keywords,
        )
        _train(optimizer, params, 3)
        optimizer.add_param_group({"params": extra, "initial_accumulator_value": 2.0})
        _train(optimizer, params + extra, 3)
        optimizer.state.clear()  # (torch starts each sum again, lazily)
        optimizer.defaults["initial_accumulator_value"] = 0.3  # (read at that point, as torch)
        _train(optimizer, params + extra, 3)
        results.append((optimizer, params + extra))
    (t_opt, t_params), (o_opt, o_params) = results
    for a, b in zip(o_params, t_params):
        assert torch.equal(a, b)
    _assert_same_state(t_opt, o_opt, rtol=0, unlike=("foreach", "fused"))


@pytest.mark.parametrize(
    ("keywords", "impl", "compiled"),
    [
        ({"foreach": True}, "foreach", False),
        ({"foreach": False}, "single", False),
        ({"foreach": None}, "foreach", False),
        ({"fused": True}, "flat", True),
        ({"fused": False}, "foreach", False),
    ],
)
def test_torch_path_keywords_pick_the_path(keywords, impl, compiled):
    optimizer = optim.Adam(_params([(3,)]), **keywords)
    assert (optimizer.impl, optimizer.compile) == (impl, compiled)
    assert optimizer.param_groups[0]["foreach"] == keywords.get("foreach")


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"differentiable": True}, "differentiable=True"),
        ({"capturable": True}, "capturable=True"),
        ({"fused": True, "foreach": True}, "`fused` and `foreach` cannot be `True` together"),
        ({"foreach": False, "impl": "flat"}, "contradictory"),
        ({"foreach": "yes"}, "foreach"),
    ],
)
def test_what_cannot_be_honoured_is_refused_with_the_reason(keywords, message):
    with pytest.raises((ValueError, TypeError), match=message):
        optim.Adam(_params([(3,)]), **keywords)


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "Adam"])
def test_a_capturable_group_key_on_a_cpu_as_torch(name):
    """``add_param_group({"params": ..., "capturable": True})`` on a CPU. torch's SGD and
    Adagrad have no ``capturable`` and ignore the key: ours refused it (found by a probe of
    per-group keys); they now train as torch. Adam refuses it, as torch does at its step, and
    the refused group is taken back, so the optimizer is as it was."""
    results = []
    for cls in (theirs(name), ours(name)):
        params, extra = _params([(4, 3)]), _params([(5,)], seed=1)
        optimizer = cls(params, lr=0.05)

        def add_and_step(optimizer=optimizer, params=params, extra=extra):
            optimizer.add_param_group({"params": extra, "capturable": True})
            _train(optimizer, params + extra, 1)  # (torch refuses at the step)

        if name == "Adam":
            with pytest.raises((ValueError, AssertionError), match="capturable=True"):
                add_and_step()
            if cls is ours(name):
                assert len(optimizer.param_groups) == 1
            continue
        optimizer.add_param_group({"params": extra, "capturable": True})
        _train(optimizer, params + extra, 3)
        results.append(params + extra)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_refusals_torch_raises_as_runtime_error_are_runtime_errors_too():
    """torch raises RuntimeError for fused with foreach (and for fused with differentiable);
    ours are UnsupportedOptionError, a ValueError and a RuntimeError both."""
    with pytest.raises(RuntimeError, match="cannot be `True` together"):
        torch.optim.SGD(_params([(3,)]), lr=0.1, fused=True, foreach=True)
    for keywords in ({"fused": True, "foreach": True}, {"differentiable": True}):
        with pytest.raises(RuntimeError):
            optim.SGD(_params([(3,)]), lr=0.1, **keywords)
        with pytest.raises(ValueError, match=r"fused|differentiable"):
            optim.SGD(_params([(3,)]), lr=0.1, **keywords)


@pytest.mark.parametrize(
    "betas",
    [
        (torch.tensor([[0.9]]), torch.tensor([0.99])),
        (torch.tensor(0.9), torch.tensor([[[0.99]]])),
        (0.9, 0.99),
    ],
)
def test_adam_keeps_betas_as_torch_keeps_them(betas):
    """torch squeezes 1-element tensor betas to 0-dim in the param group (its state dict)."""
    theirs_betas = torch.optim.Adam(_params([(3,)]), betas=betas).param_groups[0]["betas"]
    ours_betas = optim.Adam(_params([(3,)]), betas=betas).param_groups[0]["betas"]
    assert isinstance(ours_betas, tuple)
    for mine, reference, given in zip(ours_betas, theirs_betas, betas, strict=True):
        assert type(mine) is type(reference)
        assert (mine is given) == (reference is given)  # a 0-dim tensor is kept, not copied
        if isinstance(reference, torch.Tensor):
            assert mine.shape == reference.shape
            assert torch.equal(mine, reference)
        else:
            assert mine == reference


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": torch.tensor(0.01), "foreach": True},
        {"betas": (0.9, torch.tensor(0.99))},
        {"betas": (0, 0.99)},
        {"betas": (torch.tensor(0.9), torch.tensor(0.99)), "foreach": True},
    ],
)
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_refuses_the_tensor_hyperparameters_torch_refuses(name, kwargs):
    with pytest.raises(ValueError, match=r"Tensor|betas") as theirs_error:
        getattr(torch.optim, name)(_params([(3,)]), **kwargs)
    with pytest.raises(ValueError, match=re.escape(str(theirs_error.value))):
        getattr(optim, name)(_params([(3,)]), **kwargs)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_a_tensor_lr_set_later_with_foreach_true_is_refused_at_the_step_as_torch(name):
    for module in (torch.optim, optim):
        params = _params([(3,)])
        optimizer = getattr(module, name)(params, lr=0.01, foreach=True)
        optimizer.param_groups[0]["lr"] = torch.tensor(0.01)
        for p in params:
            p.grad = torch.ones_like(p)
        with pytest.raises(RuntimeError, match="lr as a Tensor is not supported"):
            optimizer.step()


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("count", [1, 3, 30])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": torch.tensor(0.01), "weight_decay": 0.1},
        {"lr": torch.tensor(0.01), "weight_decay": 0.1, "maximize": True, "amsgrad": True},
        {"betas": (torch.tensor(0.9), torch.tensor(0.999)), "weight_decay": 0.1},
    ],
    ids=["tensor-lr", "tensor-lr-maximize-amsgrad", "tensor-betas"],
)
def test_adam_with_tensor_hyperparameters_decays_complex_parameters_as_torchs_default(
    kwargs, count, dtype
):
    """With a tensor ``lr`` or ``betas`` torch.optim.Adam's default is its for-loop path, whose
    weight decay of a complex parameter is taken in complex arithmetic before the real pairs;
    ours ran lists of real pairs, the foreach path's order: the moments an ulp apart from the
    first step, the parameters 3e-8 after 30 (complex64). Now torch's bits, state included."""
    runs = []
    for module in (torch.optim, optim):
        generator = torch.Generator().manual_seed(0)
        params = [
            torch.randn(3, 4, generator=generator, dtype=dtype).requires_grad_()
            for _ in range(count)
        ]
        optimizer = module.Adam(params, **kwargs)
        for t in range(20):
            optimizer.zero_grad()
            sum(
                ((p - 1).abs() ** 2).sum() + 0.1 * (t + 1) * (p.real * p.imag).sum() for p in params
            ).backward()
            optimizer.step()
        runs.append((params, [optimizer.state[p] for p in params]))
    (theirs, their_state), (ours, our_state) = runs
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b), (a - b).abs().max()
    for a, b in zip(our_state, their_state):
        assert all(torch.equal(a[key], b[key]) for key in b)


def _step_without(module, name: str, key: str, count: int):
    """Two param groups of ``count`` tensors each (per-layer lrs, which the default path may
    merge), a step, then ``key`` deleted from the second group and another step: what that
    step raised (type and text, or None) and the parameters after it."""
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(4, generator=generator).requires_grad_() for _ in range(2 * count)]
    groups = [{"params": params[:count]}, {"params": params[count:], "lr": 0.02}]
    optimizer = getattr(module, name)(groups)
    for step in range(2):
        for p in params:
            p.grad = torch.randn(4, generator=generator)
        try:
            optimizer.step()
        except Exception as error:  # (compared with torch's below)
            return (type(error), str(error)), [p.detach().clone() for p in params]
        if step == 0:
            del optimizer.param_groups[1][key]
    return None, [p.detach().clone() for p in params]


@pytest.mark.parametrize("count", [2, 20])
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_a_param_group_missing_a_key_fails_as_torch(name, count):
    """A key deleted from a param group (or missing from a trimmed checkpoint, which torch's
    ``__setstate__`` does not refill): torch's step raises ``KeyError`` at that group's turn,
    the groups before it updated. Ours raised the rule's ``TypeError`` (a missing keyword
    argument) for the keys the rule takes, and trained on without ``foreach``, ``fused``,
    ``capturable`` or ``differentiable``. SGD's ``differentiable`` and Adagrad's
    ``initial_accumulator_value`` torch's step does not read: both train on."""
    keys = [k for k in getattr(torch.optim, name)(_params([(1,)])).param_groups[0] if k != "params"]
    raised = 0
    for key in keys:
        (their_error, theirs), (our_error, ours) = (
            _step_without(module, name, key, count) for module in (torch.optim, optim)
        )
        assert our_error == their_error, key
        raised += their_error is not None
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), key
    assert raised >= len(keys) - 1  # (torch's own behaviour, which this test pins)


def test_decoupled_weight_decay_makes_adam_adamw():
    runs = []
    for make in (
        lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
        lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    ):
        params = _params(SETS["mixed"])
        _train(make(params), params, 5)
        runs.append(params)
    _close(runs[1], runs[0])


def _tensor(value, dtype=torch.float32, dims=0):
    return torch.tensor(value, dtype=dtype).reshape((1,) * dims)


TENSOR_HYPERPARAMETER_CASES = [
    ("Adam", {"lr": _tensor(0.01)}),
    ("Adam", {"lr": _tensor(0.01, dims=2), "weight_decay": 0.1, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "betas": (_tensor(0.9, dims=2), _tensor(0.99, dims=2))}),
    ("Adam", {"lr": _tensor(0.02), "betas": (_tensor(0.3), _tensor(0.97)), "maximize": True}),
    ("Adam", {"lr": _tensor(0.01), "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("Adam", {"lr": _tensor(0.01, torch.float64), "betas": (_tensor(0.8), _tensor(0.95))}),
    ("AdamW", {"lr": _tensor(0.01)}),
    ("AdamW", {"lr": _tensor(0.003), "betas": (_tensor(0.9), _tensor(0.999)), "amsgrad": True}),
    ("Adagrad", {"lr": _tensor(0.1), "lr_decay": 0.01}),
    ("Adagrad", {"lr": _tensor(0.1, dims=1)}),
    ("SGD", {"lr": _tensor(0.03), "momentum": 0.9, "weight_decay": 0.01}),
    ("RMSprop", {"lr": _tensor(0.01), "momentum": 0.5}),
    ("Adadelta", {"lr": _tensor(0.7)}),
    ("SGD", {"lr": 0.1, "momentum": _tensor(0.3), "dampening": _tensor(0.3)}),
    ("SGD", {"lr": 0.1, "momentum": _tensor(0.0)}),  # torch reads it: no momentum buffer
    ("Adagrad", {"lr": 0.1, "lr_decay": _tensor(0.3)}),
    ("AdamW", {"lr": 0.01, "weight_decay": _tensor(0.3)}),
    ("RMSprop", {"lr": 0.01, "alpha": _tensor(0.3), "centered": True, "momentum": _tensor(0.5)}),
    ("Adadelta", {"rho": _tensor(0.3), "eps": _tensor(1e-3), "weight_decay": _tensor(0.1)}),
    ("Adagrad", {"lr": _tensor(0.1), "lr_decay": 0.01, "weight_decay": 0.1, "maximize": True}),
]
EACH_TENSOR_HYPERPARAMETER_CASE = pytest.mark.parametrize(
    "case",
    TENSOR_HYPERPARAMETER_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(TENSOR_HYPERPARAMETER_CASES)],
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("shapes", ["packed", "mixed"])
@EACH_TENSOR_HYPERPARAMETER_CASE
def test_tensor_hyperparameters_have_torchs_bits(case, shapes, impl, dtype):
    """Hyperparameters given as 1-element host tensors (torch's own test database passes
    ``torch.tensor(0.01)`` and ``betas=(tensor([[0.9]]), tensor([[0.99]]))``): torch's default
    path on a CPU is then its for-loop path, which computes the step size, the bias corrections,
    AdamW's decay factor and Adagrad's decayed rate in the tensors' dtype (float32 for
    ``torch.tensor(0.01)``, also for float64 parameters), and reads ``momentum != 0``. Ours must
    give its bits and its state keys, not the double-precision arithmetic of float
    hyperparameters (float64 AdamW with ``lr=torch.tensor(0.01)`` was 2e-6 off after 50 steps)."""
    name, kwargs = case

    def run(cls):
        params, optimizer = _after_twelve_steps(cls, SETS[shapes], dtype, kwargs)
        return params, [sorted(entry) for entry in optimizer.state_dict()["state"].values()]

    reference, reference_keys = run(theirs(name))
    params, keys = run(functools.partial(ours(name), impl=impl))
    assert keys == reference_keys
    assert all(map(torch.equal, params, reference))


def _after_twelve_steps(cls, shapes, dtype, kwargs: dict, **path):
    """``cls(params, **path, **kwargs)`` after 12 steps of random gradients over parameters of
    ``shapes``: (the parameters, the optimizer)."""
    params = _params(shapes, dtype=dtype)
    optimizer = cls(params, **path, **copy.deepcopy(kwargs))
    generator = torch.Generator().manual_seed(3)
    for _ in range(12):
        for p in params:
            p.grad = torch.randn(p.shape, dtype=dtype, generator=generator)
        optimizer.step()
    return params, optimizer


def _assert_bitwise(params: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    """Every element torch's bits (a NaN where torch's has one: float16's underflowing eps)."""
    for mine, torchs in zip(params, reference):
        torch.testing.assert_close(mine, torchs, rtol=0, atol=0, equal_nan=True)


def _torch_reference_path(name: str, kwargs: dict, impl: str) -> dict:
    """The ``foreach`` of torch's path that ours must give the bits of in bfloat16 and float16:
    its for-loop path for ``impl="single"``; for the default path its foreach path, or, where
    torch refuses that (Adam's tensor ``lr`` or ``betas``), its default, the for-loop path."""
    if impl == "single":
        return {"foreach": False}
    try:
        theirs(name)(_params([(2,)]), foreach=True, **copy.deepcopy(kwargs))
    except ValueError:
        return {}
    return {"foreach": True}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("impl", ["foreach", "single"])
@pytest.mark.parametrize("shapes", ["packed", "mixed"])
@EACH_TENSOR_HYPERPARAMETER_CASE
def test_tensor_hyperparameters_in_low_precision_have_torchs_bits(case, shapes, impl, dtype):
    """The same hyperparameters over bfloat16 and float16 parameters, the default path (foreach
    unset) against torch's foreach path, the one-tensor path against its for-loop path. There
    torch's multi-tensor ``_foreach_mul_`` multiplies by a 0-dim tensor in float32 but rounds a
    number to the parameters' dtype first, and ``Tensor.lerp_`` rounds a tensor weight so but
    not a number: a tensor ``momentum`` (SGD), ``alpha`` (RMSprop), ``rho`` (Adadelta), ``lr``
    or ``lr_decay`` (Adagrad, whose foreach path keeps ``-lr / (1 + (t - 1) lr_decay)`` a
    tensor) read as numbers left torch's bits, and so did Adam's default path with a tensor
    ``lr``, where torch's default is its for-loop path."""
    name, kwargs = case
    path = {"foreach": False} if impl == "single" else {}
    torch_path = _torch_reference_path(name, kwargs, impl)
    reference, _ = _after_twelve_steps(theirs(name), SETS[shapes], dtype, kwargs, **torch_path)
    params, _ = _after_twelve_steps(ours(name), SETS[shapes], dtype, kwargs, **path)
    _assert_bitwise(params, reference)


NUMPY_HYPERPARAMETER_CASES = [
    ("SGD", {"lr": 0.1, "momentum": np.float64(0.9), "dampening": 0.1}),
    ("SGD", {"lr": np.float32(0.1), "momentum": np.float32(0.9), "nesterov": True}),
    ("RMSprop", {"lr": 0.01, "alpha": np.float64(0.9), "centered": True, "momentum": 0.5}),
    ("Adadelta", {"rho": np.float32(0.8), "eps": np.float64(1e-3)}),
    ("Adam", {"lr": np.float32(0.01), "betas": (np.float64(0.8), np.float64(0.9))}),
    ("AdamW", {"lr": np.float32(0.01), "betas": (np.float64(0.8), 0.9), "amsgrad": True}),
    ("Adagrad", {"lr": np.float64(0.1), "lr_decay": np.float32(0.01), "weight_decay": 0.1}),
]


@pytest.mark.parametrize(
    "dtype",
    [torch.float32, torch.float64, torch.bfloat16, torch.float16],
    ids=["f32", "f64", "bf16", "f16"],
)
@pytest.mark.parametrize("impl", ["foreach", "single"])
@pytest.mark.parametrize(
    "case",
    NUMPY_HYPERPARAMETER_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(NUMPY_HYPERPARAMETER_CASES)],
)
def test_numpy_scalar_hyperparameters_have_torchs_bits(case, impl, dtype):
    """Hyperparameters given as NumPy scalars (a grid from ``np.logspace``, a config read with
    NumPy) on each path, against torch's own path (foreach, or for-loop for ``foreach=False``),
    with NumPy's arithmetic where torch has it (a ``np.float32`` step size stays float32 in
    torch's host arithmetic). torch's ``Tensor.mul_`` takes a NumPy scalar as a number, in
    float32 over bfloat16 and float16 tensors; the one-tensor path multiplied by it as the
    multi-tensor op does, rounded to their dtype first (SGD's ``momentum``, RMSprop's ``alpha``,
    Adadelta's ``rho``, Adam's ``beta2`` off by an ulp here and there)."""
    name, kwargs = case
    foreach = impl == "foreach"
    path = {} if foreach else {"foreach": False}
    reference, _ = _after_twelve_steps(theirs(name), SETS["packed"], dtype, kwargs, foreach=foreach)
    params, _ = _after_twelve_steps(ours(name), SETS["packed"], dtype, kwargs, **path)
    _assert_bitwise(params, reference)


SIGNED_ZERO_CASES = [
    *DEFAULT_CASES,
    ("SGD", {"lr": 0.05, "momentum": 0.9, "maximize": True}),
    ("SGD", {"lr": _tensor(0.05), "momentum": 0.5}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.5}),
]


def _bits(tensors):
    """The tensors' bit patterns: ``torch.equal`` counts ``-0.0`` equal to ``0.0``."""
    return [t.detach().reshape(-1).view(torch.int64 if t.dtype == torch.float64 else torch.int32)
            for t in tensors]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("shapes", list(SETS))
@pytest.mark.parametrize(
    "case", SIGNED_ZERO_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(SIGNED_ZERO_CASES)]
)
def test_signed_zeros_are_torchs(case, shapes, impl, dtype):
    """Parameters and gradients holding ``-0.0`` and ``+0.0`` (a ReLU's or ``x * 0``'s gradient
    can be ``-0.0``): every bit, the zeros' signs included, as torch's two eager paths. Before,
    the packed default path added updates into ``+0.0`` scratch (``0.0 + -0.0`` is ``+0.0``), so
    a parameter at ``-0.0`` with a zero update turned ``+0.0`` (Adam, Adagrad, RMSprop), and
    SGD's first momentum buffer was the gradient added into zeros rather than its copy
    (``maximize=True``: every parameter at ``-0.0`` with a zero gradient, on every path)."""
    name, kwargs = case

    def run(cls):
        generator = torch.Generator().manual_seed(5)

        def signed_zeros(t, zeros):  # t with -0.0 or +0.0, at random, where zeros is True
            signs = torch.rand(t.shape, generator=generator) < 0.5
            return torch.where(zeros, torch.where(signs, -0.0, 0.0).to(dtype), t)

        params, never_moved = [], []  # (elements at zero whose gradient is always zero)
        for shape in SETS[shapes]:
            zeros = torch.rand(shape, generator=generator) < 0.3
            p = signed_zeros(torch.randn(shape, dtype=dtype, generator=generator), zeros)
            params.append(p.requires_grad_())
            never_moved.append(zeros & (torch.rand(shape, generator=generator) < 0.5))
        optimizer = cls(params, **copy.deepcopy(kwargs))
        for _ in range(4):
            for p, fixed in zip(params, never_moved):
                g = torch.randn(p.shape, dtype=dtype, generator=generator)
                p.grad = signed_zeros(g, fixed | (torch.rand(p.shape, generator=generator) < 0.3))
            optimizer.step()
        return _bits(params)

    ours_bits = run(functools.partial(ours(name), impl=impl))
    for foreach in (False, True):
        reference = run(functools.partial(theirs(name), foreach=foreach))
        assert all(map(torch.equal, ours_bits, reference)), f"torch foreach={foreach}"


# --- sparse gradients ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {"lr": 0.1}),
        ("SGD", {"lr": 0.1, "momentum": 0.9}),
        ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True}),
        ("Adagrad", {"lr": 0.1}),
        ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "maximize": True}),
    ],
)
def test_sparse_gradients_as_torch(name, kwargs):
    results = []
    for cls in (theirs(name), ours(name)):
        torch.manual_seed(0)
        embedding = torch.nn.Embedding(12, 3, sparse=True).double()
        optimizer = cls(embedding.parameters(), **kwargs)
        for step in range(5):
            optimizer.zero_grad()
            rows = torch.tensor([step % 4, (step * 5) % 12, 1])
            embedding(rows).pow(2).sum().backward()
            optimizer.step()
        results.append(embedding.weight.detach().clone())
    torch.testing.assert_close(results[1], results[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {"lr": 0.1, "momentum": 0.9}),
        ("SGD", {"lr": 0.1, "momentum": 0.5, "dampening": 0.3, "maximize": True}),
        ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
        ("Adagrad", {"lr": 0.1}),
    ],
)
def test_sparse_and_dense_gradients_in_one_group_bitwise_as_torch(name, kwargs, impl):
    """20 float32 embeddings, every other one sparse, on every path: torch's bits, and torch's
    state (a sparse gradient's momentum buffer is sparse, as torch's ``clone(grad)``); torch's
    state dict then loads into ours and both continue with the same bits."""

    def run(cls, steps, loaded=None):
        torch.manual_seed(0)
        embeddings = [torch.nn.Embedding(10, 3, sparse=i % 2 == 0) for i in range(20)]
        params = [e.weight for e in embeddings]
        optimizer = cls(params, **kwargs)
        if loaded is not None:
            for p, values in zip(params, loaded[0]):
                p.data.copy_(values)
            optimizer.load_state_dict(copy.deepcopy(loaded[1]))  # (torch loads by reference)
        for step in steps:
            optimizer.zero_grad()
            rows = torch.tensor([1, 2, step % 10])
            sum(e(rows).sum() * (step + 1) for e in embeddings).backward()
            optimizer.step()
        return [p.detach().clone() for p in params], optimizer

    mine = functools.partial(ours(name), impl=impl)
    (t_params, t_opt), (o_params, o_opt) = (run(cls, range(5)) for cls in (theirs(name), mine))
    assert all(map(torch.equal, o_params, t_params))
    for p_t, p_o in zip(t_opt.param_groups[0]["params"], o_opt.param_groups[0]["params"]):
        for key, value in t_opt.state[p_t].items():
            assert o_opt.state[p_o][key].layout == value.layout, key
    checkpoint = (t_params, t_opt.state_dict())
    t_later, _ = run(theirs(name), range(5, 9), checkpoint)
    o_later, _ = run(mine, range(5, 9), checkpoint)
    assert all(map(torch.equal, o_later, t_later))


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {"lr": 0.1}),
        ("SGD", {"lr": 0.1, "momentum": 0.9}),
        ("Adagrad", {"lr": 0.1}),
        ("Adam", {"lr": 0.1}),
        ("RMSprop", {"lr": 0.1}),
        ("Adadelta", {}),
    ],
)
def test_a_sparse_gradient_after_dense_steps_as_torch(name, kwargs, impl):
    """20 small tensors stepped with dense gradients three times (the default path packs them
    and their state, the flat path moves them into one buffer), then one gets a sparse gradient:
    torch's bits for SGD and Adagrad, torch's RuntimeError for the others. Before, the packed
    path raised NotImplementedError from its gather, and on the flat path SGD's update went into
    another parameter: torch's kernel adding a sparse tensor into a dense view that starts at a
    storage offset applies the offset twice, so such views are updated through copies."""

    def run(cls):
        generator = torch.Generator().manual_seed(0)
        params = [torch.randn(10, generator=generator).requires_grad_() for _ in range(20)]
        optimizer = cls(params, **kwargs)
        for step in range(5):
            for i, p in enumerate(params):
                grad = torch.randn(10, generator=generator)
                p.grad = grad.to_sparse() if step >= 3 and i == 3 else grad
            try:
                optimizer.step()
            except RuntimeError as error:
                return type(error)
        return [p.detach().clone() for p in params]

    expected = run(theirs(name))
    actual = run(functools.partial(ours(name), impl=impl))
    if name in ("SGD", "Adagrad"):
        assert all(map(torch.equal, actual, expected))
    else:
        assert expected is RuntimeError
        assert actual is RuntimeError


@pytest.mark.parametrize("count", [1, 20], ids=["1-tensor", "20-tensors"])
@pytest.mark.parametrize("impl", ["default", "foreach", "single", "flat"])
def test_a_sparse_gradient_after_dense_nesterov_steps_raises_torchs_error(impl, count):
    """SGD with Nesterov momentum, three dense steps, then a sparse gradient: torch's
    ``grad.add(buf, alpha=momentum)`` refuses sparse + dense ("add(sparse, dense) is not
    supported") on each of its paths. Ours trained on (with the numbers torch gives the same
    gradient dense), where the README promises torch's numbers or torch's error: now torch's
    error, leaving what torch's for-loop path leaves (the parameters before it updated, its
    buffer updated and itself not; packed and flat state included)."""
    kwargs = {"lr": 0.1, "momentum": 0.9, "nesterov": True}
    ours_path = {} if impl == "default" else {"impl": impl}
    torch_path = {"foreach": True} if impl == "foreach" else {}

    def run(make):
        generator = torch.Generator().manual_seed(0)
        params = [torch.randn(10, generator=generator).requires_grad_() for _ in range(count)]
        optimizer = make(params)
        for step in range(4):
            for i, p in enumerate(params):
                grad = torch.randn(10, generator=generator)
                p.grad = grad.to_sparse() if step == 3 and i == count // 2 else grad
            if step < 3:
                optimizer.step()
        with pytest.raises(RuntimeError) as raised:
            optimizer.step()
        buffers = [optimizer.state[p]["momentum_buffer"].detach().clone() for p in params]
        return str(raised.value), [p.detach().clone() for p in params], buffers

    their_message, _, _ = run(lambda ps: torch.optim.SGD(ps, **kwargs, **torch_path))
    _, expected, their_buffers = run(lambda ps: torch.optim.SGD(ps, **kwargs, foreach=False))
    our_message, got, our_buffers = run(lambda ps: optim.SGD(ps, **kwargs, **ours_path))
    assert our_message == their_message
    assert "add(sparse, dense)" in our_message
    assert all(map(torch.equal, got, expected))
    assert all(map(torch.equal, our_buffers, their_buffers))


@pytest.mark.parametrize("name", ["SGD", "Adagrad"])
def test_sparse_gradients_with_weight_decay_raise_as_torch(name):
    for cls in (theirs(name), ours(name)):
        embedding = torch.nn.Embedding(5, 2, sparse=True)
        optimizer = cls(embedding.parameters(), lr=0.1, weight_decay=0.1)
        embedding(torch.tensor([1])).sum().backward()
        with pytest.raises(RuntimeError, match=r"weight_decay|add\(sparse, dense\)"):
            optimizer.step()


# --- float32 bits --------------------------------------------------------------------------

BITWISE_CASES = [
    ("SGD", {"lr": 0.037}),
    ("SGD", {"lr": 0.037, "momentum": 0.9}),
    ("SGD", {"lr": 0.037, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.037, "momentum": 0.9, "dampening": 0.1, "maximize": True}),
    ("SGD", {"lr": 0.037, "momentum": 0.9, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.0037, "amsgrad": True}),
    ("AdamW", {"lr": 0.0037, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.037, "lr_decay": 0.01}),
    ("RMSprop", {"lr": 0.0037}),
    ("RMSprop", {"lr": 0.0037, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.0037, "momentum": 0.9, "centered": True}),
    ("Adadelta", {"lr": 0.37}),
    ("Adadelta", {}),
]


@pytest.mark.parametrize("shapes", ["packed", "blocked", "mixed"])
@pytest.mark.parametrize("case", BITWISE_CASES, ids=lambda c: f"{c[0]}{sorted(c[1].items())}")
def test_float32_default_path_has_torchs_bits(case, shapes):
    """float32, six steps, learning rates that are not powers of two: the default path (packed
    rounds, blocks) gives exactly torch's foreach bits. A packed rule whose last op is
    ``p.add_(u, alpha=-lr)`` (SGD, RMSprop with momentum, Adadelta) runs on the gathered
    parameters: torch's kernel rounds that multiply-add once, where an update computed into zeros
    and added after would round twice."""
    name, kwargs = case

    def run(cls):
        params = _params(SETS[shapes], dtype=torch.float32)
        optimizer = cls(params, **kwargs)
        generator = torch.Generator().manual_seed(1)
        for _ in range(6):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator)
            optimizer.step()
        return params

    reference = run(functools.partial(theirs(name), foreach=True))
    assert all(map(torch.equal, run(ours(name)), reference))


HYPERPARAMETER_CHANGES = [
    ("SGD", {"lr": 0.037}, {2: {"momentum": 0.9}, 4: {"lr": 0.011},
                            5: {"weight_decay": 0.01}, 6: {"maximize": True}}),
    ("SGD", {"lr": 0.037, "momentum": 0.9}, {3: {"momentum": 0.0},
                                             5: {"momentum": 0.5, "lr": 1.0}}),
    ("Adam", {"lr": 0.0037}, {2: {"weight_decay": 0.1}, 3: {"betas": (0.8, 0.99)},
                              6: {"lr": 0.01}}),
    ("AdamW", {"lr": 0.0037}, {2: {"weight_decay": 0.0}, 4: {"weight_decay": 0.05}}),
    ("RMSprop", {"lr": 0.0037, "momentum": 0.5}, {2: {"momentum": 0.9}, 4: {"alpha": 0.9},
                                                  6: {"lr": 1.0}}),
    ("Adadelta", {}, {2: {"lr": 0.3}, 4: {"rho": 0.5}, 5: {"weight_decay": 0.1}}),
    ("Adagrad", {"lr": 0.037}, {3: {"lr_decay": 0.1}, 5: {"eps": 1e-3}}),
]  # fmt: skip


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize(
    "case",
    HYPERPARAMETER_CHANGES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(HYPERPARAMETER_CHANGES)],
)
def test_hyperparameters_changed_between_steps_keep_torchs_bits(case, impl):
    """A schedule of momentum, weight decay, betas, lr (to 1 and back, which switches the packed
    step between its two forms) and the rest, changed in every param group between float32
    steps of 20 small tensors: torch's bits on every path (torch's foreach path, and its
    for-loop path for ``impl="single"``)."""
    name, kwargs, changes = case

    def run(cls):
        params = _params(SETS["packed"], dtype=torch.float32)
        optimizer = cls(params, **kwargs)
        generator = torch.Generator().manual_seed(2)
        for step in range(8):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator)
            for key, value in changes.get(step, {}).items():
                for group in optimizer.param_groups:
                    group[key] = value
            optimizer.step()
        return params

    reference = run(functools.partial(theirs(name), foreach=impl != "single"))
    assert all(map(torch.equal, run(functools.partial(ours(name), impl=impl)), reference))


@pytest.mark.parametrize("gradients", ["new", "kept"])
def test_the_flat_path_under_a_gpus_policy_runs_its_rule_once_a_step(
    default_case, gradients, monkeypatch
):
    """On a GPU (``_paths.caches_in_blocks`` False) the eager flat path runs its rule once a
    step over the layout's spans as lists, which each multi-tensor op takes in one launch; a
    call per span (a new large gradient, read where autograd left it, cuts the buffer into
    spans) launched every op once more per large tensor: AdamWScheduleFree on 4x4M with new
    gradients took 0.74 ms a step on an H200, against the default path's 0.46. Run here on a CPU
    under that policy, with two tensors over ``BLOCK``: torch's foreach bits after 6 float64
    steps, and one call of the rule a step (a step with new gradients: before, 4 spans, 4
    calls)."""
    monkeypatch.setattr(_paths, "caches_in_blocks", lambda device: False)
    calls = []
    real_call_rule = optim._base.call_rule
    monkeypatch.setattr(
        optim._base, "call_rule", lambda *a, **k: calls.append(1) or real_call_rule(*a, **k)
    )
    name, kwargs = default_case
    shapes = [(3 * SMALL_BLOCK + 17,), (6, 4), (2 * SMALL_BLOCK + 7,), (5,)]

    def run(cls):
        params = _params(shapes)
        optimizer = cls(params, **kwargs)
        _train(optimizer, params, 6, set_to_none=gradients == "new")
        return params

    reference = run(functools.partial(theirs(name), foreach=True))
    calls.clear()
    assert all(map(torch.equal, run(functools.partial(ours(name), impl="flat")), reference))
    assert len(calls) == 6


# --- low precision -------------------------------------------------------------------------


def _low_precision_run(make, dtype):
    params = _params([(1000,), (40, 25), (SMALL_BLOCK * 4 + 5,)], dtype=dtype)
    optimizer = make(params)
    for step in range(3):
        for i, p in enumerate(params):  # elementwise gradients: no reduction order to vary
            x = p.detach().float()
            p.grad = (2 * (x - 0.3 * i) + torch.cos(x + step)).to(dtype)
        optimizer.step()
    return params


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_is_bitwise_torchs_foreach_path(default_case, dtype):
    """Bitwise equal to torch's foreach path wherever torch agrees with itself.

    torch's own float16 foreach Adam differs between two identical runs in a few elements (seen
    with torch 2.13 CPU, one thread too); those elements are left out, and must stay few.
    """
    name, kwargs = default_case
    reference = _low_precision_run(lambda ps: theirs(name)(ps, foreach=True, **kwargs), dtype)
    again = _low_precision_run(lambda ps: theirs(name)(ps, foreach=True, **kwargs), dtype)
    mine = _low_precision_run(lambda ps: ours(name)(ps, **kwargs), dtype)
    for r, a, m in zip(reference, again, mine):
        stable = r == a
        assert stable.float().mean() > 0.99
        assert torch.equal(m[stable], r[stable])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_foreach_false_is_bitwise_torchs_for_loop_path(default_case, dtype):
    """``foreach=False`` gives torch's ``foreach=False`` bits in bf16 and fp16 too, where torch's
    two paths differ: its for-loop ``Tensor.mul_(beta)`` multiplies in float32, its multi-tensor
    ``_foreach_mul_`` rounds beta to the tensors' dtype first, and its for-loop Adagrad divides
    in one ``addcdiv_``. Before, this path had torch's foreach bits: 17 of these 22 cases
    failed. torch's own float16 Adam differs between identical runs in an element or two: left
    out, as above."""
    name, kwargs = default_case
    reference = _low_precision_run(lambda ps: theirs(name)(ps, foreach=False, **kwargs), dtype)
    again = _low_precision_run(lambda ps: theirs(name)(ps, foreach=False, **kwargs), dtype)
    mine = _low_precision_run(lambda ps: ours(name)(ps, foreach=False, **kwargs), dtype)
    for r, a, m in zip(reference, again, mine):
        stable = r == a
        assert stable.float().mean() > 0.99
        assert torch.equal(m[stable], r[stable])


def _groups_of_their_own_foreach(make, how: str, dtype: torch.dtype) -> list[torch.Tensor]:
    """Two groups, the first many small tensors (the default path packs them), the second a
    few, with their own ``foreach``: given in the constructor's groups, or the second group
    added later, or switched between steps; six steps of a non-convex loss."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(7, 5)] * PACK_AT_LEAST + [(33,), (4, 9)]
    params = [torch.randn(s, generator=generator).to(dtype).requires_grad_() for s in shapes]
    first, second = params[:PACK_AT_LEAST], params[PACK_AT_LEAST:]
    if how == "added":
        optimizer = make([{"params": first, "foreach": True}])  # (None: torch's CPU default
        optimizer.add_param_group({"params": second, "foreach": False})  # is its for-loop)
    else:
        optimizer = make([{"params": first, "foreach": True}, {"params": second, "foreach": False}])
    for t in range(6):
        if how == "switched" and t == 3:
            for group in optimizer.param_groups:
                group["foreach"] = not group["foreach"]
        optimizer.zero_grad()
        sum(((p.float() - 0.3) ** 2 + torch.sin(3 * p.float())).sum() for p in params).backward()
        optimizer.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("foreach", [False, None], ids=["for_loop", "default"])
@pytest.mark.parametrize("case", DEFAULT_CASES, ids=lambda c: c[0] + str(len(c[1])))
def test_one_optimizer_per_parameter_stepped_in_backward_as_torch(case, foreach):
    """torch's optimizer-in-backward pattern (its tutorial writes ``foreach=False``): one
    optimizer per parameter, stepped and zeroed in a post-accumulate-grad hook, so each
    steps during the backward pass. Between steps a parameter is frozen and thawed, one
    optimizer's state tensors are replaced by halved ones, and its step counter is edited in
    place: torch's bits, the one-tensor path's kept lists (``OneByOne``) checked at every
    step."""
    name, kwargs = case
    runs = []
    for cls in (theirs(name), ours(name)):
        params = _params(SETS["mixed"] + [(3, 4)] * 3)
        optimizers = {p: cls([p], foreach=foreach, **kwargs) for p in params}

        def step_in_backward(p, optimizers=optimizers):
            optimizers[p].step()
            optimizers[p].zero_grad()

        for p in params:
            p.register_post_accumulate_grad_hook(step_in_backward)
        for t in range(8):
            if t == 3:
                params[1].requires_grad_(False)
            if t == 5:
                params[1].requires_grad_(True)
                state = optimizers[params[2]].state[params[2]]
                state.update({k: v * 0.5 for k, v in state.items() if k != "step"})
                if "step" in state:
                    state["step"].add_(2)
            _loss(params).backward()
        runs.append(params)
    for a, b in zip(runs[1], runs[0]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["Adam", "SGDScheduleFree", "AdamWScheduleFree"])
def test_impl_single_keeps_groups_whose_foreach_is_the_constructors_on_its_path(name):
    """A group's ``foreach`` equal to the constructor's (Schedule-Free's default True, which
    cannot be told from a True given) keeps the path ``impl=`` named: ``impl="single"`` runs
    one tensor at a time, with no packed layout, and only a group given another ``foreach``
    leaves it. (A first version of the per-group path ran Schedule-Free's groups on the
    multi-tensor path under ``impl="single"``.)"""
    params = _params([(3, 4)] * (PACK_AT_LEAST + 2))
    optimizer = getattr(optim, name)(params, impl="single")
    if hasattr(optimizer, "train"):
        optimizer.train()
    _train(optimizer, params, 2)
    assert optimizer.impl == "single"
    kinds = {type(layout) for layouts in optimizer._layouts.values() for layout in layouts}
    assert kinds <= {OneByOne}, kinds  # (its own lists, run a tensor at a time: nothing packed)


@pytest.mark.parametrize("how", ["constructed", "added", "switched"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_a_groups_own_foreach_picks_its_path_as_torch(default_case, dtype, how):
    """torch.optim reads ``foreach`` per param group, so a group given ``foreach=False`` (in
    the constructor's groups or in ``add_param_group``) runs torch's for-loop path, the others
    its foreach path; in bfloat16 and float16 the two differ by an ulp here and there. Ours
    ran every group on the optimizer's one path, so such a group's bits were the other path's
    (found by a probe of per-group options: SGD, Adagrad and RMSprop differed). The elements
    where torch's own float16 Adam differs between identical runs are left out, as above."""
    name, kwargs = default_case

    def run(cls):
        return _groups_of_their_own_foreach(lambda groups: cls(groups, **kwargs), how, dtype)

    reference, again, mine = (torch.cat([p.flatten() for p in run(cls)]) for cls in
                              (theirs(name), theirs(name), ours(name)))  # fmt: skip
    stable = reference == again
    assert stable.float().mean() > 0.99
    assert torch.equal(mine[stable], reference[stable])


@pytest.mark.parametrize("impl", ["foreach", "single"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("how", ["unfrozen-later", "state-entry-deleted"])
def test_sgd_buffers_born_beside_old_ones_as_torchs_foreach_path(how, dtype, impl, shapes):
    """A step where some SGD momentum buffers are born (a layer unfrozen later, a state entry
    dropped) while others exist: torch's foreach path then updates the old ones one tensor at a
    time, and ``buf.mul_(momentum)`` multiplies in float32 (its multi-tensor ``mul_`` rounds the
    momentum to bf16/fp16 first), so those buffers get other bits. Ours follows (before: 17
    to 155 elements off torch's bits after 5 steps, default path); the one-tensor path is
    compared with torch's for-loop path, whose every buffer takes ``Tensor.mul_``."""
    kwargs = {"lr": 0.05, "momentum": 0.9, "dampening": 0.2}

    def run(make):
        params = _params(shapes, dtype)
        optimizer = make(params)
        if how == "unfrozen-later":
            params[0].requires_grad_(False)
        for step in range(5):
            if step == 2:
                params[0].requires_grad_(True)
                if how == "state-entry-deleted":
                    optimizer.state.pop(params[-1], None)
            optimizer.zero_grad()
            _loss(params).backward()
            optimizer.step()
        return params

    reference = run(lambda ps: torch.optim.SGD(ps, foreach=impl == "foreach", **kwargs))
    mine = run(lambda ps: optim.SGD(ps, impl=impl, **kwargs))
    for a, b in zip(mine, reference):
        assert torch.equal(a, b)


def test_the_parameter_sets_drive_each_strategy(monkeypatch):
    """White-box: the sets above really run packed, blocked and plain (low precision) updates."""
    calls = collections.Counter()
    packed_step, rounds = _paths.Packed.step, _paths.blocked_rounds

    def counting_step(self, *args, **kwargs):
        calls["packed"] += 1
        return packed_step(self, *args, **kwargs)

    def counting_rounds(*args, **kwargs):
        result = rounds(*args, **kwargs)
        calls["blocked"] += len(result)
        return result

    monkeypatch.setattr(_paths.Packed, "step", counting_step)
    monkeypatch.setattr("optim._base.blocked_rounds", counting_rounds)
    for key, expected in (("packed", "packed"), ("blocked", "blocked")):
        calls.clear()
        params = _params(SETS[key])
        _train(optim.Adam(params), params, 3)
        assert calls[expected] >= 2, (key, calls)
    assert calls["packed"] == 0  # the blocked set is not packed


@pytest.mark.parametrize(("name", "kwargs", "numel", "packs"), [
    ("Adam", {"lr": 0.01}, _paths.PACK_BELOW + 5, True),
    ("Adadelta", {"lr": 0.5}, _paths.PACK_BELOW + 5, True),
    ("SGD", {"lr": 0.05, "momentum": 0.9}, _paths.PACK_BELOW + 5, False),
    ("Adam", {"lr": 0.01}, _paths.TORCH_GRAIN + 5, False),
    ("Adagrad", {"lr": 0.05}, _paths.TORCH_GRAIN + 5, False),
    ("RMSprop", {"lr": 0.01}, _paths.TORCH_GRAIN + 5, False),
    ("AdamW", {"lr": 0.01}, _paths.TORCH_GRAIN + 5, False),
    ("Adadelta", {"lr": 0.5}, _paths.TORCH_GRAIN + 5, True),
])  # fmt: skip
def test_mid_size_tensors_pack_as_measured_for_each_rule(name, kwargs, numel, packs):
    """White-box, on a CPU: tensors between ``PACK_BELOW`` and a class's ``_pack_below`` are
    packed for a rule of several ops (measured faster) and left to the blocked lists for SGD;
    from ``TORCH_GRAIN`` elements (each op of torch's on two threads) Adam, AdamW, Adagrad and
    RMSprop leave them to the blocked lists too, which held torch's speed where handing data
    between the threads is dear and their packed rounds did not (AdamW's lists, in rounds of
    256k elements, were faster in both regimes), while Adadelta, which gained in both, packs
    them (see ``RuleOptimizer._pack_below_on_cpu``). torch's numbers either way."""
    shapes = [(numel,)] * PACK_AT_LEAST
    (t_opt, t_params, _), (o_opt, o_params, _) = _side_by_side(
        name, kwargs, shapes, lambda opt, ps: _train(opt, ps, 3), dtype=torch.float32
    )
    layouts = o_opt._layouts.get(0) or []
    assert any(isinstance(layout, _paths.Packed) for layout in layouts) == packs, layouts
    _close(o_params, t_params, rtol=1e-5)
    _assert_same_state(t_opt, o_opt, rtol=1e-5)


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_optimizer_keeps_its_path_and_continues_as_torch(impl, how):
    import copy
    import pickle

    def duplicate(obj):
        return copy.deepcopy(obj) if how == "deepcopy" else pickle.loads(pickle.dumps(obj))

    results = []
    for make in (
        lambda ps: torch.optim.Adam(ps, lr=0.01),
        lambda ps: optim.Adam(ps, lr=0.01, impl=impl),
    ):
        params = _params(SETS["packed"])
        optimizer = make(params)
        _train(optimizer, params, 3)
        params, optimizer = duplicate((params, optimizer))
        _train(optimizer, params, 3)
        results.append((params, optimizer))
    (t_params, t_opt), (o_params, o_opt) = results
    assert o_opt.impl == impl
    _close(o_params, t_params)
    _assert_same_state(t_opt, o_opt)


FUSED = ("Adam", "AdamW", "SGD", "Adagrad")  # the classes with torch's fused=True
REPEATED_PATHS = [  # (ours, torch's): the path of ours and the torch path it reproduces
    ({}, {}),  # the defaults: on a CPU torch's is its for-loop path
    ({"foreach": True}, {"foreach": True}),
    ({"foreach": False}, {"foreach": False}),
    ({"impl": "flat"}, {"foreach": True}),
    ({"fused": True}, {"fused": True}),
]


@pytest.mark.parametrize(
    ("case", "paths"),
    [
        pytest.param(case, paths, id=f"{case[0]}{sorted(case[1].items())}-ours{paths[0]}")
        for case in DEFAULT_CASES
        for paths in REPEATED_PATHS
        if "fused" not in paths[1] or case[0] in FUSED
    ],
)
def test_a_parameter_given_twice_is_updated_once_per_occurrence_as_torch(case, paths):
    """torch warns that a parameter given twice in one group will become an error, and
    meanwhile updates it once per occurrence, each path in its own order: the for-loop path one
    occurrence after the other, the foreach path each op over the whole list (an occurrence
    sees the op of the one before), the fused kernels every step count first, then one after
    the other; its default (``foreach`` unset) is its for-loop path on a CPU. A buffer SGD
    makes at the first step is one per occurrence, the last kept. Each path of ours gives its
    torch path's parameters and state dict (the packed small tensors and a blocked large one),
    with torch's warning and none of ours."""
    name, kwargs = case
    ours_path, torch_path = paths
    shapes = [(7, 5)] * PACK_AT_LEAST + [(3 * SMALL_BLOCK + 17,)]
    results = []
    for cls, path in ((theirs(name), torch_path), (ours(name), ours_path)):
        params = _params(shapes)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            optimizer = cls([*params[:3], params[1], *params[3:], params[-1]], **kwargs, **path)
        messages = [str(w.message) for w in record]
        assert any("duplicate parameters" in m for m in messages)  # torch's own
        assert not any("more than once" in m for m in messages)
        _train(optimizer, params, 6)
        results.append((optimizer, params))
    (t_opt, t_params), (o_opt, o_params) = results
    _close(o_params, t_params)
    _assert_same_state(
        t_opt, o_opt, unlike=() if ours_path.keys() == torch_path.keys() else ("foreach",)
    )


OPTION_CASES_FOR_GRAD_DTYPES = [
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("Adam", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1}),
    ("RMSprop", {"lr": 0.1}),
    ("Adadelta", {}),
]


def _transposed_layout(t):
    return t.t().contiguous().t()  # the same values, strides (1, rows)


SGD_BUFFER_LAYOUTS = [  # (dtype, parameter layout, gradient layout, SGD's arguments)
    (torch.bfloat16, torch.clone, _transposed_layout, {"lr": 0.01, "dampening": 0.1}),
    (torch.float16, _transposed_layout, torch.clone, {"lr": 0.01}),
    (torch.float32, _transposed_layout, lambda t: t[:1].expand(7, 5), {"dampening": 0.1}),
]


@pytest.mark.parametrize("paths", [({}, {"foreach": True}), *REPEATED_PATHS[1:3]], ids=str)
@pytest.mark.parametrize("case", SGD_BUFFER_LAYOUTS, ids=lambda case: str(case[0]))
def test_an_sgd_buffer_is_made_from_the_first_gradient_as_torchs(case, paths):
    """torch's momentum buffer is ``clone(grad)``: it takes the first gradient's strides, which
    order torch's CPU loops, so in low precision (and with an expanded gradient and dampening,
    in float32) the bits follow them. A gradient set by hand in another layout than its
    parameter's, beside twenty small parameters the default path packs: ours gives torch's
    parameters, buffers and strides on every path (its buffer had the parameter's layout)."""
    dtype, parameter_layout, gradient_layout, kwargs = case
    ours_path, torch_path = paths
    results = []
    for cls, path in ((torch.optim.SGD, torch_path), (optim.SGD, ours_path)):
        generator = torch.Generator().manual_seed(0)
        odd = parameter_layout(torch.randn(7, 5, generator=generator).to(dtype))
        params = [torch.nn.Parameter(odd)]
        params += [
            torch.nn.Parameter(torch.randn(3, generator=generator).to(dtype)) for _ in range(20)
        ]
        optimizer = cls(params, momentum=0.9, **kwargs, **path)
        for _ in range(3):
            params[0].grad = gradient_layout(torch.randn(7, 5, generator=generator).to(dtype))
            for p in params[1:]:
                p.grad = torch.randn(3, generator=generator).to(dtype)
            optimizer.step()
        buffers = [optimizer.state[p]["momentum_buffer"] for p in params]
        results.append((params, buffers))
    (t_params, t_buffers), (o_params, o_buffers) = results
    assert all(map(torch.equal, o_params, t_params))
    assert all(map(torch.equal, o_buffers, t_buffers))
    assert o_buffers[0].stride() == t_buffers[0].stride()


@pytest.mark.parametrize("path", [{}, {"foreach": True}, {"foreach": False}], ids=str)
def test_an_sgd_buffer_takes_a_gradient_kept_in_float32_as_torchs(path):
    """torch 2.13 lets a bfloat16 parameter keep float32 gradients (``p.grad_dtype = None``):
    its SGD's momentum buffer, the first gradient's clone, is then float32, and so is ours (it
    was bfloat16, 0.3% apart after two steps), with torch's numbers on every path."""
    results = []
    for cls in (torch.optim.SGD, optim.SGD):
        generator = torch.Generator().manual_seed(0)
        p = torch.nn.Parameter(torch.randn(4, generator=generator).to(torch.bfloat16))
        p.grad_dtype = None  # a gradient of another dtype is allowed
        optimizer = cls([p], lr=0.1, momentum=0.9, **path)
        for _ in range(3):
            p.grad = torch.randn(4, generator=generator)
            optimizer.step()
        results.append((p.detach(), optimizer.state[p]["momentum_buffer"]))
    (t_param, t_buffer), (o_param, o_buffer) = results
    assert t_buffer.dtype == torch.float32
    assert o_buffer.dtype == t_buffer.dtype
    assert torch.equal(o_buffer, t_buffer)
    assert torch.equal(o_param, t_param)


@pytest.mark.parametrize(
    ("param_dtype", "grad_dtype"),
    [(torch.float32, torch.float16), (torch.bfloat16, torch.float32)],
    ids=["float32-param-float16-grad", "bfloat16-param-float32-grad"],
)
@pytest.mark.parametrize("case", OPTION_CASES_FOR_GRAD_DTYPES, ids=lambda case: case[0])
def test_gradients_of_another_dtype_by_default_as_torchs_default(case, param_dtype, grad_dtype):
    """torch 2.13 lets a parameter keep gradients of another dtype (``p.grad_dtype = None``).
    On a CPU torch's default is then its for-loop path, which computes in mixed precision (its
    foreach path refuses float16 gradients of float32 parameters, and rounds others otherwise):
    ours by default gives its numbers, or its error (Adam's ``lerp_``). Ours took the foreach
    order (SGD with momentum, float32 parameters, float16 gradients: 5e-5 apart)."""
    name, kwargs = case
    outcomes = []
    for cls in (theirs(name), ours(name)):
        generator = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(12, generator=generator).to(param_dtype))]
        params += [torch.nn.Parameter(torch.randn(3, generator=generator).to(param_dtype))]
        for p in params:
            p.grad_dtype = None  # a gradient of another dtype is allowed
        optimizer = cls(params, **kwargs)
        try:
            for _ in range(3):
                for p in params:
                    p.grad = torch.randn(p.shape, generator=generator).to(grad_dtype)
                optimizer.step()
        except RuntimeError as error:
            outcomes.append(str(error))
            continue
        outcomes.append([p.detach().clone() for p in params])
    expected, got = outcomes
    if isinstance(expected, str):
        assert isinstance(got, str)
        assert got.startswith(expected)
    else:
        assert all(map(torch.equal, got, expected))


@pytest.mark.parametrize("name", ["SGD", "SPS", "SLS"])
def test_a_flat_stateless_rule_takes_a_parameter_whose_data_became_float64(name):
    """``p.data = p.data.double()`` mid-training while the loop zeroes the gradient in place
    (so it stays float32): torch trains on, and so do ours on every path; the flat path of the
    rules without state (plain SGD, SPS, SLS) raised torch's gradient-assignment error from
    building its float32 gradient buffer (its state-keeping rules ran on lists already)."""
    results = []
    makers = [lambda ps: getattr(optim, name)(ps, impl="flat", **kwargs)]
    kwargs = {"lr": 0.1} if name == "SGD" else {}
    if name == "SGD":
        makers.insert(0, lambda ps: torch.optim.SGD(ps, lr=0.1))
    else:
        makers.insert(0, lambda ps: getattr(optim, name)(ps, impl="single"))
    for make in makers:
        w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
        optimizer = make([w])
        for t in range(5):
            if t == 2:
                w.data = w.data.double()

            def closure(w=w):
                if w.grad is not None:
                    w.grad.zero_()
                loss = ((w - 3) ** 2).sum() * 0.1
                loss.backward()
                return loss

            optimizer.step(closure)
        results.append(w.detach().clone())
    assert results[1].dtype == torch.float64
    assert torch.equal(results[1], results[0])


OVERLAPPING_CASES = [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.1, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.1}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adadelta", {"weight_decay": 0.1}),
]


@pytest.mark.parametrize("paths", REPEATED_PATHS[:4], ids=lambda paths: str(paths[0]))
@pytest.mark.parametrize("case", OVERLAPPING_CASES, ids=lambda case: case[0])
def test_overlapping_views_are_updated_once_per_view_as_torch(case, paths):
    """Two parameters that are overlapping views of one tensor (``base[:6]`` and ``base[4:]``),
    beside twenty small ones that the default path packs: torch updates the shared rows once
    per view, each path in its order. Ours lost one view's update of them wherever the rule
    reads the parameters (weight decay, AdamW), on the default and ``foreach=True`` paths."""
    name, kwargs = case
    ours_path, torch_path = paths
    bases = []
    for cls, path in ((theirs(name), torch_path), (ours(name), ours_path)):
        generator = torch.Generator().manual_seed(0)
        base = torch.randn(10, 6, generator=generator, dtype=torch.float64)
        small = [torch.randn(3, generator=generator, dtype=torch.float64) for _ in range(20)]
        params = [torch.nn.Parameter(p) for p in (base[:6], base[4:], *small)]
        optimizer = cls(params, **kwargs, **path)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator, dtype=torch.float64)
            optimizer.step()
        bases.append(base)
    torch.testing.assert_close(bases[1], bases[0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize(
    "numbers",
    [(np.float32(0.013), np.float32(0.01)), (np.int64(1), np.int64(0)), (np.float64(0.013), 0)],
    ids=["float32", "int64", "float64"],
)
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"])
def test_numpy_scalar_hyperparameters_as_torch(name, numbers, impl):
    """A learning rate or weight decay from numpy (``np.geomspace(..., dtype=np.float32)``,
    ``np.arange``) is accepted as torch accepts it, kept in the group as given, and trains to
    torch's bits: a numpy float32 rounds torch's scalar arithmetic (``lr / bias_correction``)
    to float32, and ours computes the same expressions (float64 parameters show it)."""
    lr, weight_decay = numbers
    kwargs = {"lr": lr, "weight_decay": weight_decay}
    results = []
    for cls, path in ((theirs(name), {"foreach": impl != "single"}), (ours(name), {"impl": impl})):
        params = _params(SETS["packed"])
        optimizer = cls(params, **kwargs, **path)
        _train(optimizer, params, 4)
        results.append((optimizer, params))
    (t_opt, t_params), (o_opt, o_params) = results
    assert all(map(torch.equal, o_params, t_params))
    assert type(o_opt.param_groups[0]["lr"]) is type(lr)
    _assert_same_state(t_opt, o_opt, rtol=0, unlike=("foreach",))


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize("shapes", [SETS["packed"], SETS["blocked"]], ids=["packed", "blocked"])
def test_a_float32_step_count_stops_at_2_to_the_24_as_torchs(impl, shapes):
    """torch's float32 step counters stop at 2**24 (16777216 + 1 rounds back), and Adam's bias
    corrections read that value; with beta1 near 1 the count shows in the last bit. Resumed
    from a checkpoint two steps before, ours keeps torch's count and bits on every path (the
    packed and flat paths kept a host copy that counted on)."""
    kwargs = {"lr": 1.0, "betas": (0.9999999, 0.9999999)}
    results = []
    for cls in (torch.optim.Adam, functools.partial(optim.Adam, impl=impl)):
        params = _params(shapes, dtype=torch.float32)
        optimizer = cls(params, **kwargs)
        _train(optimizer, params, 1)
        saved = optimizer.state_dict()
        for state in saved["state"].values():
            state["step"] = torch.tensor(2.0**24 - 2)
        optimizer.load_state_dict(saved)
        _train(optimizer, params, 4)
        results.append((optimizer, params))
    (t_opt, t_params), (o_opt, o_params) = results
    assert all(map(torch.equal, o_params, t_params))
    assert all(o_opt.state[p]["step"].item() == 2.0**24 for p in o_params)
    _assert_same_state(t_opt, o_opt, rtol=0, unlike=("foreach",))


def test_sgd_says_where_a_repeated_parameter_cannot_follow_torchs_foreach_path():
    """A parameter given twice and a momentum buffer made after the first step (a parameter
    without gradient until then): torch's foreach SGD updates the buffers one index at a time
    in that step, which a rule over lists does not reproduce when a buffer occurs twice. Ours
    warns there with ``foreach=True``; with ``foreach=False``, and by default (torch's default
    on a CPU is its for-loop path), it gives torch's for-loop path's numbers, silently."""
    kwargs = {"lr": 0.05, "momentum": 0.9, "dampening": 0.1}

    def run(cls, **path):
        params = _params([(3,), (4,), (5,)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's duplicate-parameter warning
            optimizer = cls([params[0], params[1], params[1], params[2]], **kwargs, **path)
        _train(optimizer, params, 1, skip={2})
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            _train(optimizer, params, 2)
        return params, [str(w.message) for w in record]

    _, messages = run(optim.SGD, foreach=True)
    assert any("momentum buffer is made after the first step" in m for m in messages)
    reference, _ = run(torch.optim.SGD, foreach=False)
    for path in ({"foreach": False}, {}):
        ours_params, messages = run(optim.SGD, **path)
        assert not messages
        _close(ours_params, reference)


@pytest.mark.parametrize(
    "path", [{"foreach": True}, {"foreach": False}, {"impl": "flat"}, {"fused": True}]
)
@pytest.mark.parametrize("shapes", [SETS["packed"], SETS["blocked"]], ids=["packed", "blocked"])
def test_an_sgd_buffer_born_after_the_first_step_starts_as_the_gradient(path, shapes):
    """A parameter unused in the first two steps gets its momentum buffer at its first
    gradient: torch's SGD makes it from the gradient, undamped (b_1 = g_1), while the group's
    other buffers go on damped. Every path of ours gives torch's foreach path's numbers
    (torch's own ``fused=True`` raises TypeError here, on the ``None`` buffer)."""
    kwargs = {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}
    results = []
    for cls, options in ((torch.optim.SGD, {"foreach": True}), (optim.SGD, path)):
        params = _params(shapes)
        optimizer = cls(params, **kwargs, **options)
        _train(optimizer, params, 2, skip={0})
        _train(optimizer, params, 3)
        results.append((optimizer, params))
    (t_opt, t_params), (o_opt, o_params) = results
    _close(o_params, t_params)
    _assert_same_state(t_opt, o_opt, unlike=("foreach", "fused"))


@pytest.mark.parametrize("name", ["DoG", "Prodigy", "DAdaptAdam", "SGDScheduleFree"])
def test_a_learning_rate_free_parameter_given_twice_is_not_a_silent_deviation(name):
    """The reference packages update a parameter given twice once per occurrence, in their
    per-parameter loops; ours does not reproduce that deprecated case bit for bit, so it says
    so in a warning of its own that names the parameter. Unique parameters: no warning."""
    p, q = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2, 2))
    cls = getattr(optim, name)
    with pytest.warns(UserWarning, match="more than once|duplicate parameters") as record:
        cls([p, q, q])  # (both warnings matched: pytest re-emits a warning no match covers)
    messages = [str(w.message) for w in record]
    assert any("duplicate parameters" in m for m in messages)  # torch's own
    assert any("parameter 2 (shape (2, 2)) more than once" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls([p, q])


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adagrad", "Prodigy", "SGDScheduleFree"])
def test_step_hooks_run_as_torchs(name):
    """Regression guard for the step's wrapper (ours enters the profiler label only while a
    profiler runs): the global and the optimizer's pre- and post-hooks run in torch's order,
    a pre-hook's returned arguments reach ``step`` (here a closure), a bad return value is
    torch's RuntimeError, and a removed hook no longer runs."""
    calls = {}
    results = {}
    for lib in ("torch", "ours"):
        log = calls[lib] = []
        cls = theirs(name) if lib == "torch" and hasattr(torch.optim, name) else ours(name)
        param = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        param.grad = torch.tensor([0.5, 0.25])
        optimizer = cls([param], lr=0.1) if name != "Prodigy" else cls([param])
        if hasattr(optimizer, "train"):
            optimizer.train()  # Schedule-Free steps in train mode

        def closure(log=log):
            log.append("closure")
            return torch.tensor(3.0)

        def global_pre(opt, args, kwargs, log=log):
            log.append(("global_pre", len(args), sorted(kwargs)))
            return (opt,), {"closure": closure}

        handles = [
            register_optimizer_step_pre_hook(global_pre),
            optimizer.register_step_pre_hook(
                lambda o, a, k, log=log: log.append(("pre", sorted(k)))
            ),
            optimizer.register_step_post_hook(lambda o, a, k, log=log: log.append("post")),
            register_optimizer_step_post_hook(lambda o, a, k, log=log: log.append("global_post")),
        ]
        try:
            results[lib] = optimizer.step()
        finally:
            for handle in handles:
                handle.remove()
        optimizer.step()  # no hook left
        bad = optimizer.register_step_pre_hook(lambda o, a, k: "neither None nor a pair")
        with pytest.raises(RuntimeError, match="must return None or a tuple"):
            optimizer.step()
        bad.remove()
    if hasattr(torch.optim, name):
        assert calls["ours"] == calls["torch"]
    assert calls["ours"] == [
        ("global_pre", 1, []),
        ("pre", ["closure"]),
        "closure",
        "post",
        "global_post",
    ]
    assert float(results["ours"]) == 3.0


@pytest.mark.parametrize("name", ["SGD", "Adam", "DoG"])
def test_a_profiler_sees_the_step_under_torchs_label(name):
    """Regression guard: while a profiler runs, a step is recorded as torch records it,
    ``Optimizer.step#<class>.step``."""
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.ones(3)
    optimizer = ours(name)([param])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        optimizer.step()
    labels = {event.name for event in profiler.events()}
    assert f"Optimizer.step#{name}.step" in labels


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adagrad"])
def test_fused_refuses_what_torchs_fused_kernels_refuse_at_the_step(name):
    """torch's ``test_fused_error_on_params_on_meta``: with ``fused=True``, parameters on the
    meta device (and a complex one) raise torch's RuntimeError at ``step()``, not at
    construction; after ``model.to_empty(device="cpu")`` the same optimizer steps as torch's.
    Ours stepped silently."""
    results = []
    for cls in (theirs(name), ours(name)):
        with torch.device("meta"):
            model = torch.nn.Linear(2, 3)
        optimizer = cls(model.parameters(), fused=True)
        for p in model.parameters():
            p.grad = torch.rand_like(p)
        with pytest.raises(RuntimeError, match="`fused=True` requires all the params") as caught:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.to_empty(device="cpu")
        torch.manual_seed(0)
        for p in model.parameters():
            p.data.copy_(torch.randn_like(p))
            p.grad = torch.randn_like(p)
        optimizer.step()
        results.append((str(caught.value), [p.detach().clone() for p in model.parameters()]))
        complex_param = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
        complex_param.grad = torch.randn_like(complex_param)
        with pytest.raises(RuntimeError, match="floating point Tensors"):
            cls([complex_param], fused=True).step()
    assert results[1][0] == results[0][0]
    assert all(map(torch.equal, results[1][1], results[0][1]))


def test_fused_adagrad_refuses_as_a_torch_whose_fused_adagrad_is_cpu_only(monkeypatch):
    """Where the installed torch's fused Adagrad runs on the CPU only (torch 2.11, whose check
    passes ``cuda_unsupported=True``), ``fused=True`` refuses what that torch refuses, with its
    message: on the meta device it lists the supported devices without ``'cuda'``. Before,
    ours gave torch 2.13's message there (the H100's torch 2.11 run failed the test above)."""
    monkeypatch.setattr(
        optim.Adagrad, "_fused_cpu_only", classmethod(lambda cls: True), raising=False
    )
    with torch.device("meta"):
        model = torch.nn.Linear(2, 3)
    optimizer = optim.Adagrad(model.parameters(), fused=True)
    for p in model.parameters():
        p.grad = torch.rand_like(p)
    with pytest.raises(RuntimeError) as caught:
        optimizer.step()
    with pytest.raises(RuntimeError) as expected:
        _device_dtype_check_for_fused(model.weight, cuda_unsupported=True)
    assert str(caught.value) == str(expected.value)
    assert "'cuda'" not in str(caught.value)


@pytest.mark.parametrize("name", ["SGD", "Adagrad"])
def test_fused_refuses_sparse_gradients_at_the_step_as_torchs_fused_kernels(name):
    """torch's fused SGD and Adagrad raise RuntimeError at the step for a sparse gradient (the
    other paths accept it); ours trained on, through the one-tensor path."""
    for cls in (theirs(name), ours(name)):
        param = torch.nn.Parameter(torch.ones(4))
        optimizer = cls([param], lr=0.1, fused=True)
        param.grad = torch.tensor([0.0, 1.0, 0.0, 2.0]).to_sparse()
        with pytest.raises(RuntimeError, match="sparse grad"):
            optimizer.step()
        assert torch.equal(param.detach(), torch.ones(4)), "a refused step moved nothing"


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_fused_with_capturable_trains_on_a_cpu_as_torchs_fused_kernels(name):
    """``capturable=True`` with ``fused=True`` on a CPU: torch's fused kernels accept it (its
    other paths refuse it at the step), and so does ours now, with torch fused's numbers to
    float32 rounding (the compiled kernel's, as for ``fused=True`` alone); ours refused it at
    construction."""
    results = []
    for cls in (theirs(name), ours(name)):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        start = [p.detach().clone() for p in model.parameters()]
        optimizer = cls(model.parameters(), lr=0.01, fused=True, capturable=True)
        for _ in range(3):
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            optimizer.step()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(results[1], results[0]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert not any(map(torch.equal, results[0], start)), "nothing moved"


def test_fused_updates_a_parameter_laid_out_otherwise_than_its_gradient():
    """A transposed view as a parameter and a row-major gradient: torch 2.13's CPU fused
    kernels read the parameter as laid out like the gradient and move the wrong elements
    (0.2 from its other paths after one step); ours gives torch's for-loop numbers, to the
    compiled kernel's float32 rounding (the README says so)."""
    results = []
    for cls, path in ((torch.optim.Adam, {"foreach": False}), (optim.Adam, {"fused": True})):
        base = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
        param = torch.nn.Parameter(base.t())
        optimizer = cls([param], lr=0.1, **path)
        param.grad = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
        optimizer.step()
        results.append(param.detach().clone())
    torch.testing.assert_close(results[1], results[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_fused_refuses_state_of_another_dtype_as_torchs_fused_kernels(name):
    """``model.double()`` after the first step leaves float32 state beside float64 parameters:
    torch's fused kernels raise a RuntimeError at the next step and leave the parameters where
    they were. Ours gives that error, torch's words first; it had trained on with the foreach
    path's numbers (SGD, Adagrad) or raised that path's own error (Adam, AdamW)."""
    kwargs = {"lr": 0.1, "momentum": 0.9} if name == "SGD" else {"lr": 0.1}
    messages = []
    for cls in (theirs(name), ours(name)):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        optimizer = cls(model.parameters(), fused=True, **kwargs)
        model(torch.ones(3, 4)).square().mean().backward()
        optimizer.step()
        model.double()
        optimizer.zero_grad()
        model(torch.ones(3, 4, dtype=torch.float64)).square().mean().backward()
        before = model.weight.detach().clone()
        with pytest.raises(RuntimeError) as error:
            optimizer.step()
        messages.append(str(error.value))
        assert torch.equal(model.weight.detach(), before)
    assert messages[0] == "expected scalar type Double but found Float"
    assert messages[1].startswith(messages[0])


@pytest.mark.parametrize("name", ["Adam", "Adagrad"])
def test_fused_counters_are_float32_under_a_float64_default_as_torchs(name):
    """torch's fused classes make their ``step`` counters float32 whatever the default dtype
    (``torch.optim.optimizer._get_scalar_dtype(is_fused=True)``), so their checkpoints and
    ours hold the same dtypes; under ``torch.set_default_dtype(torch.float64)`` ours made them
    float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        dtypes = []
        for cls in (theirs(name), ours(name)):
            param = torch.nn.Parameter(torch.ones(3))
            optimizer = cls([param], lr=0.1, fused=True)
            param.grad = torch.ones_like(param)
            optimizer.step()
            dtypes.append([s["step"].dtype for s in optimizer.state_dict()["state"].values()])
    finally:
        torch.set_default_dtype(previous)
    assert dtypes[0] == [torch.float32]
    assert dtypes[1] == dtypes[0]
