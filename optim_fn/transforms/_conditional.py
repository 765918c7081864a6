"""Wrappers that run a transform only at some steps, or only on finite gradients.

* :func:`apply_if_finite` skips updates whose gradients hold a NaN or an inf, and gives
  up (applies the update) after ``max_consecutive_errors`` skips in a row.
* :func:`conditionally_transform` calls the inner transform when a predicate of the step
  count says so, and passes the updates through unchanged otherwise;
  :func:`conditionally_mask` zeroes them instead.

Names, keywords and state fields are optax's. One deliberate difference, in
:func:`apply_if_finite`: after giving up, the counter of consecutive bad steps starts
again from 0. optax keeps counting, so once it has given up every later NaN update is
applied too (its PR #1746); here the next NaN is skipped again, up to
``max_consecutive_errors`` in a row. Skipped steps return ``-0.0`` updates, which leave
the params bit-for-bit unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import (
    Array,
    GradientTransformation,
    GradientTransformationExtraArgs,
    Params,
    Updates,
    compiled_when_eager,
    with_extra_args,
)
from optim_fn.core.numerics import safe_increment
from optim_fn.core.validation import checks_once
from optim_fn.transforms._accumulation import output_like, unchanged_updates
from optim_fn.tree._math import all_finite


def _check_transform(where: str, inner: Any) -> None:
    if not (hasattr(inner, "init") and hasattr(inner, "update")):
        raise TypeError(
            f"{where}: `inner` is {inner!r}, not a gradient transformation (did you pass "
            "an optimizer factory without calling it?)"
        )




class ApplyIfFiniteState(NamedTuple):
    """State of :func:`apply_if_finite`.

    Attributes:
      notfinite_count: non-finite updates in a row, reset to 0 by a finite update and
        after giving up.
      last_finite: whether the latest update was finite.
      total_notfinite: non-finite updates since ``init`` (never reset).
      inner_state: the wrapped transform's state.
    """

    notfinite_count: Array
    last_finite: Array
    total_notfinite: Array
    inner_state: Any


@checks_once
def apply_if_finite(
    inner: GradientTransformation, max_consecutive_errors: int
) -> GradientTransformationExtraArgs:
    """Skips updates with a NaN or inf, up to ``max_consecutive_errors`` in a row.

    A skipped step leaves the inner state untouched and returns updates that leave the
    params unchanged. The ``(max_consecutive_errors + 1)``-th bad step in a row is
    applied (the wrapper gives up, as a persistent NaN means the run is broken and
    should fail visibly), and the count of bad steps in a row starts again from 0.
    """
    _check_transform("apply_if_finite", inner)
    if (
        isinstance(max_consecutive_errors, bool)
        or not isinstance(max_consecutive_errors, int)
        or max_consecutive_errors < 0
    ):
        raise ValueError(
            "apply_if_finite: `max_consecutive_errors` must be an int >= 0, "
            f"got {max_consecutive_errors!r}"
        )
    inner = with_extra_args(inner)

    def init(params: Params) -> ApplyIfFiniteState:
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros([], jnp.int32),
            last_finite=jnp.ones([], jnp.bool_),
            total_notfinite=jnp.zeros([], jnp.int32),
            inner_state=inner.init(params),
        )

    def update(updates: Updates, state: ApplyIfFiniteState, params: Params = None, **extra):
        finite = all_finite(updates)
        in_a_row = jnp.where(finite, 0, safe_increment(state.notfinite_count))
        give_up = in_a_row > max_consecutive_errors
        out_like = output_like(inner, updates, state.inner_state, params, extra)
        new_updates, inner_state = jax.lax.cond(
            finite | give_up,
            lambda: inner.update(updates, state.inner_state, params, **extra),
            lambda: (unchanged_updates(out_like), state.inner_state),
        )
        return new_updates, ApplyIfFiniteState(
            notfinite_count=jnp.where(give_up, 0, in_a_row).astype(jnp.int32),
            last_finite=finite,
            total_notfinite=jnp.where(
                finite, state.total_notfinite, safe_increment(state.total_notfinite)
            ),
            inner_state=inner_state,
        )

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))


# ----------------------------------------------------------------------------------------
# Step-conditioned wrappers.


class ConditionallyTransformState(NamedTuple):
    inner_state: Any
    step: Array


class ConditionallyMaskState(NamedTuple):
    step: Array
    inner_state: Any


def _condition(should_transform_fn, step, forward_extra_args, extra_args) -> Array:
    flag = should_transform_fn(step, **(extra_args if forward_extra_args else {}))
    flag = jnp.asarray(flag)
    if flag.shape != ():
        raise ValueError(
            "should_transform_fn must return a scalar bool, got an array of shape "
            f"{flag.shape}"
        )
    return flag.astype(jnp.bool_)


@checks_once
def conditionally_transform(
    inner: GradientTransformation,
    should_transform_fn: Callable[..., Array],
    forward_extra_args: bool = False,
) -> GradientTransformationExtraArgs:
    """Calls ``inner`` when ``should_transform_fn(step)`` is True; else passes updates on.

    ``step`` counts the calls so far (0 at the first). When the condition is False the
    updates come back unchanged and the inner state is kept. With
    ``forward_extra_args=True`` the extra ``update`` arguments also reach
    ``should_transform_fn``. Example: weight decay every 10 steps only::

        optim_fn.conditionally_transform(optim_fn.add_decayed_weights(1e-3),
                                         lambda step: step % 10 == 0)
    """
    _check_transform("conditionally_transform", inner)
    inner = with_extra_args(inner)

    def init(params: Params) -> ConditionallyTransformState:
        return ConditionallyTransformState(inner.init(params), jnp.zeros([], jnp.int32))

    def update(updates, state: ConditionallyTransformState, params=None, **extra_args):
        flag = _condition(should_transform_fn, state.step, forward_extra_args, extra_args)
        new_updates, inner_state = jax.lax.cond(
            flag,
            lambda: inner.update(updates, state.inner_state, params, **extra_args),
            lambda: (updates, state.inner_state),
        )
        return new_updates, ConditionallyTransformState(inner_state, safe_increment(state.step))

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))


@checks_once
def conditionally_mask(
    inner: GradientTransformation,
    should_transform_fn: Callable[..., Array],
    forward_extra_args: bool = False,
) -> GradientTransformationExtraArgs:
    """Calls ``inner`` when ``should_transform_fn(step)`` is True; else returns zero updates.

    Like :func:`conditionally_transform`, but a step without the condition makes no
    change to the params (the updates are ``-0.0``).
    """
    _check_transform("conditionally_mask", inner)
    inner = with_extra_args(inner)

    def init(params: Params) -> ConditionallyMaskState:
        return ConditionallyMaskState(jnp.zeros([], jnp.int32), inner.init(params))

    def update(updates, state: ConditionallyMaskState, params=None, **extra_args):
        flag = _condition(should_transform_fn, state.step, forward_extra_args, extra_args)
        out_like = output_like(inner, updates, state.inner_state, params, extra_args)
        new_updates, inner_state = jax.lax.cond(
            flag,
            lambda: inner.update(updates, state.inner_state, params, **extra_args),
            lambda: (unchanged_updates(out_like), state.inner_state),
        )
        return new_updates, ConditionallyMaskState(safe_increment(state.step), inner_state)

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))
