"""Reduce-on-plateau: torch's decisions on scripted metric sequences, composition, differences."""

import math
import random
import warnings

import pytest
import torch

import schedulers as S

LR = 1.0


def _side_by_side(metrics, lr=LR, resume_at=None, **kwargs):
    """(torch lrs, our lrs) after each observation, plateau on a constant schedule; with
    ``resume_at``, ours continues from there in a new driver given the old one's state."""
    torch_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    our_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    torch_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_opt, **kwargs)
    driver = S.attach(our_opt, lr=S.reduce_on_plateau(S.constant(lr), **kwargs))
    theirs, ours = [], []
    for i, m in enumerate(metrics):
        if i == resume_at:
            state = driver.state_dict()
            driver = S.attach(our_opt, lr=S.reduce_on_plateau(S.constant(lr), **kwargs))
            driver.load_state_dict(state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch_sched.step(m)
        driver.step(m)
        theirs.append(torch_opt.param_groups[0]["lr"])
        ours.append(driver.get_last_lr()[0])
    return theirs, ours


def _scripted(n, seed, positive=True):
    """Improvement phases, plateaus and noise: every branch of the decision rule is taken."""
    rng = random.Random(seed)
    value, out = 10.0, []
    while len(out) < n:
        phase = rng.choice(["improve", "flat", "noisy", "worse"])
        for _ in range(rng.randint(1, 25)):
            if phase == "improve":
                value *= 0.97
            elif phase == "noisy":
                value *= 1 + rng.uniform(-0.02, 0.02)
            elif phase == "worse":
                value *= 1.01
            out.append(value if positive else -value)
    return out[:n]


CONFIGS = [
    {},
    {"mode": "min", "factor": 0.5, "patience": 3, "cooldown": 2},
    {"mode": "min", "factor": 0.5, "patience": 0, "threshold": 0.01, "threshold_mode": "abs"},
    {"mode": "max", "factor": 0.7, "patience": 2, "threshold": 1e-3},
    {
        "mode": "max",
        "factor": 0.3,
        "patience": 1,
        "threshold": 0.05,
        "threshold_mode": "abs",
        "cooldown": 4,
    },
    {"factor": 0.5, "patience": 1, "min_lr": 0.01},  # the floor is reached and held
    {"factor": 0.99, "patience": 0, "eps": 0.005},  # reductions smaller than eps are skipped
]


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_same_decisions_as_torch_on_10000_scripted_metrics(kwargs):
    metrics = _scripted(10_000, seed=len(str(kwargs)))
    theirs, ours = _side_by_side(metrics, **kwargs)
    assert theirs == ours
    assert min(theirs) < LR  # the sequence does trigger reductions


@pytest.mark.parametrize("resume", [False, True], ids=["straight", "resumed"])
@pytest.mark.parametrize("lr", [0.1, 3e-4])
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_the_rates_are_torchs_bit_for_bit(kwargs, lr, resume):
    """torch multiplies the current lr by ``factor`` at each reduction, ((lr f) f) f; ours wrote
    lr (f f f), which rounds differently (lr 0.1, factor 0.3: 0.0027 against torch's
    0.0026999999999999997), so the rates, and parameters trained with them, left torch's. Same
    decisions before (an lr of 1.0 hid it); now the same bits, across a resume too."""
    metrics = _scripted(2_000, seed=len(str(kwargs)))
    theirs, ours = _side_by_side(metrics, lr=lr, resume_at=1_000 if resume else None, **kwargs)
    assert theirs == ours
    if kwargs.get("min_lr", 0.0) < lr and kwargs.get("eps", 1e-8) < 0.01 * lr:  # (else none)
        assert min(theirs) < lr  # the sequence does trigger reductions


def test_hand_scripted_patience_and_cooldown():
    # patience 1, cooldown 2. Epoch 1 sets best; epochs 2, 3 are bad -> reduce after epoch 3;
    # epochs 4, 5 are cooldown (bad epochs ignored); 6, 7 bad -> reduce after epoch 7;
    # epoch 8 improves; 9 is cooldown; 10 is the first bad epoch again.
    metrics = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
    theirs, ours = _side_by_side(metrics, factor=0.5, patience=1, cooldown=2)
    assert ours == theirs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]


def test_rel_threshold_with_negative_metrics_is_fixed_deliberately():
    # torch: best * (1 - threshold) lies above a negative best, so a flat (or slightly worse)
    # negative metric counts as an improvement forever and the rate is never reduced
    metrics = [-1.0] * 5 + [-0.9999] * 5
    theirs, ours = _side_by_side(metrics, factor=0.5, patience=1, threshold=0.01)
    assert theirs == [1.0] * 10
    assert ours[:4] == [1.0, 1.0, 0.5, 0.5]
    assert ours[-1] < 0.5


def test_rel_threshold_with_negative_metrics_still_sees_real_improvements():
    p = S.reduce_on_plateau(S.constant(1.0), threshold=0.1)
    assert p.is_better(-1.2, best=-1.0)
    assert not p.is_better(-1.05, best=-1.0)
    p = S.reduce_on_plateau(S.constant(1.0), mode="max", threshold=0.1)
    assert p.is_better(-0.8, best=-1.0)
    assert not p.is_better(-0.95, best=-1.0)


