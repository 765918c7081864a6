"""The classic rules: SGD, momentum, Adagrad, RMSprop, AdaDelta, Adam, weight decay.

Each rule takes one gradient array, the state arrays of the same shape, and scalar
hyperparameters, and returns ``(update, *new_state)``. Nothing here knows about pytrees,
optax or jit: :func:`optim_fn.core.lift.rule_transform` lifts a rule over trees,
and the same function serves flat buffers and sharded arrays.

Decay rates arrive twice, as ``b`` and as ``one_minus_b`` (``1 - b`` computed at full
precision on the host; see :mod:`optim_fn.core.hyperparams`). ``count`` is the step number
``t``, 1 at the first update.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optim_fn.core.numerics import abs_sq, safe_increment

Array = jax.Array




def moving_average(value: Array, average: Array, decay: Array, one_minus_decay: Array) -> Array:
    """``decay * average + (1 - decay) * value``."""
    return one_minus_decay * value + decay * average


def debias(
    average: Array, decay: Array, count: Array, one_minus_decay: Array | None = None
) -> Array:
    """Bias correction of a moving average started at zero: ``average / (1 - decay^t)``.

    Given ``one_minus_decay``, ``1 - decay^t`` is computed as
    ``-expm1(t log1p(-(1 - decay)))``, accurate to a few ulps even in float32, where
    ``1 - float32(0.999)^t`` is off by ~1e-5 relative (PyTorch computes it in double).
    """
    # Multiply by the reciprocal explicitly: XLA:CPU rewrites a division by a broadcast
    # scalar into this for arrays but not for 0-d arrays, so writing it out makes the
    # result independent of how leaves are laid out (tree mode vs flat mode).
    if one_minus_decay is None:
        correction = (1 - decay**count).astype(average.dtype)
    else:
        correction = (-jnp.expm1(count * jnp.log1p(-one_minus_decay))).astype(average.dtype)
    return average * (1 / correction)


def scale_by_learning_rate(grad: Array, *, learning_rate: Array, flip_sign: bool) -> tuple:
    """``u = -lr g`` (``+lr g`` with ``flip_sign=False``)."""
    step_size = -learning_rate if flip_sign else learning_rate
    return (step_size * grad,)


def trace(
    grad: Array,
    trace: Array,
    *,
    momentum: Array,
    nesterov: bool,
    dampening: Array | None = None,
) -> tuple:
    """Heavy-ball momentum (Polyak 1964), optionally Nesterov (Sutskever et al. 2013).

    ``v_t = g_t + m v_{t-1}``; ``u_t = v_t``, or ``u_t = g_t + m v_t`` with Nesterov.
    With ``dampening`` (PyTorch's SGD), ``v_t = (1 - dampening) g_t + m v_{t-1}``.
    """
    if dampening is None:
        new_trace = grad + momentum * trace
    else:
        new_trace = (1 - dampening) * grad + momentum * trace
    update = grad + momentum * new_trace if nesterov else new_trace
    return update, new_trace


def add_decayed_weights(grad: Array, *, param: Array, weight_decay: Array) -> tuple:
    """``u = g + wd * p`` (L2 regularisation, or decoupled decay after a scaler)."""
    return (grad + weight_decay * param,)


def adam(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
    eps_root: Array,
    nesterov: bool,
    nu_floor: Array | None = None,
    precise_bias_correction: bool = False,
) -> tuple:
    """Adam (Kingma & Ba 2015, Algorithm 1); Nesterov form of Dozat (2016).

    ``m_t = b1 m + (1-b1) g``; ``v_t = b2 v + (1-b2)|g|^2``;
    ``m^ = m_t / (1-b1^t)`` (Nesterov: ``b1 m_t/(1-b1^{t+1}) + (1-b1) g/(1-b1^t)``);
    ``v^ = v_t / (1-b2^t)``; ``u = m^ / (sqrt(v^ + eps_root) + eps)``.
    With ``nu_floor`` (PyTorch's AMSGrad: the running max of the raw ``v``), ``v^`` is
    ``max(v_t, nu_floor) / (1-b2^t)``; the returned ``nu`` is still ``v_t``.
    ``precise_bias_correction`` computes ``1 - b^t`` from ``1 - b`` (see :func:`debias`).
    """
    mu = moving_average(grad, mu, b1, one_minus_b1)
    nu = moving_average(abs_sq(grad), nu, b2, one_minus_b2)
    second_moment = nu if nu_floor is None else jnp.maximum(nu, nu_floor)
    if nesterov:
        mu_hat = b1 * debias(mu, b1, safe_increment(count)) + one_minus_b1 * debias(grad, b1, count)
    else:
        mu_hat = debias(mu, b1, count, one_minus_b1 if precise_bias_correction else None)
    nu_hat = debias(second_moment, b2, count, one_minus_b2 if precise_bias_correction else None)
    return mu_hat / (jnp.sqrt(nu_hat + eps_root) + eps), mu, nu


def _inverse_root(mean_square: Array, eps: Array, eps_in_sqrt: bool) -> Array:
    if eps_in_sqrt:
        return jax.lax.rsqrt(mean_square + eps)
    return 1 / (jnp.sqrt(mean_square) + eps)


def rms(
    grad: Array,
    nu: Array,
    *,
    count: Array,
    decay: Array,
    one_minus_decay: Array,
    eps: Array,
    eps_in_sqrt: bool,
    bias_correction: bool,
) -> tuple:
    """RMSprop's scaling (Hinton, Lecture 6e, 2012).

    ``v_t = d v + (1-d)|g|^2``; ``u = g / sqrt(v_t + eps)`` (``eps_in_sqrt``) or
    ``g / (sqrt(v_t) + eps)``; with ``bias_correction``, ``v_t / (1 - d^t)`` replaces ``v_t``.
    """
    nu = moving_average(abs_sq(grad), nu, decay, one_minus_decay)
    nu_hat = debias(nu, decay, count) if bias_correction else nu
    return _inverse_root(nu_hat, eps, eps_in_sqrt) * grad, nu


def stddev(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    count: Array,
    decay: Array,
    one_minus_decay: Array,
    eps: Array,
    eps_in_sqrt: bool,
    bias_correction: bool,
) -> tuple:
    """Centered RMSprop (Graves 2013, eq. 38-40): divide by a running standard deviation.

    ``m_t = d m + (1-d) g``; ``v_t = d v + (1-d)|g|^2``; ``u = g / sqrt(v_t - |m_t|^2 + eps)``
    (``eps_in_sqrt``) or ``g / (sqrt(v_t - |m_t|^2) + eps)``, the variance clamped at 0.
    """
    mu = moving_average(grad, mu, decay, one_minus_decay)
    nu = moving_average(abs_sq(grad), nu, decay, one_minus_decay)
    mu_hat = debias(mu, decay, count) if bias_correction else mu
    nu_hat = debias(nu, decay, count) if bias_correction else nu
    # The variance is >= 0 in exact arithmetic but can round below zero (always at t=1
    # with bias correction, where it is exactly 0), which would give NaN.
    variance = jnp.maximum(nu_hat - abs_sq(mu_hat), 0)
    return _inverse_root(variance, eps, eps_in_sqrt) * grad, mu, nu


def rss(grad: Array, sum_of_squares: Array, *, eps: Array, eps_in_sqrt: bool = True) -> tuple:
    """Adagrad's scaling (Duchi, Hazan & Singer 2011): the root of the sum of squares.

    ``s_t = s + |g|^2``; ``u = g / sqrt(s_t + eps)``, and 0 where ``s_t = 0``.
    ``eps_in_sqrt=False`` gives PyTorch's ``g / (sqrt(s_t) + eps)``.
    """
    sum_of_squares = sum_of_squares + abs_sq(grad)
    if not eps_in_sqrt:
        return _inverse_root(sum_of_squares, eps, False) * grad, sum_of_squares
    scaling = jnp.where(sum_of_squares > 0, jax.lax.rsqrt(sum_of_squares + eps), 0.0)
    return scaling * grad, sum_of_squares


def adadelta(
    grad: Array,
    e_g: Array,
    e_x: Array,
    *,
    rho: Array,
    one_minus_rho: Array,
    eps: Array,
) -> tuple:
    """AdaDelta (Zeiler 2012, Algorithm 1).

    ``E[g^2]_t = rho E[g^2] + (1-rho)|g|^2``;
    ``u = sqrt(E[dx^2] + eps) / sqrt(E[g^2]_t + eps) * g``;
    ``E[dx^2]_t = rho E[dx^2] + (1-rho)|u|^2``.
    """
    e_g = moving_average(abs_sq(grad), e_g, rho, one_minus_rho)
    update = jnp.sqrt(e_x + eps) / jnp.sqrt(e_g + eps) * grad
    e_x = moving_average(abs_sq(update), e_x, rho, one_minus_rho)
    return update, e_g, e_x
