"""Lifts an update rule, written as plain math on arrays, into a transform over pytrees.

A *rule* is a function of one gradient array and the matching state arrays (the
*slots*: moments, accumulators), plus scalar keyword arguments (hyperparameters, the step
count). It returns the update and the new slots::

    def adam(grad, mu, nu, *, count, b1, one_minus_b1, b2, one_minus_b2, eps, eps_root):
        mu = b1 * mu + one_minus_b1 * grad
        ...
        return update, mu, nu

:func:`rule_transform` does the rest once for every rule: state creation with the
params' structure, placement and dtypes; structure and shape checks on ``update``;
hyperparameters stored as data (see :mod:`optim_fn.hyperparams`); the saturating step
count; casting updates back to the gradient's dtype and slots back to their own. The
same rule can therefore run on a tree, on flat buffers or on sharded arrays.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn import hyperparams as hp
from optim_fn.base import (
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    compiled_when_eager,
)
from optim_fn.tree_utils import (
    check_params,
    flatten_matching,
    replicate_scalars_like_params,
    tree_full_like,
)

INT32_MAX = jnp.iinfo(jnp.int32).max


class Slot(NamedTuple):
    """A piece of per-parameter state: its field name, initial value and dtype.

    ``dtype=None`` means the param's own dtype.
    """

    name: str
    initial_value: float = 0.0
    dtype: Any = None


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the int32 maximum instead of wrapping to negative."""
    return jnp.where(count < INT32_MAX, count + 1, count).astype(count.dtype)


def rule_transform(
    rule: Callable[..., Any],
    state_type: type,
    *,
    slots: Sequence[Slot] = (),
    hyperparams: Mapping[str, ScalarOrSchedule] | None = None,
    decays: Sequence[str] = (),
    static: Mapping[str, Any] | None = None,
    uses_params: bool = False,
    name: str,
) -> GradientTransformationExtraArgs:
    """Builds the ``(init, update)`` pair that applies ``rule`` leaf by leaf.

    Args:
      rule: ``rule(grad, *slot_values, [param=...], [count=...], **hyperparams,
        **static) -> (update, *new_slot_values)``.
      state_type: a NamedTuple with fields ``count``, one per slot, and ``hyperparams``.
      slots: the per-parameter state, in the order the rule takes and returns it.
      hyperparams: scalar hyperparameters (numbers or schedules), stored in the state.
      decays: names among ``hyperparams`` that are decay rates; the rule also receives
        ``one_minus_<name>`` computed at full precision.
      static: Python values fixed at construction (flags such as ``nesterov``).
      uses_params: the rule needs the params (passed as ``param=``); ``update`` then
        raises if called without them.
      name: the public name, used in error messages.
    """
    specs = dict(hyperparams or {})
    decay_names = frozenset(decays)
    static = dict(static or {})
    wants_count = "count" in inspect.signature(rule).parameters

    def init(params):
        check_params(params, name)
        dtype = hp.storage_dtype(params)
        slot_trees = {s.name: tree_full_like(params, s.initial_value, s.dtype) for s in slots}
        state = state_type(
            count=jnp.zeros([], jnp.int32),
            **slot_trees,
            hyperparams=hp.init_hyperparams(specs, decay_names, dtype),
        )
        return replicate_scalars_like_params(state, params)

    def update(grads, state, params=None, **extra_args):
        del extra_args
        # A tree with no leaves (e.g. everything masked out) needs no params.
        if uses_params and params is None and jax.tree.leaves(grads):
            raise ValueError(
                f"{name} needs the params: call `update(grads, state, params)` with the "
                "current params"
            )
        trees = {s.name: getattr(state, s.name) for s in slots}
        if uses_params:
            trees["params"] = params
        treedef, grad_leaves, flat = flatten_matching(grads, "grads", **trees)
        if uses_params:
            check_params(params, name)

        hyperparams_now = hp.step_hyperparams(state.hyperparams, specs, decay_names, state.count)
        count = safe_increment(state.count)
        keywords = {**hp.as_keywords(hyperparams_now), **static}
        if wants_count:
            keywords["count"] = count

        update_leaves = []
        new_slot_leaves: list[list[Any]] = [[] for _ in slots]
        for index, grad in enumerate(grad_leaves):
            slot_values = [flat[s.name][index] for s in slots]
            if uses_params:
                keywords["param"] = flat["params"][index]
            update, *new_values = rule(grad, *slot_values, **keywords)
            update_leaves.append(jnp.asarray(update).astype(grad.dtype))
            for collected, old, new in zip(new_slot_leaves, slot_values, new_values, strict=True):
                collected.append(jnp.asarray(new).astype(old.dtype))

        new_slots = {
            s.name: jax.tree.unflatten(treedef, leaves)
            for s, leaves in zip(slots, new_slot_leaves, strict=True)
        }
        new_state = state_type(count=count, **new_slots, hyperparams=hyperparams_now)
        return jax.tree.unflatten(treedef, update_leaves), new_state

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))
