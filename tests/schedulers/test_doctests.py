"""The ``>>>`` examples in the schedulers' docstrings run, with the package's names in scope."""

import doctest
import importlib
import pkgutil

import pytest

import schedulers

MODULES = [info.name for info in pkgutil.iter_modules(schedulers.__path__, "schedulers.")]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs = {**vars(schedulers), **vars(module)}
    for test in finder.find(module, name, globs=globs):
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed in {name}"


def test_every_new_schedule_has_an_example():
    for name in ["wsd", "inverse_sqrt", "rex", "cosine_cycles", "tanh_decay", "radam_warmup",
                 "noisy", "sum_of", "shift", "from_function", "cosine_decay"]:  # fmt: skip
        assert ">>>" in getattr(schedulers, name).__doc__, name
