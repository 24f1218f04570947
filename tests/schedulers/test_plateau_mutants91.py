"""Tests that kill the reduce-on-plateau mutants a mutation audit (91) found surviving. The
expected values are torch's ReduceLROnPlateau (the reference the module claims to match), run
side by side, plus hand-derived sequences."""

import torch

import schedulers as S


def _torch_and_ours(kwargs, metrics):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    plateau = S.reduce_on_plateau(S.constant(1.0), **kwargs)
    driver = S.attach(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), lr=plateau)
    theirs, ours = [], []
    for metric in metrics:
        ref.step(metric)
        theirs.append((opt.param_groups[0]["lr"], ref.num_bad_epochs, ref.cooldown_counter))
        driver.step(metric)
        state = plateau.state_dict()
        ours.append((driver.get_last_lr()[0], state["num_bad_epochs"], state["cooldown_counter"]))
    return theirs, ours


def test_abs_threshold_zero_an_equal_metric_is_no_improvement():
    """P03. torch (abs, min): better iff current < best - threshold; with threshold 0 a flat
    metric is a bad epoch every time: 1.0, 0.5, 0.25 with patience 0."""
    kwargs = dict(mode="min", factor=0.5, patience=0, threshold=0.0, threshold_mode="abs")
    theirs, ours = _torch_and_ours(kwargs, [1.0, 1.0, 1.0])
    assert ours == theirs
    assert [lr for lr, _, _ in ours] == [1.0, 0.5, 0.25]


def test_a_reduction_of_exactly_eps_is_skipped():
    """P07. torch: reduce only if old_lr - new_lr > eps. lr 1, factor 0.5, eps 0.5: the
    reduction would be exactly 0.5, so the lr stays 1.0."""
    kwargs = dict(mode="min", factor=0.5, patience=0, eps=0.5)
    theirs, ours = _torch_and_ours(kwargs, [1.0, 1.0, 1.0])
    assert ours == theirs
    assert [lr for lr, _, _ in ours] == [1.0, 1.0, 1.0]


def test_the_cooldown_starts_also_when_a_reduction_is_skipped_at_min_lr():
    """P08. torch sets cooldown_counter = cooldown after every patience overrun, also when
    _reduce_lr skips (min_lr reached). min_lr 0.5: the 2nd overrun is skipped and still starts
    a cooldown of 2 (counters 2, 1, 0 again)."""
    kwargs = dict(mode="min", factor=0.5, patience=0, cooldown=2, min_lr=0.5)
    theirs, ours = _torch_and_ours(kwargs, [1.0] * 7)
    assert ours == theirs
    assert [c for _, _, c in ours] == [0, 2, 1, 0, 2, 1, 0]


def test_the_default_threshold_is_torchs_1e_4():
    """P16. torch's default threshold is 1e-4 (rel): a metric falling by a relative 5e-4 per
    observation improves every time, so the lr is never reduced (patience 0)."""
    metrics = [(1 - 5e-4) ** i for i in range(6)]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    plateau = S.reduce_on_plateau(S.constant(1.0), patience=0, factor=0.5)
    assert plateau.threshold == ref.threshold == 1e-4
    driver = S.attach(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), lr=plateau)
    for metric in metrics:
        ref.step(metric)
        driver.step(metric)
        assert driver.get_last_lr() == [opt.param_groups[0]["lr"]] == [1.0]
