"""optimizer.state counts its changes, so a step can skip re-checking every state entry."""

import copy
import io
import operator
import pickle
from collections import defaultdict

import pytest
import torch

import optim
from optim._state import HandedList, StateEntry, TrackedState

MUTATIONS = {
    "entry setitem": lambda state, key: state[key].__setitem__("x", 1),
    "entry delitem": lambda state, key: state[key].__delitem__("a"),
    "entry clear": lambda state, key: state[key].clear(),
    "entry pop": lambda state, key: state[key].pop("a"),
    "entry popitem": lambda state, key: state[key].popitem(),
    "entry setdefault": lambda state, key: state[key].setdefault("y", 2),
    "entry update": lambda state, key: state[key].update(z=3),
    "entry ior": lambda state, key: state[key].__ior__({"w": 4}),
    "state delitem": lambda state, key: state.__delitem__(key),
    "state clear": lambda state, key: state.clear(),
    "state pop": lambda state, key: state.pop(key),
    "state popitem": lambda state, key: state.popitem(),
    "state new entry": lambda state, key: state["another"],
    "state update": lambda state, key: state.update({"b": StateEntry.owned_by(state)}),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_every_assignment_and_removal_is_counted(mutation):
    state = TrackedState(dict, {"k": {"a": 0}})
    before = state.stamp()
    MUTATIONS[mutation](state, "k")
    assert state.stamp() != before


def test_reading_and_in_place_changes_are_not_changes():
    state = TrackedState(dict, {"k": {"a": torch.zeros(3)}})
    before = state.stamp()
    state["k"]["a"].add_(1)
    _ = state["k"], state.get("k"), list(state.items()), "k" in state
    assert state.stamp() == before


def test_a_plain_dict_assigned_from_outside_turns_the_shortcut_off():
    state = TrackedState()
    mine = {"a": 1}
    state["k"] = mine
    assert state["k"] is mine  # kept as it is: the user may hold it
    assert state.stamp() is None


def test_copies_pickles_and_state_dicts_are_torchs_plain_types():
    params = [torch.randn(3, requires_grad=True)]
    opt = optim.Adam(params)
    params[0].grad = torch.ones(3)
    opt.step()
    assert type(opt.state) is TrackedState
    for copied in (copy.deepcopy(opt.state), pickle.loads(pickle.dumps(opt.state))):
        assert type(copied) is defaultdict
        assert all(type(v) is dict for v in copied.values())
    saved = opt.state_dict()
    assert all(type(v) is dict for v in saved["state"].values())
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)  # no class of ours inside
    opt.load_state_dict(saved)
    assert type(opt.state) is TrackedState


def test_steady_steps_skip_the_per_entry_check(monkeypatch):
    params = [torch.randn(3, 2, requires_grad=True) for _ in range(20)]
    opt = optim.Adam(params)
    for _ in range(3):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    calls = []
    original = type(opt)._states
    monkeypatch.setattr(
        type(opt), "_states", lambda self, *a: calls.append(1) or original(self, *a)
    )
    opt.step()
    assert calls == []
    opt.state[params[0]]["exp_avg"] = torch.zeros_like(params[0])  # a change: checked again
    opt.step()
    assert calls


LIST_READS = {  # each hands an item out
    "index": lambda items: items[0],
    "slice": lambda items: items[:1],
    "iteration": lambda items: list(items),
    "unpacking": lambda items: [*items],
    "tuple": lambda items: tuple(items),
    "reversed": lambda items: list(reversed(items)),
    "copy": lambda items: items.copy(),
    "copy.copy": lambda items: copy.copy(items),
    "plus": lambda items: operator.add(items, []),
    "plus from the left": lambda items: operator.add([], items),
    "times": lambda items: items * 2,
    "times from the left": lambda items: 2 * items,
    "pickle": lambda items: pickle.dumps(items),
}
LIST_CHANGES = {
    "setitem": lambda items: items.__setitem__(0, torch.ones(1)),
    "delitem": lambda items: items.__delitem__(0),
    "append": lambda items: items.append(torch.ones(1)),
    "extend": lambda items: items.extend([torch.ones(1)]),
    "insert": lambda items: items.insert(0, torch.ones(1)),
    "remove": lambda items: items.remove(items[0]),
    "pop": lambda items: items.pop(),
    "clear": lambda items: items.clear(),
    "sort": lambda items: items.sort(key=id),
    "reverse": lambda items: items.reverse(),
    "in-place plus": lambda items: items.__iadd__([torch.ones(1)]),
    "in-place times": lambda items: items.__imul__(2),
}


