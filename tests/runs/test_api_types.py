"""The Python API refuses wrong types where they are given: each spec class (``runs.Variant``,
``runs.Experiment``, ``runs.Train``, ...) raises a ``TypeError`` naming the class, the field, the
value and the declared type when it is constructed, and ``runs.run`` does so for its arguments,
before anything is written; and a refusal raised through ``runs.run`` names its keyword
argument (``logdir``), never the command line's flag (``--logdir``)."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest
import torch

import runs
import schedulers
from runs import checkpoint as ckpt
from tests.runs.test_api import blobs, linear_factory

pytestmark = pytest.mark.usefixtures("clean_registries")

DATASET = runs.Dataset("types-blobs")
MODEL = runs.Model("types-linear")
TRAIN = runs.Train(steps=4, batch_size=25, eval_every=2)
OPTIMIZER = runs.Optimizer("sgd", {"lr": 0.1})


def _variant(**over) -> runs.Variant:
    fields = dict(name="v", dataset=DATASET, model=MODEL, train=TRAIN, optimizer=OPTIMIZER)
    return runs.Variant(**{**fields, **over})


def _experiment(**over) -> runs.Experiment:
    return runs.Experiment(**{"name": "types", "variants": (_variant(),), **over})


def _register() -> None:
    runs.register_model("types-linear", linear_factory)
    runs.register_dataset("types-blobs", runs.dataset_from(*blobs()))


def _refused_type(build, message: str) -> None:
    with pytest.raises(TypeError) as caught:
        build()
    assert message in str(caught.value), str(caught.value)


# (class, keyword arguments, the message's start): each wrong type a researcher may pass
SECTION_CASES = [
    (runs.Dataset, {"name": 5}, "Dataset: name must be str, got 5 (int)"),
    (runs.Dataset, {"name": torch.zeros(2)}, "Dataset: name must be str, got tensor("),
    (runs.Dataset, {"name": "d", "normalize": "yes"}, "Dataset: normalize must be bool"),
    (runs.Dataset, {"name": "d", "train_examples": 2.0}, "train_examples must be int | None"),
    (runs.Model, {"name": linear_factory}, "Model: name must be str, got <function"),
    (runs.Model, {"name": None}, "Model: name must be str, got None (NoneType)"),
    (runs.Model, {"name": "m", "options": ["hidden"]}, "Model: options must be dict[str, Any]"),
    (runs.Model, {"name": "m", "options": None}, "options must be dict[str, Any], got None"),
    (runs.Model, {"name": "m", "options": {1: 2}}, "options must be dict[str, Any], got {1: 2}"),
    (runs.Optimizer, {"name": torch.optim.SGD}, "Optimizer: name must be str, got <class"),
    (runs.Optimizer, {"name": None}, "Optimizer: name must be str, got None"),
    (runs.Optimizer, {"name": 5}, "Optimizer: name must be str, got 5 (int)"),
    (runs.Optimizer, {"name": "sgd", "hyperparameters": [("lr", 0.1)]}, "hyperparameters must"),
    (runs.Optimizer, {"name": "sgd", "hyperparameters": None}, "hyperparameters must be dict"),
    (runs.Optimizer, {"name": "sgd", "hyperparameters": 0.1}, "got 0.1 (float)"),
    (runs.Optimizer, {"name": "sgd", "hyperparameters": {1: 0.1}}, "hyperparameters must be"),
    (runs.Train, {"steps": 2.0, "batch_size": 5}, "Train: steps must be int | None, got 2.0"),
    (runs.Train, {"steps": True, "batch_size": 5}, "steps must be int | None, got True (bool)"),
    (runs.Train, {"steps": "2", "batch_size": 5}, "steps must be int | None, got '2' (str)"),
    (runs.Train, {"steps": 2, "batch_size": 5.0}, "Train: batch_size must be int, got 5.0"),
    (runs.Train, {"steps": 2, "batch_size": None}, "batch_size must be int, got None"),
    (runs.Train, {"steps": 2, "batch_size": 5, "shuffle": 1}, "shuffle must be bool, got 1"),
    (runs.Train, {"steps": 2, "batch_size": 5, "schedule_unit": None}, "schedule_unit must be"),
    (runs.Train, {"steps": 2, "batch_size": 5, "eval_every": 1.5}, "eval_every must be int | str"),
    (runs.Logging, {"flush_every": 1.5}, "Logging: flush_every must be int, got 1.5 (float)"),
    (runs.RangeTest, {"num_iter": 5.0}, "RangeTest: num_iter must be int, got 5.0"),
    (runs.RangeTest, {"start_lr": "a"}, "RangeTest: start_lr must be float, got 'a' (str)"),
    (runs.RangeTest, {"variant": 5}, "RangeTest: variant must be str | None, got 5"),
    (runs.Search, {"lr": 0.1}, "Search: lr must be list[float] | None (a list or a tuple), got"),
    (runs.Search, {"lr": "0.1"}, "Search: lr must be list[float] | None"),
    (runs.Search, {"lr": [0.1], "train": [1]}, "Search: train must be dict[str, Any], got [1]"),
    (runs.Search, {"lr": [0.1], "seed": 0.0}, "Search: seed must be int, got 0.0 (float)"),
    (runs.Report, {"panels": "a"}, "Report: panels must be list[str] | None"),
    (runs.Report, {"max_step": 1.5}, "Report: max_step must be int | None, got 1.5"),
    (runs.Report, {"claims": {"a": 1}}, "Report: claims must be list[dict] | None"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    SECTION_CASES,
    ids=[message for *_, message in SECTION_CASES],
)
def test_a_section_refuses_a_wrong_type_when_it_is_constructed(cls, kwargs, message):
    _refused_type(lambda: cls(**kwargs), message)


VARIANT_CASES = [
    ({"name": 5}, "Variant: name must be str, got 5 (int)"),
    ({"name": None}, "Variant: name must be str, got None (NoneType)"),
    ({"dataset": "types-blobs"}, "Variant: dataset must be Dataset, got 'types-blobs' (str)"),
    ({"dataset": {"name": "types-blobs"}}, "Variant: dataset must be Dataset, got {'name'"),
    ({"model": "types-linear"}, "Variant: model must be Model, got 'types-linear' (str)"),
    ({"model": linear_factory}, "Variant: model must be Model, got <function linear_factory"),
    ({"train": {"steps": 2, "batch_size": 5}}, "Variant: train must be Train, got {'steps'"),
    ({"optimizer": "sgd"}, "Variant: optimizer must be Optimizer, got 'sgd' (str)"),
    ({"optimizer": torch.optim.SGD}, "Variant: optimizer must be Optimizer, got <class"),
    ({"optimizer": None}, "Variant: optimizer must be Optimizer, got None"),
    ({"logging": {"flush_every": 5}}, "Variant: logging must be Logging, got {'flush_every'"),
    ({"logging": None}, "Variant: logging must be Logging, got None"),
    ({"schedules": ["cosine"]}, "Variant: schedules must be dict[str, Any], got ['cosine']"),
    ({"schedules": None}, "Variant: schedules must be dict[str, Any], got None"),
    ({"search": [0.1]}, "Variant: search must be dict[str, Any], got [0.1] (list)"),
    ({"search": None}, "Variant: search must be dict[str, Any], got None"),
]


@pytest.mark.parametrize(
    ("kwargs", "message"), VARIANT_CASES, ids=[message for _, message in VARIANT_CASES]
)
def test_a_variant_refuses_a_wrong_type_when_it_is_constructed(kwargs, message):
    _refused_type(lambda: _variant(**kwargs), message)


EXPERIMENT_CASES = [
    ({"name": 5}, "Experiment: name must be str, got 5 (int)"),
    ({"name": None}, "Experiment: name must be str, got None"),
    ({"variants": _variant()}, "Experiment: variants must be tuple[Variant, ...] (a list or a"),
    ({"variants": "v"}, "Experiment: variants must be tuple[Variant, ...]"),
    ({"variants": None}, "variants must be tuple[Variant, ...] (a list or a tuple), got None"),
    ({"variants": ({"name": "v"},)}, "variants must be tuple[Variant, ...] (a list or a tuple)"),
    (
        {"seeds": 2.0},
        "Experiment: seeds must be int | tuple[int, ...] (a list or a tuple), got 2.0",
    ),
    ({"seeds": True}, "Experiment: seeds must be int | tuple[int, ...]"),
    ({"seeds": "2"}, "Experiment: seeds must be int | tuple[int, ...]"),
    ({"seeds": None}, "Experiment: seeds must be int | tuple[int, ...]"),
    ({"seeds": range(2)}, "Experiment: seeds must be int | tuple[int, ...]"),
    ({"seeds": (0.5,)}, "Experiment: seeds must be int | tuple[int, ...]"),
    ({"description": 5}, "Experiment: description must be str, got 5"),
    ({"description": None}, "Experiment: description must be str, got None"),
    ({"range_test": {"num_iter": 5}}, "Experiment: range_test must be RangeTest | None, got {"),
    ({"search": {"lr": [0.1]}}, "Experiment: search must be Search | None, got {'lr'"),
    ({"report": None}, "Experiment: report must be Report, got None"),
    ({"report": {"figure": "test_loss"}}, "Experiment: report must be Report, got {"),
    ({"source": None}, "Experiment: source must be str, got None"),
    ({"fallback_used": "no"}, "Experiment: fallback_used must be bool, got 'no'"),
]


@pytest.mark.parametrize(
    ("kwargs", "message"), EXPERIMENT_CASES, ids=[message for _, message in EXPERIMENT_CASES]
)
def test_an_experiment_refuses_a_wrong_type_when_it_is_constructed(kwargs, message):
    _refused_type(lambda: _experiment(**kwargs), message)


def test_the_types_the_readme_documents_are_accepted_and_the_wrong_ones_refused():
    """Lists stand for tuples (TOML arrays), an int for a float, a Schedule object or its dict for
    a schedule, a "$name" reference for a hyperparameter: all kept; a float seed is refused."""
    _register()
    cosine = schedulers.cosine_decay(0.1, 4)
    variants = [
        _variant(name="a", schedules={"lr": cosine}),
        _variant(name="b", schedules={"lr": cosine.to_dict()}, search={"lr": (0.1, 1)}),
        _variant(name="c", optimizer=runs.Optimizer("sgd", {"lr": "0.5 * $safe_step"})),
    ]
    experiment = runs.Experiment(
        name="types", variants=variants, seeds=[0, 3], range_test=runs.RangeTest(end_lr=10),
        report=runs.Report(panels=("a",)),
    )  # fmt: skip
    assert [v.name for v in experiment.variants] == ["a", "b", "c"]
    assert runs.Train(epochs=1, batch_size=5, eval_every="epoch").eval_every == "epoch"
    _refused_type(lambda: dataclasses.replace(experiment, seeds=[0, 1.0]), "seeds must be")
    _refused_type(
        lambda: runs.Optimizer("sgd", {"lr": 0.1}.items()), "Optimizer: hyperparameters must be"
    )


def test_an_open_table_may_not_set_its_sections_own_field():
    """``Optimizer("sgd", {"name": "adam"})`` trained Adam: the table form let the key win."""
    with pytest.raises(ValueError, match="Optimizer: hyperparameters must not set 'name'"):
        runs.Optimizer("sgd", {"name": "adam", "lr": 0.1})
    with pytest.raises(ValueError, match="Model: options must not set 'name'"):
        runs.Model("types-linear", {"name": "mlp"})


def test_a_submission_refuses_a_hyperparameter_name_that_is_not_a_string():
    """``runs.score``'s ``Submission``: an int key raised AttributeError (no isidentifier)."""
    from runs.score_submissions import Submission

    with pytest.raises(ValueError, match=r"hyperparameters\.1: allowed names are identifiers"):
        Submission(name="a", optimizer={"name": "sgd", "lr": 0.1}, hyperparameters={1: 0.1})


