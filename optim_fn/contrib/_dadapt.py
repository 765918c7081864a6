"""D-Adaptation (Adam variant) and Prodigy: Adam with an estimated learning rate ``d``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.contrib._common import copy_params
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
from optim_fn.tree._math import tree_l1_norm, tree_real_vdot
from optim_fn.tree._structure import tree_full_like


class DAdaptAdamWState(NamedTuple):
    """``estim_lr`` is the current estimate ``d`` of the distance to the solution."""

    count: Array
    exp_avg: Updates
    exp_avg_sq: Updates
    grad_sum: Updates
    estim_lr: Array
    numerator_weighted: Array
    hyperparams: Hyperparams

    def derived_hyperparams(self) -> dict[str, Array]:
        """``effective_learning_rate``: the current estimate ``d`` times ``learning_rate``."""
        return {"effective_learning_rate": _effective(self.estim_lr, self.hyperparams)}


class ProdigyState(NamedTuple):
    """``estim_lr`` is Prodigy's current estimate ``d``; ``params0`` the initial params."""

    count: Array
    exp_avg: Updates
    exp_avg_sq: Updates
    grad_sum: Updates
    params0: Any
    estim_lr: Array
    numerator_weighted: Array
    hyperparams: Hyperparams

    def derived_hyperparams(self) -> dict[str, Array]:
        """``effective_learning_rate``: the current estimate ``d`` times ``learning_rate``."""
        return {"effective_learning_rate": _effective(self.estim_lr, self.hyperparams)}


def _effective(estim_lr: Any, hyperparams: Hyperparams) -> Array:
    learning_rate = hp.as_keywords(hyperparams)["learning_rate"]
    return jnp.asarray(estim_lr) * jnp.asarray(learning_rate)


_SLOTS = ("exp_avg", "exp_avg_sq", "grad_sum", "estim_lr", "numerator_weighted")


def _betas(where: str, betas: Any) -> tuple:
    if not (isinstance(betas, tuple | list) and len(betas) == 2):
        raise ValueError(f"{where}: `betas` must be a pair (beta1, beta2), got {betas!r}")
    check.check_decay(where, "betas[0]", betas[0])
    check.check_decay(where, "betas[1]", betas[1])
    return tuple(betas)


def _one_minus_sqrt(b: Array, one_minus_b: Array) -> Array:
    """``1 - sqrt(b)`` without cancellation: ``(1 - b) / (1 + sqrt(b))``."""
    return one_minus_b / (1 + jnp.sqrt(b))


def _adam_step(exp_avg, exp_avg_sq, params, scale, decay, eps) -> Any:
    """``-decay p - scale m / (sqrt(v) + eps)`` per leaf, in each leaf's dtype."""
    return jax.tree.map(
        lambda m, v, p: (-decay * p - scale * m / (jnp.sqrt(v.real) + eps)).astype(p.dtype),
        exp_avg,
        exp_avg_sq,
        params,
    )


def _dadapt_adamw_rule(
    updates, exp_avg, exp_avg_sq, grad_sum, estim_lr, numerator_weighted, *, params, count,
    learning_rate, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay,
):
    """AdamW scaled by ``d``; ``d`` grows to ``r / ((1 - sqrt(b2)) ||z||_1)``."""
    b1, b2 = beta1, beta2
    sb2 = jnp.sqrt(b2)
    one_minus_sb2 = _one_minus_sqrt(b2, one_minus_beta2)
    dtype = estim_lr.dtype
    correction = jnp.sqrt(1 - b2**count) / (1 - b1**count)
    dlr = (estim_lr * learning_rate * correction).astype(dtype)
    weighted_sum = jax.tree.map(lambda s, v: s / (jnp.sqrt(v.real) + eps), grad_sum, exp_avg_sq)
    numerator_acum = tree_real_vdot(updates, weighted_sum).astype(dtype)
    new_exp_avg = jax.tree.map(
        lambda m, g: (b1 * m + one_minus_beta1 * dlr * g).astype(m.dtype), exp_avg, updates
    )
    new_exp_avg_sq = jax.tree.map(
        lambda v, g: (b2 * v + one_minus_beta2 * abs_sq(g)).astype(v.dtype),
        exp_avg_sq,
        updates,
    )
    new_grad_sum = jax.tree.map(
        lambda s, g: (sb2 * s + one_minus_sb2 * dlr * g).astype(s.dtype), grad_sum, updates
    )
    numerator = sb2 * numerator_weighted + one_minus_sb2 * dlr * numerator_acum
    l1 = tree_l1_norm(new_grad_sum).astype(dtype)
    # Zero gradients so far leave 0/0 here (optax: NaN, forever after); keep d instead.
    d_estimate = numerator / (one_minus_sb2 * jnp.where(l1 > 0, l1, 1))
    new_estim_lr = jnp.where(l1 > 0, jnp.maximum(estim_lr, d_estimate), estim_lr)
    new_updates = _adam_step(new_exp_avg, new_exp_avg_sq, params, 1.0, weight_decay * dlr, eps)
    return new_updates, new_exp_avg, new_exp_avg_sq, new_grad_sum, new_estim_lr, numerator


