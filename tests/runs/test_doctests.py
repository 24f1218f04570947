"""The ``>>>`` examples in the runner's docstrings run and print what they say (a guard: every
module of ``runs`` that has an example is found by walking the package, so a new one is covered)."""

import doctest
import importlib
import importlib.util
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
