"""TensorBoard output, read back with TensorBoard's own readers (audit 89): a restart and a resume
read as one series in both of TensorBoard's Python loaders (the legacy ``event_accumulator`` and
``plugin_event_accumulator``, which ``tensorboard --load_fast=false`` serves), HParams columns of
one type that TensorBoard's hparams plugin sorts and filters, study curves in float64, step sizes
read on a device without float64, and the runner's advice for optimizers whose param groups hold
different learning rates."""

from __future__ import annotations

import contextlib
import io
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator as legacy_accumulator
from tensorboard.backend.event_processing import plugin_event_accumulator as plugin_accumulator
from tensorboard.util import tensor_util
from torch.utils.tensorboard import SummaryWriter

from tests.runs.helpers import mlp_experiment

pytestmark = pytest.mark.usefixtures("clean_registries")

# ------------------------------------------------------------------------------------ readers


def _legacy_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series as ``event_accumulator.EventAccumulator`` reads it (purges applied)."""
    events = legacy_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def _plugin_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series as ``plugin_event_accumulator.EventAccumulator`` (the loader of the
    TensorBoard server with ``--load_fast=false``) reads it: scalars are tensors there."""
    events = plugin_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    scalars = events.PluginTagToContent("scalars")
    return {
        tag: [
            (e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in events.Tensors(tag)
        ]
        for tag in scalars
    }


READERS = {"event_accumulator": _legacy_series, "plugin_event_accumulator": _plugin_series}

# ------------------------------------------------------------ F1, F9: restarts and resumes
# 24 updates; flushes at 7, 14, 21; checkpoints at 10, 20, 24; evaluations at 0, 10, 20, 24
RESTARTED = (
    mlp_experiment("tb89", logging=True)
    + """momentum = 0.9

[[variants]]
name = "cos"
schedules = {lr = {name = "cosine_decay", learning_rate = 0.1, decay_steps = 24}}
"""
)


class Killed(Exception):
    """Stands in for a killed process."""


def _variant():
    from runs.load import parse_experiment

    return parse_experiment(tomllib.loads(RESTARTED), "tb89.toml").variants[0]


def _train(run_dir: Path):
    from runs.data import load_dataset
    from runs.trainer import train_run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_run(_variant(), 0, load_dataset("mnist1d"), run_dir)
    finally:
        torch.set_num_threads(threads)


def _train_until_killed(run_dir: Path, evaluation: int, monkeypatch) -> None:
    """A session killed at its ``evaluation``-th evaluation (2: step 10, before the checkpoint
    there; 3: step 20, after the checkpoint of step 10 and the flush of step 14), everything it
    handed to its event writer on disk, as a killed process leaves it."""
    import runs.trainer as trainer

    loggers, calls, original = [], [], trainer.eval_metrics

    class Recorded(trainer.RunLogger):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            loggers.append(self)

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == evaluation:
            raise Killed
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "RunLogger", Recorded)
        patch.setattr(trainer, "eval_metrics", dying)
        with pytest.raises(Killed):
            _train(run_dir)
    (logger,) = loggers
    logger.writer.flush()
    logger.writer.close()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, mnist1d_cache):
    """The run never interrupted: its folder and result."""
    run_dir = tmp_path_factory.mktemp("tb89") / "clean"
    return run_dir, _train(run_dir)


