"""TensorBoard logging for one run (one variant and one seed), and the experiment's chart layout.

Tags, and when they are written (step ``t`` counts updates already made, as everywhere):

- ``train/loss``: every update ``t``, the mini-batch loss at the parameters after ``t`` updates
  (the loss whose gradient makes update ``t``).
- ``eval/train_loss``, ``eval/train_accuracy``, ``eval/test_loss``, ``eval/test_accuracy``: at
  each evaluation (step 0, every ``eval_every`` updates, and the end), full-batch loss and
  accuracy in eval mode after ``t`` updates.
- ``hyper/<key>/group<i>``: at step 0 and each time the schedule driver steps, the value of every
  scheduled param-group key (``lr``, ``momentum``, ``betas[0]``, ...) that update ``t`` uses,
  per param group; ``lr`` whenever the groups have one.
- ``hyper/step_size/group<i>``: for an optimizer that chooses its own step size (one with
  ``step_sizes()``: ``optim``'s learning-rate-free classes), every update ``t``, each group's
  step size read after update ``t`` (Prodigy's and D-Adaptation's ``d * lr``, DoG's ``eta``,
  SPS's and SLS's step, Schedule-Free's scheduled lr).
- ``stats/grad_norm``: every ``stats_every`` updates (updates ``t`` with ``(t + 1) %
  stats_every == 0``), the global L2 norm of the gradient of update ``t``.
- ``stats/update_ratio``: at the same updates, ``||θ_{t+1} - θ_t|| / ||θ_t||`` over all
  parameters.
- ``hparams/<metric>``: once, at the end, with the run's HParams session (hyperparameters and
  final metrics; a diverged run's session ends with status failure).

The HParams configuration (which hyperparameters and metrics the table has) is one file in the
experiment's own folder (:func:`write_hparams_config`), listing every key any variant sets; the
runs write only their sessions, so the table's columns do not depend on which run TensorBoard
happens to read first. It and the chart layout (:func:`write_layout`) are written by each
command, atomically, each replacing the file an earlier command wrote.

Per-update values are kept on the device and written every ``flush_every`` updates, so logging
costs one host sync per flush rather than one per update. Events of one update are written as one
TensorBoard event with several values.

Restarts. Every session of a run (the first, a restart, a resume) opens its writer with a purge
step: the step it continues from, 0 for a run that starts without a checkpoint. Its event file then
begins with ``SessionLog.START`` at that step, and TensorBoard drops every earlier event of the run
whose step is at or after it, so a session killed before its first checkpoint and started again,
or resumed from a checkpoint, reads as the one series an uninterrupted run gives. The values the
checkpoint holds at its own step (the evaluation there, the hyperparameters of the next update)
are written again. ``SessionLog.START`` is written twice: TensorBoard's server-side loader
(``plugin_event_accumulator``, ``tensorboard --load_fast=false``) takes the first START of a run
for its beginning and purges only on later ones, and a file written before every session began
with one (by an earlier version of this module) has none. Stale event files are purged, not
deleted: the run folder keeps what every session wrote, and every TensorBoard reader hides it.
The events of the steps a checkpoint covers are on disk before it is written, and every event
before ``result.json`` (:meth:`RunLogger.sync`): a session killed at any point loses no event
that the next one does not write again.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import tempfile
import time
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any

import torch
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import custom_scalars

from runs.spec import EVAL_METRICS


def hyper_tag(key: str, group: int) -> str:
    """The tag of a scheduled hyperparameter, e.g. ``hyper/lr/group0``."""
    return f"hyper/{key}/group{group}"


def new_history() -> dict:
    """What a run remembers of its logs (kept in checkpoints and written to ``result.json``)."""
    return {
        "train_loss": {"step": [], "value": []},
        "eval": {"step": [], **{m: [] for m in EVAL_METRICS}},
        "hyper": {},
        "stats": {"step": [], "grad_norm": [], "update_ratio": []},
    }


class RunLogger:
    """Buffers and writes one run's scalars; a disabled logger (DDP rank > 0) writes no files but
    keeps the same history, so every rank takes the same decisions.

    Args:
        run_dir: the run's folder (event files are written there).
        history: the history to extend (from a checkpoint when resuming).
        purge_step: the step this session continues from: 0 for a run that starts without a
            checkpoint, the checkpoint's step for a resumed one. TensorBoard hides every event
            an earlier session of the run wrote at or after it (see the module docstring).
        enabled: write event files.
        reduce: called on the stacked per-update losses before they are read (DDP: the mean over
            ranks); the identity when None.
    """

    def __init__(
        self,
        run_dir: str | Path,
        history: dict,
        *,
        purge_step: int = 0,
        enabled: bool = True,
        reduce=None,
    ) -> None:
        if isinstance(purge_step, bool) or not isinstance(purge_step, int) or purge_step < 0:
            raise ValueError(
                f"purge_step must be an int >= 0 (the step the session continues from, 0 for a "
                f"fresh run), got {purge_step!r}"
            )
        self.history = history
        self.reduce = reduce
        self.writer = None
        if enabled:
            _after_existing_event_files(Path(run_dir))
            self.writer = SummaryWriter(
                str(run_dir), purge_step=purge_step, max_queue=1000, flush_secs=30
            )
            # the writer wrote one START at purge_step; the second is the one that
            # plugin_event_accumulator purges on when no earlier file of the run has one
            start = SessionLog(status=SessionLog.START)
            self.writer.file_writer.add_event(Event(step=purge_step, session_log=start))
        self._losses: list[tuple[int, float, torch.Tensor]] = []
        self._stats: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self._hypers: list[tuple[int, float, dict[str, float]]] = []
        self._step_sizes: list[tuple[int, float, list[torch.Tensor | float | None]]] = []
        if self.writer is not None:
            self._write_again(purge_step)

    def _write_again(self, step: int) -> None:
        """Writes again the values ``history`` holds at ``step``, the step a resumed run
        continues from (nothing for a fresh run: its history is empty). The writer's purge
        hides every event at ``step`` and after, and the checkpoint at ``step`` was saved after
        that step's evaluation and the hyperparameters of the next update were logged (its
        history holds them), so these are written again; the values of update ``step`` (its
        loss, statistics and step size) are not in the history yet: the resumed session writes
        them as it makes that update."""
        pairs: list[tuple[str, float]] = []
        evals = self.history["eval"]
        for i, at in enumerate(evals["step"]):
            if at == step:
                pairs += [(f"eval/{m}", float(evals[m][i])) for m in EVAL_METRICS]
        series = [("train/loss", self.history["train_loss"], "value")]
        series += [(f"stats/{k}", self.history["stats"], k) for k in ("grad_norm", "update_ratio")]
        series += [(tag, values, "value") for tag, values in self.history["hyper"].items()]
        for tag, values, key in series:
            pairs += [(tag, float(v)) for at, v in zip(values["step"], values[key]) if at == step]
        if pairs:
            self._write(step, pairs)

    # ---------------------------------------------------------------- buffered, per update
    def train_loss(self, step: int, loss: torch.Tensor) -> None:
        """Records update ``step``'s loss (a detached 0-dim tensor; not read until flush)."""
        self._losses.append((step, time.time(), loss))

    def stats(self, step: int, grad_norm: torch.Tensor, update_ratio: torch.Tensor) -> None:
        self._stats.append((step, grad_norm, update_ratio))

    def step_sizes(self, step: int, values: Sequence[torch.Tensor | float | None]) -> None:
        """Records each group's step size after update ``step`` (0-dim tensors, not read until
        flush; None: the group has none yet)."""
        values = [v.detach() if isinstance(v, torch.Tensor) else v for v in values]
        self._step_sizes.append((step, time.time(), values))

    def hypers(self, step: int, values: Mapping[str, Sequence[float]]) -> None:
        """Records the hyperparameters update ``step`` uses: key -> one value per param group."""
        flat = {hyper_tag(k, i): float(v) for k, vs in values.items() for i, v in enumerate(vs)}
        self._hypers.append((step, time.time(), flat))

    def flush(self) -> tuple[int, float] | None:
        """Reads the buffered values (one host sync), writes them, and returns ``(step, value)`` of
        the first non-finite loss among them, or None."""
        diverged = None
        by_step: dict[int, tuple[float, list]] = {}
        if self._losses:
            stacked = torch.stack([loss.float() for _, _, loss in self._losses])
            if self.reduce is not None:
                stacked = self.reduce(stacked)
            values = stacked.tolist()
            h = self.history["train_loss"]
            for (step, wall, _), value in zip(self._losses, values):
                if diverged is None and not math.isfinite(value):
                    diverged = (step, value)
                h["step"].append(step)
                h["value"].append(value)
                by_step.setdefault(step, (wall, []))[1].append(("train/loss", value))
        if self._stats:
            values = torch.stack([torch.stack([g, u]) for _, g, u in self._stats]).tolist()
            h = self.history["stats"]
            for (step, _, _), (g, u) in zip(self._stats, values):
                h["step"].append(step)
                h["grad_norm"].append(g)
                h["update_ratio"].append(u)
                entry = by_step.setdefault(step, (time.time(), []))[1]
                entry += [("stats/grad_norm", g), ("stats/update_ratio", u)]
        self._hypers += self._read_step_sizes()
        for step, wall, flat in self._hypers:
            for tag, value in flat.items():
                series = self.history["hyper"].setdefault(tag, {"step": [], "value": []})
                series["step"].append(step)
                series["value"].append(value)
            by_step.setdefault(step, (wall, []))[1].extend(flat.items())
        if self.writer is not None:
            for step in sorted(by_step):
                wall, pairs = by_step[step]
                self._write(step, pairs, wall)
        self._losses, self._stats, self._hypers, self._step_sizes = [], [], [], []
        return diverged

    def _read_step_sizes(self) -> list[tuple[int, float, dict[str, float]]]:
        """The buffered step sizes as hyperparameter records (one host read for all): stacked on
        their device in the dtype they promote to, and converted to float64 on the CPU (a device
        without float64, such as MPS, refuses the conversion there)."""
        tensors = [v for _, _, vs in self._step_sizes for v in vs if isinstance(v, torch.Tensor)]
        if tensors:
            device = tensors[0].device
            dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
            stacked = torch.stack([t.reshape(()).to(device, dtype) for t in tensors])
            read = iter(stacked.to("cpu", torch.float64).tolist())
        records = []
        for step, wall, values in self._step_sizes:
            flat = {}
            for i, value in enumerate(values):
                if value is not None:
                    number = next(read) if isinstance(value, torch.Tensor) else float(value)
                    flat[hyper_tag("step_size", i)] = number
            records.append((step, wall, flat))
        return records

    # ---------------------------------------------------------------- immediate
    def evaluation(self, step: int, metrics: Mapping[str, float]) -> None:
        """Writes one evaluation (``EVAL_METRICS`` -> value) at ``step``."""
        h = self.history["eval"]
        h["step"].append(step)
        for name in EVAL_METRICS:
            h[name].append(float(metrics[name]))
        if self.writer is not None:
            self._write(step, [(f"eval/{m}", float(metrics[m])) for m in EVAL_METRICS])

    def hparams(
        self,
        hparam_dict: Mapping[str, Any],
        metric_dict: Mapping[str, float],
        step: int,
        *,
        failed: bool = False,
    ) -> None:
        """The run's HParams session: hyperparameters and final metrics (``hparams/<name>`` tags)
        in this run's own folder, ending with status failure when ``failed`` (a diverged run).
        The experiment's configuration is :func:`write_hparams_config`'s."""
        if self.writer is None:
            return
        from tensorboard.plugins.hparams import metadata
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionStartInfo

        metrics = {f"hparams/{k}": float(v) for k, v in metric_dict.items()}
        start = SessionStartInfo()
        for key, value in hparam_dict.items():
            setattr(start.hparams[key], _VALUE_FIELDS[hparam_type(value, key)], value)
        content = HParamsPluginData(session_start_info=start, version=metadata.PLUGIN_DATA_VERSION)
        session_start = _hparams_summary(metadata.SESSION_START_INFO_TAG, content)
        self._add_summary(session_start, step)
        self._write(step, list(metrics.items()))
        self._add_summary(_session_end(failed), step)

    def sync(self) -> None:
        """Returns once every event given so far is in the run's event file, on disk (the writer
        writes from a thread: its queue is drained, the file flushed, then ``fsync``-ed), and
        raises the error that thread met, naming the event file (an ``OSError`` such as a full
        disk). The trainer calls it before each checkpoint and before ``result.json`` (through
        :meth:`close`), the files that tell a later session which steps are done: the events of
        those steps are then never lost to a process killed afterwards, which a resume would not
        write again (it writes from the checkpoint's step on). One call per checkpoint, not per
        update. A disabled logger does nothing."""
        if self.writer is None:
            return
        event_file = self._event_file()
        try:
            self.writer.flush()  # (waits for the queue; raises the writer thread's error)
            if event_file is not None and os.name == "posix":  # (power loss, too)
                descriptor = os.open(event_file, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
        except OSError as err:
            raise self._named(err) from None

    def _event_file(self) -> str | None:
        """The path of this session's event file (None when the writer does not say)."""
        return getattr(self.writer.file_writer.event_writer, "_file_name", None)

    def _named(self, err: OSError) -> OSError:
        """``err`` naming the event file when it names no file (the error of a write: a full
        disk), so that the CLI's one line says which file could not be written."""
        event_file = self._event_file()
        if err.errno is not None and err.strerror and err.filename is None and event_file:
            return type(err)(err.errno, err.strerror, event_file)
        return err

    def _add_summary(self, summary: Summary, step: int, wall: float | None = None) -> None:
        """Gives ``summary`` to the writer (its thread writes it), raising the error the thread
        met earlier, named by :meth:`_named`."""
        try:
            self.writer.file_writer.add_summary(summary, step, wall)
        except OSError as err:
            raise self._named(err) from None

    def close(self) -> None:
        """Writes every pending event (:meth:`sync`, raising the writer's error) and closes the
        event file; a second call does nothing."""
        if self.writer is not None:
            self.sync()
            self.writer.close()
            self.writer = None

    def _write(
        self, step: int, pairs: Sequence[tuple[str, float]], wall: float | None = None
    ) -> None:
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=v) for tag, v in pairs])
        self._add_summary(summary, step, wall)


