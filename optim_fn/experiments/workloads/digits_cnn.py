"""A small CNN on scikit-learn's 8x8 handwritten digits (target: test accuracy)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from optim_fn.experiments.workloads._base import (
    Workload,
    accuracy,
    cross_entropy,
    from_nnx,
    require_flax,
)

TRAIN_FRACTION = 0.7


def digits_arrays(split_seed: int = 0) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """``((x_train, y_train), (x_test, y_test))``: images (n, 8, 8, 1) scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[..., None]
    labels = data.target.astype(np.int32)
    order = np.random.default_rng(split_seed).permutation(len(labels))
    cut = int(TRAIN_FRACTION * len(labels))
    train, test = order[:cut], order[cut:]
    return (images[train], labels[train]), (images[test], labels[test])


def make_cnn(rngs: Any, channels: int = 16) -> Any:
    """conv 3x3 (1 -> c) relu, conv 3x3 stride 2 (c -> 2c) relu, dense (2c*16 -> 10)."""
    nnx = require_flax()

    class DigitsCNN(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.conv1 = nnx.Conv(1, channels, (3, 3), rngs=rngs)
            self.conv2 = nnx.Conv(channels, 2 * channels, (3, 3), strides=2, rngs=rngs)
            self.head = nnx.Linear(2 * channels * 16, 10, rngs=rngs)

        def __call__(self, images: jax.Array) -> jax.Array:
            hidden = jax.nn.relu(self.conv1(images))
            hidden = jax.nn.relu(self.conv2(hidden))
            return self.head(hidden.reshape(hidden.shape[0], -1))

    return DigitsCNN(rngs)


def digits_cnn(
    *, steps: int = 300, batch_size: int = 64, target: float = 0.97, channels: int = 16
) -> Workload:
    """A two-layer CNN on the digits; 70% train, 30% test; target test accuracy 0.97."""
    train, test = digits_arrays()
    return from_nnx(
        "digits_cnn",
        lambda rngs: make_cnn(rngs, channels),
        lambda model, x, y: cross_entropy(model(x), y),
        train,
        test,
        evaluate=lambda model, x, y: accuracy(model(x), y),
        metric="accuracy",
        target=target,
        steps=steps,
        batch_size=batch_size,
        description=f"CNN ({channels}/{2 * channels} channels) on the 8x8 digits, test accuracy",
    )


__all__ = ["digits_arrays", "digits_cnn", "make_cnn"]
