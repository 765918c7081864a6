"""MADGRAD: momentumized, adaptive, dual-averaged gradient method."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from optim_fn.contrib._common import start_slots_at_params
from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.rules.classic import abs_sq
from optim_fn.transforms._combine import chain


class MadgradState(NamedTuple):
    count: Array
    grad_sum_sq: Updates
    s: Updates
    x0: Updates
    hyperparams: Hyperparams


def madgrad_rule(
    grad: Array,
    grad_sum_sq: Array,
    s: Array,
    x0: Array,
    *,
    param: Array,
    count: Array,
    learning_rate: Array,
    momentum: Array,
    one_minus_momentum: Array,
    eps: Array,
) -> tuple:
    """MADGRAD (Defazio & Jelassi 2021, Algorithm 1).

    ``lambda_t = (lr + eps) sqrt(t)``; ``v_t = v + lambda_t |g|^2``; ``s_t = s + lambda_t g``;
    ``z = x0 - s_t / (cbrt(v_t) + eps)``; ``p_{t+1} = (1-c) z + c p`` (``c = momentum``),
    returned as the update ``p_{t+1} - p``.
    """
    weight = (learning_rate + eps) * jnp.sqrt(count.astype(learning_rate.dtype))
    grad_sum_sq = grad_sum_sq + (weight * abs_sq(grad)).astype(grad_sum_sq.dtype)
    s = s + (weight * grad).astype(s.dtype)
    z = x0 - s / (jnp.cbrt(grad_sum_sq.real) + eps)
    new_param = one_minus_momentum * z + momentum * param
    return new_param - param, grad_sum_sq, s, x0


@checks_once
def scale_by_madgrad(
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-6,
) -> GradientTransformationExtraArgs:
    """MADGRAD's step, learning rate included (it enters the dual averaging weights).

    .. math::
        \\lambda_t = (\\eta_t + \\epsilon)\\sqrt t,\\quad v_t = v_{t-1} + \\lambda_t |g_t|^2,
        \\quad s_t = s_{t-1} + \\lambda_t g_t,\\\\
        z_t = x_0 - \\frac{s_t}{\\sqrt[3]{v_t} + \\epsilon},\\quad
        p_{t+1} = (1-c)\\, z_t + c\\, p_t

    The update is :math:`p_{t+1} - p_t`; needs ``params``.
    """
    where = "scale_by_madgrad"
    check.check_learning_rate(where, learning_rate)
    check.check_decay(where, "momentum", momentum, allow_one=True)
    check.check_non_negative(where, "eps", eps)
    return start_slots_at_params(
        rule_transform(
            madgrad_rule,
            MadgradState,
            slots=[Slot("grad_sum_sq"), Slot("s"), Slot("x0")],
            hyperparams={"learning_rate": learning_rate, "momentum": momentum, "eps": eps},
            decays=("momentum",),
            uses_params=True,
            name=where,
        ),
        "x0",
    )


@checks_once
def madgrad(
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule = 0.9,
    weight_decay: ScalarOrSchedule = 0.0,
    eps: ScalarOrSchedule = 1e-6,
) -> GradientTransformationExtraArgs:
    """MADGRAD: dual averaging with a cube-root adaptive scale and momentum by averaging.

    Runs :func:`scale_by_madgrad` on ``g + wd p`` (L2 weight decay, as in the paper's
    code). Defaults: ``momentum=0.9``, ``weight_decay=0``, ``eps=1e-6``. Reference:
    Defazio & Jelassi, "Adaptivity without Compromise: A Momentumized, Adaptive, Dual
    Averaged Gradient Method for Stochastic Optimization", JMLR 2022. PyTorch: none.
    """
    check.check_non_negative("madgrad", "weight_decay", weight_decay)
    return chain(
        classic.add_decayed_weights(weight_decay),
        scale_by_madgrad(learning_rate, momentum, eps),
    )
