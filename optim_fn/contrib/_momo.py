"""MoMo and MoMo-Adam: Polyak-type adaptive step sizes from a model of the loss.

Both need the loss at every step: ``update(grads, state, params, value=loss)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.contrib._common import require_value
from optim_fn.core import hyperparams as hp
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    Updates,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.rules.classic import abs_sq
from optim_fn.tree._math import tree_real_vdot
from optim_fn.tree._structure import tree_full_like

# Below this squared momentum norm the step is 0: optax's threshold (float64 epsilon).
_TINY = float(np.finfo(np.float64).eps)


class MomoState(NamedTuple):
    """``barf``: EMA of the losses; ``gamma``: EMA of ``<g, p>``; ``lb``: the lower bound."""

    count: Array
    exp_avg: Updates
    barf: Array
    gamma: Array
    lb: Array
    hyperparams: Hyperparams


class MomoAdamState(NamedTuple):
    count: Array
    exp_avg: Updates
    exp_avg_sq: Updates
    barf: Array
    gamma: Array
    lb: Array
    hyperparams: Hyperparams


def _scalars(params: Any, lower_bound: Any) -> tuple:
    """The initial ``barf``, ``gamma`` and ``lb``."""
    dtype = hp.storage_dtype(params)
    return jnp.zeros([], dtype), jnp.zeros([], dtype), jnp.asarray(lower_bound, dtype)


def _step(tree_a: Any, coefficient: Array, tree_b: Any, scale_b: Any) -> Any:
    """``coefficient * a - scale_b * b`` leaf by leaf, in each leaf's dtype."""
    return jax.tree.map(
        lambda a, b: (coefficient * a - scale_b * b).astype(jnp.asarray(a).dtype), tree_a, tree_b
    )


def _momo_rule(
    updates, exp_avg, barf, gamma, lb, *, params, value, count, learning_rate, beta,
    one_minus_beta, weight_decay, lower_bound, adapt_lower_bound,
):
    """Momentum, EMAs of the loss and of ``<g, p>``, and the capped Polyak step."""
    require_value(value, "momo")
    first = count == 1
    bt = jnp.where(first, 0.0, beta)
    one_minus_bt = jnp.where(first, 1.0, one_minus_beta)
    dtype = barf.dtype
    new_barf = bt * barf + one_minus_bt * jnp.asarray(value).astype(dtype)
    new_exp_avg = jax.tree.map(
        lambda m, g: (bt * m + one_minus_bt * g).astype(m.dtype), exp_avg, updates
    )
    new_gamma = bt * gamma + one_minus_bt * tree_real_vdot(updates, params).astype(dtype)
    norm_sq = tree_real_vdot(new_exp_avg, new_exp_avg).astype(dtype)
    inner = tree_real_vdot(new_exp_avg, params).astype(dtype)
    alpha, wd = learning_rate, weight_decay
    shrink = 1 + alpha * wd
    if adapt_lower_bound:
        cap = shrink * (new_barf - new_gamma) + inner
        new_lb = jnp.where(cap < shrink * lb, jnp.maximum(cap / (2 * shrink), lower_bound), lb)
    else:
        new_lb = lb
    polyak = jnp.maximum(shrink * (new_barf - new_lb - new_gamma) + inner, 0.0) / norm_sq
    polyak = jnp.where(norm_sq <= _TINY, 0.0, polyak)
    tau = jnp.minimum(alpha, polyak)
    new_updates = _step(params, -(alpha * wd) / shrink, new_exp_avg, tau)
    if adapt_lower_bound:
        new_lb = jnp.maximum(new_barf + inner - new_gamma - tau * norm_sq / 2, lower_bound)
    return new_updates, new_exp_avg, new_barf, new_gamma, new_lb


def _momo_adam_rule(
    updates, exp_avg, exp_avg_sq, barf, gamma, lb, *, params, value, count, learning_rate, b1,
    one_minus_b1, b2, one_minus_b2, eps, weight_decay, lower_bound, adapt_lower_bound,
):
    """Adam's moments, EMAs of the loss and of ``<g, p>``, and the capped Polyak step."""
    require_value(value, "momo_adam")
    b1_, b2_ = b1, b2
    dtype = barf.dtype
    new_barf = b1_ * barf + one_minus_b1 * jnp.asarray(value).astype(dtype)
    new_exp_avg = jax.tree.map(
        lambda m, g: (b1_ * m + one_minus_b1 * g).astype(m.dtype), exp_avg, updates
    )
    new_exp_avg_sq = jax.tree.map(
        lambda v, g: (b2_ * v + one_minus_b2 * abs_sq(g)).astype(v.dtype), exp_avg_sq, updates
    )
    bc2 = (1 - b2_**count).astype(dtype)
    precond = jax.tree.map(lambda v: eps + jnp.sqrt(v.real / bc2), new_exp_avg_sq)
    weighted = jax.tree.map(lambda m, d: m / d, new_exp_avg, precond)
    norm_sq = tree_real_vdot(new_exp_avg, weighted).astype(dtype)
    new_gamma = b1_ * gamma + one_minus_b1 * tree_real_vdot(updates, params).astype(dtype)
    inner = tree_real_vdot(new_exp_avg, params).astype(dtype)
    alpha, wd = learning_rate, weight_decay
    bc1 = (1 - b1_**count).astype(dtype)
    shrink = 1 + alpha * wd
    if adapt_lower_bound:
        cap = shrink * (new_barf - new_gamma) + inner
        new_lb = jnp.where(
            cap < shrink * bc1 * lb,
            jnp.maximum(cap / (2 * bc1 * shrink), lower_bound),
            lb,
        )
    else:
        new_lb = lb
    polyak = jnp.maximum(shrink * (new_barf - bc1 * new_lb - new_gamma) + inner, 0.0) / norm_sq
    polyak = jnp.where(norm_sq <= _TINY, 0.0, polyak)
    tau = jnp.minimum(alpha / bc1, polyak)
    new_updates = _step(params, -(alpha * wd) / shrink, weighted, tau)
    if adapt_lower_bound:
        new_lb = jnp.maximum((new_barf + inner - new_gamma - tau * norm_sq / 2) / bc1, lower_bound)
    return new_updates, new_exp_avg, new_exp_avg_sq, new_barf, new_gamma, new_lb


