"""Shampoo's per-block math: Kronecker factors, their inverse roots and eigenbases.

Plain functions of arrays (one block of one leaf), shared by Shampoo
(:mod:`optim_fn.contrib._shampoo`) and SOAP (:mod:`optim_fn.contrib._soap`):

* :func:`kronecker_factor`: :math:`G_{(k)} G_{(k)}^T`, the gradient contracted with itself
  over every axis but ``k``;
* :func:`project` / :func:`project_back`: a tensor multiplied along its axes by matrices
  (:math:`x \\times_k Q_k^T` and :math:`x \\times_k Q_k`); with symmetric matrices
  (inverse roots) both are Shampoo's preconditioning :math:`L^{-1/r} G R^{-1/r}`;
* :func:`inverse_root_by_eigh` and :func:`inverse_root_by_coupled_newton`: the matrix
  inverse root :math:`(A + \\epsilon I)^{-1/r}` of a factor, and :func:`eigenbasis`;
* :func:`merged_dims` and :func:`block_slices`: how a leaf is reshaped and cut into blocks;
  :func:`block_groups`, :func:`gather_blocks` and :func:`scatter_blocks`: the blocks of one
  shape stacked into one array (and back), so that they are computed by one batched call.

The numerics follow facebookresearch/optimizers ``distributed_shampoo`` (Shi et al. 2023,
arXiv:2309.06497), ``preconditioner/matrix_functions.py`` and ``utils/shampoo_utils.py``
at commit f606606 (2026-08-05).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

# Matrix products in full float32 (GPUs default to TF32), so results do not depend on
# the device.
_HIGHEST = jax.lax.Precision.HIGHEST


def kronecker_factor(g: Array, axis: int) -> Array:
    """:math:`G_{(i)} G_{(i)}^T`: ``g`` contracted with itself over every axis but ``axis``."""
    others = [a for a in range(g.ndim) if a != axis]
    return jnp.tensordot(g, g, axes=(others, others), precision=_HIGHEST)


def _along(x: Array, q: Array, axis: int, q_axis: int) -> Array:
    """``x`` with ``axis`` contracted against axis ``q_axis`` of ``q``, kept in place."""
    return jnp.moveaxis(jnp.tensordot(x, q, axes=([axis], [q_axis]), precision=_HIGHEST), -1, axis)


def project(x: Array, bases: tuple, preconditioned: tuple[bool, ...]) -> Array:
    """Into the eigenbasis: :math:`x \\times_i Q_i^T` over the preconditioned axes."""
    for axis, (q, active) in enumerate(zip(bases, preconditioned, strict=True)):
        if active:
            x = _along(x, q, axis, 0)
    return x


def project_back(x: Array, bases: tuple, preconditioned: tuple[bool, ...]) -> Array:
    """Out of the eigenbasis: :math:`x \\times_i Q_i`."""
    for axis, (q, active) in enumerate(zip(bases, preconditioned, strict=True)):
        if active:
            x = _along(x, q, axis, 1)
    return x


# ----------------------------------------------------------------------------------------
# Layout: merging small axes, cutting large ones into blocks.


def merged_dims(shape: tuple[int, ...], max_dim: float, merge: bool) -> tuple[int, ...]:
    """The shape a leaf is preconditioned as (``merge_small_dims`` of Distributed Shampoo).

    With ``merge``: axes of size 1 are dropped, then, from the last axis backwards,
    neighbours are merged while their product stays ``<= max_dim``; a scalar becomes
    ``(1,)``. ``(2, 3, 8)`` with ``max_dim=8`` becomes ``(6, 8)``; ``(3, 5)`` with
    ``max_dim=1024`` becomes ``(15,)``. Without ``merge`` the shape is kept as is.
    """
    if 0 in shape:
        return (0,)
    if not merge:
        return tuple(shape)
    squeezed = [size for size in reversed(shape) if size != 1] or [1]
    merged = [squeezed[0]]
    for size in squeezed[1:]:
        if merged[-1] * size <= max_dim:
            merged[-1] *= size
        else:
            merged.append(size)
    return tuple(reversed(merged))


def block_slices(shape: tuple[int, ...], block_size: float) -> tuple[tuple[slice, ...], ...]:
    """Every axis cut into chunks of ``block_size`` (the last one shorter), in row-major
    order of the grid of blocks (``multi_dim_split`` of Distributed Shampoo)."""
    blocks: list[tuple[slice, ...]] = [()]
    for size in shape:
        step = size if math.isinf(block_size) else int(block_size)
        chunks = [slice(start, min(start + step, size)) for start in range(0, size, max(step, 1))]
        blocks = [block + (chunk,) for block in blocks for chunk in chunks]
    return tuple(blocks)


class BlockGroup(NamedTuple):
    """The blocks of one shape: the region of the leaf they tile, how many there are
    along each axis, and their shape."""

    region: tuple[slice, ...]
    counts: tuple[int, ...]
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.counts)


def block_groups(shape: tuple[int, ...], block_size: float) -> tuple[BlockGroup, ...]:
    """:func:`block_slices`' blocks grouped by shape: along each axis the full chunks and
    the shorter last one, so at most ``2^ndim`` groups whatever the number of blocks."""
    per_axis = []
    for size in shape:
        step = size if math.isinf(block_size) else min(int(block_size), size)
        full = size // step
        options = []
        if full:
            options.append((slice(0, full * step), full, step))
        if size > full * step:
            options.append((slice(full * step, size), 1, size - full * step))
        per_axis.append(options)
    return tuple(
        BlockGroup(
            tuple(option[0] for option in combination),
            tuple(option[1] for option in combination),
            tuple(option[2] for option in combination),
        )
        for combination in itertools.product(*per_axis)
    )


def gather_blocks(x: Array, group: BlockGroup) -> Array:
    """The group's blocks of ``x``, stacked: shape ``(group.size, *group.shape)``."""
    order = len(group.shape)
    interleaved = [n for pair in zip(group.counts, group.shape, strict=True) for n in pair]
    blocks = x[group.region].reshape(interleaved)
    blocks = jnp.transpose(blocks, [*range(0, 2 * order, 2), *range(1, 2 * order, 2)])
    return blocks.reshape((group.size, *group.shape))


