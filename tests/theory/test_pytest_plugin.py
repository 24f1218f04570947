"""The pytest plugin (``pytest_stepsize``, loaded through its ``pytest11`` entry point): problem
fixtures with the condition number asked for, the assertion helpers, and a light start-up."""

from __future__ import annotations

import doctest
import math
import subprocess
import sys
import types

import pytest
import torch

from theory import testing
from theory.problems import LeastSquares, LogisticRegression, Quadratic


def test_the_plugin_is_loaded_through_its_entry_point(request):
    plugin = request.config.pluginmanager.get_plugin("stepsize")
    assert plugin is not None
    assert plugin.__name__ == "pytest_stepsize"


def test_default_fixtures_have_kappa_10(quadratic, least_squares, logistic):
    assert isinstance(quadratic, Quadratic)
    assert isinstance(least_squares, LeastSquares)
    assert isinstance(logistic, LogisticRegression)
    for problem in (quadratic, least_squares, logistic):
        assert problem.dim == 10
        assert problem.kappa == pytest.approx(10.0, rel=1e-9)


@pytest.mark.parametrize("quadratic", [1.0, 1000.0], indirect=True)
@pytest.mark.parametrize("least_squares", [100.0], indirect=True)
@pytest.mark.parametrize("logistic", [2.0], indirect=True)
def test_a_number_is_the_condition_number(quadratic, least_squares, logistic):
    assert quadratic.kappa in (1.0, pytest.approx(1000.0, rel=1e-12))
    assert least_squares.kappa == pytest.approx(100.0, rel=1e-9)
    assert logistic.kappa == pytest.approx(2.0, rel=1e-9)
    # reference: the condition number of the Hessian's spectrum, computed independently
    eigenvalues = torch.linalg.eigvalsh(least_squares._X.T @ least_squares._X / least_squares.n)
    assert float(eigenvalues[-1] / eigenvalues[0]) == pytest.approx(100.0, rel=1e-9)


@pytest.mark.parametrize(
    "quadratic",
    [{"kappa": 50, "seed": 3, "dim": 4}, {"kappa": 50, "seed": 4, "dim": 4}],
    indirect=True,
)
def test_a_dict_gives_seed_and_dimension(quadratic):
    assert quadratic.dim == 4
    assert quadratic.kappa == pytest.approx(50.0, rel=1e-12)
    seed = 3 if torch.equal(quadratic.A, testing.quadratic_problem(50, seed=3, dim=4).A) else 4
    assert torch.equal(quadratic.x0, testing.quadratic_problem(50, seed=seed, dim=4).x0)


def test_seeds_give_different_problems_and_the_same_seed_the_same_one():
    a, b = testing.least_squares_problem(seed=0), testing.least_squares_problem(seed=1)
    assert not torch.equal(a._X, b._X)
    assert torch.equal(a._X, testing.least_squares_problem(seed=0)._X)
    assert math.isclose(a.kappa, b.kappa, rel_tol=1e-9)


@pytest.mark.parametrize("quadratic", [100.0], indirect=True)
def test_helpers_as_fixtures_certify_a_torch_optimizer(
    quadratic, logistic, assert_converges, assert_bound_holds, assert_rate
):
    from theory.bounds import gd_strongly_convex_bound

    assert assert_converges is testing.assert_converges
    assert_converges(logistic, lambda params: torch.optim.SGD(params, lr=1 / logistic.L), 100, 1e-3)
    lr = 1 / quadratic.L
    certificate = assert_bound_holds(
        quadratic,
        lambda params: torch.optim.SGD(params, lr=lr),
        100,
        gd_strongly_convex_bound(quadratic, lr),
    )
    assert_rate(certificate)
    with pytest.raises(AssertionError, match="not converged after 5 steps"):
        assert_converges(quadratic, lambda params: torch.optim.SGD(params, lr=lr), 5)


def test_a_bad_parameter_names_the_fixture_and_what_is_allowed():
    import pytest_stepsize

    def request(param):
        return types.SimpleNamespace(param=param)

    with pytest.raises(TypeError, match=r"quadratic must be parametrised with a condition number"):
        pytest_stepsize._problem(request("ten"), "quadratic")
    with pytest.raises(TypeError, match=r"least_squares parameter .*'rows'"):
        pytest_stepsize._problem(request({"kappa": 10, "rows": 5}), "least_squares")
    with pytest.raises(ValueError, match=r"kappa must be >= 1"):
        pytest_stepsize._problem(request(0.5), "quadratic")


def test_builders_check_their_arguments():
    with pytest.raises(ValueError, match=r"kappa must be >= 1 .*kappa=0.5"):
        testing.least_squares_problem(kappa=0.5)
    with pytest.raises(ValueError, match=r"kappa must be > 1 .*kappa=1.0"):
        testing.logistic_problem(kappa=1.0)
    with pytest.raises(ValueError, match=r"n must be an integer >= 10, got n=5"):
        testing.least_squares_problem(n=5)


def test_importing_the_plugin_loads_neither_torch_nor_theory():
    code = (
        "import sys, pytest_stepsize; "
        "heavy = [m for m in ('torch', 'scipy', 'numpy', 'theory') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_builders_docstring_examples_run():
    result = doctest.testmod(testing)
    assert result.attempted >= 3
    assert result.failed == 0
