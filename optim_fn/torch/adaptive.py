"""``Adamax, NAdam, RAdam, ASGD, Rprop`` with PyTorch's names and numbers.

Same conventions as :mod:`optim_fn.torch.classic`: torch's keywords and defaults,
``maximize`` then weight decay then the shared rule (with PyTorch's options) then
``-lr``; hyperparameters are state data under torch's names; ``foreach``,
``capturable`` and ``differentiable`` are accepted and ignored.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from optim_fn import rules
from optim_fn.core.base import (
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.torch import validation as check
from optim_fn.torch.classic import working_gradient
from optim_fn.torch.complex_as_real import as_real_pairs, both_parts_initialised
from optim_fn.torch.porting import torch_optimizer

Array = Any


def _decoupled(update, param, lr, weight_decay, decoupled):
    """torch's ``p *= 1 - lr * wd`` before the step, expressed as part of the update."""
    return update - (lr * weight_decay) * param if decoupled else update


# ----------------------------------------------------------------------------- Adamax


class AdamaxState(NamedTuple):
    count: Array
    exp_avg: Array
    exp_inf: Array
    hyperparams: Hyperparams


def _adamax_rule(
    grad, exp_avg, exp_inf, *, param, count, lr, beta1, one_minus_beta1, beta2,
    one_minus_beta2, eps, weight_decay, maximize,
):
    del one_minus_beta2
    g = working_gradient(grad, param, weight_decay, maximize)
    direction, exp_avg, exp_inf = rules.adamax(
        g, exp_avg, exp_inf, count=count, b1=beta1, one_minus_b1=one_minus_beta1, b2=beta2,
        eps=eps, precise_bias_correction=True,
    )
    return -lr * direction, exp_avg, exp_inf


