"""The ``>>>`` examples in optim's docstrings run, and print what they say."""

import doctest
import importlib
import inspect

import pytest

import optim

MODULES = [
    "optim.sgd",
    "optim.adam",
    "optim.adagrad",
    "optim.rmsprop",
    "optim.adadelta",
    "optim.prodigy",
    "optim.dadapt",
    "optim.dog",
    "optim.schedulefree",
    "optim.polyak",
    "optim._ops",
    "optim._base",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0


def test_every_public_class_and_function_has_an_example():
    """A guard: each class or function of ``optim.__all__`` shows a ``>>>`` example (found by
    :func:`test_docstring_examples_run` through its module), without exception."""
    without = set()
    for name in optim.__all__:
        obj = getattr(optim, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ in MODULES, f"{name}: its module {obj.__module__} is not tested"
            if ">>>" not in (obj.__doc__ or ""):
                without.add(name)
    assert not without, f"without a >>> example: {sorted(without)}"