def test_a_wrong_type_in_a_file_is_a_located_problem_not_a_crash():
    """The loader builds the spec classes only from tables of the declared types: a file with a
    string where a number goes lists every problem (it raised TypeError: '>=' not supported)."""
    from runs.load import parse_experiment

    _register()
    document = {
        "name": "types",
        "dataset": {"name": "types-blobs"},
        "model": {"name": "types-linear"},
        "train": {"steps": 4, "batch_size": "25"},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "range_test": {"start_lr": "tiny", "variant": "a"},
        "report": {"reach": "a"},
        "variants": [{"name": "a"}],
    }
    with pytest.raises(ValueError, match="problem") as caught:
        parse_experiment(document, "<doc>")
    message = str(caught.value)
    assert "2 problem(s)" in message, message
    assert "train.batch_size: must be a positive integer, got '25'" in message
    assert "range_test.start_lr: must be a positive finite number, got 'tiny'" in message


# ------------------------------------------------------------------------- runs.run's arguments
RUN_CASES = [
    ({"logdir": None}, "run: logdir must be str | os.PathLike, got None (NoneType)"),
    ({"logdir": 5}, "run: logdir must be str | os.PathLike, got 5 (int)"),
    ({"logdir": ["out"]}, "run: logdir must be str | os.PathLike, got ['out'] (list)"),
    ({"data_dir": 5}, "run: data_dir must be str | os.PathLike | None, got 5 (int)"),
    ({"jobs": 2.0}, "run: jobs must be int, got 2.0 (float)"),
    ({"threads": True}, "run: threads must be int, got True (bool)"),
    ({"quick": "yes"}, "run: quick must be bool, got 'yes' (str)"),
    ({"quiet": None}, "run: quiet must be bool, got None"),
    ({"seeds": 2.0}, "run: seeds must be int | None, got 2.0 (float)"),
    ({"seeds": [0, 1]}, "run: seeds must be int | None, got [0, 1] (list)"),
    ({"variants": 5}, "run: variants must be str | list[str] | None (a list or a tuple), got 5"),
    ({"variants": [5]}, "run: variants must be str | list[str] | None"),
    ({"device": 5}, "run: device must be str, got 5 (int)"),
    ({"device": None}, "run: device must be str, got None"),
    ({"backend": 5}, "run: backend must be str, got 5 (int)"),
    ({"address": 5}, "run: address must be str | None, got 5 (int)"),
    ({"models": [linear_factory]}, "run: models must be Mapping[str, Any] | None, got [<function"),
    ({"models": {1: linear_factory}}, "run: models must be Mapping[str, Any] | None, got {1:"),
    ({"datasets": ["types-blobs"]}, "run: datasets must be Mapping[str, DatasetSplits] | None"),
    ({"datasets": {"d": torch.zeros(2, 2)}}, "run: datasets must be Mapping[str, DatasetSplits]"),
    (
        {"experiment": 5},
        "run: experiment must be Experiment | Mapping[str, Any] | str | os.PathLike",
    ),
    ({"experiment": None}, "run: experiment must be Experiment | Mapping[str, Any] | str"),
    ({"experiment": ["types"]}, "run: experiment must be Experiment | Mapping[str, Any] | str"),
]


