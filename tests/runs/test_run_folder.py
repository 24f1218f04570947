"""Run folders that cannot be corrupted: every check passes before anything is written, one
writer at a time, workers that die with their parent, files that honour the umask, and summaries
of exactly what the command asked for."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runs import checkpoint as ckpt
from runs.cli import main
from schedulers.files import umask
from tests.runs.helpers import TINY, stepsize, write_toml

FALLBACK = TINY.replace('"mnist1d"', '"fashion-mnist"') + (
    '\n[fallback]\ndataset = {name = "mnist1d"}\nmodel = {name = "mlp", hidden = 8}\n'
)


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: its mode and bytes."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mode, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run(toml: Path, logdir: Path, *extra: str) -> int:
    return main(["run", str(toml), "--logdir", str(logdir), "--quiet", *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mnist1d_cache) -> Path:
    """A finished tiny experiment (2 variants x 2 seeds), copied by each test that changes it."""
    base = tmp_path_factory.mktemp("finished")
    toml = write_toml(base / "tiny.toml")
    assert _run(toml, base / "logs") == 0
    return base


@pytest.fixture
def folder(finished, tmp_path) -> tuple[Path, Path]:
    """A private copy of the finished experiment: (its TOML, its logdir)."""
    import shutil

    shutil.copytree(finished, tmp_path / "copy")
    return tmp_path / "copy" / "tiny.toml", tmp_path / "copy" / "logs"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("stepsize: error: "), err
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    return err


def test_files_honour_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        ckpt.save_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert not list(tmp_path.glob(".*.tmp"))


def test_run_folder_files_get_the_mode_open_would_give(finished):
    expected = 0o666 & ~umask()
    root = finished / "logs" / "tiny"
    for name in (
        "experiment.json",
        "summary.json",
        "plain/seed0/result.json",
        "figures/readme.png",
    ):
        assert stat.S_IMODE((root / name).stat().st_mode) == expected, name


def test_a_refused_run_changes_nothing_on_disk(folder, capsys):
    toml, logs = folder
    before = _snapshot(logs)
    toml.write_text(TINY.replace("lr = 0.1", "lr = 0.2"))
    assert _run(toml, logs) == 2
    assert "holds a run of another configuration" in _one_error_line(capsys)
    assert _snapshot(logs) == before


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _corrupt_checkpoint(run_dir: Path, how: str) -> None:
    (run_dir / "result.json").unlink()
    path = run_dir / "checkpoint.pt"
    if how == "truncated":
        _truncate(path)
    elif how == "foreign":
        path.write_bytes(b"not a checkpoint\n")
    elif how == "missing-key":
        state = torch.load(path, weights_only=True)
        del state["optimizer"]
        torch.save(state, path)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("checkpoint truncated", "checkpoint.pt: not a readable checkpoint"),
        ("checkpoint foreign", "checkpoint.pt: not a readable checkpoint"),
        ("checkpoint missing-key", "checkpoint.pt: checkpoint lacks optimizer"),
        ("result truncated", "result.json: not a valid result file"),
        ("device unknown", "--device: unknown device 'tpu9'"),
        ("device cuda", "--device cuda: CUDA is not available"),
        ("logdir file", "is a file, not a folder"),
        ("logdir readonly", "is not writable"),
        ("backend without-ray", "--backend ray needs Ray: pip install 'stepsize[ray]'"),
        ("address without-backend", "--address needs --backend ray"),
    ],
)
def test_each_refusal_is_one_line_and_changes_nothing(folder, capsys, monkeypatch, case, message):
    toml, logs = folder
    run_dir = logs / "tiny" / "plain" / "seed1"
    extra: list[str] = []
    what, how = case.split()
    if what == "checkpoint":
        _corrupt_checkpoint(run_dir, how)
    elif what == "result":
        _truncate(run_dir / "result.json")
    elif case == "device unknown":
        extra = ["--device", "tpu9"]
    elif case == "device cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        extra = ["--device", "cuda"]
    elif case == "logdir file":
        logs = logs / "tiny" / "summary.md"
    elif case == "logdir readonly":  # (root may write anywhere, so the answer is simulated)
        denied = str(logs)
        access = os.access
        monkeypatch.setattr(
            os, "access", lambda path, mode: not str(path).startswith(denied) and access(path, mode)
        )
    elif case == "backend without-ray":
        monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
        extra = ["--backend", "ray"]
    elif what == "address":
        extra = ["--address", "127.0.0.1:6379"]
    before = _snapshot(toml.parent)
    assert _run(toml, logs, *extra) == 2
    err = _one_error_line(capsys)
    assert message in err
    if what in ("checkpoint", "result"):
        assert str(run_dir) in err  # names the file
    assert _snapshot(toml.parent) == before


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(folder, capsys):
    toml, logs = folder
    before = _snapshot(logs)
    with ckpt.folder_lock(logs / "tiny"):
        assert _run(toml, logs) == 2
        err = _one_error_line(capsys)
        assert f"is being written by another stepsize process (pid {os.getpid()})" in err
        assert main(["report", str(logs / "tiny")]) == 2
        capsys.readouterr()
    assert _snapshot(logs) == before
    assert _run(toml, logs) == 0  # released


def test_the_summary_is_exactly_what_the_command_asked_for(folder, capsys):
    toml, logs = folder
    root = logs / "tiny"
    assert _run(toml, logs, "--seeds", "1", "--variants", "plain") == 0
    summary = json.loads((root / "summary.json").read_text())
    assert [(r["variant"], r["seed"]) for r in summary["runs"]] == [("plain", 0)]
    assert summary["seeds"] == [0]
    assert summary["other_runs"] == [
        {"variant": "plain", "seed": 1},
        {"variant": "momentum", "seed": 0},
        {"variant": "momentum", "seed": 1},
    ]
    table = (root / "summary.md").read_text()
    assert "| plain | 1 |" in table
    assert "| momentum |" not in table
    assert "plain (seed 1); momentum (seeds 0, 1)" in table
    (root / "summary.md").unlink()
    assert main(["report", str(root)]) == 0  # the report regenerates the same
    assert (root / "summary.md").read_text() == table


def test_an_explicit_data_dir_without_the_files_is_an_error(tmp_path, capsys, mnist1d_cache):
    toml = write_toml(tmp_path / "fallback.toml", FALLBACK)
    (tmp_path / "empty").mkdir()
    args = ["--data-dir", str(tmp_path / "empty"), "--seeds", "1"]
    assert _run(toml, tmp_path / "out", *args) == 2
    assert "dataset 'fashion-mnist' not found" in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()
    # Without --data-dir the [fallback] runs, and the summary says what ran.
    assert _run(toml, tmp_path / "out", "--seeds", "1", "--variants", "plain") == 0
    assert "no --data-dir given" in capsys.readouterr().out
    table = (tmp_path / "out" / "tiny" / "summary.md").read_text()
    assert "Ran on dataset `mnist1d`, model `mlp` (the experiment's `[fallback]`" in table


def test_bare_command_prints_help_and_version():
    bare = stepsize()
    assert bare.returncode == 0
    assert bare.stdout.startswith("usage: stepsize")
    assert "run" in bare.stdout
    version = stepsize("--version")
    assert version.returncode == 0
    assert version.stdout.strip().startswith("stepsize ")


LONG = TINY.replace("steps = 24", "steps = 100000").replace(
    "checkpoint_every = 10", "checkpoint_every = 100000"
)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc")
def test_workers_exit_when_the_parent_is_killed(tmp_path, mnist1d_cache):
    toml = write_toml(tmp_path / "long.toml", LONG)
    logs = tmp_path / "logs"
    parent = subprocess.Popen(
        [sys.executable, "-m", "runs", "run", str(toml), "--logdir", str(logs), "--jobs", "2",
         "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until both workers train
            if len(list((logs / "tiny").glob("*/seed*/events.out.tfevents.*"))) >= 2:
                break
            assert parent.poll() is None
            time.sleep(0.2)
        workers = _children(parent.pid)
        assert workers
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)], "workers outlived their parent"
        with ckpt.folder_lock(logs / "tiny"):  # the killed parent's lock is gone with it
            pass
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in workers:  # the test's own processes, if they outlived their parent
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
