"""The VAE's data: scikit-learn's 8x8 digits (1797 images, shipped inside scikit-learn) scaled to [0, 1],
split at random into training and held-out images.

Example:
    >>> from ppl_models.vae.digits import default_data, digits_split
    >>> train, test = digits_split(seed=0)
    >>> train.shape, test.shape, float(train.max())
    ((1438, 64), (359, 64), 1.0)
    >>> default_data()["batch_size"]
    128
"""

from __future__ import annotations

import numpy as np


def digits_split(seed: int = 0, test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (1797 images) scaled to [0, 1], split at random into (train, held-out)."""
    from sklearn.datasets import load_digits  # ships its data; imported here so the zoo stays light

    images = load_digits().data.astype(np.float32) / 16.0
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(test_fraction * len(images)))
    return images[order[n_test:]], images[order[:n_test]]


def default_data(seed: int = 0) -> dict:
    """The training part of the digits split (1438 images of 64 pixels), mini-batches of 128."""
    train, _ = digits_split(seed)
    return {"x": train, "batch_size": 128}
