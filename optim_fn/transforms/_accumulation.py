"""Gradient accumulation over micro-steps: :class:`MultiSteps` (optax's name and API).

A large batch that does not fit in memory is split into ``k`` micro-batches; the
gradients are summed over ``k`` calls and the wrapped optimizer runs once on their mean::

    opt = optim_fn.MultiSteps(optim_fn.adamw(1e-3), every_k_schedule=4)
    state = opt.init(params)
    for micro_batch in batches:
        grads = jax.grad(loss)(params, micro_batch)
        updates, state = opt.update(grads, state, params)   # zeros on 3 calls of 4
        params = optim_fn.apply_updates(params, updates)

Memory: the state is the wrapped optimizer's state plus one accumulator the size of the
params, nothing else. The wrapped optimizer runs only on the emitting micro-step (under
``lax.cond``), so the other micro-steps cost one addition per parameter.

Differences from :class:`optax.MultiSteps`: the accumulator holds the running *sum*
(divided by the number of micro-steps when emitting), so ``k`` micro-steps give exactly
the update of one step on ``(g_1 + ... + g_k) / k``; optax keeps a running mean
``a + (g - a) / n`` whose rounding differs. The default ``accumulator_dtype=None`` is
float32 or the gradient's dtype if wider (optax's float32 default silently truncates
float64 gradients). Updates on non-emitting steps are ``-0.0``, which leaves every param
bit-for-bit unchanged (``p + 0.0`` would turn ``-0.0`` into ``+0.0``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

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


def unchanged_updates(like: Any) -> Any:
    """Updates that leave params bit-for-bit unchanged: ``-0.0`` shaped like ``like``.

    ``like`` may hold arrays or ``jax.ShapeDtypeStruct`` leaves.
    """

    def zero(leaf):
        dtype = jnp.dtype(leaf.dtype)
        value = complex(-0.0, -0.0) if jnp.issubdtype(dtype, jnp.complexfloating) else -0.0
        return jnp.full(leaf.shape, value, dtype)

    return jax.tree.map(zero, like)


def output_like(transform: GradientTransformationExtraArgs, updates, state, params, extra_args):
    """The shapes and dtypes ``transform.update`` returns for these inputs (no compute)."""

    def run():
        return transform.update(updates, state, params, **extra_args)[0]

    return jax.eval_shape(run)


class ShouldSkipUpdateFunction(Protocol):
    def __call__(
        self, updates: Updates, gradient_step: Array, params: Params | None
    ) -> tuple[Array, Any]:
        """Returns ``(skip, info)``: a scalar bool, and a tree kept in ``skip_state``."""


def skip_not_finite(
    updates: Updates, gradient_step: Array, params: Params | None
) -> tuple[Array, dict[str, Array]]:
    """Skip the micro-step if any gradient entry is NaN or infinite.

    Returns ``(skip, {"should_skip": skip, "num_not_finite": count})``.
    """
    del gradient_step, params
    counts = [jnp.sum(~jnp.isfinite(leaf)).astype(jnp.int32) for leaf in jax.tree.leaves(updates)]
    num_not_finite = sum(counts, jnp.zeros([], jnp.int32))
    should_skip = num_not_finite > 0
    return should_skip, {"should_skip": should_skip, "num_not_finite": num_not_finite}


def skip_large_updates(
    updates: Updates, gradient_step: Array, params: Params | None, max_squared_norm: float
) -> tuple[Array, dict[str, Array]]:
    """Skip the micro-step if ``||updates||^2`` is not below ``max_squared_norm`` (or NaN).

    Use with ``functools.partial(skip_large_updates, max_squared_norm=...)``.
    """
    del gradient_step, params
    squares = [
        jnp.sum(jnp.abs(leaf.astype(jnp.promote_types(leaf.dtype, jnp.float32))) ** 2)
        for leaf in jax.tree.leaves(updates)
    ]
    norm_squared = sum(squares, jnp.zeros([], jnp.float32))
    should_skip = ~(norm_squared < max_squared_norm)
    return should_skip, {"should_skip": should_skip, "norm_squared": norm_squared}


def _never_skip(updates, gradient_step, params):
    del updates, gradient_step, params
    return jnp.zeros([], jnp.bool_), ()


class MultiStepsState(NamedTuple):
    """State of :class:`MultiSteps`.

    Attributes:
      mini_step: micro-steps accumulated since the last emitted update (0 to k-1).
      gradient_step: number of emitted updates (the wrapped optimizer's steps).
      inner_opt_state: the wrapped optimizer's state.
      acc_grads: the sum of the gradients of the current micro-steps.
      skip_state: what ``should_skip_update_fn`` returned at the latest call.
    """

    mini_step: Array
    gradient_step: Array
    inner_opt_state: Any
    acc_grads: Any
    skip_state: Any = ()


class MultiSteps:
    """Accumulates gradients over ``k`` micro-steps, then runs the optimizer once.

    Args:
      opt: the wrapped optimizer (optim_fn or optax).
      every_k_schedule: ``k``, an int >= 1, or a function of ``gradient_step`` returning
        it (to grow the effective batch during training).
      use_grad_mean: pass the mean of the ``k`` gradients (default) rather than the sum.
      should_skip_update_fn: ``f(updates, gradient_step, params) -> (skip, info)``; a
        skipped micro-step changes nothing but ``skip_state``. See
        :func:`skip_not_finite` and :func:`skip_large_updates`.
      accumulator_dtype: dtype of the accumulator; ``None`` means float32, or the
        gradient's dtype when it is wider (float64, complex128).

    ``init``/``update`` follow the optax protocol; :meth:`gradient_transformation`
    returns the pair for use in a ``chain``.
    """

    def __init__(
        self,
        opt: GradientTransformation,
        every_k_schedule: int | Callable[[Array], Array],
        use_grad_mean: bool = True,
        should_skip_update_fn: ShouldSkipUpdateFunction | None = None,
        accumulator_dtype: Any = None,
    ):
        if not (hasattr(opt, "init") and hasattr(opt, "update")):
            raise TypeError(
                f"MultiSteps: `opt` is {opt!r}, not a gradient transformation (did you pass "
                "an optimizer factory without calling it?)"
            )
        if not callable(every_k_schedule):
            if isinstance(every_k_schedule, bool) or not isinstance(every_k_schedule, int):
                raise ValueError(
                    "MultiSteps: `every_k_schedule` must be an int >= 1 or a function of "
                    f"the gradient step, got {every_k_schedule!r}"
                )
            if every_k_schedule < 1:
                raise ValueError(
                    f"MultiSteps: `every_k_schedule` must be >= 1, got {every_k_schedule}"
                )
        self._opt = with_extra_args(opt)
        self._every_k = every_k_schedule
        self._use_grad_mean = use_grad_mean
        self._should_skip = should_skip_update_fn or _never_skip
        self._accumulator_dtype = (
            None if accumulator_dtype is None else jnp.dtype(accumulator_dtype)
        )
        self._compiled_update = compiled_when_eager(self._update)

    @property
    def inner_opt(self) -> GradientTransformationExtraArgs:
        return self._opt

    def _k(self, gradient_step: Array) -> Array:
        if callable(self._every_k):
            return jnp.asarray(self._every_k(gradient_step), jnp.int32)
        return jnp.asarray(self._every_k, jnp.int32)

    def _acc_dtype(self, leaf: Any) -> jnp.dtype:
        if self._accumulator_dtype is not None:
            return self._accumulator_dtype
        return jnp.promote_types(jnp.dtype(leaf.dtype), jnp.float32)

    def init(self, params: Params) -> MultiStepsState:
        gradient_step = jnp.zeros([], jnp.int32)
        zeros = jax.tree.map(jnp.zeros_like, params)
        _, skip_state = self._should_skip(zeros, gradient_step, params)
        return MultiStepsState(
            mini_step=jnp.zeros([], jnp.int32),
            gradient_step=gradient_step,
            inner_opt_state=self._opt.init(params),
            acc_grads=jax.tree.map(
                lambda p: jnp.zeros(jnp.shape(p), self._acc_dtype(p)), params
            ),
            skip_state=skip_state,
        )

    def update(
        self, updates: Updates, state: MultiStepsState, params: Params = None, **extra_args
    ) -> tuple[Updates, MultiStepsState]:
        """Adds ``updates`` to the accumulator; on the k-th micro-step runs the optimizer."""
        return self._compiled_update(updates, state, params, **extra_args)

    def _update(self, updates, state: MultiStepsState, params=None, **extra_args):
        skip, skip_state = self._should_skip(updates, state.gradient_step, params)
        skip = jnp.asarray(skip)
        if skip.shape != () or skip.dtype != jnp.bool_:
            raise ValueError(
                "MultiSteps: `should_skip_update_fn` must return a scalar bool array first, "
                f"got dtype {skip.dtype} and shape {skip.shape}"
            )
        acc = jax.tree.map(lambda a, g: a + g.astype(a.dtype), state.acc_grads, updates)
        count = safe_increment(state.mini_step)

        def grads_for_inner():
            divisor = count if self._use_grad_mean else 1
            return jax.tree.map(lambda a, g: (a / divisor).astype(g.dtype), acc, updates)

        out_like = output_like(
            self._opt, grads_for_inner(), state.inner_opt_state, params, extra_args
        )

        def emit():
            new_updates, inner_state = self._opt.update(
                grads_for_inner(), state.inner_opt_state, params, **extra_args
            )
            return (
                new_updates,
                MultiStepsState(
                    mini_step=jnp.zeros([], jnp.int32),
                    gradient_step=safe_increment(state.gradient_step),
                    inner_opt_state=inner_state,
                    acc_grads=jax.tree.map(jnp.zeros_like, acc),
                    skip_state=skip_state,
                ),
            )

        def hold():
            return unchanged_updates(out_like), MultiStepsState(
                count, state.gradient_step, state.inner_opt_state, acc, skip_state
            )

        def skip_step():
            return unchanged_updates(out_like), state._replace(skip_state=skip_state)

        branch = jnp.where(skip, 0, jnp.where(count >= self._k(state.gradient_step), 2, 1))
        return jax.lax.switch(branch, [skip_step, hold, emit])

    def has_updated(self, state: MultiStepsState) -> Array:
        """True right after a micro-step that emitted an update."""
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformationExtraArgs:
        return GradientTransformationExtraArgs(self.init, self.update)

