"""COCOB-Backprop: learning-rate-free training by coin betting."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.contrib._common import start_slots_at_params
from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, refuse_complex, rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.transforms._combine import chain


class COCOBState(NamedTuple):
    count: Array
    init_particles: Updates
    cumulative_gradients: Updates
    scale: Updates
    subgradients: Updates
    reward: Updates
    hyperparams: Hyperparams


def cocob_rule(
    grad: Array,
    init_particles: Array,
    cumulative_gradients: Array,
    scale: Array,
    subgradients: Array,
    reward: Array,
    *,
    param: Array,
    alpha: Array,
    eps: Array,
) -> tuple:
    """COCOB-Backprop (Orabona & Tommasi 2017, Algorithm 2), one coordinate per entry.

    ``L_t = max(L, |g|)``, ``G_t = G + |g|``, ``R_t = max(R - g (p - p0), 0)``,
    ``theta_t = theta - g``; ``p_{t+1} = p0 + theta_t / (L_t max(G_t + L_t, alpha L_t))
    (L_t + R_t)``, returned as the update ``p_{t+1} - p``.
    """
    del eps  # only the initial value of `scale`
    scale = jnp.maximum(scale, jnp.abs(grad))
    subgradients = subgradients + jnp.abs(grad)
    reward = jnp.maximum(reward - grad * (param - init_particles), 0)
    cumulative_gradients = cumulative_gradients - grad
    bet = cumulative_gradients / (scale * jnp.maximum(subgradients + scale, alpha * scale))
    update = -param + (init_particles + bet * (scale + reward))
    return update, init_particles, cumulative_gradients, scale, subgradients, reward


@checks_once
def scale_by_cocob(
    alpha: ScalarOrSchedule = 100.0, eps: float = 1e-8
) -> GradientTransformationExtraArgs:
    """COCOB-Backprop's step (Orabona & Tommasi 2017, Algorithm 2); needs ``params``.

    .. math::
        L_t = \\max(L_{t-1}, |g_t|),\\ G_t = G_{t-1} + |g_t|,\\
        R_t = \\max(R_{t-1} - g_t (p_t - p_0), 0),\\ \\theta_t = \\theta_{t-1} - g_t,\\\\
        p_{t+1} = p_0 + \\frac{\\theta_t}{L_t \\max(G_t + L_t, \\alpha L_t)} (L_t + R_t)

    ``L_0 = eps``. The update is :math:`p_{t+1} - p_t`. Real params only.
    """
    where = "scale_by_cocob"
    check.check_non_negative(where, "alpha", alpha)
    check.check_non_negative(where, "eps", eps)
    transform = start_slots_at_params(
        rule_transform(
            cocob_rule,
            COCOBState,
            slots=[
                Slot("init_particles"),
                Slot("cumulative_gradients"),
                Slot("scale"),
                Slot("subgradients"),
                Slot("reward"),
            ],
            hyperparams={"alpha": alpha, "eps": eps},
            uses_params=True,
            name=where,
        ),
        "init_particles",
    )

    def init(params):
        refuse_complex(params, where, "coin betting compares real wealth and rewards")
        state = transform.init(params)
        # L_0 = eps, filled here as eps may be a traced value (optax.inject_hyperparams).
        scale = jax.tree.map(lambda p: jnp.full(jnp.shape(p), eps, jnp.asarray(p).dtype), params)
        return state._replace(scale=scale)

    return GradientTransformationExtraArgs(init, transform.update)


@checks_once
def cocob(
    learning_rate: ScalarOrSchedule = 1.0,
    alpha: ScalarOrSchedule = 100.0,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """COCOB-Backprop: parameter-free steps from coin betting on each coordinate.

    The gradient ``lr (g + wd p)`` drives :func:`scale_by_cocob`; there is no learning
    rate to tune (``learning_rate`` scales the gradient the bettor sees). Defaults:
    ``learning_rate=1``, ``alpha=100``, ``eps=1e-8``. Reference: Orabona & Tommasi,
    "Training Deep Networks without Learning Rates Through Coin Betting", NeurIPS 2017.
    PyTorch: none. Real params only.
    """
    check.check_learning_rate("cocob", learning_rate)
    check.check_non_negative("cocob", "weight_decay", weight_decay)
    return chain(
        classic.add_decayed_weights(weight_decay, mask),
        classic.scale_by_learning_rate(learning_rate, flip_sign=False),
        scale_by_cocob(alpha, eps),
    )
