"""Audit 88 of the ``stepsize`` command line and its figures: loss figures with a diverged
variant, the schedules figure, ``plot --bound`` options and paths, ``plot --steps``, ``report
--readme`` checks and *Run:* line, empty and unusable paths, and output paths that are symbolic
links. Figures are checked through their matplotlib Axes (limits, line data), never as images."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from runs.cli import main
from tests.runs.helpers import FASTEST, copy_finished, one_error_line, refused

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY = FASTEST  # (tests.runs.helpers: 5 updates of a logistic regression)


_error, _refused = one_error_line, refused


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def finished(finished_tiny) -> Path:
    """A finished tiny experiment folder (copied by each test that changes it)."""
    return finished_tiny


_copy = copy_finished


# --------------------------------------------------------------------------- F1, F2: figures


def _result(variant, seed, losses, *, status="finished", steps=30, diverged_at=None, lr=None):
    """A synthetic result: evaluations at steps 0, 10, 20 with ``losses``; ``lr``: the logged
    (steps, values) of the rate (default: logged once, at step 0, as an unscheduled variant)."""
    eval_steps = [0, 10, 20][: len(losses)]
    accuracy = [0.1, 0.5, 0.8][: len(losses)]
    eval_ = {"step": eval_steps, "test_loss": list(losses), "train_loss": list(losses)}
    eval_ |= {"test_accuracy": accuracy, "train_accuracy": accuracy}
    lr_steps, lr_values = lr or ([0], [0.1])
    return {
        "variant": variant,
        "seed": seed,
        "status": status,
        "diverged": {"step": diverged_at, "value": "inf"} if status == "diverged" else None,
        "steps": steps,
        "config": {"name": variant, "train": {"steps": steps}},
        "final": {m: eval_[m][-1] for m in eval_ if m != "step"},
        "wall_time_s": 1.0,
        "history": {
            "eval": eval_,
            "train_loss": {"step": list(range(20)), "value": [1.0] * 20},
            "hyper": {"hyper/lr/group0": {"step": list(lr_steps), "value": list(lr_values)}},
            "stats": {"step": [], "grad_norm": [], "update_ratio": []},
        },
    }


def _figures(results, tmp_path, monkeypatch):
    """The figures ``write_figures`` draws, by file name, before they are written."""
    from runs import figures

    drawn = {}

    def keep(fig, path, **_):
        drawn[Path(path).name] = fig
        return path

    monkeypatch.setattr(figures, "save_figure", keep)
    figures.write_figures(results, tmp_path, "t")
    return drawn


FINISHED = [[2.30, 2.20, 2.10], [2.34, 2.22, 2.08], [2.28, 2.19, 2.12]]
# finite but huge before the divergence, and with a huge spread: mean - std is about -1e23
DIVERGING = [[2.3, 1e23, 5e22], [2.3, 1.0, 2.0], [2.3, 3e23, 1.0]]


def test_a_diverged_loss_band_leaves_the_finished_variant_readable(tmp_path, monkeypatch):
    results = [_result("plain", s, losses) for s, losses in enumerate(FINISHED)]
    results += [
        _result("hot", s, losses, status="diverged", diverged_at=25)
        for s, losses in enumerate(DIVERGING)
    ]
    drawn = _figures(results, tmp_path, monkeypatch)
    for name in ("test_loss.png", "train_loss.png"):
        ax = drawn[name].axes[0]
        assert ax.get_yscale() == "linear"
        bottom, top = ax.get_ylim()
        # the finished variant's mean, computed here, is inside the axis ...
        plain = np.mean(FINISHED, axis=0)
        assert bottom <= plain.min()
        assert plain.max() <= top
        # ... and fills a good part of it (before: (-1.6e23, 2.75), the curve squashed on 0)
        band = np.mean(FINISHED, axis=0) + np.std(FINISHED, axis=0, ddof=1)
        assert (plain.max() - plain.min()) / (top - bottom) > 0.3
        assert top < band.max() + 0.5
        assert bottom > -0.1
        # a loss band never goes below 0 (the diverged variant's mean - std is about -1e23)
        shaded = [c for c in ax.collections if len(c.get_paths())]
        assert shaded
        assert all(p.vertices[:, 1].min() >= 0 for c in shaded for p in c.get_paths())
        labels = ax.get_legend_handles_labels()[1]
        assert any(label.startswith("diverged runs cut off above") for label in labels)


def test_the_axis_is_cut_below_too_when_a_diverged_variant_goes_far_below():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from runs.figures import _plot_bands

    def get(r):
        return r["history"]["eval"]["step"], r["history"]["eval"]["test_loss"]

    runs = {
        "ok": [_result("ok", s, v) for s, v in enumerate(FINISHED)],
        "bad": [
            _result("bad", s, v, status="diverged", diverged_at=25)
            for s, v in enumerate([[2.0, -1e20, -3e20], [2.0, -1e20, -3e20]])
        ],
    }
    fig, ax = plt.subplots()
    try:
        _plot_bands(ax, runs, get)  # (a metric that may be negative: nothing clipped)
        bottom, top = ax.get_ylim()
        ok = np.asarray(FINISHED)
        low = (ok.mean(axis=0) - ok.std(axis=0, ddof=1)).min()
        high = (ok.mean(axis=0) + ok.std(axis=0, ddof=1)).max()
        assert low - (high - low) < bottom <= low
        assert high <= top < high + (high - low)
        assert "diverged runs cut off below" in ax.get_legend_handles_labels()[1]
    finally:
        plt.close(fig)


def _lr_lines(drawn):
    return {line.get_label(): line for line in drawn["schedules.png"].axes[0].get_lines()}


def test_schedules_hold_each_rate_to_the_end_of_its_run(tmp_path, monkeypatch):
    results = [
        _result("constant", 0, FINISHED[0]),  # logged once: no schedule
        _result("stepped", 0, FINISHED[1], lr=([0, 10], [0.1, 0.01])),
        _result("hot", 0, DIVERGING[0], status="diverged", diverged_at=12),
    ]
    lines = _lr_lines(_figures(results, tmp_path, monkeypatch))
    # a rate logged at step s is used from s on; the run ends at its 30 steps, or diverged at 12
    expected = {
        "constant": ([0, 30], [0.1, 0.1]),
        "stepped": ([0, 10, 30], [0.1, 0.01, 0.01]),
        "hot": ([0, 12], [0.1, 0.1]),
    }
    for label, (xs, ys) in expected.items():
        line = lines[label]
        assert list(line.get_xdata()) == xs, label
        assert list(line.get_ydata()) == ys, label
        assert line.get_drawstyle() == "steps-post"
        assert line.get_linestyle() != "None"
        assert line.get_linewidth() > 0


def test_schedules_of_an_epoch_experiment_reach_the_last_epoch(tmp_path, monkeypatch):
    run = _result("ep", 0, FINISHED[0], lr=([0, 10, 20], [0.1, 0.05, 0.025]))
    run["config"]["train"] = {"epochs": 3}  # 30 steps: 10 per epoch
    lines = _lr_lines(_figures([run], tmp_path, monkeypatch))
    assert list(lines["ep"].get_xdata()) == [0.0, 1.0, 2.0, 3.0]
    assert list(lines["ep"].get_ydata()) == [0.1, 0.05, 0.025, 0.025]


# ------------------------------------------------------------------- F3, F4, F8: stepsize plot


@pytest.mark.parametrize("out", ["./fig", "my.figs/fig"])
def test_plot_bound_writes_a_png_to_a_path_without_suffix(tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.figs").mkdir()
    spec = '{"name": "cosine_decay", "learning_rate": 1.0, "decay_steps": 50}'
    assert main(["plot", spec, "--steps", "50", "--bound", "1,1", "--out", out]) == 0
    assert (tmp_path / out).read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in (tmp_path / out).parent.iterdir() if p.name.startswith(".")) == []


def _bound_figure(monkeypatch, argv):
    """The figure ``stepsize plot ... --bound`` drew (kept open for inspection)."""
    import theory

    figures = []
    original = theory.plot_schedule_bound

    def keep(*args, **kwargs):
        figures.append(original(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(theory, "plot_schedule_bound", keep)
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "close", lambda *a, **k: None)
    assert main(argv) == 0
    return figures[-1]


def _preset_title(name: str) -> str:
    from importlib import resources

    text = (resources.files("schedulers") / "presets" / f"{name}.toml").read_text()
    return tomllib.loads(text)["title"]


def test_plot_bound_honours_log_and_the_preset_title(tmp_path, monkeypatch):
    out = str(tmp_path / "b.png")
    figure = _bound_figure(
        monkeypatch, ["plot", "tf-decays", "--bound", "1,1", "--log", "--out", out]
    )
    assert figure.axes[0].get_yscale() == "log"
    title = figure._suptitle.get_text() if figure._suptitle else ""
    assert " ".join(title.split()) == _preset_title("tf-decays")
    # the preset's own log = true, and --no-log over it
    figure = _bound_figure(monkeypatch, ["plot", "pytorch-family", "--bound", "1,1", "--out", out])
    assert figure.axes[0].get_yscale() == "log"
    figure = _bound_figure(
        monkeypatch, ["plot", "pytorch-family", "--bound", "1,1", "--no-log", "--out", out]
    )
    assert figure.axes[0].get_yscale() == "linear"
    # --title replaces the preset's
    figure = _bound_figure(
        monkeypatch, ["plot", "tf-decays", "--bound", "1,1", "--title", "mine", "--out", out]
    )
    assert figure._suptitle.get_text() == "mine"


def test_plot_bound_chooses_a_log_axis_for_values_spanning_decades(tmp_path, monkeypatch):
    out = str(tmp_path / "b.png")
    # 1 down to 1e-4 over 100 steps: four decades (no --log, no preset: the values decide)
    decay = (
        '{"name": "exponential_decay", "learning_rate": 1.0, "decay_steps": 25, "decay_rate": 0.1}'
    )
    figure = _bound_figure(
        monkeypatch, ["plot", decay, "--steps", "100", "--bound", "1,1", "--out", out]
    )
    ydata = figure.axes[0].lines[0].get_ydata()
    assert ydata[0] / ydata[-1] > 1e3  # (what the test relies on)
    assert figure.axes[0].get_yscale() == "log"


@pytest.mark.parametrize("bound", ["--bound=inf,1", "--bound=1,inf", "--bound=-inf,1"])
def test_plot_bound_refuses_an_infinite_value_naming_bound(capsys, bound):
    with pytest.raises(SystemExit) as exit_:  # (a usage error of the parser)
        main(["plot", "tf-decays", bound])
    assert exit_.value.code == 2
    err = _error(capsys)
    assert err.startswith("stepsize plot: error: argument --bound: --bound needs")


@pytest.fixture
def no_drawing(monkeypatch):
    """Drawing a schedule fails the test (a refused --steps must draw nothing)."""
    from schedulers import plot as schedule_plot

    def refuse(*args, **kwargs):
        raise AssertionError("the schedules were drawn")

    monkeypatch.setattr(schedule_plot, "draw_schedules", refuse)
    monkeypatch.setattr(schedule_plot, "plot_schedules", refuse)


@pytest.mark.parametrize("steps", ["1000001", "100000000"])
def test_plot_steps_is_capped_at_a_million(tmp_path, capsys, no_drawing, steps):
    out = str(tmp_path / "s.png")
    err = _refused(
        capsys, "plot", '{"name": "constant", "value": 0.1}', "--steps", steps, "--out", out
    )
    assert err == (
        f"stepsize: error: --steps must be an integer from 1 to 1,000,000, got {int(steps)}\n"
    )
    assert not (tmp_path / "s.png").exists()


def test_plot_steps_from_a_spec_file_are_capped_too(tmp_path, capsys, no_drawing):
    big = tmp_path / "big.toml"
    big.write_text('steps = 100000000\n[schedules]\nc = {name = "constant", value = 0.1}\n')
    err = _refused(capsys, "plot", str(big), "--out", str(tmp_path / "s.png"))
    assert "--steps must be an integer from 1 to 1,000,000" in err
    assert f"steps = 100000000 from {str(big)!r}" in err


# ----------------------------------------------------------------------- F5, F6: report --readme


def _unshare_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


def test_readme_folder_is_checked_before_any_figure_is_written(finished, tmp_path):
    experiment = _copy(finished, tmp_path / "L" / "tiny")
    readme_dir, results = tmp_path / "readme", tmp_path / "rw"
    (readme_dir / "docs" / "results").mkdir(parents=True)
    results.mkdir()
    (readme_dir / "README.md").write_text("# readme\n")
    command = shlex.join(
        [sys.executable, "-m", "runs", "report", str(experiment), "--readme",
         str(readme_dir / "README.md")]
    )  # fmt: skip
    if _unshare_available():  # root: a read-only bind mount (chmod does not stop root)
        r, rw = shlex.quote(str(readme_dir)), shlex.quote(str(results))
        script = (
            f"mount --bind {r} {r} && mount -o remount,bind,ro {r} && "
            f"mount --bind {rw} {r}/docs/results && {command}"
        )
        proc = subprocess.run(
            ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=tmp_path
        )
    elif os.geteuid() != 0:  # the README's folder read-only, docs/results in it writable
        results = readme_dir / "docs" / "results"
        readme_dir.chmod(0o555)
        try:
            proc = subprocess.run(
                shlex.split(command), capture_output=True, text=True, cwd=tmp_path
            )
        finally:
            readme_dir.chmod(0o755)
    else:
        pytest.skip("needs a read-only folder: unshare as root, or a non-root user")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert "--readme" in proc.stderr
    assert "is not writable" in proc.stderr
    assert list(results.rglob("*")) == []  # no figure written before the refusal
    assert (readme_dir / "README.md").read_text() == "# readme\n"


@pytest.mark.parametrize("name", ["experiment.toml", "notes.txt", "README"])
def test_readme_must_be_a_markdown_file(finished, tmp_path, capsys, name):
    experiment = _copy(finished, tmp_path / "L" / "tiny")
    target = tmp_path / "w" / name
    target.parent.mkdir()
    target.write_text(TINY)
    before = _snapshot(tmp_path / "w")
    err = _refused(capsys, "report", str(experiment), "--readme", str(target))
    assert f"--readme: {str(target)!r} is not a Markdown file" in err
    assert ".md" in err
    assert _snapshot(tmp_path / "w") == before
    tomllib.loads(target.read_text())  # still the TOML it was


def test_readme_suffix_is_case_insensitive(finished, tmp_path):
    experiment = _copy(finished, tmp_path / "L" / "tiny")
    readme = tmp_path / "README.MD"
    readme.write_text("# project\n")
    assert main(["report", str(experiment), "--readme", str(readme)]) == 0
    assert "<!-- results:begin -->" in readme.read_text()


def test_run_line_of_a_toml_experiment_names_its_file(tmp_path, capsys, mnist1d_cache):
    toml = tmp_path / "exps" / "tiny.toml"
    toml.parent.mkdir()
    toml.write_text(TINY)
    argv = ["run", str(toml), "--logdir", str(tmp_path / "L"), "--quiet"]
    assert main(argv) == 0
    meta = json.loads((tmp_path / "L" / "tiny" / "experiment.json").read_text())
    assert meta["command"] == shlex.join(["stepsize", *argv])  # (before: "run")
    readme = tmp_path / "README.md"
    readme.write_text("# project\n")
    assert main(["report", str(tmp_path / "L" / "tiny"), "--readme", str(readme)]) == 0
    relative = Path(os.path.relpath(toml, readme.parent)).as_posix()
    assert relative == "exps/tiny.toml"
    assert f"*Run:* `stepsize run {relative}`;" in readme.read_text()
    assert "`stepsize run tiny`" not in readme.read_text()  # (not a bundled experiment)


def test_run_command_of_bundled_and_python_experiments():
    from runs.readme import run_command

    bundled = {"name": "d2l-schedules", "source": "/site/runs/experiments/d2l-schedules.toml"}
    assert run_command(bundled) == "stepsize run d2l-schedules"
    study = {"name": "adaptive-generalization", "source": "/x/runs/experiments/adaptive.py"}
    assert run_command(study) == "stepsize run adaptive-generalization"
    given = {"name": "mine", "source": "../my dir/mine.toml"}
    assert run_command(given) == "stepsize run '../my dir/mine.toml'"
    python = {"name": "p", "source": "<experiment dict>", "command": "runs.run(<experiment dict>)"}
    assert run_command(python) == "runs.run(<experiment dict>)"


# ------------------------------------------------------------------------------ F7: paths


def test_report_refuses_an_empty_path(finished, tmp_path, monkeypatch, capsys):
    _copy(finished, tmp_path / "L" / "tiny")
    monkeypatch.chdir(tmp_path / "L")  # (before: '' was read as this folder and reported)
    before = _snapshot(tmp_path / "L")
    err = _refused(capsys, "report", "")
    assert "an empty path ''" in err
    assert _snapshot(tmp_path / "L") == before


def test_data_dir_must_be_an_existing_folder(tmp_path, capsys, mnist1d_cache):
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    missing, a_file = tmp_path / "no" / "such", toml
    logdir = str(tmp_path / "L")
    err = _refused(capsys, "run", str(toml), "--logdir", logdir, "--data-dir", str(missing))
    assert f"--data-dir {str(missing)!r} does not exist" in err
    err = _refused(capsys, "lr-find", str(toml), "--logdir", logdir, "--data-dir", str(a_file))
    assert f"--data-dir {str(a_file)!r} is a file, not a folder" in err
    assert not (tmp_path / "L").exists()


def test_data_dir_does_not_apply_to_a_generated_dataset(tmp_path, capsys, mnist1d_cache):
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    (tmp_path / "data").mkdir()
    logdir = str(tmp_path / "L")
    for command in ("run", "lr-find"):
        err = _refused(
            capsys, command, str(toml), "--logdir", logdir, "--data-dir", str(tmp_path / "data")
        )
        assert "--data-dir does not apply to tiny: its dataset (mnist1d)" in err
    assert not (tmp_path / "L").exists()


def test_atomic_write_writes_through_a_symbolic_link(tmp_path):
    from schedulers.files import atomic_write

    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "real" / "target.txt"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "links" / "link.txt"
    link.symlink_to(Path("..") / "real" / "target.txt")
    atomic_write(link, lambda file: file.write(b"new"))
    assert link.is_symlink()  # (before: replaced by a regular file, the target kept "old")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["target.txt"]
    assert sorted(p.name for p in (tmp_path / "links").iterdir()) == ["link.txt"]


def test_plot_and_readme_write_through_symbolic_links(finished, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("target.png").write_text("old")
    Path("link.png").symlink_to("target.png")
    assert main(["plot", "warmup", "--steps", "20", "--out", "link.png"]) == 0
    assert Path("link.png").is_symlink()
    assert Path("target.png").read_bytes().startswith(PNG_MAGIC)
    experiment = _copy(finished, tmp_path / "L" / "tiny")
    Path("docs-src").mkdir()
    Path("docs-src/README.md").write_text("# project\n")
    Path("README.md").symlink_to("docs-src/README.md")
    assert main(["report", str(experiment), "--readme", "README.md"]) == 0
    assert Path("README.md").is_symlink()
    assert "<!-- results:begin -->" in Path("docs-src/README.md").read_text()


def test_schedules_that_coincide_are_drawn_in_different_line_styles(tmp_path, monkeypatch):
    """Two variants on the same schedule (d2l-schedules' constant and cosine over a --quick
    run's first epochs, say) drew one line over the other, so the first was invisible; as the
    metric figures do, a coinciding curve takes the next line style."""
    results = [
        _result("first", 0, FINISHED[0], lr=([0, 10], [0.1, 0.01])),
        _result("second", 0, FINISHED[1], lr=([0, 10], [0.1, 0.01])),
        _result("other", 0, FINISHED[0], lr=([0, 10], [0.2, 0.02])),
    ]
    lines = _lr_lines(_figures(results, tmp_path, monkeypatch))
    assert lines["first"].get_linestyle() != lines["second"].get_linestyle()
    assert lines["first"].get_linestyle() == lines["other"].get_linestyle()
