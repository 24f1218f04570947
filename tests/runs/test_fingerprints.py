"""The bundled experiments keep their fingerprints, so existing run folders still resume.

The reference values were computed by the code before the public Python API (``runs.run``,
registries of models, datasets and optimizers) was added: one hash per experiment of every
``(variant, seed, Variant.fingerprint(seed))``, full and ``--quick``, with an explicit data
folder (no ``[fallback]``) and without one (``[fallback]`` where the file has it).

d2l-schedules was changed on purpose afterwards (issue 16: its MNIST-1D fallback generated at
Fashion-MNIST's 60,000 / 10,000 examples with a 1-D LeNet instead of the MNIST-1D CNN,
training metrics on the first 10,000 examples, and ``--quick`` 2 epochs instead of 3), so its
values are those of that change: its old run folders hold other numbers and must not resume.
Its Fashion-MNIST values (with a data folder) changed again when its ``[dataset]`` set
``normalize = false`` (pixels in [0, 1], as d2l feeds them); its fallback's did not.
warmup was changed on purpose too (audit 87): its ``linear`` variant is Goyal et al.'s gradual
warmup, from the low rate 0.01 (``start_factor = 0.1``) instead of from 0, so that it is no longer
the untuned linear warmup shifted by one update; its old ``linear`` folders must not resume.
Every other value is unchanged by the move from dict tables to the typed spec (``runs.spec``).
(``clr``'s fixed variant moved from ``"$valley"`` to ``"$clr_base_lr"``; both stand-ins are 1e-3
here, so its value did not change, while a real run's fingerprint holds the range test's numbers.)
"""

from __future__ import annotations

import hashlib
import json

import pytest

from runs.catalog import bundled_experiments
from runs.load import load_experiment

WITH_DATA_DIR = {
    "clr": "b45bf9672cb5878f",
    "clr-quick": "fc7194d847709494",
    "d2l-schedules": "52c1d68c01323a1b",
    "d2l-schedules-quick": "beb160c6c581774b",
    "lr-sensitivity": "4c524ecaa1440489",
    "lr-sensitivity-quick": "d86e9af92ea1d343",
    "mnist1d-baselines": "2426475964cd3aef",
    "mnist1d-baselines-quick": "da3a6315921cb34c",
    "optimizers": "223a1ba6733763b7",
    "optimizers-quick": "4ec69da1d7dad42d",
    "warmup": "8b98eeb47d6c0b0d",
    "warmup-quick": "c83986f4323551b7",
}
# Only d2l-schedules has a [fallback]; the others are the same with or without a data folder.
WITHOUT_DATA_DIR = {
    **WITH_DATA_DIR,
    "d2l-schedules": "0287123fdb41c0f8",
    "d2l-schedules-quick": "e0ef41d37426484e",
}


def _fingerprints(data_dir: str | None) -> dict[str, str]:
    out = {}
    for name, path in bundled_experiments().items():
        if path.suffix != ".toml":
            continue
        for quick in (False, True):
            experiment = load_experiment(name, quick=quick, data_dir=data_dir)
            rows = [
                [v.name, s, v.fingerprint(s)] for v in experiment.variants for s in experiment.seeds
            ]
            key = name + ("-quick" if quick else "")
            out[key] = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    return out


@pytest.mark.parametrize(
    ("data_dir", "expected"),
    [("/nonexistent-stepsize-data", WITH_DATA_DIR), (None, WITHOUT_DATA_DIR)],
    ids=["data-dir", "fallback"],
)
def test_bundled_experiments_keep_their_fingerprints(data_dir, expected):
    assert _fingerprints(data_dir) == expected