def _hparams_summary(tag: str, content: Any) -> Summary:
    """A summary of the HParams plugin: ``content`` (an ``HParamsPluginData``) under ``tag``."""
    from tensorboard.plugins.hparams import metadata

    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
    )
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


def _session_end(failed: bool) -> Summary:
    """The HParams ``SessionEndInfo`` summary: status success, or failure."""
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    status = Status.Value("STATUS_FAILURE" if failed else "STATUS_SUCCESS")
    content = HParamsPluginData(
        session_end_info=SessionEndInfo(status=status), version=metadata.PLUGIN_DATA_VERSION
    )
    return _hparams_summary(metadata.SESSION_END_INFO_TAG, content)


HPARAM_TYPES = ("bool", "number", "string")
"""The types of an HParams column (TensorBoard's ``DATA_TYPE_BOOL``, ``_FLOAT64``, ``_STRING``)."""

_VALUE_FIELDS = {"bool": "bool_value", "number": "number_value", "string": "string_value"}
_DATA_TYPES = {
    "bool": "DATA_TYPE_BOOL",
    "number": "DATA_TYPE_FLOAT64",
    "string": "DATA_TYPE_STRING",
}


def hparam_type(value: Any, name: str = "value") -> str:
    """The HParams type of one hyperparameter value: ``"bool"`` for a bool, ``"number"`` for an
    int or float (not a bool), ``"string"`` for a str. Raises ``TypeError`` (naming ``name``)
    for anything else: :func:`flat_hparams` turns other values into text first."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(
        f"hyperparameter {name} = {value!r} ({type(value).__name__}): allowed are bool, int, "
        "float and str"
    )


def hparam_types(variants: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The type of each HParams column (:data:`HPARAM_TYPES`) over ``variants`` (each a
    :func:`flat_hparams` dict), in the order the keys first appear: the type its values share,
    or ``"string"`` when they differ across variants (an option that is a number in one
    variant and a list in another): TensorBoard's HParams dashboard sorts and filters a column
    by comparing its values, which must then be text for every variant (``flat_hparams(...,
    types=...)`` turns them so)."""
    found: dict[str, set[str]] = {}
    for flat in variants:
        for key, value in flat.items():
            found.setdefault(key, set()).add(hparam_type(value, key))
    return {key: kinds.pop() if len(kinds) == 1 else "string" for key, kinds in found.items()}


