"""pytest plugin: convex problems with known answers and the assertion helpers, as fixtures.

Installed with the package (the ``pytest11`` entry point ``stepsize``), so any test can test its
own optimizer in three lines::

    @pytest.mark.parametrize("quadratic", [10, 100], indirect=True)  # condition numbers
    def test_my_sgd(quadratic, assert_converges):
        assert_converges(quadratic, lambda params: MySGD(params, lr=1 / quadratic.L), steps=500)

Problem fixtures (``theory.testing``'s builders; float64, dimension 10):

* ``quadratic``: :func:`theory.testing.quadratic_problem`, a ``Quadratic``;
* ``least_squares``: :func:`theory.testing.least_squares_problem`, a ``LeastSquares``;
* ``logistic``: :func:`theory.testing.logistic_problem`, a ``LogisticRegression``.

Each has ``L / mu == kappa`` (default 10; ``least_squares`` to about ``kappa * dim * eps``, up
to :func:`theory.testing.least_squares_kappa_limit`, ``logistic`` up to
``theory.testing.LOGISTIC_KAPPA_LIMIT``; beyond, a ValueError) and is drawn from ``seed``
(default 0). Parametrise
it indirectly: a number is ``kappa``; a dict gives any of the builder's arguments
(``{"kappa": 1000, "seed": 3, "dim": 50}``). Helper fixtures: ``assert_converges``,
``assert_bound_holds``, ``assert_rate`` (the functions of :mod:`theory.testing`).

This module imports only pytest: torch, scipy and :mod:`theory` load when a fixture is first
used, so the plugin costs nothing at start-up for tests that do not use it. Disable it with
``-p no:stepsize``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import pytest

_BUILDERS = {
    "quadratic": "quadratic_problem",
    "least_squares": "least_squares_problem",
    "logistic": "logistic_problem",
}


def _problem(request: pytest.FixtureRequest, fixture: str) -> Any:
    """The fixture's problem, built with the (indirect) parameter: a number is ``kappa``, a
    mapping gives keyword arguments, no parameter gives the defaults."""
    from theory import testing

    build = getattr(testing, _BUILDERS[fixture])
    param = getattr(request, "param", None)
    if param is None:
        return build()
    if isinstance(param, numbers.Real) and not isinstance(param, bool):
        return build(kappa=param)
    if isinstance(param, Mapping):
        try:
            return build(**param)
        except TypeError as err:
            raise TypeError(f"{fixture} parameter {dict(param)!r}: {err}") from None
    raise TypeError(
        f"{fixture} must be parametrised with a condition number (kappa) or a dict of "
        f"{build.__name__}'s arguments, got {fixture}={param!r}"
    )


@pytest.fixture
def quadratic(request: pytest.FixtureRequest):
    """A ``Quadratic`` with L / mu = kappa (default 10), seed 0, dimension 10."""
    return _problem(request, "quadratic")


@pytest.fixture
def least_squares(request: pytest.FixtureRequest):
    """A ``LeastSquares`` with L / mu = kappa (default 10), seed 0, dimension 10, 50 rows."""
    return _problem(request, "least_squares")


@pytest.fixture
def logistic(request: pytest.FixtureRequest):
    """A ``LogisticRegression`` with L / mu = kappa (default 10), seed 0, dimension 10, 100 rows."""
    return _problem(request, "logistic")


@pytest.fixture
def assert_converges() -> Callable[..., Any]:
    """:func:`theory.testing.assert_converges`."""
    from theory.testing import assert_converges

    return assert_converges


@pytest.fixture
def assert_bound_holds() -> Callable[..., Any]:
    """:func:`theory.testing.assert_bound_holds`."""
    from theory.testing import assert_bound_holds

    return assert_bound_holds


@pytest.fixture
def assert_rate() -> Callable[..., Any]:
    """:func:`theory.testing.assert_rate`."""
    from theory.testing import assert_rate

    return assert_rate
