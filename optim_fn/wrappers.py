"""Wrappers around an optimizer, gathered in one namespace.

Each lives in its own module:

* :mod:`optim_fn.accumulation` -- :class:`MultiSteps`: gradient accumulation over k
  micro-steps (one accumulator, the optimizer runs once per k calls).
* :mod:`optim_fn.conditional` -- :func:`apply_if_finite` (skip NaN/inf updates, with a
  counter that resets after giving up), :func:`conditionally_transform`,
  :func:`conditionally_mask`.
* :mod:`optim_fn.averaging` -- :func:`lookahead`, :func:`ema_params`.
* :mod:`optim_fn.plateau` -- :func:`reduce_on_plateau` (the loss as ``value=``).
* :mod:`optim_fn.inject` -- :func:`inject_hyperparams` for any transform factory.

All of them are also exported from :mod:`optim_fn`.
"""

from optim_fn.accumulation import (
    MultiSteps,
    MultiStepsState,
    ShouldSkipUpdateFunction,
    skip_large_updates,
    skip_not_finite,
)
from optim_fn.averaging import (
    EmaParamsState,
    LookaheadParams,
    LookaheadState,
    ema_params,
    lookahead,
)
from optim_fn.conditional import (
    ApplyIfFiniteState,
    ConditionallyMaskState,
    ConditionallyTransformState,
    apply_if_finite,
    conditionally_mask,
    conditionally_transform,
)
from optim_fn.inject import InjectHyperparamsState, inject_hyperparams
from optim_fn.plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = [
    "ApplyIfFiniteState",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "EmaParamsState",
    "InjectHyperparamsState",
    "LookaheadParams",
    "LookaheadState",
    "MultiSteps",
    "MultiStepsState",
    "ReduceLROnPlateauState",
    "ShouldSkipUpdateFunction",
    "apply_if_finite",
    "conditionally_mask",
    "conditionally_transform",
    "ema_params",
    "inject_hyperparams",
    "lookahead",
    "reduce_on_plateau",
    "skip_large_updates",
    "skip_not_finite",
]
