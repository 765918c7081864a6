"""Memory-saving second moments: Adafactor (factored rows/columns) and SM3 (covers).

Both keep statistics shaped by each leaf's axes, so both refuse flat mode at ``init``.
Complex params are supported (the statistics are of ``|g|^2`` and real). Names,
keywords and defaults are optax's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import leafwise_transform
from optim_fn.core.numerics import real_dtype
from optim_fn.core.validation import check_int as _check_int
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.optimizers.layerwise import scale_by_param_block_rms
from optim_fn.rules import factored as rules
from optim_fn.transforms._clipping import clip_by_block_rms
from optim_fn.transforms._combine import chain
from optim_fn.transforms._scaling import ema, scale


class FactoredState(NamedTuple):
    count: Array
    v_row: Updates
    v_col: Updates
    v: Updates
    hyperparams: Hyperparams


class ScaleBySM3State(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams



@checks_once
def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: ScalarOrSchedule = 0.8,
    step_offset: ScalarOrSchedule = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: ScalarOrSchedule = 1e-30,
    decay_rate_fn: Callable[[Array, Array], Array] = rules.adafactor_decay,
) -> GradientTransformationExtraArgs:
    """Adafactor's scaling by a factored second moment (Shazeer & Stern 2018); needs ``params``.

    With :math:`\\beta_t` = ``decay_rate_fn(t - 1 - step_offset, decay_rate)`` (default
    :math:`1 - t^{-0.8}`) and :math:`G = |g|^2 + \\epsilon`: a leaf whose two largest
    axes (rows ``r``, columns ``c``) are both ``>= min_dim_size_to_factor`` keeps

    .. math::
        R_t = \\beta_t R + (1-\\beta_t)\\, \\mathrm{mean}_c G, \\quad
        C_t = \\beta_t C + (1-\\beta_t)\\, \\mathrm{mean}_r G, \\quad
        u = g \\big/ \\sqrt{R_t C_t / \\mathrm{mean}_r R_t}

    and any other leaf keeps the full :math:`V_t = \\beta_t V + (1-\\beta_t) G`,
    ``u = g / sqrt(V_t)``. ``params`` are not read; ``update`` accepts them.
    """
    where = "scale_by_factored_rms"
    check.check_non_negative(where, "decay_rate", decay_rate)
    check.check_scalar(where, "step_offset", step_offset)
    check.check_non_negative(where, "epsilon", epsilon)
    _check_int(where, "min_dim_size_to_factor", min_dim_size_to_factor, 1)

    def init_slots(param):
        dtype = real_dtype(param.dtype)
        empty = jnp.zeros((1,), dtype)
        dims = rules.factored_dims(param.shape, factored, min_dim_size_to_factor)
        if dims is None:
            return empty, empty, jnp.zeros(param.shape, dtype)
        row_axis, col_axis = dims
        row_shape = tuple(d for a, d in enumerate(param.shape) if a != col_axis)
        col_shape = tuple(d for a, d in enumerate(param.shape) if a != row_axis)
        return jnp.zeros(row_shape, dtype), jnp.zeros(col_shape, dtype), empty

    return leafwise_transform(
        rules.factored_rms,
        FactoredState,
        slots=("v_row", "v_col", "v"),
        init_slots=init_slots,
        hyperparams={"decay_rate": decay_rate, "decay_offset": step_offset, "eps": epsilon},
        static={
            "factored": factored,
            "min_dim_size_to_factor": min_dim_size_to_factor,
            "decay_rate_fn": decay_rate_fn,
        },
        name=where,
        flat_reason="it factors each leaf's second moment along that leaf's axes",
    )


@checks_once
def adafactor(
    learning_rate: ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: ScalarOrSchedule = 0.8,
    decay_offset: ScalarOrSchedule = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: ScalarOrSchedule | None = 1.0,
    momentum: ScalarOrSchedule | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: ScalarOrSchedule | None = None,
    eps: ScalarOrSchedule = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any = None,
) -> GradientTransformationExtraArgs:
    """Adafactor: Adam-like steps with a factored second moment and relative step sizes.

    .. math::
        u_1 = g / \\sqrt{\\hat V_t}, \\quad u_2 = u_1 / \\max(1, \\mathrm{rms}(u_1)/d),
        \\quad p_t = p_{t-1} - \\eta\\, \\max(\\mathrm{rms}(p_{t-1}), 10^{-3})\\, u_2

    with :math:`\\hat V_t` from :func:`scale_by_factored_rms` (factored for leaves with two
    axes ``>= min_dim_size_to_factor``), :math:`d` = ``clipping_threshold`` (None: no
    clipping); ``multiply_by_parameter_scale=False`` drops the ``rms(p)`` factor;
    ``momentum`` adds an (undebiased) EMA of the step in ``dtype_momentum``;
    ``weight_decay_rate`` adds ``wd p`` after the learning rate (on
    ``weight_decay_mask``). ``learning_rate=None`` means no learning-rate factor (the
    relative step alone, still descending).

    Defaults: ``min_dim_size_to_factor=128``, ``decay_rate=0.8``, ``clipping_threshold=1``,
    ``eps=1e-30``. Reference: Shazeer & Stern, ICML 2018. PyTorch: ``torch.optim.Adafactor``
    (2.5+) uses ``beta2_decay=-0.8`` and eps placements of its own. Not in flat mode.
    """
    where = "adafactor"
    if learning_rate is not None:
        check.check_learning_rate(where, learning_rate)
    if clipping_threshold is not None:
        check.check_non_negative(where, "clipping_threshold", clipping_threshold)
    parts = [scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)]
    if clipping_threshold is not None:
        parts.append(clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:
        parts.append(classic.scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        parts.append(scale_by_param_block_rms())
    if momentum is not None:
        parts.append(ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        parts.append(classic.add_decayed_weights(weight_decay_rate, weight_decay_mask))
    parts.append(scale(-1.0))
    return chain(*parts)


@checks_once
def scale_by_sm3(
    b1: ScalarOrSchedule = 0.9, b2: ScalarOrSchedule = 1.0, eps: ScalarOrSchedule = 1e-8
) -> GradientTransformationExtraArgs:
    """SM3's scaling (Anil, Gupta, Koren & Singer 2019): one accumulator per axis.

    .. math::
        \\nu_t = c\\, g_t^2 + b_2 \\min_r \\mathrm{acc}_r, \\quad
        \\mathrm{acc}_r \\leftarrow \\max_{\\neg r} \\nu_t, \\quad
        m_t = b_1 m_{t-1} + (1-b_1)\\, g_t / \\sqrt{\\nu_t + \\epsilon}, \\quad u_t = m_t

    with :math:`c = 1` when :math:`b_2 = 1` (the paper's SM3-II) and :math:`1-b_2`
    otherwise; 0 where :math:`\\nu_t = 0`. The state ``mu`` holds the accumulators (a list
    per leaf), ``nu`` the momentum, as in optax. Scalars (0-d leaves) are supported.
    """
    where = "scale_by_sm3"
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2, allow_one=True)
    check.check_non_negative(where, "eps", eps)

    def init_slots(param):
        dtype = real_dtype(param.dtype)
        if param.ndim < 2:
            accumulators = [jnp.zeros(param.shape, dtype)]
        else:
            accumulators = [jnp.zeros((size,), dtype) for size in param.shape]
        return accumulators, jnp.zeros(param.shape, param.dtype)

    return leafwise_transform(
        rules.sm3,
        ScaleBySM3State,
        slots=("mu", "nu"),
        init_slots=init_slots,
        hyperparams={"b1": b1, "b2": b2, "eps": eps},
        decays=("b1", "b2"),
        name=where,
        flat_reason="it keeps one accumulator per axis of each leaf",
    )


@checks_once
def sm3(
    learning_rate: ScalarOrSchedule, momentum: ScalarOrSchedule = 0.9
) -> GradientTransformationExtraArgs:
    """SM3: Adagrad-like steps with sublinear memory (a cover of per-axis maxima).

    .. math:: p_t = p_{t-1} - \\eta\\, m_t

    with :math:`m_t` from :func:`scale_by_sm3` (``b1=momentum``, ``b2=1``). Defaults:
    ``momentum=0.9``. Reference: Anil et al., "Memory-Efficient Adaptive Optimization",
    NeurIPS 2019. optax refuses complex params and fails on 0-d leaves; both work here.
    PyTorch: none. Not in flat mode.
    """
    check.check_learning_rate("sm3", learning_rate)
    return chain(scale_by_sm3(momentum), classic.scale_by_learning_rate(learning_rate))