def write_hparams_config(experiment_dir: str | Path, variants: Sequence[Mapping[str, Any]]) -> None:
    """The experiment's HParams configuration: every hyperparameter any of ``variants`` (each a
    :func:`flat_hparams` dict) sets, each column typed by :func:`hparam_types` (a bool column
    for bools; text when the variants' values differ in type), and the final metrics, written
    to the experiment's folder (atomically, replacing the file an earlier command wrote:
    :func:`replace_event_file`)."""
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.api_pb2 import (
        DataType,
        Experiment,
        HParamInfo,
        MetricInfo,
        MetricName,
    )
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    infos = [
        HParamInfo(name=key, type=DataType.Value(_DATA_TYPES[kind]))
        for key, kind in hparam_types(variants).items()
    ]
    metrics = [MetricInfo(name=MetricName(tag=f"hparams/{m}")) for m in EVAL_METRICS]
    content = HParamsPluginData(
        experiment=Experiment(hparam_infos=infos, metric_infos=metrics),
        version=metadata.PLUGIN_DATA_VERSION,
    )
    replace_event_file(
        experiment_dir, ".hparams", _hparams_summary(metadata.EXPERIMENT_TAG, content)
    )


def replace_event_file(folder: str | Path, suffix: str, summary: Summary) -> Path:
    """Makes ``summary`` the one event file of ``folder`` whose name ends with ``suffix`` (the
    layout, the HParams configuration), atomically: the event file is made in a scratch folder
    outside ``folder``, copied in by ``schedulers.files.atomic_copy`` (a temporary file renamed,
    with the permissions the umask gives), and only then are the older files with that suffix
    removed; a process killed at any point leaves complete files, never a partial one that a
    later command would keep. Returns the new file."""
    from schedulers.files import atomic_copy

    folder = Path(folder)
    old = set(folder.glob(f"events.out.tfevents.*{suffix}"))
    with tempfile.TemporaryDirectory() as scratch:
        with SummaryWriter(scratch, filename_suffix=suffix) as writer:
            writer.file_writer.add_summary(summary)
        (written,) = Path(scratch).glob(f"events.out.tfevents.*{suffix}")
        target = folder / written.name
        atomic_copy(written, target)
    for path in old - {target}:  # one file per folder: TensorBoard would show every copy
        path.unlink(missing_ok=True)
    return target


