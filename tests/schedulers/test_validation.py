"""Bad input raises at construction, naming the parameter and the value."""

import numpy as np
import pytest

import schedulers as S


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (lambda: S.exponential_decay(0.1, 0, 0.9), ValueError, ["decay_steps", "0"]),
        (lambda: S.exponential_decay(0.1, -5, 0.9), ValueError, ["decay_steps", "-5"]),
        (lambda: S.exponential_decay(0.1, 10, 1.5), ValueError, ["decay_rate", "1.5"]),
        (lambda: S.natural_exp_decay(0.1, 10, -0.5), ValueError, ["decay_rate", "-0.5"]),
        (lambda: S.inverse_time_decay(-0.1, 10, 0.5), ValueError, ["learning_rate", "-0.1"]),
        (lambda: S.cosine_decay(0.1, 2.5), ValueError, ["decay_steps", "2.5"]),
        (lambda: S.cosine_decay(0.1, True), TypeError, ["decay_steps", "True"]),
        (
            lambda: S.piecewise_constant([10, 5], [1.0, 0.5, 0.1]),
            ValueError,
            ["boundaries", "increasing"],
        ),
        (
            lambda: S.piecewise_constant([10, 10], [1.0, 0.5, 0.1]),
            ValueError,
            ["boundaries", "increasing"],
        ),
        (
            lambda: S.piecewise_constant([10, 20], [1.0, 0.5]),
            ValueError,
            ["values", "len(boundaries) + 1"],
        ),
        (lambda: S.piecewise_constant([10], [1.0, -0.5]), ValueError, ["values[1]", "-0.5"]),
        (lambda: S.polynomial_decay(0.1, 100, power=0.0), ValueError, ["power", "0.0"]),
        (lambda: S.power_decay(0.1, power=-1.0), ValueError, ["power", "-1.0"]),
        (lambda: S.step_lr(0.1, 10, gamma=-0.1), ValueError, ["gamma", "-0.1"]),
        (lambda: S.multistep(0.1, [30, -10]), ValueError, ["milestones[1]", "-10"]),
        (lambda: S.multistep(0.1, "30"), TypeError, ["milestones", "list of integers"]),
        (lambda: S.cyclic(0.1, 0.01), ValueError, ["max_lr", "0.01", "base_lr"]),
        (
            lambda: S.cyclic(0.01, 0.1, mode="sawtooth"),
            ValueError,
            ["mode", "sawtooth", "triangular2"],
        ),
        (lambda: S.cyclic(0.01, 0.1, window="gauss"), ValueError, ["window", "gauss", "welch"]),
        (lambda: S.cyclic_momentum(0.95, 0.8), ValueError, ["max_momentum", "base_momentum"]),
        (
            lambda: S.one_cycle(0.1, 100, anneal_strategy="exp"),
            ValueError,
            ["anneal_strategy", "exp"],
        ),
        (lambda: S.one_cycle(0.1, 100, pct_start=1.2), ValueError, ["pct_start", "1.2"]),
        (lambda: S.one_cycle(0.1, 3, pct_start=0.2), ValueError, ["pct_start", "total_steps"]),
        (lambda: S.cosine_decay_restarts(0.1, 10, t_mul=0.5), ValueError, ["t_mul", "0.5"]),
        (lambda: S.cosine_annealing_warm_restarts(0.1, 10, T_mult=0), ValueError, ["T_mult", "0"]),
        (
            lambda: S.linear_warmup(S.constant(0.1), 10, clock="later"),
            ValueError,
            ["clock", "later"],
        ),
        (lambda: S.linear_warmup(0.1, 10), TypeError, ["schedule", "0.1"]),
        (lambda: S.untuned_warmup(S.constant(0.1), beta2=1.0), ValueError, ["beta2", "1.0"]),
        (lambda: S.join([S.constant(1.0)], [10]), ValueError, ["len(boundaries) + 1"]),
        (lambda: S.clamp(S.constant(1.0), 0.5, 0.1), ValueError, ["ceiling", "0.1"]),
        (lambda: S.reduce_on_plateau(S.constant(1.0), factor=1.0), ValueError, ["factor", "1.0"]),
        (lambda: S.reduce_on_plateau(S.constant(1.0), mode="up"), ValueError, ["mode", "up"]),
        (
            lambda: S.reduce_on_plateau(S.constant(1.0), threshold_mode="pct"),
            ValueError,
            ["threshold_mode", "pct"],
        ),
        (lambda: S.reduce_on_plateau(S.constant(1.0), patience=-1), ValueError, ["patience", "-1"]),
        (lambda: S.noisy_linear_cosine_decay(0.1, 10, seed=-1), ValueError, ["seed", "-1"]),
    ],
)
def test_bad_arguments_name_parameter_and_value(build, error, words):
    with pytest.raises(error) as info:
        build()
    for word in words:
        assert word in str(info.value)


def test_from_dict_rejects_unknown_name_listing_valid_names():
    with pytest.raises(ValueError, match="cosine_decay_restarts") as info:
        S.from_dict({"name": "cosine_decy", "learning_rate": 0.1})
    assert "cosine_decy" in str(info.value)


def test_from_dict_rejects_unknown_and_missing_keys_listing_valid_keys():
    with pytest.raises(ValueError, match="decay_step") as info:
        S.from_dict({"name": "cosine_decay", "learning_rate": 0.1, "decay_step": 5})
    assert "decay_steps" in str(info.value)
    assert "alpha" in str(info.value)
    with pytest.raises(ValueError, match="missing") as info:
        S.from_dict({"name": "cosine_decay", "learning_rate": 0.1})
    assert "decay_steps" in str(info.value)
    with pytest.raises(ValueError, match="unknown key"):
        S.from_dict(
            {
                "name": "join",
                "boundaries": [5],
                "schedules": [
                    {"name": "constant", "value": 1.0},
                    {"name": "constant", "valu": 1.0},
                ],
            }
        )
    with pytest.raises(TypeError):
        S.from_dict(["cosine_decay"])


def test_from_dict_reads_the_runner_toml_form():
    s = S.from_dict({"name": "cosine_decay", "learning_rate": 0.3, "decay_steps": 20, "alpha": 0.0})
    assert s == S.cosine_decay(0.3, 20, 0.0)
    assert repr(s) == "cosine_decay(learning_rate=0.3, decay_steps=20, alpha=0.0, exponent=1.0)"


@pytest.mark.parametrize("t", [-1, np.array([0, -3]), float("nan"), float("inf")])
def test_negative_or_non_finite_steps_are_rejected(t):
    with pytest.raises(ValueError, match="t"):
        S.constant(1.0)(t)


def test_non_numeric_steps_are_rejected():
    with pytest.raises(TypeError):
        S.constant(1.0)("5")
    with pytest.raises(TypeError):
        S.constant(1.0)(True)
