"""Mechanic: a learned scale for the updates of any base optimizer."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.contrib._common import copy_params
from optim_fn.core import hyperparams as hp
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformation,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    with_extra_args,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.tree._math import tree_norm, tree_real_vdot


class MechanicState(NamedTuple):
    """State of :func:`mechanize`.

    Attributes:
      base_optimizer_state: the wrapped optimizer's state.
      count: number of updates so far (int32, saturating).
      r, m, v, s: one entry per beta: the wealth's reward, the running max of ``|h|``,
        the second moment of ``h`` and the scale of each beta.
      x0: the params at the first update (the reference point of the learned scale).
      hyperparams: ``weight_decay``, ``eps`` and ``s_init``.
    """

    base_optimizer_state: Any
    count: Array
    r: Array
    m: Array
    v: Array
    s: Array
    x0: Any
    hyperparams: Hyperparams


def _mechanic_rule(
    grads, base_optimizer_state, r, m, v, s, x0, *, params, extra_args, count, weight_decay,
    eps, s_init, base, host_betas,
):
    """The base update, then the learned scale ``sum(s)`` of the distance from ``x0``."""
    num_betas = len(host_betas)
    dtype = s.dtype
    base_updates, base_state = base.update(grads, base_optimizer_state, params, **extra_args)
    # The reference point is the params of the first update, not of init: training
    # loops often load pre-trained weights between the two.
    first = count == 1
    x0 = jax.tree.map(lambda p, x: jnp.where(first, p, x).astype(x.dtype), params, x0)

    s_sum = jnp.sum(s)
    decay_scale = weight_decay * s_sum * tree_norm(grads) / (tree_norm(params) + eps)
    decayed = jax.tree.map(lambda g, p: g + decay_scale.astype(dtype) * p, grads, params)
    # Mechanic's memory-saving form: the sum of past base updates is recomputed from
    # x0 - x_t rather than stored.
    delta_prev = jax.tree.map(lambda p, x: (x - p) / (s_sum + eps), params, x0)
    delta = jax.tree.map(lambda d, u: d - u, delta_prev, base_updates)
    h = tree_real_vdot(decayed, delta_prev).astype(dtype)

    betas = jnp.asarray(host_betas, dtype)
    clipped_h = jnp.clip(h, -m, m)
    new_m = jnp.maximum(betas * m, jnp.abs(h) + eps)
    new_v = betas**2 * v + h**2
    new_r = betas * r + clipped_h * s
    wealth = (s_init / num_betas) * new_m + jnp.maximum(0.0, new_r)
    new_s = wealth / (jnp.sqrt(new_v) + eps)

    scale = jnp.sum(new_s)
    updates = jax.tree.map(
        lambda x, d, p: ((x - scale * d) - p).astype(jnp.asarray(p).dtype),
        x0,
        delta,
        params,
    )
    return (
        updates,
        base_state,
        new_r.astype(dtype),
        new_m.astype(dtype),
        new_v.astype(dtype),
        new_s.astype(dtype),
        x0,
    )


@checks_once
def mechanize(
    base_optimizer: GradientTransformation,
    weight_decay: ScalarOrSchedule = 1e-2,
    eps: ScalarOrSchedule = 1e-8,
    s_init: ScalarOrSchedule = 1e-6,
    num_betas: int = 6,
) -> GradientTransformationExtraArgs:
    """Mechanic (Cutkosky, Defazio & Mehta 2023): learns the scale of ``base_optimizer``.

    With :math:`u_t` the base update, :math:`S_t = \\sum_i s_{t,i}`, :math:`x_0` the params
    at the first update and :math:`\\Delta_t = (x_0 - x_t)/(S_t + \\epsilon)` the
    accumulated base updates:

    .. math::
        \\tilde g_t &= g_t + \\lambda S_t \\frac{\\|g_t\\|}{\\|x_t\\| + \\epsilon}\\, x_t,
        \\qquad h_t = \\mathrm{Re}\\langle \\tilde g_t, \\Delta_t \\rangle \\\\
        m_{t+1} &= \\max(\\beta m_t, |h_t| + \\epsilon), \\qquad
        v_{t+1} = \\beta^2 v_t + h_t^2 \\\\
        r_{t+1} &= \\beta r_t + \\mathrm{clip}(h_t, -m_t, m_t)\\, s_t, \\qquad
        s_{t+1} = \\frac{(s_{init}/n)\\, m_{t+1} + \\max(0, r_{t+1})}{\\sqrt{v_{t+1}} + \\epsilon}
        \\\\
        x_{t+1} &= x_0 - S_{t+1} (\\Delta_t - u_t)

    elementwise over the ``n`` = ``num_betas`` rates :math:`\\beta_i = 1 - 10^{-i}`,
    :math:`s_0 = s_{init}`, :math:`\\lambda` = ``weight_decay`` (Mechanic's own, applied
    to the gradient it sees, not the base optimizer's). The update returned is
    :math:`x_{t+1} - x_t`. Defaults: ``weight_decay=1e-2``, ``eps=1e-8``,
    ``s_init=1e-6``, ``num_betas=6``. Give the base optimizer a learning rate of 1 (or a
    schedule peaking at 1): Mechanic learns the scale. Needs ``params``.

    The scalars ``r, m, v, s`` are kept in float32 at least (optax keeps them in the
    params' lowest dtype, bf16 for bf16 params). Complex params are treated as pairs of
    real numbers (``h`` is the real inner product). Reference: Cutkosky, Defazio & Mehta,
    "Mechanic: A Learning Rate Tuner", NeurIPS 2023 (arXiv:2306.00144).
    """
    where = "mechanize"
    if not (hasattr(base_optimizer, "init") and hasattr(base_optimizer, "update")):
        raise TypeError(
            f"{where}: `base_optimizer` is {base_optimizer!r}, not a gradient transformation"
        )
    check.check_non_negative(where, "weight_decay", weight_decay)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "s_init", s_init)
    if isinstance(num_betas, bool) or not isinstance(num_betas, numbers.Integral) or num_betas < 1:
        raise ValueError(f"{where}: `num_betas` must be an int >= 1, got {num_betas!r}")
    num_betas = int(num_betas)
    base = with_extra_args(base_optimizer)
    specs = {"weight_decay": weight_decay, "eps": eps, "s_init": s_init}
    # 1 - 0.1**i in float64 on the host, as optax does in Python.
    host_betas = 1.0 - 0.1 ** np.arange(1, num_betas + 1, dtype=np.float64)

    def init_state(params):
        dtype = hp.storage_dtype(params)
        first_s_init = hp.as_keywords(hp.init_hyperparams(specs, frozenset(), dtype))["s_init"]
        zeros = jnp.zeros([num_betas], dtype)
        s = jnp.full([num_betas], first_s_init, dtype)
        return base.init(params), zeros, zeros, zeros, s, copy_params(params)

    return rule_transform(
        _mechanic_rule,
        MechanicState,
        slots=("base_optimizer_state", "r", "m", "v", "s", "x0"),
        init_state=init_state,
        hyperparams=specs,
        static={"base": base, "host_betas": host_betas},
        uses_params=True,
        extra_args="*",
        name=where,
    )
