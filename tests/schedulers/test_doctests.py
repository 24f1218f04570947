"""The ``>>>`` examples in the schedulers' docstrings run, with the package's names in scope."""

import doctest
import importlib
import inspect
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


def test_every_public_class_and_function_has_an_example():
    """A guard: each class or function of ``schedulers.__all__`` shows a ``>>>`` example, which
    :func:`test_docstring_examples_run` runs (its module is one of ``MODULES``)."""
    without = []
    for name in schedulers.__all__:
        obj = getattr(schedulers, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ in MODULES, f"{name}: its module {obj.__module__} is not walked"
            if ">>>" not in (obj.__doc__ or ""):
                without.append(name)
    assert without == []