@pytest.mark.parametrize("how", [*LIST_READS, *LIST_CHANGES])
def test_a_handed_list_counts_what_it_hands_out_and_its_changes(how):
    """``HandedList`` (DoG's x_0 in its group) counts each read of its items from outside on its
    owner's ``exposures``, and each change of them also in ``mutations``; its length and a
    deep copy hand nothing out."""
    state = TrackedState()
    items = HandedList.owned_by(state, [torch.zeros(1), torch.ones(1)])
    len(items)
    copy.deepcopy(items)
    assert (state.exposures, items.mutations) == (0, 0)
    (LIST_READS | LIST_CHANGES)[how](items)
    assert state.exposures >= 1
    assert items.mutations == (1 if how in LIST_CHANGES else 0)


def test_a_handed_list_read_inside_the_optimizer_is_not_counted_and_pickles_as_a_list():
    state = TrackedState()
    items = HandedList.owned_by(state, [torch.zeros(1)])
    outer = state.enter()
    list(items)
    state.leave(outer)
    assert state.exposures == 0
    for copied in (pickle.loads(pickle.dumps(items)), copy.deepcopy(items), copy.copy(items)):
        assert type(copied) is list
        assert torch.equal(copied[0], torch.zeros(1))


def test_the_containers_are_built_as_dict_list_and_defaultdict_are():
    """``type(x)(items)`` (and ``type(state)(factory, items)``) gives a container of those
    items, as for torch's plain ``dict``, ``list`` and ``defaultdict(dict)``; an entry so made
    is adopted, tracked, by the state it is put into. (Before: the entry and the list took the
    items for their owner and came out empty, and the state refused the factory.)"""
    state = TrackedState(dict, {"k": {"a": torch.zeros(1)}})
    entry = type(state["k"])({"a": torch.ones(1)}, b=2)
    assert dict(entry) == {"a": torch.ones(1), "b": 2}
    state["k"] = entry
    assert entry.owner is state
    assert state.stamp() is not None  # still tracked: no per-entry checks at every step
    rebuilt = type(state)(state.default_factory, {"k": {"a": 3}})
    assert type(rebuilt) is TrackedState
    assert rebuilt.default_factory is dict
    assert dict(rebuilt["k"]) == {"a": 3}
    with pytest.raises(TypeError, match=r"first argument must be callable or None .* got a dict"):
        TrackedState({"k": {}})  # (as defaultdict({"k": {}}) raises)
    items = HandedList.owned_by(state, [torch.zeros(1)])
    assert list(type(items)([1, 2])) == [1, 2]


DELETED_OPTIMIZERS = [
    *(("SGD", {"momentum": 0.9}), ("Adam", {}), ("AdamW", {}), ("Adagrad", {})),
    *(("RMSprop", {}), ("Adadelta", {}), ("Prodigy", {}), ("DAdaptSGD", {})),
    *(("DAdaptAdam", {}), ("DAdaptAdaGrad", {}), ("DoG", {}), ("LDoG", {})),
    *(("SGDScheduleFree", {}), ("AdamWScheduleFree", {}), ("SPS", {}), ("SLS", {})),
]


