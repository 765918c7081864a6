"""The update rules, as plain math on arrays, one module per family.

Each rule takes one gradient array, the state arrays of the same shape, and scalar
hyperparameters, and returns ``(update, *new_state)``. Nothing here knows about pytrees,
optax or jit: :func:`optim_fn.rule_transform.rule_transform` lifts a rule over trees,
and the same function serves flat buffers and sharded arrays.
"""

from optim_fn.rules.classic import (
    abs_sq,
    adadelta,
    adam,
    add_decayed_weights,
    debias,
    moving_average,
    rms,
    rss,
    scale_by_learning_rate,
    stddev,
    trace,
)

__all__ = [
    "abs_sq",
    "adadelta",
    "adam",
    "add_decayed_weights",
    "debias",
    "moving_average",
    "rms",
    "rss",
    "scale_by_learning_rate",
    "stddev",
    "trace",
]
