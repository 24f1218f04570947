"""Audit 90 of crash safety and resume: TensorBoard events are on disk before the files that tell a
rerun what is done (a checkpoint, ``result.json``), a full disk while a file is written is one
error line naming the file, a ``--jobs`` worker killed from outside is one error line saying that
rerunning resumes, and the temporary files of killed writes are removed by the next command.

Expected values: the steps ``0 .. steps - 1`` (each update logs its loss once), the numbers of an
uninterrupted run of the same command, the file names ``tempfile.mkstemp`` itself makes, and
``os.strerror``'s text for ``ENOSPC``."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import torch

from runs.cli import main
from tests.runs.helpers import FASTEST, copy_finished

STEPS = 8
# FASTEST (a logistic regression on 200 MNIST-1D examples) for 8 updates, with every update's
# values flushed to the writer and a checkpoint every 2 updates
EIGHT = FASTEST.replace("steps = 5", f"steps = {STEPS}") + (
    "[logging]\nflush_every = 1\nstats_every = 1\ncheckpoint_every = 2\n"
)
ENOSPC = os.strerror(errno.ENOSPC)


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the run's event files as TensorBoard's EventAccumulator reads it
    (purges applied): tag -> ``[(step, value), ...]``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    """Equal series, NaN equal to NaN."""
    return len(a) == len(b) and all(
        s == t and (v == w or (math.isnan(v) and math.isnan(w))) for (s, v), (t, w) in zip(a, b)
    )


def _result(run_dir: Path) -> dict:
    data = json.loads((run_dir / "result.json").read_text())
    data.pop("wall_time_s")
    return data


def _reference(tmp_path: Path, toml: Path, *extra: str) -> Path:
    """The folder of an uninterrupted run of ``toml``."""
    logdir = tmp_path / "reference"
    assert main(["run", str(toml), "--logdir", str(logdir), "--quiet", *extra]) == 0
    return logdir / "tiny"


def _slow_appends(monkeypatch, seconds: float = 0.03) -> None:
    """Every append to an event file takes ``seconds`` more (a slow, NFS-like file system)."""
    from tensorboard.compat.tensorflow_stub.io import gfile

    append = gfile.LocalFileSystem.append

    def slow(self, *args, **kwargs):
        time.sleep(seconds)
        return append(self, *args, **kwargs)

    monkeypatch.setattr(gfile.LocalFileSystem, "append", slow)


# ------------------------------------------------------------------------------------------- F1
def test_checkpoint_and_result_written_after_the_events_they_cover(
    tmp_path, monkeypatch, mnist1d_cache
):
    """With slow event appends, each checkpoint at step c finds every update before c on disk,
    and result.json finds every update and the HParams session there."""
    import runs.checkpoint as ckpt

    toml = tmp_path / "tiny.toml"
    toml.write_text(EIGHT)
    run_dir = tmp_path / "L" / "tiny" / "a" / "seed0"
    _slow_appends(monkeypatch)
    seen: list[tuple[str, int, set[int], set[str]]] = []
    save_checkpoint, save_json = ckpt.save_checkpoint, ckpt.save_json

    def on_disk() -> tuple[set[int], set[str]]:
        scalars = _scalars(run_dir)
        return {s for s, _ in scalars.get("train/loss", [])}, set(scalars)

    def checkpoint(folder, state):
        seen.append(("checkpoint", state["step"], *on_disk()))
        save_checkpoint(folder, state)

    def result(path, data):
        if Path(path).name == "result.json":
            seen.append(("result", data["steps"], *on_disk()))
        save_json(path, data)

    monkeypatch.setattr(ckpt, "save_checkpoint", checkpoint)
    monkeypatch.setattr(ckpt, "save_json", result)
    assert main(["run", str(toml), "--logdir", str(tmp_path / "L"), "--quiet"]) == 0
    assert [(kind, step) for kind, step, _, _ in seen] == [
        *(("checkpoint", c) for c in (2, 4, 6, 8)),
        ("result", STEPS),
    ]
    for kind, step, losses, _ in seen:
        assert set(range(step)) <= losses, (kind, step, sorted(losses))
    assert {"hparams/test_loss", "hparams/train_loss"} <= seen[-1][3]


_KILLED_AFTER_CHECKPOINT = r"""
import os, sys, time
from tensorboard.compat.tensorflow_stub.io import gfile
import runs.checkpoint as ckpt
append = gfile.LocalFileSystem.append
def slow(self, *args, **kwargs):
    time.sleep(0.03)
    return append(self, *args, **kwargs)