def _deleted(make_optimizer) -> tuple[bool, int, int]:
    """Build an optimizer over 20 tensors, take two steps, delete it with the cycle collector
    off: whether the optimizer is still alive, how many of its state tensors are, and how many
    objects the collector then finds among the objects made since the start. (With the
    collector off, every object made here stays in its youngest generation, which
    ``gc.collect(0)`` searches alone: a full collection of a worker's heap took about 0.5 s.)"""
    import gc
    import weakref

    gc.collect(0)
    gc.disable()
    try:
        params = [torch.randn(10, requires_grad=True) for _ in range(20)]
        optimizer = make_optimizer(params)
        if hasattr(optimizer, "train"):
            optimizer.train()

        def closure():
            for p in params:
                p.grad = None
            loss = sum((p * p).sum() for p in params)
            loss.backward()
            return loss

        for _ in range(2):
            optimizer.step(closure)
        held = [
            weakref.ref(value)
            for entry in optimizer.state.values()
            for value in entry.values()
            if isinstance(value, torch.Tensor)
        ]
        alive = weakref.ref(optimizer)
        del optimizer
        result = (alive() is not None, sum(ref() is not None for ref in held))
        return (*result, gc.collect(0))
    finally:
        gc.enable()


@pytest.mark.parametrize("impl", ["foreach", "single", "flat"])
@pytest.mark.parametrize(("name", "kwargs"), DELETED_OPTIMIZERS, ids=lambda v: v or "")
def test_a_deleted_optimizer_frees_its_state_at_once_as_torchs(name, kwargs, impl):
    """``del optimizer`` frees the optimizer and its state tensors by reference counting alone,
    as torch's (its ``test_lrscheduler.py::test_no_cyclic_references`` asserts that the cycle
    collector then finds nothing). Each state entry used to hold its state back strongly (a
    cycle): every state tensor outlived the optimizer until the collector ran, which on a GPU
    keeps its memory."""
    _deleted(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9))  # (torch's lazy imports)
    assert _deleted(lambda ps: getattr(optim, name)(ps, impl=impl, **kwargs)) == (False, 0, 0)


@pytest.mark.parametrize("impl", ["foreach", "flat"])
@pytest.mark.parametrize(("name", "kwargs"), DELETED_OPTIMIZERS, ids=lambda v: v or "")
def test_deepcopy_and_pickle_keep_every_public_attribute(name, kwargs, impl):
    """torch's ``test_deepcopy_copies_all_public_attrs``, and the same through a pickle: a
    copy has every public attribute of the optimizer, with its value. Prodigy's and
    D-Adaptation's ``d0`` and DAdaptSGD's ``rank`` and ``loggables`` (their packages'
    attributes, which the packages' own copies lose) used to be dropped."""
    optimizer = getattr(optim, name)([torch.randn(3, requires_grad=True)], impl=impl, **kwargs)
    public = {key for key in vars(optimizer) if not key.startswith("_")}
    buffer = io.BytesIO()
    torch.save(optimizer, buffer)
    buffer.seek(0)
    for copied in (copy.deepcopy(optimizer), torch.load(buffer, weights_only=False)):
        assert {key for key in vars(copied) if not key.startswith("_")} == public
        for key in public - {"state", "param_groups", "defaults"}:  # (torch's __setstate__
            # adds "differentiable" to defaults that lack it, the packages' own copies too)
            assert getattr(copied, key) == getattr(optimizer, key), key


class _TorchAdamWithCallback(torch.optim.Adam):
    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.callback = lambda: None  # (a user's attribute, which pickle refuses)


class _AdamWithCallback(optim.Adam):
    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self.callback = lambda: None


def test_a_subclass_attribute_is_dropped_by_deepcopy_and_pickle_as_torchs():
    """An attribute a user's subclass sets (here a lambda) is not part of a copy or a pickle,
    as with the same subclass of torch's class, whose pickled state is its three keys."""
    publics = []
    for subclass in (_TorchAdamWithCallback, _AdamWithCallback):
        optimizer = subclass([torch.randn(3, requires_grad=True)], lr=0.1)
        buffer = io.BytesIO()
        torch.save(optimizer, buffer)  # (raises where the lambda is pickled)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        copied = copy.deepcopy(optimizer)
        assert not hasattr(loaded, "callback")
        assert not hasattr(copied, "callback")
        publics.append({key for key in vars(copied) if not key.startswith("_")})
    assert publics[1] - publics[0] == {"impl", "compile"}, publics
