"""stepsize plot: presets, inline specs, TOML files, atomic PNG output, errors."""

import argparse
import math
import subprocess
import sys

import numpy as np
import pytest

import schedulers as S
from schedulers import plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _args(*argv):
    parser = argparse.ArgumentParser()
    plot.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_plot_schedules_writes_a_png_atomically(tmp_path):
    out = plot.plot_schedules(
        {"cos": S.cosine_decay(0.1, 50), "step": S.step_lr(0.1, 10)}, 60, tmp_path / "a.png"
    )
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary file left


def test_every_preset_parses_and_draws(tmp_path):
    names = plot.preset_names()
    assert {"tf-decays", "polynomial-cycle", "cosine-family", "clr-modes", "warmup"} <= set(names)
    for name in names:
        preset = plot.load_preset(name)
        assert preset["schedules"]
        assert preset["title"]
    assert plot.run(_args(*names, "--steps", "50", "--out", str(tmp_path / "all.png"))) == 0
    assert (tmp_path / "all.png").read_bytes().startswith(PNG_MAGIC)


def test_inline_json_and_toml_specs_and_toml_file(tmp_path):
    spec_file = tmp_path / "mine.toml"
    spec_file.write_text(
        'title = "mine"\nsteps = 40\n[schedules]\n"c" = {name = "constant", value = 0.1}\n'
    )
    out = tmp_path / "b.png"
    code = plot.run(
        _args(
            'warm={name = "linear_warmup", warmup_steps = 5, '
            'schedule = {name = "constant", value = 0.2}}',
            '{"name": "cosine_decay", "learning_rate": 0.3, "decay_steps": 20}',
            str(spec_file),
            "--out",
            str(out),
        )
    )
    assert code == 0
    assert out.read_bytes().startswith(PNG_MAGIC)
    parsed = plot.parse_spec('warm={name = "constant", value = 0.2}')
    assert list(parsed["schedules"]) == ["warm"]


def test_bad_specs_are_user_errors(tmp_path):
    with pytest.raises(ValueError, match="valid names"):
        plot.run(_args('{"name": "cosine"}', "--out", str(tmp_path / "x.png")))
    with pytest.raises(FileNotFoundError):
        plot.run(_args(str(tmp_path / "missing.toml")))
    with pytest.raises(ValueError, match="presets"):
        plot.run(_args("no-such-preset"))
    with pytest.raises(ValueError, match=r"^path '.*x\.png': the folder '.*nope' does not exist"):
        plot.plot_schedules({"c": S.constant(1.0)}, 10, tmp_path / "nope" / "x.png")


def test_cli_lists_presets_and_reports_errors_in_one_line():
    listed = subprocess.run(
        [sys.executable, "-m", "runs", "plot", "--list-presets"], capture_output=True, text=True
    )
    assert listed.returncode == 0
    assert "tf-decays" in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "runs", "plot", '{"name": "cosine"}'], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert "valid names" in bad.stderr


def _drawn_curves(ax):
    """(label, y data) of the coloured curves of an axes (grey context lines left out)."""
    return [
        (line.get_label(), np.asarray(line.get_ydata(), dtype=float))
        for line in ax.get_lines()
        if line.get_color() != "0.85"
    ]


@pytest.mark.parametrize("name", plot.preset_names())
def test_presets_hide_no_curve_name_every_curve_and_keep_legends_outside(name):
    """Before: four of seven presets drew a curve exactly under another, titles left curves out,
    legends sat on the data and decades were drawn on a linear axis."""
    preset = plot.load_preset(name)
    figure = plot.draw_schedules(
        preset["schedules"], preset["steps"], preset["title"], preset.get("log")
    )
    title = figure._suptitle.get_text().replace("\n", " ").lower()
    for label in preset["schedules"]:
        assert label.split(" (")[0].lower() in title, (name, label)
    axes = [ax for ax in figure.axes if ax.get_visible()]
    seen = set()
    for ax in axes:
        curves = _drawn_curves(ax)
        low, high = ax.get_ylim()
        if ax.get_yscale() == "log":
            low, high = math.log10(low), math.log10(high)
        for label, values in curves:
            others = [v for other, v in curves if other != label]
            coordinates = (
                np.log10(np.maximum(values, 1e-300)) if ax.get_yscale() == "log" else values
            )
            hidden = any(
                np.mean(np.abs(coordinates - (np.log10(np.maximum(v, 1e-300))
                        if ax.get_yscale() == "log" else v)) <= 0.006 * (high - low)) > 0.1
                for v in others
            )  # fmt: skip
            if not hidden:
                seen.add(label if len(curves) > 1 or not ax.get_title() else ax.get_title())
        legend = ax.get_legend()
        if legend is not None:
            renderer = figure.canvas.get_renderer()
            assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    assert seen == set(preset["schedules"]), name  # every curve visible somewhere on its own


def test_log_axis_where_values_span_decades():
    long_decay = {"exp": S.exponential_decay(1.0, 100, 0.5)}
    assert plot.draw_schedules(long_decay, 3000).axes[0].get_yscale() == "log"
    assert plot.draw_schedules({"cos": S.cosine_decay(1.0, 1000)}, 1000).axes[0].get_yscale() == (
        "linear"
    )
    assert plot.draw_schedules(long_decay, 3000, log_scale=False).axes[0].get_yscale() == "linear"