gfile.LocalFileSystem.append = slow
save, saved = ckpt.save_checkpoint, []
def save_then_die(folder, state):
    save(folder, state)
    saved.append(state["step"])
    if len(saved) == 2:
        os._exit(9)  # killed (as by SIGKILL) right after the checkpoint at step 4
ckpt.save_checkpoint = save_then_die
import runs.cli
sys.exit(runs.cli.main(sys.argv[1:]))
"""


def test_killed_after_a_checkpoint_then_rerun_keeps_every_point(tmp_path, mnist1d_cache):
    """Killed right after a checkpoint while the event writer lags (slow appends), then run
    again: every update's loss is in TensorBoard once, with the uninterrupted run's values, and
    so is every other tag."""
    toml = tmp_path / "tiny.toml"
    toml.write_text(EIGHT)
    args = ["run", str(toml), "--logdir", str(tmp_path / "L"), "--quiet"]
    first = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_CHECKPOINT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert first.returncode == 9, first.stderr
    run_dir = tmp_path / "L" / "tiny" / "a" / "seed0"
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 4
    assert not (run_dir / "result.json").exists()
    assert main(args) == 0
    resumed, reference = _scalars(run_dir), _scalars(_reference(tmp_path, toml) / "a" / "seed0")
    assert [s for s, _ in resumed["train/loss"]] == list(range(STEPS))
    assert set(resumed) == set(reference)
    for tag in reference:
        assert _same(resumed[tag], reference[tag]), tag


def test_event_write_error_stops_before_the_next_checkpoint(
    tmp_path, monkeypatch, capsys, mnist1d_cache
):
    """An event append that fails (a full disk for a moment) stops the run in one line naming the
    event file, before a checkpoint moves past the lost event; the rerun then has every point."""
    from tensorboard.compat.tensorflow_stub.io import gfile

    toml = tmp_path / "tiny.toml"
    toml.write_text(EIGHT)
    args = ["run", str(toml), "--logdir", str(tmp_path / "L"), "--quiet"]
    append, calls = gfile.LocalFileSystem.append, []

    def failing(self, *a, **kw):
        calls.append(1)
        if len(calls) == 12:  # (in the middle of the run: some 60 appends in all)
            raise OSError(errno.ENOSPC, ENOSPC)
        return append(self, *a, **kw)

    monkeypatch.setattr(gfile.LocalFileSystem, "append", failing)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1, err
    run_dir = tmp_path / "L" / "tiny" / "a" / "seed0"
    assert err.startswith(f"stepsize: error: {run_dir}/events.out.tfevents."), err
    assert err.endswith(f": {ENOSPC}\n"), err
    monkeypatch.setattr(gfile.LocalFileSystem, "append", append)  # space freed
    assert main(args) == 0
    resumed, reference = _scalars(run_dir), _scalars(_reference(tmp_path, toml) / "a" / "seed0")
    assert [s for s, _ in resumed["train/loss"]] == list(range(STEPS))
    for tag in reference:
        assert _same(resumed[tag], reference[tag]), tag


# ------------------------------------------------------------------------------------------- F2
class _FullDisk:
    """A file whose writes fail as on a full disk (``OSError(ENOSPC)``, naming no file, as
    ``write`` raises it); everything else is the real file's."""

    def __init__(self, file) -> None:
        self._file = file

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, ENOSPC)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def _disk_full_for(monkeypatch, name: str, nth: int) -> None:
    """The ``nth`` temporary file written for a file called ``name`` (``tempfile.mkstemp``'s
    prefix ``.<name>.``) gets a full disk."""
    mkstemp, fdopen = tempfile.mkstemp, os.fdopen
    names: dict[int, str] = {}
    count = []

    def recording(*args, **kwargs):
        fd, path = mkstemp(*args, **kwargs)
        names[fd] = Path(path).name
        return fd, path

    def opening(fd, *args, **kwargs):
        file = fdopen(fd, *args, **kwargs)
        if names.pop(fd, "").startswith(f".{name}."):
            count.append(fd)
            if len(count) == nth:
                return _FullDisk(file)
        return file

    monkeypatch.setattr(tempfile, "mkstemp", recording)
    monkeypatch.setattr(os, "fdopen", opening)


