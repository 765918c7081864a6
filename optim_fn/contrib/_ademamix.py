"""AdEMAMix and Simplified AdEMAMix: a fast and a slow momentum."""

from __future__ import annotations

from typing import Any, NamedTuple

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.rules import adam_variants as rules
from optim_fn.transforms._combine import chain


class ScaleByAdemamixState(NamedTuple):
    count: Array
    m1: Updates
    m2: Updates
    nu: Updates
    hyperparams: Hyperparams


class ScaleBySimplifiedAdEMAMixState(NamedTuple):
    count: Array
    m: Updates
    n: Updates
    hyperparams: Hyperparams


@checks_once
def scale_by_ademamix(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 6.0,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """AdEMAMix's scaling (Pagliardini, Ablin & Grangier 2024, Algorithm 1).

    .. math::
        m^{(1)}_t = b_1 m^{(1)} + (1-b_1) g_t,\\quad m^{(2)}_t = b_3 m^{(2)} + (1-b_3) g_t,
        \\quad v_t = b_2 v + (1-b_2)|g_t|^2,\\\\
        u_t = \\frac{m^{(1)}_t/(1-b_1^t) + \\alpha\\, m^{(2)}_t}
        {\\sqrt{v_t/(1-b_2^t) + \\epsilon_{root}} + \\epsilon}

    ``b3`` and ``alpha`` are usually schedules (warmups, see the paper); every
    hyperparameter may be one. ``mu_dtype`` sets the dtype of all three moments.
    """
    where = "scale_by_ademamix"
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_decay(where, "b3", b3)
    check.check_scalar(where, "alpha", alpha)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "eps_root", eps_root)
    check.check_dtype(where, "mu_dtype", mu_dtype)
    return rule_transform(
        rules.ademamix,
        ScaleByAdemamixState,
        slots=[Slot("m1", 0.0, mu_dtype), Slot("m2", 0.0, mu_dtype), Slot("nu", 0.0, mu_dtype)],
        hyperparams={
            "b1": b1,
            "b2": b2,
            "b3": b3,
            "alpha": alpha,
            "eps": eps,
            "eps_root": eps_root,
        },
        decays=("b1", "b2", "b3"),
        name=where,
    )


@checks_once
def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """AdEMAMix: Adam plus ``alpha`` times a slow (``b3``) EMA of the gradients.

    .. math::
        p_t = p_{t-1} - \\eta \\left(\\frac{\\hat m^{(1)}_t + \\alpha m^{(2)}_t}
        {\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon} + \\lambda p_{t-1}\\right)

    (see :func:`scale_by_ademamix`). Defaults: ``b1=0.9``, ``b2=0.999``, ``b3=0.9999``,
    ``alpha=5`` (``scale_by_ademamix``'s default is 6, as in optax). Reference:
    Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older",
    ICLR 2025. PyTorch: none.
    """
    check.check_learning_rate("ademamix", learning_rate)
    check.check_non_negative("ademamix", "weight_decay", weight_decay)
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype),
        classic.add_decayed_weights(weight_decay, mask),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def scale_by_simplified_ademamix(
    b1: ScalarOrSchedule = 0.99,
    b2: ScalarOrSchedule = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
) -> GradientTransformationExtraArgs:
    """Simplified AdEMAMix's scaling (Morwani et al. 2025).

    .. math::
        m_t = b_1 m_{t-1} + g_t,\\quad n_t = b_2 n_{t-1} + (1-b_2)|g_t|^2,\\quad
        u_t = \\frac{m_t + \\alpha g_t}{\\sqrt{n_t/(1-b_2^t) + \\epsilon_{root}} + \\epsilon}
    """
    where = "scale_by_simplified_ademamix"
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_scalar(where, "alpha", alpha)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "eps_root", eps_root)
    return rule_transform(
        rules.simplified_ademamix,
        ScaleBySimplifiedAdEMAMixState,
        slots=[Slot("m"), Slot("n")],
        hyperparams={"b1": b1, "b2": b2, "alpha": alpha, "eps": eps, "eps_root": eps_root},
        decays=("b2",),
        name=where,
    )


@checks_once
def simplified_ademamix(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.99,
    b2: ScalarOrSchedule = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """Simplified AdEMAMix: one undamped momentum sum plus ``alpha`` times the gradient.

    .. math::
        p_t = p_{t-1} - \\eta \\left(\\frac{m_t + \\alpha g_t}{\\sqrt{\\hat n_t +
        \\epsilon_{root}} + \\epsilon} + \\lambda p_{t-1}\\right), \\quad m_t = b_1 m_{t-1}
        + g_t

    Defaults: ``b1=0.99``, ``b2=0.95``, ``alpha=0``. Reference: Morwani et al.,
    "Connections between Schedule-Free Optimizers, AdEMAMix, and Accelerated SGD
    Variants", 2025. PyTorch: none.
    """
    check.check_learning_rate("simplified_ademamix", learning_rate)
    check.check_non_negative("simplified_ademamix", "weight_decay", weight_decay)
    return chain(
        scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
        classic.add_decayed_weights(weight_decay, mask),
        classic.scale_by_learning_rate(learning_rate),
    )
