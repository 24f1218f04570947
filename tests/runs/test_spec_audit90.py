"""The typed experiment spec and its TOML / Python equivalence (audit 90 of the spec).

F1 flags take true or false only; F2 an Experiment that runs.load resolved trains what
``stepsize run`` trains for its file; F3 ``[report] claims`` of a wrong type is refused; F4 a
variant cannot be named as an entry of the experiment's folder; F5 spellings of one value give
one fingerprint (and the bundled experiments keep theirs); F6 ``Search(grids=...)`` from Python is
refused as TOML refuses it; F7 ``quick=True`` for a Python experiment is refused; F8 a problem is
listed once, and the generated reference gives MNIST-1D's size limit.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import tomllib
from pathlib import Path

import pytest
import torch

import runs
from runs import spec
from runs.catalog import bundled_experiments
from runs.cli import main
from runs.load import load_experiment, parse_experiment, resolve
from tests.runs.helpers import FASTEST, FASTEST_TABLES, SHORT_RANGE_TEST, refused

pytestmark = pytest.mark.usefixtures("mnist1d_cache")

BASE = tomllib.loads(FASTEST)


def _python(hyperparameters: dict | None = None, **search) -> runs.Experiment:
    """A one-variant experiment built in Python (``search``: its ``runs.Search`` arguments)."""
    return runs.Experiment(
        name="tiny",
        search=runs.Search(**search) if search else None,
        variants=(
            runs.Variant(
                name="a",
                dataset=runs.Dataset("mnist1d", train_examples=200, test_examples=100),
                model=runs.Model("logistic"),
                train=runs.Train(steps=4, batch_size=50),
                optimizer=runs.Optimizer("sgd", hyperparameters or {"lr": 0.1}),
            ),
        ),
    )


def _doc(**changes) -> dict:
    """FASTEST as a document with two variants, ``changes`` applied to its common tables."""
    raw = copy.deepcopy(BASE)
    raw["variants"] = [{"name": "a"}, {"name": "b", "optimizer": {"name": "adam", "lr": 0.01}}]
    for key, value in changes.items():
        raw[key] = value
    return raw


def _problems(raw: dict, **options) -> str:
    with pytest.raises(ValueError, match="problem") as caught:
        parse_experiment(raw, "<doc>", **options)
    return str(caught.value)


def _results(root: Path) -> dict[str, tuple]:
    out = {}
    for path in sorted(root.glob("*/seed*/result.json")):
        result = json.loads(path.read_text())
        out[str(path.relative_to(root))] = (result["fingerprint"], result["final"])
    return out


# --------------------------------------------------------------------------- F1: flags are bools
@pytest.mark.parametrize(
    ("optimizer", "key", "value"),
    [
        ("sgd", "maximize", "false"),
        ("sgd", "maximize", 0),
        ("sgd", "nesterov", 1),
        ("torch.sgd", "maximize", 1),
        ("adam", "amsgrad", "no"),
        ("adamw", "amsgrad", 1.0),
        ("torch.adam", "amsgrad", 1),
    ],
)
def test_an_optimizer_flag_takes_true_or_false_only(optimizer, key, value):
    raw = _doc(optimizer={"name": optimizer, "lr": 0.1, "momentum": 0.9, key: value})
    if optimizer.removeprefix("torch.") != "sgd":
        del raw["optimizer"]["momentum"]
    message = _problems(raw)
    assert f"optimizer.{key}: must be true or false, got {value!r}" in message


def test_a_string_flag_would_have_turned_the_flag_on():
    """Why "false" is refused: torch tests the flag for truth, so one step on w**2 from w = 1
    with lr 0.1 ascends to 1.2 (descent gives 0.8)."""
    w = torch.ones(1, requires_grad=True)
    optimizer = torch.optim.SGD([w], lr=0.1, maximize="false")
    (w**2).sum().backward()
    optimizer.step()
    assert w.item() == pytest.approx(1.2)
    assert parse_experiment(_doc(optimizer={"name": "sgd", "lr": 0.1, "maximize": False}), "<d>")


def test_a_python_optimizer_flag_is_refused_at_its_location():
    with pytest.raises(ValueError, match="problem") as caught:
        resolve(_python(hyperparameters={"lr": 0.1, "maximize": "false"}))
    assert "variants[0].optimizer.maximize: must be true or false, got 'false'" in str(caught.value)


# ------------------------------------------------------- F2: a resolved experiment, run again
REFERENCES = (
    FASTEST_TABLES.replace('name = "tiny"', 'name = "refs"')
    + SHORT_RANGE_TEST
    + """[[variants]]
