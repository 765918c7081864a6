"""SAM (sharpness-aware minimization) as a wrapper of an outer and an adversarial optimizer.

A typical setup, as in the paper::

    opt = optim_fn.sgd(lr)
    adv_opt = optim_fn.chain(optim_fn.contrib.normalize(), optim_fn.sgd(rho))
    sam_opt = optim_fn.contrib.sam(opt, adv_opt, sync_period=2)

In the default (transparent) mode each call is one step of the training loop: the first
``sync_period - 1`` steps climb (``p <- p + rho g/||g||``), the last one applies the
outer optimizer's step, computed with the gradient at the climbed point, to the params
cached before the climb. In ``opaque_mode`` one call does all of it, calling
``grad_fn(params, i)`` (an extra argument of ``update``) for the adversarial gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.contrib._common import require_params
from optim_fn.core.base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    apply_updates,
    with_extra_args,
)
from optim_fn.core.validation import checks_once
from optim_fn.tree._math import tree_norm

NormalizeState = EmptyState


class SAMState(NamedTuple):
    steps_since_sync: jax.Array
    opt_state: Any
    adv_state: Any
    cache: Any


@checks_once
def normalize() -> GradientTransformationExtraArgs:
    """``u = g / ||g||`` with the norm over the whole tree (0 where ``g`` is 0).

    optax divides by 0 there and returns NaN.
    """

    def init(params):
        del params
        return NormalizeState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        norm = tree_norm(updates)
        safe = jnp.where(norm > 0, norm, 1.0)
        return jax.tree.map(lambda g: (g / safe).astype(g.dtype), updates), state

    return GradientTransformationExtraArgs(init, update)


def _pick(condition: jax.Array, if_true: Any, if_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), if_true, if_false)


@checks_once
def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradientTransformationExtraArgs:
    """Sharpness-Aware Minimization (Foret, Kleiner, Mobahi & Neyshabur, ICLR 2021).

    .. math::
        \\tilde p = p_t + \\rho \\frac{\\nabla f(p_t)}{\\|\\nabla f(p_t)\\|}, \\qquad
        p_{t+1} = p_t + \\text{optimizer}(\\nabla f(\\tilde p))

    with the climb done by ``adv_optimizer`` (its updates are NEGATED, so an SGD on the
    normalized gradient climbs) for ``sync_period - 1`` steps. ``reset_state`` restarts
    the adversarial optimizer at each outer step. Defaults: ``sync_period=2``,
    ``reset_state=True``, ``opaque_mode=False``. The selection between the two branches
    uses ``where``, so a NaN in the branch not taken does not leak (optax mixes them
    arithmetically). PyTorch: none.
    """
    if isinstance(sync_period, bool) or not isinstance(sync_period, int) or sync_period < 1:
        raise ValueError(f"sam: `sync_period` must be an integer >= 1, got {sync_period!r}")
    optimizer = with_extra_args(optimizer)
    adv_optimizer = with_extra_args(adv_optimizer)

    def init(params):
        return SAMState(
            steps_since_sync=jnp.zeros([], jnp.int32),
            opt_state=optimizer.init(params),
            adv_state=adv_optimizer.init(params),
            cache=None if opaque_mode else params,
        )

    def transparent_update(updates, state, params=None, **extra_args):
        del extra_args
        require_params(params, "sam")
        first_step = state.steps_since_sync == 0
        last_step = state.steps_since_sync == sync_period - 1
        adv_updates, adv_state = adv_optimizer.update(updates, state.adv_state, params)
        adv_updates = jax.tree.map(jnp.negative, adv_updates)
        opt_updates, opt_state = optimizer.update(updates, state.opt_state, state.cache)
        opt_updates = jax.tree.map(lambda c, p, u: c - p + u, state.cache, params, opt_updates)
        cache = _pick(first_step, params, state.cache)
        new_updates = _pick(last_step, opt_updates, adv_updates)
        restart = adv_optimizer.init(params) if reset_state else state.adv_state
        adv_state = _pick(last_step, restart, adv_state)
        opt_state = _pick(last_step, opt_state, state.opt_state)
        steps = (state.steps_since_sync + 1) % sync_period
        return new_updates, SAMState(steps, opt_state, adv_state, cache)

    def opaque_update(
        updates,
        state,
        params=None,
        *,
        grad_fn: Callable[[Any, int], Any] | None = None,
        **extra_args,
    ):
        del extra_args
        require_params(params, "sam")
        if grad_fn is None:
            raise ValueError(
                "sam(opaque_mode=True) needs the gradient function: call "
                "`update(grads, state, params, grad_fn=lambda params, i: grads_at(params))`"
            )
        adv_params, adv_updates, adv_state = params, updates, state.adv_state
        for i in range(sync_period - 1):
            adv_updates, adv_state = adv_optimizer.update(adv_updates, adv_state, adv_params)
            adv_updates = jax.tree.map(jnp.negative, adv_updates)
            adv_params = apply_updates(adv_params, adv_updates)
            adv_updates = grad_fn(adv_params, i)
            if batch_axis_name is not None:
                adv_updates = jax.lax.pmean(adv_updates, axis_name=batch_axis_name)
        if reset_state:
            adv_state = adv_optimizer.init(params)
        new_updates, opt_state = optimizer.update(adv_updates, state.opt_state, params)
        return new_updates, SAMState(jnp.zeros([], jnp.int32), opt_state, adv_state, None)

    return GradientTransformationExtraArgs(
        init, opaque_update if opaque_mode else transparent_update
    )
