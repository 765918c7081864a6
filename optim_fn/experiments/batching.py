"""Full-batch, stochastic and mini-batch gradients, sampled inside a jitted loop.

A problem's loss is a mean over ``N`` examples (see :mod:`optim_fn.experiments.problem`).
The three batch modes differ only in which examples a step averages over:

* ``"full"``: all ``N``; the gradient is the exact :math:`\\nabla f`.
* ``"stochastic"``: one example per step (``batch_size`` is 1).
* ``"minibatch"``: ``batch_size`` examples per step.

Sampled modes go through the data in epochs: each epoch is a fresh random permutation
(drawn from the run's key and the epoch number), cut into ``N // batch_size`` batches;
the ``N mod batch_size`` examples left over are skipped for that epoch only. So every
example is equally likely at every step (:math:`E[g_t] = \\nabla f`), and when
``batch_size`` divides ``N`` the mean of the gradients of one epoch, taken at fixed
params, equals the full-batch gradient exactly.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

BATCH_MODES = ("full", "stochastic", "minibatch")


class Batching(NamedTuple):
    """How a run samples its batches (static: part of the compiled program)."""

    mode: str
    batch_size: int
    num_examples: int

    @property
    def sampled(self) -> bool:
        return self.mode != "full"

    @property
    def steps_per_epoch(self) -> int:
        return self.num_examples // self.batch_size


def make_batching(mode: str, num_examples: int, batch_size: int = 32) -> Batching:
    """Validates ``mode`` and ``batch_size``; ``batch_size`` only matters for minibatch."""
    if mode not in BATCH_MODES:
        raise ValueError(
            f"unknown batch mode {mode!r}; valid modes: {', '.join(BATCH_MODES)}"
        )
    if mode == "full":
        return Batching(mode, num_examples, num_examples)
    if mode == "stochastic":
        return Batching(mode, 1, num_examples)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    if batch_size > num_examples:
        raise ValueError(
            f"`batch_size` {batch_size} is larger than the problem's {num_examples} examples; "
            f"use at most {num_examples}, or batch mode 'full'"
        )
    return Batching(mode, batch_size, num_examples)


def _mix(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 with full avalanche."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def epoch_order(seed: jax.Array, epoch: jax.Array, num_examples: int) -> jax.Array:
    """The order in which epoch ``epoch`` of run ``seed`` visits the examples.

    A pseudo-random permutation: the examples sorted by a hash of ``(seed, epoch,
    index)``. The hash is a bijection in the index, so there are no ties. It is used
    instead of :func:`jax.random.permutation` because it compiles about ten times faster
    (no Threefry rounds, one sort instead of several), which matters when every
    optimizer of a comparison compiles its own loop.
    """
    seed = jnp.asarray(seed).astype(jnp.uint32)
    epoch = jnp.asarray(epoch).astype(jnp.uint32)
    salt = _mix(seed * jnp.uint32(0x9E3779B9) ^ _mix(epoch + jnp.uint32(0x7F4A7C15)))
    index = jnp.arange(num_examples, dtype=jnp.uint32)
    return jnp.argsort(_mix(_mix(index + salt))).astype(jnp.int32)


def batch_indices(batching: Batching, order: jax.Array, step: jax.Array) -> jax.Array:
    """The examples of step ``step`` (0-based), given its epoch's ``order``."""
    position = step % batching.steps_per_epoch
    start = position * batching.batch_size
    return jax.lax.dynamic_slice_in_dim(order, start, batching.batch_size)


def take(data: Any, indices: jax.Array) -> Any:
    """The examples ``indices`` of every array in ``data`` (along the leading axis)."""
    return jax.tree.map(lambda leaf: jnp.take(leaf, indices, axis=0), data)


def epoch_batches(batching: Batching, data: Any, seed: int, epoch: int) -> list:
    """Every batch that run ``seed`` uses in epoch ``epoch``, in order.

    The same batches the runner draws at steps ``epoch * steps_per_epoch`` onwards (for
    tests and teaching; the runner itself draws one batch per step).
    """
    order = epoch_order(jnp.asarray(seed), jnp.asarray(epoch), batching.num_examples)
    if not batching.sampled:
        return [data]
    return [
        take(data, batch_indices(batching, order, jnp.asarray(step)))
        for step in range(batching.steps_per_epoch)
    ]