name = "fixed"
schedules.lr = {name = "constant", value = "$clr_base_lr"}
[[variants]]
name = "peak"
optimizer = {name = "sgd", lr = "0.5 * $clr_max_lr"}
"""
)


def test_a_loaded_experiment_trains_at_the_rates_its_range_test_measures(tmp_path):
    """Before: the references held the validation stand-ins (1e-3 ...) in the loaded object,
    and runs.run trained every variant at them, whatever the range test measured."""
    path = tmp_path / "refs.toml"
    path.write_text(REFERENCES)
    assert main(["run", str(path), "--logdir", str(tmp_path / "cli"), "--quiet"]) == 0
    runs.run(load_experiment(str(path)), logdir=tmp_path / "api")
    cli, api = tmp_path / "cli" / "refs", tmp_path / "api" / "refs"

    measured = json.loads((cli / "range_test.json").read_text())["values"]
    assert measured["clr_base_lr"] is not None
    assert measured["clr_max_lr"] is not None
    assert json.loads((api / "range_test.json").read_text())["values"] == measured
    at_measured = load_experiment(str(path), derived=measured)
    assert at_measured.variants[0].schedules["lr"]["value"] == measured["clr_base_lr"]
    assert at_measured.variants[1].optimizer.hyperparameters["lr"] == pytest.approx(
        0.5 * measured["clr_max_lr"]
    )
    expected = {f"{v.name}/seed0/result.json": v.fingerprint(0) for v in at_measured.variants}
    stand_ins = load_experiment(str(path))
    assert all(
        v.fingerprint(0) != expected[f"{v.name}/seed0/result.json"] for v in stand_ins.variants
    )
    results = _results(api)
    assert {k: fingerprint for k, (fingerprint, _) in results.items()} == expected
    assert results == _results(cli)  # the same runs, the same final numbers, bit for bit


def test_the_folders_record_holds_the_rates_the_range_test_measured(tmp_path):
    """``experiment.json`` records the configuration as it trained: a schedule or optimizer value
    given as the range test's number holds that number (before: the validation stand-in, 1e-3,
    while the runs trained at the measured rate)."""
    path = tmp_path / "refs.toml"
    path.write_text(REFERENCES)
    assert main(["run", str(path), "--logdir", str(tmp_path), "--quiet"]) == 0
    measured = json.loads((tmp_path / "refs" / "range_test.json").read_text())["values"]
    recorded = json.loads((tmp_path / "refs" / "experiment.json").read_text())["variants"]
    assert recorded[0]["schedules"]["lr"]["value"] == measured["clr_base_lr"]
    assert recorded[1]["optimizer"]["lr"] == pytest.approx(0.5 * measured["clr_max_lr"])


def test_a_resolved_experiment_keeps_its_common_grid_quick_grid_and_fallback():
    raw = _doc(search={"lr": [0.1, 0.01]})
    resolved = parse_experiment(raw, "<doc>")
    assert resolve(resolved) == resolved  # before: "no learning-rate grid" for every variant
    raw["variants"][0]["search"] = {"lr": [0.3, 0.03]}
    raw["quick"] = {"search": {"lr": [0.5]}}
    quick = parse_experiment(raw, "<doc>", quick=True)
    assert quick.search.grids == {"a": [0.5], "b": [0.5]}
    assert resolve(quick, quick=True).search.grids == {"a": [0.5], "b": [0.5]}
    d2l = load_experiment("d2l-schedules")
    if not d2l.fallback_used:
        pytest.skip("Fashion-MNIST is on this machine: d2l-schedules uses no [fallback]")
    assert resolve(d2l).fallback_used
    assert resolve(d2l) == d2l


def test_a_resolved_experiment_is_refused_with_options_that_resolve_it_otherwise():
    raw = _doc(quick={"train": {"steps": 2}})
    quick = parse_experiment(raw, "<doc>", quick=True)
    with pytest.raises(ValueError, match="quick=False, data_dir=None: the experiment was"):
        resolve(quick)
    full = parse_experiment(raw, "<doc>")
    with pytest.raises(ValueError, match="quick=True, data_dir=None: the experiment was"):
        resolve(full, quick=True)
    assert resolve(full, seeds=3).seeds == (0, 1, 2)  # (seeds override any experiment's)


def test_a_changed_copy_of_an_experiment_with_references_is_refused(tmp_path):
    path = tmp_path / "refs.toml"
    path.write_text(REFERENCES)
    changed = dataclasses.replace(load_experiment(str(path)), seeds=(0, 1))
    with pytest.raises(ValueError, match=r"experiment: changed since .*\$NAME"):
        resolve(changed)
    with pytest.raises(ValueError, match="experiment: changed since"):
        runs.run(changed, logdir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()
    plain = parse_experiment(_doc(), "<doc>")
    two = dataclasses.replace(plain, seeds=(0, 5))  # no references: its values are trained
    assert resolve(two).seeds == (0, 5)
    assert resolve(two).variants == plain.variants


# ------------------------------------------------------------- F3: claims of a wrong type
@pytest.mark.parametrize("claims", ["3", "true", "1.5"])
def test_claims_that_are_not_a_list_are_refused_with_their_key(tmp_path, capsys, claims):
    """Before: TypeError: 'int' object is not iterable, naming neither the file nor the key."""
    message = _problems(_doc(report={"claims": tomllib.loads(f"x = {claims}")["x"]}))
    assert "report.claims: must be a list of {" in message
    path = tmp_path / "claims.toml"
    path.write_text(FASTEST + f"[report]\nclaims = {claims}\n")
    line = refused(capsys, "run", str(path), "--logdir", str(tmp_path / "logs"))
    assert str(path) in line
    assert "report.claims: must be a list of {" in line
    assert not (tmp_path / "logs").exists()


# ------------------------------------------------------- F4: the experiment folder's entries
ENTRIES = ["experiment.json", "summary.json", "summary.md", "figures"]


@pytest.mark.parametrize("name", [*ENTRIES, "range_test.json", "search.json", "Summary.JSON"])
def test_a_variant_named_as_an_entry_of_the_experiment_folder_is_refused(tmp_path, name):
    raw = _doc()
    raw["variants"][1]["name"] = name
    message = _problems(raw)
    assert "variants[1].name: must be a name of letters, digits and - _ . + other than the " in (
        message
    )
    assert f"got {name!r}" in message
    with pytest.raises(ValueError, match="experiment folder's own entries"):
        runs.run(raw, logdir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def test_the_listed_entries_are_those_a_run_writes(finished_tiny):
    """Every entry of a finished experiment folder (the tiny one; a range test's and a
    search's records are named by runs.tuning) is listed, but the variants' folders and the
    TensorBoard event files."""
    from runs import tuning
    from runs.checks import experiment_folder_entries

    entries = experiment_folder_entries()
    found = {p.name for p in finished_tiny.iterdir() if not p.name.startswith("events.out.")}
    assert found - {"a"} <= set(entries)
    assert {"experiment.json", "summary.json", "summary.md", "figures"} <= found
    assert {tuning.RANGE_TEST_FILE, tuning.SEARCH_FILE} <= set(entries)


# -------------------------------------------------------- F5: one configuration, one spelling
def _fingerprints(raw: dict) -> list[str]:
    return [v.fingerprint(0) for v in parse_experiment(raw, "<doc>").variants]


def test_the_fingerprint_hashes_the_configuration_as_spelt():
    """The documented rule (docs/experiment-toml.md): the tables are hashed as written, so that
    every folder written before keeps its fingerprint; an int for a float, or a key written at
    its default, is another configuration to a folder (refused, never mixed)."""
    one = _doc(optimizer={"name": "sgd", "lr": 1})
    assert _fingerprints(one) != _fingerprints(_doc(optimizer={"name": "sgd", "lr": 1.0}))
    momentum = _doc(optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.0})
    assert _fingerprints(momentum) != _fingerprints(_doc())
    assert _fingerprints(_doc()) == _fingerprints(_doc())


@pytest.mark.parametrize(
    ("schedule", "where", "value"),
    [
        ({"name": "cosine_decay", "learning_rate": 0.1, "decay_steps": 4.0}, "decay_steps", 4.0),
        ({"name": "multistep", "base_lr": 0.1, "milestones": [2, 3.0]}, "milestones[1]", 3.0),
        (
            {
                "name": "linear_warmup",
                "warmup_steps": 2.0,
                "schedule": {"name": "constant", "value": 0.1},
            },
            "warmup_steps",
            2.0,
        ),
    ],
)
def test_a_schedule_integer_written_as_a_float_is_refused_as_the_spec_integers_are(
    schedule, where, value
):
    """schedulers.check_int takes 4.0 as 4 (its Python API); an experiment's own integers
    (train.steps = 4.0) are refused, and now so are its schedules': one spelling of 4."""
    assert "train.steps: must be a positive integer, got 4.0" in _problems(
        _doc(train={"steps": 4.0, "batch_size": 50})
    )
    message = _problems(_doc(schedules={"lr": schedule}))
    assert f"schedules.lr.{where}: must be an integer" in message
    assert f"got {value!r}" in message


def test_a_folder_spelt_otherwise_is_refused_as_another_configuration(tmp_path):
    """A folder the CLI wrote with MNIST-1D's sizes left out, run again with them written out:
    refused before anything is trained (the rule above), its results untouched."""
    text = FASTEST.replace("train_examples = 200\n", "").replace("test_examples = 100\n", "")
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    assert main(["run", str(path), "--logdir", str(tmp_path), "--quiet"]) == 0
    before = _results(tmp_path / "tiny")
    raw = tomllib.loads(text)
    raw["dataset"].update(train_examples=4000, test_examples=1000)
    with pytest.raises(ValueError, match="another configuration"):
        runs.run(raw, logdir=tmp_path)
    assert _results(tmp_path / "tiny") == before


# Computed with the package at commit 5bd3859 (before this change): per bundled experiment and
# mode, a hash of every (variant, seed, fingerprint), and of the search's candidates (variant,
# rate, fingerprint); "measured" resolves the range-test references at MEASURED.
MEASURED = {
    "clr_base_lr": 0.0517,
    "clr_max_lr": 0.9123,
    "valley": 0.0211,
    "steepest": 0.0307,
    "min/10": 0.0123,
    "safe_step": 0.3141,
    "edge_step": 0.6282,
}
HEAD_FINGERPRINTS = {
    "clr|quick=0|data_dir=0|measured=0": "b45bf9672cb5878f",
    "clr|quick=0|data_dir=0|measured=1": "738e8f54c26e2996",
    "clr|quick=0|data_dir=1|measured=0": "b45bf9672cb5878f",
    "clr|quick=0|data_dir=1|measured=1": "738e8f54c26e2996",
    "clr|quick=1|data_dir=0|measured=0": "fc7194d847709494",
    "clr|quick=1|data_dir=0|measured=1": "fb6c128834ab2245",
    "clr|quick=1|data_dir=1|measured=0": "fc7194d847709494",
    "clr|quick=1|data_dir=1|measured=1": "fb6c128834ab2245",
    "d2l-schedules|quick=0|data_dir=0|measured=0": "0287123fdb41c0f8",
    "d2l-schedules|quick=0|data_dir=0|measured=1": "0287123fdb41c0f8",
    "d2l-schedules|quick=0|data_dir=1|measured=0": "52c1d68c01323a1b",
    "d2l-schedules|quick=0|data_dir=1|measured=1": "52c1d68c01323a1b",
    "d2l-schedules|quick=1|data_dir=0|measured=0": "e0ef41d37426484e",
    "d2l-schedules|quick=1|data_dir=0|measured=1": "e0ef41d37426484e",
    "d2l-schedules|quick=1|data_dir=1|measured=0": "beb160c6c581774b",
    "d2l-schedules|quick=1|data_dir=1|measured=1": "beb160c6c581774b",
    "lr-sensitivity|quick=0|data_dir=0|measured=0": "4c524ecaa1440489",
    "lr-sensitivity|quick=0|data_dir=0|measured=1": "75282b937e2a0afe",
    "lr-sensitivity|quick=0|data_dir=1|measured=0": "4c524ecaa1440489",
    "lr-sensitivity|quick=0|data_dir=1|measured=1": "75282b937e2a0afe",
    "lr-sensitivity|quick=1|data_dir=0|measured=0": "d86e9af92ea1d343",
    "lr-sensitivity|quick=1|data_dir=0|measured=1": "739b87faeddfaffc",
    "lr-sensitivity|quick=1|data_dir=1|measured=0": "d86e9af92ea1d343",
    "lr-sensitivity|quick=1|data_dir=1|measured=1": "739b87faeddfaffc",
    "mnist1d-baselines|quick=0|data_dir=0|measured=0": "2426475964cd3aef",
    "mnist1d-baselines|quick=0|data_dir=0|measured=1": "2426475964cd3aef",
    "mnist1d-baselines|quick=0|data_dir=1|measured=0": "2426475964cd3aef",
    "mnist1d-baselines|quick=0|data_dir=1|measured=1": "2426475964cd3aef",
    "mnist1d-baselines|quick=1|data_dir=0|measured=0": "da3a6315921cb34c",
    "mnist1d-baselines|quick=1|data_dir=0|measured=1": "da3a6315921cb34c",
    "mnist1d-baselines|quick=1|data_dir=1|measured=0": "da3a6315921cb34c",
    "mnist1d-baselines|quick=1|data_dir=1|measured=1": "da3a6315921cb34c",
    "optimizers|quick=0|data_dir=0|measured=0": "12fd4844398101b0",
    "optimizers|quick=0|data_dir=0|measured=1": "12fd4844398101b0",
    "optimizers|quick=0|data_dir=1|measured=0": "12fd4844398101b0",
    "optimizers|quick=0|data_dir=1|measured=1": "12fd4844398101b0",
    "optimizers|quick=1|data_dir=0|measured=0": "ec2f3cd41a4b42e3",
    "optimizers|quick=1|data_dir=0|measured=1": "ec2f3cd41a4b42e3",
    "optimizers|quick=1|data_dir=1|measured=0": "ec2f3cd41a4b42e3",
    "optimizers|quick=1|data_dir=1|measured=1": "ec2f3cd41a4b42e3",
    "warmup|quick=0|data_dir=0|measured=0": "8b98eeb47d6c0b0d",
    "warmup|quick=0|data_dir=0|measured=1": "8b98eeb47d6c0b0d",
    "warmup|quick=0|data_dir=1|measured=0": "8b98eeb47d6c0b0d",
    "warmup|quick=0|data_dir=1|measured=1": "8b98eeb47d6c0b0d",
    "warmup|quick=1|data_dir=0|measured=0": "c83986f4323551b7",
    "warmup|quick=1|data_dir=0|measured=1": "c83986f4323551b7",
    "warmup|quick=1|data_dir=1|measured=0": "c83986f4323551b7",
    "warmup|quick=1|data_dir=1|measured=1": "c83986f4323551b7",
}


def test_the_bundled_experiments_keep_their_fingerprints_measured_and_searched_too():
    out = {}
    for name, path in sorted(bundled_experiments().items()):
        if path.suffix != ".toml":
            continue
        for quick in (False, True):
            for data_dir in (None, "/nonexistent-stepsize-data"):
                for derived in (None, MEASURED):
                    e = load_experiment(name, quick=quick, data_dir=data_dir, derived=derived)
                    rows = [[v.name, s, v.fingerprint(s)] for v in e.variants for s in e.seeds]
                    for v in e.variants if e.search is not None else ():
                        for lr in e.search.grids.get(v.name) or ():
                            c = dataclasses.replace(v, optimizer=v.optimizer.with_values(lr=lr))
                            rows.append([v.name, lr, c.fingerprint(e.search.seed)])
                    key = (
                        f"{name}|quick={int(quick)}|data_dir={int(data_dir is not None)}"
                        f"|measured={int(derived is not None)}"
                    )
                    out[key] = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    assert out == HEAD_FINGERPRINTS


# ------------------------------------------------------------- F6, F7: Python's refusals


def test_search_grids_given_in_python_are_refused_as_toml_refuses_them(tmp_path):
    """Before: the grids were dropped and the run searched [0.1]."""
    assert "search.grids: unknown key" in _problems(_doc(search={"lr": [0.1], "grids": {}}))
    with pytest.raises(ValueError, match=r"search\.grids: resolved by runs\.load"):
        resolve(_python(lr=[0.1], grids={"a": [0.2]}))
    with pytest.raises(ValueError, match=r"search\.grids: resolved by runs\.load"):
        runs.run(_python(lr=[0.1], grids={"a": [0.2]}), logdir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()
    assert resolve(_python(lr=[0.1, 0.01])).search.grids == {"a": [0.1, 0.01]}


def test_quick_for_a_python_experiment_is_refused_before_anything_is_written(tmp_path):
    """Before: the full configuration trained into tiny-quick, recorded as quick = true."""
    with pytest.raises(ValueError, match=r"quick: a Python experiment .* has no \[quick\] layer"):
        resolve(_python(), quick=True)
    with pytest.raises(ValueError, match=r"no \[quick\] layer, so quick=True would train"):
        runs.run(_python(), logdir=tmp_path / "logs", quick=True)
    assert not (tmp_path / "logs").exists()
    resolved = resolve(_python())
    with pytest.raises(ValueError, match=r"no \[quick\] layer"):
        resolve(resolved, quick=True)  # (resolved from Python: still no [quick] layer)


# ----------------------------------------------------------------- F8: once, and documented
def test_a_problem_of_a_common_table_is_listed_once():
    message = _problems(_doc(dataset={**BASE["dataset"], "train_examples": 200.0}))
    assert message.startswith("<doc>: 1 problem(s): ")
    assert "dataset.train_examples: must be a positive integer, got 200.0" in message
    bad = _doc(optimizer={"name": "sgd", "lr": -1.0})
    bad["variants"][1] = {"name": "c"}
    message = _problems(bad)
    assert message.count("optimizer.lr: sgd rejects lr=-1.0") == 1


def test_the_reference_gives_mnist1d_sizes_their_maximum():
    from runs.mnist1d import MNIST1D_MAX_EXAMPLES

    rows = [
        line
        for line in spec.toml_reference().splitlines()
        if line.startswith(("| `train_examples` |", "| `test_examples` |"))
    ]
    assert len(rows) == 2
    assert all(f"at most {MNIST1D_MAX_EXAMPLES}" in row for row in rows)
    over = _doc()
    over["dataset"] = {"name": "mnist1d", "train_examples": MNIST1D_MAX_EXAMPLES + 10}
    assert f"train_examples must be at most {MNIST1D_MAX_EXAMPLES}" in _problems(over)
