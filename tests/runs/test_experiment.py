"""`stepsize run`, `list` and `report` end to end on a tiny experiment."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from runs.catalog import DEFAULT_EXPERIMENT
from runs.cli import main
from runs.results import software_versions
from tests.runs.helpers import TINY, stepsize, write_toml

DIVERGING = (
    TINY
    + """
[[variants]]
name = "boom"
optimizer = {lr = 1e6}
"""
)


def _results(root):
    return {
        (r["variant"], r["seed"]): r
        for r in (json.loads(p.read_text()) for p in root.glob("*/seed*/result.json"))
    }


def test_run_writes_tables_figures_and_resumes_nothing_twice(tmp_path, capsys):
    toml = write_toml(tmp_path / "tiny.toml", DIVERGING)
    assert main(["run", str(toml), "--logdir", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    root = tmp_path / "tiny"
    assert f"tensorboard --logdir {root}" in printed
    assert "| plain | 2 | " in printed

    summary = json.loads((root / "summary.json").read_text())
    runs = {(r["variant"], r["seed"]): r for r in summary["runs"]}
    assert set(runs) == {(v, s) for v in ("plain", "momentum", "boom") for s in (0, 1)}
    assert summary["software"]["torch"]
    assert summary["experiment"]["seeds"] == [0, 1]
    for (variant, _), run in runs.items():
        assert run["config"]["name"] == variant
        assert run["wall_time_s"] > 0
        if variant != "boom":
            assert run["status"] == "finished"
            assert run["final_step"] == 24
            assert all(math.isfinite(v) for v in run["final"].values())
            assert run["best"]["test_accuracy"] >= run["final"]["test_accuracy"]
    assert runs[("boom", 0)]["status"] == "diverged"
    assert runs[("boom", 0)]["diverged"]["step"] >= 0

    table = (root / "summary.md").read_text()
    accuracies = [runs[("momentum", s)]["final"]["test_accuracy"] for s in (0, 1)]
    mean, std = 100 * np.mean(accuracies), 100 * np.std(accuracies, ddof=1)
    momentum_lr = runs[("momentum", 0)]["config"]["optimizer"]["lr"]
    assert f"| momentum | 2 | {momentum_lr:.3g} | {mean:.2f} ± {std:.2f} |" in table
    assert "| boom | 2 | 1e+06 | - |" in table
    assert "seed 0 at step" in table
    for name in ("test_accuracy", "test_loss", "train_loss", "train_accuracy", "schedules"):
        png = root / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(root.glob("events.out.tfevents.*.layout"))) == 1

    before = {k: (root / k[0] / f"seed{k[1]}" / "result.json").stat().st_mtime_ns for k in runs}
    assert main(["run", str(toml), "--logdir", str(tmp_path), "--quiet"]) == 0
    assert "6 of 6 runs already finished" in capsys.readouterr().out
    after = {k: (root / k[0] / f"seed{k[1]}" / "result.json").stat().st_mtime_ns for k in runs}
    assert before == after
    assert len(list(root.glob("events.out.tfevents.*.layout"))) == 1

    (root / "summary.md").unlink()
    assert main(["report", str(root)]) == 0
    assert (root / "summary.md").read_text() == table

    # The software and CPU are the running machine's, recorded when the run started: a report
    # written later, or on another machine (as here, by hand), keeps them.
    meta = json.loads((root / "experiment.json").read_text())
    assert meta["software"] == software_versions()
    meta["software"] = {**meta["software"], "cpu": "the machine that ran it", "torch": "2.0.0"}
    (root / "experiment.json").write_text(json.dumps(meta))
    assert main(["report", str(root)]) == 0
    assert json.loads((root / "summary.json").read_text())["software"] == meta["software"]


def test_jobs_give_the_numbers_of_one_job(tmp_path, capsys):
    toml = write_toml(tmp_path / "tiny.toml")
    assert main(["run", str(toml), "--logdir", str(tmp_path / "one"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", str(toml), "--logdir", str(tmp_path / "two"), "--jobs", "2"]) == 0
    assert "runs: 100%" in capsys.readouterr().err  # one aggregate bar over the 4 runs
    one, two = _results(tmp_path / "one" / "tiny"), _results(tmp_path / "two" / "tiny")
    assert set(one) == set(two)
    assert len(one) == 4
    for key in one:
        assert one[key]["history"] == two[key]["history"], key


@pytest.mark.slow
def test_ray_backend_gives_the_numbers_of_one_job(tmp_path, mnist1d_cache, capsys):
    """Each run a task on a local Ray instance the command starts (ray is an optional extra)."""
    pytest.importorskip("ray")
    toml = write_toml(tmp_path / "tiny.toml")
    assert main(["run", str(toml), "--logdir", str(tmp_path / "one"), "--quiet"]) == 0
    args = ["run", str(toml), "--logdir", str(tmp_path / "ray"), "--backend", "ray", "--jobs", "2"]
    assert main(args) == 0
    assert "[4/4]" in capsys.readouterr().out
    one, ray = _results(tmp_path / "one" / "tiny"), _results(tmp_path / "ray" / "tiny")
    assert set(one) == set(ray)
    assert len(one) == 4
    for key in one:
        assert one[key]["history"] == ray[key]["history"], key
        assert one[key]["final"] == ray[key]["final"], key
    ray_summary = json.loads((tmp_path / "ray" / "tiny" / "summary.json").read_text())
    assert ray_summary["experiment"]["backend"] == "ray"
    assert main(args) == 0  # every run already finished: read back, nothing recomputed
    assert "4 of 4 runs already finished" in capsys.readouterr().out


def test_list_names_every_bundled_experiment(capsys):
    from runs.catalog import bundled_experiments

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in bundled_experiments():
        assert name in out
    assert f"{DEFAULT_EXPERIMENT}" in out
    assert "(default)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
        (["run", "missing.toml"], "experiment file 'missing.toml' does not exist"),
        (["run", "TOML", "--variants", "plain,nope"], "unknown variant(s) nope"),
        (["run", "FASHION", "--data-dir", "empty"], "train-images-idx3-ubyte"),
        (["run", "TOML", "--jobs", "0"], "--jobs must be a positive integer"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    toml = write_toml(tmp_path / "tiny.toml")
    fashion = write_toml(tmp_path / "fashion.toml", TINY.replace('"mnist1d"', '"fashion-mnist"'))
    (tmp_path / "empty").mkdir()
    replace = {"TOML": str(toml), "FASHION": str(fashion), "empty": str(tmp_path / "empty")}
    args = [replace.get(a, a) for a in args] + ["--logdir", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("stepsize: error: ")
    assert err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "out").exists()


def test_bad_input_has_no_traceback_in_a_real_process(tmp_path):
    proc = stepsize("run", "no-such-experiment", "--logdir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_runner_benchmark_command_runs(mnist1d_cache):
    proc = stepsize("bench", "runner", "--steps", "20", "--repeats", "1", "--model", "logistic")
    assert proc.returncode == 0, proc.stderr
    assert "ratio runner / bare" in proc.stdout
