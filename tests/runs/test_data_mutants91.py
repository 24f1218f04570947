"""Stop-91 mutation audit of runs.data: standardisation axes and statistics against NumPy and a
hand-written StandardScaler, and the label checks. Expected values from NumPy, not the code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runs.data import dataset_from, load_dataset, register_dataset

# (the tests register datasets or models: the registries are restored after each)
pytestmark = pytest.mark.usefixtures("clean_registries")


def _scaler(train: np.ndarray, test: np.ndarray, axes: tuple[int, ...]):
    """scikit-learn StandardScaler semantics by hand: training mean and population std (ddof 0)
    over ``axes``; a zero std taken as 1 (the feature only centred); applied to both splits."""
    mean = train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std, mean.ravel(), std.ravel()


def test_a_sequence_dataset_n_c_l_is_standardised_per_channel_with_training_statistics():
    rng = np.random.default_rng(0)
    scales = np.array([1.0, 10.0, 0.01])[None, :, None]
    offsets = np.array([0.0, -5.0, 3.0])[None, :, None]
    train = (rng.standard_normal((40, 3, 7)) * scales + offsets).astype(np.float32)
    test = (rng.standard_normal((20, 3, 7)) * scales * 2 + offsets + 1).astype(np.float32)
    register_dataset("m91-seq", train_x=train, train_y=np.zeros(40, int), test_x=test,
                     test_y=np.zeros(20, int), num_classes=2, replace=True)  # fmt: skip
    used = load_dataset("m91-seq")
    ref_train, ref_test, mean, std = _scaler(
        train.astype(np.float64), test.astype(np.float64), (0, 2)
    )
    np.testing.assert_allclose(used.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(used.std, std, rtol=1e-5)
    np.testing.assert_allclose(used.train_x.numpy(), ref_train, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(used.test_x.numpy(), ref_test, rtol=1e-4, atol=1e-4)


def test_registered_vectors_are_scaled_per_feature_a_constant_one_only_centred():
    rng = np.random.default_rng(1)
    train = rng.standard_normal((50, 4)) * np.array([1.0, 100.0, 0.0, 1e-4]) + np.array(
        [0.0, 7.0, 2.5, 0.0]
    )
    test = rng.standard_normal((10, 4)) + 1.0
    train, test = train.astype(np.float32), test.astype(np.float32)
    registered = register_dataset("m91-vec", train_x=train, train_y=np.arange(50) % 2,
                                  test_x=test, test_y=np.arange(10) % 2, replace=True)  # fmt: skip
    before = registered.train_x.clone()
    used = load_dataset("m91-vec")
    ref_train, ref_test, _mean, std = _scaler(
        train.astype(np.float64), test.astype(np.float64), (0,)
    )
    assert std[2] == 1.0  # the constant feature: only centred
    np.testing.assert_allclose(used.std, std, rtol=1e-4)
    np.testing.assert_allclose(used.train_x.numpy(), ref_train, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(used.test_x.numpy(), ref_test, rtol=1e-3, atol=1e-3)
    assert torch.equal(registered.train_x, before)  # the registered tensors are never changed


def test_mnist1d_is_standardised_with_one_scalar_mean_and_std(mnist1d_cache):
    raw = load_dataset("mnist1d", normalize=False)
    used = load_dataset("mnist1d")
    x = raw.train_x.numpy().astype(np.float64)
    assert len(used.mean) == len(used.std) == 1
    assert used.mean[0] == pytest.approx(x.mean(), rel=1e-6, abs=1e-9)
    assert used.std[0] == pytest.approx(x.std(), rel=1e-6)
    expected = (raw.test_x.numpy().astype(np.float64) - x.mean()) / x.std()
    np.testing.assert_allclose(used.test_x.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_num_classes_defaults_to_the_largest_label_of_either_split_plus_one():
    x = np.zeros((3, 2), np.float32)
    assert dataset_from(x, np.array([0, 1, 2]), x[:1], np.array([4])).num_classes == 5


def test_a_label_equal_to_num_classes_is_refused():
    x = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="labels must lie in"):
        dataset_from(x, np.array([0, 3]), x, np.array([0, 1]), num_classes=3)
