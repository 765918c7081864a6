"""Grokking: a one-layer transformer learns ``(a + b) mod p`` (Power et al. 2022).

Every pair ``(a, b)`` with ``0 <= a, b < p`` is a sequence ``a b =``; the model predicts
the sum at the ``=`` position. A fraction of the ``p^2`` pairs trains, the rest is the
validation set; the target is 99% validation accuracy, which a model reaches only by
generalising, long after it has memorised the training pairs.
"""

from __future__ import annotations

import jax
import numpy as np

from optim_fn.experiments.workloads._base import Workload, accuracy, cross_entropy, from_nnx
from optim_fn.experiments.workloads.transformer import make_transformer


def modular_pairs(
    modulus: int = 97, train_fraction: float = 0.5, split_seed: int = 0
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """``((tokens, sums), (tokens, sums))`` for training and validation.

    ``tokens`` are ``(n, 3)``: ``a``, ``b`` and the token ``modulus`` standing for ``=``.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction!r}")
    a, b = np.divmod(np.arange(modulus * modulus), modulus)
    tokens = np.stack([a, b, np.full_like(a, modulus)], axis=1).astype(np.int32)
    sums = ((a + b) % modulus).astype(np.int32)
    order = np.random.default_rng(split_seed).permutation(len(sums))
    cut = int(round(train_fraction * len(sums)))
    train, held_out = order[:cut], order[cut:]
    return (tokens[train], sums[train]), (tokens[held_out], sums[held_out])


def modular_addition(
    *,
    modulus: int = 97,
    train_fraction: float = 0.5,
    steps: int = 1000,
    batch_size: int | None = 512,
    target: float = 0.99,
    width: int = 64,
    heads: int = 4,
) -> Workload:
    """One-layer transformer on ``(a + b) mod p``; target validation accuracy 0.99."""
    train, held_out = modular_pairs(modulus, train_fraction)

    def make(rngs):
        return make_transformer(rngs, vocab=modulus + 1, length=3, width=width, heads=heads)

    def last_logits(model, tokens: jax.Array) -> jax.Array:
        return model(tokens)[:, -1, :modulus]

    return from_nnx(
        "modular_addition",
        make,
        lambda model, tokens, sums: cross_entropy(last_logits(model, tokens), sums),
        train,
        held_out,
        evaluate=lambda model, tokens, sums: accuracy(last_logits(model, tokens), sums),
        metric="accuracy",
        target=target,
        steps=steps,
        batch_size=None if batch_size is None else min(batch_size, len(train[1])),
        description=f"1-layer transformer, (a+b) mod {modulus}, {train_fraction:.0%} of "
        "pairs for training, validation accuracy",
    )
