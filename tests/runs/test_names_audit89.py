"""Names that become folders, TensorBoard runs or hyperparameter keys end where they seem to:
``re``'s ``$`` also matches before a final newline, so ``"a\\n"`` passed the name checks and
gave a TensorBoard run ``a\\n/seed0`` that reads as ``a/seed0`` (audit of stop 89)."""

from __future__ import annotations

import pytest
import torch

import runs
from runs.checks import check_registry_name, folder_name
from schedulers import attach, constant


@pytest.mark.parametrize("name", ["a\n", "adam\n", "seed0\n"])
def test_a_name_with_a_final_newline_is_not_a_folder_name(name):
    assert folder_name(name) is not None
    with pytest.raises(ValueError, match="name must be letters"):
        check_registry_name("register_model", name)


def test_a_variant_name_with_a_final_newline_is_refused_before_writing(tmp_path):
    spec = {
        "name": "names",
        "variants": [
            {
                "name": "a\n",
                "dataset": {"name": "mnist1d", "options": {"num_samples": 200}},
                "model": {"name": "logistic"},
                "train": {"steps": 2, "batch_size": 50},
                "optimizer": {"name": "sgd", "hyperparameters": {"lr": 0.1}},
            }
        ],
    }
    with pytest.raises(ValueError, match="a name of letters"):
        runs.run(spec, logdir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def test_a_driver_key_with_a_final_newline_is_refused():
    opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        attach(opt, {"lr\n": constant(0.1)})
    assert opt.param_groups[0]["lr"] == 0.1
