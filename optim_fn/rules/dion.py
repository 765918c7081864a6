"""Dion's low-rank orthonormal update, as plain math on one leaf.

Ahn, Xu, Abreu, Zhang & Langford 2025, "Dion: Distributed Orthonormalized Updates"
(arXiv:2504.05295); reference: microsoft/dion, ``dion/dion.py`` (``dion_update_ddp``,
``orthogonalize``, ``fix_all_zero_or_nan``, ``column_normalize``) and, for the QR
variants and power iterations, ``dion/dion_reference.py``.

One step on a matrix with momentum :math:`M` and right factor :math:`Q` (``n x r``):

.. math::
    M &\\leftarrow M + G,\\qquad P = \\mathrm{orth}(B Q),\\qquad R = B^T P, \\\\
    M &\\leftarrow M - (1-\\mu) P R^T,\\qquad
    Q \\leftarrow R / (\\|R_{:,j}\\| + \\epsilon),\\qquad
    u = \\sqrt{d_{out}/d_{in}}\\; P Q^T

where :math:`B` is :math:`M` oriented so that it has at least as many rows as columns
(the reference's ``is_transposed``: PyTorch's ``(out, in)`` weight, transposed when it is
wide). Our matrices are ``(fan_in, fan_out)`` (flax's layout), so ``B`` is the leaf's
transpose unless ``fan_in > fan_out``. ``orth`` is ``qr_method``'s orthonormalisation:
``"qr"`` (Householder), ``"cqr"`` (Cholesky QR, falling back to ``"rcqr"`` where the
Cholesky factorisation fails, and ``"rcqr"`` for the first ``cqr_warmup_steps`` steps) or
``"rcqr"`` (randomized Cholesky QR: the triangular factor of a Gaussian sketch ``S P``,
``S`` of ``ceil(oversample r / 128) 128`` rows, then one Cholesky QR pass; Householder QR
where ``P`` is square). The orthonormal basis differs between methods only by the signs
of its columns, which cancel in :math:`PR^T` and :math:`PQ^T`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from optim_fn.rules import orthogonalize as ortho

Array = jax.Array

QR_METHODS = ("qr", "cqr", "rcqr")


def low_rank(rows: int, cols: int, rank_fraction: float, rank_multiple_of: int) -> int:
    """The reference's rank: ``rank_fraction min(rows, cols)``, rounded up to a multiple
    of ``rank_multiple_of``, at most ``min(rows, cols)``."""
    r = rank_fraction * min(rows, cols)
    r = rank_multiple_of * math.ceil(r / rank_multiple_of)
    return int(min(r, rows, cols))


def is_transposed(fan_in: int, fan_out: int) -> bool:
    """Whether ``B`` is the ``(fan_in, fan_out)`` matrix itself (else its transpose)."""
    return fan_out < fan_in


def q_shape(fan_in: int, fan_out: int, rank: int) -> tuple[int, int]:
    """The shape of ``Q``: ``B``'s columns by the rank."""
    return (fan_out if is_transposed(fan_in, fan_out) else fan_in, rank)


def _right_solve(p: Array, upper: Array) -> Array:
    """``P R^{-1}`` for an upper-triangular ``R``."""
    return solve_triangular(upper.T, p.T, lower=True).T


def _cholesky_qr(p: Array) -> Array:
    upper = jnp.linalg.cholesky(p.T @ p).T
    return _right_solve(p, upper)


def sketch_rows(rank: int, oversample: float) -> int:
    return math.ceil(oversample * rank / 128.0) * 128


def randomized_cholesky_qr(p: Array, key: Array, oversample: float) -> Array:
    """The reference's RCQR of a tall ``P`` (Householder QR for a square one)."""
    rows, rank = p.shape
    if rows <= rank:
        return jnp.linalg.qr(p)[0]
    k = sketch_rows(rank, oversample)
    sketch = jax.random.normal(key, (k, rows), p.dtype) * math.sqrt(1.0 / k)
    upper = jnp.linalg.qr(sketch @ p, mode="r")
    return _cholesky_qr(_right_solve(p, upper))


