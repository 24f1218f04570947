"""Tests killing SPS/SLS mutants that survived audit 91 (expected values by hand from Loizou et al.
2021 eq. (5) and Vaswani et al. 2019 Algorithms 1-2 / the authors' code's guard)."""

import math

import torch

import optim


def _param(value):
    return torch.nn.Parameter(torch.tensor([value], dtype=torch.float64))


def _step(opt, loss, set_to_none=True):
    """One ``opt.step(closure)``, the closure zeroing the gradients (in place when not
    ``set_to_none``) and back-propagating ``loss()``."""

    def closure():
        opt.zero_grad(set_to_none=set_to_none)
        value = loss()
        value.backward()
        return value

    opt.step(closure)


def test_sps_reads_c_from_the_first_param_group():
    """Documented: c, gamma_b, f_star, eps come from the first group. f = (a^2 + b^2)/2 at
    a = b = 1: f = 1, ||g||^2 = 2, so gamma = 1 / (0.5 * 2) = 1 (the second group's c = 2
    would give 0.25)."""
    a, b = _param(1.0), _param(1.0)
    opt = optim.SPS([{"params": [a], "c": 0.5}, {"params": [b], "c": 2.0}], gamma_b=10.0)
    _step(opt, lambda: 0.5 * (a**2 + b**2).sum())
    assert float(opt.param_groups[0]["step_size"]) == 1.0
    assert a.item() == 0.0
    assert b.item() == 0.0


def test_sls_first_trial_is_capped_at_eta_max():
    """The first trial is min(init_step_size, eta_max) = 1.5; f = x^2/2 at x = 1, c = 0.1:
    f(1 - 1.5) = 0.125 <= 0.5 - 0.1 * 1.5 = 0.35, so 1.5 is accepted (uncapped, 4 and 2 fail
    and 1.0 would be accepted)."""
    x = _param(1.0)
    opt = optim.SLS([x], init_step_size=4.0, eta_max=1.5, c=0.1, beta_b=0.5, reset_option=0)
    _step(opt, lambda: 0.5 * (x**2).sum())
    assert opt.param_groups[0]["step_size"] == 1.5
    assert x.item() == -0.5


def test_sls_searches_where_the_gradient_norm_is_above_1e_8():
    """The authors' guard compares ||g|| (not ||g||^2) with 1e-8: at ||g|| = 1e-6 the search
    runs; f = x^2/2 at x = 1e-6, the first trial eta = 1 gives f(0) = 0 <= f - 0.1 * 1e-12, so
    x -> 0."""
    x = _param(1e-6)
    opt = optim.SLS([x], init_step_size=1.0, eta_max=1.0, c=0.1, beta_b=0.5, reset_option=0)
    _step(opt, lambda: 0.5 * (x**2).sum())
    assert x.item() == 0.0
    assert opt.param_groups[0]["step_size"] == 1.0


def test_sls_trials_follow_the_gradient_at_x_k_when_grads_are_zeroed_in_place():
    """Algorithm 1's trials are x_k - eta grad f_i(x_k), even when the closure zeroes the
    gradients in place (zero_grad(set_to_none=False)) and the trials' backward passes write
    into the same tensors. f = x^4 at x = 1 (g = 4, c = 0.1, beta_b = 0.5): eta 1 -> x = -3,
    f = 81 > 0.6 fails; 0.5 -> x = -1, f = 1 > 0.2 fails; 0.25 -> x = 0, f = 0 <= 0.9 - ...
    = 0.9 passes: x_{k+1} = 0, step 0.25."""
    x = _param(1.0)
    opt = optim.SLS([x], init_step_size=1.0, eta_max=1.0, c=0.1, beta_b=0.5, reset_option=0)
    _step(opt, lambda: (x**4).sum(), set_to_none=False)
    assert opt.param_groups[0]["step_size"] == 0.25
    assert x.item() == 0.0
    assert math.isfinite(x.item())


def test_sps_step_is_clipped_at_zero_where_the_loss_is_below_f_star():
    """SPS_max's step is a nonnegative step size (eq. (5) with f_i* a lower bound of f_i); where
    a mini-batch loss falls below the given f_star the step is clipped to 0 (documented in
    sps_step_size): f = x^2/2 at x = 1 (f = 0.5, ||g||^2 = 1), f_star = 1, c = 0.5: the
    quotient (0.5 - 1) / 0.5 = -1 would move x AWAY from the minimiser to 2."""
    x = _param(1.0)
    opt = optim.SPS([x], c=0.5, gamma_b=10.0, f_star=1.0)
    _step(opt, lambda: 0.5 * (x**2).sum())
    assert float(opt.param_groups[0]["step_size"]) == 0.0
    assert x.item() == 1.0


def test_sls_accepts_a_trial_meeting_the_armijo_condition_with_equality():
    """Vaswani et al. 2019, Algorithm 1 backtracks *while* f(x - eta g) > f(x) - c eta ||g||^2,
    so equality is accepted. f = (w - 3)^2 at w = 1: f = 4, g = -4, ||g||^2 = 16, c = 0.5,
    beta_b = 0.5: eta = 1 gives w = 5, f = 4 > 4 - 8 (rejected); eta = 0.5 gives w = 3, f = 0 =
    4 - 0.5 * 0.5 * 16 (accepted; every number exact in binary floating point, one element so
    that ||g||^2 = |g|^2 is exact)."""
    w = _param(1.0)
    opt = optim.SLS([w], init_step_size=1.0, c=0.5, beta_b=0.5, reset_option=0)
    _step(opt, lambda: ((w - 3) ** 2).sum())
    assert opt.param_groups[0]["step_size"] == 0.5
    assert w.item() == 3.0


def test_sls_reset_step_is_capped_at_eta_max():
    """Reset option 1 grows the step by gamma^(1/n) and then caps it at eta_max (documented; the
    authors' first code capped growth). f = x^2/2, x = 1, init = eta_max = 1.5, gamma = 2,
    n_batches_per_epoch = 1, c = 0.1, beta_b = 0.9. Step 1: trial 1.5 passes (0.125 <= 0.35),
    x = -0.5. Step 2: 1.5 * 2 = 3 capped at 1.5, which passes (f(0.25) = 0.03125 <= 0.125 -
    0.1 * 1.5 * 0.25 = 0.0875): x = 0.25, step 1.5 (uncapped, 3 backtracks to 3 * 0.9^5)."""
    x = _param(1.0)
    opt = optim.SLS(
        [x],
        init_step_size=1.5,
        eta_max=1.5,
        gamma=2.0,
        n_batches_per_epoch=1,
        c=0.1,
        beta_b=0.9,
        reset_option=1,
    )
    _step(opt, lambda: 0.5 * (x**2).sum())
    assert x.item() == -0.5
    _step(opt, lambda: 0.5 * (x**2).sum())
    assert opt.param_groups[0]["step_size"] == 1.5
    assert x.item() == 0.25
