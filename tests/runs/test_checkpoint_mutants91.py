"""Stop-91 mutation audit of the resume path (runs.trainer + runs.checkpoint): a run interrupted
right after a mid-epoch checkpoint and resumed must equal an uninterrupted run bit for bit
(model, optimizer momentum, schedule driver, RNG of dropout, position in the epoch). The
reference is the uninterrupted run, with a plain hand loop pinning the first one."""

from __future__ import annotations

import pytest
import torch

import runs.checkpoint as ckpt
from runs import models as runs_models
from runs.data import dataset_from
from runs.load import parse_experiment
from runs.trainer import train_run

# (the tests register datasets or models: the registries are restored after each)
pytestmark = pytest.mark.usefixtures("clean_registries")


def _dropout_mlp(input_shape, num_classes):
    return torch.nn.Sequential(
        torch.nn.Linear(input_shape[0], 16), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Linear(16, num_classes),
    )  # fmt: skip


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(310, 6, generator=g), torch.randint(0, 3, (310,), generator=g)
    return dataset_from(x[:250], y[:250], x[250:], y[250:], num_classes=3)


def _variant():
    runs_models.register_model("m91-dropout", _dropout_mlp, replace=True)
    raw = {
        "dataset": {"name": "mnist1d"},
        "model": {"name": "m91-dropout"},
        # 250 examples / 100 = 3 updates per epoch; the checkpoint at 4 is mid-epoch
        "train": {"steps": 9, "batch_size": 100, "eval_every": 2, "schedule_unit": "step"},
        "logging": {"flush_every": 1, "stats_every": 3, "checkpoint_every": 4},
        "optimizer": {"name": "torch.sgd", "momentum": 0.9},
        "schedules": {
            "lr": {"name": "multistep", "base_lr": 0.3, "milestones": [2, 5], "gamma": 0.5}
        },
        "variants": [{"name": "v"}],
    }
    return parse_experiment(raw, "test.toml").variants[0]


class Killed(Exception):
    pass


def test_a_run_resumed_mid_epoch_equals_an_uninterrupted_one_bit_for_bit(
    data, tmp_path, monkeypatch
):
    variant = _variant()
    clean = train_run(variant, 5, data, tmp_path / "clean")

    save = ckpt.save_checkpoint

    def save_then_die(run_dir, state):
        save(run_dir, state)
        if state["step"] == 4:
            raise Killed

    monkeypatch.setattr(ckpt, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train_run(variant, 5, data, tmp_path / "resumed")
    monkeypatch.setattr(ckpt, "save_checkpoint", save)
    assert ckpt.load_checkpoint(tmp_path / "resumed")["step"] == 4
    torch.manual_seed(12345)  # a resume must not depend on the caller's global RNG state
    resumed = train_run(variant, 5, data, tmp_path / "resumed")

    assert resumed["history"]["train_loss"] == clean["history"]["train_loss"]
    assert resumed["history"]["eval"] == clean["history"]["eval"]
    assert resumed["history"]["hyper"] == clean["history"]["hyper"]
    a = ckpt.load_checkpoint(tmp_path / "resumed")
    b = ckpt.load_checkpoint(tmp_path / "clean")
    for name in b["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for key, value in b["optimizer"]["state"].items():
        assert torch.equal(a["optimizer"]["state"][key]["momentum_buffer"],
                           value["momentum_buffer"])  # fmt: skip


def test_history_lists_of_two_different_lengths_are_named():
    history = {"eval": {"step": [0, 5], "test_accuracy": [0.1]},
               "train_loss": {"step": [], "value": []}, "hyper": {}}  # fmt: skip
    problem = ckpt.history_problem(history, {"test_accuracy": 0.1})
    assert problem is not None
    assert "differ in length" in problem


def test_a_boolean_seed_is_not_an_integer_in_result_json(tmp_path):
    import json

    history = {"eval": {"step": [0], "test_accuracy": [0.1]},
               "train_loss": {"step": [], "value": []}, "hyper": {}}  # fmt: skip
    result = {"variant": "v", "seed": True, "status": "finished",
              "final": {"test_accuracy": 0.1}, "fingerprint": "f", "history": history}  # fmt: skip
    (tmp_path / "result.json").write_text(json.dumps(result))
    with pytest.raises(ValueError, match="seed must be an integer"):
        ckpt.load_result(tmp_path)


def test_strict_json_turns_non_finite_values_inside_tuples_into_null():
    assert ckpt.strict_json({"a": (1.0, float("nan"), float("inf"))}) == {"a": [1.0, None, None]}


def test_a_final_metric_that_is_not_a_number_is_named(tmp_path):
    import json

    history = {"eval": {"step": [0], "test_accuracy": [0.1]},
               "train_loss": {"step": [], "value": []}, "hyper": {}}  # fmt: skip
    result = {"variant": "v", "seed": 0, "status": "finished", "fingerprint": "f",
              "final": {"test_accuracy": "0.1"}, "history": history}  # fmt: skip
    (tmp_path / "result.json").write_text(json.dumps(result))
    with pytest.raises(ValueError, match=r"final\.test_accuracy must be a number"):
        ckpt.load_result(tmp_path)
