"""Audit 88 (MNIST-1D generation and cache; the TOML reference against the loader): seeds lists
holding arrays or tables, the batched generator against the package for every argument it
takes, ``[report] published`` values and names, dataset sizes in an unused ``[fallback]`` and in
``[quick]`` whatever the mode, and cache files whose content the generator cannot have made."""

from __future__ import annotations

import copy
import math
import re
import tomllib

import numpy as np
import pytest

from runs import checks, spec
from runs import mnist1d as runs_mnist1d
from runs.cli import main
from runs.data import load_dataset
from runs.load import load_experiment, parse_experiment
from tests.runs.helpers import FASTEST

BASE = {
    "name": "p",
    "dataset": {"name": "mnist1d"},
    "model": {"name": "mlp"},
    "train": {"batch_size": 10, "steps": 5},
    "optimizer": {"name": "sgd", "lr": 0.1},
    "variants": [{"name": "adam.a"}, {"name": "adam.b"}, {"name": "sgd"}],
}
SEEDS_ALLOWED = "must be a positive integer N <= 100000 (seeds 0..N-1) or a list of distinct seeds"


def _doc(**extra) -> dict:
    return {**copy.deepcopy(BASE), **extra}


def _problems(raw: dict, **options) -> str:
    with pytest.raises(ValueError) as info:  # noqa: PT011 (the message is checked below)
        parse_experiment(raw, "<p>", **options)
    return str(info.value)


# ------------------------------------------------------------- F1: seeds holding arrays/tables
@pytest.mark.parametrize(
    ("toml_line", "location", "shown"),
    [
        ("seeds = [[0], 1]", "seeds", "[[0], 1]"),
        ("seeds = [{a = 1}]", "seeds", "[{'a': 1}]"),
        ("seeds = [0, [1]]", "seeds", "[0, [1]]"),
        ("[quick]\nseeds = [[0]]", "quick.seeds", "[[0]]"),
    ],
    ids=["array-first", "table", "array-last", "quick"],
)
def test_seeds_holding_an_array_or_a_table_are_refused_at_their_key(
    tmp_path, toml_line, location, shown
):
    top, quick = (toml_line, "") if toml_line.startswith("seeds") else ("", toml_line)
    text = FASTEST.replace("seeds = 1\n", top + "\n") + "\n" + quick + "\n"
    tomllib.loads(text)  # valid TOML: the loader, not the parser, must refuse it
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:  # noqa: PT011 (the message is checked below)
        load_experiment(str(path))
    assert f"{location}: {SEEDS_ALLOWED}" in str(info.value)
    assert f"got {shown}" in str(info.value)


@pytest.mark.parametrize("value", [[[0], 1], [{"a": 1}], [0, [1]], [[0], [0]]])
def test_the_seeds_check_returns_its_phrase_for_unhashable_items(value):
    assert checks.seeds(value) == checks.seeds("not seeds")
    assert checks.lr_grid(value) == "a non-empty list of distinct positive learning rates"


def test_valid_seed_lists_and_grids_are_still_accepted_and_duplicates_refused():
    assert checks.seeds([0, 3, 2**32 - 1]) is None
    assert checks.seeds([1, 1]) is not None
    assert checks.lr_grid([0.1, 1e-3]) is None
    assert checks.lr_grid([0.1, 0.1]) is not None


