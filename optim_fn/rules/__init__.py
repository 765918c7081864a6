"""The update rules, as plain math on arrays, one module per family.

Each rule takes one gradient array, the state arrays of the same shape, and scalar
hyperparameters, and returns ``(update, *new_state)``. Nothing here knows about pytrees,
optax or jit: :func:`optim_fn.core.lift.rule_transform` lifts a rule over trees,
and the same function serves flat buffers and sharded arrays.
"""

from optim_fn import _legacy
from optim_fn.rules.adam_variants import (
    acprop,
    adamax,
    adan,
    ademamix,
    adopt,
    amsgrad,
    belief,
    ema,
    optimistic_gradient,
    radam,
    simplified_ademamix,
    yogi,
)
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
from optim_fn.rules.factored import factored_rms, sm3
from optim_fn.rules.laprop import laprop, laprop_corrections
from optim_fn.rules.layerwise import (
    fromage_step,
    novograd,
    param_block_norm,
    param_block_rms,
    trust_ratio,
)
from optim_fn.rules.signs import lion, rprop, sign

__all__ = [
    "abs_sq",
    "acprop",
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
    # the optimizer family (issue 4)
    "adamax",
    "adan",
    "ademamix",
    "adopt",
    "amsgrad",
    "belief",
    "ema",
    "factored_rms",
    "fromage_step",
    "laprop",
    "laprop_corrections",
    "lion",
    "novograd",
    "optimistic_gradient",
    "param_block_norm",
    "param_block_rms",
    "radam",
    "rprop",
    "sign",
    "simplified_ademamix",
    "sm3",
    "trust_ratio",
    "yogi",
]

__getattr__ = _legacy.fallback(__name__)  # names this module held before the layout
