"""Rules that read a whole leaf (a layer's weight): trust ratios, NovoGrad, SM3, Adafactor.

Each takes one gradient array, its per-leaf state (of any shape) and scalar
hyperparameters, and returns ``(update, *new_state)``; :mod:`optim_fn.leafwise` lifts
them over trees. Norms are accumulated in float32 at least, so bf16 leaves do not lose
them to rounding; they are real for complex leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.rules.classic import abs_sq

Array = jax.Array


def wide(x: Array) -> Array:
    """``x`` in float32 at least (complex64 at least for complex ``x``)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def norm(x: Array) -> Array:
    """The Euclidean (Frobenius) norm of a whole leaf, real, float32 at least."""
    return jnp.sqrt(jnp.sum(abs_sq(wide(x))))


def trust_ratio(
    grad: Array, *, param: Array, min_norm: Array, trust_coefficient: Array, eps: Array
) -> tuple:
    """LARS/LAMB's layer-wise trust ratio (You et al. 2017, 2020).

    ``u = g * c ||p|| / (||g|| + eps)`` with both norms floored at ``min_norm``, and
    ``u = g`` where either norm is 0.
    """
    param_norm = jnp.maximum(norm(param), min_norm)
    update_norm = jnp.maximum(norm(grad), min_norm)
    ratio = trust_coefficient * param_norm / (update_norm + eps)
    ratio = jnp.where((param_norm == 0) | (update_norm == 0), 1.0, ratio)
    return (grad * ratio.astype(grad.real.dtype),)


def param_block_norm(grad: Array, *, param: Array, min_scale: Array) -> tuple:
    """``u = g max(||p||, min_scale)``."""
    return (grad * jnp.maximum(norm(param), min_scale).astype(grad.real.dtype),)


def param_block_rms(grad: Array, *, param: Array, min_scale: Array) -> tuple:
    """``u = g max(rms(p), min_scale)``, ``rms(p) = sqrt(mean |p|^2)`` (Adafactor's scale)."""
    rms = jnp.sqrt(jnp.mean(abs_sq(wide(param)))) if param.size else jnp.zeros([])
    return (grad * jnp.maximum(rms, min_scale).astype(grad.real.dtype),)


def fromage_step(grad: Array, *, param: Array, learning_rate: Array) -> tuple:
    """Fromage's step after the trust ratio (Bernstein et al. 2020, Algorithm 1).

    ``p_t = (p - lr g ||p||/||g||) / sqrt(1 + lr^2)``, i.e. ``u = -lr m g + (m - 1) p`` with
    ``m = 1/sqrt(1+lr^2)``; ``m - 1 = -lr^2 m / (1 + sqrt(1+lr^2))`` is computed without
    the cancellation of ``m - 1`` (which loses half the digits in float32 for lr=1e-3).
    """
    root = jnp.sqrt(1 + learning_rate**2)
    mult = 1 / root
    shrink = -(learning_rate**2) * mult / (1 + root)
    return (-(learning_rate * mult) * grad + shrink * param,)


def novograd(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    param: Array,
    count: Array,
    b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
    eps_root: Array,
    weight_decay: Array,
) -> tuple:
    """NovoGrad (Ginsburg et al. 2019, Algorithm 1): a second moment per layer.

    ``v_t = b2 v + (1-b2) ||g||^2`` (``v_1 = ||g||^2``);
    ``m_t = b1 m + g/(sqrt(v_t + eps_root) + eps) + wd p`` (``m_1`` without ``b1 m``);
    ``u = m_t``.
    """
    square_norm = jnp.sum(abs_sq(wide(grad))).astype(nu.dtype)
    first = count == 1
    nu = jnp.where(first, square_norm, one_minus_b2 * square_norm + b2 * nu)
    step = grad / (jnp.sqrt(nu + eps_root) + eps).astype(grad.real.dtype) + weight_decay * param
    mu = jnp.where(first, step, b1 * mu + step)
    return mu, mu, nu


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
