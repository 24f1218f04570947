"""The runner's searches and sweeps (audit 87): grid rates that would share a run folder, a grid
whose every rate diverges, a changed grid or range test refused before the folder's records are
rewritten, the search's budget, seeds torch's generator cannot tell apart, a best rate at the
edge of its grid, the tie rule, ``[quick] search.lr``, and three small ones.

The experiments train a logistic regression on 200 MNIST-1D examples with one full batch per
update (``batch_size`` 200), so each update is plain gradient descent on a convex loss."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import pytest

import runs
from runs import tuning
from runs.load import parse_experiment

BASE = {
    "name": "probe",
    "seeds": 1,
    "dataset": {"name": "mnist1d", "train_examples": 200, "test_examples": 100},
    "model": {"name": "logistic"},
    "train": {"steps": 4, "batch_size": 200, "eval_every": 2},
    "optimizer": {"name": "sgd"},
    "search": {"lr": [0.01, 0.5], "seed": 0},
    "variants": [{"name": "a"}],
}


def doc(**over) -> dict:
    raw = copy.deepcopy(BASE)
    raw.update(copy.deepcopy(over))
    return raw


def refused(raw: dict, quick: bool = False) -> str:
    with pytest.raises(ValueError, match=r"^<t>: \d+ problem\(s\): ") as info:
        parse_experiment(raw, "<t>", quick=quick)
    return str(info.value)


def run(raw: dict, logdir: Path) -> Path:
    runs.run(raw, logdir=logdir, quiet=True)
    return logdir / raw["name"]


def snapshot(root: Path, names=("experiment.json", "search.json", "range_test.json")) -> dict:
    return {name: (root / name).read_bytes() for name in names if (root / name).is_file()}


# ------------------------------------------------------------- F1: rates that share a folder
@pytest.mark.parametrize(
    ("where", "location"),
    [("search", "search.lr"), ("variant", "variants[0].search.lr"), ("quick", "quick.search.lr")],
)
def test_grid_rates_that_print_alike_are_refused_naming_both(where, location):
    """0.1 and 0.1000001 are distinct floats, but both name the folder lr0.1 (6 significant
    digits): they trained into one folder (a crash, or one run's number credited to both)."""
    grid = [0.1, 0.1000001]
    raw = doc()
    if where == "search":
        raw["search"]["lr"] = grid
    elif where == "variant":
        raw["variants"][0]["search"] = {"lr": grid}
    else:
        raw["quick"] = {"search": {"lr": grid}}
    message = refused(raw)
    assert f"{location}: rates 0.1 and 0.1000001 would share the search run folder lr0.1" in message
    assert "1 problem(s)" in message


def test_folder_names_of_todays_grids_are_kept(tmp_path):
    """No folder name changes for grids whose rates print apart (the bundled ones)."""
    experiment = parse_experiment(doc(search={"lr": [1.0, 3e-05, 0.1, 30.0]}), "<t>")
    rows = tuning.search_tasks(experiment, tmp_path)["a"]
    names = [Path(task.run_dir).parent.name for _, task in rows]
    assert names == ["lr1", "lr3e-05", "lr0.1", "lr30"]
    assert [task.variant.name for _, task in rows] == ["a.lr1", "a.lr3e-05", "a.lr0.1", "a.lr30"]


def test_the_choice_refuses_a_result_that_is_another_rates_run(tmp_path):
    """A search folder holding another candidate's result (as two runs racing into one folder
    left it) is an error, not a score for this rate."""
    root = run(doc(), tmp_path)
    experiment = parse_experiment(doc(), "<t>")
    low, high = (root / "_search" / "a" / name / "seed0" for name in ("lr0.01", "lr0.5"))
    shutil.copyfile(high / "result.json", low / "result.json")
    with pytest.raises(ValueError, match=r"lr0\.01/seed0: its result is not the search run of"):
        tuning.saved_choice(experiment, root)


# -------------------------------------------------------------------- F2: every rate diverges
def test_a_grid_whose_every_rate_diverges_fails_before_the_comparison(tmp_path):
    """At lr 1e38 the first update sends the logits to ~1e36 and the loss overflows: both runs
    diverge. Nothing may be chosen, and the comparison must not train."""
    raw = doc(search={"lr": [1e38, 3e38], "seed": 0})
    message = "every rate of the grid of variant 'a' \\(1e\\+38, 3e\\+38\\) diverged"
    with pytest.raises(ValueError, match=message) as info:
        run(raw, tmp_path)
    assert "give it rates below 1e+38" in str(info.value)
    root = tmp_path / "probe"
    assert not (root / "a").exists()
    assert not (root / "search.json").exists()
    assert not (root / "experiment.json").exists()
    results = sorted(p.parent.parent.name for p in root.glob("_search/a/*/seed0/result.json"))
    assert results == ["lr1e+38", "lr3e+38"]  # kept for the next command
    with pytest.raises(ValueError, match=message):  # refused again, before anything trains
        run(raw, tmp_path)


def test_a_partly_diverged_grid_chooses_the_finished_rate(tmp_path):
    root = run(doc(search={"lr": [0.1, 1e38], "seed": 0}), tmp_path)
    assert json.loads((root / "search.json").read_text())["chosen"] == {"a": 0.1}


# ------------------------------------------- F3: a changed grid or range test, records untouched
def test_a_changed_grid_is_refused_before_the_records_are_rewritten(tmp_path):
    """First a one-rate grid: a/seed0 trains at 0.01. Then [0.01, 0.5]: 0.5 < 1/L, so full-batch
    gradient descent at 0.5 lowers the convex loss far more in 4 updates than at 0.01 (each
    update's decrease is at least 0.5 (1 - 0.5 L / 2) |g|^2 against at most about 0.01 |g|^2).
    The search then chooses 0.5, and a/seed0 is a run of another configuration."""
    root = run(doc(search={"lr": [0.01], "seed": 0}), tmp_path)
    before = snapshot(root)
    with pytest.raises(ValueError, match=r"a/seed0 holds a run of another configuration"):
        run(doc(), tmp_path)
    search_runs = root / "_search" / "a"
    losses = {
        name: json.loads((search_runs / name / "seed0" / "result.json").read_text())["final"][
            "train_loss"
        ]
        for name in ("lr0.01", "lr0.5")
    }
    assert losses["lr0.5"] < losses["lr0.01"]  # (the premise: 0.5 was chosen)
    assert snapshot(root) == before
    assert json.loads((root / "search.json").read_text())["chosen"] == {"a": 0.01}


def test_a_grid_that_cannot_choose_the_existing_runs_rate_is_refused_before_it_trains(tmp_path):
    root = run(doc(search={"lr": [0.01], "seed": 0}), tmp_path)
    before = snapshot(root)
    with pytest.raises(ValueError, match=r"a/seed0 holds a run of another configuration") as info:
        run(doc(search={"lr": [0.5], "seed": 0}), tmp_path)
    assert not (root / "_search" / "a" / "lr0.5").exists()  # refused before it trained
    assert snapshot(root) == before
    assert "at none of the rates of its [search] grid" in str(info.value)


def test_a_changed_range_test_is_refused_before_its_record_is_rewritten(tmp_path):
    """The run's lr is 1/L at the start of the range test's model; another range-test seed
    initialises other weights, so 1/L (and the run's configuration) changes."""
    raw = doc(
        optimizer={"name": "sgd", "lr": "$safe_step"},
        range_test={"num_iter": 10, "seed": 0},
    )
    del raw["search"]
    root = run(raw, tmp_path)
    before = snapshot(root)
    figure = (root / "figures" / "range_test.png").read_bytes()
    raw["range_test"]["seed"] = 1
    with pytest.raises(ValueError, match=r"a/seed0 holds a run of another configuration"):
        run(raw, tmp_path)
    assert snapshot(root) == before
    assert (root / "figures" / "range_test.png").read_bytes() == figure


# ----------------------------------------------------------------- F4: the search's budget
def test_search_train_with_both_budgets_is_refused():
    raw = doc(search={"lr": [0.1], "train": {"epochs": 1, "steps": 5}})
    message = refused(raw)
    assert "search.train: give at most one of epochs, steps" in message
    assert "got epochs=1, steps=5" in message


def test_a_quick_search_budget_in_the_other_unit_is_refused_under_quick():
    """Merged key by key (as [quick] train over [train]), {steps = 5} and {epochs = 1} would set
    both, and steps would silently win."""
    raw = doc(
        search={"lr": [0.1], "train": {"steps": 5}}, quick={"search": {"train": {"epochs": 1}}}
    )
    message = refused(raw, quick=True)
    assert "quick.search.train: gives epochs while [search] train gives steps" in message
    parse_experiment(raw, "<t>")  # (without --quick the quick layer does not apply)
    raw["quick"]["search"]["train"] = {"steps": 2}
    assert parse_experiment(raw, "<t>", quick=True).search.train == {"steps": 2}
    raw["quick"]["search"]["train"] = {"epochs": 1, "steps": 2}
    assert "quick.search.train: give at most one of epochs, steps" in refused(raw)


def test_quick_train_over_train_in_the_other_unit_is_refused_too():
    raw = doc(quick={"train": {"epochs": 1}})
    assert "variants[0].train: give exactly one of epochs, steps" in refused(raw, quick=True)


# --------------------------------------------------------------------------------- F5: seeds
@pytest.mark.parametrize(
    ("over", "location"),
    [
        ({"seeds": [7, 7 + 2**32, 8]}, "seeds"),
        ({"quick": {"seeds": [2**32]}}, "quick.seeds"),
        ({"search": {"lr": [0.1], "seed": 2**32}}, "search.seed"),
        ({"range_test": {"seed": 2**32}}, "range_test.seed"),
    ],
)
def test_seeds_beyond_32_bits_are_refused_saying_why(over, location):
    """torch.manual_seed(7) and torch.manual_seed(7 + 2**32) draw the same weights."""
    message = refused(doc(**over))
    assert f"{location}: must be " in message
    assert "0..4294967295" in message
    assert "keeps only a seed's low 32 bits" in message
    seed = 7 + 2**32 if location == "seeds" else 2**32
    assert str(seed) in message


def test_the_largest_seed_is_accepted_everywhere():
    raw = doc(seeds=[0, 2**32 - 1], search={"lr": [0.1], "seed": 2**32 - 1})
    raw["range_test"] = {"seed": 2**32 - 1}
    experiment = parse_experiment(raw, "<t>")
    assert experiment.seeds == (0, 2**32 - 1)


def test_python_api_and_lr_find_use_the_same_seed_check(tmp_path, capsys):
    from runs.cli import main
    from runs.spec import Experiment, Search

    experiment = parse_experiment(doc(), "<t>")
    python = Experiment(
        name="probe", variants=experiment.variants, seeds=(2**32,), search=Search(lr=[0.1])
    )
    with pytest.raises(ValueError, match=r"seeds: must be .*0\.\.4294967295.*low 32 bits"):
        runs.run(python, logdir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    toml = tmp_path / "t.toml"
    toml.write_text(
        'name = "t"\n[dataset]\nname = "mnist1d"\ntrain_examples = 200\ntest_examples = 100\n'
        '[model]\nname = "logistic"\n[train]\nsteps = 4\nbatch_size = 50\n'
        '[optimizer]\nname = "sgd"\nlr = 0.1\n[[variants]]\nname = "a"\n'
    )
    assert main(["lr-find", str(toml), "--seed", str(2**32), "--num-iter", "5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--seed must be an integer in 0..4294967295 (torch's CPU generator" in err
    assert f"got --seed={2**32}" in err


# ------------------------------------------------------------------- F6: a best rate at an edge
def test_grid_edges_and_the_search_table_mark_a_best_rate_at_an_end():
    from runs.summary import search_table

    def row(lr, value):
        return {"lr": lr, "status": "finished", "value": value}

    search = {
        "metric": "train_loss",
        "grid": {
            "high": [row(0.001, 2.0), row(0.003, 1.5), row(0.01, 1.0)],
            "low": [row(0.001, 1.0), row(0.003, 1.5)],
            "inside": [row(0.001, 2.0), row(0.003, 1.0), row(0.01, 1.5)],
            "alone": [row(0.1, 1.0)],
        },
        "chosen": {"high": 0.01, "low": 0.001, "inside": 0.003, "alone": 0.1},
    }
    edges = tuning.grid_edges(search["grid"], search["chosen"])
    assert edges == {"high": "high", "low": "low", "inside": None, "alone": None}
    table = search_table(search)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()}
    assert "**1.0000** †" in rows["high"]
    assert "**1.0000** †" in rows["low"]
    assert "†" not in rows["inside"] + rows["alone"]
    assert "† high's best rate 0.01 is the largest of its grid" in table
    assert "† low's best rate 0.001 is the smallest of its grid" in table


def test_a_best_rate_at_the_end_of_the_grid_is_flagged_by_the_run(tmp_path, capsys):
    """0.5 beats 0.01 (see the changed-grid test) and is the grid's largest rate."""
    root = run(doc(), tmp_path)
    out = capsys.readouterr().out
    assert "warning: a's best rate 0.5 is the largest of its grid" in out
    search = json.loads((root / "search.json").read_text())
    assert search["chosen"] == {"a": 0.5}
    assert search["at_edge"] == {"a": "high"}
    assert "**" in (summary := (root / "summary.md").read_text())
    assert "† a's best rate 0.5 is the largest of its grid" in summary


# ----------------------------------------------------------------------------- F7: the tie rule
def test_the_tie_rule_is_documented_where_the_criterion_is():
    from runs.spec import Search, toml_reference

    metric_doc = next(
        f.metadata["doc"] for f in Search.__dataclass_fields__.values() if f.name == "metric"
    )
    assert "ties: the smaller rate" in metric_doc
    assert "ties go to the smaller rate" in tuning.__doc__
    docs = Path(__file__).parents[2] / "docs" / "experiment-toml.md"
    assert docs.read_text() == toml_reference()
    assert "ties: the smaller rate" in docs.read_text()


# ------------------------------------------------------------------- F8: [quick] search.lr wins
def test_a_quick_grid_replaces_a_variants_own_grid_under_quick():
    raw = doc(quick={"search": {"lr": [0.1]}}, search={"lr": [0.01], "seed": 0})
    raw["variants"] = [{"name": "a", "search": {"lr": [0.01, 0.1, 1.0]}}, {"name": "b"}]
    assert parse_experiment(raw, "<t>", quick=True).search.grids == {"a": [0.1], "b": [0.1]}
    assert parse_experiment(raw, "<t>").search.grids == {"a": [0.01, 0.1, 1.0], "b": [0.01]}


# -------------------------------------------------------------------------------- F9: small ones
def test_a_search_train_that_is_not_a_table_is_reported_once():
    message = refused(doc(search={"lr": [0.1], "train": 5}))
    assert "1 problem(s): search.train: must be a table, got 5" in message


def test_quick_search_train_keys_are_checked_where_written():
    raw = doc(quick={"search": {"train": {"epochz": 1}}})
    assert "quick.search.train.epochz: unknown key" in refused(raw)


def test_mean_std_leaves_out_and_counts_non_finite_values():
    """As the tables and curves do: the std of [1, nan] is not a silent 0 over both."""
    from runs.study import format_mean_std, mean_std

    stat = mean_std([1.0, math.nan])
    assert stat == {"mean": 1.0, "std": 0.0, "dropped": 1}
    assert format_mean_std(stat) == "1.000 (1 non-finite left out)"
    stat = mean_std([1.0, math.inf, 3.0])
    assert stat["mean"] == 2.0
    assert stat["std"] == pytest.approx(math.sqrt(2))
    assert stat["dropped"] == 1
    assert mean_std([math.nan]) == {"mean": None, "std": None, "dropped": 1}
    assert format_mean_std(mean_std([math.nan])) == "- (1 non-finite left out)"
    assert mean_std([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2))}


def test_the_results_table_docstring_names_a_module_that_exists():
    import importlib.util

    from runs.summary import markdown_table

    assert "runs.config" not in markdown_table.__doc__
    assert "runs.spec.Report" in markdown_table.__doc__
    assert importlib.util.find_spec("runs.config") is None