def _after_existing_event_files(run_dir: Path) -> None:
    """Waits, if needed, until a new event file's name sorts after the existing ones.

    TensorBoard reads a folder's event files in name order, and the name starts with the creation
    time in whole seconds; a new session's file must come after the earlier sessions' for its
    purge (``SessionLog.START`` at the step it continues from) to hide their stale events."""
    stamps = [int(p.name.split(".")[3]) for p in run_dir.glob("events.out.tfevents.*")]
    if stamps and max(stamps) >= int(time.time()):
        time.sleep(max(stamps) + 1 - time.time())


def flat_hparams(
    variant: Mapping[str, Any], seed: int, types: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A variant's settings (``Variant.to_dict()``) as the flat ``{name: bool | int | float |
    str}`` that HParams takes: ``optimizer.lr``, ``train.batch_size``, ``schedules.lr`` (a
    schedule as text, :func:`schedule_text`), ...

    Each key's value has one type whatever the variant, as the HParams dashboard needs to sort
    and filter a column (:func:`hparam_types`): a setting of a section of ``runs.spec`` by its
    declared type (a ``bool`` setting a bool, an ``int``/``float`` one a number, a ``str`` one a
    str, and one that may be a number or a word, ``train.eval_every: int | "epoch"``, always a
    str: ``"4"``, ``"epoch"``); an ``[optimizer]`` or ``[model]`` option by its value (a bool, a
    number, a str; anything else, a list, its ``repr``). ``types`` (:func:`hparam_types` over
    every variant of the experiment) turns into str the values of the keys it types
    ``"string"``, the options whose type differs across variants."""
    out: dict[str, Any] = {"variant": variant["name"], "seed": seed}
    for section in ("optimizer", "model", "train", "dataset"):
        for key, value in variant.get(section, {}).items():
            kind = _declared_type(section, key) or _value_type(value)
            out[f"{section}.{key}"] = _as_type(value, kind)
    for key, spec in variant.get("schedules", {}).items():
        out[f"schedules.{key}"] = schedule_text(spec)
    if types is not None:
        out = {k: _as_type(v, "string") if types.get(k) == "string" else v for k, v in out.items()}
    return out


def _value_type(value: Any) -> str:
    """:func:`hparam_type`, ``"string"`` for a value that is none of bool, int, float, str."""
    return hparam_type(value) if isinstance(value, bool | int | float | str) else "string"


def _as_type(value: Any, kind: str) -> Any:
    """``value`` as a value of the HParams type ``kind``: a str is ``str(value)`` of a bool, int,
    float or str, and the ``repr`` of anything else (a list: ``"[64, 64]"``)."""
    if kind == "string" and not isinstance(value, str):
        return str(value) if isinstance(value, bool | int | float) else repr(value)
    return value


@functools.cache
def _declared_type(section: str, key: str) -> str | None:
    """The HParams type of a setting of ``runs.spec``'s ``section`` from its declared type
    (``None`` left out): ``"bool"``, ``"number"`` (int, float), ``"string"`` (str, and a union
    of a number and a str); None for an option (an ``[optimizer]`` or ``[model]`` keyword) or
    a key the section does not declare."""
    from runs import spec

    cls = spec.SECTIONS.get(section)
    if cls is None or key not in {f.name for f in dataclasses.fields(cls)}:
        return None
    hint = typing.get_type_hints(cls)[key]
    union = typing.get_origin(hint) in (typing.Union, UnionType)
    members = set(typing.get_args(hint) if union else (hint,)) - {type(None)}
    if members == {bool}:
        return "bool"
    if members and members <= {int, float}:
        return "number"
    if members <= {bool, int, float, str}:
        return "string"
    return None  # (a dict of options: typed by value)


def schedule_text(spec: Mapping[str, Any]) -> str:
    """A schedule's dict form as one line: ``cosine_decay(learning_rate=0.3, decay_steps=20)``."""
    args = ", ".join(
        f"{k}={schedule_text(v) if isinstance(v, Mapping) else repr(v)}"
        for k, v in spec.items()
        if k != "name"
    )
    return f"{spec.get('name', '?')}({args})"


