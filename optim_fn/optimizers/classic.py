"""The optimizers every tutorial teaches, and their blocks: SGD (momentum, Nesterov),
Adagrad, RMSprop, AdaDelta, Adam, AdamW.

Each ``scale_by_*`` block is one rule of :mod:`optim_fn.rules.classic` lifted by
:func:`~optim_fn.core.lift.rule_transform`, with a NamedTuple state (``count``, its
per-parameter slots, ``hyperparams``). Each optimizer is a
:func:`~optim_fn.transforms.chain` of blocks, with optax's names, keywords and defaults.
Swapping ``optax.X`` for ``optim_fn.X`` gives the same updates (checked step by step in
``tests/test_parity_optax.py``) except where optax has a defect; every deliberate
difference is listed in ``docs/differences.md``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from optim_fn import rules
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    Updates,
    identity,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.transforms._combine import chain


class ScaleByLearningRateState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class TraceState(NamedTuple):
    count: Array
    trace: Updates
    hyperparams: Hyperparams


class AddDecayedWeightsState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class ScaleByAdamState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


class ScaleByRmsState(NamedTuple):
    count: Array
    nu: Updates
    hyperparams: Hyperparams


class ScaleByStddevState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


class ScaleByRssState(NamedTuple):
    count: Array
    sum_of_squares: Updates
    hyperparams: Hyperparams


class ScaleByAdadeltaState(NamedTuple):
    count: Array
    e_g: Updates
    e_x: Updates
    hyperparams: Hyperparams


@checks_once
def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> GradientTransformationExtraArgs:
    """Scales updates by ``-learning_rate`` (``+learning_rate`` if ``flip_sign=False``).

    ``learning_rate`` is a number or a schedule (a function of the step count, 0 at the
    first update); its value at each step is stored as the hyperparameter
    ``"learning_rate"``. Unlike optax, ``None`` is not accepted: optax treats it as "no
    scaling", which also drops the sign flip and turns descent into ascent.
    """
    if learning_rate is None:
        raise ValueError(
            "scale_by_learning_rate: `learning_rate` must be a number or a schedule, got "
            "None; for no scaling use `optim_fn.identity()` (and mind the sign)"
        )
    check.check_learning_rate("scale_by_learning_rate", learning_rate)
    return rule_transform(
        rules.scale_by_learning_rate,
        ScaleByLearningRateState,
        hyperparams={"learning_rate": learning_rate},
        static={"flip_sign": flip_sign},
        name="scale_by_learning_rate",
    )


@checks_once
def trace(
    decay: ScalarOrSchedule, nesterov: bool = False, accumulator_dtype: Any = None
) -> GradientTransformationExtraArgs:
    """Momentum: ``v_t = g_t + decay v_{t-1}``; updates ``v_t`` (or ``g_t + decay v_t``).

    The decay is stored as the hyperparameter ``"momentum"``. Polyak (1964); Nesterov
    form as in Sutskever et al. (2013). Same defaults as :func:`optax.trace`.
    """
    check.check_decay("trace", "decay", decay, allow_one=True)
    check.check_dtype("trace", "accumulator_dtype", accumulator_dtype)
    return rule_transform(
        rules.trace,
        TraceState,
        slots=[Slot("trace", 0.0, accumulator_dtype)],
        hyperparams={"momentum": decay},
        static={"nesterov": nesterov},
        name="trace",
    )


@checks_once
def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0, mask: Any = None
) -> GradientTransformationExtraArgs:
    """``u = g + weight_decay * p``; needs ``params``. ``mask`` limits it to some leaves.

    Before a scaler this is L2 regularisation (torch's ``weight_decay=``); after the
    scaler and before the learning rate it is decoupled weight decay (Loshchilov & Hutter
    2019), as in :func:`adamw`.
    """
    check.check_non_negative("add_decayed_weights", "weight_decay", weight_decay)
    transform = rule_transform(
        rules.add_decayed_weights,
        AddDecayedWeightsState,
        hyperparams={"weight_decay": weight_decay},
        uses_params=True,
        name="add_decayed_weights",
    )
    if mask is None:
        return transform
    from optim_fn.transforms._combine import masked

    return masked(transform, mask)


@checks_once
def scale_by_adam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """Adam's scaling, without the learning rate (Kingma & Ba 2015).

    .. math::
        m_t = b_1 m_{t-1} + (1-b_1) g_t,\\quad v_t = b_2 v_{t-1} + (1-b_2) |g_t|^2,\\\\
        u_t = \\hat m_t / (\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon),\\quad
        \\hat m_t = m_t/(1-b_1^t),\\ \\hat v_t = v_t/(1-b_2^t).

    With ``nesterov=True``, :math:`\\hat m_t = b_1 m_t/(1-b_1^{t+1}) + (1-b_1) g_t/(1-b_1^t)`
    (Dozat 2016). ``mu_dtype`` and ``nu_dtype`` set the storage dtypes of the first and
    second moments (default: the param's dtype). The arithmetic runs in float32 or wider
    whatever they are, since the hyperparameters are float32; e.g. bf16 params with
    ``nu_dtype=jnp.float32`` keep the second moment's small increments ``(1-b_2) g^2``
    that bf16 storage would round away.
    """
    where = "scale_by_adam"
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "eps_root", eps_root)
    check.check_dtype(where, "mu_dtype", mu_dtype)
    check.check_dtype(where, "nu_dtype", nu_dtype)
    return rule_transform(
        rules.adam,
        ScaleByAdamState,
        slots=[Slot("mu", 0.0, mu_dtype), Slot("nu", 0.0, nu_dtype)],
        hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
        decays=("b1", "b2"),
        static={"nesterov": nesterov},
        name=where,
    )


@checks_once
def scale_by_rms(
    decay: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformationExtraArgs:
    """RMSprop's scaling: ``u = g / sqrt(v_t + eps)``, ``v_t = decay v + (1-decay)|g|^2``.

    ``eps_in_sqrt=False`` gives ``g / (sqrt(v_t) + eps)`` (PyTorch's placement);
    ``bias_correction`` divides ``v_t`` by ``1 - decay^t``; ``v_0 = initial_scale``.
    Hinton, Neural Networks for Machine Learning, Lecture 6e (2012).
    """
    where = "scale_by_rms"
    check.check_decay(where, "decay", decay)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "initial_scale", initial_scale)
    return rule_transform(
        rules.rms,
        ScaleByRmsState,
        slots=[Slot("nu", initial_scale)],
        hyperparams={"decay": decay, "eps": eps},
        decays=("decay",),
        static={"eps_in_sqrt": eps_in_sqrt, "bias_correction": bias_correction},
        name=where,
    )


@checks_once
def scale_by_stddev(
    decay: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformationExtraArgs:
    """Centered RMSprop's scaling: ``u = g / sqrt(v_t - m_t^2 + eps)`` (Graves 2013).

    ``m_t``, ``v_t`` are moving averages of ``g`` and ``|g|^2`` with rate ``decay``;
    ``v_0 = initial_scale``, ``m_0 = 0``. Options as in :func:`scale_by_rms`.
    """
    where = "scale_by_stddev"
    check.check_decay(where, "decay", decay)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "initial_scale", initial_scale)
    return rule_transform(
        rules.stddev,
        ScaleByStddevState,
        slots=[Slot("mu"), Slot("nu", initial_scale)],
        hyperparams={"decay": decay, "eps": eps},
        decays=("decay",),
        static={"eps_in_sqrt": eps_in_sqrt, "bias_correction": bias_correction},
        name=where,
    )


@checks_once
def scale_by_rss(
    initial_accumulator_value: float = 0.1, eps: ScalarOrSchedule = 1e-7
) -> GradientTransformationExtraArgs:
    """Adagrad's scaling: ``s_t = s + |g|^2``, ``u = g / sqrt(s_t + eps)`` (0 where s_t=0).

    ``s_0 = initial_accumulator_value``. Duchi, Hazan & Singer (2011).
    """
    where = "scale_by_rss"
    check.check_non_negative(where, "initial_accumulator_value", initial_accumulator_value)
    check.check_non_negative(where, "eps", eps)
    return rule_transform(
        rules.rss,
        ScaleByRssState,
        slots=[Slot("sum_of_squares", initial_accumulator_value)],
        hyperparams={"eps": eps},
        name=where,
    )


@checks_once
def scale_by_adadelta(
    rho: ScalarOrSchedule = 0.9, eps: ScalarOrSchedule = 1e-6
) -> GradientTransformationExtraArgs:
    """AdaDelta's scaling: ``u = sqrt(E[dx^2] + eps) / sqrt(E[g^2]_t + eps) * g``.

    Both averages decay at ``rho``; ``E[dx^2]`` is updated with ``u`` after the step.
    Zeiler (2012), Algorithm 1.
    """
    where = "scale_by_adadelta"
    check.check_decay(where, "rho", rho)
    check.check_non_negative(where, "eps", eps)
    return rule_transform(
        rules.adadelta,
        ScaleByAdadeltaState,
        slots=[Slot("e_g"), Slot("e_x")],
        hyperparams={"rho": rho, "eps": eps},
        decays=("rho",),
        name=where,
    )


@checks_once
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
        trace(momentum, nesterov, accumulator_dtype)
        if momentum is not None
        else identity(),
        scale_by_learning_rate(learning_rate),
    )


@checks_once
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
        scale_by_rss(initial_accumulator_value, eps),
        scale_by_learning_rate(learning_rate),
    )


@checks_once
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
    scaler = scale_by_stddev if centered else scale_by_rms
    return chain(
        scaler(
            decay=decay,
            eps=eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            bias_correction=bias_correction,
        ),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov) if momentum is not None else identity(),
    )


@checks_once
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
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(learning_rate),
    )


@checks_once
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
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


@checks_once
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
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
