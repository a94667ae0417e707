"""``rstg_fast.data.augment``: random affine copies of digits for the naming warm-up."""

from __future__ import annotations

import numpy as np
import pytest

from rstg_fast.data.augment import affine_digits, augmented_pool
from rstg_fast.data.mnist import DigitPool


def bars(n: int) -> np.ndarray:
    """``n`` 28 x 28 digits: a bright vertical bar, off centre so a rotation moves it."""
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 6:22, 17:20] = 255
    return images


def test_strength_zero_is_the_identity_and_one_moves_pixels():
    images = bars(8)
    same = affine_digits(images, np.random.default_rng(0), strength=0.0)
    np.testing.assert_array_equal(same, images)
    moved = affine_digits(images, np.random.default_rng(0), strength=1.0)
    assert moved.dtype == np.uint8 and moved.shape == images.shape
    assert all((m != i).any() for m, i in zip(moved, images, strict=True))  # each digit changed
    # a rotation within +-12 deg, a scale within +-15 % and a shear keep the ink roughly
    ink = moved.astype(float).sum((1, 2)) / images.astype(float).sum((1, 2))
    assert ((0.6 < ink) & (ink < 1.5)).all(), ink


def test_augmented_pool_keeps_the_digits_and_adds_labelled_copies():
    labels = np.arange(20) % 10
    pool = DigitPool(bars(20), labels)
    big = augmented_pool(pool, 3, seed=5)
    assert big.images.shape == (80, 28, 28) and big.labels.tolist() == labels.tolist() * 4
    np.testing.assert_array_equal(big.images[:20], pool.images)  # the originals first
    assert all((big.images[20 * c : 20 * (c + 1)] != pool.images).any() for c in (1, 2, 3))
    again = augmented_pool(pool, 3, seed=5)
    np.testing.assert_array_equal(again.images, big.images)  # a function of the seed
    assert (augmented_pool(pool, 3, seed=6).images != big.images).any()
    np.testing.assert_array_equal(augmented_pool(pool, 0, seed=5).images, pool.images)
    with pytest.raises(ValueError, match="copies must be >= 0"):
        augmented_pool(pool, -1, seed=5)