def _same_as_uninterrupted(run_dir: Path, uninterrupted, read) -> None:
    clean_dir, clean_result = uninterrupted
    clean, got = read(clean_dir), read(run_dir)
    # the uninterrupted run against its own history (float32 in TensorBoard)
    history = clean_result["history"]
    assert clean["train/loss"] == [
        (s, float(np.float32(v)))
        for s, v in zip(history["train_loss"]["step"], history["train_loss"]["value"])
    ]
    assert [s for s, _ in clean["train/loss"]] == list(range(24))
    assert [s for s, _ in clean["eval/test_loss"]] == [0, 10, 20, 24]
    assert sorted(got) == sorted(clean)
    for tag in clean:
        assert got[tag] == clean[tag], tag


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_run_killed_before_its_first_checkpoint_restarts_as_one_series(
    tmp_path, monkeypatch, uninterrupted, reader
):
    """F1: the killed session wrote steps 0..6 (flush at 7) and no checkpoint; the restart
    starts at 0 and TensorBoard must hide the killed session's events."""
    from runs.checkpoint import load_checkpoint

    run_dir = tmp_path / "restarted"
    _train_until_killed(run_dir, 2, monkeypatch)
    assert load_checkpoint(run_dir) is None
    assert [s for s, _ in _legacy_series(run_dir)["train/loss"]] == list(range(7))  # on disk
    _train(run_dir)
    _same_as_uninterrupted(run_dir, uninterrupted, READERS[reader])


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_restart_hides_an_event_file_written_without_a_session_start(
    tmp_path, uninterrupted, reader
):
    """F1 in a folder an earlier version wrote: its file has no ``SessionLog.START`` (a writer
    opened without a purge step), which plugin_event_accumulator would take the restart's START
    for the first of the run and purge nothing."""
    run_dir = tmp_path / "old"
    with SummaryWriter(str(run_dir)) as writer:  # as a fresh run was logged before the fix
        for step in range(7):
            writer.add_scalar("train/loss", 99.0 + step, step)
            writer.add_scalar("eval/test_loss", 99.0, step)
    _train(run_dir)
    _same_as_uninterrupted(run_dir, uninterrupted, READERS[reader])


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_resumed_run_reads_as_one_series_in_every_loader(
    tmp_path, monkeypatch, uninterrupted, reader
):
    """F9: killed at step 20 after the checkpoint of step 10 and the flush of step 14, resumed
    from step 10: the events of steps 10..13 the killed session wrote must be purged by both
    loaders (plugin_event_accumulator purges on a run's second START only)."""
    from runs.checkpoint import load_checkpoint

    run_dir = tmp_path / "resumed"
    _train_until_killed(run_dir, 3, monkeypatch)
    assert load_checkpoint(run_dir)["step"] == 10
    assert max(s for s, _ in _legacy_series(run_dir)["train/loss"]) == 13  # stale, on disk
    _train(run_dir)
    _same_as_uninterrupted(run_dir, uninterrupted, READERS[reader])


# -------------------------------------------------------------------------- F2: HParams types
def _blobs():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(2, 8, generator=g)
    labels = torch.randint(0, 2, (300,), generator=g)
    inputs = centers[labels] + torch.randn(300, 8, generator=g)
    return inputs[:200], labels[:200], inputs[200:], labels[200:]


class TinyNet(torch.nn.Module):
    def __init__(self, input_shape, num_classes, hidden=8):
        super().__init__()
        widths = hidden if isinstance(hidden, list) else [hidden]
        layers, width = [torch.nn.Flatten()], input_shape[0]
        for w in widths:
            layers += [torch.nn.Linear(width, w), torch.nn.ReLU()]
            width = w
        self.body = torch.nn.Sequential(*layers, torch.nn.Linear(width, num_classes))

    def forward(self, x):
        return self.body(x)


def _register() -> None:
    import runs

    x, y, tx, ty = _blobs()
    runs.register_model("tb89-net", TinyNet)
    runs.register_dataset("tb89-blobs", train_x=x, train_y=y, test_x=tx, test_y=ty)


def _common(**train):
    import runs

    return {
        "dataset": runs.Dataset("tb89-blobs"),
        "model": runs.Model("tb89-net", {"hidden": 8}),
        "train": runs.Train(**{"epochs": 2, "batch_size": 50, **train}),
    }


def _run(experiment, logdir: Path) -> None:
    import runs

    with contextlib.redirect_stdout(io.StringIO()):
        runs.run(experiment, logdir=logdir)


def _hparams_plugin(logdir: Path):
    """TensorBoard's hparams plugin on ``logdir``, in process, as its HTTP handlers build it:
    ``(experiment, session_groups(request))``."""
    from google.protobuf import json_format
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    mux = multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)
    backend = backend_context.Context(tb)
    request_context = context.RequestContext()
    experiment = backend.experiment_from_metadata(
        request_context, "", True, backend.hparams_metadata(request_context, ""), None
    )

    def groups(**request):
        body = {"startIndex": 0, "sliceSize": 100, "allowedStatuses": ["STATUS_SUCCESS"]}
        message = json_format.Parse(
            json.dumps({**body, **request}), api_pb2.ListSessionGroupsRequest()
        )
        handler = list_session_groups.Handler(request_context, backend, "", message)
        return [g.name for g in handler.run().session_groups]

    return experiment, groups


