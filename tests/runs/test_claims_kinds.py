"""``[report] claims`` beyond the first kinds (runs.claims): the pairwise ``smoother``, the gap
kinds ``smaller_gap`` and ``gap_widens``, ``better_early``; the rule for diverged runs (a claim
never holds on survivors alone); ties (decided by value, never by the variants' order); the
checks of a claim's keys; and d2l-schedules' claims, which state d2l 12.11's own findings.

Every verdict below is worked out by hand from the definitions in runs.claims' docstring, and
each kind is shown failing as well as holding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runs import claims
from runs.load import load_experiment, parse_experiment
from tests.runs.test_config import _base

NAN = float("nan")


def _run(variant, seed=0, status="finished", **curves):
    """A result with evaluations at steps 0, 1, 2, ... holding ``curves`` (metric -> values)."""
    length = len(next(iter(curves.values())))
    return {
        "variant": variant,
        "seed": seed,
        "status": status,
        "history": {"eval": {"step": list(range(length)), **curves}},
    }


def _acc(variant, test, train, seed=0, status="finished"):
    return _run(variant, seed, status, test_accuracy=test, train_accuracy=train)


def _by_variant(*runs):
    out = {}
    for r in runs:
        out.setdefault(r["variant"], []).append(r)
    return out


# ------------------------------------------------------------------------------- smoother
def test_smoother_compares_the_roughness_of_two_variants():
    # accuracy roughness = sum of the downward moves of the mean curve
    a = _acc("a", [0.1, 0.5, 0.45, 0.6], [0.1, 0.5, 0.5, 0.6])  # one drop of 0.05
    b = _acc("b", [0.1, 0.6, 0.4, 0.7], [0.1, 0.6, 0.6, 0.7])  # one drop of 0.2
    runs = _by_variant(a, b)
    assert claims.roughness([0.1, 0.5, 0.45, 0.6], "test_accuracy") == pytest.approx(0.05)
    claim = {"text": "", "smoother": "a", "than": "b", "metric": "test_accuracy"}
    holds, numbers = claims.check_claim(claim, runs)
    assert holds
    assert numbers == "roughness of the mean test accuracy curve: a 0.05 vs b 0.2"
    assert not claims.check_claim({**claim, "smoother": "b", "than": "a"}, runs)[0]


def test_smoother_on_equal_roughness_is_a_tie_not_a_finding():
    # both monotone: roughness 0 each
    runs = _by_variant(
        _acc("a", [0.1, 0.5, 0.6], [0.1, 0.5, 0.6]), _acc("b", [0.1, 0.3, 0.9], [0.1, 0.3, 0.9])
    )
    claim = {"text": "", "smoother": "a", "than": "b", "metric": "test_accuracy"}
    assert claims.verdict(claim, runs)[0] == "tie"
    assert claims.verdict({**claim, "smoother": "b", "than": "a"}, runs)[0] == "tie"
    assert not claims.check_claim(claim, runs)[0]


# ---------------------------------------------------------------------------- smaller_gap
def test_smaller_gap_compares_the_final_train_minus_test_accuracy():
    # final gaps: a 0.90 - 0.88 = 0.02; b (two seeds) mean train 0.95, mean test 0.87: 0.08
    runs = _by_variant(
        _acc("a", [0.1, 0.80, 0.88], [0.1, 0.82, 0.90]),
        _acc("b", [0.1, 0.85, 0.86], [0.1, 0.90, 0.94], seed=0),
        _acc("b", [0.1, 0.85, 0.88], [0.1, 0.90, 0.96], seed=1),
    )
    claim = {"text": "", "smaller_gap": "a", "than": "b", "metric": "test_accuracy"}
    holds, numbers = claims.check_claim(claim, runs)
    assert holds
    assert numbers == (
        "final gap (train accuracy against test accuracy): a 2.00 points vs b 8.00 points"
    )
    assert not claims.check_claim({**claim, "smaller_gap": "b", "than": "a"}, runs)[0]


def test_smaller_gap_on_losses_is_test_minus_train_loss():
    # gaps: a 0.30 - 0.25 = 0.05; b 0.28 - 0.10 = 0.18 (b has the lower test loss: not asked)
    runs = _by_variant(
        _run("a", test_loss=[1.0, 0.30], train_loss=[1.0, 0.25]),
        _run("b", test_loss=[1.0, 0.28], train_loss=[1.0, 0.10]),
    )
    claim = {"text": "", "smaller_gap": "a", "than": "b", "metric": "test_loss"}
    assert claims.check_claim(claim, runs) == (
        True,
        "final gap (train loss against test loss): a 0.05 vs b 0.18",
    )
    assert not claims.check_claim({**claim, "smaller_gap": "b", "than": "a"}, runs)[0]


# ----------------------------------------------------------------------------- gap_widens
def test_gap_widens_needs_training_to_improve_more_than_the_test_metric_in_the_second_half():
    # 5 evaluations: the middle one is the 3rd ((5 + 1) // 2). From it to the last, training
    # accuracy 0.80 -> 0.95 while test accuracy 0.78 -> 0.79: gap 0.02 -> 0.16, widens.
    stalls = _acc("stalls", [0.1, 0.6, 0.78, 0.79, 0.79], [0.1, 0.6, 0.80, 0.90, 0.95])
    claim = {"text": "", "gap_widens": "stalls", "metric": "test_accuracy"}
    holds, numbers = claims.check_claim(claim, _by_variant(stalls))
    assert holds
    assert numbers == (
        "stalls, evaluation 3 -> 5 of 5: train accuracy 80.00% -> 95.00%, test accuracy "
        "78.00% -> 79.00%; gap 2.00 points -> 16.00 points"
    )
    # Both improve by 0.1 from the middle on: the gap stays (0.1 up to rounding): no.
    both = _acc("both", [0.1, 0.6, 0.7, 0.75, 0.8], [0.1, 0.6, 0.8, 0.85, 0.9])
    assert claims.verdict({**claim, "gap_widens": "both"}, _by_variant(both))[0] == "no"
    # The gap widens because the test accuracy falls, but training does not improve: no.
    falls = _acc("falls", [0.1, 0.6, 0.8, 0.7, 0.6], [0.1, 0.6, 0.9, 0.9, 0.9])
    assert not claims.check_claim({**claim, "gap_widens": "falls"}, _by_variant(falls))[0]
    # The gap before the middle does not count: a wide early gap that later narrows is a no.
    narrows = _acc("narrows", [0.1, 0.2, 0.5, 0.8, 0.9], [0.1, 0.9, 0.9, 0.95, 0.96])
    assert not claims.check_claim({**claim, "gap_widens": "narrows"}, _by_variant(narrows))[0]


def test_gap_widens_on_losses():
    # middle = 2nd of 3: train loss 0.5 -> 0.2 (improves), test loss 0.55 -> 0.6: gap 0.05 -> 0.4
    runs = _by_variant(_run("a", test_loss=[1.0, 0.55, 0.6], train_loss=[1.0, 0.5, 0.2]))
    assert claims.check_claim({"text": "", "gap_widens": "a", "metric": "test_loss"}, runs)[0]


# ---------------------------------------------------------------------------- better_early
def test_better_early_averages_the_first_evaluations_after_the_start():
    # Evaluation 0 is before any update and is left out: a is far better there, b after it.
    a = _acc("a", [0.9, 0.5, 0.5, 0.9], [0.9, 0.5, 0.5, 0.9])
    b = _acc("b", [0.1, 0.6, 0.6, 0.6], [0.1, 0.6, 0.6, 0.6])
    runs = _by_variant(a, b)
    claim = {"text": "", "better_early": "b", "than": "a", "first": 2, "metric": "test_accuracy"}
    holds, numbers = claims.check_claim(claim, runs)
    assert holds  # steps 1-2: b 0.6 vs a 0.5 (with step 0: a 0.633 vs b 0.433)
    assert numbers == (
        "mean test accuracy over the first 2 evaluations (steps 1-2): b 60.00% vs a 50.00%"
    )
    assert not claims.check_claim({**claim, "better_early": "a", "than": "b"}, runs)[0]
    # Over the first 3: a (0.5 + 0.5 + 0.9) / 3 = 0.633 > b 0.6.
    assert claims.check_claim({**claim, "better_early": "a", "than": "b", "first": 3}, runs)[0]
    # More evaluations asked than there are: not decided, so no.
    holds, numbers = claims.check_claim({**claim, "first": 4}, runs)
    assert not holds
    assert "b has 3 and a 3 evaluations after the start; the claim reads the first 4" in numbers


def test_better_early_on_a_loss_is_lower():
    runs = _by_variant(
        _run("a", test_loss=[2.0, 1.0, 0.8], train_loss=[2.0, 1.0, 0.8]),
        _run("b", test_loss=[2.0, 1.2, 0.5], train_loss=[2.0, 1.2, 0.5]),
    )
    claim = {"text": "", "better_early": "a", "than": "b", "first": 1, "metric": "test_loss"}
    assert claims.check_claim(claim, runs)[0]  # 1.0 < 1.2
    assert not claims.check_claim({**claim, "first": 2}, runs)[0]  # 0.9 vs 0.85


# ------------------------------------------------------------------------ diverged runs (B)
GOOD = _run("good", seed=0, test_loss=[1.0, 0.5, 0.2], train_loss=[1.0, 0.4, 0.1])
GOOD_ACC = {"test_accuracy": [0.1, 0.8, 0.9], "train_accuracy": [0.1, 0.8, 0.92]}
for key, values in GOOD_ACC.items():
    GOOD["history"]["eval"][key] = values


def _other(seed, status="finished", nan=False):
    """A run of variant "other"; with ``nan``, its last evaluation is not finite."""
    last = NAN if nan else None
    run = _run("other", seed, status, test_loss=[1.0, 0.3, last or 0.4], train_loss=[1.0, 0.3, 0.2])
    run["history"]["eval"]["test_accuracy"] = [0.1, 0.9, last or 0.85]
    run["history"]["eval"]["train_accuracy"] = [0.1, 0.9, last or 0.99]
    return run


# Each holds while every run of "other" finished (good: test loss 1, 0.5, 0.2; test accuracy
# 0.1, 0.8, 0.9; train accuracy 0.1, 0.8, 0.92):
CLAIMS_ABOUT_OTHER = [
    # final test loss 0.4 > 0.2
    {"higher": "other", "than": "good", "metric": "test_loss"},
    # best test loss 0.3 at evaluation 2, then 0.4, while the train loss falls 0.3 -> 0.2
    {"rises": "other", "metric": "test_loss"},
    # roughness of the test accuracy: good 0 < other 0.05 (0.9 -> 0.85)
    {"smoother": "good", "than": "other", "metric": "test_accuracy"},
    # final gaps: good 0.92 - 0.9 = 0.02 < other 0.99 - 0.85 = 0.14
    {"smaller_gap": "good", "than": "other", "metric": "test_accuracy"},
    # middle = evaluation 2 of 3: train 0.9 -> 0.99, test 0.9 -> 0.85: gap 0 -> 0.14
    {"gap_widens": "other", "metric": "test_accuracy"},
    # first 2 after the start: other (0.9 + 0.85) / 2 = 0.875 > good (0.8 + 0.9) / 2 = 0.85
    {"better_early": "other", "than": "good", "first": 2, "metric": "test_accuracy"},
]


@pytest.mark.parametrize(
    "claim", CLAIMS_ABOUT_OTHER, ids=lambda c: next(k for k in c if k != "metric")
)
def test_a_claim_about_a_variant_with_a_diverged_seed_does_not_hold(claim):
    claim = {"text": "", **claim}
    finished = _by_variant(GOOD, _other(0), _other(1))
    assert claims.verdict(claim, finished)[0] == "yes"
    # The same runs plus a third seed of "other" that diverged: the survivors alone would give
    # the same means, but the claim no longer holds, and its numbers say why.
    with_diverged = _by_variant(GOOD, _other(0), _other(1), _other(2, status="diverged", nan=True))
    result, numbers = claims.verdict(claim, with_diverged)
    assert result == "diverged"
    assert numbers.startswith(
        "other: seed 2 diverged (2 of 3 runs finished); over the finished runs: "
    )
    assert not claims.check_claim(claim, with_diverged)[0]
    # A run marked finished whose last evaluation is not finite counts as diverged too.
    nan_final = _by_variant(GOOD, _other(0), _other(1, nan=True))
    assert claims.verdict(claim, nan_final)[0] == "diverged"


def test_a_variant_whose_every_run_diverged_is_named():
    runs = _by_variant(GOOD, _other(0, "diverged", nan=True), _other(1, "diverged", nan=True))
    claim = {"text": "", "lower": "other", "than": "good", "metric": "test_loss"}
    assert claims.verdict(claim, runs) == (
        "diverged",
        "no finished run of other: seeds 0, 1 diverged",
    )
    assert claims.verdict({**claim, "lower": "absent"}, runs) == ("not run", "no run of absent")


def test_smoothest_counts_another_variant_with_a_diverged_run_as_the_roughest():
    # Over its finished run, "spiky" is monotone (roughness 0), below "bumpy"'s 0.05; but its
    # other seed diverged, so its curve left the finite numbers: "bumpy" is the smoothest.
    runs = _by_variant(
        _run("bumpy", test_loss=[0.5, 0.3, 0.35, 0.15], train_loss=[0.5, 0.3, 0.3, 0.1]),
        _run("spiky", 0, test_loss=[0.5, 0.4, 0.3, 0.2], train_loss=[0.5, 0.4, 0.3, 0.2]),
        _run("spiky", 1, "diverged", test_loss=[0.5, NAN], train_loss=[0.5, NAN]),
    )
    claim = {"text": "", "smoothest": "bumpy", "metric": "test_loss"}
    holds, numbers = claims.check_claim(claim, runs)
    assert holds
    assert (
        numbers == "roughness of the mean test loss curve: bumpy 0.05, spiky inf (seed 1 diverged)"
    )
    assert claims.verdict({**claim, "smoothest": "spiky"}, runs)[0] == "diverged"


def test_the_table_says_why_a_claim_does_not_hold():
    results = [GOOD, _other(0), _other(1), _other(2, status="diverged", nan=True)]
    table = claims.claims_table(results, [
        {"text": "other ends higher", "higher": "other", "than": "good", "metric": "test_loss"},
        {"text": "good ends lower", "lower": "good", "than": "good2", "metric": "test_loss"},
    ])  # fmt: skip
    assert "| other ends higher | **no** (diverged) | other: seed 2 diverged (2 of 3 runs" in table
    assert "| good ends lower | **no** (not run) | no run of good2 |" in table


# ---------------------------------------------------------------------------------- ties (C)
MONOTONE = {
    "cosine": [2.0, 1.5, 1.2, 1.0],
    "wsd": [2.0, 1.6, 1.3, 0.9],
    "constant": [2.0, 1.4, 1.5, 1.3],  # one upward move of 0.1
}


@pytest.mark.parametrize("order", [("cosine", "wsd", "constant"), ("wsd", "constant", "cosine")])
def test_a_tie_for_smoothest_is_reported_whatever_the_order_of_the_variants(order):
    runs = {n: [_run(n, test_loss=MONOTONE[n], train_loss=MONOTONE[n])] for n in order}
    for name, other in (("cosine", "wsd"), ("wsd", "cosine")):
        result, numbers = claims.verdict(
            {"text": "", "smoothest": name, "metric": "test_loss"}, runs
        )
        assert result == "tie"
        assert numbers == (
            f"roughness of the mean test loss curve: cosine 0, wsd 0, constant 0.1; {name} tied "
            f"with {other}"
        )
    assert (
        claims.verdict({"text": "", "smoothest": "constant", "metric": "test_loss"}, runs)[0]
        == "no"
    )
    # Without wsd, cosine is strictly the smoothest.
    del runs["wsd"]
    assert (
        claims.verdict({"text": "", "smoothest": "cosine", "metric": "test_loss"}, runs)[0] == "yes"
    )


def test_values_equal_up_to_rounding_are_a_tie():
    assert claims.tied(0.1 + 0.2, 0.3)
    assert claims.tied(0.0, 1e-17, scale=2.0)  # a rounding-size upward move on a curve of size 2
    assert not claims.tied(0.0, 1e-9, scale=2.0)
    assert not claims.tied(1.0, math.inf)
    # Final means 0.30000000000000004 and 0.3: neither is lower.
    runs = _by_variant(
        _run("a", test_loss=[1.0, 0.1 + 0.2], train_loss=[1.0, 0.1]),
        _run("b", test_loss=[1.0, 0.3], train_loss=[1.0, 0.1]),
    )
    for kind in ("lower", "higher"):
        claim = {"text": "", kind: "a", "than": "b", "metric": "test_loss"}
        assert claims.verdict(claim, runs)[0] == "tie"
        assert "**no** (tie)" in claims.claims_table(
            [r for rs in runs.values() for r in rs], [claim]
        )


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ({"text": "x", "smoother": "a", "metric": "test_loss"}, "smoother needs than"),
        (
            {"text": "x", "smaller_gap": "a", "than": "b", "metric": "train_loss"},
            "smaller_gap compares a test metric with its training counterpart: metric "
            "test_accuracy or test_loss",
        ),
        ({"text": "x", "gap_widens": "a", "metric": "train_accuracy"}, "gap_widens compares"),
        (
            {"text": "x", "better_early": "a", "than": "b", "metric": "test_loss"},
            "better_early needs first",
        ),
        (
            {"text": "x", "better_early": "a", "than": "b", "first": 0, "metric": "test_loss"},
            "first must be a positive integer",
        ),
        (
            {"text": "x", "better_early": "a", "than": "b", "first": True, "metric": "test_loss"},
            "first must be a positive integer",
        ),
        (
            {"text": "x", "smoother": "a", "than": "b", "first": 2, "metric": "test_loss"},
            "smoother takes no first",
        ),
        (
            {"text": "x", "smoother": "a", "than": "a", "metric": "test_loss"},
            "than must name another variant than smoother",
        ),
        (
            {"text": "x", "smoother": "a", "gap_widens": "b", "metric": "test_loss"},
            "needs exactly one of lower, higher, rises, smoothest, smoother, smaller_gap, "
            "gap_widens, better_early (has smoother, gap_widens)",
        ),
    ],
)
def test_malformed_new_claims_are_refused_with_what_is_wrong(claim, message):
    problem = claims.claim_problem([{"text": "fine", "rises": "a", "metric": "test_loss"}, claim])
    assert problem is not None
    assert f"claims[1]: {message}" in problem
    raw = _base(
        variants=[{"name": "a"}, {"name": "b"}],
        report={"claims": [{"text": "fine", "rises": "a", "metric": "test_loss"}, claim]},
    )
    with pytest.raises(ValueError, match=r"report\.claims: must be a list of .*claims\[1\]: "):
        parse_experiment(raw, "exp.toml")


def test_well_formed_new_claims_are_kept_and_name_known_variants():
    wanted = [
        {"text": "x", "smoother": "a", "than": "b", "metric": "test_accuracy"},
        {"text": "x", "smaller_gap": "a", "than": "b", "metric": "test_loss"},
        {"text": "x", "gap_widens": "b", "metric": "test_accuracy"},
        {"text": "x", "better_early": "b", "than": "a", "first": 3, "metric": "train_loss"},
    ]
    raw = _base(variants=[{"name": "a"}, {"name": "b"}], report={"claims": wanted})
    assert parse_experiment(raw, "exp.toml").report.claims == wanted
    unknown = [{"text": "x", "better_early": "a", "than": "c", "first": 3, "metric": "test_loss"}]
    raw = _base(variants=[{"name": "a"}, {"name": "b"}], report={"claims": unknown})
    with pytest.raises(ValueError, match=r"report\.claims\[0\]: unknown variant 'c'"):
        parse_experiment(raw, "exp.toml")


# --------------------------------------------------------------------- d2l-schedules (A, D)
def test_d2l_claims_are_the_chapters_findings_on_the_metrics_it_plots():
    experiment = load_experiment("d2l-schedules")
    found = experiment.report.claims
    # d2l's train() computes no test loss; its overfitting is the train - test accuracy gap.
    assert {c["metric"] for c in found} == {"test_accuracy"}
    kinds = [next(k for k in c if k not in ("text", "metric", "than", "first")) for c in found]
    assert kinds == ["gap_widens", "smoother", "smaller_gap", "better_early"]
    # constant overfits; square root is smoother and overfits less than constant; warmup
    # converges better over the first 5 epochs than cosine without it.
    assert found[0]["gap_widens"] == "constant"
    assert (found[1]["smoother"], found[1]["than"]) == ("square-root", "constant")
    assert (found[2]["smaller_gap"], found[2]["than"]) == ("square-root", "constant")
    assert (found[3]["better_early"], found[3]["than"], found[3]["first"]) == (
        "cosine-warmup",
        "cosine",
        5,
    )
    # Factor is never trained in the chapter: no claim is about it, and the reference says so.
    assert not any("factor" in c.values() for c in found)
    assert "factor" in experiment.reference
    assert "trains none" in experiment.reference
    assert "test loss" in experiment.reference  # ("it computes no test loss")
    assert "lower test loss" not in experiment.reference


def test_d2l_feeds_fashion_mnist_as_pixels_in_0_1_and_its_fallback_is_unchanged(tmp_path):
    from tests.runs.test_catalogue import _fake_fashion

    data_dir = tmp_path / "data"
    _fake_fashion(data_dir / "fashion-mnist", np.random.default_rng(0))
    with_data = load_experiment("d2l-schedules", data_dir=str(data_dir))
    assert {v.dataset.normalize for v in with_data.variants} == {False}
    fallback = load_experiment("d2l-schedules")
    assert {v.dataset.normalize for v in fallback.variants} == {True}