@torch_optimizer
def Adamax(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 2e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> GradientTransformationExtraArgs:
    """``torch.optim.Adamax`` (Kingma & Ba 2015, Algorithm 2).

    .. math::
        m_t = \\beta_1 m + (1-\\beta_1) g, \\quad u_t = \\max(\\beta_2 u, |g| + \\epsilon),
        \\quad p_t = p_{t-1} - \\frac{\\eta}{1-\\beta_1^t} \\frac{m_t}{u_t}

    Defaults as torch: ``lr=2e-3, betas=(0.9, 0.999), eps=1e-8`` (eps inside the max).
    """
    del foreach, differentiable, capturable
    where = "Adamax"
    check.at_least(where, "learning rate", "lr", lr)
    check.at_least(where, "epsilon value", "eps", eps)
    beta1, beta2 = check.betas(where, betas)
    check.at_least(where, "weight_decay value", "weight_decay", weight_decay)
    return rule_transform(
        as_real_pairs(_adamax_rule),
        AdamaxState,
        slots=[Slot("exp_avg"), Slot("exp_inf")],
        hyperparams={"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps,
                     "weight_decay": weight_decay},
        decays=("beta1", "beta2"),
        static={"maximize": maximize},
        uses_params=True,
        name=where,
    )


# ----------------------------------------------------------------------------- RAdam


class RAdamState(NamedTuple):
    count: Array
    exp_avg: Array
    exp_avg_sq: Array
    hyperparams: Hyperparams


def _radam_rule(
    grad, exp_avg, exp_avg_sq, *, param, count, lr, beta1, one_minus_beta1, beta2,
    one_minus_beta2, eps, weight_decay, maximize, decoupled_weight_decay,
):
    g = -grad if maximize else grad
    if not decoupled_weight_decay:
        g = working_gradient(g, param, weight_decay, False)
    direction, exp_avg, exp_avg_sq = rules.radam(
        g, exp_avg, exp_avg_sq, count=count, b1=beta1, one_minus_b1=one_minus_beta1,
        b2=beta2, one_minus_b2=one_minus_beta2, eps=eps, eps_root=0.0,
        threshold=5.0, nesterov=False, eps_on_raw_nu=True, strict_threshold=True,
    )
    update = _decoupled(-lr * direction, param, lr, weight_decay, decoupled_weight_decay)
    return update, exp_avg, exp_avg_sq


@torch_optimizer
def RAdam(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> GradientTransformationExtraArgs:
    """``torch.optim.RAdam`` (Liu et al. 2020): Adam with a rectified adaptive step.

    .. math::
        \\rho_t = \\rho_\\infty - \\frac{2 t \\beta_2^t}{1-\\beta_2^t};\\ \\text{if }
        \\rho_t > 5:\\ p_t = p_{t-1} - \\eta\\, r_t \\hat m_t
        \\frac{\\sqrt{1-\\beta_2^t}}{\\sqrt{v_t} + \\epsilon},
        \\text{ else } p_t = p_{t-1} - \\eta \\hat m_t

    eps is added to the RAW :math:`\\sqrt{v_t}` (torch's placement). Decoupled weight
    decay multiplies p by :math:`1 - \\eta\\lambda` first. Defaults as torch.
    """
    del foreach, capturable, differentiable
    where = "RAdam"
    check.at_least(where, "learning rate", "lr", lr)
    check.at_least(where, "epsilon value", "eps", eps)
    beta1, beta2 = check.betas(where, betas)
    check.at_least(where, "weight_decay value", "weight_decay", weight_decay)
    return rule_transform(
        as_real_pairs(_radam_rule),
        RAdamState,
        slots=[Slot("exp_avg"), Slot("exp_avg_sq")],
        hyperparams={"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps,
                     "weight_decay": weight_decay},
        decays=("beta1", "beta2"),
        static={"maximize": maximize, "decoupled_weight_decay": decoupled_weight_decay},
        uses_params=True,
        name=where,
    )


# ----------------------------------------------------------------------------- NAdam


class NAdamState(NamedTuple):
    count: Array
    exp_avg: Array
    exp_avg_sq: Array
    hyperparams: Hyperparams
    mu_product: Array


def _nadam_rule(
    grad, exp_avg, exp_avg_sq, *, param, count, lr, beta1, one_minus_beta1, beta2,
    one_minus_beta2, eps, weight_decay, momentum_decay, mu, mu_next, mu_product,
    maximize, decoupled_weight_decay,
):
    del momentum_decay
    g = -grad if maximize else grad
    if not decoupled_weight_decay:
        g = working_gradient(g, param, weight_decay, False)
    exp_avg = rules.moving_average(g, exp_avg, beta1, one_minus_beta1)
    exp_avg_sq = rules.moving_average(rules.abs_sq(g), exp_avg_sq, beta2, one_minus_beta2)
    denom = jnp.sqrt(rules.debias(exp_avg_sq, beta2, count, one_minus_beta2)) + eps
    # torch multiplies the stored float32 product by mu_next in double, unrounded.
    product_next = mu_product * mu_next
    direction = (1 - mu) / (1 - mu_product) * (g / denom) + mu_next / (1 - product_next) * (
        exp_avg / denom
    )
    update = _decoupled(-lr * direction, param, lr, weight_decay, decoupled_weight_decay)
    return update, exp_avg, exp_avg_sq


def _nadam_momentum(beta1, momentum_decay, t):
    """Dozat's momentum schedule as torch: ``mu_t = b1 (1 - 0.5 * 0.96^(t psi))``."""
    return beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))


def _nadam_scalars(stored, values, t):
    mu = _nadam_momentum(values["beta1"], values["momentum_decay"], t)
    mu_next = _nadam_momentum(values["beta1"], values["momentum_decay"], t + 1)
    # float32 state times a float32 scalar, as torch's in-place `mu_product *= mu`.
    product = stored["mu_product"].astype(jnp.float32) * mu.astype(jnp.float32)
    product = product.astype(t.dtype)
    return {"mu": mu, "mu_next": mu_next, "mu_product": product}, {"mu_product": product}


def _nadam_step_scalars(stored, values, count):
    """This step's ``mu``, ``mu_next`` and ``mu_product``; the product stored in float32."""
    dtype = values["lr"].dtype
    t = count.astype(dtype)
    return _nadam_scalars({k: v.astype(dtype) for k, v in stored.items()}, values, t)