def _session_values(logdir: Path) -> dict[str, dict[str, tuple[str, object]]]:
    """Each run's HParams session values: run -> hparam -> (value kind, value)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    sessions = {}
    for path in logdir.rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag != "_hparams_/session_start_info":
                    continue
                data = plugin_data_pb2.HParamsPluginData()
                data.ParseFromString(value.metadata.plugin_data.content)
                hparams = data.session_start_info.hparams
                run = str(path.parent.relative_to(logdir))
                sessions[run] = {
                    k: (v.WhichOneof("kind"), getattr(v, v.WhichOneof("kind")))
                    for k, v in hparams.items()
                }
    return sessions


KIND_OF_TYPE = {
    "DATA_TYPE_BOOL": "bool_value",
    "DATA_TYPE_FLOAT64": "number_value",
    "DATA_TYPE_STRING": "string_value",
}


def test_hparams_columns_have_one_type_that_tensorboard_sorts_and_filters(tmp_path):
    """F2: ``train.eval_every`` is 4 in one variant and "epoch" in the other; bools are bools."""
    from tensorboard.plugins.hparams import api_pb2

    import runs

    _register()
    sgd = runs.Optimizer("sgd", {"lr": 0.1, "nesterov": True, "momentum": 0.9})
    experiment = runs.Experiment(
        name="types",
        seeds=1,
        variants=(
            runs.Variant(name="a", optimizer=sgd, **_common(eval_every=4)),
            runs.Variant(name="b", optimizer=runs.Optimizer("sgd", {"lr": 0.1}),
                         **_common(eval_every="epoch")),
        ),
    )  # fmt: skip
    _run(experiment, tmp_path)
    root = tmp_path / "types"
    config, groups = _hparams_plugin(root)
    columns = {h.name: api_pb2.DataType.Name(h.type) for h in config.hparam_infos}
    assert columns["train.shuffle"] == "DATA_TYPE_BOOL"
    assert columns["optimizer.nesterov"] == "DATA_TYPE_BOOL"
    assert columns["optimizer.lr"] == "DATA_TYPE_FLOAT64"
    assert columns["train.eval_every"] == "DATA_TYPE_STRING"
    sessions = _session_values(root)
    assert sorted(sessions) == ["a/seed0", "b/seed0"]
    for run, values in sessions.items():  # every session value has its column's type
        for name, (kind, _) in values.items():
            assert kind == KIND_OF_TYPE[columns[name]], (run, name)
    assert sessions["a/seed0"]["train.shuffle"] == ("bool_value", True)
    assert sessions["a/seed0"]["train.eval_every"] == ("string_value", "4")
    # what the HParams dashboard asks: a sort by each column, a filter of its type's kind
    for name in columns:
        for order in ("ORDER_ASC", "ORDER_DESC"):
            assert sorted(groups(colParams=[{"hparam": name, "order": order}])) == [
                "a/seed0",
                "b/seed0",
            ], name
    assert groups(colParams=[{"hparam": "train.eval_every", "order": "ORDER_ASC"}]) == [
        "a/seed0",  # "4" < "epoch"
        "b/seed0",
    ]
    assert groups(colParams=[{"hparam": "train.eval_every", "filterRegexp": "^epoch$"}]) == [
        "b/seed0"
    ]
    only_true = {
        "hparam": "optimizer.nesterov",
        "filterDiscrete": [True],
        "excludeMissingValues": True,
    }
    assert groups(colParams=[only_true]) == ["a/seed0"]
    lr_range = {"hparam": "optimizer.lr", "filterInterval": {"minValue": 0.0, "maxValue": 1.0}}
    assert sorted(groups(colParams=[lr_range])) == ["a/seed0", "b/seed0"]


def test_an_option_of_several_types_is_a_text_column_in_the_config_and_every_session(tmp_path):
    """F2: ``model.hidden`` is a number in one variant and a list in the other: the column is
    text, and with the experiment's types (``hparam_types``) every session holds text."""
    from tensorboard.plugins.hparams import api_pb2

    from runs.tensorboard import (
        RunLogger,
        flat_hparams,
        hparam_types,
        new_history,
        write_hparams_config,
    )

    def variant(name, hidden):
        return {
            "name": name,
            "model": {"name": "net", "hidden": hidden},
            "optimizer": {"name": "sgd", "lr": 0.1},
            "train": {"epochs": 1, "shuffle": False},
        }

    variants = [variant("a", 8), variant("b", [8, 8])]
    flats = [flat_hparams(v, seed=0) for v in variants]
    write_hparams_config(tmp_path, flats)
    types = hparam_types(flats)
    for v in variants:
        log = RunLogger(tmp_path / v["name"], new_history())
        log.hparams(flat_hparams(v, 0, types=types), {"test_loss": 1.0}, step=1)
        log.close()
    config, groups = _hparams_plugin(tmp_path)
    columns = {h.name: api_pb2.DataType.Name(h.type) for h in config.hparam_infos}
    assert columns["model.hidden"] == "DATA_TYPE_STRING"
    assert columns["train.shuffle"] == "DATA_TYPE_BOOL"
    assert columns["optimizer.lr"] == "DATA_TYPE_FLOAT64"
    sessions = _session_values(tmp_path)
    assert sessions["a"]["model.hidden"] == ("string_value", "8")
    assert sessions["b"]["model.hidden"] == ("string_value", "[8, 8]")
    assert sessions["a"]["optimizer.lr"] == ("number_value", 0.1)
    assert groups(colParams=[{"hparam": "model.hidden", "order": "ORDER_ASC"}]) == ["a", "b"]


