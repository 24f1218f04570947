"""The runner from Python: ``runs.run`` on a user's model and data, the registries of models and
datasets, and optimizers by import path, with the errors each gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import runs
from runs import data as runs_data
from runs import models as runs_models
from runs.build import optimizer_class
from runs.data import DatasetSplits, dataset_from, load_dataset
from runs.load import parse_experiment

pytestmark = pytest.mark.usefixtures("clean_registries")


def linear_factory(input_shape, num_classes, *, bias=True):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes, bias=bias))


def blobs(n=120, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(3, dim, generator=g)[y] * 2 + torch.randn(n, dim, generator=g)
    return x[:100], y[:100], x[100:], y[100:]


def experiment(**over):
    spec = {
        "name": "api-test",
        "seeds": [0, 1],
        "dataset": {"name": "api-blobs"},
        "model": {"name": "api-linear"},
        "train": {"steps": 6, "batch_size": 25, "eval_every": 3},
        "logging": {"checkpoint_every": 3},
        "variants": [
            {"name": "nadam", "optimizer": {"name": "torch.optim.NAdam", "lr": 0.01}},
            {"name": "ours", "optimizer": {"name": "adam", "lr": 0.01, "betas": (0.9, 0.99)}},
        ],
    }
    spec.update(over)
    return spec


def register_both():
    runs.register_model("api-linear", linear_factory)
    runs.register_dataset("api-blobs", dataset_from(*blobs()))


# ------------------------------------------------------------------------------------- models
def test_register_model_builds_with_options_and_checks_them():
    runs.register_model("api-linear", linear_factory)
    runs.register_model("api-linear", linear_factory)  # the same factory again: a no-op
    model = runs_models.build_model("api-linear", (4,), 3, bias=False)
    assert model[1].bias is None
    with pytest.raises(ValueError, match=r"unknown option.*width.*valid options: bias"):
        runs_models.build_model("api-linear", (4,), 3, width=2)
    assert "api-linear" in runs_models.model_names()


def test_register_model_errors():
    runs.register_model("api-linear", linear_factory)
    with pytest.raises(ValueError, match=r"already registered.*replace=True"):
        runs.register_model("api-linear", lambda shape, classes: nn.Linear(1, 1))
    runs.register_model("api-linear", lambda shape, classes: nn.Linear(1, 1), replace=True)
    with pytest.raises(ValueError, match="bundled model"):
        runs.register_model("mlp", linear_factory)
    with pytest.raises(ValueError, match="name must be letters"):
        runs.register_model("bad name", linear_factory)
    with pytest.raises(TypeError, match=r"name must be a string.*got name=3 \(int\)"):
        runs.register_model(3, linear_factory)
    with pytest.raises(TypeError, match="must be callable"):
        runs.register_model("api-x", nn.Linear(2, 2).weight)
    with pytest.raises(TypeError, match=r"cannot be called as factory\(input_shape, num_classes\)"):
        runs.register_model("api-x", lambda: nn.Linear(1, 1))
    runs.register_model("api-not-module", lambda shape, classes: "model")
    with pytest.raises(ValueError, match=r"returned str, not a torch\.nn\.Module"):
        runs_models.build_model("api-not-module", (4,), 3)


# ------------------------------------------------------------------------------------ datasets
def test_dataset_from_numpy_tensors_and_torch_datasets_agree():
    x, y, tx, ty = blobs()
    from_tensors = dataset_from(x, y, tx, ty)
    from_numpy = dataset_from(x.numpy(), y.numpy().astype(np.int32), tx.numpy(), ty.numpy())
    train = torch.utils.data.TensorDataset(x, y)
    test = torch.utils.data.TensorDataset(tx, ty)
    from_datasets = dataset_from(train=train, test=test)
    for data in (from_tensors, from_numpy, from_datasets):
        assert (data.input_shape, data.num_classes) == ((4,), 3)
        assert (data.train_x.dtype, data.train_y.dtype) == (torch.float32, torch.int64)
        assert torch.equal(data.train_x, x)
        assert torch.equal(data.test_y, ty)


def test_registered_dataset_is_normalised_on_a_copy():
    x, y, tx, ty = blobs()
    registered = runs.register_dataset("api-blobs", train_x=x, train_y=y, test_x=tx, test_y=ty)
    loaded = load_dataset("api-blobs", normalize=True)
    assert torch.allclose(loaded.train_x.mean(), torch.tensor(0.0), atol=1e-5)
    assert torch.equal(registered.train_x, x)  # the registered tensors are untouched
    assert torch.equal(load_dataset("api-blobs", normalize=False).train_x, x)


def test_dataset_errors():
    x, y, tx, ty = blobs()
    with pytest.raises(TypeError, match="missing test_y"):
        dataset_from(x, y, tx)
    with pytest.raises(ValueError, match="integer class labels"):
        dataset_from(x, y.float(), tx, ty)
    with pytest.raises(ValueError, match="100 examples and train_y 99"):
        dataset_from(x, y[:99], tx, ty)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        dataset_from(x, y, tx, ty, num_classes=2)
    with pytest.raises(ValueError, match="bundled dataset"):
        runs.register_dataset("mnist1d", dataset_from(x, y, tx, ty))
    first = runs.register_dataset("api-blobs", dataset_from(x, y, tx, ty))
    assert runs.register_dataset("api-blobs", dataset_from(x, y, tx, ty)) is first  # equal splits
    with pytest.raises(ValueError, match="already registered"):
        runs.register_dataset("api-blobs", dataset_from(x, y, tx + 1, ty))
    with pytest.raises(TypeError, match="must be a DatasetSplits"):
        runs.register_dataset("api-other", (x, y, tx, ty))
    with pytest.raises(ValueError, match=r"name must be letters.*got name='a/b'"):
        runs.register_dataset("a/b", dataset_from(x, y, tx, ty))
    with pytest.raises(TypeError, match=r"name must be a string.*got name=None \(NoneType\)"):
        runs.register_dataset(None, dataset_from(x, y, tx, ty))


# ---------------------------------------------------------------------------------- optimizers
class NotAnOptimizer:
    pass


def test_optimizers_by_import_path():
    assert optimizer_class("torch.optim.NAdam") is torch.optim.NAdam
    assert optimizer_class("torch.optim:RAdam") is torch.optim.RAdam
    assert optimizer_class("torch.adam") is torch.optim.Adam  # the short names keep meaning
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg'"):
        optimizer_class("no_such_pkg.Opt")
    with pytest.raises(ValueError, match="has no attribute 'NAdm'"):
        optimizer_class("torch.optim.NAdm")
    with pytest.raises(ValueError, match=r"not a subclass of torch\.optim\.Optimizer"):
        optimizer_class(f"{__name__}:NotAnOptimizer")
    with pytest.raises(ValueError, match="unknown optimizer 'sgdd'; allowed: sgd"):
        optimizer_class("sgdd")


def test_experiment_validation_reports_every_problem_with_its_location():
    register_both()
    bad = experiment(
        model={"name": "api-nope"},
        variants=[
            {"name": "a", "optimizer": {"name": "torch.optim.NAdm", "lr": 0.1}},
            {"name": "b", "optimizer": {"name": "torch.optim.NAdam", "lr": 0.1, "foo": 1}},
            {"name": "c", "optimizer": {"name": "torch.optim.NAdam", "lr": -1.0}},
        ],
    )
    with pytest.raises(ValueError, match=r"4 problem\(s\)") as caught:
        parse_experiment(bad, "<experiment dict>")
    message = str(caught.value)
    assert "variants[0].optimizer.name: optimizer 'torch.optim.NAdm'" in message
    assert "variants[1].optimizer.foo: unknown hyperparameter" in message
    assert "variants[2].optimizer.lr: torch.optim.NAdam rejects lr=-1.0" in message
    # written once, in the common [model] table: reported there, once (not once per variant)
    assert "; model.name: unknown model 'api-nope'" in message
    with pytest.raises(ValueError, match="name: required"):
        parse_experiment({k: v for k, v in experiment().items() if k != "name"}, "<x>")


# ------------------------------------------------------------------------------------ runs.run
def test_run_writes_what_the_command_writes_and_returns_the_summary(tmp_path):
    register_both()
    summary = runs.run(experiment(), logdir=tmp_path)
    root = tmp_path / "api-test"
    assert summary == json.loads((root / "summary.json").read_text())
    for name in ("experiment.json", "summary.md", "nadam/seed0/result.json", "ours/seed1"):
        assert (root / name).exists(), name
    assert [row["variant"] for row in summary["variants"]] == ["nadam", "ours"]
    assert all(row["seeds"] == [0, 1] and row["finished"] == 2 for row in summary["variants"])
    again = runs.run(experiment(), logdir=tmp_path)  # finished runs are read back
    assert again["runs"] == summary["runs"]


def test_run_refuses_a_bad_experiment_before_writing(tmp_path):
    register_both()
    with pytest.raises(ValueError, match=r"train\.batch_size: must be a positive integer"):
        runs.run(experiment(train={"steps": 6, "batch_size": 0}), logdir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        runs.run(experiment(), logdir=tmp_path / "out", jobs=0)


def test_run_accepts_models_and_datasets_passed_directly(tmp_path):
    data = dataset_from(*blobs())
    spec = experiment(variants=[{"name": "sgd", "optimizer": {"name": "sgd", "lr": 0.1}}])
    summary = runs.run(
        spec, logdir=tmp_path, seeds=1, models={"api-linear": linear_factory},
        datasets={"api-blobs": data},
    )  # fmt: skip
    assert summary["variants"][0]["finished"] == 1
    assert isinstance(runs_data.registered_datasets()["api-blobs"], DatasetSplits)


def test_run_with_two_jobs_gives_the_numbers_of_one_job(tmp_path):
    """Spawned workers receive the registered model and dataset."""
    register_both()
    one = runs.run(experiment(), logdir=tmp_path / "one")
    two = runs.run(experiment(), logdir=tmp_path / "two", jobs=2)
    assert [r["final"] for r in one["runs"]] == [r["final"] for r in two["runs"]]


def test_other_data_under_the_same_name_is_refused_not_resumed(tmp_path):
    register_both()
    runs.run(experiment(seeds=1), logdir=tmp_path)
    x, y, tx, ty = blobs(seed=1)
    runs.register_dataset("api-blobs", dataset_from(x, y, tx, ty), replace=True)
    with pytest.raises(ValueError, match="holds a run of another configuration"):
        runs.run(experiment(seeds=1), logdir=tmp_path)


def test_a_toml_file_names_registered_models_and_import_paths(tmp_path):
    register_both()
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\n[dataset]\nname = "api-blobs"\n[model]\nname = "api-linear"\n'
        "[train]\nsteps = 2\nbatch_size = 50\n"
        '[[variants]]\nname = "radam"\noptimizer = {name = "torch.optim:RAdam", lr = 0.01}\n',
        encoding="utf-8",
    )
    summary = runs.run(path, logdir=tmp_path / "out")
    assert summary["runs"][0]["config"]["optimizer"]["name"] == "torch.optim:RAdam"


def test_a_factory_that_fails_is_reported_before_anything_is_written(tmp_path):
    def broken(input_shape, num_classes):
        raise RuntimeError("no GPU here")

    register_both()
    runs.register_model("api-broken", broken)
    with pytest.raises(ValueError, match="variant 'nadam', model: RuntimeError: no GPU here"):
        runs.run(experiment(model={"name": "api-broken"}), logdir=tmp_path / "out")
    assert not (tmp_path / "out" / "api-test").exists()


def test_an_unpicklable_factory_with_jobs_is_refused_before_writing(tmp_path):
    # (a PicklingError after experiment.json and the TensorBoard files were written)
    register_both()
    runs.register_model("api-lambda", lambda shape, k: nn.Linear(shape[0], k))
    with pytest.raises(TypeError, match=r"model 'api-lambda'.*cannot be pickled.*jobs=2"):
        runs.run(experiment(model={"name": "api-lambda"}), logdir=tmp_path / "out", jobs=2)
    assert not (tmp_path / "out").exists()
    runs.run(experiment(seeds=1), logdir=tmp_path / "out", jobs=2)  # (one not used is not sent)


def test_a_refused_run_registers_nothing(tmp_path):
    data = dataset_from(*blobs())
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        runs.run(
            experiment(), logdir=tmp_path, jobs=0, models={"api-linear": linear_factory},
            datasets={"api-blobs": data},
        )  # fmt: skip
    assert "api-linear" not in runs_models.registered_models()
    assert "api-blobs" not in runs_data.registered_datasets()
    with pytest.raises(ValueError, match=r"train\.batch_size"):
        runs.run(
            experiment(train={"steps": 6, "batch_size": 0}), logdir=tmp_path,
            models={"api-linear": linear_factory}, datasets={"api-blobs": data},
        )  # fmt: skip
    assert "api-linear" not in runs_models.registered_models()
    assert not list(tmp_path.iterdir())


def test_huge_jobs_threads_and_seeds_are_refused_before_writing(tmp_path):
    register_both()
    for options, message in (
        ({"jobs": 2**31}, "jobs must be at most 1024, got jobs=2147483648"),
        ({"threads": 2**31}, "threads must be at most 1024, got threads=2147483648"),
    ):
        with pytest.raises(ValueError, match=message):
            runs.run(experiment(), logdir=tmp_path / "out", **options)
    with pytest.raises(ValueError, match=r"seeds: must be .* seeds in 0\.\.4294967295"):
        runs.run(experiment(seeds=[0, 2**32]), logdir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