@torch_optimizer
def NAdam(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 2e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0,
    momentum_decay: ScalarOrSchedule = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> GradientTransformationExtraArgs:
    """``torch.optim.NAdam`` (Dozat 2016) with its momentum-decay schedule.

    .. math::
        \\mu_t = \\beta_1 (1 - \\tfrac12 0.96^{t\\psi}), \\quad P_t = \\prod_{i\\le t}\\mu_i,
        \\quad p_t = p_{t-1} - \\eta\\Big[\\frac{1-\\mu_t}{1-P_t}
        + \\frac{\\mu_{t+1}}{1-P_t\\mu_{t+1}}\\Big] / (\\sqrt{\\hat v_t}+\\epsilon)

    (the first term times g, the second times m). :math:`P_t` is stored in float32 as
    torch does (``mu_product``). Defaults as torch: ``lr=2e-3, momentum_decay=4e-3``.
    """
    del foreach, capturable, differentiable
    where = "NAdam"
    check.at_least(where, "learning rate", "lr", lr)
    check.at_least(where, "epsilon value", "eps", eps)
    beta1, beta2 = check.betas(where, betas)
    check.at_least(where, "weight_decay value", "weight_decay", weight_decay)
    check.at_least(where, "momentum_decay value", "momentum_decay", momentum_decay)
    specs = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps,
             "weight_decay": weight_decay, "momentum_decay": momentum_decay}
    decays = ("beta1", "beta2")
    return rule_transform(
        as_real_pairs(_nadam_rule),
        NAdamState,
        slots=[Slot("exp_avg"), Slot("exp_avg_sq")],
        hyperparams=specs,
        decays=decays,
        static={"maximize": maximize, "decoupled_weight_decay": decoupled_weight_decay},
        uses_params=True,
        name=where,
        scalars={"mu_product": lambda values: jnp.ones([], jnp.float32)},
        step_scalars=_nadam_step_scalars,
    )


# ----------------------------------------------------------------------------- ASGD


class ASGDState(NamedTuple):
    count: Array
    ax: Array
    hyperparams: Hyperparams
    eta: Array
    mu: Array


def _asgd_rule(
    grad, ax, *, param, lr, lambd, alpha, t0, weight_decay, eta, mu, maximize
):
    del lr, alpha, t0
    g = working_gradient(grad, param, weight_decay, maximize)
    new_param = param * (1 - lambd * eta) - eta * g
    ax = jnp.where(mu == 1, new_param, ax + mu * (new_param - ax))
    return new_param - param, ax


def _asgd_scalars(values, t):
    """torch's ``eta`` and ``mu`` after step ``t``, used at step ``t + 1``."""
    lr, lambd = values["lr"], values["lambd"]
    new_eta = lr / (1 + lambd * lr * t) ** values["alpha"]
    new_mu = 1 / jnp.maximum(1, t - values["t0"])
    return new_eta, new_mu


def _asgd_step_scalars(stored, values, count):
    """This step uses the ``eta`` and ``mu`` stored by the previous one (torch's lag)."""
    dtype = values["lr"].dtype
    t = count.astype(dtype)
    eta, mu = stored["eta"].astype(dtype), stored["mu"].astype(dtype)
    new_eta, new_mu = _asgd_scalars(values, t)
    return {"eta": eta, "mu": mu}, {"eta": new_eta.astype(dtype), "mu": new_mu.astype(dtype)}


