"""ACProp: AdaBelief's centred second moment, applied one step late (asynchronously)."""

from __future__ import annotations

from typing import Any

from optim_fn.core import validation as check
from optim_fn.core.base import GradientTransformationExtraArgs, ScalarOrSchedule
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.optimizers.adam_variants import ScaleByBeliefState
from optim_fn.rules import adam_variants as rules
from optim_fn.transforms._combine import chain


@checks_once
def scale_by_acprop(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-16,
    eps_root: ScalarOrSchedule = 1e-16,
) -> GradientTransformationExtraArgs:
    """ACProp's scaling (Zhuang et al. 2021), as optax's ``scale_by_acprop`` computes it.

    .. math::
        m_t = b_1 m_{t-1} + (1-b_1) g_t,\\quad
        s_t = b_2 s_{t-1} + (1-b_2) |g_t - m_{t-1}|^2 + \\epsilon_{root},\\quad
        u_t = \\frac{g_t}{\\sqrt{s_{t-1} / (1-b_2^{t-1})} + \\epsilon}

    with the root replaced by 1 at :math:`t = 1` (no past gradients yet, so
    :math:`u_1 = g_1 / (1 + \\epsilon)`). The denominator sees only gradients up to
    :math:`t-1`: the "asynchronous" update that decorrelates it from :math:`g_t`.
    As in optax's code (its docstring writes :math:`m_t`), the prediction error is taken
    against the previous mean :math:`m_{t-1}`, and the numerator is the gradient itself.
    The state is AdaBelief's (``ScaleByBeliefState``, as in optax).
    """
    where = "scale_by_acprop"
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "eps_root", eps_root)
    return rule_transform(
        rules.acprop,
        ScaleByBeliefState,
        slots=[Slot("mu"), Slot("nu")],
        hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
        decays=("b1", "b2"),
        name=where,
    )


@checks_once
def acprop(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-16,
    eps_root: ScalarOrSchedule = 1e-16,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """ACProp: momentum centring and an asynchronous update for adaptive methods.

    .. math:: p_t = p_{t-1} - \\eta_t \\left(u_t + \\lambda p_{t-1}\\right)

    with :math:`u_t` from :func:`scale_by_acprop` and :math:`\\lambda` = ``weight_decay``
    (decoupled, multiplied by the learning rate as in optax and PyTorch; ``mask`` limits
    it to some leaves). Defaults: ``b1=0.9``, ``b2=0.999``, ``eps=1e-16``,
    ``eps_root=1e-16``, ``weight_decay=0``. Reference: Zhuang et al., "Momentum Centering
    and Asynchronous Update for Adaptive Gradient Methods", NeurIPS 2021
    (arXiv:2110.05454). PyTorch: none in ``torch.optim``.
    """
    check.check_learning_rate("acprop", learning_rate)
    check.check_non_negative("acprop", "weight_decay", weight_decay)
    return chain(
        scale_by_acprop(b1, b2, eps, eps_root),
        classic.add_decayed_weights(weight_decay, mask),
        classic.scale_by_learning_rate(learning_rate),
    )
