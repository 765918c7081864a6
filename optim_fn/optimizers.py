"""The optimizers every tutorial teaches, with optax's names, keywords and defaults.

Each is a :func:`~optim_fn.combine.chain` of blocks from :mod:`optim_fn.transforms`.
Swapping ``optax.X`` for ``optim_fn.X`` gives the same updates (checked step by step
in ``tests/test_parity_optax.py``), except where optax has a defect; every deliberate
difference is listed in ``docs/differences.md``.
"""

from __future__ import annotations

from typing import Any

from optim_fn import transforms
from optim_fn import validation as check
from optim_fn.base import GradientTransformationExtraArgs, ScalarOrSchedule, identity
from optim_fn.combine import chain


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """Stochastic gradient descent, with optional heavy-ball or Nesterov momentum.

    .. math::
        v_t = g_t + \\mu v_{t-1}, \\qquad
        p_t = p_{t-1} - \\eta\\, v_t \\quad (\\text{Nesterov: } - \\eta (g_t + \\mu v_t))

    Without momentum, :math:`p_t = p_{t-1} - \\eta g_t`: full-batch gradient descent,
    stochastic or mini-batch depending on the gradient you pass.

    Defaults: ``momentum=None`` (none), ``nesterov=False``. References: Robbins & Monro
    (1951); Polyak (1964); Sutskever et al., ICML 2013 (Nesterov form).
    PyTorch: same numbers as ``torch.optim.SGD`` (which adds ``dampening`` and
    ``weight_decay``; see :mod:`optim_fn.torch`). Unlike optax, ``nesterov=True`` without
    momentum is an error rather than silently plain SGD.
    """
    check.check_learning_rate("sgd", learning_rate)
    if momentum is None and nesterov:
        raise ValueError(
            "sgd: `nesterov=True` needs momentum; pass e.g. `momentum=0.9`, "
            "or drop `nesterov`"
        )
    if momentum is not None:
        check.check_decay("sgd", "momentum", momentum, allow_one=True)
    check.check_dtype("sgd", "accumulator_dtype", accumulator_dtype)
    return chain(
        transforms.trace(momentum, nesterov, accumulator_dtype)
        if momentum is not None
        else identity(),
        transforms.scale_by_learning_rate(learning_rate),
    )


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float = 0.1,
    eps: ScalarOrSchedule = 1e-7,
) -> GradientTransformationExtraArgs:
    """Adagrad: per-coordinate steps shrinking with the sum of squared gradients.

    .. math::
        s_t = s_{t-1} + |g_t|^2, \\qquad p_t = p_{t-1} - \\eta\\, g_t / \\sqrt{s_t + \\epsilon}

    (no step where :math:`s_t = 0`). Defaults: ``initial_accumulator_value=0.1``
    (:math:`s_0`), ``eps=1e-7``. Reference: Duchi, Hazan & Singer, JMLR 2011.
    PyTorch: ``torch.optim.Adagrad`` starts at :math:`s_0 = 0` and uses
    :math:`g/(\\sqrt{s_t} + 10^{-10})`, eps outside the root.
    """
    where = "adagrad"
    check.check_learning_rate(where, learning_rate)
    check.check_non_negative(where, "initial_accumulator_value", initial_accumulator_value)
    check.check_non_negative(where, "eps", eps)
    return chain(
        transforms.scale_by_rss(initial_accumulator_value, eps),
        transforms.scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformationExtraArgs:
    """RMSprop: divide the gradient by a running root mean square of recent gradients.

    .. math::
        v_t = \\rho v_{t-1} + (1-\\rho) |g_t|^2, \\qquad
        u_t = -\\eta\\, g_t / \\sqrt{v_t + \\epsilon}

    ``centered=True`` uses :math:`v_t - m_t^2` with :math:`m_t` the running mean of
    :math:`g` (Graves 2013); ``eps_in_sqrt=False`` puts eps outside the root;
    ``bias_correction`` divides the averages by :math:`1-\\rho^t`; ``initial_scale`` is
    :math:`v_0`; ``momentum`` applies a trace to :math:`u_t` (after the learning rate,
    as optax does), ``nesterov`` its Nesterov form.

    Defaults: ``decay=0.9``, ``eps=1e-8``, ``initial_scale=0``, ``eps_in_sqrt=True``.
    Reference: Hinton, Neural Networks for Machine Learning, Lecture 6e (2012).
    PyTorch: ``torch.optim.RMSprop`` defaults to ``alpha=0.99``, puts eps outside the root
    and keeps the learning rate outside the momentum buffer.
    """
    where = "rmsprop"
    check.check_learning_rate(where, learning_rate)
    if momentum is None and nesterov:
        raise ValueError(
            "rmsprop: `nesterov=True` needs momentum; pass e.g. `momentum=0.9`, "
            "or drop `nesterov`"
        )
    if momentum is not None:
        check.check_decay(where, "momentum", momentum, allow_one=True)
    scaler = transforms.scale_by_stddev if centered else transforms.scale_by_rms
    return chain(
        scaler(
            decay=decay,
            eps=eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            bias_correction=bias_correction,
        ),
        transforms.scale_by_learning_rate(learning_rate),
        transforms.trace(momentum, nesterov) if momentum is not None else identity(),
    )


def adadelta(
    learning_rate: ScalarOrSchedule | None = 1.0,
    rho: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = None,
) -> GradientTransformationExtraArgs:
    """AdaDelta: steps scaled by the ratio of RMS past updates to RMS past gradients.

    .. math::
        E[g^2]_t = \\rho E[g^2]_{t-1} + (1-\\rho)|g_t|^2, \\quad
        \\Delta_t = \\frac{\\sqrt{E[\\Delta^2]_{t-1} + \\epsilon}}
                          {\\sqrt{E[g^2]_t + \\epsilon}} g_t, \\\\
        E[\\Delta^2]_t = \\rho E[\\Delta^2]_{t-1} + (1-\\rho)|\\Delta_t|^2, \\quad
        p_t = p_{t-1} - \\eta \\Delta_t

    where :math:`g_t` includes ``weight_decay * p`` (coupled, L2) on the leaves selected
    by ``weight_decay_mask``.

    Defaults: ``learning_rate=1.0``, ``rho=0.9``, ``eps=1e-6``, ``weight_decay=0``.
    Reference: Zeiler, arXiv:1212.5701 (2012). PyTorch: same numbers as
    ``torch.optim.Adadelta`` (default lr 1.0 there too).
    Differs from optax: optax's default ``learning_rate=None`` skips the sign flip and
    climbs the gradient; here the default is 1.0 (the paper's step) and ``None`` means 1.0.
    """
    if learning_rate is None:
        learning_rate = 1.0
    where = "adadelta"
    check.check_learning_rate(where, learning_rate)
    check.check_non_negative(where, "weight_decay", weight_decay)
    return chain(
        transforms.add_decayed_weights(weight_decay, weight_decay_mask),
        transforms.scale_by_adadelta(rho, eps),
        transforms.scale_by_learning_rate(learning_rate),
    )


def adam(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """Adam: momentum on the gradient, scaled by a running RMS, both bias-corrected.

    .. math::
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) |g_t|^2, \\\\
        \\hat m_t = \\frac{m_t}{1-\\beta_1^t}, \\quad \\hat v_t = \\frac{v_t}{1-\\beta_2^t},
        \\quad p_t = p_{t-1} - \\eta\\,\\frac{\\hat m_t}{\\sqrt{\\hat v_t + \\epsilon_{root}}
        + \\epsilon}

    ``nesterov=True`` gives NAdam with constant :math:`\\beta_1` (Dozat 2016).
    ``mu_dtype`` sets the dtype of :math:`m`.

    Defaults: ``b1=0.9``, ``b2=0.999``, ``eps=1e-8``, ``eps_root=0``.
    Reference: Kingma & Ba, ICLR 2015. PyTorch: same numbers as ``torch.optim.Adam``;
    torch's ``weight_decay`` is L2 (``chain(add_decayed_weights(wd), adam(lr))``).
    """
    check.check_learning_rate("adam", learning_rate)
    return chain(
        transforms.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        transforms.scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """AdamW: Adam with decoupled weight decay.

    .. math::
        p_t = p_{t-1} - \\eta \\left(\\frac{\\hat m_t}{\\sqrt{\\hat v_t + \\epsilon_{root}}
        + \\epsilon} + \\lambda p_{t-1}\\right)

    with :math:`\\hat m_t, \\hat v_t` as in :func:`adam`. ``mask`` (a tree of bools or a
    function of the params) selects the leaves that decay, e.g. not biases.

    Defaults: ``b1=0.9``, ``b2=0.999``, ``eps=1e-8``, ``weight_decay=1e-4``.
    Reference: Loshchilov & Hutter, ICLR 2019. PyTorch: ``torch.optim.AdamW`` gives the
    same numbers with equal ``weight_decay``, but its default is ``1e-2``.
    """
    check.check_learning_rate("adamw", learning_rate)
    check.check_non_negative("adamw", "weight_decay", weight_decay)
    return chain(
        transforms.scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        transforms.add_decayed_weights(weight_decay, mask),
        transforms.scale_by_learning_rate(learning_rate),
    )
