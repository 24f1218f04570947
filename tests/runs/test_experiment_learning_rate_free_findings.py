"""learning-rate-free's findings sentences: a method that diverged on some seeds is not counted
as close to the tuned baseline on the strength of its surviving seeds; it is named apart with its
diverged seeds, and the range of settled step sizes leaves it out."""

from __future__ import annotations

from runs.experiments import learning_rate_free as lrf


def _record(method, seed, accuracy, diverged=False):
    return {
        "method": method,
        "seed": seed,
        "lr": None,
        "status": "diverged" if diverged else "finished",
        "diverged_step": 5 if diverged else None,
        "reached_floor_step": None,
        "final": None
        if diverged
        else {"test_accuracy": accuracy, "train_loss": 0.1, "train_accuracy": 0.9},
        "settled_step_size": None if diverged else 0.1,
        "collapsed": False,
    }


def _rows(dog_diverged: list[int]) -> list[dict]:
    """The CNN rows: Adam 90 %, momentum 89 % on every seed; DoG reaches 90 % on each seed
    that finished (so its mean over the finished seeds equals the better baseline's)."""
    search = {"adam": {"chosen": 0.01}, "momentum": {"chosen": 0.1}}
    rows = []
    for key, diverged in (("adam", []), ("momentum", []), ("dog", dog_diverged)):
        accuracy = {"adam": 0.90, "momentum": 0.89, "dog": 0.90}[key]
        records = [_record(key, s, accuracy, s in diverged) for s in range(3)]
        rows.append(lrf._row("cnn", "mnist1d", lrf.BY_KEY[key], records, [search] * 3, [1.0] * 3))
    lrf._distances(rows)
    return rows


def test_a_method_whose_seeds_all_finished_counts_as_close():
    text = lrf._findings(_rows([]))
    # DoG 90 % = the better baseline's 90 %: within 1 point
    assert "at most 1 point below the better tuned baseline's test accuracy (cnn: DoG)." in text
    assert "diverged" not in text
    assert "The settled step sizes range from 1x the grid's best rate (DoG on cnn)" in text


def test_a_method_with_diverged_seeds_is_not_counted_on_its_survivors():
    text = lrf._findings(_rows([1, 2]))
    # Its one finished seed reached 90 %, but two of three diverged: not "at most 1 point below".
    assert "at most 1 point below the better tuned baseline's test accuracy (cnn: none)." in text
    assert "Not counted there, for diverged seeds: DoG on cnn (seeds 1, 2)." in text
    assert "settled step sizes range" not in text  # DoG was the only method: none left
    one = lrf._findings(_rows([2]))
    assert "Not counted there, for diverged seeds: DoG on cnn (seed 2)." in one
