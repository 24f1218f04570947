"""The real TensorBoard server reads the runner's event files (loopback only, bounded wait)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from runs.cli import main
from tests.runs.helpers import write_toml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_serves_the_logged_loss(tmp_path):
    toml = write_toml(tmp_path / "tiny.toml")
    assert main(["run", str(toml), "--logdir", str(tmp_path), "--seeds", "1", "--quiet"]) == 0
    root = tmp_path / "tiny"
    history = json.loads((root / "plain" / "seed0" / "result.json").read_text())["history"]
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "tensorboard.main", "--logdir", str(root),
            "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    query = urllib.parse.urlencode({"run": "plain/seed0", "tag": "train/loss"})
    url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}"
    series, deadline = None, time.monotonic() + 90
    try:
        while time.monotonic() < deadline and server.poll() is None:
            try:
                series = _get(url)
                if len(series) == len(history["train_loss"]["step"]):
                    break
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                pass
            time.sleep(0.5)
        runs = _get(f"http://127.0.0.1:{port}/data/runs")
    finally:
        server.kill()
        _, stderr = server.communicate(timeout=30)
    assert series is not None, stderr.decode()[-2000:]
    assert [step for _, step, _ in series] == history["train_loss"]["step"]
    for (_, _, served), logged in zip(series, history["train_loss"]["value"]):
        assert served == pytest.approx(logged, rel=1e-6)
    assert {"plain/seed0", "momentum/seed0"} <= set(runs)
