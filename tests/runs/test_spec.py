"""The typed experiment spec (runs.spec): declared once, documented from the declaration, and the
two front ends (TOML layout, Python dataclasses) validated and resolved by the same code."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

import runs
from runs import spec
from runs.load import parse_experiment, resolve
from tests.runs.test_api import blobs, linear_factory

pytestmark = pytest.mark.usefixtures("clean_registries")

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "experiment-toml.md"
SECTIONS = (*spec.SECTIONS.values(), *spec.STAGES.values())


def test_the_toml_reference_is_generated_from_the_spec_and_up_to_date():
    text = spec.toml_reference()
    assert REFERENCE.read_text(encoding="utf-8") == text, "run: python -m runs.spec > " + str(
        REFERENCE.relative_to(REFERENCE.parents[1])
    )
    for cls in SECTIONS:
        for name, field in cls.known().items():
            assert f"`{name}`" in text
            assert field.metadata["doc"] in text


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.__name__)
def test_every_field_has_a_doc_a_check_and_a_default_it_accepts(cls):
    for name, field in cls.known().items():
        assert field.metadata.get("doc"), (cls.__name__, name)
        check = field.metadata.get("check")
        assert check is not None, (cls.__name__, name)
        assert check(object()) is not None  # the check refuses something
        if field.default not in (dataclasses.MISSING, None):
            assert check(field.default) is None, (cls.__name__, name, field.default)


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.__name__)
def test_help_on_a_section_names_its_table_and_every_key(cls):
    # help(runs.spec.Train) shows the table's keys and their meanings (not dataclass's bare
    # signature); Dataset keeps the docstring written for it
    table = {**spec.SECTIONS, **spec.STAGES}
    name = next(key for key, value in table.items() if value is cls)
    doc = cls.__doc__
    assert not doc.startswith(cls.__name__ + "(")
    if cls is spec.Dataset:
        assert "standardises" in doc
        return
    assert f"``[{name}]``" in doc
    for key, field in cls.known().items():
        assert f"``{key}``" in doc, key
        assert field.metadata["doc"] in doc, key


COSINE = {"name": "cosine_decay", "learning_rate": 0.1, "decay_steps": 6, "alpha": 0.0}
COSINE["exponent"] = 1.0


def _document() -> dict:
    """An experiment in the TOML layout: common tables, overrides per variant."""
    return {
        "name": "front-ends",
        "seeds": 2,
        "dataset": {"name": "spec-blobs", "normalize": False},
        "model": {"name": "spec-linear", "bias": False},
        "train": {"steps": 6, "batch_size": 25, "eval_every": 3},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "variants": [
            {"name": "plain"},
            {
                "name": "momentum",
                "optimizer": {"momentum": 0.9},
                "schedules": {"lr": COSINE},  # the full dict form Schedule.to_dict() gives
                "logging": {"flush_every": 2},
            },
        ],
    }


def _python() -> spec.Experiment:
    """The same experiment built in Python: every variant complete, a schedule as an object."""
    import schedulers

    common = {
        "dataset": spec.Dataset("spec-blobs", normalize=False),
        "model": spec.Model("spec-linear", {"bias": False}),
        "train": spec.Train(steps=6, batch_size=25, eval_every=3),
    }
    return spec.Experiment(
        name="front-ends",
        seeds=2,
        variants=(
            spec.Variant(name="plain", optimizer=spec.Optimizer("sgd", {"lr": 0.1}), **common),
            spec.Variant(
                name="momentum",
                optimizer=spec.Optimizer("sgd", {"lr": 0.1, "momentum": 0.9}),
                schedules={"lr": schedulers.cosine_decay(0.1, 6)},
                logging=spec.Logging(flush_every=2),
                **common,
            ),
        ),
    )


def _register():
    runs.register_model("spec-linear", linear_factory)
    runs.register_dataset("spec-blobs", runs.dataset_from(*blobs()))


def test_python_and_toml_front_ends_resolve_to_the_same_experiment():
    _register()
    from_toml = parse_experiment(_document(), "<doc>")
    from_python = resolve(_python())
    assert from_python.to_dict() | {"source": ""} == from_toml.to_dict() | {"source": ""}
    for a, b in zip(from_toml.variants, from_python.variants):
        assert a.fingerprint(0) == b.fingerprint(0)
        assert a == dataclasses.replace(b, schedules=a.schedules)  # schedules: dict vs object
    momentum = from_python.variants[1]
    assert momentum.train.steps == 6
    assert momentum.optimizer.hyperparameters == {"lr": 0.1, "momentum": 0.9}
    assert from_python.seeds == (0, 1)


def test_a_python_experiment_is_validated_with_locations_like_a_file():
    _register()
    good = _python()
    bad_variant = dataclasses.replace(
        good.variants[0],
        train=spec.Train(steps=6, epochs=2, batch_size=0),
        optimizer=spec.Optimizer("sgd", {"lr": -1.0, "momentun": 0.9}),
        model=spec.Model("spec-nope"),
    )
    bad = dataclasses.replace(good, variants=(bad_variant, good.variants[1]), seeds=0)
    with pytest.raises(ValueError, match="problem") as caught:
        resolve(bad)
    message = str(caught.value)
    for expected in (
        "variants[0].train.batch_size: must be a positive integer, got 0",
        "variants[0].train: give exactly one of epochs, steps",
        "variants[0].optimizer.momentun: unknown hyperparameter of sgd",
        "variants[0].model.name: unknown model 'spec-nope'",
        "seeds: must be a positive integer N",
    ):
        assert expected in message
    with pytest.raises(TypeError, match=r"variants must be tuple\[Variant, \.\.\.\]"):
        resolve(dataclasses.replace(good, variants=({"name": "a"},)))


def test_run_takes_a_python_experiment_and_gives_the_numbers_of_its_toml_layout(tmp_path):
    _register()
    from_python = runs.run(_python(), logdir=tmp_path / "python")
    from_toml = runs.run(_document(), logdir=tmp_path / "toml")
    assert [r["final"] for r in from_python["runs"]] == [r["final"] for r in from_toml["runs"]]
    assert [r["fingerprint"] for r in from_python["runs"]] == [
        r["fingerprint"] for r in from_toml["runs"]
    ]
    saved = json.loads((tmp_path / "python" / "front-ends" / "summary.json").read_text())
    assert saved == from_python


def test_unset_fields_are_left_out_of_the_table_form():
    train = spec.Train(batch_size=8, epochs=1)
    assert "steps" not in train.to_table()
    assert "eval_train_examples" not in train.to_table()
    assert spec.Model("m", {"width": 3}).to_table() == {"name": "m", "width": 3}
    assert spec.Model.from_table({"name": "m", "width": 3}) == spec.Model("m", {"width": 3})


def test_the_module_example_names_a_model_that_exists():
    """The example of the module's docstring names a model that exists (it named
    "mnist1d-mlp", which ``runs.run`` refused)."""
    from runs.models import model_names

    names = re.findall(r'Model\("([^"]+)"\)', spec.__doc__)
    assert names
    assert all(name in model_names() for name in names)
