"""A layout trusts its state views without checking them while no code outside the optimizer can
have moved one (``optim._state``: ``TrackedState.exposures``, ``RuleOptimizer._storage_holds``).

Each way a script can get hold of a state tensor (an entry's value read, the entry copied or
unpacked, ``state_dict()``, a step hook, a reference kept from before, a loaded state dict) is
followed by a move of that tensor's data or metadata (``.data = ...``, ``.set_()``, ``.t_()``),
beside torch.optim (or the reference package) given the same sequence: the next steps must give
its numbers, as they would if the views were checked at every step. And where nothing is handed
out, the views are not checked at every step (the point of the shortcut).
"""

from __future__ import annotations

import copy
import io
import weakref

import pytest
import torch

import optim
from optim import _paths

COUNT = _paths.PACK_AT_LEAST + 4  # small tensors: packed (and laid out flat with impl="flat")
SHAPE = (4, 4)  # square, so that a state tensor transposed in place keeps its shape


def _params(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=generator, dtype=torch.float64) for _ in range(COUNT)]


def _step(optimizer, params: list[torch.Tensor], t: int) -> None:
    generator = torch.Generator().manual_seed(100 + t)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)
    optimizer.step()


CHANNELS = {  # how a script gets state tensor `key` of parameter `i`
    "getitem": lambda opt, ps, i, key: opt.state[ps[i]][key],
    "get": lambda opt, ps, i, key: opt.state[ps[i]].get(key),
    "values": lambda opt, ps, i, key: dict(zip(opt.state[ps[i]], opt.state[ps[i]].values()))[key],
    "items": lambda opt, ps, i, key: dict(opt.state[ps[i]].items())[key],
    "dict()": lambda opt, ps, i, key: dict(opt.state[ps[i]])[key],
    "unpacked": lambda opt, ps, i, key: {**opt.state[ps[i]]}[key],
    "update": lambda opt, ps, i, key: _updated({}, opt.state[ps[i]])[key],
    "copy.copy": lambda opt, ps, i, key: copy.copy(opt.state[ps[i]])[key],
    "entry.copy": lambda opt, ps, i, key: opt.state[ps[i]].copy()[key],
    "or": lambda opt, ps, i, key: (opt.state[ps[i]] | {})[key],
    "state.values": lambda opt, ps, i, key: list(opt.state.values())[i][key],
    "state_dict": lambda opt, ps, i, key: opt.state_dict()["state"][i][key],
}

MOVES = {  # what the script then does with it
    "data": lambda t: setattr(t, "data", torch.full_like(t, 0.25)),
    "set_": lambda t: t.set_(torch.full_like(t, 0.75)),
    "t_": lambda t: t.t_(),
}


def _updated(target: dict, entry: dict) -> dict:
    target.update(entry)
    return target


def _pair(name: str, impl: str | None):
    """Our optimizer and torch's over equal float64 parameters (``impl`` is ours)."""
    ours, theirs = _params(), _params()
    kwargs = {} if impl is None else {"impl": impl}
    return (
        (getattr(optim, name)(ours, lr=0.01, **kwargs), ours),
        (getattr(torch.optim, name)(theirs, lr=0.01, foreach=False), theirs),
    )


