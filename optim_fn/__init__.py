"""optim_fn: deep-learning optimizers for JAX, exact to their definitions.

Every optimizer is a pure ``(init, update)`` pair over pytrees that speaks optax's
protocol (:class:`optax.GradientTransformationExtraArgs`). Hyperparameters live in the
optimizer state: read them with :func:`get_hyperparams`, change them with
:func:`set_hyperparams`, without recompiling.
"""

from optim_fn.base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    Schedule,
    apply_updates,
    identity,
    with_extra_args,
)
from optim_fn.combine import MaskedState, chain, masked
from optim_fn.hyperparams import Hyperparams, get_hyperparams, set_hyperparams
from optim_fn.optimizers import adadelta, adagrad, adam, adamw, rmsprop, sgd
from optim_fn.rule_transform import Slot, rule_transform, safe_increment
from optim_fn.schedules import constant_schedule
from optim_fn.transforms import (
    AddDecayedWeightsState,
    ScaleByAdadeltaState,
    ScaleByAdamState,
    ScaleByLearningRateState,
    ScaleByRmsState,
    ScaleByRssState,
    ScaleByStddevState,
    TraceState,
    add_decayed_weights,
    scale_by_adadelta,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
    trace,
)

__version__ = "0.1.0"

__all__ = [
    "AddDecayedWeightsState",
    "EmptyState",
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "Hyperparams",
    "MaskedState",
    "ScalarOrSchedule",
    "ScaleByAdadeltaState",
    "ScaleByAdamState",
    "ScaleByLearningRateState",
    "ScaleByRmsState",
    "ScaleByRssState",
    "ScaleByStddevState",
    "Schedule",
    "Slot",
    "TraceState",
    "adadelta",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "constant_schedule",
    "get_hyperparams",
    "identity",
    "masked",
    "rmsprop",
    "rule_transform",
    "safe_increment",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_stddev",
    "set_hyperparams",
    "sgd",
    "trace",
    "with_extra_args",
]
