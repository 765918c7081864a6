"""``SGD, Adam, AdamW, Adagrad, RMSprop, Adadelta`` with PyTorch's names and numbers.

Each constructor takes the keywords of the ``torch.optim`` class of the same name (minus
``params``) and returns an optax-protocol transform whose update, added to the params,
reproduces ``torch.optim.X.step()``. The maths is the shared rules of
:mod:`optim_fn.rules` with PyTorch's options (eps outside the root, SGD's dampening and
first-step buffer, AMSGrad on the raw second moment); this module only arranges them in
torch's order: ``maximize`` first, then weight decay, then the rule, then ``-lr``.

Hyperparameters are state data under torch's names (``lr``, ``beta1``, ``beta2``,
``eps``, ``weight_decay``, ``momentum``, ...): ``optim_fn.set_hyperparams(state, lr=...)``
is ``param_group["lr"] = ...``. Any of them may be a schedule, a function of the step
count (0 at the first update). ``foreach``, ``fused``, ``capturable`` and
``differentiable`` are accepted and ignored: they change how torch computes, not what.
Complex params are treated as torch does, as (real, imag) pairs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from optim_fn import rules
from optim_fn.core.base import GradientTransformationExtraArgs, ScalarOrSchedule
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.torch import validation as check
from optim_fn.torch.complex_as_real import as_real_pairs, both_parts_initialised
from optim_fn.torch.porting import torch_optimizer

Array = Any


def working_gradient(grad: Array, param: Array, weight_decay: Array, maximize: bool) -> Array:
    """torch's ``g = -grad if maximize else grad; g = g + wd * p`` (L2, coupled)."""
    g = -grad if maximize else grad
    return rules.add_decayed_weights(g, param=param, weight_decay=weight_decay)[0]


def _is_zero(value: Any) -> bool:
    return not callable(value) and float(value) == 0.0


# ----------------------------------------------------------------------------- SGD


class SGDState(NamedTuple):
    count: Array
    hyperparams: Hyperparams
    momentum_buffer: Any = None


def _sgd_rule(
    grad, *buffer, param, count, lr, momentum, dampening, weight_decay, maximize, nesterov
):
    g = working_gradient(grad, param, weight_decay, maximize)
    if not buffer:
        return (-lr * g,)
    # torch creates the buffer at the first step as a copy of g: neither decayed nor
    # dampened. A zero buffer and zero dampening at t=1 give exactly that.
    first = count == 1
    g, new_buffer = rules.trace(
        g,
        jnp.where(first, 0, buffer[0]),
        momentum=momentum,
        nesterov=nesterov,
        dampening=jnp.where(first, 0, dampening),
    )
    return -lr * g, new_buffer


@torch_optimizer
def SGD(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1e-3,
    momentum: ScalarOrSchedule = 0,
    dampening: ScalarOrSchedule = 0,
    weight_decay: ScalarOrSchedule = 0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    differentiable: bool = False,
    fused: bool | None = None,
) -> GradientTransformationExtraArgs:
    """``torch.optim.SGD``: SGD with heavy-ball/Nesterov momentum, dampening, L2 decay.

    .. math::
        g_t = \\pm\\nabla + \\lambda p, \\quad
        b_1 = g_1,\\ b_t = \\mu b_{t-1} + (1-\\tau) g_t, \\quad
        p_t = p_{t-1} - \\eta\\,(b_t \\text{ or } g_t + \\mu b_t \\text{ (Nesterov)})

    Defaults as torch: ``lr=1e-3, momentum=0, dampening=0, weight_decay=0``. The first
    step's buffer is ``g_1`` itself (torch's quirk: not dampened). Sutskever et al. 2013.
    """
    del foreach, differentiable, fused
    where = "SGD"
    check.at_least(where, "learning rate", "lr", lr)
    check.at_least(where, "momentum value", "momentum", momentum)
    check.at_least(where, "weight_decay value", "weight_decay", weight_decay)
    has_momentum = not _is_zero(momentum)
    if nesterov and (not has_momentum or not _is_zero(dampening)):
        raise ValueError(
            "SGD: Nesterov momentum requires a momentum and zero dampening "
            "(pass `momentum` > 0 and `dampening=0`, or `nesterov=False`)"
        )
    return rule_transform(
        as_real_pairs(_sgd_rule),
        SGDState,
        slots=[Slot("momentum_buffer")] if has_momentum else [],
        hyperparams={
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
        },
        static={"maximize": maximize, "nesterov": nesterov},
        uses_params=True,
        name=where,
    )