def test_train_run_types_its_session_with_the_experiments_types(tmp_path, mnist1d_cache):
    """F2: ``train_run(hparam_types=...)`` logs a key typed "string" as text."""
    from runs.data import load_dataset
    from runs.trainer import train_run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_run(
            _variant(), 0, load_dataset("mnist1d"), tmp_path / "run",
            hparam_types={"model.hidden": "string"},
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    values = _session_values(tmp_path)["run"]
    assert values["model.hidden"] == ("string_value", "8")
    assert values["optimizer.momentum"] == ("number_value", 0.9)
    assert values["train.shuffle"] == ("bool_value", True)


# ----------------------------------------------------------------------- F6: study curves
def test_study_curves_outside_float32s_range_stay_on_the_chart(tmp_path):
    """F6: TensorBoard's scalars are float32 (the Rust data server, its default loader, drops
    float64 tensors); a study value below float32's smallest positive number must not read back
    as 0 (a log-scale chart drops it), nor one above its largest as inf."""
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as multiplexer
    from tensorboard.context import RequestContext

    from runs.tensorboard import write_curves

    values = [1.0, 1e-30, 1e-40, 1e-46, 1e-97, 1e39, -2.5e-300, 0.1, 0.0, math.inf]
    tiny, big = 2.0**-149, float(np.finfo(np.float32).max)  # float32's extremes (IEEE 754)
    expected = [1.0, float(np.float32(1e-30)), float(np.float32(1e-40)), tiny, tiny, big, -tiny,
                float(np.float32(0.1)), 0.0, math.inf]  # fmt: skip
    write_curves(tmp_path, [("kappa10/heavy_ball", "gap", list(range(len(values))), values)])
    run_dir = tmp_path / "kappa10" / "heavy_ball"
    for read in READERS.values():
        assert read(run_dir)["study/gap"] == list(enumerate(expected))
    # the scalars dashboard's reads, through TensorBoard's data provider
    mux = multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(tmp_path))
    listed = provider.list_scalars(RequestContext(), experiment_id="", plugin_name="scalars")
    assert list(listed) == ["kappa10/heavy_ball"]
    assert list(listed["kappa10/heavy_ball"]) == ["study/gap"]
    read = provider.read_scalars(
        RequestContext(), experiment_id="", plugin_name="scalars", downsample=100
    )
    points = read["kappa10/heavy_ball"]["study/gap"]
    assert [(p.step, p.value) for p in points] == list(enumerate(expected))


# ------------------------------------------------------------- step sizes, MPS-like device
def _to_arguments(args, kwargs):
    device, dtype = kwargs.get("device"), kwargs.get("dtype")
    for arg in args:
        if isinstance(arg, torch.dtype):
            dtype = arg
        elif isinstance(arg, str | torch.device):
            device = arg
    return device, dtype


class NoFloat64Device(torch.Tensor):
    """A 0-d tensor that reports an MPS device, which has no float64: converting it to float64
    there raises MPS's ``TypeError``; converting it on the way to the CPU is allowed (the data
    really are on the CPU)."""

    @property
    def device(self) -> torch.device:
        return torch.device("mps")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.to:
            device, dtype = _to_arguments(args[1:], kwargs)
            to_cpu = device is not None and torch.device(device).type == "cpu"
            if dtype == torch.float64 and not to_cpu:
                raise TypeError(
                    "Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't "
                    "support float64. Please use float32 instead."
                )
            if not to_cpu:  # staying on the (pretend) MPS device
                return super().__torch_function__(func, types, (args[0],), {"dtype": dtype})
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **kwargs)
        return super().__torch_function__(func, types, args, kwargs)


