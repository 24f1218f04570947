"""``[report] claims``: a reference's findings checked on runs (runs.claims), on hand-made
histories whose answers are worked out here from the definitions."""

from __future__ import annotations

import pytest

from runs.claims import check_claim, claim_problem, claims_table, roughness
from runs.load import parse_experiment
from tests.runs.test_config import _base


def _run(variant: str, test_loss: list[float], train_loss: list[float], status="finished"):
    steps = list(range(len(test_loss)))
    return {
        "variant": variant,
        "status": status,
        "history": {"eval": {"step": steps, "test_loss": test_loss, "train_loss": train_loss}},
    }


RUNS = {
    # rises after its best evaluation (1) while the training loss keeps falling: overfits
    "constant": [_run("constant", [0.5, 0.2, 0.3, 0.4], [0.6, 0.3, 0.2, 0.1])],
    # two seeds: mean test loss 0.4, 0.3, 0.25, 0.2; never moves up
    "decay": [
        _run("decay", [0.5, 0.3, 0.2, 0.1], [0.6, 0.4, 0.3, 0.2]),
        _run("decay", [0.3, 0.3, 0.3, 0.3], [0.4, 0.4, 0.4, 0.4]),
    ],
    # falls, with one upward move of 0.05
    "bumpy": [_run("bumpy", [0.5, 0.3, 0.35, 0.15], [0.5, 0.3, 0.35, 0.15])],
    "broken": [_run("broken", [0.5, float("nan")], [0.5, float("nan")], status="diverged")],
}


def test_lower_compares_the_final_means_over_seeds():
    holds, numbers = check_claim(
        {"text": "", "lower": "decay", "than": "constant", "metric": "test_loss"}, RUNS
    )
    assert holds  # 0.2 (mean of 0.1 and 0.3) < 0.4
    assert "decay 0.2 vs constant 0.4" in numbers
    assert not check_claim(
        {"text": "", "lower": "constant", "than": "bumpy", "metric": "test_loss"}, RUNS
    )[0]
    assert check_claim(
        {"text": "", "higher": "constant", "than": "bumpy", "metric": "test_loss"}, RUNS
    )[0]


def test_rises_needs_the_test_loss_up_and_the_training_loss_down():
    claim = {"text": "", "rises": "constant", "metric": "test_loss"}
    holds, numbers = check_claim(claim, RUNS)
    assert holds
    assert "best test loss 0.2 at evaluation 2 of 4, final 0.4" in numbers
    # bumpy ends at its best: no rise
    assert not check_claim({**claim, "rises": "bumpy"}, RUNS)[0]


def test_smoothest_is_the_smallest_sum_of_upward_moves():
    assert roughness([0.5, 0.3, 0.35, 0.15], "test_loss") == pytest.approx(0.05)
    assert roughness([0.5, 0.6, 0.55, 0.9], "test_accuracy") == pytest.approx(0.05)  # downs
    holds, numbers = check_claim({"text": "", "smoothest": "decay", "metric": "test_loss"}, RUNS)
    assert holds  # decay 0, bumpy 0.05, constant 0.2
    assert numbers.index("decay") < numbers.index("bumpy") < numbers.index("constant")
    assert not check_claim({"text": "", "smoothest": "bumpy", "metric": "test_loss"}, RUNS)[0]


def test_a_variant_without_a_finished_run_does_not_hold():
    holds, numbers = check_claim(
        {"text": "", "lower": "broken", "than": "constant", "metric": "test_loss"}, RUNS
    )
    assert not holds
    assert "no finished run of broken" in numbers


def test_the_table_says_yes_or_no_with_the_numbers():
    results = [r for runs in RUNS.values() for r in runs]
    table = claims_table(results, [
        {"text": "decay wins", "lower": "decay", "than": "constant", "metric": "test_loss"},
        {"text": "bumpy is smoothest", "smoothest": "bumpy", "metric": "test_loss"},
    ])  # fmt: skip
    assert "| decay wins | yes | decay 0.2 vs constant 0.4 (test loss) |" in table
    assert "| bumpy is smoothest | **no** |" in table


@pytest.mark.parametrize(
    "claims",
    [
        [{"text": "x", "lower": "a", "metric": "test_loss"}],  # no "than"
        [{"text": "x", "lower": "a", "than": "a", "rises": "a", "metric": "test_loss"}],
        [{"text": "x", "rises": "a", "metric": "loss"}],
        [{"rises": "a", "metric": "test_loss"}],
        [],
    ],
)
def test_malformed_claims_are_refused(claims):
    assert claim_problem(claims) is not None
    with pytest.raises(ValueError, match=r"report\.claims: must be a list of"):
        parse_experiment(_base(report={"claims": claims}), "exp.toml")


def test_claims_name_existing_variants():
    claims = [{"text": "x", "lower": "a", "than": "nope", "metric": "test_loss"}]
    with pytest.raises(ValueError, match=r"report\.claims\[0\]: unknown variant 'nope'"):
        parse_experiment(_base(report={"claims": claims}), "exp.toml")


def test_valid_claims_are_kept_and_the_experiment_keeps_its_name():
    claims = [{"text": "x", "rises": "a", "metric": "test_loss"}]
    experiment = parse_experiment(_base(name="named", report={"claims": claims}), "exp.toml")
    assert experiment.name == "named"
    assert experiment.report.claims == claims
