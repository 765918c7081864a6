"""Sign-based rules: signSGD, Lion, Rprop.

For complex entries the "sign" is the phase, ``z / |z|`` (0 at 0), which is what
:func:`jax.numpy.sign` computes; it reduces to the usual sign on real numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optim_fn.rules.classic import moving_average

Array = jax.Array


def sign(grad: Array) -> tuple:
    """signSGD's direction (Bernstein et al. 2018): ``u = sign(g)``."""
    return (jnp.sign(grad),)


def _smooth_sign(x: Array, beta: float) -> Array:
    if jnp.iscomplexobj(x):
        return jnp.tanh(beta * jnp.abs(x)) * jnp.sign(x)
    return jnp.tanh(beta * x)


def lion(
    grad: Array,
    mu: Array,
    *,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    mode: str,
    smooth_beta: float,
) -> tuple:
    """Lion (Chen et al. 2023, Program 1).

    ``c_t = b1 m + (1-b1) g``; ``u = sign(c_t)``; ``m_t = b2 m + (1-b2) g``. ``mode``
    ``"smooth"`` uses ``tanh(smooth_beta c_t)``, ``"refined"`` keeps ``c_t`` where
    ``|c_t| < 1``.
    """
    interpolation = one_minus_b1 * grad + b1 * mu
    if mode == "hard":
        update = jnp.sign(interpolation)
    elif mode == "smooth":
        update = _smooth_sign(interpolation, smooth_beta)
    else:
        update = jnp.where(jnp.abs(interpolation) < 1, interpolation, jnp.sign(interpolation))
    return update, moving_average(grad, mu, b2, one_minus_b2)


def rprop(
    grad: Array,
    step_size: Array,
    prev_grad: Array,
    *,
    eta_minus: Array,
    eta_plus: Array,
    min_step_size: Array,
    max_step_size: Array,
    clamp_every_step: bool = False,
) -> tuple:
    """iRprop- (Igel & Hüsken 2000; Riedmiller & Braun 1993), not lagging a step.

    Where ``g_t g_{t-1} > 0``: ``D_t = min(eta_plus D, max_step_size)``; where ``< 0``:
    ``D_t = max(eta_minus D, min_step_size)`` and ``g_t`` is forgotten (set to 0); else
    ``D_t = D``. The update is ``u_t = D_t sign(g_t)`` (descend with a factor -1) and the
    stored gradient is the (possibly forgotten) ``g_t``. ``clamp_every_step`` (PyTorch's
    form) clips ``D_t`` to ``[min_step_size, max_step_size]`` everywhere, even where
    ``g_t g_{t-1} = 0`` (it differs only for a ``D`` outside that range).
    """
    agreement = grad * prev_grad
    if clamp_every_step:
        factor = jnp.where(agreement > 0, eta_plus, jnp.where(agreement < 0, eta_minus, 1))
        step_size = jnp.clip(step_size * factor, min_step_size, max_step_size)
        grad = jnp.where(agreement < 0, jnp.zeros_like(grad), grad)
        return step_size * jnp.sign(grad), step_size, grad
    grown = jnp.minimum(step_size * eta_plus, max_step_size)
    shrunk = jnp.maximum(step_size * eta_minus, min_step_size)
    step_size = jnp.where(agreement > 0, grown, jnp.where(agreement < 0, shrunk, step_size))
    grad = jnp.where(agreement < 0, jnp.zeros_like(grad), grad)
    return step_size * jnp.sign(grad), step_size, grad
