"""The experiment runner and the ``stepsize`` command line.

From Python (see ``runs.api``): ``runs.run(experiment, logdir=...)``, ``runs.register_model``,
``runs.register_dataset``, ``runs.dataset_from``, and the experiment spec's classes
(``runs.Experiment``, ``runs.Variant``, ``runs.Train``, ...; see ``runs.spec``). They are
imported on first use, so that the command line starts without loading torch.
"""

from __future__ import annotations

_API = (
    "run",
    "register_model",
    "register_dataset",
    "dataset_from",
    "DatasetSplits",
    # the typed experiment spec (runs.spec)
    "Experiment",
    "Variant",
    "Dataset",
    "Model",
    "Train",
    "Logging",
    "Optimizer",
    "RangeTest",
    "Search",
    "Report",
)
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from runs import api

        return getattr(api, name)
    raise AttributeError(f"module 'runs' has no attribute {name!r}")
