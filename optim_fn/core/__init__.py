"""The protocol and the lifting machinery, which every optimizer is built on.

* :mod:`~optim_fn.core.base`: optax's protocol (``init``/``update``), ``apply_updates``.
* :mod:`~optim_fn.core.hyperparams`: hyperparameters stored as data in the state,
  :func:`get_hyperparams` / :func:`set_hyperparams`.
* :mod:`~optim_fn.core.lift`: the one lifter, :func:`rule_transform`, that turns a rule
  written on arrays into a transform over pytrees.
* :mod:`~optim_fn.core.validation`: the argument checks, each run once at the public entry.
* :mod:`~optim_fn.core.numerics`: array helpers (widening, ``|x|^2``, the saturating counter).
"""

from optim_fn.core.base import (
    Array,
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    Updates,
    apply_updates,
    identity,
    with_extra_args,
)
from optim_fn.core.hyperparams import (
    Hyperparams,
    ReadOnlyHyperparameterError,
    get_hyperparams,
    set_hyperparams,
    with_multiplier,
)
from optim_fn.core.lift import (
    Slot,
    leafwise_transform,
    rule_transform,
)
from optim_fn.core.numerics import (
    safe_increment,
)

__all__ = [
    "Array",
    "EmptyState",
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "Hyperparams",
    "OptState",
    "Params",
    "ReadOnlyHyperparameterError",
    "ScalarOrSchedule",
    "Schedule",
    "Slot",
    "Updates",
    "apply_updates",
    "get_hyperparams",
    "identity",
    "leafwise_transform",
    "rule_transform",
    "safe_increment",
    "set_hyperparams",
    "with_extra_args",
    "with_multiplier",
]
