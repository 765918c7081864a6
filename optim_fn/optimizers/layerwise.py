"""Layer-wise optimizers: LAMB, LARS, Fromage, NovoGrad, and their building blocks.

Each reads whole leaves (a layer's weight and its gradient norms), so each refuses flat
mode (:mod:`optim_fn.flat`) at ``init`` with the reason. Complex params are supported:
norms are of ``|x|``. Names, keywords and defaults are optax's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import leafwise_transform, rule_transform
from optim_fn.core.numerics import real_dtype
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.rules import layerwise as rules
from optim_fn.transforms._combine import chain, masked

_PER_LAYER = "it scales each leaf by a norm of that leaf (one layer's weight)"


class ScaleByTrustRatioState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class ScaleByParamBlockNormState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class ScaleByParamBlockRmsState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class FromageStepState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class ScaleByNovogradState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


@checks_once
def scale_by_trust_ratio(
    min_norm: ScalarOrSchedule = 0.0,
    trust_coefficient: ScalarOrSchedule = 1.0,
    eps: ScalarOrSchedule = 0.0,
) -> GradientTransformationExtraArgs:
    """Scales each leaf by its trust ratio (You et al. 2017, 2020); needs ``params``.

    .. math::
        u = g\\, \\frac{c\\, \\max(\\|p\\|, n_{min})}{\\max(\\|g\\|, n_{min}) + \\epsilon}

    and ``u = g`` where either norm is 0. ``c`` is ``trust_coefficient``.
    """
    where = "scale_by_trust_ratio"
    check.check_non_negative(where, "min_norm", min_norm)
    check.check_non_negative(where, "trust_coefficient", trust_coefficient)
    check.check_non_negative(where, "eps", eps)
    return leafwise_transform(
        rules.trust_ratio,
        ScaleByTrustRatioState,
        hyperparams={"min_norm": min_norm, "trust_coefficient": trust_coefficient, "eps": eps},
        uses_params=True,
        name=where,
        flat_reason=_PER_LAYER,
    )


@checks_once
def scale_by_param_block_norm(
    min_scale: ScalarOrSchedule = 1e-3,
) -> GradientTransformationExtraArgs:
    """``u = g max(||p||, min_scale)`` per leaf; needs ``params``."""
    check.check_non_negative("scale_by_param_block_norm", "min_scale", min_scale)
    return leafwise_transform(
        rules.param_block_norm,
        ScaleByParamBlockNormState,
        hyperparams={"min_scale": min_scale},
        uses_params=True,
        name="scale_by_param_block_norm",
        flat_reason=_PER_LAYER,
    )


@checks_once
def scale_by_param_block_rms(min_scale: ScalarOrSchedule = 1e-3) -> GradientTransformationExtraArgs:
    """``u = g max(rms(p), min_scale)`` per leaf, ``rms(p) = sqrt(mean |p|^2)``; needs params."""
    check.check_non_negative("scale_by_param_block_rms", "min_scale", min_scale)
    return leafwise_transform(
        rules.param_block_rms,
        ScaleByParamBlockRmsState,
        hyperparams={"min_scale": min_scale},
        uses_params=True,
        name="scale_by_param_block_rms",
        flat_reason=_PER_LAYER,
    )


@checks_once
def lamb(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-6,
    eps_root: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """LAMB: Adam's step plus decoupled decay, rescaled per layer to ``||p||``.

    .. math::
        r_t = \\frac{\\hat m_t}{\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon} + \\lambda
        p_{t-1}, \\qquad p_t = p_{t-1} - \\eta\\, \\frac{\\|p_{t-1}\\|}{\\|r_t\\|} r_t

    (ratio 1 where a norm is 0). Defaults: ``b1=0.9``, ``b2=0.999``, ``eps=1e-6``,
    ``weight_decay=0``. Reference: You et al., "Large Batch Optimization for Deep
    Learning: Training BERT in 76 minutes", ICLR 2020. PyTorch: none. Not in flat mode.
    """
    check.check_learning_rate("lamb", learning_rate)
    check.check_non_negative("lamb", "weight_decay", weight_decay)
    return chain(
        classic.scale_by_adam(b1, b2, eps, eps_root),
        classic.add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = True,
    trust_coefficient: ScalarOrSchedule = 0.001,
    eps: ScalarOrSchedule = 0.0,
    trust_ratio_mask: Any = True,
    momentum: ScalarOrSchedule = 0.9,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """LARS: momentum SGD on gradients rescaled per layer by ``c ||p|| / ||g + wd p||``.

    .. math::
        r_t = g_t + \\lambda p_{t-1}, \\quad v_t = \\mu v_{t-1} + \\eta\\, \\frac{c
        \\|p_{t-1}\\|}{\\|r_t\\| + \\epsilon} r_t, \\quad p_t = p_{t-1} - v_t

    ``weight_decay_mask`` / ``trust_ratio_mask`` select the leaves that decay / are
    rescaled. Defaults: ``weight_decay=0``, ``trust_coefficient=1e-3``, ``eps=0``,
    ``momentum=0.9``. Reference: You, Gitman & Ginsburg, arXiv:1708.03888 (2017).
    PyTorch: none. Not in flat mode.
    """
    check.check_learning_rate("lars", learning_rate)
    check.check_non_negative("lars", "weight_decay", weight_decay)
    return chain(
        classic.add_decayed_weights(weight_decay, weight_decay_mask),
        masked(
            scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), trust_ratio_mask
        ),
        classic.scale_by_learning_rate(learning_rate),
        classic.trace(momentum, nesterov),
    )


def _fromage_step(learning_rate: ScalarOrSchedule) -> GradientTransformationExtraArgs:
    # Elementwise once the trust ratio is applied: lifted leaf by leaf, not batched.
    return rule_transform(
        rules.fromage_step,
        FromageStepState,
        hyperparams={"learning_rate": learning_rate},
        uses_params=True,
        name="fromage",
    )


@checks_once
def fromage(
    learning_rate: ScalarOrSchedule, min_norm: ScalarOrSchedule = 1e-6
) -> GradientTransformationExtraArgs:
    """Fromage: a step of relative size ``lr`` per layer, then a shrink that keeps norms.

    .. math::
        p_t = \\frac{1}{\\sqrt{1+\\eta^2}}\\left(p_{t-1} - \\eta\\, \\frac{\\|p_{t-1}\\|}
        {\\|g_t\\|} g_t\\right)

    (norms floored at ``min_norm``). Default ``min_norm=1e-6``. Reference: Bernstein,
    Vahdat, Yue & Liu, "On the distance between two neural networks and the stability
    of learning", NeurIPS 2020. The state keeps the plain ``learning_rate`` (optax folds
    ``1/sqrt(1+lr^2)`` into it). PyTorch: none. Not in flat mode.
    """
    check.check_learning_rate("fromage", learning_rate)
    return chain(scale_by_trust_ratio(min_norm), _fromage_step(learning_rate))


@checks_once
def scale_by_novograd(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.25,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """NovoGrad's scaling: a second moment per layer (one scalar per leaf); needs ``params``.

    .. math::
        v_t = b_2 v_{t-1} + (1-b_2)\\|g_t\\|^2\\ (v_1 = \\|g_1\\|^2),\\quad
        m_t = b_1 m_{t-1} + \\frac{g_t}{\\sqrt{v_t + \\epsilon_{root}} + \\epsilon} +
        \\lambda p_{t-1}\\ (m_1 \\text{ without } b_1 m_0),\\quad u_t = m_t
    """
    where = "scale_by_novograd"
    check.check_decay(where, "b1", b1, allow_one=True)
    check.check_decay(where, "b2", b2)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "eps_root", eps_root)
    check.check_non_negative(where, "weight_decay", weight_decay)
    check.check_dtype(where, "mu_dtype", mu_dtype)

    def init_slots(param):
        mu = jnp.zeros(param.shape, mu_dtype or param.dtype)
        return mu, jnp.zeros([], real_dtype(param.dtype))

    return leafwise_transform(
        rules.novograd,
        ScaleByNovogradState,
        slots=("mu", "nu"),
        init_slots=init_slots,
        hyperparams={
            "b1": b1,
            "b2": b2,
            "eps": eps,
            "eps_root": eps_root,
            "weight_decay": weight_decay,
        },
        decays=("b2",),
        uses_params=True,
        name=where,
        flat_reason="its second moment is the squared norm of each leaf",
    )


@checks_once
def novograd(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.25,
    eps: ScalarOrSchedule = 1e-6,
    eps_root: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
) -> GradientTransformationExtraArgs:
    """NovoGrad: normalised-gradient momentum with a layer-wise second moment.

    .. math::
        p_t = p_{t-1} - \\eta\\, m_t, \\quad m_t = \\beta_1 m_{t-1} + \\frac{g_t}
        {\\sqrt{v_t + \\epsilon_{root}} + \\epsilon} + \\lambda p_{t-1}

    with :math:`v_t` the EMA of :math:`\\|g_t\\|^2` per leaf (see
    :func:`scale_by_novograd`). Defaults: ``b1=0.9``, ``b2=0.25``, ``eps=1e-6``,
    ``weight_decay=0``. Reference: Ginsburg et al., arXiv:1905.11286 (2019).
    PyTorch: none. Not in flat mode.
    """
    check.check_learning_rate("novograd", learning_rate)
    return chain(
        scale_by_novograd(b1, b2, eps, eps_root, weight_decay),
        classic.scale_by_learning_rate(learning_rate),
    )
