"""optimizer.state counts its changes, so a step can skip re-checking every state entry."""

import copy
import io
import pickle
from collections import defaultdict

import pytest
import torch

import optim
from optim._state import StateEntry, TrackedState

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
    "state update": lambda state, key: state.update({"b": StateEntry(state)}),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_every_assignment_and_removal_is_counted(mutation):
    state = TrackedState({"k": {"a": 0}})
    before = state.stamp()
    MUTATIONS[mutation](state, "k")
    assert state.stamp() != before


def test_reading_and_in_place_changes_are_not_changes():
    state = TrackedState({"k": {"a": torch.zeros(3)}})
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
