"""optim_fn: deep-learning optimizers for JAX, exact to their definitions.

Every optimizer is a pure ``(init, update)`` pair over pytrees that speaks optax's
protocol (:class:`optax.GradientTransformationExtraArgs`). Hyperparameters live in the
optimizer state: read them with :func:`get_hyperparams`, change them with
:func:`set_hyperparams`, without recompiling.

The package, by layer (see ``docs/architecture.md``):

* :mod:`optim_fn.core`: the protocol, hyperparameters as data, and the one lifter that
  turns a rule on arrays into a transform over pytrees;
* :mod:`optim_fn.tree`: tree math (norms, inner products, finiteness) and tree paths;
* :mod:`optim_fn.rules`: every update rule as plain math on arrays, one module per family;
* :mod:`optim_fn.optimizers`: the optimizers, one module per family (blocks, states,
  aliases), every name also here at the top level;
* :mod:`optim_fn.transforms`: combining, masking, partitioning, clipping, accumulation,
  averaging, conditional and non-finite handling, line searches;
* :mod:`optim_fn.schedules`, :mod:`optim_fn.flat` (flat mode), :mod:`optim_fn.sharding`;
* :mod:`optim_fn.contrib` (optax.contrib's optimizers), :mod:`optim_fn.torch` (the
  PyTorch face), :mod:`optim_fn.experiments` and :mod:`optim_fn.testing`, the last three
  loaded on first use.
"""

import importlib as _importlib

from optim_fn import _legacy
from optim_fn import contrib as contrib
from optim_fn import core as core
from optim_fn import flat as flat
from optim_fn import optimizers as optimizers
from optim_fn import rules as rules
from optim_fn import schedules as schedules
from optim_fn import sharding as sharding
from optim_fn import transforms as transforms
from optim_fn import tree as tree

# The protocol, hyperparameters, the lifter.
from optim_fn.core import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    Hyperparams,
    ScalarOrSchedule,
    Schedule,
    Slot,
    apply_updates,
    get_hyperparams,
    identity,
    rule_transform,
    set_hyperparams,
)

# The optimizers and their building blocks.
from optim_fn.optimizers import (
    AddDecayedWeightsState,
    AddNoiseState,
    FactoredState,
    ScaleByAdadeltaState,
    ScaleByAdamaxState,
    ScaleByAdamState,
    ScaleByAdanState,
    ScaleByAmsgradState,
    ScaleByBeliefState,
    ScaleByLBFGSState,
    ScaleByLearningRateState,
    ScaleByLionState,
    ScaleByNovogradState,
    ScaleByOptimisticGradientState,
    ScaleByParamBlockNormState,
    ScaleByParamBlockRmsState,
    ScaleByPolyakState,
    ScaleByRAdamState,
    ScaleByRmsState,
    ScaleByRpropState,
    ScaleByRssState,
    ScaleBySignState,
    ScaleBySM3State,
    ScaleByStddevState,
    ScaleByTrustRatioState,
    ScaleByYogiState,
    TraceState,
    adabelief,
    adadelta,
    adafactor,
    adagrad,
    adam,
    adamax,
    adamaxw,
    adamw,
    adan,
    add_decayed_weights,
    add_noise,
    amsgrad,
    fromage,
    lamb,
    lars,
    lbfgs,
    lion,
    nadam,
    nadamw,
    noisy_sgd,
    novograd,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    polyak_sgd,
    radam,
    rmsprop,
    rprop,
    scale_by_adadelta,
    scale_by_adam,
    scale_by_adamax,
    scale_by_adan,
    scale_by_amsgrad,
    scale_by_belief,
    scale_by_factored_rms,
    scale_by_lbfgs,
    scale_by_learning_rate,
    scale_by_lion,
    scale_by_novograd,
    scale_by_optimistic_gradient,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_polyak,
    scale_by_radam,
    scale_by_rms,
    scale_by_rprop,
    scale_by_rss,
    scale_by_sign,
    scale_by_sm3,
    scale_by_stddev,
    scale_by_trust_ratio,
    scale_by_yogi,
    sgd,
    sign_sgd,
    signum,
    sm3,
    trace,
    yogi,
)

# Schedules.
from optim_fn.schedules import (
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    exponential_decay,
    join_schedules,
    linear_onecycle_schedule,
    linear_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
    polynomial_schedule,
    sgdr_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)

# Sharded and multi-process state.
from optim_fn.sharding import partition_state, per_device_bytes, state_shardings

