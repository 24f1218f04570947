"""The ``>>>`` examples in the runner's docstrings run and print what they say (a guard: every
module of ``runs`` that has an example is found by walking the package, so a new one is covered)."""

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
from pathlib import Path

import pytest

import runs


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(runs.__path__, "runs."):
        if info.name.endswith("__main__"):
            continue
        spec = importlib.util.find_spec(info.name)
        if spec is not None and spec.origin and ">>> " in Path(spec.origin).read_text():
            names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_the_walk_finds_the_runner_examples():
    assert {"runs.spec", "runs.score_profiles", "runs.score_submissions"} <= set(MODULES)
    assert {"runs.api", "runs.data", "runs.models"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.usefixtures("clean_registries")  # (the examples register models and datasets)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# The spec's section classes: a docstring generated from their fields ("Fields:", one line per
# key: runs.spec._section_doc) stands for an example; Dataset keeps a written one, with neither.
TABLES = {"Model": "model", "Train": "train", "Logging": "logging", "Optimizer": "optimizer",
          "RangeTest": "range_test", "Search": "search", "Report": "report"}  # fmt: skip
WITHOUT_EXAMPLE = {"Dataset"}


def test_every_public_class_and_function_has_an_example():
    """A guard: each class or function of ``runs.__all__`` shows a ``>>>`` example, run by
    :func:`test_docstring_examples_run` (its module is one of ``MODULES``); a section class of
    the spec lists its fields instead. The exceptions are exact: one given an example leaves
    ``WITHOUT_EXAMPLE``."""
    without = set()
    for name in runs.__all__:
        obj = getattr(runs, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        doc = obj.__doc__ or ""
        if name in TABLES:
            assert doc.startswith(f"An experiment's ``[{TABLES[name]}]`` table"), name
            assert "\nFields:\n" in doc, name
        elif ">>>" in doc:
            assert obj.__module__ in MODULES, f"{name}: its module {obj.__module__} is not run"
        else:
            without.add(name)
    assert without == WITHOUT_EXAMPLE
