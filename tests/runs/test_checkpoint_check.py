"""The check a checkpoint passes before it is written (``runs.checkpoint.unreadable_entry``):
a state of a structure already read back in the process skips the round trip, and the verdict
is the round trip's whatever the state."""

from __future__ import annotations

import collections
import io

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from runs import checkpoint as ckpt


def _state(lr: float = 0.1, step: int = 3, name: str = "adam") -> dict:
    return {
        "step": step,
        "model": collections.OrderedDict(w=torch.ones(3), b=torch.zeros(2, dtype=torch.float64)),
        "optimizer": {
            "state": {0: {"step": torch.tensor(2.0), "exp_avg": torch.ones(3)}},
            "param_groups": [{"lr": lr, "betas": (0.9, 0.999), "name": name, "params": [0, 1]}],
        },
        "device": torch.device("cpu"),
        "dtype": torch.float32,
    }


def _round_trip_reads(state) -> bool:
    """The unpickler's own verdict on ``state``'s skeleton, with no memory of earlier states."""
    buffer = io.BytesIO()
    torch.save(ckpt._skeleton(state), buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, map_location="cpu", weights_only=True)
    except Exception:  # (any refusal)
        return False
    return True


@pytest.fixture
def loads(monkeypatch) -> list:
    """A process with no structure read back yet; each ``torch.load`` of the check recorded."""
    monkeypatch.setattr(ckpt, "_READABLE_STRUCTURES", set(), raising=False)
    calls: list = []
    load = torch.load

    def counted(*args, **kwargs):
        calls.append(1)
        return load(*args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "load", counted)
    return calls


def test_a_state_of_a_structure_read_back_before_skips_the_round_trip(loads):
    assert ckpt.unreadable_entry(_state()) is None
    assert len(loads) == 1
    # other numbers and strings, the same structure: no second round trip
    assert ckpt.unreadable_entry(_state(lr=0.02, step=70, name="sgd")) is None
    assert len(loads) == 1


def test_a_state_of_another_structure_is_read_back_again_and_refused_by_its_entry(loads):
    assert ckpt.unreadable_entry(_state()) is None
    refused = ckpt.unreadable_entry(_state(lr=np.float64(0.1)))
    assert refused is not None
    assert "optimizer.param_groups[0].lr" in refused
    assert "numpy.float64" in refused
    assert len(loads) == 2
    # a tensor of another dtype, another device value: other structures, read back again
    other = _state()
    other["model"]["w"] = torch.ones(3, dtype=torch.bfloat16)
    assert ckpt.unreadable_entry(other) is None
    assert len(loads) == 3


@pytest.mark.parametrize("large", [2**2039, -(2**2039) - 1], ids=["2**2039", "-2**2039-1"])
def test_an_int_pickle_writes_with_long4_is_read_back_again_and_refused(loads, large):
    """An int of more than 255 bytes is pickled with ``LONG4``, which the weights-only unpickler
    refuses; one of 255 bytes (``2**2038``, ``-2**2039``) with ``LONG1``, which it reads. The
    same dict holding a small int is no licence for it (the remembered structure had taken every
    int below 2**2040 for one)."""
    assert ckpt.unreadable_entry({"step": 3}) is None
    assert ckpt.unreadable_entry({"step": 2**2038}) is None
    assert ckpt.unreadable_entry({"step": -(2**2039)}) is None
    assert ckpt.unreadable_entry({"step": large}) is not None
    assert _round_trip_reads({"step": -(2**2039)})  # (the unpickler's own verdicts)
    assert not _round_trip_reads({"step": large})


class _Foreign:
    """An object the weights-only unpickler refuses."""


_PLAIN_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**2038, 2**2039, -(2**2039), -(2**2039) - 1]),  # (LONG1 / LONG4)
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from([torch.float32, torch.int64, torch.device("cpu"), torch.Size([2, 3])]),
    st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.int32, torch.bool]).map(
        lambda dtype: torch.zeros(2, dtype=dtype)
    ),
    st.sampled_from([np.float64(0.5), np.int64(3), _Foreign(), torch.nn.Parameter(torch.ones(2))]),
)
_STATES = st.recursive(
    _PLAIN_VALUES,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 9)), children, max_size=3),
    ),
    max_leaves=8,
)


@given(state=_STATES)
def test_the_verdict_is_the_round_trips_whether_or_not_a_structure_was_seen(state):
    """Checked twice (the second time the structure may be remembered) and beside a fresh round
    trip: the same verdict each time."""
    expected = _round_trip_reads(state)
    for _ in range(2):
        assert (ckpt.unreadable_entry(state) is None) == expected
