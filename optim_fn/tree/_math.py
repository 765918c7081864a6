"""Reductions over whole trees: squared norms, norms, inner products, finiteness.

Each accumulates in float32 at least (:func:`~optim_fn.core.numerics.wide`) and is real
for complex leaves. A tree with no leaves gives 0 (or True for :func:`all_finite`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from optim_fn.core.numerics import abs_sq, real_dtype, wide

Array = jax.Array


def _sum_wide(parts: list[Array]) -> Array:
    if not parts:
        return jnp.zeros([], jnp.float32)
    dtype = jnp.result_type(*parts)
    return sum(part.astype(dtype) for part in parts)


def tree_sq_norm(tree: Any) -> Array:
    """``sum |x|^2`` over every entry of every leaf."""
    return _sum_wide([jnp.sum(abs_sq(wide(leaf))) for leaf in jax.tree.leaves(tree)])


def tree_norm(tree: Any) -> Array:
    """``sqrt(sum |x|^2)``: the L2 norm of all the leaves together."""
    return jnp.sqrt(tree_sq_norm(tree))


global_norm = tree_norm
"""optax's name for :func:`tree_norm`."""


def tree_l1_norm(tree: Any) -> Array:
    """``sum |x|`` over every entry of every leaf."""
    return _sum_wide([jnp.sum(jnp.abs(wide(leaf))) for leaf in jax.tree.leaves(tree)])


def tree_real_vdot(a: Any, b: Any) -> Array:
    """``Re <a, b> = Re sum conj(a) b``: the inner product of the trees as real vectors."""
    parts = []
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        dtype = jnp.promote_types(jnp.promote_types(x.dtype, y.dtype), jnp.float32)
        parts.append(jnp.real(jnp.vdot(x.astype(dtype), y.astype(dtype))))
    return _sum_wide(parts)


def tree_add_scaled(a: Any, scale: Array, b: Any) -> Any:
    """``a + scale * b``, each leaf in ``a``'s dtype."""
    return jax.tree.map(lambda x, y: (x + scale * y).astype(x.dtype), a, b)


def all_finite(tree: Any) -> Array:
    """True when every entry of every leaf is finite (neither NaN nor inf)."""
    flags = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.ones([], jnp.bool_)


def tree_accumulation_dtype(tree: Any) -> jnp.dtype:
    """The real dtype, float32 at least, in which scalars about ``tree`` are computed."""
    leaves = jax.tree.leaves(tree)
    dtype = jnp.result_type(*leaves) if leaves else jnp.float32
    return jnp.promote_types(real_dtype(dtype), jnp.float32)
