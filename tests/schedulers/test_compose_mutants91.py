"""Tests that kill the composition mutants a mutation audit (91) found surviving; expected
values by hand (interval arithmetic)."""

import schedulers as S


def test_a_zero_factor_makes_a_product_of_an_unknown_range_exactly_zero():
    """C03. constant(0) times a function of unknown range (bounds (-inf, inf)) is 0 at every
    step: the enclosure is 0 * [-inf, inf] = {0} (0 * inf taken as 0, not nan)."""
    unknown = S.from_function("numpy:sqrt")
    assert unknown.bounds() == (float("-inf"), float("inf"))
    assert S.product([S.constant(0.0), unknown]).bounds() == (0.0, 0.0)
    assert S.product([unknown, S.constant(0.0)]).bounds() == (0.0, 0.0)


def test_a_plateau_inside_a_shift_observes_at_step_0_before_it_starts():
    """C06. Before a shift(3) starts its child is at step 0 (Shift: schedule(max(t - 3, 0))), so
    a plateau inside takes metrics there: patience 0, flat metric: 0.1, 0.05, 0.025."""
    import torch

    plateau = S.reduce_on_plateau(S.constant(0.1), patience=0, factor=0.5)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    driver = S.attach(opt, lr=plateau.shift(3))
    seen = []
    for _ in range(3):
        driver.step(1.0)
        seen.append(driver.get_last_lr()[0])
    assert seen == [0.1, 0.05, 0.025]


def test_a_plateau_in_the_first_join_piece_observes_on_the_global_clock():
    """C08. optax.join_schedules: the first piece runs from step 0 on the global clock (offset
    0), so a plateau there observes at t = 1, 2, 3: patience 0, flat metric: 0.1, 0.05, 0.025."""
    import torch

    plateau = S.reduce_on_plateau(S.constant(0.1), patience=0, factor=0.5)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    driver = S.attach(opt, lr=S.join([plateau, S.constant(0.01)], [5]))
    seen = []
    for _ in range(3):
        driver.step(1.0)
        seen.append(driver.get_last_lr()[0])
    assert seen == [0.1, 0.05, 0.025]


def test_a_zero_scale_of_an_unknown_range_is_exactly_zero():
    """C09. scale(f, 0) is 0 at every step: its enclosure is (0, 0), not (nan, nan)."""
    assert S.scale(S.from_function("numpy:sqrt"), 0.0).bounds() == (0.0, 0.0)
