"""Stateless reshaping of the update itself: centralising, normalising by its norm, a
scale taken from a schedule of the step count, and zeroing NaNs.

Names, keywords and defaults of their optax counterparts (``optax.centralize``,
``optax.normalize_by_update_norm``, ``optax.scale_by_schedule``, ``optax.zero_nans``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    EmptyState,
    GradientTransformationExtraArgs,
    Params,
    Updates,
)
from optim_fn.core.numerics import safe_increment
from optim_fn.core.validation import checks_once
from optim_fn.tree._math import tree_norm


class ScaleByScheduleState(NamedTuple):
    count: Array


class ZeroNansState(NamedTuple):
    found_nan: Any


def _empty_init(params: Params) -> EmptyState:
    del params
    return EmptyState()


def _subtract_mean(x: Array) -> Array:
    x = jnp.asarray(x)
    if x.ndim <= 1:
        return x  # a bias or a scalar has no fan-in axis to centre over
    return x - jnp.mean(x, axis=tuple(range(1, x.ndim)), keepdims=True)


@checks_once
def centralize() -> GradientTransformationExtraArgs:
    """Gradient centralisation: each leaf of rank >= 2 minus its mean over all axes but
    the first, ``u[i] = g[i] - mean_j g[i, j]``; vectors and scalars pass unchanged.

    No arguments, no state (:class:`EmptyState`). Yong et al., *Gradient Centralization*,
    2020 (arXiv:2004.01461).
    """

    def update(updates: Updates, state: EmptyState, params: Params = None, **extra_args):
        del params, extra_args
        return jax.tree.map(_subtract_mean, updates), state

    return GradientTransformationExtraArgs(_empty_init, update)


@checks_once
def normalize_by_update_norm(
    scale_factor: float = 1.0, eps: float = 1e-6
) -> GradientTransformationExtraArgs:
    """``u = scale_factor * g / (||g|| + eps)``, ``||g||`` the global l2 norm of the tree.

    Defaults ``scale_factor=1.0``, ``eps=1e-6`` (optax's). The norm accumulates in float32
    at least (:func:`optim_fn.tree.tree_norm`). No state.
    """
    check.check_scalar("normalize_by_update_norm", "scale_factor", scale_factor)
    check.check_non_negative("normalize_by_update_norm", "eps", eps)

    def update(updates: Updates, state: EmptyState, params: Params = None, **extra_args):
        del params, extra_args
        divisor = (tree_norm(updates) + eps) / scale_factor
        return jax.tree.map(lambda g: (g / divisor).astype(jnp.asarray(g).dtype), updates), state

    return GradientTransformationExtraArgs(_empty_init, update)


@checks_once
def scale_by_schedule(step_size_fn: Callable[[Array], Array]) -> GradientTransformationExtraArgs:
    """``u_t = step_size_fn(t) * g_t`` with ``t`` = 0 at the first update.

    The state is the saturating int32 step count (:class:`ScaleByScheduleState`). Like
    :func:`optax.scale_by_schedule`, no sign flip: pass a negative schedule to descend.
    """
    if not callable(step_size_fn):
        raise TypeError(
            f"scale_by_schedule: `step_size_fn` must be a function of the step count, "
            f"got {step_size_fn!r}"
        )

    def init(params: Params) -> ScaleByScheduleState:
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates: Updates, state: ScaleByScheduleState, params: Params = None, **extra):
        del params, extra
        step_size = step_size_fn(state.count)
        updates = jax.tree.map(
            lambda g: jnp.asarray(step_size * g, dtype=jnp.asarray(g).dtype), updates
        )
        return updates, ScaleByScheduleState(count=safe_increment(state.count))

    return GradientTransformationExtraArgs(init, update)


@checks_once
def zero_nans() -> GradientTransformationExtraArgs:
    """Replaces each NaN entry of the updates by 0; ``found_nan`` (one boolean per leaf)
    records whether the latest update of that leaf had any. Infinities pass unchanged.
    """

    def init(params: Params) -> ZeroNansState:
        return ZeroNansState(jax.tree.map(lambda _: jnp.array(False), params))

    def update(updates: Updates, state: ZeroNansState, params: Params = None, **extra_args):
        del params, extra_args
        found = jax.tree.map(lambda g: jnp.any(jnp.isnan(g)), updates)
        updates = jax.tree.map(lambda g: jnp.where(jnp.isnan(g), jnp.zeros_like(g), g), updates)
        return updates, ZeroNansState(found)

    return GradientTransformationExtraArgs(init, update)
