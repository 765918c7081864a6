"""LaProp (Ziyin, Wang & Ueda 2020, arXiv:2002.04839): Adam with the momentum taken of the
gradient AFTER its RMS normalisation.

Adam averages raw gradients and divides the average by ``sqrt(v)``; LaProp divides each
gradient by ``sqrt(v)`` first and averages the normalised gradients, which decouples the
momentum ``b1`` from the adaptivity ``b2`` (any ``b1 < 1`` with any ``b2 < 1`` is stable).

As in the authors' reference implementation (``laprop.py`` of
github.com/Z-T-WANG/LaProp-Optimizer, "Additional Details compared with the Paper" in
its README), the learning rate enters the momentum: each normalised gradient is weighted
by the learning rate of its step, and both bias corrections are running averages of
what was accumulated, updated from the hyperparameters of each step:

* ``c^m_t = b1 c^m_{t-1} + (1-b1) lr_t`` (the authors' ``exp_avg_lr_1``),
* ``c^n_t = b2 c^n_{t-1} + (1-b2)`` (``exp_avg_lr_2``; ``1 - b2^t`` for a constant ``b2``).

Then (``t`` is 1 at the first update; ``|g|^2`` is real for complex gradients)::

    n_t = b2 n_{t-1} + (1-b2) |g_t|^2
    m_t = b1 m_{t-1} + (1-b1) lr_t g_t / (sqrt(n_t / c^n_t) + eps)
    d_t = m_t / c^m_t

``d_t`` is the learning-rate-weighted average of the normalised gradients; the optimizer
multiplies it by ``-lr_t`` (the authors' step ``-(lr_t / c^m_t) m_t``). With a constant
learning rate, ``d_t = m'_t / (1 - b1^t)`` with ``m'`` the plain average of the
normalised gradients: the paper's Algorithm 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optim_fn.rules.adam_variants import real
from optim_fn.rules.classic import abs_sq, moving_average

Array = jax.Array


def laprop_corrections(
    mu_correction: Array,
    nu_correction: Array,
    *,
    learning_rate: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
) -> tuple[Array, Array]:
    """This step's bias corrections, from the previous ones (both 0 before the first step).

    ``c^m_t = b1 c^m_{t-1} + (1-b1) lr_t``: the momentum's, an average of the learning
    rates with the momentum's weights; ``c^n_t = b2 c^n_{t-1} + (1-b2)``: the second
    moment's. Scalars, computed once per step for every leaf.
    """
    mu_correction = moving_average(learning_rate, mu_correction, b1, one_minus_b1)
    nu_correction = moving_average(jnp.ones_like(nu_correction), nu_correction, b2, one_minus_b2)
    return mu_correction, nu_correction


def laprop(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    learning_rate: Array,
    mu_correction: Array,
    nu_correction: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
) -> tuple:
    """LaProp on one array: ``(grad, mu, nu) -> (d_t, mu, nu)`` (see the module docstring).

    ``n_t = b2 n + (1-b2)|g|^2``; ``m_t = b1 m + (1-b1) lr_t g / (sqrt(n_t / c^n_t) + eps)``;
    ``d_t = m_t / c^m_t``, with this step's corrections ``c^m_t, c^n_t`` from
    :func:`laprop_corrections`. ``c^m_t = 0`` only while every learning rate so far was 0,
    and then ``m_t = 0``: ``d_t`` is 0 (the authors divide by 1 there too).
    """
    nu = moving_average(abs_sq(grad), real(nu), b2, one_minus_b2)
    # Reciprocals of the scalars, multiplied: the same rounding for a leaf and a flat
    # buffer (see `debias`).
    inverse_nu_correction = (1 / nu_correction).astype(nu.dtype)
    normalized = grad / (jnp.sqrt(nu * inverse_nu_correction) + eps)
    mu = moving_average(learning_rate * normalized, mu, b1, one_minus_b1)
    nonzero = jnp.where(mu_correction == 0, jnp.ones_like(mu_correction), mu_correction)
    return mu * (1 / nonzero).astype(real(mu).dtype), mu, nu
