"""The ``>>>`` examples in optim's docstrings run, and print what they say."""

import doctest
import importlib

import pytest

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
