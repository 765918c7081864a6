"""Adam's relatives: adamax(w), amsgrad, nadam(w), radam, adabelief, yogi, adan.

Each ``scale_by_*`` block is one rule of :mod:`optim_fn.rules.adam_variants` lifted by
:func:`~optim_fn.core.lift.rule_transform`; each optimizer chains it (or
:func:`optim_fn.scale_by_adam`) with optional decoupled weight decay and the learning
rate, with optax's names, keywords and defaults. Checked step by step against optax in
``tests/test_family_parity.py``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.optimizers.classic import adam, adamw
from optim_fn.rules import adam_variants as rules
from optim_fn.transforms._combine import chain


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


@checks_once
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


@checks_once
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


@checks_once
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


@checks_once
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


@checks_once
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


@checks_once
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


@checks_once
def adamax(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
) -> GradientTransformationExtraArgs:
    """Adamax: Adam with the infinity norm in place of the second moment.

    .. math::
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        u_t = \\max(\\beta_2 u_{t-1}, |g_t| + \\epsilon), \\quad
        p_t = p_{t-1} - \\eta \\frac{m_t}{(1-\\beta_1^t) u_t}

    Defaults: ``b1=0.9``, ``b2=0.999``, ``eps=1e-8``. Reference: Kingma & Ba, ICLR 2015,
    Algorithm 2. PyTorch: ``torch.optim.Adamax`` gives the same numbers (its eps is also
    added to ``|g|`` inside the max).
    """
    check.check_learning_rate("adamax", learning_rate)
    return chain(
        scale_by_adamax(b1, b2, eps),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """AdamaxW: Adamax with decoupled weight decay.

    .. math::
        p_t = p_{t-1} - \\eta \\left(\\frac{m_t}{(1-\\beta_1^t) u_t} + \\lambda p_{t-1}\\right)

    with :math:`m_t, u_t` as in :func:`adamax`; ``mask`` selects the leaves that decay.
    Defaults: ``b1=0.9``, ``b2=0.999``, ``eps=1e-8``, ``weight_decay=1e-4``.
    References: Kingma & Ba, ICLR 2015; Loshchilov & Hutter, ICLR 2019.
    PyTorch: no counterpart (``Adamax(weight_decay=)`` is L2, not decoupled).
    """
    check.check_learning_rate("adamaxw", learning_rate)
    check.check_non_negative("adamaxw", "weight_decay", weight_decay)
    return chain(
        scale_by_adamax(b1, b2, eps),
        classic.add_decayed_weights(weight_decay, mask),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformationExtraArgs:
    """AMSGrad: Adam with a non-increasing effective step (the running max of ``v``).

    .. math::
        \\hat v^{max}_t = \\max(\\hat v^{max}_{t-1}, \\hat v_t), \\quad
        p_t = p_{t-1} - \\eta\\, \\hat m_t / (\\sqrt{\\hat v^{max}_t + \\epsilon_{root}} +
        \\epsilon)

    with :math:`\\hat m_t, \\hat v_t` Adam's bias-corrected moments (each correction can
    be turned off). Defaults: ``b1=0.9``, ``b2=0.999``, ``eps=1e-8``, ``eps_root=0``.
    Reference: Reddi, Kale & Kumar, ICLR 2018. PyTorch: ``Adam(amsgrad=True)`` takes the
    max of the raw ``v`` and divides by ``sqrt(1-b2^t)`` afterwards, so its numbers differ
    from optax's and ours after the first step.
    """
    check.check_learning_rate("amsgrad", learning_rate)
    return chain(
        scale_by_amsgrad(
            b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu
        ),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def nadam(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradientTransformationExtraArgs:
    """NAdam: Adam with Nesterov momentum (constant :math:`\\beta_1`).

    .. math::
        \\hat m_t = \\frac{\\beta_1 m_t}{1-\\beta_1^{t+1}} + \\frac{(1-\\beta_1) g_t}
        {1-\\beta_1^t}, \\quad p_t = p_{t-1} - \\eta\\, \\frac{\\hat m_t}
        {\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon}

    :func:`optim_fn.adam` with ``nesterov=True``. Defaults as :func:`optim_fn.adam`.
    Reference: Dozat, ICLR 2016 workshop. PyTorch: ``torch.optim.NAdam`` multiplies
    :math:`\\beta_1` by a momentum-decay schedule (``momentum_decay=4e-3``), so its
    numbers differ.
    """
    check.check_learning_rate("nadam", learning_rate)
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)


@checks_once
def nadamw(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = True,
) -> GradientTransformationExtraArgs:
    """NAdamW: :func:`nadam` with decoupled weight decay (:func:`optim_fn.adamw`, Nesterov).

    .. math::
        p_t = p_{t-1} - \\eta \\left(\\frac{\\hat m_t}{\\sqrt{\\hat v_t + \\epsilon_{root}} +
        \\epsilon} + \\lambda p_{t-1}\\right)

    with Dozat's :math:`\\hat m_t` (see :func:`nadam`). Defaults as :func:`optim_fn.adamw`
    (``weight_decay=1e-4``). References: Dozat 2016; Loshchilov & Hutter, ICLR 2019.
    PyTorch: ``NAdam(decoupled_weight_decay=True)`` uses the momentum-decay schedule.
    """
    check.check_learning_rate("nadamw", learning_rate)
    return adamw(
        learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov=nesterov
    )


@checks_once
def radam(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    threshold: ScalarOrSchedule = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """RAdam: Adam whose adaptive step is switched on, and rectified, as ``v`` becomes reliable.

    .. math::
        p_t = p_{t-1} - \\eta \\begin{cases} r_t \\hat m_t / (\\sqrt{\\hat v_t +
        \\epsilon_{root}} + \\epsilon) & \\rho_t \\ge \\text{threshold} \\\\ \\hat m_t &
        \\text{otherwise} \\end{cases}

    with :math:`\\rho_t, r_t` as in :func:`optim_fn.scale_by_radam`. Defaults:
    ``b1=0.9``, ``b2=0.999``, ``eps=1e-8``, ``threshold=5``. Reference: Liu et al.,
    ICLR 2020. PyTorch: ``torch.optim.RAdam`` switches at ``rho_t > 5`` (strict) and adds
    eps to the raw ``sqrt(v_t)`` (an effective ``eps / sqrt(1-b2^t)``), so its numbers
    differ slightly while ``1-b2^t`` is small. A ``threshold`` below 4 would make the
    rectifier imaginary: the steps with ``rho_t < 4`` are then 0 (optax: NaN).
    """
    check.check_learning_rate("radam", learning_rate)
    return chain(
        scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-16,
    eps_root: ScalarOrSchedule = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """AdaBelief: Adam whose second moment is that of the prediction error ``g - m``.

    .. math::
        s_t = \\beta_2 s_{t-1} + (1-\\beta_2)|g_t - m_t|^2 + \\epsilon_{root}, \\quad
        p_t = p_{t-1} - \\eta\\, \\hat m_t / (\\sqrt{s_t/(1-\\beta_2^t)} + \\epsilon)

    Defaults: ``b1=0.9``, ``b2=0.999``, ``eps=1e-16``, ``eps_root=1e-16`` (optax's; the
    paper uses ``eps=1e-8`` outside the root). Reference: Zhuang et al., NeurIPS 2020.
    PyTorch: no counterpart in ``torch.optim``.
    """
    check.check_learning_rate("adabelief", learning_rate)
    return chain(
        scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def yogi(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-3,
) -> GradientTransformationExtraArgs:
    """Yogi: Adam whose second moment moves additively, by at most ``(1-b2) g^2``.

    .. math::
        v_t = v_{t-1} - (1-\\beta_2)\\,\\mathrm{sign}(v_{t-1} - g_t^2)\\, g_t^2, \\quad
        p_t = p_{t-1} - \\eta\\, \\hat m_t / (\\sqrt{\\hat v_t} + \\epsilon)

    Both moments start at ``1e-6`` and are bias-corrected (as in optax). Defaults:
    ``b1=0.9``, ``b2=0.999``, ``eps=1e-3``. Reference: Zaheer et al., NeurIPS 2018.
    PyTorch: no counterpart in ``torch.optim``.
    """
    check.check_learning_rate("yogi", learning_rate)
    return chain(
        scale_by_yogi(b1, b2, eps),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def adan(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.98,
    b2: ScalarOrSchedule = 0.92,
    b3: ScalarOrSchedule = 0.99,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """Adan: adaptive Nesterov momentum from gradient differences, no extra gradient call.

    .. math::
        p_t = p_{t-1} - \\eta\\left(\\frac{\\hat m_t + (1-\\beta_2)\\hat v_t}
        {\\sqrt{\\hat n_t + \\epsilon_{root}} + \\epsilon} + \\lambda p_{t-1}\\right)

    with the moments of :func:`optim_fn.scale_by_adan`. Defaults: ``b1=0.98``,
    ``b2=0.92``, ``b3=0.99``, ``eps=1e-8``, ``eps_root=1e-8``, ``weight_decay=0``.
    Reference: Xie et al., arXiv:2208.06677 (2022). As in optax, the weight decay is
    decoupled (AdamW-style, ``-eta wd p``); the paper's Algorithm 1 applies it as a
    proximal step ``p / (1 + eta wd)``, which agrees to first order in ``eta wd``.
    PyTorch: no counterpart in ``torch.optim``.
    """
    check.check_learning_rate("adan", learning_rate)
    check.check_non_negative("adan", "weight_decay", weight_decay)
    return chain(
        scale_by_adan(b1, b2, b3, eps, eps_root),
        classic.add_decayed_weights(weight_decay, mask),
        classic.scale_by_learning_rate(learning_rate),
    )
