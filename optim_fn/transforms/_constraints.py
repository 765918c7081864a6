"""Keeping params in a set: :func:`keep_params_nonnegative` (optax's name and behaviour).

For projections of arbitrary trees onto convex sets see :mod:`optim_fn.projections`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import GradientTransformationExtraArgs, Params, Updates
from optim_fn.core.validation import checks_once


class NonNegativeParamsState(NamedTuple):
    """State of :func:`keep_params_nonnegative`: nothing."""


@checks_once
def keep_params_nonnegative() -> GradientTransformationExtraArgs:
    """Changes each update so that ``params + u >= 0``: where ``p + g < 0`` the update is
    ``-p`` (the param lands on 0), elsewhere ``g``. Place it last in a chain; ``update``
    needs ``params``. Params that start negative are not made non-negative by a zero
    gradient (``p + 0 < 0`` gives ``-p``, so they are moved to 0 at the first update).
    """

    def init(params: Params) -> NonNegativeParamsState:
        del params
        return NonNegativeParamsState()

    def update(updates: Updates, state: NonNegativeParamsState, params: Params = None, **extra):
        del extra
        if params is None:
            raise ValueError("keep_params_nonnegative: `update` needs `params`")
        updates = jax.tree.map(
            lambda p, g: jnp.where(p + g < 0.0, -p, g).astype(jnp.asarray(g).dtype),
            params,
            updates,
        )
        return updates, state

    return GradientTransformationExtraArgs(init, update)
