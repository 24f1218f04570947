"""The code style's "docstrings with examples that run", for the public API of all four packages:
each class or function a package exports (its ``__all__``) shows a ``>>>`` example, and the
module defining it is one whose examples a doctest runner of the suite runs (the runners: one per
package, in the files named below)."""

from __future__ import annotations

import importlib
import inspect

import pytest

from tests.optim.test_examples import MODULES as OPTIM_MODULES
from tests.runs.test_doctests import MODULES as RUNS_MODULES
from tests.schedulers.test_doctests import MODULES as SCHEDULERS_MODULES
from tests.theory.test_schedule_bounds import DOCTEST_MODULES as THEORY_MODULES

RUN_BY = {  # package: the modules whose examples the suite runs
    "optim": OPTIM_MODULES,  # tests/optim/test_examples.py
    "schedulers": SCHEDULERS_MODULES,  # tests/schedulers/test_doctests.py
    "theory": [*THEORY_MODULES, "theory.testing"],  # test_schedule_bounds, test_pytest_plugin
    "runs": RUNS_MODULES,  # tests/runs/test_doctests.py
}
# runs.spec's section classes document their table instead: a docstring generated from their
# fields (runs.spec._section_doc, "Fields:" and one line per key); Dataset's is written by hand
SECTION_TABLES = {"Model": "model", "Train": "train", "Logging": "logging",
                  "Optimizer": "optimizer", "RangeTest": "range_test", "Search": "search",
                  "Report": "report"}  # fmt: skip


@pytest.mark.parametrize("package", sorted(RUN_BY))
def test_every_public_class_and_function_has_an_example_that_runs(package):
    module = importlib.import_module(package)
    without, not_run = [], []
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        doc = obj.__doc__ or ""
        if package == "runs" and name in SECTION_TABLES:
            assert doc.startswith(f"An experiment's ``[{SECTION_TABLES[name]}]`` table"), name
            assert "\nFields:\n" in doc, name
            continue
        if ">>>" not in doc:
            without.append(name)
        if obj.__module__ not in RUN_BY[package]:
            not_run.append(f"{name} ({obj.__module__})")
    assert without == [], f"without a >>> example: {without}"
    assert not_run == [], f"defined in a module whose examples no runner runs: {not_run}"