# Transforms that are not optimizers.
from optim_fn.transforms import (
    AdaptiveGradClipState,
    ApplyIfFiniteState,
    BacktrackingLinesearchInfo,
    ClipByBlockRmsState,
    ClipByGlobalNormState,
    ClipState,
    ConditionallyMaskState,
    ConditionallyTransformState,
    EmaParamsState,
    EmaState,
    InjectHyperparamsState,
    LookaheadParams,
    LookaheadState,
    MaskedState,
    MultiSteps,
    MultiStepsState,
    NonFiniteState,
    PartitionState,
    ReduceLROnPlateauState,
    ScaleByBacktrackingLinesearchState,
    ScaleByZoomLinesearchState,
    ScaleState,
    ShouldSkipUpdateFunction,
    ZoomLinesearchInfo,
    adaptive_grad_clip,
    apply_if_finite,
    chain,
    clip,
    clip_by_block_rms,
    clip_by_global_norm,
    conditionally_mask,
    conditionally_transform,
    ema,
    ema_params,
    freeze,
    inject_hyperparams,
    lookahead,
    masked,
    multi_transform,
    nonfinite_policy,
    partition,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
    reduce_on_plateau,
    scale,
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    selective_transform,
    set_to_zero,
    skip_large_updates,
    skip_not_finite,
    unitwise_norm,
    value_and_grad_from_state,
)

# Tree math and parameter paths.
from optim_fn.tree import global_norm, path_labels, path_mask

__version__ = "0.1.0"

_legacy.protect(__name__)

# Loaded on first use: the torch face, the experiments (matplotlib, scikit-learn) and the
# test helpers are not needed to train, and importing them costs seconds.
_LAZY_SUBPACKAGES = ("experiments", "testing", "torch")


def __getattr__(name: str):
    if name in _LAZY_SUBPACKAGES:
        return _importlib.import_module(f"optim_fn.{name}")
    return _legacy.top_level_attribute(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBPACKAGES))


__all__ = [
    # the protocol, hyperparameters, the lifter
    "EmptyState",
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "Hyperparams",
    "ScalarOrSchedule",
    "Schedule",
    "Slot",
    "apply_updates",
    "get_hyperparams",
    "identity",
    "rule_transform",
    "set_hyperparams",
    # optimizers
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "amsgrad",
    "fromage",
    "lamb",
    "lars",
    "lbfgs",
    "lion",
    "nadam",
    "nadamw",
    "noisy_sgd",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
    "sign_sgd",
    "signum",
    "sm3",
    "yogi",
    # building blocks and their states
    "AddDecayedWeightsState",
    "AddNoiseState",
    "FactoredState",
    "ScaleByAdadeltaState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByAdanState",
    "ScaleByAmsgradState",
    "ScaleByBeliefState",
    "ScaleByLBFGSState",
    "ScaleByLearningRateState",
    "ScaleByLionState",
    "ScaleByNovogradState",
    "ScaleByOptimisticGradientState",
    "ScaleByParamBlockNormState",
    "ScaleByParamBlockRmsState",
    "ScaleByPolyakState",
    "ScaleByRAdamState",
    "ScaleByRmsState",
    "ScaleByRpropState",
    "ScaleByRssState",
    "ScaleBySM3State",
    "ScaleBySignState",
    "ScaleByStddevState",
    "ScaleByTrustRatioState",
    "ScaleByYogiState",
    "TraceState",
    "add_decayed_weights",
    "add_noise",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_adan",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_factored_rms",
    "scale_by_lbfgs",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_novograd",
    "scale_by_optimistic_gradient",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_polyak",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_rss",
    "scale_by_sign",
    "scale_by_sm3",
    "scale_by_stddev",
    "scale_by_trust_ratio",
    "scale_by_yogi",
    "trace",
    # combining, masking, partitioning
    "MaskedState",
    "PartitionState",
    "chain",
    "freeze",
    "masked",
    "multi_transform",
    "partition",
    "path_labels",
    "path_mask",
    "selective_transform",
    "set_to_zero",
    # clipping
    "AdaptiveGradClipState",
    "ClipByBlockRmsState",
    "ClipByGlobalNormState",
    "ClipState",
    "adaptive_grad_clip",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "global_norm",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "unitwise_norm",
    # accumulation, averaging, conditional and non-finite handling, scaling
    "ApplyIfFiniteState",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "EmaParamsState",
    "EmaState",
    "InjectHyperparamsState",
    "LookaheadParams",
    "LookaheadState",
    "MultiSteps",
    "MultiStepsState",
    "NonFiniteState",
    "ReduceLROnPlateauState",
    "ScaleState",
    "ShouldSkipUpdateFunction",
    "apply_if_finite",
    "conditionally_mask",
    "conditionally_transform",
    "ema",
    "ema_params",
    "inject_hyperparams",
    "lookahead",
    "nonfinite_policy",
    "reduce_on_plateau",
    "scale",
    "skip_large_updates",
    "skip_not_finite",
    # line searches
    "BacktrackingLinesearchInfo",
    "ScaleByBacktrackingLinesearchState",
    "ScaleByZoomLinesearchState",
    "ZoomLinesearchInfo",
    "scale_by_backtracking_linesearch",
    "scale_by_zoom_linesearch",
    "value_and_grad_from_state",
    # schedules
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
    # sharded state
    "partition_state",
    "per_device_bytes",
    "state_shardings",
    # subpackages
    "contrib",
    "core",
    "experiments",
    "flat",
    "optimizers",
    "rules",
    "schedules",
    "sharding",
    "testing",
    "torch",
    "transforms",
    "tree",
]
