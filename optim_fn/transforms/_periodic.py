"""Things that happen every k steps: applying summed updates every ``k`` steps
(:func:`apply_every`), and the target-network helpers that copy or blend a tree into
another (:func:`periodic_update`, :func:`incremental_update`).

Names, keywords and defaults of optax's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import Array, GradientTransformationExtraArgs, Params, Updates
from optim_fn.core.validation import checks_once


class ApplyEvery(NamedTuple):
    """State of :func:`apply_every` (optax's name): the position in the window and the
    sum of the updates seen in it."""

    count: Array
    grad_acc: Updates


def _check_period(where: str, name: str, value: Any) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{where}: `{name}` must be a positive integer, got {value!r}")


@checks_once
def apply_every(k: int = 1) -> GradientTransformationExtraArgs:
    """Sums the updates of ``k`` consecutive steps and emits the sum on the last of them,
    zeros on the others.

    With ``c_t = (t - 1) mod k`` (``t`` = 1 at the first update):
    ``a_t = g_t + [c_t != 0] a_{t-1}``, ``u_t = [c_t = k - 1] a_t``. The default ``k=1``
    is the identity. Unlike :class:`optim_fn.MultiSteps` the inner optimizer still runs
    every step; this only delays what reaches the params.
    """
    _check_period("apply_every", "k", k)

    def init(params: Params) -> ApplyEvery:
        return ApplyEvery(
            count=jnp.zeros([], jnp.int32), grad_acc=jax.tree.map(jnp.zeros_like, params)
        )

    def update(updates: Updates, state: ApplyEvery, params: Params = None, **extra_args):
        del params, extra_args
        position = state.count % k
        keep = position != 0
        emit = position == k - 1
        grad_acc = jax.tree.map(
            lambda g, acc: jnp.where(keep, acc, jnp.zeros_like(acc)) + g, updates, state.grad_acc
        )
        updates = jax.tree.map(lambda acc: jnp.where(emit, acc, jnp.zeros_like(acc)), grad_acc)
        return updates, ApplyEvery(count=(state.count + 1) % k, grad_acc=grad_acc)

    return GradientTransformationExtraArgs(init, update)


def incremental_update(new_tensors: Any, old_tensors: Any, step_size: Any) -> Any:
    """Polyak averaging of a tree: ``step_size * new + (1 - step_size) * old`` per leaf
    (a target network that follows the online one at rate ``step_size``)."""
    return jax.tree.map(
        lambda new, old: step_size * new + (1.0 - step_size) * old, new_tensors, old_tensors
    )


def periodic_update(new_tensors: Any, old_tensors: Any, steps: Any, update_period: Any) -> Any:
    """``new_tensors`` when ``steps`` is a multiple of ``update_period``, else
    ``old_tensors`` (a target network copied every ``update_period`` steps)."""
    take_new = jnp.mod(steps, update_period) == 0
    return jax.lax.cond(take_new, lambda: new_tensors, lambda: old_tensors)
