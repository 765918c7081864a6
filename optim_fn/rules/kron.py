"""PSGD Kron's per-leaf math: Kronecker factors of the preconditioner and their update.

Plain functions of arrays (one leaf), used by :mod:`optim_fn.contrib._kron`. The
preconditioner of a tensor :math:`G` of order :math:`k` is
:math:`P = (Q_1^T Q_1) \\otimes \\cdots \\otimes (Q_k^T Q_k)`, one factor per axis; a factor
is an upper-triangular matrix or, for an axis kept diagonal, a vector (a diagonal matrix):

* :func:`diagonal_axes` and :func:`init_factors`: which axes get a diagonal factor, and the
  initial factors :math:`Q_i = s^{1/k} I`;
* :func:`whitening_update`: one step of Li's fitting criterion on the Lie group of
  triangular matrices (:math:`E[h^T P h + v^T P^{-1} v]`, minimised when :math:`P` whitens
  the gradient);
* :func:`precondition`: :math:`P\\,G`, i.e. :math:`G \\times_i (Q_i^T Q_i)` along each axis;
* :func:`balance`: rescales the factors to equal largest entries (their product is kept);
* :func:`norm_lower_bound` and :func:`clip_rms`.

The numerics follow Xi-Lin Li's PSGD Kron as Evan Walters' ``psgd-jax`` 0.2.9
(``psgd_jax/kron.py``) computes it. References: X.-L. Li, "Preconditioned Stochastic
Gradient Descent", IEEE TNNLS 29(5), 2018 (arXiv:1512.04202); X.-L. Li, "Black Box Lie
Group Preconditioners for SGD", arXiv:2211.04422, 2022.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

MEMORY_SAVE_MODES = (None, "one_diag", "all_diag")


def diagonal_axes(
    shape: tuple[int, ...],
    max_size_triangular: int,
    min_ndim_triangular: int,
    memory_save_mode: str | None,
) -> tuple[bool, ...]:
    """Per axis, whether its factor is diagonal.

    An axis is diagonal when its size is 1 or above ``max_size_triangular``, when the
    tensor has fewer than ``min_ndim_triangular`` axes, or by ``memory_save_mode``:
    ``"one_diag"`` makes the largest axis diagonal (the last of equal largest ones, as
    the reference's reversed argsort), ``"all_diag"`` every axis.
    """
    chosen = [False] * len(shape)
    if memory_save_mode == "all_diag":
        chosen = [True] * len(shape)
    elif memory_save_mode == "one_diag" and shape:
        chosen[int(np.argsort(shape)[::-1][0])] = True
    return tuple(
        bool(size == 1 or size > max_size_triangular or len(shape) < min_ndim_triangular or c)
        for size, c in zip(shape, chosen, strict=True)
    )


def init_factors(
    shape: tuple[int, ...], diagonal: tuple[bool, ...], init_scale: float, dtype: jnp.dtype
) -> tuple[Array, ...]:
    """:math:`Q_i = s^{1/k} I` (a vector of ones for a diagonal axis); a scalar leaf has
    one factor, the scalar :math:`s`."""
    if not shape:
        return (jnp.full((), init_scale, dtype),)
    scale = init_scale ** (1 / len(shape))
    return tuple(
        scale * jnp.ones(size, dtype) if diag else scale * jnp.eye(size, dtype=dtype)
        for size, diag in zip(shape, diagonal, strict=True)
    )


def _multiply_along(q: Array, x: Array, axis: int) -> Array:
    """``x`` with ``q`` applied along ``axis``: :math:`\\sum_n q_{an} x_{\\ldots n \\ldots}`,
    or the elementwise product for a diagonal (vector) ``q``."""
    if q.ndim < 2:
        shape = [1] * x.ndim
        if x.ndim:
            shape[axis] = -1
        return x * q.reshape(shape)
    return jnp.moveaxis(jnp.tensordot(q, x, axes=(1, axis)), 0, axis)


def _solve_along(q: Array, x: Array, axis: int) -> Array:
    """``x`` times :math:`Q^{-1}` from the right along ``axis`` (upper-triangular ``q``;
    a division for a diagonal one): :math:`y_{\\ldots j \\ldots} = \\sum_n x_{\\ldots n
    \\ldots} (Q^{-1})_{nj}`."""
    if q.ndim < 2:
        shape = [1] * x.ndim
        if x.ndim:
            shape[axis] = -1
        return x / q.reshape(shape)
    moved = jnp.moveaxis(x, axis, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    dtype = jnp.promote_types(q.dtype, rows.dtype)
    solved = jax.lax.linalg.triangular_solve(
        q.astype(dtype), rows.astype(dtype), left_side=False, lower=False
    )
    return jnp.moveaxis(solved.reshape(moved.shape), -1, axis)


def _axis_statistic(x: Array, axis: int, diagonal: bool) -> Array:
    """:math:`X_{(i)} X_{(i)}^T` (``x`` contracted with itself over every other axis), or
    its diagonal for a diagonal factor."""
    others = [a for a in range(x.ndim) if a != axis]
    if diagonal:
        return jnp.sum(x * x, axis=tuple(others))
    return jnp.tensordot(x, x, axes=(others, others))


def _add_tiny(x: Array) -> Array:
    return x + jnp.finfo(x.dtype).tiny


def norm_lower_bound(a: Array) -> Array:
    """A cheap lower bound of the spectral norm of a square ``a`` (Li's estimate, within
    a factor of about sqrt(2)): one power-iteration step from its largest row or column,
    on ``a`` scaled by its largest entry; 0 for a zero matrix."""
    max_abs = jnp.max(jnp.abs(a))

    def estimate(a):
        a = a / max_abs
        squares = a * a
        column_sums, row_sums = jnp.sum(squares, axis=0), jnp.sum(squares, axis=1)
        i, j = jnp.argmax(column_sums), jnp.argmax(row_sums)

        def from_column():
            x = a[:, i] @ a
            return max_abs * jnp.linalg.norm((x / jnp.linalg.norm(x)) @ a.T)

        def from_row():
            x = a @ a[j, :]
            return max_abs * jnp.linalg.norm(a.T @ (x / jnp.linalg.norm(x)))

        return jax.lax.cond(column_sums[i] > row_sums[j], from_column, from_row)

    return jax.lax.cond(max_abs > 0, estimate, lambda _: max_abs, a)


def whitening_update(
    factors: tuple[Array, ...], h: Array, v: Array, precond_lr: Array
) -> tuple[Array, ...]:
    """One step of the preconditioner fit on the gradient ``h`` and the probe ``v``.

    With :math:`A = h \\times_i Q_i` (along every axis) and :math:`B = v \\times_i
    Q_i^{-T}`, each factor moves along the group's natural gradient of
    :math:`E[h^T P h + v^T P^{-1} v]`:

    .. math::
        Q_i \\leftarrow Q_i - \\frac{\\eta}{\\|A_{(i)}A_{(i)}^T + B_{(i)}B_{(i)}^T\\|}
            \\,\\mathrm{triu}\\big(A_{(i)}A_{(i)}^T - B_{(i)}B_{(i)}^T\\big)\\, Q_i

    (the norm is :func:`norm_lower_bound`; for a diagonal factor the products are
    diagonals, the norm their largest magnitude and the step elementwise). All factors
    are updated from the same :math:`A` and :math:`B`.
    """
    a = h
    b = v
    for axis, q in enumerate(factors):
        a = _multiply_along(q, a, axis)
        b = _solve_along(q, b, axis)
    new = []
    for axis, q in enumerate(factors):
        diagonal = q.ndim < 2
        term_a = _axis_statistic(a, axis, diagonal)
        term_b = _axis_statistic(b, axis, diagonal)
        step = (term_a - term_b) * precond_lr
        if diagonal:
            step = step * q / _add_tiny(jnp.max(jnp.abs(term_a + term_b)))
        else:
            step = jnp.triu(step) / _add_tiny(norm_lower_bound(term_a + term_b))
            step = step @ q
        new.append(q - step)
    return tuple(new)


def precondition(factors: tuple[Array, ...], g: Array) -> Array:
    """:math:`P\\,g`: ``g`` multiplied along each axis by :math:`Q_i^T Q_i` (by
    :math:`q_i^2` for a diagonal factor)."""
    for axis, q in enumerate(factors):
        if q.ndim < 2:
            g = _multiply_along(q * q, g, axis)
        else:
            g = _multiply_along(q.T, _multiply_along(q, g, axis), axis)
    return g


def balance(factors: tuple[Array, ...]) -> tuple[Array, ...]:
    """The factors rescaled to the geometric mean of their largest magnitudes (their
    Kronecker product is unchanged); the scales in float32, as the reference."""
    norms = jnp.stack([jnp.max(jnp.abs(q)).astype(jnp.float32) for q in factors])
    mean = jnp.prod(norms) ** (1 / len(factors))
    scales = mean / norms
    return tuple(q * scales[i].astype(q.dtype) for i, q in enumerate(factors))


def clip_rms(u: Array, limit: float) -> Array:
    """``u`` scaled down to root-mean-square ``limit`` if it is above it."""
    return u / jnp.maximum(1.0, jnp.sqrt(jnp.mean(u * u)) / limit)