def write_curves(
    folder: str | Path, curves: Iterable[tuple[str, str, Sequence[int], Sequence[float]]]
) -> list[str]:
    """Writes curves computed outside a training loop (the studies of ``runs.study``): each
    ``(run, tag, steps, values)`` becomes the scalar series ``study/<tag>`` in ``folder/<run>``.
    Event files an earlier call left in those runs' folders are removed first, so a recomputed
    study never shows two versions. Returns the runs written.

    TensorBoard's scalars are float32 (its default loader, the Rust data server of
    ``tensorboard --load_fast=auto``, drops float64 ones), so each value is written as a float32
    scalar clamped into float32's range (:func:`float32_scalar`): a gap of ``1e-97`` shows as
    ``2**-149`` (about ``1.4e-45``, the smallest positive float32) rather than 0, which a
    log-scale chart would drop, and ``1e39`` as float32's largest finite value (about
    ``3.4e38``) rather than inf. ``results.json`` and the study's figures hold the float64
    values."""
    by_run: dict[str, list[tuple[str, Sequence[int], Sequence[float]]]] = {}
    for run, tag, steps, values in curves:
        if len(steps) != len(values):
            raise ValueError(
                f"curve {run}/{tag}: {len(steps)} steps but {len(values)} values; they must pair"
            )
        by_run.setdefault(run, []).append((tag, steps, values))
    for run, series in by_run.items():
        run_dir = Path(folder) / run
        for old in run_dir.glob("events.out.tfevents.*"):
            old.unlink()
        with SummaryWriter(str(run_dir)) as writer:
            for tag, steps, values in series:
                for step, value in zip(steps, values):
                    writer.add_scalar(f"study/{tag}", float32_scalar(float(value)), int(step))
    return list(by_run)


