"""Experiment files: complete validation with locations, merging, and the bundled experiments."""

from __future__ import annotations

import pytest

from runs.catalog import bundled_experiments
from runs.load import load_experiment, parse_experiment
from tests.runs.helpers import TINY, write_toml


def _problems(err: pytest.ExceptionInfo) -> str:
    return str(err.value)


def _base(**extra) -> dict:
    raw = {
        "dataset": {"name": "mnist1d"},
        "model": {"name": "mlp"},
        "train": {"steps": 10, "batch_size": 32},
        "optimizer": {"name": "torch.sgd", "lr": 0.1},
        "variants": [{"name": "a"}],
    }
    raw.update(extra)
    return raw


@pytest.mark.parametrize("quick", [False, True])
def test_every_bundled_experiment_validates(quick):
    assert bundled_experiments(), "at least one experiment is bundled"
    for name, path in bundled_experiments().items():
        if path.suffix != ".toml":
            continue  # a study module (tests/runs/test_catalogue.py runs every experiment)
        experiment = load_experiment(name, quick=quick)
        assert experiment.variants
        assert experiment.seeds


def test_all_problems_are_reported_together_with_locations():
    raw = _base(
        colour="blue",
        train={"steps": 10, "batch_size": 0, "shufle": True},
        variants=[
            {"name": "a"},
            {"name": "b", "optimizer": {"name": "torch.adam", "betas": [1.5, 0.9]}},
            {"name": "c", "optimizer": {"name": "lion"}},
            {"name": "d", "schedules": {"lr": {"name": "cosine_decy", "learning_rate": 0.1}}},
            {"name": "e", "optimizer": {"momentun": 0.9}},
            {"name": "bad name"},
        ],
    )
    with pytest.raises(ValueError, match="problem") as err:
        parse_experiment(raw, "exp.toml")
    text = _problems(err)
    expected = [
        "colour: unknown key",
        "train.batch_size: must be a positive integer, got 0",
        "train.shufle: unknown key; allowed: loss, epochs, steps",
        "variants[1].optimizer.betas: torch.adam rejects betas=[1.5, 0.9]",
        "variants[2].optimizer.name: unknown optimizer 'lion'; allowed: sgd, adam",
        "variants[3].schedules.lr: unknown schedule name='cosine_decy'",
        "variants[4].optimizer.momentun: unknown hyperparameter of torch.sgd; allowed: lr, mom",
        "variants[5].name: must be a name of letters",
    ]
    for fragment in expected:
        assert fragment in text, fragment
    assert text.startswith("exp.toml: ")


def test_common_value_is_reported_where_it_was_written():
    raw = _base(optimizer={"name": "torch.sgd", "lr": -1.0})
    with pytest.raises(ValueError, match=r"optimizer\.lr: torch\.sgd rejects lr=-1\.0"):
        parse_experiment(raw, "exp.toml")


def test_schedule_key_the_optimizer_lacks_is_rejected():
    raw = _base(
        optimizer={"name": "torch.adam"}, schedules={"momentum": {"name": "constant", "value": 0.9}}
    )
    with pytest.raises(ValueError, match=r"variants\[0\]\.schedules: .*momentum"):
        parse_experiment(raw, "exp.toml")


def test_unknown_dataset_and_model_names_list_the_allowed_ones():
    raw = _base(dataset={"name": "imagenet"}, model={"name": "resnet"})
    with pytest.raises(ValueError, match="2 problem") as err:
        parse_experiment(raw, "exp.toml")
    # written in the common tables: located there (stop 91; before, at variants[0])
    assert ": dataset.name: unknown dataset 'imagenet'; allowed: mnist1d" in str(err.value)
    assert "; model.name: unknown model 'resnet'; allowed: logistic" in str(err.value)


def test_exactly_one_of_epochs_and_steps():
    raw = _base(train={"steps": 10, "epochs": 2, "batch_size": 4})
    with pytest.raises(ValueError, match=r"exp.toml: 1 problem\(s\): train: give exactly one of"):
        parse_experiment(raw, "exp.toml")  # (both written in the common [train]: located there)


@pytest.mark.parametrize(
    ("extra", "located"),
    [
        # a common table's value: once, where it was written, however many variants it reaches
        ({"model": {"name": "resnet"}}, ["model.name: unknown model 'resnet'"]),
        ({"dataset": {"name": "imagenet"}}, ["dataset.name: unknown dataset 'imagenet'"]),
        (
            {"train": {"steps": 3, "epochs": 1, "batch_size": 4}},
            ["train: give exactly one of epochs, steps"],
        ),
        # a variant's own value: at that variant
        (
            {"variants": [{"name": "a"}, {"name": "b", "model": {"name": "resnet"}}]},
            ["variants[1].model.name: unknown model 'resnet'"],
        ),
        (
            {"variants": [{"name": "a", "train": {"epochs": 1, "steps": 2}}, {"name": "b"}]},
            ["variants[0].train: give exactly one of epochs, steps"],
        ),
        # epochs in the common table, steps in a variant's: the combination is the variant's
        (
            {
                "train": {"epochs": 1, "batch_size": 4},
                "variants": [{"name": "a"}, {"name": "b", "train": {"steps": 2}}],
            },
            ["variants[1].train: give exactly one of epochs, steps"],
        ),
        # neither given: each variant lacks it
        (
            {"train": {"batch_size": 4}},
            [f"variants[{i}].train: give exactly one of epochs, steps" for i in (0, 1)],
        ),
    ],
)
def test_names_and_the_training_budget_are_located_where_they_were_written(extra, located):
    raw = _base(variants=[{"name": "a"}, {"name": "b"}])
    raw.update(extra)
    with pytest.raises(ValueError, match="problem") as err:
        parse_experiment(raw, "exp.toml")
    text = _problems(err)
    assert text.startswith(f"exp.toml: {len(located)} problem(s): "), text
    for want in located:  # (each at the start of a problem: after the count or a "; ")
        assert f"problem(s): {want}" in text or f"; {want}" in text, (want, text)