def scatter_blocks(out: Array, group: BlockGroup, blocks: Array) -> Array:
    """``out`` with the group's region replaced by the stacked ``blocks``."""
    order = len(group.shape)
    tiled = blocks.reshape((*group.counts, *group.shape))
    tiled = jnp.transpose(tiled, [axis for i in range(order) for axis in (i, order + i)])
    region = tuple(s.stop - s.start for s in group.region)
    return out.at[group.region].set(tiled.reshape(region))


# ----------------------------------------------------------------------------------------
# Inverse roots and eigenbases of one factor.


def inverse_root_by_eigh(factor: Array, root: float, epsilon: Array) -> Array:
    """:math:`(A + \\epsilon I)^{-1/r}` by an eigendecomposition.

    As Distributed Shampoo's default (``EigenConfig``, perturbation before the
    computation): :math:`A + \\epsilon I = Q \\Lambda Q^T`; if the smallest eigenvalue
    :math:`\\lambda_{min}` (rounding can make it negative) is below :math:`\\epsilon`,
    every eigenvalue is shifted by :math:`\\epsilon - \\lambda_{min}`; then
    :math:`Q \\Lambda^{-1/r} Q^T`.
    """
    identity = jnp.eye(factor.shape[0], dtype=factor.dtype)
    eigenvalues, eigenvectors = jnp.linalg.eigh(factor + epsilon * identity)
    smallest = jnp.min(eigenvalues)
    eigenvalues = jnp.where(smallest < epsilon, eigenvalues - smallest + epsilon, eigenvalues)
    return jnp.matmul(
        eigenvectors * eigenvalues ** (-1.0 / root), eigenvectors.T, precision=_HIGHEST
    )


def inverse_root_by_coupled_newton(
    factor: Array, root: int, epsilon: Array, max_iterations: int, tolerance: float
) -> Array:
    """:math:`(A + \\epsilon I)^{-1/r}` by the coupled inverse Newton iteration.

    With :math:`\\alpha = -1/r`, :math:`z = (r + 1) / (2 \\|A + \\epsilon I\\|_F)`,
    :math:`X = z^{1/r} I` and :math:`M = z (A + \\epsilon I)`, repeat
    :math:`M' = (1 - \\alpha) I + \\alpha M`, :math:`X \\leftarrow X M'`,
    :math:`M \\leftarrow M'^r M` while :math:`\\max |M - I| >` ``tolerance`` and fewer
    than ``max_iterations`` iterations ran (Distributed Shampoo's ``CoupledNewtonConfig``).
    """
    identity = jnp.eye(factor.shape[0], dtype=factor.dtype)
    alpha = -1.0 / root
    ridge = factor + epsilon * identity
    z = (root + 1) / (2 * jnp.linalg.norm(ridge))
    x = z ** (-alpha) * identity
    m = z * ridge

    def error(m):
        return jnp.max(jnp.abs(m - identity))

    def running(carry):
        iteration, _, _, err = carry
        return (err > tolerance) & (iteration < max_iterations)

    def iterate(carry):
        iteration, x, m, _ = carry
        m_step = alpha * m + (1 - alpha) * identity
        x = jnp.matmul(x, m_step, precision=_HIGHEST)
        power = m_step
        for _ in range(root - 1):
            power = jnp.matmul(power, m_step, precision=_HIGHEST)
        m = jnp.matmul(power, m, precision=_HIGHEST)
        return iteration + 1, x, m, error(m)

    _, x, _, _ = jax.lax.while_loop(running, iterate, (jnp.int32(0), x, m, error(m)))
    return x


def eigenbasis(factor: Array, epsilon: Array) -> Array:
    """The eigenvectors of :math:`A + \\epsilon I` (the eigenvalue-corrected variant's basis)."""
    identity = jnp.eye(factor.shape[0], dtype=factor.dtype)
    return jnp.linalg.eigh(factor + epsilon * identity)[1]


def keep_if_not_finite(new: Array, old: Array) -> Array:
    """``new``, or ``old`` where ``new`` has a NaN or an infinity (Distributed Shampoo keeps
    the previous preconditioner when a computation fails)."""
    return jnp.where(jnp.all(jnp.isfinite(new)), new, old)