def _prodigy_rule(
    updates, exp_avg, exp_avg_sq, grad_sum, estim_lr, numerator_weighted, *, params, params0,
    count, learning_rate, beta1, one_minus_beta1, beta2, one_minus_beta2, beta3, eps,
    estim_lr_coef, weight_decay, estim_lr0, safeguard_warmup,
):
    """Adam on ``d``-scaled gradients; ``d`` grows to ``c r / ||s||_1``."""
    b1, b2, b3 = beta1, beta2, beta3
    dtype = estim_lr.dtype
    d = estim_lr
    correction = jnp.sqrt(1 - b2**count) / (1 - b1**count)
    dlr = (d * learning_rate * correction).astype(dtype)
    param_diff = jax.tree.map(jnp.subtract, params0, params)
    numerator_acum = tree_real_vdot(updates, param_diff).astype(dtype)
    new_exp_avg = jax.tree.map(
        lambda m, g: (b1 * m + one_minus_beta1 * (d * g)).astype(m.dtype), exp_avg, updates
    )
    new_exp_avg_sq = jax.tree.map(
        lambda v, g: (b2 * v + one_minus_beta2 * abs_sq(d * g)).astype(v.dtype),
        exp_avg_sq,
        updates,
    )
    sum_weight = d if safeguard_warmup else dlr
    new_grad_sum = jax.tree.map(
        lambda s, g: (b3 * s + sum_weight * (d * g) / estim_lr0).astype(s.dtype),
        grad_sum,
        updates,
    )
    numerator = b3 * numerator_weighted + d / estim_lr0 * dlr * numerator_acum
    l1 = tree_l1_norm(new_grad_sum).astype(dtype)
    # Zero gradients so far leave 0/0 here (optax: NaN, forever after); keep d instead.
    estimate = estim_lr_coef * numerator / jnp.where(l1 > 0, l1, 1)
    new_estim_lr = jnp.where(l1 > 0, jnp.maximum(d, estimate), d)
    new_updates = _adam_step(
        new_exp_avg, new_exp_avg_sq, params, dlr, weight_decay * dlr, new_estim_lr * eps
    )
    return new_updates, new_exp_avg, new_exp_avg_sq, new_grad_sum, new_estim_lr, numerator


@checks_once
def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple = (0.9, 0.999),
    eps: ScalarOrSchedule = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
) -> GradientTransformationExtraArgs:
    """D-Adapt AdamW: AdamW whose step ``d`` is estimated from the gradients seen.

    With :math:`\\beta_1, \\beta_2` = ``betas``, :math:`s = \\sqrt{\\beta_2}` and
    :math:`\\lambda_t = d_t\\, \\eta_t \\sqrt{1-\\beta_2^t}/(1-\\beta_1^t)`:

    .. math::
        m_t = \\beta_1 m + (1-\\beta_1)\\lambda_t g_t,\\quad v_t = \\beta_2 v + (1-\\beta_2)
        g_t^2,\\quad r_t = s\\, r + (1-s)\\lambda_t \\langle g_t, \\tfrac{z_{t-1}}
        {\\sqrt{v_{t-1}}+\\epsilon}\\rangle,\\\\
        z_t = s\\, z + (1-s)\\lambda_t g_t,\\quad d_{t+1} = \\max\\left(d_t,
        \\frac{r_t}{(1-s)\\|z_t\\|_1}\\right),\\quad
        p_{t+1} = p_t - \\lambda_t \\mu p_t - \\frac{m_t}{\\sqrt{v_t} + \\epsilon}

    ``d_0`` = ``estim_lr0``; ``learning_rate`` multiplies ``d`` (1 in the paper). While
    every gradient so far is zero, ``d`` stays put (optax computes 0/0 and turns NaN).
    Defaults: ``betas=(0.9, 0.999)``, ``eps=1e-8``, ``estim_lr0=1e-6``,
    ``weight_decay=0``. Reference: Defazio & Mishchenko, "Learning-Rate-Free Learning by
    D-Adaptation", ICML 2023. Needs ``params``. PyTorch: none in ``torch.optim``.
    """
    where = "dadapt_adamw"
    check.check_learning_rate(where, learning_rate)
    beta1, beta2 = _betas(where, betas)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "estim_lr0", estim_lr0)
    check.check_non_negative(where, "weight_decay", weight_decay)

    def init_state(params):
        dtype = hp.storage_dtype(params)
        return (
            tree_full_like(params, 0.0),
            tree_full_like(params, 0.0),
            tree_full_like(params, 0.0),
            jnp.asarray(estim_lr0, dtype),
            jnp.zeros([], dtype),
        )

    return rule_transform(
        _dadapt_adamw_rule,
        DAdaptAdamWState,
        slots=_SLOTS,
        init_state=init_state,
        hyperparams={
            "learning_rate": learning_rate,
            "beta1": beta1,
            "beta2": beta2,
            "eps": eps,
            "weight_decay": weight_decay,
        },
        decays=("beta1", "beta2"),
        uses_params=True,
        name=where,
    )


