"""Adam's relatives as optimizers, with optax's names, keywords and defaults.

adamax, adamaxw, amsgrad, nadam, nadamw, radam, adabelief, yogi, adan: each a
:func:`~optim_fn.combine.chain` of a scaler from :mod:`optim_fn.adaptive` (or
:func:`optim_fn.scale_by_adam`), optional decoupled weight decay and the learning rate.
Checked step by step against optax in ``tests/test_family_parity.py``.
"""

from __future__ import annotations

from typing import Any

from optim_fn import adaptive, transforms
from optim_fn import validation as check
from optim_fn.base import GradientTransformationExtraArgs, ScalarOrSchedule
from optim_fn.combine import chain
from optim_fn.optimizers import adam, adamw


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
        adaptive.scale_by_adamax(b1, b2, eps),
        transforms.scale_by_learning_rate(learning_rate),
    )


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
        adaptive.scale_by_adamax(b1, b2, eps),
        transforms.add_decayed_weights(weight_decay, mask),
        transforms.scale_by_learning_rate(learning_rate),
    )


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
        adaptive.scale_by_amsgrad(
            b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu
        ),
        transforms.scale_by_learning_rate(learning_rate),
    )


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
        adaptive.scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov),
        transforms.scale_by_learning_rate(learning_rate),
    )


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
        adaptive.scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov),
        transforms.scale_by_learning_rate(learning_rate),
    )


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
        adaptive.scale_by_yogi(b1, b2, eps),
        transforms.scale_by_learning_rate(learning_rate),
    )


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
        adaptive.scale_by_adan(b1, b2, b3, eps, eps_root),
        transforms.add_decayed_weights(weight_decay, mask),
        transforms.scale_by_learning_rate(learning_rate),
    )
