"""The real TensorBoard server reads the runner's event files (loopback only, bounded wait)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from runs.cli import main
from runs.study import load_study
from tests.runs.helpers import TINY, write_toml

# Variants that set different keys (a momentum, a schedule) and one that diverges.
MIXED = (
    TINY
    + """
[[variants]]
name = "scheduled"
schedules = {lr = {name = "cosine_decay", learning_rate = 0.1, decay_steps = 24}}

[[variants]]
name = "boom"
optimizer = {lr = 1e6}
"""
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-XSRF-Protected": "1"} if data else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serve(logdir):
    """A TensorBoard server on ``logdir``; yields its base URL."""
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
            "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.kill()
        server.communicate(timeout=30)


def poll(server, fetch, ready, seconds: float = 90):
    """``fetch()`` until ``ready(value)`` (or the deadline); returns the last value or None."""
    value, deadline = None, time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            value = fetch()
            if ready(value):
                return value
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):  # not loaded yet
            pass
        time.sleep(0.5)
    return value


# A run of each study and a curve it must log: (experiment, run, tag).
STUDY_CURVES = (
    ("quadratic", "quadratic-quick/kappa10/heavy_ball", "study/gap"),
    ("amsgrad-counterexample", "amsgrad-counterexample-quick/stochastic/AMSGrad/seed0", "study/x"),
    ("adaptive-generalization", "adaptive-generalization-quick/Adam/seed0", "study/test_error"),
)


def _scalars(url: str, run: str, tag: str):
    query = urllib.parse.urlencode({"run": run, "tag": tag})
    return _get(f"{url}/data/plugin/scalars/scalars?{query}")


@pytest.mark.slow
def test_tensorboard_serves_the_loss_the_studies_and_one_hparams_table(tmp_path, quick_run):
    toml = write_toml(tmp_path / "tiny.toml", MIXED)
    assert main(["run", str(toml), "--logdir", str(tmp_path), "--seeds", "1", "--quiet"]) == 0
    for study, _, _ in STUDY_CURVES:  # (the session's quick runs, which the catalogue made)
        shutil.copytree(quick_run(study), tmp_path / f"{study}-quick")
    root = tmp_path / "tiny"
    history = json.loads((root / "plain" / "seed0" / "result.json").read_text())["history"]
    curves = {}  # the studies' curves, as their results hold them
    for study, run, tag in STUDY_CURVES:
        results = json.loads((tmp_path / f"{study}-quick" / "results.json").read_text())
        [curves[run]] = [
            (st, vs) for r, t, st, vs in load_study(study).curves(results)
            if f"{study}-quick/{r}" == run and f"study/{t}" == tag
        ]  # fmt: skip
    with serve(tmp_path) as (url, server):
        series = poll(
            server,
            lambda: _scalars(url, "tiny/plain/seed0", "train/loss"),
            lambda s: len(s) == len(history["train_loss"]["step"]),
        )
        studies = {  # (TensorBoard loads event files in pieces: wait for the whole curve)
            run: poll(
                server,
                lambda run=run, tag=tag: _scalars(url, run, tag),
                lambda s, steps=curves[run][0]: len(s) == len(steps),
                seconds=60,
            )
            for _, run, tag in STUDY_CURVES
        }
        runs = _get(f"{url}/data/runs")
        experiment = _get(f"{url}/data/plugin/hparams/experiment", {"experimentName": ""})
        groups = poll(
            server,
            lambda: _get(
                f"{url}/data/plugin/hparams/session_groups",
                {
                    "experimentName": "",
                    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE"],
                    "colParams": [],
                    "startIndex": 0,
                    "sliceSize": 100,
                },
            ),
            lambda g: len(g.get("sessionGroups", [])) == 4,
        )
    assert series is not None
    assert [step for _, step, _ in series] == history["train_loss"]["step"]
    for (_, _, served), logged in zip(series, history["train_loss"]["value"]):
        assert served == pytest.approx(logged, rel=1e-6)
    names = ("plain/seed0", "momentum/seed0", "scheduled/seed0", "boom/seed0")
    assert {f"tiny/{name}" for name in names} <= set(runs)
    for run, (steps, values) in curves.items():
        assert studies[run] is not None, run
        assert [step for _, step, _ in studies[run]] == [int(s) for s in steps], run
        served = [value for _, _, value in studies[run]]
        assert served == pytest.approx(values, rel=1e-6), run

    # One configuration for the experiment: every key that any variant sets is a column.
    columns = {info["name"] for info in experiment["hparamInfos"]}
    assert {"variant", "seed", "optimizer.lr", "optimizer.momentum", "schedules.lr"} <= columns
    assert {"train.steps", "train.batch_size", "model.hidden"} <= columns
    metrics = {info["name"]["tag"] for info in experiment["metricInfos"]}
    assert "hparams/test_accuracy" in metrics
    status = {
        session["name"].removeprefix("tiny/"): session["status"]
        for group in groups["sessionGroups"]
        for session in group["sessions"]
    }
    assert status == {
        "plain/seed0": "STATUS_SUCCESS",
        "momentum/seed0": "STATUS_SUCCESS",
        "scheduled/seed0": "STATUS_SUCCESS",
        "boom/seed0": "STATUS_FAILURE",  # diverged
    }
