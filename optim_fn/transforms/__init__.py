"""Transforms that are not optimizers: combining, masking, partitioning, clipping,
accumulation, averaging, conditional and non-finite handling, line searches, scaling,
centralising and normalising, periodic application, keeping params non-negative.

Each is a ``(init, update)`` pair with a NamedTuple state, like the optimizers, so they
chain with them and with optax's transforms.
"""

from optim_fn import _legacy
from optim_fn.transforms._accumulation import (
    MultiSteps,
    MultiStepsState,
    ShouldSkipUpdateFunction,
    skip_large_updates,
    skip_not_finite,
)
from optim_fn.transforms._averaging import (
    EmaParamsState,
    LookaheadParams,
    LookaheadState,
    ema_params,
    lookahead,
)
from optim_fn.transforms._clipping import (
    AdaptiveGradClipState,
    ClipByBlockRmsState,
    ClipByGlobalNormState,
    ClipState,
    adaptive_grad_clip,
    clip,
    clip_by_block_rms,
    clip_by_global_norm,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
    unitwise_norm,
)
from optim_fn.transforms._combine import (
    MaskedState,
    chain,
    masked,
    named_chain,
)
from optim_fn.transforms._conditional import (
    ApplyIfFiniteState,
    ConditionallyMaskState,
    ConditionallyTransformState,
    apply_if_finite,
    conditionally_mask,
    conditionally_transform,
)
from optim_fn.transforms._constraints import (
    NonNegativeParamsState,
    keep_params_nonnegative,
)
from optim_fn.transforms._elementwise import (
    ScaleByScheduleState,
    ZeroNansState,
    centralize,
    normalize_by_update_norm,
    scale_by_schedule,
    zero_nans,
)
from optim_fn.transforms._inject import (
    InjectHyperparamsState,
    inject_hyperparams,
)
from optim_fn.transforms._linesearch import (
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState,
    scale_by_backtracking_linesearch,
    value_and_grad_from_state,
)
from optim_fn.transforms._linesearch_zoom import (
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    scale_by_zoom_linesearch,
)
from optim_fn.transforms._nonfinite import (
    NonFiniteState,
    nonfinite_policy,
)
from optim_fn.transforms._partition import (
    PartitionState,
    freeze,
    multi_transform,
    partition,
    selective_transform,
    set_to_zero,
)
from optim_fn.transforms._periodic import (
    ApplyEvery,
    apply_every,
    incremental_update,
    periodic_update,
)
from optim_fn.transforms._plateau import (
    ReduceLROnPlateauState,
    reduce_on_plateau,
)
from optim_fn.transforms._scaling import (
    EmaState,
    ScaleState,
    ema,
    scale,
)
from optim_fn.tree._math import (
    global_norm,
)

__all__ = [
    "AdaptiveGradClipState",
    "ApplyEvery",
    "ApplyIfFiniteState",
    "BacktrackingLinesearchInfo",
    "ClipByBlockRmsState",
    "ClipByGlobalNormState",
    "ClipState",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "EmaParamsState",
    "EmaState",
    "InjectHyperparamsState",
    "LookaheadParams",
    "LookaheadState",
    "MaskedState",
    "MultiSteps",
    "MultiStepsState",
    "NonFiniteState",
    "NonNegativeParamsState",
    "PartitionState",
    "ReduceLROnPlateauState",
    "ScaleByBacktrackingLinesearchState",
    "ScaleByScheduleState",
    "ScaleByZoomLinesearchState",
    "ScaleState",
    "ShouldSkipUpdateFunction",
    "ZeroNansState",
    "ZoomLinesearchInfo",
    "adaptive_grad_clip",
    "apply_every",
    "apply_if_finite",
    "centralize",
    "chain",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "conditionally_mask",
    "conditionally_transform",
    "ema",
    "ema_params",
    "freeze",
    "global_norm",
    "incremental_update",
    "inject_hyperparams",
    "keep_params_nonnegative",
    "lookahead",
    "masked",
    "multi_transform",
    "named_chain",
    "nonfinite_policy",
    "normalize_by_update_norm",
    "partition",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "periodic_update",
    "reduce_on_plateau",
    "scale",
    "scale_by_backtracking_linesearch",
    "scale_by_schedule",
    "scale_by_zoom_linesearch",
    "selective_transform",
    "set_to_zero",
    "skip_large_updates",
    "skip_not_finite",
    "unitwise_norm",
    "value_and_grad_from_state",
    "zero_nans",
]

__getattr__ = _legacy.fallback(__name__)  # names this module held before the layout
