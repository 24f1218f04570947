"""stepsize lr-find: the range test on an experiment's variant, from the command line."""

import os
import subprocess
import sys
import tomllib

from tests.runs.helpers import write_toml


def _lr_find(tmp_path, *args, cache=None):
    env = {**os.environ, "STEPSIZE_CACHE": str(cache or tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "runs", "lr-find", "--logdir", str(tmp_path / "logs"), *args],
        capture_output=True, text=True, env=env,
    )  # fmt: skip


def test_lr_find_prints_suggestions_and_curvature_and_saves_the_plot(tmp_path, mnist1d_cache):
    # A small experiment: the default one generates 70,000 MNIST-1D examples (16 s) first.
    toml = write_toml(tmp_path / "tiny.toml")
    args = ("--num-iter", "30", "--start-lr", "1e-4", "--end-lr", "10")
    proc = _lr_find(tmp_path, str(toml), *args, cache=mnist1d_cache)
    assert proc.returncode == 0, proc.stderr
    for expected in ("steepest", "min/10", "valley", "1/L", "2/L", "plot:"):
        assert expected in proc.stdout
    plots = list((tmp_path / "logs").rglob("lr-find-*.png"))
    assert [p.relative_to(tmp_path / "logs").as_posix() for p in plots] == [
        "tiny/lr-find-plain.png"
    ]
    assert plots[0].read_bytes().startswith(b"\x89PNG")


def test_lr_find_tests_the_default_experiment_when_none_is_named():
    import argparse

    from runs import lr_find
    from runs.catalog import DEFAULT_EXPERIMENT

    parser = argparse.ArgumentParser()
    lr_find.add_arguments(parser)
    assert parser.parse_args([]).experiment == DEFAULT_EXPERIMENT == "d2l-schedules"


def test_lr_find_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """Options are checked before the data is generated or cached: nothing on disk changes. One
    case runs in a real process (no traceback reaches the terminal); the others run ``main``."""
    from runs.cli import main

    proc = _lr_find(tmp_path, "--num-iter", "1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "stepsize: error: --num-iter must be an integer in [2, 10000000], got --num-iter=1\n"
    )
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("STEPSIZE_CACHE", str(tmp_path / "cache"))
    for bad, name in (
        (["--start-lr", "1", "--end-lr", "0.5"], "--end-lr"),
        (["--smoothing", "1"], "--smoothing"),
        (["--curvature-batches", "-1"], "--curvature-batches"),
    ):
        assert main(["lr-find", "--logdir", str(tmp_path / "logs"), *bad]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("stepsize: error: "), (bad, err)
        assert name in err, (bad, err)
        assert len(err.strip().splitlines()) == 1, err
        assert list(tmp_path.iterdir()) == [], bad


def test_the_range_test_shows_its_progress_on_a_terminal(mnist1d_cache, capsys, monkeypatch):
    from runs.data import load_dataset
    from runs.load import parse_experiment
    from runs.tuning import range_test_on_variant
    from tests.runs.helpers import TINY

    variant = parse_experiment(tomllib.loads(TINY), "tiny.toml").variants[0]
    data = load_dataset("mnist1d")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a bar is drawn on terminals only
    options = {"num_iter": 12, "curvature_batches": 0}
    range_test_on_variant(variant, data, 0, quiet=False, **options)
    err = capsys.readouterr().err
    assert "LR range test" in err
    assert "/12 " in err  # counts the test's 12 updates
    range_test_on_variant(variant, data, 0, quiet=True, **options)
    assert capsys.readouterr().err == ""


def test_the_range_test_figure_names_the_experiment_and_variant(
    mnist1d_cache, monkeypatch, tmp_path
):
    """The runner passes the experiment and variant to the figure's title (issue 14, section 3)."""
    import argparse

    from runs import lr_find
    from schedulers.range_test import RangeTestResult

    titles = []
    plot = RangeTestResult.plot

    def recording_plot(self, *args, **kwargs):
        figure = plot(self, *args, **kwargs)
        titles.extend(ax.get_title() for ax in figure.axes)
        titles.append(figure._suptitle.get_text() if figure._suptitle else "")
        return figure

    monkeypatch.setattr(RangeTestResult, "plot", recording_plot)
    parser = argparse.ArgumentParser()
    lr_find.add_arguments(parser)
    toml = write_toml(tmp_path / "tiny.toml")
    args = parser.parse_args([str(toml), "--num-iter", "12", "--logdir", str(tmp_path), "--quiet"])
    assert lr_find.run(args) == 0
    assert any("tiny" in t and "plain" in t for t in titles), titles


def test_lr_find_runs_on_the_threads_it_is_given_default_one_as_stepsize_run(
    mnist1d_cache, monkeypatch, tmp_path
):
    """``--threads`` sets torch's thread count for the test (default 1, the count ``stepsize
    run`` computes its range test with: CPU kernels reduce in an order that depends on it), and
    the caller's count comes back afterwards; a bad count is refused naming the option."""
    import argparse

    import torch

    from runs import lr_find
    from runs.cli import main

    seen = []
    test = lr_find.range_test_on_variant

    def recording_test(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return test(*args, **kwargs)

    monkeypatch.setattr(lr_find, "range_test_on_variant", recording_test)
    parser = argparse.ArgumentParser()
    lr_find.add_arguments(parser)
    toml = write_toml(tmp_path / "tiny.toml")
    before = torch.get_num_threads()
    common = [str(toml), "--num-iter", "4", "--curvature-batches", "0", "--quiet"]
    for extra, expected in (([], 1), (["--threads", "3"], 3)):
        args = parser.parse_args([*common, "--out", str(tmp_path / f"{expected}.png"), *extra])
        assert lr_find.run(args) == 0
        assert seen[-1] == expected
        assert torch.get_num_threads() == before
    assert main(["lr-find", str(toml), "--threads", "0", "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()
