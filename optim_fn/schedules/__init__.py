"""Schedules: functions of the step count, accepted wherever a hyperparameter is.

A schedule maps the step count (an int32 scalar, 0 at the first update) to a scalar.
Any hyperparameter of any optim_fn transform may be a schedule; the value it produced
at the latest step is readable with :func:`optim_fn.get_hyperparams`::

    lr = optim_fn.warmup_cosine_decay_schedule(0.0, 1e-3, warmup_steps=100, decay_steps=10_000)
    opt = optim_fn.adamw(lr)
    ...
    optim_fn.get_hyperparams(state)["learning_rate"]   # the rate used at the latest step

Every schedule here has the name, keywords and defaults of its optax counterpart and
agrees with it to float32 rounding (``tests/test_schedules.py`` checks 1000 steps of each
against optax and against the closed form evaluated in float64). Each is a handful of
scalar ``jnp`` operations, safe under ``jit``/``vmap``. Integer work (clipping the count
to a window, staircase division) is done on the int32 count before converting to float,
so the schedules stay exact past 2^24 steps, where float32 can no longer count.

Differences from optax (all construction-time errors where optax silently did something
else): a negative ``transition_steps`` / ``transition_begin`` / ``decay_steps``, or
``decay_rate <= 0`` in :func:`exponential_decay`, raise ``ValueError`` (optax clamps them
or returns a constant); ``decay_rate == 0`` would be a constant ``init_value`` in optax.

To scale a schedule at run time (without recompiling), give it wrapped in
:func:`with_multiplier` and set ``<name>_multiplier`` with :func:`optim_fn.set_hyperparams`.
"""

from optim_fn.core.hyperparams import with_multiplier
from optim_fn.schedules._composite import (
    cosine_onecycle_schedule,
    join_schedules,
    linear_onecycle_schedule,
    sgdr_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from optim_fn.schedules._decay import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    linear_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
    polynomial_schedule,
)

__all__ = [
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "exponential_decay",
    "join_schedules",
    "linear_onecycle_schedule",
    "linear_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
    "with_multiplier",
]