def test_disk_full_during_a_checkpoint_is_one_line_naming_it(
    tmp_path, monkeypatch, capsys, mnist1d_cache
):
    """The disk is full when the second checkpoint is written: one line naming checkpoint.pt,
    exit 2, no temporary file left, the first checkpoint kept; once space is freed the same
    command finishes with the numbers of an uninterrupted run."""
    toml = tmp_path / "tiny.toml"
    toml.write_text(EIGHT)
    args = ["run", str(toml), "--logdir", str(tmp_path / "L")]
    run_dir = tmp_path / "L" / "tiny" / "a" / "seed0"
    with monkeypatch.context() as patch:
        _disk_full_for(patch, "checkpoint.pt", 2)
        status = main(args)
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err == f"stepsize: error: {run_dir / 'checkpoint.pt'}: {ENOSPC}\n"
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 2
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert main(args) == 0
    assert "resumed from step 2" in capsys.readouterr().out
    assert _result(run_dir) == _result(_reference(tmp_path, toml) / "a" / "seed0")


def test_disk_full_writing_result_json_names_it(tmp_path, monkeypatch, capsys, mnist1d_cache):
    """A write error of any run file (result.json here) names that file."""
    toml = tmp_path / "tiny.toml"
    toml.write_text(FASTEST)
    _disk_full_for(monkeypatch, "result.json", 1)
    assert main(["run", str(toml), "--logdir", str(tmp_path / "L"), "--quiet"]) == 2
    result = tmp_path / "L" / "tiny" / "a" / "seed0" / "result.json"
    assert capsys.readouterr().err == f"stepsize: error: {result}: {ENOSPC}\n"
    assert not result.exists()


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_atomic_write_names_the_file_of_a_write_error(tmp_path, monkeypatch, where):
    """``atomic_write``: an ENOSPC of ``write`` or ``fsync`` (which name no file) names the path
    as given; the temporary file is removed and no target is made."""
    from schedulers.files import atomic_write

    target = tmp_path / "out.bin"

    def write(file) -> None:
        if where == "write":
            raise OSError(errno.ENOSPC, ENOSPC)
        file.write(b"x")

    if where == "fsync":

        def fsync(fd):
            raise OSError(errno.ENOSPC, ENOSPC)

        monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match=re.escape(ENOSPC)) as caught:
        atomic_write(target, write)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- F3
_KILL_ENV = "STEPSIZE_TEST_AUDIT90_KILL_PARENT"


def killing_logistic(input_shape, num_classes):
    """A logistic regression whose construction for seed 1 kills its process (``SIGKILL``, as
    the out-of-memory killer does), only in a worker process of the test process whose id
    ``STEPSIZE_TEST_AUDIT90_KILL_PARENT`` holds."""
    parent = os.environ.get(_KILL_ENV)
    if parent and os.getppid() == int(parent) and torch.initial_seed() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(math.prod(input_shape), num_classes)
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.usefixtures("clean_registries")
def test_jobs_worker_killed_is_one_line_and_rerun_resumes(
    tmp_path, monkeypatch, capsys, mnist1d_cache
):
    from runs.models import register_model

    register_model("killing-logistic", killing_logistic)
    toml = tmp_path / "tiny.toml"
    toml.write_text(FASTEST.replace('name = "logistic"', 'name = "killing-logistic"'))
    args = ["run", str(toml), "--logdir", str(tmp_path / "L"), "--seeds", "2", "--jobs", "2"]
    monkeypatch.setenv(_KILL_ENV, str(os.getpid()))
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1, err
    assert err.startswith("stepsize: error: a --jobs 2 worker process died"), err
    assert "a seed 1" in err, err
    assert "run the same command again to resume" in err, err
    monkeypatch.delenv(_KILL_ENV)
    assert main([*args, "--quiet"]) == 0
    reference = _reference(tmp_path, toml, "--seeds", "2")
    for seed in (0, 1):
        run = Path("a") / f"seed{seed}"
        assert _result(tmp_path / "L" / "tiny" / run) == _result(reference / run)


