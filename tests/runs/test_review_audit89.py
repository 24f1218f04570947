"""Regressions the review of stop 89's changes found: the preflight's update ran on the CPU
for runs on another device (an optimizer that needs CUDA was refused for a CUDA run), and a
registered factory with unseeded randomness was refused as "another configuration"."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import torch

import runs
from runs.experiment import preflight
from runs.load import parse_experiment
from tests.runs.helpers import FASTEST


class CudaOnlySGD(torch.optim.SGD):
    """An optimizer whose update needs CUDA (as apex's FusedAdam): it raises on the CPU."""

    @torch.no_grad()
    def step(self, closure=None):
        if any(p.device.type != "cuda" for g in self.param_groups for p in g["params"]):
            raise RuntimeError("CudaOnlySGD: parameters must be on a CUDA device")
        return super().step(closure)


def _experiment():
    text = FASTEST.replace('name = "sgd"', f'name = "{__name__}:CudaOnlySGD"', 1)
    return parse_experiment(tomllib.loads(text), "x.toml")


def test_the_preflight_update_is_checked_only_for_runs_on_the_cpu(mnist1d_cache):
    experiment = _experiment()
    preflight(experiment, None, "cuda")  # (the runs' device: the update is theirs to make)
    preflight(experiment, None, "cuda:1")
    with pytest.raises(ValueError, match="CudaOnlySGD: parameters must be on a CUDA device"):
        preflight(experiment, None, "cpu")


def _unseeded(shape, k):
    """A linear model initialised from NumPy's OS-seeded generator (not torch's)."""
    model = torch.nn.Linear(shape[0], k)
    rng = np.random.default_rng()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(rng.standard_normal((k, shape[0]))).float() * 0.01)
    return model


@pytest.mark.usefixtures("clean_registries")
def test_an_unseeded_factory_is_refused_saying_so_not_as_another_configuration(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (60,), generator=g)
    x = torch.randn(60, 4, generator=g)
    runs.register_model("unseeded", _unseeded)
    runs.register_dataset("blobs89", train_x=x[:40], train_y=y[:40], test_x=x[40:], test_y=y[40:])
    spec = {
        "name": "unseeded",
        "seeds": 1,
        "dataset": {"name": "blobs89"},
        "model": {"name": "unseeded"},
        "train": {"steps": 2, "batch_size": 20, "eval_every": 2},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "variants": [{"name": "a"}],
    }
    runs.run(spec, logdir=tmp_path)
    with pytest.raises(ValueError, match="builds other initial weights at every call"):
        runs.run(spec, logdir=tmp_path)
