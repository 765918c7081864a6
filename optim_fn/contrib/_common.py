"""Helpers shared by the contrib optimizers: tree reductions and param-copy slots."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from optim_fn.core.base import GradientTransformationExtraArgs


def require_params(params: Any, who: str) -> None:
    if params is None:
        raise ValueError(
            f"{who} needs the params: call `update(grads, state, params)` with the current params"
        )


def require_value(value: Any, who: str) -> None:
    if value is None:
        raise ValueError(
            f"{who} needs the loss: call `update(grads, state, params, value=loss)` (e.g. "
            "with `loss, grads = jax.value_and_grad(f)(params)`)"
        )


def copy_params(params: Any, dtype: Any = None) -> Any:
    """A copy of ``params`` (cast to ``dtype`` if given): a state slot that starts at them."""
    return jax.tree.map(lambda p: jnp.array(p, dtype=dtype or jnp.asarray(p).dtype), params)


def start_slots_at_params(
    transform: GradientTransformationExtraArgs, *slot_names: str
) -> GradientTransformationExtraArgs:
    """Makes the named slots of a ``rule_transform`` start at a copy of the params.

    ``rule_transform`` starts every slot at a constant; rules that remember where they
    started (COCOB's initial particles, MADGRAD's ``x0``) need the params instead.
    """

    def init(params):
        state = transform.init(params)
        return state._replace(**{name: copy_params(params) for name in slot_names})

    return GradientTransformationExtraArgs(init, transform.update)
