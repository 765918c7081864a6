"""Sign-based optimizers: signSGD, Signum, Lion, Rprop, and their building blocks.

Names, keywords and defaults are optax's. For complex params the sign is the phase
``z/|z|`` (:func:`jax.numpy.sign`), so signSGD, Signum and Lion run on complex params;
Rprop compares the signs of successive gradients, which has no complex analogue, and
refuses complex params at ``init``.

Rprop differs from optax on purpose: optax's ``scale_by_rprop`` returns the step
computed at the PREVIOUS update (its first update is zero, and every later one lags a
step behind the gradient it answers). Here each update uses the current gradient, as
in the published algorithm and in ``torch.optim.Rprop``.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, refuse_complex, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.rules import signs as rules
from optim_fn.transforms._combine import chain
from optim_fn.transforms._scaling import ema, scale


class ScaleBySignState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class ScaleByLionState(NamedTuple):
    count: Array
    mu: Updates
    hyperparams: Hyperparams


class ScaleByRpropState(NamedTuple):
    count: Array
    step_sizes: Updates
    prev_updates: Updates
    hyperparams: Hyperparams


@checks_once
def scale_by_sign() -> GradientTransformationExtraArgs:
    """``u = sign(g)`` elementwise (the phase ``g/|g|`` for complex ``g``; 0 at 0)."""
    return rule_transform(rules.sign, ScaleBySignState, name="scale_by_sign")


@checks_once
def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformationExtraArgs:
    """signSGD: step by the learning rate in the direction of the gradient's sign.

    .. math:: p_t = p_{t-1} - \\eta\\, \\mathrm{sign}(g_t)

    Reference: Bernstein et al., ICML 2018. PyTorch: no counterpart.
    """
    check.check_learning_rate("sign_sgd", learning_rate)
    return chain(scale_by_sign(), classic.scale_by_learning_rate(learning_rate))


@checks_once
def signum(
    learning_rate: ScalarOrSchedule,
    beta: ScalarOrSchedule = 0.9,
    accumulator_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """Signum: signSGD on an (undebiased) momentum.

    .. math::
        m_t = \\beta m_{t-1} + (1-\\beta) g_t, \\qquad p_t = p_{t-1} - \\eta\\,
        \\mathrm{sign}(m_t)

    Defaults: ``beta=0.9``. Reference: Bernstein et al., ICML 2018. PyTorch: none.
    """
    check.check_learning_rate("signum", learning_rate)
    check.check_decay("signum", "beta", beta)
    return chain(
        ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def scale_by_lion(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.99,
    mu_dtype: Any = None,
    *,
    mode: Literal["hard", "smooth", "refined"] = "hard",
    smooth_beta: float = 1.0,
) -> GradientTransformationExtraArgs:
    """Lion's direction: the sign of an interpolation of momentum and gradient.

    .. math::
        c_t = b_1 m_{t-1} + (1-b_1) g_t,\\quad u_t = \\mathrm{sign}(c_t),\\quad
        m_t = b_2 m_{t-1} + (1-b_2) g_t

    ``mode="smooth"`` gives ``tanh(smooth_beta c_t)``; ``mode="refined"`` gives ``c_t``
    where ``|c_t| < 1`` and ``sign(c_t)`` elsewhere.
    """
    where = "scale_by_lion"
    check.check_decay(where, "b1", b1, allow_one=True)
    check.check_decay(where, "b2", b2, allow_one=True)
    check.check_dtype(where, "mu_dtype", mu_dtype)
    if mode not in ("hard", "smooth", "refined"):
        raise ValueError(f"{where}: `mode` must be 'hard', 'smooth' or 'refined', got {mode!r}")
    return rule_transform(
        rules.lion,
        ScaleByLionState,
        slots=[Slot("mu", 0.0, mu_dtype)],
        hyperparams={"b1": b1, "b2": b2},
        decays=("b1", "b2"),
        static={"mode": mode, "smooth_beta": smooth_beta},
        name=where,
    )


@checks_once
def lion(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.99,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """Lion: the sign of a momentum interpolation, with decoupled weight decay.

    .. math::
        c_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t,\\quad
        p_t = p_{t-1} - \\eta\\,(\\mathrm{sign}(c_t) + \\lambda p_{t-1}),\\quad
        m_t = \\beta_2 m_{t-1} + (1-\\beta_2) g_t

    Defaults: ``b1=0.9``, ``b2=0.99``, ``weight_decay=1e-3``. Reference: Chen et al.,
    "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023. PyTorch: none.
    """
    check.check_learning_rate("lion", learning_rate)
    check.check_non_negative("lion", "weight_decay", weight_decay)
    return chain(
        scale_by_lion(b1, b2, mu_dtype),
        classic.add_decayed_weights(weight_decay, mask),
        classic.scale_by_learning_rate(learning_rate),
    )


def _check_initial_step(where: str, learning_rate: Any) -> None:
    if callable(learning_rate):
        raise ValueError(
            f"{where}: `learning_rate` is Rprop's initial step size, a number; Rprop "
            "adapts its steps itself, so a schedule has nothing to act on"
        )
    check.check_non_negative(where, "learning_rate", learning_rate)


@checks_once
def scale_by_rprop(
    learning_rate: float,
    eta_minus: ScalarOrSchedule = 0.5,
    eta_plus: ScalarOrSchedule = 1.2,
    min_step_size: ScalarOrSchedule = 1e-6,
    max_step_size: ScalarOrSchedule = 50.0,
) -> GradientTransformationExtraArgs:
    """Rprop's step (iRprop-, Igel & Hüsken 2000), without optax's one-step lag.

    Per coordinate, with step size :math:`\\Delta` (initially ``learning_rate``):

    .. math::
        \\Delta_t = \\begin{cases} \\min(\\eta^+ \\Delta_{t-1}, \\Delta_{max}) & g_t
        g_{t-1} > 0 \\\\ \\max(\\eta^- \\Delta_{t-1}, \\Delta_{min}) & g_t g_{t-1} < 0
        \\ (\\text{then } g_t \\leftarrow 0) \\\\ \\Delta_{t-1} & \\text{otherwise}
        \\end{cases}, \\qquad u_t = \\Delta_t\\, \\mathrm{sign}(g_t)

    The update points UP the gradient (chain with ``scale(-1)`` to descend, as
    :func:`rprop` does). Real params only.
    """
    where = "scale_by_rprop"
    _check_initial_step(where, learning_rate)
    check.check_decay(where, "eta_minus", eta_minus)
    check.check_scalar(where, "eta_plus", eta_plus)
    if isinstance(eta_plus, (int, float)) and eta_plus < 1:
        raise ValueError(f"{where}: `eta_plus` must be >= 1, got {eta_plus!r}")
    check.check_non_negative(where, "min_step_size", min_step_size)
    check.check_non_negative(where, "max_step_size", max_step_size)
    transform = rule_transform(
        rules.rprop,
        ScaleByRpropState,
        slots=[Slot("step_sizes"), Slot("prev_updates")],
        hyperparams={
            "eta_minus": eta_minus,
            "eta_plus": eta_plus,
            "min_step_size": min_step_size,
            "max_step_size": max_step_size,
        },
        name=where,
    )

    def init(params):
        refuse_complex(params, where, "Rprop compares the signs of successive gradients")
        state = transform.init(params)
        # Filled here rather than as a Slot constant: the initial step may be a traced
        # value (e.g. under optax.inject_hyperparams).
        step_sizes = jax.tree.map(
            lambda p: jnp.full(jnp.shape(p), learning_rate, jnp.asarray(p).dtype), params
        )
        return state._replace(step_sizes=step_sizes)

    return GradientTransformationExtraArgs(init, transform.update)


@checks_once
def rprop(
    learning_rate: float,
    eta_minus: ScalarOrSchedule = 0.5,
    eta_plus: ScalarOrSchedule = 1.2,
    min_step_size: ScalarOrSchedule = 1e-6,
    max_step_size: ScalarOrSchedule = 50.0,
) -> GradientTransformationExtraArgs:
    """Rprop: per-coordinate step sizes adapted by the agreement of successive signs.

    .. math:: p_t = p_{t-1} - \\Delta_t\\, \\mathrm{sign}(g_t)

    with :math:`\\Delta_t` as in :func:`scale_by_rprop` (grown by ``eta_plus`` while the
    sign holds, shrunk by ``eta_minus`` when it flips, and that gradient forgotten).
    ``learning_rate`` is the initial step size. Defaults: ``eta_minus=0.5``,
    ``eta_plus=1.2``, ``min_step_size=1e-6``, ``max_step_size=50``.
    References: Riedmiller & Braun, ICNN 1993; Igel & Hüsken, NC 2000 (iRprop-).
    Differs from optax: optax's updates lag one step (its first update is 0 and update
    ``t`` is the step computed at ``t-1``); here the first update is
    ``-learning_rate * sign(g_1)``. PyTorch: ``torch.optim.Rprop`` gives the same numbers
    while the initial step lies within ``[min_step_size, max_step_size]`` (torch clamps
    it even where the sign product is 0).
    """
    return chain(
        scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size),
        scale(-1.0),
    )
