"""Mutation-testing audit 90: tests that kill scheduler mutants the suite let survive.

Expected values come from the documented contract / hand derivation, never from the code."""

import math

from schedulers import noisy_linear_cosine_decay


def test_noisy_linear_cosine_decay_clips_negative_values_to_exactly_zero():
    # Documented: "TF does not clip, so a large draw can make its value negative; here the
    # value is clipped at 0". With alpha = beta = 0 and a noise variance of 100, the unclipped
    # TF value (linear + noise) * cosine is negative for roughly half the steps (noise std 10 at
    # t = 0 dwarfs linear <= 1), so the clipped schedule must be exactly 0.0 there (not a
    # small positive floor) and never negative.
    s = noisy_linear_cosine_decay(1.0, 100, initial_variance=100.0, alpha=0.0, beta=0.0, seed=3)
    values = [s(t) for t in range(100)]
    assert all(v >= 0.0 for v in values)
    zeros = sum(v == 0.0 for v in values)
    assert zeros >= 20, zeros  # about half; at least 20 of 100 to be safe
    assert min(values) == 0.0
    # and where the value is positive it is not floored: the smallest positive value is below
    # what a 1e-3 floor would give only by chance, so check the clip is a max with 0, not more:
    positive = [v for v in values if v > 0]
    assert positive
    assert all(math.isfinite(v) for v in positive)