def _assert_same(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _steps(pairs, steps: range, compare: bool = False) -> None:
    """Steps ``steps`` of each (optimizer, parameters) pair; with ``compare``, the parameters
    of the two equal after each."""
    for t in steps:
        for opt, params in pairs:
            _step(opt, params, t)
        if compare:
            _assert_same(pairs[0][1], pairs[1][1])


@pytest.mark.parametrize("move", sorted(MOVES))
@pytest.mark.parametrize("channel", sorted(CHANNELS))
@pytest.mark.parametrize("impl", [None, "flat"], ids=["default", "flat"])
def test_a_state_tensor_got_any_way_and_moved_later_is_used_as_torch(impl, channel, move):
    """Trusted after steady steps, then a state tensor got through ``channel`` and kept over two
    steps, then moved by ``move``: every later step gives torch's parameters."""
    pairs = _pair("Adam", impl)
    _steps(pairs, range(6))  # steady: the layout trusts its views
    held = [CHANNELS[channel](opt, params, 3, "exp_avg") for opt, params in pairs]
    _steps(pairs, range(6, 8), compare=True)
    for tensor in held:
        MOVES[move](tensor)
    _steps(pairs, range(8, 11), compare=True)


@pytest.mark.parametrize("move", sorted(MOVES))
@pytest.mark.parametrize("impl", [None, "flat"], ids=["default", "flat"])
def test_a_state_tensor_moved_at_once_through_its_entry_is_used_as_torch(impl, move):
    """``opt.state[p]["exp_avg"].data = ...`` in one statement (nothing kept) after the layout
    trusts its views: the read counts, so the next step checks and sees the move."""
    pairs = _pair("Adam", impl)
    _steps(pairs, range(6))
    for opt, params in pairs:
        MOVES[move](opt.state[params[5]]["exp_avg_sq"])
    _steps(pairs, range(6, 9), compare=True)


@pytest.mark.parametrize("impl", [None, "flat"], ids=["default", "flat"])
def test_a_state_tensor_kept_from_the_first_step_and_moved_much_later(impl):
    """A reference taken after the first step (before any layout) and kept: the layout never
    trusts its views while it is held, and sees the move ten steps later."""
    pairs = _pair("Adam", impl)
    for opt, params in pairs:
        _step(opt, params, 0)
    held = [opt.state[params[2]]["exp_avg"] for opt, params in pairs]
    _steps(pairs, range(1, 11))
    for tensor in held:
        tensor.data = torch.ones_like(tensor)
    _steps(pairs, range(11, 14), compare=True)


@pytest.mark.parametrize("impl", [None, "flat"], ids=["default", "flat"])
def test_a_state_tensor_taken_in_a_step_hook_and_moved_later(impl):
    """A step post-hook (outside the optimizer's own code) keeps a state tensor; moved later."""
    pairs = _pair("Adam", impl)
    kept = {}

    def keep(optimizer, args, kwargs):
        if "t" not in kept.setdefault(id(optimizer), {}):
            params = optimizer.param_groups[0]["params"]
            kept[id(optimizer)]["t"] = optimizer.state[params[1]]["exp_avg"]

    _steps(pairs, range(6))
    for opt, _ in pairs:
        opt.register_step_post_hook(keep)
    _steps(pairs, range(6, 9))
    for entry in kept.values():
        entry["t"].data = torch.full_like(entry["t"], 2.0)
    _steps(pairs, range(9, 12), compare=True)


@pytest.mark.parametrize("impl", [None, "flat"], ids=["default", "flat"])
def test_a_loaded_state_dict_kept_and_moved_later(impl):
    """The tensors of a loaded state dict become torch's live state (``load_state_dict`` keeps
    them where dtype and device already match); the caller keeps the dict and moves one."""
    pairs = _pair("Adam", impl)
    _steps(pairs, range(4))
    saved = copy.deepcopy(pairs[1][0].state_dict())  # (torch's; the same for both)
    loaded = []
    for opt, _ in pairs:
        copied = copy.deepcopy(saved)
        opt.load_state_dict(copied)
        loaded.append(copied)
    _steps(pairs, range(4, 10))
    for copied in loaded:
        tensor = copied["state"][0]["exp_avg"]
        tensor.data = torch.full_like(tensor, 3.0)
    _steps(pairs, range(10, 13), compare=True)


def test_dadapt_sgd_state_got_and_moved_later_is_used_as_the_package():
    """The learning-rate-free layouts (``optim._global.Pack``) trust their views the same way:
    DAdaptSGD's ``s`` got after trust, kept, moved; the package's parameters after it."""
    dadaptation = pytest.importorskip("dadaptation")
    ours_params, package_params = _params(), _params()
    pairs = [
        (optim.DAdaptSGD(ours_params, momentum=0.9), ours_params),
        (dadaptation.DAdaptSGD(package_params, momentum=0.9), package_params),
    ]
    _steps(pairs, range(6))
    held = [opt.state[params[4]]["s"] for opt, params in pairs]
    _steps(pairs, range(6, 8))
    for tensor in held:
        tensor.data = tensor.data * 0.5
    _steps(pairs, range(8, 11), compare=True)


X0_CHANNELS = {  # how a script gets DoG's x_0 of parameter `i` through its group, as the package
    "index": lambda group, i: group["init_buffer"][i],
    "list()": lambda group, i: list(group["init_buffer"])[i],
    "unpacked": lambda group, i: [*group["init_buffer"]][i],
    "for": lambda group, i: next(x for j, x in enumerate(group["init_buffer"]) if j == i),
    "reversed": lambda group, i: list(reversed(group["init_buffer"]))[-1 - i],
    "slice": lambda group, i: group["init_buffer"][i : i + 1][0],
    "copy": lambda group, i: group["init_buffer"].copy()[i],
    "copy.copy": lambda group, i: copy.copy(group["init_buffer"])[i],
    "plus": lambda group, i: (group["init_buffer"] + [])[i],
    "times": lambda group, i: (group["init_buffer"] * 1)[i],
}


@pytest.mark.parametrize("move", sorted(MOVES))
@pytest.mark.parametrize("channel", [*sorted(X0_CHANNELS), "kept list", "state_dict"])
@pytest.mark.parametrize("impl", [None, "flat"], ids=["default", "flat"])
@pytest.mark.parametrize("name", ["DoG", "LDoG"])
def test_dog_x0_got_through_its_group_and_moved_later_is_used_as_the_package(
    name, impl, channel, move
):
    """DoG keeps x_0 in its group too (``group["init_buffer"]``, as the package): its layouts
    trust their views while nothing reads that list from outside either
    (``optim._state.HandedList``). x_0 got through the group after trust (or from a list kept
    since before, or from ``state_dict()``), kept over two steps, then moved: the package's
    parameters after."""
    dog = pytest.importorskip("dog")
    ours_params, package_params = _params(), _params()
    kwargs = {} if impl is None else {"impl": impl}
    pairs = [
        (getattr(optim, name)(ours_params, **kwargs), ours_params),
        (getattr(dog, name)(package_params), package_params),
    ]
    kept_lists = []
    _steps(pairs, range(2))
    if channel == "kept list":
        kept_lists = [opt.param_groups[0]["init_buffer"] for opt, _ in pairs]
    _steps(pairs, range(2, 6))  # steady
    if channel == "kept list":
        held = [kept[3] for kept in kept_lists]
    elif channel == "state_dict":
        held = [opt.state_dict()["param_groups"][0]["init_buffer"][3] for opt, _ in pairs]
    else:
        held = [X0_CHANNELS[channel](opt.param_groups[0], 3) for opt, _ in pairs]
    _steps(pairs, range(6, 8), compare=True)
    for tensor in held:
        MOVES[move](tensor)
    _steps(pairs, range(8, 11), compare=True)


def _count_view_checks(monkeypatch) -> list[int]:
    calls = [0]
    original = _paths.OwnedState.storage_holds

    def counting(self):
        calls[0] += 1
        return original(self)

    monkeypatch.setattr(_paths.OwnedState, "storage_holds", counting)
    return calls


@pytest.mark.parametrize(
    ("name", "impl"),
    [
        ("Adam", None),
        ("Adam", "flat"),
        ("Adagrad", None),
        ("DAdaptSGD", None),
        ("DAdaptAdam", "flat"),
        ("DoG", None),
        ("LDoG", "flat"),
    ],
)
def test_views_are_not_checked_at_every_step_while_nothing_is_handed_out(name, impl, monkeypatch):
    """Steady steps with no access to ``optimizer.state``: after the step that first finds only
    the layout's own references, no step passes over the views (before the shortcut: one pass
    per step). A read of an entry's value makes the next step check once, and trust again once
    the reader's reference is gone; ``torch.save(optimizer.state_dict())`` likewise."""
    calls = _count_view_checks(monkeypatch)
    params = _params()
    kwargs = {} if impl is None else {"impl": impl}
    optimizer = getattr(optim, name)(params, **kwargs)
    for t in range(4):
        _step(optimizer, params, t)
    calls[0] = 0
    for t in range(4, 14):
        _step(optimizer, params, t)
    assert calls[0] <= 1, f"the views were checked in {calls[0]} of 10 steady steps"
    key = next(iter(optimizer.state[params[0]]))
    _ = optimizer.state[params[0]][key]  # read, nothing kept
    del _
    calls[0] = 0
    for t in range(14, 18):
        _step(optimizer, params, t)
    assert calls[0] == 1, calls[0]
    torch.save(optimizer.state_dict(), io.BytesIO())
    calls[0] = 0
    for t in range(18, 22):
        _step(optimizer, params, t)
    assert calls[0] == 1, calls[0]


def test_a_kept_reference_keeps_the_views_checked(monkeypatch):
    """While a script holds a state tensor, every step checks the views; once dropped, the next
    check trusts them again."""
    calls = _count_view_checks(monkeypatch)
    params = _params()
    optimizer = optim.Adam(params)
    for t in range(6):
        _step(optimizer, params, t)
    kept = optimizer.state[params[7]]["exp_avg"]
    calls[0] = 0
    for t in range(6, 10):
        _step(optimizer, params, t)
    assert calls[0] == 4
    del kept
    calls[0] = 0
    for t in range(10, 14):
        _step(optimizer, params, t)
    assert calls[0] == 1


def test_reads_inside_the_optimizers_own_step_are_not_counted():
    """The optimizer's own reads of its state (a step, a Schedule-Free switch) hand nothing out;
    a step hook's and a closure's do."""
    params = _params()
    optimizer = optim.SGDScheduleFree(params, lr=0.1)
    optimizer.train()
    for t in range(3):
        _step(optimizer, params, t)
    before = optimizer.state.exposures
    optimizer.eval()
    optimizer.train()
    _step(optimizer, params, 3)
    assert optimizer.state.exposures == before

    def closure():
        _ = optimizer.state[params[0]]["z"]
        return torch.zeros(())

    optimizer.step(closure)
    assert optimizer.state.exposures == before + 1


@pytest.mark.parametrize("holder", ["weakref", "future"])
def test_a_state_tensor_held_without_a_python_variable_and_moved_later(holder):
    """A state tensor read once, then held only by a weak reference or by a
    ``torch.futures.Future`` (an ``IValue`` on the C++ side), and moved through that holder
    several steps later: torch's parameters after it."""
    pairs = _pair("Adam", None)
    _steps(pairs, range(6))
    holders = []
    for opt, params in pairs:
        tensor = opt.state[params[6]]["exp_avg"]
        if holder == "weakref":
            holders.append(weakref.ref(tensor))
        else:
            future = torch.futures.Future()
            future.set_result(tensor)
            holders.append(future.wait)
        del tensor
    _steps(pairs, range(6, 10))
    for held in holders:
        tensor = held()
        tensor.data = torch.full_like(tensor, 0.5)
    _steps(pairs, range(10, 13), compare=True)


@pytest.mark.parametrize("view", ["values", "items", "iterator"])
def test_a_kept_view_of_an_entry_hands_out_its_tensors_later(view):
    """``entry.values()`` or ``items()`` kept (or an iterator over one) holds the entry, not its
    tensors, and gives them out later without another read: the layout keeps checking while it
    is held, and sees a tensor got through it and moved four steps later."""
    pairs = _pair("Adam", None)
    _steps(pairs, range(6))
    views = []
    for opt, params in pairs:
        entry = opt.state[params[4]]
        kept = {"values": entry.values, "items": entry.items}.get(view, entry.values)()
        views.append(iter(kept) if view == "iterator" else kept)
    _steps(pairs, range(6, 10), compare=True)
    for kept in views:
        values = [v for _, v in kept] if view == "items" else list(kept)
        tensor = next(v for v in values if torch.is_tensor(v) and v.dim() == 2)  # exp_avg
        tensor.data = torch.full_like(tensor, 0.5)
    _steps(pairs, range(10, 13), compare=True)
