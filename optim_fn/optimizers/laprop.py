"""LaProp: ``scale_by_laprop`` and ``laprop`` (Ziyin, Wang & Ueda 2020, arXiv:2002.04839).

The rule is :func:`optim_fn.rules.laprop` (``optim_fn/rules/laprop.py``), on one array,
lifted by :func:`~optim_fn.core.lift.rule_transform`. Its two bias corrections are running
scalars shared by every leaf (the momentum's is an average of the learning rates): they
live in the state next to the moments (``scalars=``) and advance once per step before
the rule (``step_scalars=``). Checked step by step against a NumPy transcription of the
paper's Algorithm 1 and the authors' code in ``tests/test_laprop.py``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.rules.laprop import laprop as laprop_rule
from optim_fn.rules.laprop import laprop_corrections
from optim_fn.transforms._combine import chain

_CORRECTIONS = ("mu_correction", "nu_correction")


class ScaleByLapropState(NamedTuple):
    """``mu``, ``nu``: the moments; ``mu_correction``, ``nu_correction``: the running bias
    corrections ``c^m_t`` (an average of the learning rates) and ``c^n_t``, scalars."""

    count: Array
    mu: Updates
    nu: Updates
    mu_correction: Array
    nu_correction: Array
    hyperparams: Hyperparams


def _zero(values: dict) -> Array:
    """A correction before the first step, in the hyperparameters' dtype (float32 or 64)."""
    return jnp.zeros([], values["b1"].dtype)


def _step_corrections(stored: dict, values: dict, count: Array) -> tuple[dict, dict]:
    """This step's corrections: passed to the rule, and stored for the next step."""
    del count
    names = ("learning_rate", "b1", "one_minus_b1", "b2", "one_minus_b2")
    corrections = laprop_corrections(*(stored[k] for k in _CORRECTIONS),
                                     **{k: values[k] for k in names})
    now = dict(zip(_CORRECTIONS, corrections, strict=True))
    return now, now


@checks_once
def scale_by_laprop(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-15,
) -> GradientTransformationExtraArgs:
    """LaProp's scaling: momentum of the RMS-normalised gradients, weighted by the learning rate.

    .. math::
        n_t = b_2 n_{t-1} + (1-b_2) |g_t|^2,\\quad
        c^n_t = b_2 c^n_{t-1} + (1-b_2),\\quad
        c^m_t = b_1 c^m_{t-1} + (1-b_1) \\eta_t,\\\\
        m_t = b_1 m_{t-1} + (1-b_1)\\, \\eta_t \\frac{g_t}{\\sqrt{n_t / c^n_t} + \\epsilon},
        \\quad u_t = m_t / c^m_t

    (:math:`c^n_0 = c^m_0 = 0`; :math:`c^n_t = 1 - b_2^t` for a constant :math:`b_2`).

    It takes the learning rate :math:`\\eta_t` because, as in the authors' code, the
    learning rate enters the momentum: ``u_t`` is the average of the normalised
    gradients weighted by the learning rates they were taken with, and does NOT include
    the current learning rate; chain :func:`optim_fn.scale_by_learning_rate` with the same
    ``learning_rate`` after it (as :func:`laprop` does). A constant ``learning_rate``
    weights every step alike (its value then does not matter): ``u_t = m'_t/(1-b_1^t)``
    with ``m'_t`` the plain average, the paper's Algorithm 1 with the learning rate
    outside the momentum. The hyperparameter is named ``"learning_rate"``, so
    :func:`optim_fn.set_hyperparams` with ``learning_rate=`` sets it together with the
    one of the chained ``scale_by_learning_rate``.
    """
    where = "scale_by_laprop"
    check.check_learning_rate(where, learning_rate)
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_non_negative(where, "eps", eps)
    return rule_transform(
        laprop_rule,
        ScaleByLapropState,
        slots=[Slot("mu"), Slot("nu")],
        hyperparams={"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps},
        decays=("b1", "b2"),
        scalars={field: _zero for field in _CORRECTIONS},
        step_scalars=_step_corrections,
        name=where,
    )


@checks_once
def laprop(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-15,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """LaProp: Adam with the momentum applied after the RMS normalisation.

    .. math::
        n_t = \\beta_2 n_{t-1} + (1-\\beta_2) |g_t|^2,\\quad
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1)\\, \\eta_t
        \\frac{g_t}{\\sqrt{n_t / c^n_t} + \\epsilon},\\\\
        p_t = p_{t-1} - \\eta_t \\left(\\frac{m_t}{c^m_t} + \\lambda p_{t-1}\\right),
        \\quad c^m_t = \\beta_1 c^m_{t-1} + (1-\\beta_1) \\eta_t,\\quad
        c^n_t = \\beta_2 c^n_{t-1} + (1-\\beta_2)

    with :math:`c^m_0 = c^n_0 = 0`, :math:`\\eta_t` the learning rate of step ``t`` and
    :math:`\\lambda` the weight decay, on the leaves ``mask`` selects. With a constant
    learning rate, :math:`c^n_t = 1-\\beta_2^t` and the step is
    :math:`\\eta\\, m'_t / (1-\\beta_1^t)` with :math:`m'_t` the average of the normalised
    gradients: Algorithm 1 of the paper.

    Defaults: ``b1=0.9``, ``b2=0.999``, ``eps=1e-15``, ``weight_decay=0`` (the authors';
    their learning rate default is ``4e-4``). Reference: Ziyin, Wang & Ueda, "LaProp:
    Separating Momentum and Adaptivity in Adam", arXiv:2002.04839 (2020); code:
    github.com/Z-T-WANG/LaProp-Optimizer.

    As the authors' ``laprop.py`` (not the paper, which writes the learning rate outside
    the momentum), the learning rate weights each normalised gradient in the momentum and
    the momentum's bias correction :math:`c^m_t` is the same average of the learning
    rates, so after a change of the learning rate the momentum keeps the weight of the
    steps that were taken with it; both corrections are running averages, updated from
    each step's ``b1``, ``b2`` and learning rate (schedules of ``b1``, ``b2`` included).
    The same numbers as the authors' code (to rounding) except: at a step whose learning
    rate is exactly 0 after nonzero ones, the authors divide by 1 instead of 0 and move
    the params by :math:`m_t`; here the step is 0 (the limit :math:`\\eta_t \\to 0`);
    ``weight_decay`` is decoupled as in :func:`optim_fn.adamw`,
    :math:`-\\eta_t \\lambda p_{t-1}`, as in the authors' fairseq version, while their
    ``laprop.py`` multiplies the params by :math:`1-\\lambda` after the step (not scaled
    by the learning rate); their ``centered`` (the variance :math:`n_t - \\bar g_t^2`,
    with :math:`\\bar g_t` the ``b2``-average of the gradients, after 10 plain steps) and
    ``amsgrad`` options are not implemented. For complex params :math:`|g|^2` replaces
    :math:`g^2`. The learning rate is read by two blocks of the chain:
    :func:`optim_fn.get_hyperparams` reports ``"0.learning_rate"`` and
    ``"2.learning_rate"``, and ``set_hyperparams(state, learning_rate=...)`` sets both.
    optax and PyTorch: none.
    """
    check.check_learning_rate("laprop", learning_rate)
    check.check_non_negative("laprop", "weight_decay", weight_decay)
    return chain(
        scale_by_laprop(learning_rate, b1, b2, eps),
        classic.add_decayed_weights(weight_decay, mask),
        classic.scale_by_learning_rate(learning_rate),
    )