# ----------------------------------------------------------------------------- Adam


class AdamState(NamedTuple):
    count: Array
    exp_avg: Array
    exp_avg_sq: Array
    hyperparams: Hyperparams
    max_exp_avg_sq: Any = None


def _adam_rule(
    grad,
    exp_avg,
    exp_avg_sq,
    *max_exp_avg_sq,
    param,
    count,
    lr,
    beta1,
    one_minus_beta1,
    beta2,
    one_minus_beta2,
    eps,
    weight_decay,
    maximize,
    decoupled_weight_decay,
):
    g = -grad if maximize else grad
    if not decoupled_weight_decay:
        g = working_gradient(g, param, weight_decay, False)
    nu_floor = max_exp_avg_sq[0] if max_exp_avg_sq else None
    direction, exp_avg, exp_avg_sq = rules.adam(
        g,
        exp_avg,
        exp_avg_sq,
        count=count,
        b1=beta1,
        one_minus_b1=one_minus_beta1,
        b2=beta2,
        one_minus_b2=one_minus_beta2,
        eps=eps,
        eps_root=0.0,
        nesterov=False,
        nu_floor=nu_floor,
        precise_bias_correction=True,
    )
    update = -lr * direction
    if decoupled_weight_decay:
        # torch: p *= 1 - lr * wd before the Adam step, with the current lr.
        update = update - (lr * weight_decay) * param
    if nu_floor is None:
        return update, exp_avg, exp_avg_sq
    return update, exp_avg, exp_avg_sq, jnp.maximum(nu_floor, exp_avg_sq)


def _adam(
    where: str,
    lr: ScalarOrSchedule,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule],
    eps: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> GradientTransformationExtraArgs:
    check.at_least(where, "learning rate", "lr", lr)
    check.at_least(where, "epsilon value", "eps", eps)
    beta1, beta2 = check.betas(where, betas)
    check.at_least(where, "weight_decay value", "weight_decay", weight_decay)
    slots = [Slot("exp_avg"), Slot("exp_avg_sq")]
    if amsgrad:
        slots.append(Slot("max_exp_avg_sq"))
    return rule_transform(
        as_real_pairs(_adam_rule),
        AdamState,
        slots=slots,
        hyperparams={
            "lr": lr,
            "beta1": beta1,
            "beta2": beta2,
            "eps": eps,
            "weight_decay": weight_decay,
        },
        decays=("beta1", "beta2"),
        static={"maximize": maximize, "decoupled_weight_decay": decoupled_weight_decay},
        uses_params=True,
        name=where,
    )


@torch_optimizer
def Adam(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0,
    amsgrad: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
    decoupled_weight_decay: bool = False,
) -> GradientTransformationExtraArgs:
    """``torch.optim.Adam`` (Kingma & Ba 2015), with torch's eps and AMSGrad placement.

    .. math::
        m_t = \\beta_1 m + (1-\\beta_1) g, \\quad v_t = \\beta_2 v + (1-\\beta_2) g^2, \\quad
        p_t = p_{t-1} - \\eta \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{s_t/(1-\\beta_2^t)} + \\epsilon}

    with :math:`s_t = v_t`, or with ``amsgrad`` :math:`s_t = \\max(s_{t-1}, v_t)` (the max
    of the RAW second moment, Reddi et al. 2018, as torch; optax takes it after bias
    correction). ``weight_decay`` is L2 (added to g), or with ``decoupled_weight_decay``
    :math:`p \\leftarrow p (1 - \\eta\\lambda)` first (AdamW). Defaults as torch.
    """
    del foreach, capturable, differentiable, fused
    return _adam(
        "Adam", lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay
    )


