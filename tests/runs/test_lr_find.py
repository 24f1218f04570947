"""stepsize lr-find: the range test on an experiment's variant, from the command line."""

import os
import subprocess
import sys
import tomllib


def _lr_find(tmp_path, *args, cache=None):
    env = {**os.environ, "STEPSIZE_CACHE": str(cache or tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "runs", "lr-find", "--logdir", str(tmp_path / "logs"), *args],
        capture_output=True, text=True, env=env,
    )  # fmt: skip


def test_lr_find_prints_suggestions_and_curvature_and_saves_the_plot(tmp_path, mnist1d_cache):
    proc = _lr_find(
        tmp_path, "--num-iter", "30", "--start-lr", "1e-4", "--end-lr", "10", cache=mnist1d_cache
    )
    assert proc.returncode == 0, proc.stderr
    for expected in ("steepest", "min/10", "valley", "1/L", "2/L", "plot:"):
        assert expected in proc.stdout
    plots = list((tmp_path / "logs").rglob("lr-find-*.png"))
    assert len(plots) == 1
    assert plots[0].stat().st_size > 0


def test_lr_find_bad_input_is_one_line_and_writes_nothing(tmp_path):
    """Options are checked before the data is generated or cached: nothing on disk changes."""
    for bad, name in (
        (["--num-iter", "1"], "num_iter"),
        (["--start-lr", "1", "--end-lr", "0.5"], "end_lr"),
        (["--smoothing", "1"], "smoothing"),
        (["--curvature-batches", "-1"], "curvature_batches"),
    ):
        proc = _lr_find(tmp_path, *bad)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert name in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
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
    args = parser.parse_args(["--num-iter", "12", "--logdir", str(tmp_path), "--quiet"])
    assert lr_find.run(args) == 0
    assert any("d2l-schedules" in t and "variant" in t for t in titles), titles