def orthonormalize(
    p: Array, key: Array, *, qr_method: str, oversample: float, use_cqr: Array | bool,
) -> Array:
    """``qr_method``'s orthonormal basis of the columns of ``P``."""
    if qr_method == "qr":
        return jnp.linalg.qr(p)[0]
    randomized = randomized_cholesky_qr(p, key, oversample)
    if qr_method == "rcqr":
        return randomized
    if qr_method != "cqr":
        raise ValueError(f"unknown qr_method {qr_method!r}; use one of {QR_METHODS}")
    cholesky = _cholesky_qr(p)
    ok = jnp.logical_and(use_cqr, jnp.all(jnp.isfinite(cholesky)))
    return jnp.where(ok, cholesky, randomized)


def dion_matrix(
    m: Array, q: Array, key: Array, *, mu: Array, eps: Array, qr_method: str,
    oversample: float, use_cqr: Array | bool, power_iters: int,
) -> tuple[Array, Array, Array]:
    """One Dion step on one ``(fan_in, fan_out)`` momentum ``M`` (the gradient added).

    Returns ``(P Q^T, M, Q)``: the unscaled update and the new momentum and ``Q``, in the
    matrix's layout.
    """
    fan_in, fan_out = m.shape
    transposed = is_transposed(fan_in, fan_out)
    b = m if transposed else m.T
    right = q
    keys = jax.random.split(key, power_iters)
    for index in range(power_iters):
        p = orthonormalize(b @ right, keys[index], qr_method=qr_method, oversample=oversample,
                           use_cqr=use_cqr)
        right = b.T @ p
    # An all-zero momentum makes P and R zero or NaN: no update, and Q kept.
    all_zero = jnp.all(b == 0)
    p = jnp.where(all_zero, 0.0, jnp.nan_to_num(p))
    r = jnp.where(all_zero, q, jnp.nan_to_num(right))
    b = b - (1 - mu) * (p @ r.T)
    q = r / (jnp.sqrt(jnp.sum(jnp.square(r), axis=0, keepdims=True)) + eps)
    update = p @ q.T
    if not transposed:
        b, update = b.T, update.T
    return update, b, q


def dion(
    grad, momentum, q, key, *, dims, mu, eps, count, qr_method, oversample,
    cqr_warmup_steps, power_iters,
):
    """Dion on one leaf: each ``(fan_in, fan_out)`` matrix of it (``dims`` names its axes,
    the others are batch axes with a ``Q`` each), scaled by :math:`\\sqrt{d_{out}/d_{in}}`.

    ``key`` (a raw ``uint32[2]`` key) draws the RCQR sketches; returns ``(update,
    momentum, q, key)``. Low-precision leaves are factorised in float32, as the reference
    does every leaf.
    """
    momentum = momentum + grad
    # The reference factorises in float32 (LAPACK has no bfloat16 or float16): at least that.
    work = jnp.promote_types(momentum.dtype, jnp.float32)
    stack, layout = ortho.to_matrices(momentum.astype(work), dims)
    fan_in, fan_out = stack.shape[-2:]
    key, step_key = jax.random.split(jax.random.wrap_key_data(key))
    keys = jax.random.split(step_key, stack.shape[0])
    use_cqr = count > cqr_warmup_steps

    def one(m, q_, k):
        return dion_matrix(m, q_, k, mu=mu, eps=eps, qr_method=qr_method,
                           oversample=oversample, use_cqr=use_cqr, power_iters=power_iters)

    update, stack, q = jax.vmap(one)(stack, q.astype(work), keys)
    update = ortho.from_matrices(update * math.sqrt(fan_out / fan_in), layout)
    return update, ortho.from_matrices(stack, layout), q, jax.random.key_data(key)
