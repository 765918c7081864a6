"""Polyak step sizes: ``scale_by_polyak`` and ``polyak_sgd`` (optax's names and defaults).

The step size needs the loss: call ``update(grads, state, params, value=loss)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core import hyperparams as hp
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    fresh_value,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers.classic import sgd
from optim_fn.transforms._combine import chain
from optim_fn.tree._math import tree_sq_norm

# Below this squared gradient norm the step is 0 (a stationary point): optax's threshold,
# the float64 machine epsilon, whatever the dtype.
_TINY = float(np.finfo(np.float64).eps)


class ScaleByPolyakState(NamedTuple):
    """``step_size`` is the Polyak step taken at the latest update (for logging)."""

    count: Array
    step_size: Array
    hyperparams: Hyperparams




def _polyak_rule(updates, step_size, *, value, f_min, max_learning_rate, eps, variant):
    """The whole tree scaled by one Polyak step; ``step_size`` keeps it for logging."""
    if value is None:  # a missing argument: TypeError, as in optax and Python
        raise TypeError(
            "scale_by_polyak needs the loss: call `update(grads, state, params, value=loss)` "
            "(e.g. with `loss, grads = jax.value_and_grad(f)(params)`)"
        )
    dtype = step_size.dtype
    sq_norm = tree_sq_norm(updates).astype(dtype)
    gap = jnp.asarray(value).astype(dtype) - f_min
    if variant == "sps+":
        gap = jnp.maximum(gap, 0)
    denominator = sq_norm + eps
    step = jnp.where(
        denominator <= _TINY,
        jnp.zeros([], dtype),
        jnp.minimum(gap / denominator, max_learning_rate),
    )
    scaled = jax.tree.map(lambda u: (step * u).astype(u.dtype), updates)
    return scaled, fresh_value(step, step_size)


@checks_once
def scale_by_polyak(
    f_min: ScalarOrSchedule = 0.0,
    max_learning_rate: ScalarOrSchedule = 1.0,
    eps: ScalarOrSchedule = 0.0,
    variant: str = "sps",
) -> GradientTransformationExtraArgs:
    """Scales the updates by the Polyak step (Loizou et al. 2021, SPS_max).

    .. math::
        \\gamma_t = \\min\\left(\\frac{f(x_t) - f^*}{\\|g_t\\|^2 + \\epsilon},
        \\gamma_{max}\\right), \\qquad u_t = \\gamma_t g_t

    (``gamma_t = 0`` where ``||g||^2 + eps`` is below float64 machine epsilon).
    ``variant="sps+"`` clips the gap ``f(x_t) - f^*`` at 0 (Garrigos et al. 2023).
    ``update`` needs the loss as ``value=``.
    """
    where = "scale_by_polyak"
    check.check_scalar(where, "f_min", f_min)
    check.check_non_negative(where, "max_learning_rate", max_learning_rate)
    check.check_non_negative(where, "eps", eps)
    if variant not in ("sps", "sps+"):
        raise ValueError(f"{where}: `variant` must be 'sps' or 'sps+', got {variant!r}")
    return rule_transform(
        _polyak_rule,
        ScaleByPolyakState,
        slots=("step_size",),
        init_state=lambda params: (jnp.zeros([], hp.storage_dtype(params)),),
        hyperparams={"f_min": f_min, "max_learning_rate": max_learning_rate, "eps": eps},
        static={"variant": variant},
        extra_args=("value",),
        name=where,
    )


@checks_once
def polyak_sgd(
    max_learning_rate: ScalarOrSchedule = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: ScalarOrSchedule = 0.0,
    eps: ScalarOrSchedule = 0.0,
    variant: str = "sps",
) -> GradientTransformationExtraArgs:
    """SGD with the Polyak step size; ``update`` needs the loss as ``value=``.

    .. math::
        p_t = p_{t-1} - s\\, \\gamma_t g_t, \\qquad
        \\gamma_t = \\min\\left(\\frac{f(p_{t-1}) - f^*}{s^2\\|g_t\\|^2 + \\epsilon},
        \\gamma_{max}\\right)

    (the norm is of the update ``s g_t``, ``s`` = ``scaling``, as in optax). Defaults:
    ``max_learning_rate=1``, ``scaling=1``, ``f_min=0``, ``eps=0``, ``variant="sps"``.
    References: Polyak 1987; Loizou et al., "Stochastic Polyak Step-size for SGD",
    AISTATS 2021; Garrigos et al. 2023 (``"sps+"``). An unknown ``variant`` is an error
    at construction (optax raises at the first update). PyTorch: none.
    """
    check.check_learning_rate("polyak_sgd", scaling, "scaling")
    return chain(
        sgd(learning_rate=scaling),
        scale_by_polyak(f_min=f_min, max_learning_rate=max_learning_rate, eps=eps, variant=variant),
    )
