"""Schedules: functions of the step count, accepted wherever a hyperparameter is.

A schedule maps the step count (an int32 scalar, 0 at the first update) to a scalar.
Any hyperparameter of any optim_fn transform may be a schedule; the value it produced
at the latest step is readable with :func:`optim_fn.get_hyperparams`.
"""

from __future__ import annotations

import jax.numpy as jnp

from optim_fn.base import Array, Schedule


def constant_schedule(value: float) -> Schedule:
    """The schedule that returns ``value`` at every step."""

    def schedule(count: Array) -> Array:
        del count
        return jnp.asarray(value, jnp.float32)

    return schedule
