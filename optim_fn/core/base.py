"""The protocol every optim_fn transform speaks: optax's.

An optimizer is a pair of pure functions,

* ``init(params) -> state``
* ``update(grads, state, params=None, **extra_args) -> (updates, state)``

packed in an :class:`optax.GradientTransformationExtraArgs`, so optim_fn and optax
transforms mix in one ``chain`` and plug into flax, equinox or a hand-written loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import optax

Array: TypeAlias = jax.Array
Params: TypeAlias = Any
Updates: TypeAlias = Any
OptState: TypeAlias = Any
GradientTransformation = optax.GradientTransformation
GradientTransformationExtraArgs = optax.GradientTransformationExtraArgs

Schedule: TypeAlias = Callable[[Array], Array]
"""A function of the step count (an int32 scalar, 0 at the first update) to a scalar."""

ScalarOrSchedule: TypeAlias = float | Array | Schedule


class EmptyState(NamedTuple):
    """State of a transform that keeps nothing between steps."""


def identity() -> GradientTransformationExtraArgs:
    """The transform that returns its input updates unchanged."""

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates: Updates, state: EmptyState, params: Params = None, **extra_args):
        del params, extra_args
        return updates, state

    return GradientTransformationExtraArgs(init, update)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Returns ``params + updates``, each leaf cast back to its param's dtype.

    ``None`` leaves in ``params`` stay ``None``. Like :func:`optax.apply_updates`, so a
    bf16 param stays bf16 even when the update was computed in float32.
    """

    def add(param, update):
        if param is None:
            return None
        return jnp.asarray(param + update).astype(jnp.asarray(param).dtype)

    return jax.tree.map(add, params, updates, is_leaf=lambda x: x is None)


def with_extra_args(transform: GradientTransformation) -> GradientTransformationExtraArgs:
    """Lifts a plain optax transform so that its ``update`` ignores extra keyword args."""
    if isinstance(transform, GradientTransformationExtraArgs):
        return transform

    def update(updates, state, params=None, **extra_args):
        del extra_args
        return transform.update(updates, state, params)

    return GradientTransformationExtraArgs(transform.init, update)


def _is_traced(tree: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def _all_array_like(tree: Any) -> bool:
    return all(
        isinstance(leaf, (jax.Array, jax.core.Tracer, float, int, complex, bool))
        or hasattr(leaf, "__array__")
        for leaf in jax.tree.leaves(tree)
    )


def compiled_when_eager(update: Callable) -> Callable:
    """Runs ``update`` as one compiled program when it is called outside any trace.

    Called eagerly (as in a notebook), an un-jitted update dispatches every small
    operation on every leaf separately, 9-18x slower than the jitted step. Called inside
    the user's ``jax.jit`` it is the plain function, so it adds nothing there. Extra
    arguments that are not arrays (e.g. a loss function) make it run un-jitted.
    """
    jitted = jax.jit(update)

    @functools.wraps(update)
    def wrapper(updates, state, params=None, **extra_args):
        if _is_traced((updates, state, params, extra_args)) or not _all_array_like(extra_args):
            return update(updates, state, params, **extra_args)
        return jitted(updates, state, params, **extra_args)

    return wrapper


def fresh_value(new: Array, previous: Array) -> Array:
    """``new``, as the next value of a state field whose ``previous`` value is not read.

    Why: ``jax.jit`` drops arguments that nothing reads, then pairs each donated buffer
    with the next output of the same shape and dtype. A dropped scalar (e.g. a norm kept
    for logging) shifts the pairing of every later scalar of the state, and XLA copies
    each mismatched one: one kernel launch per scalar per step on a GPU. Selecting
    between ``new`` and ``new`` on a test of ``previous`` keeps the argument alive; XLA
    folds the select away, so nothing is computed.
    """
    return jax.lax.select(jnp.isnan(previous), new, new)
