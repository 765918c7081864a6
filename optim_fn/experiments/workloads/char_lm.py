"""A character-level transformer language model on CPython's documentation text.

The text is ``pydoc_data.topics`` (the help topics every CPython ships, about 465,000
characters), the topics joined in sorted order. The last 10% is held out. Each training
example is a window of ``length + 1`` characters starting at a random position; the
validation loss is the mean next-character cross-entropy (nats) over fixed,
non-overlapping windows of the held-out text.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.experiments.workloads._base import Workload, cross_entropy, from_nnx
from optim_fn.experiments.workloads.transformer import make_transformer

HELD_OUT_FRACTION = 0.1


def topics_text() -> str:
    """The documentation topics joined in sorted order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[name] for name in sorted(topics))


def encode(text: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes of the characters and the vocabulary (sorted distinct characters)."""
    vocabulary = sorted(set(text))
    index = {char: code for code, char in enumerate(vocabulary)}
    return np.array([index[char] for char in text], dtype=np.int32), vocabulary


def char_lm(
    *,
    length: int = 32,
    steps: int = 400,
    batch_size: int = 32,
    target: float = 2.4,
    width: int = 64,
    heads: int = 4,
    layers: int = 1,
    eval_windows: int = 128,
) -> Workload:
    """A small causal transformer over characters; target validation loss (nats)."""
    codes, vocabulary = encode(topics_text())
    cut = int(len(codes) * (1 - HELD_OUT_FRACTION))
    train_codes, held_out = jnp.asarray(codes[:cut]), jnp.asarray(codes[cut:])
    starts = np.arange(cut - length - 1, dtype=np.int32)
    stride = (len(held_out) - length - 1) // eval_windows
    eval_starts = np.arange(eval_windows, dtype=np.int32) * stride
    offsets = jnp.arange(length + 1)

    def windows(text: jax.Array, first: jax.Array) -> jax.Array:
        return text[first[:, None] + offsets]

    def next_char_loss(model, text: jax.Array, first: jax.Array) -> jax.Array:
        chunk = windows(text, first)
        return cross_entropy(model(chunk[:, :-1]), chunk[:, 1:])

    return from_nnx(
        "char_lm",
        lambda rngs: make_transformer(
            rngs, vocab=len(vocabulary), length=length, width=width, heads=heads, layers=layers
        ),
        lambda model, first: next_char_loss(model, train_codes, first),
        (starts,),
        (eval_starts,),
        evaluate=lambda model, first: next_char_loss(model, held_out, first),
        metric="loss",
        target=target,
        steps=steps,
        batch_size=batch_size,
        description=f"{layers}-layer char transformer on pydoc_data.topics, validation loss",
    )