FLOAT32_TINY = 2.0**-149
"""The smallest positive float32 (a subnormal, about ``1.4e-45``)."""
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
"""The largest finite float32 (about ``3.4e38``)."""


def float32_scalar(value: float) -> float:
    """``value`` clamped into the range of float32, TensorBoard's scalar type, keeping its sign:
    a finite nonzero value of magnitude below :data:`FLOAT32_TINY` becomes ``±FLOAT32_TINY``
    (float32 would round it to 0) and one above :data:`FLOAT32_MAX` becomes ``±FLOAT32_MAX``
    (float32 would round it to inf); 0, inf and NaN are unchanged, and values inside the range
    are left for float32's rounding."""
    if value == 0 or not math.isfinite(value):
        return value
    return math.copysign(min(max(abs(value), FLOAT32_TINY), FLOAT32_MAX), value)


def write_layout(experiment_dir: str | Path, hyper_keys: Sequence[str]) -> None:
    """The custom-scalars layout of an experiment: one chart per metric, each overlaying every
    variant and seed (each run is a folder under ``experiment_dir``), and one per hyperparameter
    of ``hyper_keys``. Written in the experiment's own folder, replacing the layout an earlier
    command wrote (:func:`replace_event_file`), so that a later command whose variants log more
    hyperparameters extends it and the folder never holds two layouts."""

    def chart(tag_regex: str) -> list:
        return ["Multiline", [tag_regex]]

    layout = {
        "train": {"train loss": chart(r"^train/loss$")},
        "evaluation": {f"eval {m}": chart(f"^eval/{m}$") for m in EVAL_METRICS},
        "hyperparameters": {
            key: chart(f"^{re.escape('hyper/' + key + '/')}group\\d+$") for key in hyper_keys
        },
        "statistics": {
            "gradient norm": chart(r"^stats/grad_norm$"),
            "update-to-weight ratio": chart(r"^stats/update_ratio$"),
        },
    }
    replace_event_file(experiment_dir, ".layout", custom_scalars(layout))
