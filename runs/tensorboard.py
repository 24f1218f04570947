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
TensorBoard event with several values. A resumed run opens its writer with ``purge_step`` so that
TensorBoard hides what the interrupted session wrote after the checkpoint: TensorBoard drops every
earlier event whose step is at or after the purge step, so the values the checkpoint holds at its
own step (the evaluation there, the hyperparameters of the next update) are written again, and
the resumed run's curves equal those of a run that was never interrupted.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import custom_scalars, hparams

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
        purge_step: the step a resumed run continues from (None for a fresh run).
        enabled: write event files.
        reduce: called on the stacked per-update losses before they are read (DDP: the mean over
            ranks); the identity when None.
    """

    def __init__(
        self,
        run_dir: str | Path,
        history: dict,
        *,
        purge_step: int | None = None,
        enabled: bool = True,
        reduce=None,
    ) -> None:
        self.history = history
        self.reduce = reduce
        if enabled and purge_step is not None:
            _after_existing_event_files(Path(run_dir))
        self.writer = (
            SummaryWriter(str(run_dir), purge_step=purge_step, max_queue=1000, flush_secs=30)
            if enabled
            else None
        )
        self._losses: list[tuple[int, float, torch.Tensor]] = []
        self._stats: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self._hypers: list[tuple[int, float, dict[str, float]]] = []
        self._step_sizes: list[tuple[int, float, list[torch.Tensor | float | None]]] = []
        if self.writer is not None and purge_step is not None:
            self._write_again(purge_step)

    def _write_again(self, step: int) -> None:
        """Writes again the values ``history`` holds at ``step``, the step a resumed run
        continues from. The writer's purge hides every event at ``step`` and after, and the
        checkpoint at ``step`` was saved after that step's evaluation and the hyperparameters
        of the next update were logged (its history holds them), so these are written again;
        the values of update ``step`` (its loss, statistics and step size) are not in the history
        yet: the resumed session writes them as it makes that update."""
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
        """The buffered step sizes as hyperparameter records (one host read for all)."""
        tensors = [v for _, _, vs in self._step_sizes for v in vs if isinstance(v, torch.Tensor)]
        if tensors:
            device = tensors[0].device
            read = iter(
                torch.stack([t.reshape(()).to(device, torch.float64) for t in tensors]).tolist()
            )
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
        metrics = {f"hparams/{k}": float(v) for k, v in metric_dict.items()}
        _, session_start, _ = hparams(dict(hparam_dict), metrics)
        self.writer.file_writer.add_summary(session_start, step)
        self._write(step, list(metrics.items()))
        self.writer.file_writer.add_summary(_session_end(failed), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _write(
        self, step: int, pairs: Sequence[tuple[str, float]], wall: float | None = None
    ) -> None:
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=v) for tag, v in pairs])
        self.writer.file_writer.add_summary(summary, step, wall)


def _session_end(failed: bool) -> Summary:
    """The HParams ``SessionEndInfo`` summary: status success, or failure."""
    from tensorboard.compat.proto.summary_pb2 import SummaryMetadata
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    status = Status.Value("STATUS_FAILURE" if failed else "STATUS_SUCCESS")
    content = HParamsPluginData(
        session_end_info=SessionEndInfo(status=status), version=metadata.PLUGIN_DATA_VERSION
    )
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
    )
    return Summary(
        value=[
            Summary.Value(
                tag=metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=plugin)
            )
        ]
    )


def write_hparams_config(experiment_dir: str | Path, variants: Sequence[Mapping[str, Any]]) -> None:
    """The experiment's HParams configuration: every hyperparameter any of ``variants`` (each a
    :func:`flat_hparams` dict) sets, and the final metrics, written to the experiment's folder
    (atomically, replacing the file an earlier command wrote: :func:`replace_event_file`)."""
    merged: dict[str, Any] = {}
    for flat in variants:
        for key, value in flat.items():
            merged.setdefault(key, value)
    metrics = {f"hparams/{m}": 0.0 for m in EVAL_METRICS}
    experiment, _, _ = hparams(merged, metrics)
    replace_event_file(experiment_dir, ".hparams", experiment)


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
    time in whole seconds; the resumed session's file must come after the interrupted one for its
    purge (``SessionLog.START`` at the resume step) to hide the stale events."""
    stamps = [int(p.name.split(".")[3]) for p in run_dir.glob("events.out.tfevents.*")]
    if stamps and max(stamps) >= int(time.time()):
        time.sleep(max(stamps) + 1 - time.time())


def flat_hparams(variant: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """A variant's settings as the flat ``{name: bool | int | float | str}`` that HParams takes:
    ``optimizer.lr``, ``train.batch_size``, ``schedules.lr`` (a schedule as text), ..."""
    out: dict[str, Any] = {"variant": variant["name"], "seed": seed}
    for section in ("optimizer", "model", "train", "dataset"):
        for key, value in variant.get(section, {}).items():
            ok = isinstance(value, (bool, int, float, str))
            out[f"{section}.{key}"] = value if ok else repr(value)
    for key, spec in variant.get("schedules", {}).items():
        out[f"schedules.{key}"] = schedule_text(spec)
    return out


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
    study never shows two versions. Returns the runs written."""
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
                    writer.add_scalar(f"study/{tag}", float(value), int(step))
    return list(by_run)


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