_BODY = '[schedules]\n"a" = {name = "cosine_decay", learning_rate = 0.1, decay_steps = 40}\n'


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ('steps = 50\nlog = "false"\n', "log must be a boolean (true or false), got log='false'"),
        ("title = 5\nsteps = 50\n", "title must be a string, got title=5"),
        ("step = 50\n", "unknown top-level key 'step'; allowed: title, steps, log, schedules"),
    ],
    ids=["log-string", "title-int", "unknown-key"],
)
def test_plot_file_top_level_keys_are_checked(tmp_path, head, message):
    """Before: log = "false" drew a log axis (bool("false") is True), title = 5 failed with a
    message naming neither file nor key, and an unknown key (step = 50) was ignored."""
    spec = tmp_path / "f.toml"
    spec.write_text(head + _BODY)
    with pytest.raises(ValueError, match=r"^file '") as error:
        plot.parse_spec(str(spec))
    assert str(error.value) == f"file {str(spec)!r}: {message}"
    out = tmp_path / "f.png"
    with pytest.raises(ValueError, match="f\\.toml"):
        plot.run(_args(str(spec), "--out", str(out)))
    assert not out.exists()


def test_a_plot_file_with_log_false_draws_a_linear_axis(tmp_path):
    spec = tmp_path / "f.toml"
    spec.write_text('title = "halving"\nsteps = 40\nlog = false\n' + _BODY)
    parsed = plot.parse_spec(str(spec))
    assert parsed["log"] is False
    assert parsed["title"] == "halving"
    figure = plot.draw_schedules(parsed["schedules"], parsed["steps"], log_scale=parsed["log"])
    assert figure.axes[0].get_yscale() == "linear"


class _NoFigure:
    """Stands for a figure: rendering it fails the test (the path must be refused first)."""

    def savefig(self, *args, **kwargs):
        raise AssertionError("the figure was rendered before the path was checked")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x.xyz", r"^path '.*x\.xyz': unknown image format 'xyz'; allowed: .*\.png"),
        ("", r"^path: an empty path"),
        ("none/x.png", r"^path '.*x\.png': the folder '.*none' does not exist"),
    ],
    ids=["unknown-format", "empty", "missing-folder"],
)
def test_plot_schedules_and_save_figure_check_the_path_before_drawing(
    tmp_path, monkeypatch, name, message
):
    """Before: an unknown suffix was refused by matplotlib after the figure was drawn, naming
    neither path nor parameter, and an empty path was reported as "'.' is a folder"."""
    path = str(tmp_path / name) if name else ""
    drawn = []
    monkeypatch.setattr(plot, "draw_schedules", lambda *args, **kwargs: drawn.append(args))
    with pytest.raises(ValueError, match=message):
        plot.plot_schedules({"c": S.constant(0.1)}, 10, path)
    assert drawn == []
    with pytest.raises(ValueError, match=message):
        plot.save_figure(_NoFigure(), path)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_entry_of_a_plot_file_is_refused_naming_the_file_and_its_label(tmp_path):
    """A file's entries may differ in one argument only (the warmup preset's three ``beta2``):
    the refusal names the file and the entry, as the top-level refusals name the file (before:
    only the argument, ``beta2 must be ... got beta2=1.0``)."""
    text = (plot._presets_dir() / "warmup.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(
        text.replace('name = "radam_warmup", beta2 = 0.99', 'name = "radam_warmup", beta2 = 1.0')
    )
    with pytest.raises(ValueError, match="beta2") as caught:
        plot.parse_spec(str(bad))
    message = str(caught.value)
    assert message.startswith(f"file {str(bad)!r}: schedules.'RAdam warmup (beta2 = 0.99)': ")
    assert "got beta2=1.0" in message


def test_a_bad_inline_spec_is_named_with_its_label_among_others():
    # two inline specs that differ in one argument: the error says which one, as a file's
    # entries are named by their labels (before: the schedule's message alone)
    from schedulers.plot import parse_spec

    good = 'warm={"name": "cosine_decay", "learning_rate": 1, "decay_steps": 10}'
    bad = 'cold={"name": "cosine_decay", "learning_rate": 1, "decay_steps": 0}'
    assert parse_spec(good)["schedules"]["warm"](0) == 1.0
    with pytest.raises(ValueError, match="decay_steps") as err:
        parse_spec(bad)
    assert str(err.value).startswith(f"schedule spec {bad!r}: ")
    with pytest.raises(TypeError) as err:  # the type of error is kept
        parse_spec('{"name": "cosine_decay", "learning_rate": "a", "decay_steps": 10}')
    assert str(err.value).startswith('schedule spec \'{"name"')


def test_a_bad_single_schedule_file_is_refused_naming_the_file(tmp_path):
    """A file that is one schedule table (a ``name`` at its top) is checked by ``from_dict``; its
    refusal names the file, as the refusal of an entry of a ``[schedules]`` file does (before:
    the schedule's message alone, which did not say which of several files was wrong)."""
    from schedulers.plot import parse_spec

    good = tmp_path / "good.toml"
    good.write_text('name = "cosine_decay"\nlearning_rate = 1.0\ndecay_steps = 10\n')
    assert parse_spec(str(good))["schedules"]
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "cosine_decay"\nlearning_rate = 1.0\ndecay_steps = 0\n')
    with pytest.raises(ValueError, match="decay_steps") as err:
        parse_spec(str(bad))
    assert str(err.value).startswith(f"file {str(bad)!r}: ")
    wrong_type = tmp_path / "wrong_type.toml"
    wrong_type.write_text('name = "cosine_decay"\nlearning_rate = "a"\ndecay_steps = 10\n')
    with pytest.raises(TypeError) as err:  # the type of error is kept
        parse_spec(str(wrong_type))
    assert str(err.value).startswith(f"file {str(wrong_type)!r}: ")
