"""Building blocks of Adam's relatives: ``scale_by_{adamax, amsgrad, belief, yogi, radam, adan}``.

Each is one rule from :mod:`optim_fn.rules.adaptive` lifted by
:func:`~optim_fn.rule_transform.rule_transform`, with a NamedTuple state holding
``count``, the moments and the ``hyperparams``. Names, keywords and defaults are
optax's; the optimizers built from them are in :mod:`optim_fn.adam_family`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from optim_fn import validation as check
from optim_fn.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.hyperparams import Hyperparams
from optim_fn.rule_transform import Slot, rule_transform
from optim_fn.rules import adaptive as rules


class ScaleByAdamaxState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


class ScaleByAmsgradState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    nu_max: Updates
    hyperparams: Hyperparams


class ScaleByBeliefState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


class ScaleByYogiState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


class ScaleByRAdamState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


class ScaleByAdanState(NamedTuple):
    count: Array
    m: Updates
    v: Updates
    n: Updates
    g: Updates
    hyperparams: Hyperparams


def _check_moments(where: str, b1: Any, b2: Any, eps: Any, eps_root: Any = 0.0) -> None:
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "eps_root", eps_root)


def scale_by_adamax(
    b1: ScalarOrSchedule = 0.9, b2: ScalarOrSchedule = 0.999, eps: ScalarOrSchedule = 1e-8
) -> GradientTransformationExtraArgs:
    """Adamax's scaling (Kingma & Ba 2015, section 7.1).

    .. math::
        m_t = b_1 m_{t-1} + (1-b_1) g_t,\\quad u_t = \\max(b_2 u_{t-1}, |g_t| + \\epsilon),
        \\quad \\text{update} = \\frac{m_t}{(1-b_1^t)\\, u_t}
    """
    where = "scale_by_adamax"
    _check_moments(where, b1, b2, eps)
    return rule_transform(
        rules.adamax,
        ScaleByAdamaxState,
        slots=[Slot("mu"), Slot("nu")],
        hyperparams={"b1": b1, "b2": b2, "eps": eps},
        decays=("b1",),
        name=where,
    )


def scale_by_amsgrad(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformationExtraArgs:
    """AMSGrad's scaling (Reddi, Kale & Kumar 2018): Adam dividing by ``max_s v^_s``.

    .. math::
        \\hat v^{max}_t = \\max(\\hat v^{max}_{t-1}, \\hat v_t), \\quad
        u_t = \\hat m_t / (\\sqrt{\\hat v^{max}_t + \\epsilon_{root}} + \\epsilon)

    ``bias_correction_mu`` / ``bias_correction_nu`` turn the ``1/(1-b^t)`` corrections
    off. As in optax, the maximum is of the bias-corrected ``v`` (PyTorch's
    ``Adam(amsgrad=True)`` takes it of the raw ``v`` and corrects afterwards).
    """
    where = "scale_by_amsgrad"
    _check_moments(where, b1, b2, eps, eps_root)
    check.check_dtype(where, "mu_dtype", mu_dtype)
    return rule_transform(
        rules.amsgrad,
        ScaleByAmsgradState,
        slots=[Slot("mu", 0.0, mu_dtype), Slot("nu"), Slot("nu_max")],
        hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
        decays=("b1", "b2"),
        static={
            "bias_correction_mu": bias_correction_mu,
            "bias_correction_nu": bias_correction_nu,
        },
        name=where,
    )


def scale_by_belief(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-16,
    eps_root: ScalarOrSchedule = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """AdaBelief's scaling (Zhuang et al. 2020): the variance of ``g`` around its EMA.

    .. math::
        s_t = b_2 s_{t-1} + (1-b_2) |g_t - m_t|^2 + \\epsilon_{root}, \\quad
        u_t = \\hat m_t / (\\sqrt{s_t / (1-b_2^t)} + \\epsilon)

    ``nesterov=True`` uses Dozat's first moment, as in :func:`optim_fn.scale_by_adam`.
    """
    where = "scale_by_belief"
    _check_moments(where, b1, b2, eps, eps_root)
    return rule_transform(
        rules.belief,
        ScaleByBeliefState,
        slots=[Slot("mu"), Slot("nu")],
        hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
        decays=("b1", "b2"),
        static={"nesterov": nesterov},
        name=where,
    )


def scale_by_yogi(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-3,
    eps_root: ScalarOrSchedule = 0.0,
    initial_accumulator_value: float = 1e-6,
) -> GradientTransformationExtraArgs:
    """Yogi's scaling (Zaheer et al. 2018): ``v`` moves by ``(1-b2) g^2`` towards ``g^2``.

    .. math::
        v_t = v_{t-1} - (1-b_2)\\,\\mathrm{sign}(v_{t-1} - g_t^2)\\, g_t^2, \\quad
        u_t = \\hat m_t / (\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon)

    Both moments start at ``initial_accumulator_value``; both are bias-corrected (as in
    optax; the paper does not correct them).
    """
    where = "scale_by_yogi"
    _check_moments(where, b1, b2, eps, eps_root)
    check.check_non_negative(where, "initial_accumulator_value", initial_accumulator_value)
    return rule_transform(
        rules.yogi,
        ScaleByYogiState,
        slots=[Slot("mu", initial_accumulator_value), Slot("nu", initial_accumulator_value)],
        hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
        decays=("b1", "b2"),
        name=where,
    )


def scale_by_radam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    threshold: ScalarOrSchedule = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """RAdam's scaling (Liu et al. 2020): Adam's step times a variance rectifier.

    .. math::
        \\rho_\\infty = \\frac{2}{1-b_2} - 1,\\quad
        \\rho_t = \\rho_\\infty - \\frac{2 t b_2^t}{1-b_2^t},\\quad
        r_t = \\sqrt{\\frac{(\\rho_t-4)(\\rho_t-2)\\rho_\\infty}
                           {(\\rho_\\infty-4)(\\rho_\\infty-2)\\rho_t}}

    ``u_t = r_t \\hat m_t / (\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon)`` once
    ``rho_t >= threshold``, and ``u_t = \\hat m_t`` before.
    """
    where = "scale_by_radam"
    _check_moments(where, b1, b2, eps, eps_root)
    check.check_non_negative(where, "threshold", threshold)
    return rule_transform(
        rules.radam,
        ScaleByRAdamState,
        slots=[Slot("mu"), Slot("nu")],
        hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root, "threshold": threshold},
        decays=("b1", "b2"),
        static={"nesterov": nesterov},
        name=where,
    )


def scale_by_adan(
    b1: ScalarOrSchedule = 0.98,
    b2: ScalarOrSchedule = 0.92,
    b3: ScalarOrSchedule = 0.99,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
) -> GradientTransformationExtraArgs:
    """Adan's scaling (Xie et al. 2022): Nesterov momentum estimated from gradient differences.

    .. math::
        d_t = g_t - g_{t-1}\\ (0 \\text{ at } t=1),\\quad m_t = b_1 m + (1-b_1) g_t,\\quad
        v_t = b_2 v + (1-b_2) d_t,\\\\
        n_t = b_3 n + (1-b_3) |g_t + (1-b_2) d_t|^2,\\quad
        u_t = \\frac{\\hat m_t + (1-b_2)\\hat v_t}{\\sqrt{\\hat n_t + \\epsilon_{root}} + \\epsilon}

    with bias corrections ``^``. The decays weight the OLD value, as everywhere in optax
    (the paper writes ``1 - b`` where optax writes ``b``: its ``(0.02, 0.08, 0.01)`` are
    optax's defaults ``(0.98, 0.92, 0.99)``).
    """
    where = "scale_by_adan"
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_decay(where, "b3", b3)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "eps_root", eps_root)
    return rule_transform(
        rules.adan,
        ScaleByAdanState,
        slots=[Slot("m"), Slot("v"), Slot("n"), Slot("g")],
        hyperparams={"b1": b1, "b2": b2, "b3": b3, "eps": eps, "eps_root": eps_root},
        decays=("b1", "b2", "b3"),
        name=where,
    )
