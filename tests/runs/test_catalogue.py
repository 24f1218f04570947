"""The catalogue: every bundled experiment runs with --quick and writes finite results, a table,
figures and a summary with seeds, versions and wall time; the README section is generated from
run folders; the stages (range test, learning-rate search, dataset fallback) do what they say."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from runs import tuning
from runs.catalog import CATALOGUE, DEFAULT_EXPERIMENT, bundled_experiments
from runs.cli import main
from runs.load import load_experiment, parse_experiment
from runs.results import cpu_model
from tests.runs.helpers import TINY, write_toml

PNG = b"\x89PNG\r\n\x1a\n"


def _non_finite(value, path="") -> list[str]:
    """Paths of the non-finite numbers in a JSON document."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _non_finite(v, f"{path}[{i}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [path]
    return []


def test_the_catalogue_is_bundled_and_d2l_is_the_default():
    assert set(bundled_experiments()) == set(CATALOGUE)
    assert DEFAULT_EXPERIMENT == "d2l-schedules"


def test_list_states_every_experiments_time(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in CATALOGUE:
        assert name in out
    assert out.count("time: ") == len(CATALOGUE)
    assert "time: not stated" not in out
    assert "d2l-schedules (default)" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", CATALOGUE)
def test_every_experiment_runs_quick_with_finite_outputs(name, quick_logdir, capsys):
    # The default experiment runs as `stepsize run --quick`, without its name.
    named = [] if name == DEFAULT_EXPERIMENT else [name]
    assert main(["run", *named, "--quick", "--logdir", str(quick_logdir), "--quiet"]) == 0
    root = quick_logdir / f"{name}-quick"
    summary = json.loads((root / "summary.json").read_text())
    if name == DEFAULT_EXPERIMENT:
        assert [run["status"] for run in summary["runs"]] == ["finished"] * 6
        # The fallback: MNIST-1D at Fashion-MNIST's size, so 30 epochs make d2l's updates.
        table = (root / "summary.md").read_text()
        data = "dataset `mnist1d` (60,000 training / 10,000 test examples), model `lenet1d`"
        assert data in table
        assert summary["runs"][0]["steps"] == 2 * math.ceil(60_000 / 256)  # --quick: 2 epochs
    assert summary["seeds"], "seeds are recorded"
    assert summary["wall_time_s"] > 0
    assert summary["software"]["torch"]
    assert summary["software"]["python"]
    # Recorded by the run, on the machine that ran it (a later report keeps them).
    assert summary["software"] == json.loads((root / "experiment.json").read_text())["software"]
    assert summary["software"]["cpu"] == cpu_model()
    figure = root / summary["readme_figure"]
    assert figure.read_bytes().startswith(PNG)
    table = (root / "summary.md").read_text()
    assert "|---" in table
    if summary["experiment"].get("kind") == "study":
        results = json.loads((root / "results.json").read_text())
        assert _non_finite(results) == [], "a study's results are finite"
        return
    # Training runs: every number is finite, except in runs that report their divergence.
    for run in summary["runs"]:
        if run["status"] == "diverged":
            assert name == "lr-sensitivity"
            assert run["variant"] == "very-high"
            continue
        assert _non_finite(run) == [], f"{run['variant']} seed {run['seed']}"
    for row in summary["variants"]:
        if row["finished"]:
            assert _non_finite(row["final"]) == []


# Four kinds of run folder: training runs with checked claims, training runs with a diverged
# run, a study, and a study with claims. (Every experiment's own report is written and checked by
# its quick run above; the README section is the same glue for each, and rendering all eleven
# again takes 20 s.)
README_FOLDERS = ("d2l-schedules", "lr-sensitivity", "quadratic", "schedule-theory")


def _as_full_run(folder: Path, to: Path) -> Path:
    """A copy of a quick run's folder marked as a full run's. The README takes full runs only
    (tests/runs/test_readme_full_runs.py checks the refusal); its rendering is the same glue for
    either, and full runs take minutes."""
    import shutil

    copy = Path(shutil.copytree(folder, to / folder.name.removesuffix("-quick")))
    meta = json.loads((copy / "experiment.json").read_text())
    meta["quick"] = False
    (copy / "experiment.json").write_text(json.dumps(meta))
    return copy


@pytest.mark.slow
def test_readme_section_is_generated_from_run_folders(quick_run, tmp_path):
    dirs = [_as_full_run(quick_run(name), tmp_path / "runs") for name in README_FOLDERS]
    readme = tmp_path / "README.md"
    readme.write_text(
        "# project\n\nintro\n\n## Results\n\n<!-- results:begin -->\nstale words\n"
        "<!-- results:end -->\n\n## After\n\nkept\n"
    )
    assert main(["report", *map(str, dirs), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "stale words" not in text
    assert "## After\n\nkept" in text
    assert text.startswith("# project")
    for directory in dirs:
        summary = json.loads((directory / "summary.json").read_text())
        name = summary["experiment"]["name"]
        assert f"### {name}" in text
        image = tmp_path / "docs" / "results" / f"{name}.png"
        assert image.read_bytes() == (directory / summary["readme_figure"]).read_bytes()
        assert f"![{name}](docs/results/{name}.png)" in text
        # The table in the README is the one in summary.md, regenerated from the runs.
        table = (directory / "summary.md").read_text().split("\n\n", 2)[2].strip()
        assert table.splitlines()[0] in text
        # Its *Run:* line names the CPU and the kernels torch ran there, which change the numbers.
        software = summary["software"]
        assert f"CPU: {software['cpu']} (torch's {software['cpu_kernels']} kernels)." in text
    # Written again: the same text (the two named are regenerated, the other two kept). Two
    # folders suffice for this property (each experiment's rendering is checked above); all of
    # them double the time.
    again = tmp_path / "again" / "README.md"
    again.parent.mkdir()
    again.write_text(readme.read_text().replace("intro", "intro, kept"))
    main(["report", *map(str, dirs[1:3]), "--readme", str(again)])
    before = again.read_text()
    main(["report", *map(str, dirs[1:3]), "--readme", str(again)])
    assert again.read_text() == before
    assert "intro, kept" in before


# ------------------------------------------------------------------------------------ stages
SEARCH = (
    TINY.replace('name = "tiny"', 'name = "search"')
    + """

[[variants]]
name = "sps"
optimizer = {name = "optim.SPS"}

[search]
lr = [0.01, 0.3, 1e6]
seed = 5
train = {steps = 12}
"""
)


def test_search_picks_the_lowest_final_train_loss_and_never_a_diverged_rate(tmp_path, capsys):
    toml = write_toml(tmp_path / "search.toml", SEARCH.replace("seeds = 2", "seeds = 1"))
    assert main(["run", str(toml), "--logdir", str(tmp_path), "--quiet"]) == 0
    root = tmp_path / "search"
    search = json.loads((root / "search.json").read_text())
    for variant in ("plain", "momentum"):
        finals = {}
        for lr in (0.01, 0.3, 1e6):
            run_dir = root / tuning.SEARCH_DIR / variant / f"lr{lr:g}" / "seed5"
            result = json.loads((run_dir / "result.json").read_text())
            assert result["steps"] == 12
            assert result["seed"] == 5
            if result["status"] == "finished":
                finals[lr] = result["final"]["train_loss"]
        assert 1e6 not in finals  # that rate diverges
        best = min(finals, key=finals.get)
        assert search["chosen"][variant] == best
        main_run = json.loads((root / variant / "seed0" / "result.json").read_text())
        assert main_run["config"]["optimizer"]["lr"] == best
        assert main_run["steps"] == 24  # the main runs keep their own budget
    table = (root / "summary.md").read_text()
    assert "grid search" in table
    assert "diverged" in table
    # SPS takes no lr: it is trained as it is, beside the searched variants, and not searched.
    assert set(search["chosen"]) == set(search["grid"]) == {"plain", "momentum"}
    assert not (root / tuning.SEARCH_DIR / "sps").exists()
    sps_run = json.loads((root / "sps" / "seed0" / "result.json").read_text())
    assert sps_run["status"] == "finished"
    assert "lr" not in sps_run["config"]["optimizer"]
    assert "| sps |" not in table.split("grid search", 1)[1]


def test_a_variant_without_lr_cannot_be_searched_or_range_tested():
    sps = {"name": "sps", "optimizer": {"name": "optim.SPS"}}
    raw = _raw(search={"lr": [0.1]}, range_test={"variant": "sps"})
    raw["variants"] = [*raw["variants"], {**sps, "search": {"lr": [0.1, 1.0]}}]
    with pytest.raises(ValueError, match="2 problem") as err:
        parse_experiment(raw, "x.toml")
    text = str(err.value)
    assert "variants[2].search.lr: optim.SPS takes no lr" in text
    assert "range_test.variant: variant 'sps' uses optim.SPS, which takes no lr" in text
    raw = _raw(search={"lr": [0.1]})
    raw["variants"] = [*raw["variants"], sps]
    assert set(parse_experiment(raw, "x.toml").search.grids) == {"plain", "momentum"}


def test_range_test_references_are_resolved_and_recorded(tmp_path, capsys):
    text = TINY.replace('name = "tiny"', 'name = "refs"').replace("seeds = 2", "seeds = 1")
    text = text.replace(
        "optimizer = {momentum = 0.9}",
        'schedules.lr = {name = "constant", value = "0.5 * $safe_step"}',
    )
    text += "\n[range_test]\nstart_lr = 1e-3\nend_lr = 1.0\nnum_iter = 10\n"
    toml = write_toml(tmp_path / "refs.toml", text)
    assert main(["run", str(toml), "--logdir", str(tmp_path), "--quiet"]) == 0
    root = tmp_path / "refs"
    saved = json.loads((root / "range_test.json").read_text())
    assert saved["values"]["safe_step"] == pytest.approx(1 / saved["L"], rel=1e-12)
    assert saved["values"]["edge_step"] == pytest.approx(2 / saved["L"], rel=1e-12)
    run = json.loads((root / "momentum" / "seed0" / "result.json").read_text())
    assert run["config"]["schedules"]["lr"]["value"] == 0.5 * saved["values"]["safe_step"]
    lrs = run["history"]["hyper"]
    assert all(v == 0.5 * saved["values"]["safe_step"] for tag in lrs for v in lrs[tag]["value"])
    assert (root / "figures" / "range_test.png").read_bytes().startswith(PNG)
    assert "LR range test" in (root / "summary.md").read_text()


def _raw(**changes):
    import tomllib

    raw = tomllib.loads(TINY)
    raw.update(changes)
    return raw


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("$safe_step", "add a [range_test] section"),
        ("2 * $nope", "unknown reference $nope"),
        ("$safe_step + 1", 'must be "$NAME" or "FACTOR * $NAME"'),
    ],
)
def test_bad_references_are_reported_where_written(value, message):
    raw = _raw(schedules={"lr": {"name": "constant", "value": value}})
    if message != "add a [range_test] section":
        raw["range_test"] = {}
    with pytest.raises(ValueError, match=r"schedules\.lr\.value") as err:
        parse_experiment(raw, "x.toml")
    assert message in str(err.value)


def test_search_and_report_sections_are_validated():
    raw = _raw(search={"lr": [], "metric": "speed"}, report={"reach": "nobody", "colour": 1})
    with pytest.raises(ValueError, match="problem") as err:
        parse_experiment(raw, "x.toml")
    text = str(err.value)
    for location in ("search.lr", "search.metric", "report.reach", "report.colour"):
        assert location in text


def _fake_fashion(folder: Path, rng: np.random.Generator) -> None:
    from tests.runs.test_data import make_idx_dataset

    make_idx_dataset(folder, rng, train=40, test=20, rows=28, cols=28)


def test_d2l_runs_lenet_on_fashion_mnist_when_the_data_dir_holds_it(tmp_path):
    data_dir = tmp_path / "data"
    _fake_fashion(data_dir / "fashion-mnist", np.random.default_rng(0))
    with_data = load_experiment("d2l-schedules", data_dir=str(data_dir))
    without = load_experiment("d2l-schedules")
    explicit = load_experiment("d2l-schedules", data_dir=str(tmp_path / "empty"))
    assert not with_data.fallback_used
    assert without.fallback_used
    # An explicit --data-dir never falls back: loading its dataset reports the missing files.
    assert not explicit.fallback_used
    assert explicit.variants[0].dataset.name == "fashion-mnist"
    for variant in with_data.variants:
        assert (variant.dataset.name, variant.model.name) == ("fashion-mnist", "lenet")
    for variant in without.variants:
        assert (variant.dataset.name, variant.model.name) == ("mnist1d", "lenet1d")
        assert (variant.dataset.train_examples, variant.dataset.test_examples) == (60_000, 10_000)
    # Same schedules either way.
    assert [v.schedules for v in with_data.variants] == [v.schedules for v in without.variants]


@pytest.mark.slow
def test_d2l_quick_run_on_a_small_fashion_mnist(tmp_path, capsys):
    data_dir = tmp_path / "data"
    _fake_fashion(data_dir / "fashion-mnist", np.random.default_rng(1))
    args = ["run", "d2l-schedules", "--quick", "--logdir", str(tmp_path), "--quiet"]
    assert main([*args, "--data-dir", str(data_dir), "--variants", "constant"]) == 0
    summary = json.loads((tmp_path / "d2l-schedules-quick" / "summary.json").read_text())
    assert summary["runs"][0]["config"]["model"]["name"] == "lenet"
    assert not summary["experiment"]["fallback_used"]
