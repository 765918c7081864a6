"""ADOPT: Adam whose step is normalised by the PREVIOUS second moment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.rules import adam_variants as rules
from optim_fn.transforms._combine import chain


class ScaleByAdoptState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


def _quartic_root(count: Array) -> Array:
    return count**0.25


@checks_once
def scale_by_adopt(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.9999,
    eps: ScalarOrSchedule = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[Array], Array] = _quartic_root,
) -> GradientTransformationExtraArgs:
    """ADOPT's scaling (Taniguchi et al. 2024, Algorithm 2).

    .. math::
        v_1 = g_1^2,\\quad
        m_t = b_1 m_{t-1} + (1-b_1)\\,\\mathrm{clip}\\!\\left(\\frac{g_t}
        {\\max(\\sqrt{v_{t-1}}, \\epsilon)}, c_{t-1}\\right),\\quad
        v_t = b_2 v_{t-1} + (1-b_2) g_t^2,\\quad u_t = m_t

    with :math:`c_s` = ``clip_value_fn(s)`` (default :math:`s^{1/4}`; no clipping with
    ``use_clipping=False``). The first update is 0 (only :math:`v_1` is set).
    ``nesterov=True`` returns :math:`b_1 m_t + (1-b_1)` times the clipped term.
    """
    where = "scale_by_adopt"
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_non_negative(where, "eps", eps)
    check.check_dtype(where, "mu_dtype", mu_dtype)
    if not callable(clip_value_fn):
        raise ValueError(f"{where}: `clip_value_fn` must be a function of the step count")
    return rule_transform(
        rules.adopt,
        ScaleByAdoptState,
        slots=[Slot("mu", 0.0, mu_dtype), Slot("nu")],
        hyperparams={"b1": b1, "b2": b2, "eps": eps},
        decays=("b1", "b2"),
        static={
            "nesterov": nesterov,
            "use_clipping": use_clipping,
            "clip_value_fn": clip_value_fn,
        },
        name=where,
    )


@checks_once
def adopt(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.9999,
    eps: ScalarOrSchedule = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[Array], Array] = _quartic_root,
) -> GradientTransformationExtraArgs:
    """ADOPT: adaptive gradient method converging with any ``b2``.

    .. math:: p_t = p_{t-1} - \\eta\\, m_t

    with :math:`m_t` from :func:`scale_by_adopt`. Defaults: ``b1=0.9``, ``b2=0.9999``,
    ``eps=1e-6``, clipping at :math:`(t-1)^{1/4}`. Reference: Taniguchi et al., "ADOPT:
    Modified Adam Can Converge with Any beta2 with the Optimal Rate", NeurIPS 2024.
    PyTorch: none in ``torch.optim``.
    """
    check.check_learning_rate("adopt", learning_rate)
    return chain(
        scale_by_adopt(
            b1,
            b2,
            eps,
            mu_dtype,
            nesterov=nesterov,
            use_clipping=use_clipping,
            clip_value_fn=clip_value_fn,
        ),
        classic.scale_by_learning_rate(learning_rate),
    )