@torch_optimizer
def AdamW(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> GradientTransformationExtraArgs:
    """``torch.optim.AdamW`` (Loshchilov & Hutter 2019): :func:`Adam` with decoupled decay.

    :math:`p \\leftarrow p (1 - \\eta\\lambda)`, then the Adam step. Default
    ``weight_decay=1e-2`` as torch (optax's adamw uses 1e-4).
    """
    del foreach, capturable, differentiable, fused
    return _adam("AdamW", lr, betas, eps, weight_decay, amsgrad, maximize, True)


# ----------------------------------------------------------------------------- Adagrad


class AdagradState(NamedTuple):
    count: Array
    sum: Array
    hyperparams: Hyperparams


def _adagrad_rule(grad, total, *, param, count, lr, lr_decay, weight_decay, eps, maximize):
    g = working_gradient(grad, param, weight_decay, maximize)
    clr = lr / (1 + (count - 1) * lr_decay)
    direction, total = rules.rss(g, total, eps=eps, eps_in_sqrt=False)
    return -clr * direction, total


@torch_optimizer
def Adagrad(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1e-2,
    lr_decay: ScalarOrSchedule = 0,
    weight_decay: ScalarOrSchedule = 0,
    initial_accumulator_value: float = 0,
    eps: ScalarOrSchedule = 1e-10,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> GradientTransformationExtraArgs:
    """``torch.optim.Adagrad`` (Duchi, Hazan & Singer 2011), eps outside the root.

    .. math::
        s_t = s_{t-1} + g_t^2, \\quad
        p_t = p_{t-1} - \\frac{\\eta}{1 + (t-1)\\,\\text{lr\\_decay}}
        \\frac{g_t}{\\sqrt{s_t} + \\epsilon}

    :math:`s_0` = ``initial_accumulator_value`` (default 0; optax's is 0.1), ``eps=1e-10``.
    For complex params the sum starts at ``complex(iav, iav)``, as torch.
    """
    del foreach, differentiable, fused
    where = "Adagrad"
    check.at_least(where, "learning rate", "lr", lr)
    check.at_least(where, "lr_decay value", "lr_decay", lr_decay)
    check.at_least(where, "weight_decay value", "weight_decay", weight_decay)
    check.at_least(
        where,
        "initial_accumulator_value value",
        "initial_accumulator_value",
        initial_accumulator_value,
    )
    check.at_least(where, "epsilon value", "eps", eps)
    transform = rule_transform(
        as_real_pairs(_adagrad_rule),
        AdagradState,
        slots=[Slot("sum", float(initial_accumulator_value))],
        hyperparams={"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay, "eps": eps},
        static={"maximize": maximize},
        uses_params=True,
        name=where,
    )
    return both_parts_initialised(transform, "sum", float(initial_accumulator_value))


# ----------------------------------------------------------------------------- RMSprop


class RMSpropState(NamedTuple):
    count: Array
    square_avg: Array
    hyperparams: Hyperparams
    grad_avg: Any = None
    momentum_buffer: Any = None


def _rmsprop_rule(
    grad,
    square_avg,
    *others,
    param,
    count,
    lr,
    alpha,
    one_minus_alpha,
    eps,
    weight_decay,
    momentum,
    maximize,
    centered,
    has_momentum,
):
    g = working_gradient(grad, param, weight_decay, maximize)
    others = list(others)
    scaling = {
        "count": count,
        "decay": alpha,
        "one_minus_decay": one_minus_alpha,
        "eps": eps,
        "eps_in_sqrt": False,
        "bias_correction": False,
    }
    if centered:
        direction, grad_avg, square_avg = rules.stddev(g, others.pop(0), square_avg, **scaling)
        new_slots = [square_avg, grad_avg]
    else:
        direction, square_avg = rules.rms(g, square_avg, **scaling)
        new_slots = [square_avg]
    if has_momentum:
        # torch: buf = momentum * buf + g / avg, lr applied outside the buffer.
        direction, buffer = rules.trace(
            direction, others.pop(0), momentum=momentum, nesterov=False
        )
        new_slots.append(buffer)
    return (-lr * direction, *new_slots)


@torch_optimizer
def RMSprop(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1e-2,
    alpha: ScalarOrSchedule = 0.99,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0,
    momentum: ScalarOrSchedule = 0,
    centered: bool = False,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> GradientTransformationExtraArgs:
    """``torch.optim.RMSprop`` (Hinton 2012; centered: Graves 2013), eps outside the root.

    .. math::
        v_t = \\alpha v + (1-\\alpha) g^2, \\quad
        d_t = g / (\\sqrt{v_t - \\bar g_t^2 \\text{ (centered)}} + \\epsilon), \\quad
        b_t = \\mu b_{t-1} + d_t, \\quad p_t = p_{t-1} - \\eta\\, b_t

    (no buffer when ``momentum=0``; no bias correction). Defaults as torch:
    ``alpha=0.99`` (optax: decay 0.9), ``eps=1e-8`` outside the root (optax: inside).
    """
    del capturable, foreach, differentiable
    where = "RMSprop"
    check.at_least(where, "learning rate", "lr", lr)
    check.at_least(where, "epsilon value", "eps", eps)
    check.at_least(where, "momentum value", "momentum", momentum)
    check.at_least(where, "weight_decay value", "weight_decay", weight_decay)
    check.at_least(where, "alpha value", "alpha", alpha)
    has_momentum = not _is_zero(momentum)
    slots = [Slot("square_avg")]
    if centered:
        slots.append(Slot("grad_avg"))
    if has_momentum:
        slots.append(Slot("momentum_buffer"))
    return rule_transform(
        as_real_pairs(_rmsprop_rule),
        RMSpropState,
        slots=slots,
        hyperparams={
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
        },
        decays=("alpha",),
        static={"maximize": maximize, "centered": centered, "has_momentum": has_momentum},
        uses_params=True,
        name=where,
    )


# ----------------------------------------------------------------------------- Adadelta


class AdadeltaState(NamedTuple):
    count: Array
    square_avg: Array
    acc_delta: Array
    hyperparams: Hyperparams


def _adadelta_rule(
    grad, square_avg, acc_delta, *, param, lr, rho, one_minus_rho, eps, weight_decay, maximize
):
    g = working_gradient(grad, param, weight_decay, maximize)
    delta, square_avg, acc_delta = rules.adadelta(
        g, square_avg, acc_delta, rho=rho, one_minus_rho=one_minus_rho, eps=eps
    )
    return -lr * delta, square_avg, acc_delta


@torch_optimizer
def Adadelta(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1.0,
    rho: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-6,
    weight_decay: ScalarOrSchedule = 0,
    foreach: bool | None = None,
    *,
    capturable: bool = False,
    maximize: bool = False,
    differentiable: bool = False,
) -> GradientTransformationExtraArgs:
    """``torch.optim.Adadelta`` (Zeiler 2012), eps inside both roots.

    .. math::
        v_t = \\rho v + (1-\\rho) g^2, \\quad
        \\delta_t = \\frac{\\sqrt{u_{t-1} + \\epsilon}}{\\sqrt{v_t + \\epsilon}} g, \\quad
        u_t = \\rho u + (1-\\rho) \\delta_t^2, \\quad p_t = p_{t-1} - \\eta\\,\\delta_t

    Defaults as torch: ``lr=1.0, rho=0.9, eps=1e-6``.
    """
    del foreach, capturable, differentiable
    where = "Adadelta"
    check.at_least(where, "learning rate", "lr", lr)
    check.in_unit_interval(where, "rho value", "rho", rho, include_one=True)
    check.at_least(where, "epsilon value", "eps", eps)
    check.at_least(where, "weight_decay value", "weight_decay", weight_decay)
    return rule_transform(
        as_real_pairs(_adadelta_rule),
        AdadeltaState,
        slots=[Slot("square_avg"), Slot("acc_delta")],
        hyperparams={"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay},
        decays=("rho",),
        static={"maximize": maximize},
        uses_params=True,
        name=where,
    )
