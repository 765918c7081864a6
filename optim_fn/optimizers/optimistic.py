"""Optimistic gradient methods for min-max games (optax's names and defaults)."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.rules import adam_variants as rules
from optim_fn.transforms._combine import chain


class ScaleByOptimisticGradientState(NamedTuple):
    count: Array
    previous_gradient: Updates
    hyperparams: Hyperparams


@checks_once
def scale_by_optimistic_gradient(
    alpha: ScalarOrSchedule = 1.0, beta: ScalarOrSchedule = 1.0
) -> GradientTransformationExtraArgs:
    """The optimistic extrapolation ``u_t = (alpha + beta) g_t - beta g_{t-1}`` (``g_0 = g_1``)."""
    check.check_scalar("scale_by_optimistic_gradient", "alpha", alpha)
    check.check_scalar("scale_by_optimistic_gradient", "beta", beta)
    return rule_transform(
        rules.optimistic_gradient,
        ScaleByOptimisticGradientState,
        slots=[Slot("previous_gradient")],
        hyperparams={"alpha": alpha, "beta": beta},
        name="scale_by_optimistic_gradient",
    )


@checks_once
def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule,
    alpha: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 1.0,
) -> GradientTransformationExtraArgs:
    """Optimistic gradient descent (OGD), for smooth games and min-max problems.

    .. math:: p_t = p_{t-1} - \\eta\\left((\\alpha + \\beta) g_t - \\beta g_{t-1}\\right)

    with :math:`g_0 = g_1`. Defaults: ``alpha=1``, ``beta=1`` (the classic
    :math:`2 g_t - g_{t-1}`). References: Popov 1980; Mokhtari, Ozdaglar & Pattathil,
    AISTATS 2020. PyTorch: none.
    """
    check.check_learning_rate("optimistic_gradient_descent", learning_rate)
    return chain(
        scale_by_optimistic_gradient(alpha, beta),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule,
    *,
    alpha: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 1.0,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    nesterov: bool = True,
) -> GradientTransformationExtraArgs:
    """Optimistic Adam: the optimistic extrapolation of Adam's (Nesterov) step.

    .. math::
        a_t = \\frac{\\hat m_t}{\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon}, \\qquad
        p_t = p_{t-1} - \\eta\\left((\\alpha + \\beta) a_t - \\beta a_{t-1}\\right)

    Defaults: ``alpha=1``, ``beta=1``, ``b1=0.9``, ``b2=0.999``, ``eps=1e-8``,
    ``nesterov=True``. Reference: Daskalakis, Ilyas, Syrgkanis & Zeng, "Training GANs
    with Optimism", ICLR 2018. PyTorch: none.
    """
    check.check_learning_rate("optimistic_adam_v2", learning_rate)
    return chain(
        classic.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha, beta),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def optimistic_adam(
    learning_rate: float,
    optimism: float | None = None,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradientTransformationExtraArgs:
    """Deprecated (as in optax): use :func:`optimistic_adam_v2`.

    ``p_t = p_{t-1} - ((lr + optimism) a_t - optimism a_{t-1})`` with Adam's step
    ``a_t``; ``optimism`` defaults to ``learning_rate``, which must be a number.
    """
    warnings.warn(
        "`optimistic_adam` is deprecated, please use `optimistic_adam_v2` instead.",
        DeprecationWarning,
        stacklevel=2,
    )
    if callable(learning_rate):
        raise ValueError(
            "optimistic_adam: `learning_rate` must be a number (this deprecated version has "
            "no schedules); use `optimistic_adam_v2`, which accepts schedules"
        )
    check.check_learning_rate("optimistic_adam", learning_rate)
    optimism = learning_rate if optimism is None else optimism
    return chain(
        classic.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha=learning_rate, beta=optimism),
        classic.scale_by_learning_rate(1.0),
    )
