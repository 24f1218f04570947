"""Tests that kill mutants of the theory bounds the suite let survive (mutation audit, stop 90).

Every expected value is derived by hand from the formula the docstring states (and the paper it
cites), written out with fractions / math here, never read back from the code under test."""

import math

import numpy as np
import pytest

from theory import bounds


def test_heavy_ball_distance_matches_its_closed_form_exactly():
    # ||x_k - x*|| <= sqrt(2) q^{k-1} (k m + (k - 1) q) ||x0 - x*||, q = (sqrt(k)-1)/(sqrt(k)+1),
    # m = sqrt(1 + 4 q^2 + q^4). kappa = 4: q = 1/3, m = sqrt(1 + 4/9 + 1/81) = sqrt(118)/9.
    q = 1.0 / 3.0
    m = math.sqrt(118.0) / 9.0
    expected = [
        2.0,  # k = 0: dist0
        math.sqrt(2) * m * 2.0,  # k = 1: sqrt2 * (1 m + 0 q) * 2
        math.sqrt(2) * q * (2 * m + q) * 2.0,  # k = 2
        math.sqrt(2) * q**4 * (5 * m + 4 * q) * 2.0,  # k = 5
    ]
    got = bounds.heavy_ball_distance(np.array([0, 1, 2, 5]), 4.0, 1.0, 2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_nesterov_strongly_convex_bound_reports_the_rate_one_minus_sqrt_mu_over_l():
    # [N04] scheme III: per-step rate 1 - sqrt(mu / L); mu = 1, L = 4 gives exactly 1/2, and the
    # bound's values fall by that factor per step.
    from theory.problems import Quadratic

    problem = Quadratic.from_spectrum([1.0, 4.0], seed=0)
    bound = bounds.nesterov_strongly_convex_bound(problem)
    assert bound.rate == 0.5
    values = bound(np.arange(4))
    np.testing.assert_allclose(values[1:] / values[:-1], 0.5, rtol=1e-14)


def _harmonic(n):
    from fractions import Fraction

    return sum((Fraction(1, j) for j in range(1, n + 1)), Fraction(0))


@pytest.mark.parametrize(("T", "T0"), [(5, 2), (5, 3), (10, 4), (7, 6)])
def test_wsd_closed_form_bound_matches_the_transcribed_formula_exactly(T, T0):
    # [SHTSB25] / fabian-sp/lr-scheduling tests/test_theory.py theorem_bound, written out in exact
    # rationals here:  D G sqrt(4/(T+T0) [2/3 + (T+2T0)/(3(T+T0)) + H_{T+T0-2} - H_{T-T0+1}
    #   - (T-T0)(T0-1)/(3(T-T0+2)(T+T0)) + 1/(T-T0)^2 + H_{T-T0-1}/(T-T0+1)])
    from fractions import Fraction as F

    from theory.schedule_bounds import wsd_closed_form_bound

    H = _harmonic
    terms = (
        F(2, 3)
        + F(T + 2 * T0, 3 * (T + T0))
        + H(T + T0 - 2)
        - H(T - T0 + 1)
        - F((T - T0) * (T0 - 1), 3 * (T - T0 + 2) * (T + T0))
        + F(1, (T - T0) ** 2)
        + H(T - T0 - 1) / (T - T0 + 1)
    )
    expected = 2.0 * 3.0 * math.sqrt(float(4 * terms / (T + T0)))
    assert wsd_closed_form_bound(T, T0, 2.0, 3.0) == pytest.approx(expected, rel=1e-13)


def _quadratic(spectrum):
    from theory.problems import Quadratic

    problem = Quadratic.from_spectrum(spectrum, seed=0)
    dist0_sq = float(((problem.x0 - problem.x_star).double() ** 2).sum())
    return problem, dist0_sq


def test_polyak_bound_strongly_convex_rate_is_one_minus_mu_over_4l():
    # [P87] 5.3 / [HK19] Thm 1 as derived in the docstring: (1 - mu/(4L))^k ||x0 - x*||^2;
    # mu = 1, L = 4: rate 15/16
    from theory.lr_free_bounds import polyak_bound

    problem, d2 = _quadratic([1.0, 4.0])
    bound = polyak_bound(problem)
    assert bound.rate == 15 / 16
    np.testing.assert_allclose(
        bound(np.array([0, 1, 3])), [d2, d2 * 15 / 16, d2 * (15 / 16) ** 3], rtol=1e-14
    )


def test_polyak_bound_convex_is_4_l_squared_dist_sq_over_k():
    # convex (mu = 0): min_j ||g_j||^2 <= 4 L^2 ||x0 - x*||^2 / k; L = 4: 64 d^2 / k
    from theory.lr_free_bounds import polyak_bound

    problem, d2 = _quadratic([0.0, 4.0])
    bound = polyak_bound(problem)
    np.testing.assert_allclose(bound(np.array([1, 2, 8])), [64 * d2, 32 * d2, 8 * d2], rtol=1e-14)


def test_armijo_bound_uses_eta_min_of_2_beta_1_minus_c_over_l():
    # eta_min = min(eta_0, eta_max, 2 beta (1 - c) / L) = min(10, 10, 2 * 0.5 * 0.5 / 4) = 1/8;
    # bound d^2 / (2 k eta_min) = 4 d^2 / k (above searches_from * d = 1e-8 d)
    from theory.lr_free_bounds import armijo_bound

    problem, d2 = _quadratic([1.0, 4.0])
    bound = armijo_bound(problem, init_step_size=10.0, c=0.5, beta_b=0.5)
    np.testing.assert_allclose(bound(np.array([1, 2, 4])), [4 * d2, 2 * d2, d2], rtol=1e-14)


def test_sps_step_bound_floor_is_min_of_1_over_2cl_and_gamma_b():
    # [LVLL21] Lemma 1: gamma_k >= min(1 / (2 c L), gamma_b); c = 0.5, L = 4: min(1/4, 1) = 1/4,
    # and with gamma_b = 0.1 the cap wins; no claim at k = 0 (NaN)
    from theory.lr_free_bounds import sps_step_bound

    problem, _ = _quadratic([1.0, 4.0])
    values = sps_step_bound(problem, c=0.5, gamma_b=1.0)(np.array([0, 1, 5]))
    assert math.isnan(values[0])
    assert values[1:].tolist() == [0.25, 0.25]
    capped = sps_step_bound(problem, c=0.5, gamma_b=0.1)(np.array([1]))
    assert capped.tolist() == [0.1]