@checks_once
def momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 0.9,
    lower_bound: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformationExtraArgs:
    """MoMo: SGD with momentum and a Polyak step capped at the learning rate.

    With EMAs (rate ``beta``, the first step taking the values as they are) of the
    gradients :math:`d_t`, the losses :math:`\\bar f_t` and :math:`\\gamma_t` of
    :math:`\\langle g_t, p_t \\rangle`:

    .. math::
        \\tau_t = \\min\\left(\\alpha_t, \\frac{[(1+\\alpha_t\\lambda)(\\bar f_t - f^* -
        \\gamma_t) + \\langle d_t, p_t\\rangle]_+}{\\|d_t\\|^2}\\right),\\quad
        p_{t+1} = \\frac{p_t - \\tau_t d_t}{1+\\alpha_t\\lambda}\\ \\text{(as an update)}

    ``f^*`` is ``lower_bound``, re-estimated online with ``adapt_lower_bound``.
    Defaults: ``learning_rate=1``, ``beta=0.9``, ``lower_bound=0``, ``weight_decay=0``.
    Reference: Schaipp, Ohana, Eickenberg, Defazio & Gower, "MoMo: Momentum Models for
    Adaptive Learning Rates", ICML 2024. ``update`` needs ``value=loss``. Inner products
    of complex trees are those of real vectors (``Re <a, b>``). PyTorch: none.
    """
    where = "momo"
    check.check_learning_rate(where, learning_rate)
    check.check_decay(where, "beta", beta)
    check.check_scalar(where, "lower_bound", lower_bound)
    check.check_non_negative(where, "weight_decay", weight_decay)
    return rule_transform(
        _momo_rule,
        MomoState,
        slots=("exp_avg", "barf", "gamma", "lb"),
        init_state=lambda params: (tree_full_like(params, 0.0), *_scalars(params, lower_bound)),
        hyperparams={"learning_rate": learning_rate, "beta": beta, "weight_decay": weight_decay},
        decays=("beta",),
        static={"lower_bound": lower_bound, "adapt_lower_bound": adapt_lower_bound},
        uses_params=True,
        extra_args=("value",),
        name=where,
    )


@checks_once
def momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    lower_bound: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformationExtraArgs:
    """MoMo-Adam: MoMo's capped Polyak step in Adam's preconditioned geometry.

    With Adam's moments :math:`m_t, v_t` (rates ``b1``, ``b2``),
    :math:`D_t = \\epsilon + \\sqrt{v_t/(1-b_2^t)}`, :math:`\\rho_t = 1 - b_1^t`, and
    EMAs (rate ``b1``) :math:`\\bar f_t` of the losses and :math:`\\gamma_t` of
    :math:`\\langle g_t, p_t\\rangle`:

    .. math::
        \\tau_t = \\min\\left(\\frac{\\alpha_t}{\\rho_t}, \\frac{[(1+\\alpha_t\\lambda)
        (\\bar f_t - \\rho_t f^* - \\gamma_t) + \\langle m_t, p_t\\rangle]_+}
        {\\langle m_t, m_t / D_t\\rangle}\\right),\\quad
        p_{t+1} = \\frac{p_t - \\tau_t m_t / D_t}{1+\\alpha_t\\lambda}

    Defaults: ``learning_rate=1e-2``, ``b1=0.9``, ``b2=0.999``, ``eps=1e-8``. Reference:
    Schaipp et al., ICML 2024. ``update`` needs ``value=loss``. PyTorch: none.
    """
    where = "momo_adam"
    check.check_learning_rate(where, learning_rate)
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_non_negative(where, "eps", eps)
    check.check_scalar(where, "lower_bound", lower_bound)
    check.check_non_negative(where, "weight_decay", weight_decay)
    return rule_transform(
        _momo_adam_rule,
        MomoAdamState,
        slots=("exp_avg", "exp_avg_sq", "barf", "gamma", "lb"),
        init_state=lambda params: (
            tree_full_like(params, 0.0),
            tree_full_like(params, 0.0),
            *_scalars(params, lower_bound),
        ),
        hyperparams={
            "learning_rate": learning_rate,
            "b1": b1,
            "b2": b2,
            "eps": eps,
            "weight_decay": weight_decay,
        },
        decays=("b1", "b2"),
        static={"lower_bound": lower_bound, "adapt_lower_bound": adapt_lower_bound},
        uses_params=True,
        extra_args=("value",),
        name=where,
    )