def test_step_sizes_are_read_on_a_device_without_float64(tmp_path):
    from runs.tensorboard import RunLogger, new_history

    def on_mps(value):
        return torch.tensor(value, dtype=torch.float32).as_subclass(NoFloat64Device)

    assert on_mps(0.5).device.type == "mps"
    with pytest.raises(TypeError, match="float64"):
        on_mps(0.5).to(torch.device("mps"), torch.float64)
    log = RunLogger(tmp_path, new_history(), enabled=False)
    log.step_sizes(0, [on_mps(0.5), None, on_mps(1e-3)])
    log.step_sizes(1, [on_mps(0.25), on_mps(2.0), 3.0])
    assert log.flush() is None
    hyper = log.history["hyper"]
    assert hyper["hyper/step_size/group0"] == {"step": [0, 1], "value": [0.5, 0.25]}
    assert hyper["hyper/step_size/group1"] == {"step": [1], "value": [2.0]}
    assert hyper["hyper/step_size/group2"] == {
        "step": [0, 1],
        "value": [float(np.float32(1e-3)), 3.0],
    }


# ------------------------------------------------- F8: advice for groups of different lrs
class TwoGroupSGD(torch.optim.SGD):
    """SGD with the weights in group 0 (``lr``) and the biases in group 1 (``lr *
    bias_factor``)."""

    def __init__(self, params, lr=0.1, bias_factor=0.1):
        params = list(params)
        weights = [p for p in params if p.dim() > 1]
        biases = [p for p in params if p.dim() <= 1]
        super().__init__([{"params": weights}, {"params": biases, "lr": lr * bias_factor}], lr=lr)


GROUPS = f"{__name__}:TwoGroupSGD"
COSINE = {"name": "cosine_decay", "learning_rate": 0.3, "decay_steps": 8}


def _groups_experiment(bias_factor: float, schedules: dict):
    import runs

    optimizer = runs.Optimizer(GROUPS, {"lr": 0.3, "bias_factor": bias_factor})
    variant = runs.Variant(name="v", optimizer=optimizer, schedules=schedules, **_common())
    return runs.Experiment(name="groups", seeds=1, variants=(variant,))


def _refusal(experiment, logdir: Path) -> str:
    with pytest.raises(ValueError, match="schedule") as refused:
        _run(experiment, logdir)
    return str(refused.value)


def test_one_schedule_for_groups_of_different_lrs_is_refused_with_advice_the_runner_takes(
    tmp_path,
):
    """F8: the refusal must not advise a per-group list, which the runner refuses; what it
    advises instead (one lr for the groups, or no lr schedule) runs."""
    _register()
    message = _refusal(_groups_experiment(0.1, {"lr": COSINE}), tmp_path / "one")
    assert "[0.3, 0.03" in message  # the groups' lrs, 0.3 and 0.3 * 0.1
    assert "lr=[" not in message
    assert "Pass one schedule per group" not in message
    listed = _refusal(_groups_experiment(0.1, {"lr": [COSINE, COSINE]}), tmp_path / "list")
    assert "schedulers.attach" in listed  # where per-group lists are taken
    assert "lr=[" not in listed
    # the two ways the advice gives
    _run(_groups_experiment(1.0, {"lr": COSINE}), tmp_path / "same")  # one lr for both groups
    _run(_groups_experiment(0.1, {}), tmp_path / "unscheduled")  # each group its own lr
    result = json.loads((tmp_path / "same/groups/v/seed0/result.json").read_text())
    first = {tag: s["value"][0] for tag, s in result["history"]["hyper"].items()}
    assert first == {"hyper/lr/group0": 0.3, "hyper/lr/group1": 0.3}
    result = json.loads((tmp_path / "unscheduled/groups/v/seed0/result.json").read_text())
    first = {tag: s["value"][0] for tag, s in result["history"]["hyper"].items()}
    assert first == {"hyper/lr/group0": 0.3, "hyper/lr/group1": pytest.approx(0.03)}