def test_merging_common_variant_and_quick_settings():
    raw = _base(
        optimizer={"name": "torch.sgd", "lr": 0.1, "momentum": 0.9},
        schedules={"lr": {"name": "constant", "value": 0.1}},
        quick={"seeds": 1, "train": {"steps": 3}},
        seeds=[4, 7],
        variants=[
            {"name": "same", "optimizer": {"lr": 0.5}, "train": {"steps": 50}},
            {"name": "other", "optimizer": {"name": "torch.adam", "lr": 0.01}},
            {
                "name": "sched",
                "schedules": {"momentum": {"name": "constant", "value": 0.5}},
            },
        ],
    )
    full = parse_experiment(raw, "exp.toml")
    same, other, sched = full.variants
    assert full.seeds == (4, 7)
    assert same.optimizer.to_table() == {"name": "torch.sgd", "lr": 0.5, "momentum": 0.9}
    assert other.optimizer.to_table() == {"name": "torch.adam", "lr": 0.01}  # another: replaced
    assert same.train.steps == 50
    assert other.train.steps == 10
    assert same.train.shuffle is True
    assert same.logging.flush_every == 50
    assert set(sched.schedules) == {"lr", "momentum"}  # merged per hyperparameter
    quick = parse_experiment(raw, "exp.toml", quick=True)
    assert quick.seeds == (0,)
    assert all(v.train.steps == 3 for v in quick.variants)  # quick wins over the variant
    assert parse_experiment(raw, "exp.toml", seeds=3).seeds == (0, 1, 2)


def test_fingerprint_ignores_logging_but_not_training_settings():
    raw = _base()
    a = parse_experiment(raw, "x").variants[0]
    b = parse_experiment(_base(logging={"flush_every": 3}), "x").variants[0]
    c = parse_experiment(_base(train={"steps": 11, "batch_size": 32}), "x").variants[0]
    assert a.fingerprint(0) == b.fingerprint(0)
    assert a.fingerprint(0) != c.fingerprint(0)
    assert a.fingerprint(0) != a.fingerprint(1)


def test_files_names_and_syntax(tmp_path):
    path = write_toml(tmp_path / "mine.toml", TINY)
    assert load_experiment(str(path)).name == "tiny"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_experiment(str(tmp_path / "missing.toml"))
    with pytest.raises(ValueError, match="unknown experiment 'nope'; bundled: "):
        load_experiment("nope")
    broken = write_toml(tmp_path / "broken.toml", "name = [")
    with pytest.raises(ValueError, match=r"broken\.toml: not valid TOML"):
        load_experiment(str(broken))


def test_our_optimizers_are_the_default_names():
    import optim
    from runs.build import optimizer_class

    assert optimizer_class("adam") is optim.Adam
    assert optimizer_class("torch.adam").__module__.startswith("torch.optim")


def test_report_panels_must_be_prefixes_of_variant_names():
    # (a panel named after no variant drew an empty panel)
    raw = _base(variants=[{"name": "sgd.a"}, {"name": "adam.b"}], report={"panels": ["sgd", "zz"]})
    with pytest.raises(ValueError, match="1 problem") as err:
        parse_experiment(raw, "x.toml")
    assert "report.panels: unknown panel 'zz'; allowed: the prefixes sgd, adam" in _problems(err)
    raw["report"] = {"panels": ["adam", "sgd"]}
    assert parse_experiment(raw, "x.toml").report.panels == ["adam", "sgd"]


def test_an_unused_fallback_is_validated_too():
    # (an unknown dataset or model in [fallback] passed while the fallback was not needed)
    raw = _base(fallback={"dataset": {"name": "nope"}, "model": {"name": "nope-net"}})
    with pytest.raises(ValueError, match="2 problem") as err:
        parse_experiment(raw, "x.toml")
    assert "fallback.model.name: unknown model 'nope-net'" in _problems(err)
    assert "fallback.dataset.name: unknown dataset 'nope'" in _problems(err)
    raw["fallback"] = {"dataset": {"name": "mnist1d", "train_examples": 500}}
    assert parse_experiment(raw, "x.toml").fallback_used is False