def test_torch_parity_also_holds_on_negative_metrics_in_abs_mode():
    metrics = _scripted(3000, seed=3, positive=False)
    theirs, ours = _side_by_side(
        metrics, mode="max", factor=0.5, patience=2, threshold=0.01, threshold_mode="abs"
    )
    assert max(abs(a - b) for a, b in zip(theirs, ours)) <= 1e-12


def test_multiplier_on_top_of_a_cosine_schedule():
    base = S.cosine_decay(1.0, 100)
    plateau = S.reduce_on_plateau(base, factor=0.5, patience=0, min_lr=0.05)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    driver = S.attach(opt, lr=plateau)
    driver.step(1.0)  # first observation: best
    assert driver.get_last_lr() == [pytest.approx(base(1))]
    driver.step(1.0)  # bad -> halve
    assert driver.get_last_lr() == [pytest.approx(0.5 * base(2))]
    driver.step(2.0)  # bad -> quarter
    assert driver.get_last_lr() == [pytest.approx(0.25 * base(3))]
    # the floor applies to reductions only; near the end the base itself is below min_lr
    assert plateau(99) == pytest.approx(base(99))
    assert base(99) < 0.05
    assert plateau(50) == pytest.approx(max(0.25 * base(50), 0.05))
    assert math.isclose(plateau.state_dict()["multiplier"], 0.25)


def test_a_resume_after_more_than_2000_reductions_writes_torchs_rates():
    """Before: the state held the multiplier but not the count of reductions, which a load
    rebuilt by repeated multiplication up to 2000 only; past that the resumed driver wrote
    lr * multiplier where torch (and the uninterrupted run) write ((lr f) f) ..., differing in
    the last bits (0.012245028107108785 for torch's 0.012245028107108836)."""
    metrics = [1.0] * 2010  # factor 0.999, patience 0: a reduction at every step after the first
    theirs, ours = _side_by_side(metrics, lr=0.1, resume_at=2005, factor=0.999, patience=0)
    assert theirs == ours
    assert theirs[-1] < 0.1 * 0.999**2005  # (over 2000 reductions were made)


def test_to_dict_keeps_the_reduction_count_past_2000():
    """The count travels in ``to_dict()``'s state too: a rebuilt plateau gives the bits of the
    one it was written from (before: lr * multiplier after 2000 reductions)."""
    plateau = S.reduce_on_plateau(S.cosine_decay(0.1, 10_000), patience=0, factor=0.999)
    for t in range(2050):
        plateau.observe(1.0, t)
    rebuilt = S.from_dict(plateau.to_dict())
    steps = list(range(2050, 2060))
    assert [rebuilt(t) for t in steps] == [plateau(t) for t in steps]
    assert rebuilt == plateau
    assert plateau.state_dict()["reductions"] == 2049


def test_a_state_without_the_count_still_loads_as_before():
    """States saved before the count was kept: the count is found from the multiplier (up to
    2000 reductions), so the resume still writes torch's rates."""
    kwargs = {"factor": 0.3, "patience": 1}
    metrics = _scripted(300, seed=3)
    theirs, _ = _side_by_side(metrics, lr=0.1, **kwargs)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    driver = S.attach(optimizer, lr=S.reduce_on_plateau(S.constant(0.1), **kwargs))
    for m in metrics[:150]:
        driver.step(m)
    state = driver.state_dict()
    assert state["reactive"][0]["multiplier"] < 1.0
    old = {**state, "reactive": [dict(state["reactive"][0])]}
    old["reactive"][0].pop("reductions", None)
    resumed = S.attach(
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
        lr=S.reduce_on_plateau(S.constant(0.1), **kwargs),
    )
    resumed.load_state_dict(old)
    ours = []
    for m in metrics[150:]:
        resumed.step(m)
        ours.append(resumed.get_last_lr()[0])
    assert ours == theirs[150:]


def test_a_state_of_a_plateau_with_another_factor_loads_its_multiplier_as_it_is():
    """A state saved by a plateau with another ``factor`` (its count does not make its multiplier
    with this one's) loads as states did before the count was kept: the multiplier scales the
    schedule as it is. 9e0c3bc had refused it; a count that is no count is still refused."""
    saved = S.reduce_on_plateau(S.constant(0.1), factor=0.3, patience=0)
    saved.observe(1.0, 0)
    saved.observe(2.0, 1)  # (one reduction: multiplier 0.3, count 1)
    state = saved.state_dict()
    assert state["multiplier"] == 0.3
    assert state["reductions"] == 1
    plateau = S.reduce_on_plateau(S.constant(0.1), factor=0.5)
    plateau.load_state_dict(state)
    assert plateau.multiplier == 0.3
    assert float(plateau(5)) == 0.1 * 0.3
    with pytest.raises(ValueError, match=r"state\['reductions'\]"):
        plateau.load_state_dict({**state, "reductions": -1})