@pytest.mark.parametrize(
    ("kwargs", "message"), RUN_CASES, ids=[message for _, message in RUN_CASES]
)
def test_run_refuses_a_wrong_type_before_writing(tmp_path, monkeypatch, kwargs, message):
    _register()
    monkeypatch.chdir(tmp_path)  # where logdir=None wrote its folder "None"
    kwargs = {"experiment": _experiment(), "logdir": tmp_path / "out", **kwargs}
    _refused_type(lambda: runs.run(kwargs.pop("experiment"), **kwargs), message)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------ messages name keyword arguments, never flags
def _refused_value(tmp_path, expected: str, **kwargs) -> None:
    """``runs.run`` refuses with a ValueError holding ``expected``, naming no flag, and writes
    nothing next to the folders already there."""
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match=re.escape(expected)) as caught:
        runs.run(_experiment(), **{"logdir": tmp_path / "out", **kwargs})
    assert "--" not in str(caught.value), str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"jobs": 0}, "jobs must be a positive integer, got jobs=0"),
        ({"threads": -1}, "threads must be a positive integer, got threads=-1"),
        ({"seeds": 0}, "seeds must be a positive integer (the seeds 0..N-1), got 0"),
        ({"logdir": ""}, "logdir: an empty path ''; give a folder"),
        ({"variants": ","}, "variants: no variant named in ','; types has: v"),
        ({"variants": ["zz"]}, "variants: unknown variant(s) zz; types has: v"),
        ({"device": "tpu9"}, "device: unknown device 'tpu9'; use cpu, cuda or cuda:N"),
        ({"address": "host:1"}, "address needs backend='ray'"),
    ],
    ids=lambda c: c if isinstance(c, str) else "",
)
def test_run_names_its_keyword_argument_not_the_flag(tmp_path, kwargs, message):
    _register()
    _refused_value(tmp_path, message, **kwargs)