def test_the_command_prints_one_line_naming_seeds(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(FASTEST.replace("seeds = 1", "seeds = [[0], 1]"))
    assert main(["run", str(path), "--logdir", str(tmp_path / "L"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1, err
    assert f"seeds: {SEEDS_ALLOWED}" in err
    assert not (tmp_path / "L").exists()


# ---------------------------------------------- F2: the batched generator for any package args
def _both(changes: dict) -> tuple[dict, dict]:
    """``make_mnist1d_batched`` and the package's ``make_dataset`` on the same arguments (the
    package's defaults with ``changes``), NumPy's global state restored afterwards."""
    from mnist1d.data import get_dataset_args, make_dataset

    def args():
        made = get_dataset_args()
        for key, value in changes.items():
            setattr(made, key, value)
        return made

    state = np.random.get_state()  # noqa: NPY002
    try:
        return runs_mnist1d.make_mnist1d_batched(args()), make_dataset(args())
    finally:
        np.random.set_state(state)  # noqa: NPY002


@pytest.mark.parametrize(
    "changes",
    [
        {"padding": [10, 20]},  # padded length 32 < max_translation 48
        {"padding": [0, 0]},  # length 12: most shifts leave the example as it is
        {"padding": [36, 60], "max_translation": 72},  # k = 0..71 < 72: rolls only
        {"padding": [36, 60], "max_translation": 80},  # k = 72..79 >= 72: identity
        {"shuffle_seq": True},
        {"shuffle_seq": True, "padding": [0, 5], "final_seq_length": 17, "seed": 3},
    ],
    ids=["pad-10-20", "pad-0-0", "translate-72", "translate-80", "shuffle", "shuffle-mixed"],
)
def test_the_batched_generator_is_the_packages_for_other_arguments(changes):
    batched, reference = _both({"num_samples": 300, "train_split": 0.7, **changes})
    for key in ("x", "y", "x_test", "y_test"):
        assert batched[key].dtype == reference[key].dtype, key
        assert batched[key].shape == reference[key].shape, key
        assert batched[key].tobytes() == reference[key].tobytes(), key


def test_shuffle_seq_permutes_the_positions_of_the_unshuffled_data():
    """Independent of the package: with ``shuffle_seq`` the examples are those without it, each
    with its positions permuted by one permutation (after the same normalisation)."""
    plain, _ = _both({"num_samples": 100})
    shuffled, _ = _both({"num_samples": 100, "shuffle_seq": True})
    assert np.array_equal(plain["y"], shuffled["y"])
    assert not np.array_equal(plain["x"], shuffled["x"])
    order = [int(np.abs(plain["x"][0] - v).argmin()) for v in shuffled["x"][0]]
    assert sorted(order) == list(range(40))
    np.testing.assert_allclose(shuffled["x"], plain["x"][:, order], rtol=0, atol=1e-12)


# The SHA-256 of each array ``mnist1d.data.make_dataset`` returns at 70,000 examples split
# 60,000 / 10,000 (``args.num_samples, args.train_split = 70000, 6 / 7 + 1e-9``, every other
# argument the package's default), recorded by running mnist1d 0.0.2.post1 (numpy 2, scipy 1)
# on this project's CI machine: 22 to 38 s of the package's per-example loop, where the
# batched generator takes about 3 s.
_PACKAGES_DIGESTS_AT_60000_AND_10000 = {
    "0.0.2.post1": {
        "x": "b7f0c7e8e7e77c8c65199960d0f6a52cdc3f2baa01aca5fb27157b8a9b10617e",
        "y": "0c82cc4fbc5ed860ae3e341f084598a2215161e75016cb0f6a707b0acaf317f3",
        "x_test": "e27c37ecdd9e4da74e03a7dfabb005e09e68147d66a5e0fdbd8b403f64f6c204",
        "y_test": "1914ec4483da74c31ce4d51033997e52c82a6a8af877cfa820d8570c52f68cbe",
    }
}


@pytest.mark.slow
def test_the_runners_own_data_at_60000_and_10000_are_the_packages():
    """``generate_mnist1d`` (the batched path for the versions it was checked against) against
    the package's ``make_dataset`` with only ``num_samples`` and ``train_split`` changed: the
    package's arrays' digests recorded for the installed version (above), and, where it has none
    or ours differ from them (another version, or a NumPy or SciPy whose arithmetic gives the
    package other bits here), the package run now, whose bytes decide."""
    import hashlib
    import importlib.metadata

    from mnist1d.data import get_dataset_args, make_dataset

    generated = runs_mnist1d.generate_mnist1d((60000, 10000))
    assert generated["x"].shape == (60000, 40)
    assert generated["x_test"].shape == (10000, 40)
    assert generated["x"].dtype == generated["x_test"].dtype == np.float64
    assert generated["y"].dtype == generated["y_test"].dtype == np.int64
    recorded = _PACKAGES_DIGESTS_AT_60000_AND_10000.get(importlib.metadata.version("mnist1d"))
    ours = {key: hashlib.sha256(generated[key].tobytes()).hexdigest() for key in recorded or {}}
    if ours and ours == recorded:
        return
    args = get_dataset_args()
    args.num_samples, args.train_split = 70000, 6 / 7 + 1e-9
    state = np.random.get_state()  # noqa: NPY002
    try:
        reference = make_dataset(args)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    for key in ("x", "y", "x_test", "y_test"):
        assert generated[key].dtype == reference[key].dtype, key
        assert generated[key].tobytes() == reference[key].tobytes(), key


# ------------------------------------------------------------------ F3: [report] published
def _published(values: dict) -> dict:
    return _doc(
        report={"published": {"source": "paper", "metric": "test_accuracy", "values": values}}
    )


@pytest.mark.parametrize(
    "values",
    [{"adam.a": False}, {"adam.a": True}, {"adam.a": "0.5"}, {"adam": -0.1}, {"sgd": math.nan}],
    ids=["false", "true", "string", "negative", "nan"],
)
def test_published_values_must_be_finite_numbers_at_least_zero(values):
    message = _problems(_published(values))
    assert "report.published: must be {" in message
    assert "values = {name = number >= 0, ...}" in message


@pytest.mark.parametrize("name", ["adma", "adam.c", "sg"])
def test_published_names_must_be_a_variant_or_a_prefix(name):
    message = _problems(_published({"adam.a": 0.5, name: 0.9}))
    assert f"report.published.values: unknown variant {name!r}" in message
    assert "allowed: a variant name (adam.a, adam.b, sgd) or a prefix (adam, sgd)" in message
    assert "1 problem(s)" in message


def test_published_names_and_prefixes_of_variants_and_zero_are_accepted():
    values = {"adam.a": 0.5, "adam": 0, "sgd": 1}
    experiment = parse_experiment(_published(values), "<p>")
    assert experiment.report.published["values"] == values


# ------------------------------------- F4: sizes in an unused [fallback] / [quick], their place
SIZE_RULE = "MNIST-1D makes the same number of each of its 10 digits"


@pytest.mark.parametrize(
    ("fallback_dataset", "expected"),
    [
        ({"name": "mnist1d", "train_examples": 3}, SIZE_RULE),
        ({"name": "mnist", "train_examples": 60000}, "only dataset 'mnist1d' is generated"),
    ],
    ids=["sum-1003", "sizes-of-mnist"],
)
def test_an_unused_fallback_dataset_has_its_sizes_checked_where_written(fallback_dataset, expected):
    raw = _doc(
        dataset={"name": "mnist"}, fallback={"dataset": fallback_dataset, "model": {"name": "mlp"}}
    )
    message = _problems(raw, data_dir="/nonexistent")  # a data_dir: the fallback is not used
    assert "fallback.dataset.train_examples: train_examples" in message
    assert expected in message


def test_a_used_fallback_reports_its_sizes_at_the_fallback(monkeypatch):
    import runs.data

    monkeypatch.setattr(runs.data, "dataset_available", lambda name, data_dir: name == "mnist1d")
    fallback = {"dataset": {"name": "mnist1d", "train_examples": 3}, "model": {"name": "mlp"}}
    message = _problems(_doc(dataset={"name": "mnist"}, fallback=fallback))
    assert "fallback.dataset.train_examples: train_examples + test_examples = 3 + 1000" in message
    assert not re.search(r"(?<![.\w])dataset\.train_examples", message), message


@pytest.mark.parametrize("quick", [False, True], ids=["normal", "quick"])
def test_quick_dataset_sizes_are_checked_whatever_the_mode(quick):
    message = _problems(_doc(quick={"dataset": {"train_examples": 3}}), quick=quick)
    assert "quick.dataset.train_examples: train_examples + test_examples = 3 + 1000" in message
    assert SIZE_RULE in message


@pytest.mark.parametrize("quick", [False, True], ids=["normal", "quick"])
def test_valid_fallback_and_quick_sizes_are_accepted(quick):
    raw = _doc(
        fallback={"dataset": {"name": "mnist1d", "train_examples": 90, "test_examples": 10}},
        quick={"dataset": {"train_examples": 80, "test_examples": 20}},
    )
    experiment = parse_experiment(raw, "<p>", quick=quick, data_dir="/nonexistent")
    sizes = [(v.dataset.train_examples, v.dataset.test_examples) for v in experiment.variants]
    assert sizes == [(80, 20) if quick else (None, None)] * 3


def test_the_toml_reference_states_the_multiple_of_10_rule():
    rows = [
        line
        for line in spec.toml_reference().splitlines()
        if line.startswith(("| `train_examples`", "| `test_examples`"))
    ]
    assert len(rows) == 2
    assert all("train_examples + test_examples a multiple of 10" in row for row in rows)


# ------------------------------------------------- F5: cache content the generator cannot make
SIZES = (90, 10)


@pytest.fixture(scope="module")
def generated() -> dict[str, np.ndarray]:
    return runs_mnist1d.generate_mnist1d(SIZES)


def _swap_one_label(y: np.ndarray) -> np.ndarray:
    out = y.copy()
    out[0] = (out[0] + 1) % 10  # still a digit, but one too many of one and too few of another
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: {"x": g["x"][:, :7], "x_test": g["x_test"][:, :7]}, "inputs of 7 features"),
        (lambda g: {"x": np.full_like(g["x"], np.nan)}, "x[0] holds a value that is not finite"),
        (
            lambda g: {"x_test": np.where(np.arange(10)[:, None] == 4, np.inf, g["x_test"])},
            "x_test[4] holds a value that is not finite",
        ),
        (lambda g: {"y": 0 * g["y"], "y_test": 0 * g["y_test"]}, "label counts [100, 0, 0"),
        (lambda g: {"y": _swap_one_label(g["y"])}, "expected 10 of each digit"),
    ],
    ids=["width-7", "nan", "inf", "all-zero", "one-label-moved"],
)
def test_a_cache_whose_content_the_generator_cannot_make_is_refused(
    tmp_path, generated, change, message
):
    path = runs_mnist1d.mnist1d_cache_path(tmp_path, SIZES)
    np.savez(path, **{**generated, **change(generated)})
    with pytest.raises(ValueError) as info:  # noqa: PT011 (the message is checked below)
        load_dataset("mnist1d", cache_dir=tmp_path, train_examples=90, test_examples=10)
    text = str(info.value)
    assert text.startswith(f"{path}: malformed MNIST-1D cache: "), text
    assert message in text, text
    assert text.endswith("delete it to regenerate"), text


def test_the_generated_arrays_have_the_packages_width_and_digit_counts(generated):
    """The checks' expectations from the package itself: its final length and its equal counts."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split = 100, 0.9
    state = np.random.get_state()  # noqa: NPY002
    try:
        reference = make_dataset(args)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    labels = np.concatenate([reference["y"], reference["y_test"]])
    assert reference["x"].shape[1] == args.final_seq_length == 40
    assert np.bincount(labels, minlength=10).tolist() == [10] * 10


def test_a_well_formed_cache_with_unsigned_labels_is_still_read(tmp_path, generated):
    path = runs_mnist1d.mnist1d_cache_path(tmp_path, SIZES)
    stored = {**generated, "y": generated["y"].astype(np.uint8)}
    np.savez(path, **stored)
    data = load_dataset(
        "mnist1d", cache_dir=tmp_path, train_examples=90, test_examples=10, normalize=False
    )
    assert np.array_equal(data.train_y.numpy(), generated["y"])
    assert data.input_shape == (40,)


def test_registering_the_same_arrays_again_is_a_no_op_and_other_ones_are_refused():
    """The README's example registers a dataset from arrays; a notebook cell run twice
    registers the same arrays again, which built a new object and was refused as "already
    registered". Equal splits are now the registered ones; other splits are refused unless
    ``replace=True``."""
    import runs
    from runs.data import registered_datasets

    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.standard_normal((20, 4)).astype(np.float32),
        "train_y": np.arange(20) % 2,
        "test_x": rng.standard_normal((10, 4)).astype(np.float32),
        "test_y": np.arange(10) % 2,
    }
    name = "audit88-twice"
    try:
        first = runs.register_dataset(name, **arrays)
        again = runs.register_dataset(name, **{k: v.copy() for k, v in arrays.items()})
        assert again is first
        assert registered_datasets()[name] is first
        other = {**arrays, "train_x": arrays["train_x"] + 1}
        with pytest.raises(ValueError, match="already registered with other splits"):
            runs.register_dataset(name, **other)
        replaced = runs.register_dataset(name, replace=True, **other)
        assert replaced is not first
        assert registered_datasets()[name] is replaced
    finally:
        from runs import data as runs_data

        runs_data._REGISTERED.pop(name, None)
        runs_data._DIGESTS.pop(name, None)
