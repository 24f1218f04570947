"""The experiment's TensorBoard layout and HParams configuration cover what the runs log: the
learning rates a search tries and chooses are an HParams column, and a schedule given for the
alias ``beta1`` gets the chart of the tag the driver logs, ``hyper/betas[0]/group<g>`` (audit of
stop 89: the configuration was written from the variants before the search set their rates, and
the chart's pattern read ``hyper/beta1/...``, which no tag matches)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2, metadata
from tensorboard.util import tensor_util
from torch import nn

import runs

pytestmark = pytest.mark.usefixtures("clean_registries")


def _register() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (120,), generator=g)
    inputs = torch.randn(2, 6, generator=g)[labels] + torch.randn(120, 6, generator=g)
    runs.register_model("tiny", lambda shape, k: nn.Sequential(nn.Linear(shape[0], k)))
    runs.register_dataset(
        "blobs", train_x=inputs[:80], train_y=labels[:80], test_x=inputs[80:], test_y=labels[80:]
    )


def _variant(name: str, optimizer: runs.Optimizer, **fields) -> runs.Variant:
    return runs.Variant(
        name=name,
        dataset=runs.Dataset("blobs"),
        model=runs.Model("tiny"),
        train=runs.Train(steps=4, batch_size=20, eval_every=2),
        optimizer=optimizer,
        **fields,
    )


def _events(folder, suffix):
    (path,) = folder.glob(f"events.out.tfevents.*{suffix}")
    return [
        v for ev in event_file_loader.EventFileLoader(str(path)).Load() for v in ev.summary.value
    ]


def _logged_tags(run_dir) -> set[str]:
    return {
        v.tag
        for path in run_dir.glob("events.out.tfevents.*")
        for ev in event_file_loader.EventFileLoader(str(path)).Load()
        for v in ev.summary.value
    }


def test_a_searched_learning_rate_is_an_hparams_column(tmp_path):
    _register()
    spec = runs.Experiment(
        name="searched",
        seeds=1,
        search=runs.Search(lr=[0.01, 0.1]),
        variants=(_variant("sgd", runs.Optimizer("sgd", {})),),
    )
    runs.run(spec, logdir=tmp_path)
    (value,) = _events(tmp_path / "searched", ".hparams")
    plugin = metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)
    columns = {info.name for info in plugin.hparam_infos}
    assert "optimizer.lr" in columns
    # every hyperparameter a session records (search runs and final runs) is a column
    sessions = [
        *(tmp_path / "searched" / "_search").glob("*/*/seed0"),
        tmp_path / "searched" / "sgd" / "seed0",
    ]
    recorded = []
    for run_dir in sessions:
        for path in run_dir.glob("events.out.tfevents.*"):
            for ev in event_file_loader.EventFileLoader(str(path)).Load():
                for v in ev.summary.value:
                    if v.tag == metadata.SESSION_START_INFO_TAG:
                        content = v.metadata.plugin_data.content
                        recorded.append(metadata.parse_session_start_info_plugin_data(content))
    assert len(recorded) >= 3  # (two search runs and the final run)
    for start in recorded:
        assert "optimizer.lr" in start.hparams
        assert set(start.hparams) <= columns


def test_a_beta1_schedule_is_charted_under_the_tag_the_driver_logs(tmp_path):
    _register()
    beta1 = {"name": "linear_warmup", "warmup_steps": 3, "start_factor": 0.5}
    beta1["schedule"] = {"name": "constant", "value": 0.9}
    spec = runs.Experiment(
        name="betas",
        seeds=1,
        variants=(
            _variant("adam", runs.Optimizer("adam", {"lr": 0.01}), schedules={"beta1": beta1}),
        ),
    )
    runs.run(spec, logdir=tmp_path)
    tags = {
        t for t in _logged_tags(tmp_path / "betas" / "adam" / "seed0") if t.startswith("hyper/")
    }
    assert "hyper/betas[0]/group0" in tags
    (value,) = _events(tmp_path / "betas", ".layout")
    layout = layout_pb2.Layout()
    layout.ParseFromString(tensor_util.make_ndarray(value.tensor).item())
    patterns = [
        pattern
        for category in layout.category
        for chart in category.chart
        for pattern in chart.multiline.tag
    ]
    for tag in tags:  # every logged hyperparameter has a chart, and every chart a tag
        assert any(re.search(pattern, tag) for pattern in patterns), tag
    hyper = [p for p in patterns if p.startswith("^hyper/")]
    for pattern in hyper:
        assert any(re.search(pattern, tag) for tag in tags), pattern


def _session_hparams(run_dir):
    for path in run_dir.glob("events.out.tfevents.*"):
        for ev in event_file_loader.EventFileLoader(str(path)).Load():
            for v in ev.summary.value:
                if v.tag == metadata.SESSION_START_INFO_TAG:
                    content = v.metadata.plugin_data.content
                    return metadata.parse_session_start_info_plugin_data(content).hparams
    raise AssertionError(f"no HParams session in {run_dir}")


def test_an_option_of_two_types_is_text_in_the_configuration_and_in_every_session(tmp_path):
    """``model.hidden`` is a number in one variant and a list in the other: TensorBoard's
    HParams dashboard compares a column's values to sort and filter it, so the column and every
    session's value must be text (the sessions logged the number as a number before)."""
    _register()

    def factory(shape, k, hidden=4):
        widths = hidden if isinstance(hidden, list) else [hidden]
        layers, width = [], shape[0]
        for w in widths:
            layers += [nn.Linear(width, w), nn.ReLU()]
            width = w
        return nn.Sequential(*layers, nn.Linear(width, k))

    runs.register_model("widths", factory)
    variants = []
    for name, hidden in (("one", 4), ("two", [4, 4])):
        v = _variant(name, runs.Optimizer("sgd", {"lr": 0.1}))
        variants.append(dataclasses.replace(v, model=runs.Model("widths", {"hidden": hidden})))
    runs.run(runs.Experiment(name="types", seeds=1, variants=tuple(variants)), logdir=tmp_path)
    (value,) = _events(tmp_path / "types", ".hparams")
    plugin = metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)
    kinds = {info.name: api_pb2.DataType.Name(info.type) for info in plugin.hparam_infos}
    assert kinds["model.hidden"] == "DATA_TYPE_STRING"
    assert kinds["optimizer.lr"] == "DATA_TYPE_FLOAT64"
    for name, text in (("one", "4"), ("two", "[4, 4]")):
        hparams = _session_hparams(tmp_path / "types" / name / "seed0")
        assert hparams["model.hidden"].WhichOneof("kind") == "string_value"
        assert hparams["model.hidden"].string_value == text
        assert hparams["optimizer.lr"].WhichOneof("kind") == "number_value"
