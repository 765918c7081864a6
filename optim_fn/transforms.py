"""Building blocks: one small transform per rule, each with a NamedTuple state.

Every state has ``count`` (int32 step counter, saturating), its per-parameter slots and
``hyperparams`` (see :mod:`optim_fn.hyperparams`). The optimizers in
:mod:`optim_fn.optimizers` are chains of these blocks.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from optim_fn import rules
from optim_fn import validation as check
from optim_fn.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.hyperparams import Hyperparams
from optim_fn.rule_transform import Slot, rule_transform


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
    from optim_fn.combine import masked

    return masked(transform, mask)


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
