"""Rules with factored or cover-based second moments: Adafactor and SM3.

Each takes one gradient array, its per-leaf state (row and column statistics, one vector
per axis) and scalar hyperparameters, and returns ``(update, *new_state)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.rules.classic import abs_sq

Array = jax.Array


def sm3(
    grad: Array,
    accumulators: Sequence[Array],
    momentum: Array,
    *,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
) -> tuple:
    """SM3-II (Anil et al. 2019, Algorithm 2), with momentum on the scaled gradient.

    One accumulator per axis ``r`` of the leaf; the cover estimate is
    ``nu_t = c g^2 + b2 min_r acc_r`` (broadcast over the other axes), with
    ``c = 1`` when ``b2 = 1`` (the paper) and ``c = 1 - b2`` otherwise;
    ``acc_r <- max of nu_t over the other axes``;
    ``m_t = b1 m + (1-b1) g / sqrt(nu_t + eps)`` (0 where ``nu_t = 0``); ``u = m_t``.
    A 0-d or 1-d leaf keeps a full accumulator (exact Adagrad with decay ``b2``).
    """
    square = abs_sq(grad)
    coefficient = jnp.where(b2 == 1, 1.0, one_minus_b2)
    if grad.ndim < 2:
        cover = accumulators[0]
    else:
        expanded = [
            acc.reshape([1] * axis + [grad.shape[axis]] + [1] * (grad.ndim - axis - 1))
            for axis, acc in enumerate(accumulators)
        ]
        cover = expanded[0]
        for acc in expanded[1:]:
            cover = jnp.minimum(cover, acc)
    nu = coefficient * square + b2 * cover
    scaled = grad * jnp.where(nu > 0, jax.lax.rsqrt(nu + eps), 0.0)
    momentum = one_minus_b1 * scaled + b1 * momentum
    if grad.ndim < 2:
        new_accumulators = [nu]
    else:
        new_accumulators = [
            jnp.max(nu, axis=tuple(a for a in range(grad.ndim) if a != axis))
            for axis in range(grad.ndim)
        ]
    return momentum, new_accumulators, momentum


def factored_dims(
    shape: tuple[int, ...], factored: bool, min_dim_size_to_factor: int
) -> tuple[int, int] | None:
    """The (second-largest, largest) axes to factor, or None (too small, or < 2 axes)."""
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def adafactor_decay(step: Array, exponent: Array) -> Array:
    """Adafactor's second-moment decay ``1 - (step + 1)^(-exponent)`` (step from 0)."""
    return 1.0 - jnp.asarray(step + 1, jnp.float32) ** (-exponent)


def factored_rms(
    grad: Array,
    v_row: Array,
    v_col: Array,
    v: Array,
    *,
    count: Array,
    decay_rate: Array,
    decay_offset: Array,
    eps: Array,
    factored: bool,
    min_dim_size_to_factor: int,
    decay_rate_fn: Callable[[Array, Array], Array],
) -> tuple:
    """Adafactor's factored second moment (Shazeer & Stern 2018, Algorithms 4 and 5).

    ``b_t = decay_rate_fn(t - 1 - decay_offset, decay_rate)`` (default ``1 - t^-0.8``);
    ``G = |g|^2 + eps``. For a leaf with two axes of at least ``min_dim_size_to_factor``
    (the two largest, rows ``r`` and columns ``c``): ``R_t = b_t R + (1-b_t) mean_c G``,
    ``C_t = b_t C + (1-b_t) mean_r G``, ``u = g / sqrt(R_t C_t / mean(R_t))``. Otherwise
    ``V_t = b_t V + (1-b_t) G`` and ``u = g / sqrt(V_t)``.
    """
    decay = decay_rate_fn(count - 1 - decay_offset, decay_rate)
    square = abs_sq(grad) + eps
    dims = factored_dims(grad.shape, factored, min_dim_size_to_factor)
    if dims is None:
        v = decay * v + (1 - decay) * square
        return grad * v ** (-0.5), v_row, v_col, v
    row_axis, col_axis = dims  # statistics over the largest axis are kept per row
    v_row = decay * v_row + (1 - decay) * jnp.mean(square, axis=col_axis)
    v_col = decay * v_col + (1 - decay) * jnp.mean(square, axis=row_axis)
    v_row = v_row.astype(grad.real.dtype)
    v_col = v_col.astype(grad.real.dtype)
    reduced_row_axis = row_axis - 1 if row_axis > col_axis else row_axis
    row_mean = jnp.mean(v_row, axis=reduced_row_axis, keepdims=True)
    row_factor = jnp.expand_dims((v_row / row_mean) ** (-0.5), col_axis)
    col_factor = jnp.expand_dims(v_col ** (-0.5), row_axis)
    return grad * row_factor * col_factor, v_row, v_col, v
