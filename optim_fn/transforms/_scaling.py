"""Two small building blocks: a constant ``scale`` and an exponential moving average ``ema``.

Both with optax's names, keywords and defaults; both keep their factor in the state as
data (``"step_size"``, ``"decay"``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.rules import adam_variants as rules


class ScaleState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class EmaState(NamedTuple):
    count: Array
    ema: Updates
    hyperparams: Hyperparams


def _scale_rule(grad: Array, *, step_size: Array) -> tuple:
    return (step_size * grad,)


@checks_once
def scale(step_size: ScalarOrSchedule) -> GradientTransformationExtraArgs:
    """``u = step_size * g`` (no sign flip: pass ``-lr`` to descend).

    ``step_size`` is a number or a schedule, stored as the hyperparameter ``"step_size"``.
    """
    check.check_scalar("scale", "step_size", step_size)
    return rule_transform(
        _scale_rule, ScaleState, hyperparams={"step_size": step_size}, name="scale"
    )


@checks_once
def ema(
    decay: ScalarOrSchedule, debias: bool = True, accumulator_dtype: Any = None
) -> GradientTransformationExtraArgs:
    """Exponential moving average of the updates.

    .. math::
        e_t = d\\, e_{t-1} + (1-d)\\, g_t, \\qquad u_t = e_t \\ (\\text{or } e_t/(1-d^t)
        \\text{ with } \\texttt{debias})

    ``accumulator_dtype`` sets the dtype of :math:`e`. Same defaults as :func:`optax.ema`.
    """
    check.check_decay("ema", "decay", decay, allow_one=True)
    check.check_dtype("ema", "accumulator_dtype", accumulator_dtype)
    return rule_transform(
        rules.ema,
        EmaState,
        slots=[Slot("ema", 0.0, accumulator_dtype)],
        hyperparams={"decay": decay},
        decays=("decay",),
        static={"debias_ema": debias},
        name="ema",
    )
