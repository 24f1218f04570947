"""stepsize lr-find: the range test on an experiment's variant, from the command line."""

import os
import subprocess
import sys


def _lr_find(tmp_path, *args):
    env = {**os.environ, "STEPSIZE_CACHE": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "runs", "lr-find", "--logdir", str(tmp_path / "logs"), *args],
        capture_output=True, text=True, env=env,
    )  # fmt: skip


def test_lr_find_prints_suggestions_and_curvature_and_saves_the_plot(tmp_path):
    proc = _lr_find(tmp_path, "--num-iter", "30", "--start-lr", "1e-4", "--end-lr", "10")
    assert proc.returncode == 0, proc.stderr
    for expected in ("steepest", "min/10", "valley", "1/L", "2/L", "plot:"):
        assert expected in proc.stdout
    plots = list((tmp_path / "logs").rglob("lr-find-*.png"))
    assert len(plots) == 1
    assert plots[0].stat().st_size > 0


def test_lr_find_bad_input_is_one_line_and_writes_nothing(tmp_path):
    proc = _lr_find(tmp_path, "--num-iter", "1")
    assert proc.returncode == 2
    assert "num_iter" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "logs").rglob("*.png"))