@checks_once
def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple = (0.9, 0.999),
    beta3: ScalarOrSchedule | None = None,
    eps: ScalarOrSchedule = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: ScalarOrSchedule = 1.0,
    weight_decay: ScalarOrSchedule = 0.0,
    safeguard_warmup: bool = False,
) -> GradientTransformationExtraArgs:
    """Prodigy: D-Adaptation with a faster-growing estimate of ``d``.

    With :math:`\\lambda_t = d_t\\, \\eta_t \\sqrt{1-\\beta_2^t}/(1-\\beta_1^t)` and
    :math:`\\beta_3` (default :math:`\\sqrt{\\beta_2}`):

    .. math::
        m_t = \\beta_1 m + (1-\\beta_1) d_t g_t,\\quad v_t = \\beta_2 v + (1-\\beta_2)
        d_t^2 g_t^2,\\quad r_t = \\beta_3 r + \\tfrac{d_t}{d_0}\\lambda_t
        \\langle g_t, p_0 - p_t\\rangle,\\\\
        s_t = \\beta_3 s + \\tfrac{\\lambda_t}{d_0} d_t g_t,\\quad
        d_{t+1} = \\max\\left(d_t, c\\,\\frac{r_t}{\\|s_t\\|_1}\\right),\\quad
        p_{t+1} = p_t - \\lambda_t \\mu p_t - \\lambda_t \\frac{m_t}{\\sqrt{v_t} +
        d_{t+1}\\epsilon}

    (``safeguard_warmup`` uses :math:`d_t` for :math:`\\lambda_t` in :math:`s_t`;
    :math:`c` = ``estim_lr_coef``, :math:`d_0` = ``estim_lr0``). Defaults:
    ``betas=(0.9, 0.999)``, ``eps=1e-8``, ``estim_lr0=1e-6``. While every gradient so far
    is zero, ``d`` stays put (optax computes 0/0 and turns NaN). Reference: Mishchenko &
    Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner", ICML 2024.
    Needs ``params``. PyTorch: none in ``torch.optim``.
    """
    where = "prodigy"
    check.check_learning_rate(where, learning_rate)
    beta1, beta2 = _betas(where, betas)
    if beta3 is None:
        beta3 = (lambda count: jnp.sqrt(beta2(count))) if callable(beta2) else beta2**0.5
    check.check_decay(where, "beta3", beta3)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "estim_lr0", estim_lr0)
    check.check_non_negative(where, "estim_lr_coef", estim_lr_coef)
    check.check_non_negative(where, "weight_decay", weight_decay)

    def init_state(params):
        dtype = hp.storage_dtype(params)
        return (
            tree_full_like(params, 0.0),
            tree_full_like(params, 0.0),
            tree_full_like(params, 0.0),
            jnp.asarray(estim_lr0, dtype),
            jnp.zeros([], dtype),
        )

    return rule_transform(
        _prodigy_rule,
        ProdigyState,
        slots=_SLOTS,
        init_state=init_state,
        constants={"params0": copy_params},
        hyperparams={
            "learning_rate": learning_rate,
            "beta1": beta1,
            "beta2": beta2,
            "beta3": beta3,
            "eps": eps,
            "estim_lr_coef": estim_lr_coef,
            "weight_decay": weight_decay,
        },
        decays=("beta1", "beta2"),
        static={"estim_lr0": estim_lr0, "safeguard_warmup": safeguard_warmup},
        uses_params=True,
        name=where,
    )