# ------------------------------------------------------------------------------------------- F4
def test_leftover_temporary_files_are_removed_under_the_lock(tmp_path, finished_tiny):
    """Temporary files of killed writes (named by ``tempfile.mkstemp`` as ``atomic_write`` names
    them) in the experiment folder, its run folders and its figures are removed by the next
    command; similar names that are not such files, and a folder with its own lock, stay."""
    folder = copy_finished(finished_tiny, tmp_path / "L" / "tiny")
    run_dir = folder / "a" / "seed0"
    (folder / "figures").mkdir(exist_ok=True)
    planted = []
    for where, name in (
        (run_dir, "checkpoint.pt"),
        (run_dir, "result.json"),
        (folder, "experiment.json"),
        (folder, "summary.md"),
        (folder / "figures", "schedules.png"),
    ):
        fd, path = tempfile.mkstemp(dir=where, prefix=f".{name}.", suffix=".tmp")
        os.write(fd, b"partial")
        os.close(fd)
        planted.append(Path(path))
    kept = [
        run_dir / ".checkpoint.pt.tmp",  # no random part
        run_dir / ".notes.abc.tmp",  # not 8 characters
        run_dir / "checkpoint.pt.abcdefgh.tmp",  # no leading dot
        run_dir / ".notes.ABCDEFGH.tmp",  # not tempfile's characters
        run_dir / ".notes.abcdefgh.tmp.keep",
    ]
    for path in kept:
        path.write_text("mine")
    a_folder = run_dir / ".data.abcdefgh.tmp"
    a_folder.mkdir()
    other = folder / "other"  # another experiment folder, locked on its own
    other.mkdir()
    (other / ".stepsize.lock").write_text("")
    fd, other_tmp = tempfile.mkstemp(dir=other, prefix=".result.json.", suffix=".tmp")
    os.close(fd)
    toml = finished_tiny.parents[1] / "tiny.toml"
    assert main(["run", str(toml), "--logdir", str(tmp_path / "L"), "--quiet"]) == 0
    assert [p for p in planted if p.exists()] == []
    assert all(p.read_text() == "mine" for p in kept)
    assert a_folder.is_dir()
    assert Path(other_tmp).exists()


def test_report_removes_leftover_temporary_files(tmp_path, finished_tiny):
    """``stepsize report`` takes the folder's lock too, and removes them as well."""
    folder = copy_finished(finished_tiny, tmp_path / "tiny")
    fd, path = tempfile.mkstemp(dir=folder, prefix=".summary.json.", suffix=".tmp")
    os.close(fd)
    assert main(["report", str(folder)]) == 0
    assert not Path(path).exists()


def test_a_score_worker_killed_from_outside_is_one_error_line(monkeypatch):
    """``stepsize score --jobs N``'s own pool: a worker that died without an exception (a kill,
    the out-of-memory killer), which ``concurrent.futures`` reports as ``BrokenProcessPool``, is
    a ``ChildProcessError`` (an ``OSError``: the CLI's one line) saying so; before, the raw
    ``BrokenProcessPool`` traceback. A pool whose futures fail so stands in for the kill."""
    import concurrent.futures
    from concurrent.futures.process import BrokenProcessPool
    from types import SimpleNamespace

    from runs import score

    class DeadPool:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> bool:
            return False

        def submit(self, function, *args):
            future = concurrent.futures.Future()
            future.set_exception(BrokenProcessPool("a process was terminated abruptly"))
            return future

        def shutdown(self, wait=True, cancel_futures=False) -> None:
            pass

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", DeadPool)
    trial = SimpleNamespace(budget=1, workload=SimpleNamespace(model="logistic"))
    with pytest.raises(ChildProcessError, match="a --jobs 2 worker process died"):
        score.run_trials([trial, trial], jobs=2)