def test_run_names_logdir_for_a_file_in_the_way_or_a_held_lock(tmp_path, monkeypatch):
    _register()
    (tmp_path / "out").write_text("")
    _refused_value(tmp_path, f"logdir: {str(tmp_path / 'out')!r} is a file, not a folder")
    (tmp_path / "out").unlink()
    (tmp_path / "out" / "types" / "v").mkdir(parents=True)
    (tmp_path / "out" / "types" / "v" / "seed0").write_text("")
    _refused_value(
        tmp_path, f"logdir: {str(tmp_path / 'out' / 'types' / 'v' / 'seed0')!r} is a file"
    )
    (tmp_path / "out" / "types" / "v" / "seed0").unlink()
    monkeypatch.setattr(ckpt, "_try_lock", lambda fd: False)  # another process holds it
    with pytest.raises(ValueError, match=re.escape("choose another logdir")) as caught:
        runs.run(_experiment(), logdir=tmp_path / "out")
    assert "--" not in str(caught.value)


def test_run_names_logdir_for_a_folder_of_another_configuration(tmp_path):
    _register()
    runs.run(_experiment(), logdir=tmp_path)
    other = _experiment(variants=(_variant(optimizer=runs.Optimizer("sgd", {"lr": 0.2})),))
    with pytest.raises(ValueError, match="holds a run of another configuration") as caught:
        runs.run(other, logdir=tmp_path)
    assert str(caught.value).endswith("delete that folder or choose another logdir")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_run_names_device_for_a_missing_cuda(tmp_path):
    _register()
    _refused_value(tmp_path, "device cuda: CUDA is not available here", device="cuda")


def test_run_names_backend_for_a_missing_ray(tmp_path):
    _register()
    try:  # (ray is an optional extra)
        import ray  # noqa: F401
    except ImportError:
        _refused_value(
            tmp_path, "backend='ray' needs Ray: pip install 'stepsize[ray]'", backend="ray"
        )
    else:
        pytest.skip("ray is installed")