@torch_optimizer
def ASGD(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1e-2,
    lambd: ScalarOrSchedule = 1e-4,
    alpha: ScalarOrSchedule = 0.75,
    t0: ScalarOrSchedule = 1e6,
    weight_decay: ScalarOrSchedule = 0,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> GradientTransformationExtraArgs:
    """``torch.optim.ASGD``: averaged SGD (Polyak & Juditsky 1992) as torch implements it.

    .. math::
        p_t = p_{t-1}(1 - \\lambda\\eta_{t-1}) - \\eta_{t-1} g_t, \\quad
        \\bar p_t = \\bar p_{t-1} + \\mu_{t-1}(p_t - \\bar p_{t-1}), \\quad
        \\eta_t = \\frac{\\eta}{(1 + \\lambda\\eta t)^\\alpha}, \\
        \\mu_t = \\frac1{\\max(1, t - t_0)}

    ``eta`` and ``mu`` are state (``eta_0 = lr``), so an lr change takes effect one step
    late, as in torch. They are computed and stored in the params' precision (the widest
    float dtype among the params, as the hyperparameters; see
    :func:`optim_fn.core.hyperparams.storage_dtype`): float64 under x64 with float64 params,
    matching torch run with ``torch.set_default_dtype(torch.float64)``; float32 for float32
    params. torch keeps them in its default dtype, float32 even for float64 params unless
    changed, which puts its default float64 runs ~1e-8 (relative) from this one. The
    average ``ax`` is in the state (``state.ax``), never written into the params.
    Defaults as torch.
    """
    del foreach, differentiable, capturable
    where = "ASGD"
    check.at_least(where, "learning rate", "lr", lr)
    check.at_least(where, "weight_decay value", "weight_decay", weight_decay)
    specs = {"lr": lr, "lambd": lambd, "alpha": alpha, "t0": t0, "weight_decay": weight_decay}
    # eta and mu follow the params' precision: they are made from the hyperparameters,
    # which are stored in hp.storage_dtype(params).
    return rule_transform(
        as_real_pairs(_asgd_rule),
        ASGDState,
        slots=[Slot("ax")],
        hyperparams=specs,
        static={"maximize": maximize},
        uses_params=True,
        name=where,
        scalars={
            "eta": lambda values: values["lr"],
            "mu": lambda values: jnp.ones([], values["lr"].dtype),
        },
        step_scalars=_asgd_step_scalars,
    )


# ----------------------------------------------------------------------------- Rprop


class RpropState(NamedTuple):
    count: Array
    step_size: Array
    prev: Array
    hyperparams: Hyperparams


def _rprop_rule(
    grad, step_size, prev, *, eta_minus, eta_plus, min_step_size, max_step_size, maximize
):
    g = -grad if maximize else grad
    direction, step_size, prev = rules.rprop(
        g, step_size, prev, eta_minus=eta_minus, eta_plus=eta_plus,
        min_step_size=min_step_size, max_step_size=max_step_size, clamp_every_step=True,
    )
    return -direction, step_size, prev


@torch_optimizer
def Rprop(  # noqa: N802 - torch's class name
    lr: float = 1e-2,
    etas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.5, 1.2),
    step_sizes: tuple[ScalarOrSchedule, ScalarOrSchedule] = (1e-6, 50),
    *,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> GradientTransformationExtraArgs:
    """``torch.optim.Rprop`` (Riedmiller & Braun 1993; iRprop-, Igel & Hüsken 2000).

    .. math::
        D_t = \\mathrm{clip}(D_{t-1}\\, f_t, D_{min}, D_{max}),\\ f_t = \\eta_+, \\eta_-, 1
        \\text{ as } g_t g_{t-1} >, <, = 0; \\quad g_t \\leftarrow 0 \\text{ where } < 0;
        \\quad p_t = p_{t-1} - D_t \\operatorname{sign}(g_t)

    ``lr`` is only the initial step size ``D_0`` (as torch: later lr changes have no
    effect, so it is not a state hyperparameter). ``D`` is clamped at every step, also
    where the sign product is 0, as torch. Defaults as torch.
    """
    del capturable, foreach, differentiable
    where = "Rprop"
    check.at_least(where, "learning rate", "lr", lr)
    eta_minus, eta_plus = check.pair(where, "etas", etas)
    if not (callable(eta_minus) or callable(eta_plus)) and not (
        0.0 < float(eta_minus) < 1.0 < float(eta_plus)
    ):
        check.fail(
            where, f"Invalid eta values: {eta_minus}, {eta_plus}", "etas",
            "(etaminus, etaplus) with 0 < etaminus < 1 < etaplus",
        )
    min_step, max_step = check.pair(where, "step_sizes", step_sizes)
    transform = rule_transform(
        as_real_pairs(_rprop_rule),
        RpropState,
        slots=[Slot("step_size", float(lr)), Slot("prev")],
        hyperparams={"eta_minus": eta_minus, "eta_plus": eta_plus,
                     "min_step_size": min_step, "max_step_size": max_step},
        static={"maximize": maximize},
        name=where,
    )
    return both_parts_initialised(transform, "step_size", float(lr))
