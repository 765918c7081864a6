"""Leafwise arithmetic and reductions over trees, under the names of ``optax.tree``
(``optim_fn.tree.add`` is ``optax.tree.add``, and so on).

Reductions (``sum``, ``vdot``, ``norm``) accumulate in float32 at least, like the rest of
:mod:`optim_fn.tree`; ``vdot`` is ``sum conj(x) y`` (complex for complex trees, as optax's).
"""

from __future__ import annotations

import builtins
import functools
from typing import Any

import jax
import jax.numpy as jnp

from optim_fn.core.numerics import wide
from optim_fn.tree._math import tree_l1_norm, tree_sq_norm

Array = jax.Array


def add(tree_x: Any, tree_y: Any, *other_trees: Any) -> Any:
    """``x + y (+ ...)`` leafwise."""
    return jax.tree.map(lambda *leaves: functools.reduce(jnp.add, leaves), tree_x, tree_y,
                        *other_trees)


def sub(tree_x: Any, tree_y: Any) -> Any:
    """``x - y`` leafwise."""
    return jax.tree.map(jnp.subtract, tree_x, tree_y)


def mul(tree_x: Any, tree_y: Any) -> Any:
    """``x * y`` leafwise."""
    return jax.tree.map(jnp.multiply, tree_x, tree_y)


def div(tree_x: Any, tree_y: Any) -> Any:
    """``x / y`` leafwise."""
    return jax.tree.map(jnp.divide, tree_x, tree_y)


def scale(scalar: Any, tree: Any) -> Any:
    """``scalar * x`` leafwise."""
    return jax.tree.map(lambda x: scalar * x, tree)


def add_scale(tree_x: Any, scalar: Any, tree_y: Any) -> Any:
    """``x + scalar * y`` leafwise."""
    return jax.tree.map(lambda x, y: x + scalar * y, tree_x, tree_y)


def zeros_like(tree: Any, dtype: Any = None) -> Any:
    """A tree of zeros like ``tree`` (in ``dtype`` if given)."""
    return jax.tree.map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def ones_like(tree: Any, dtype: Any = None) -> Any:
    """A tree of ones like ``tree`` (in ``dtype`` if given)."""
    return jax.tree.map(lambda x: jnp.ones_like(x, dtype=dtype), tree)


def cast(tree: Any, dtype: Any) -> Any:
    """Every leaf cast to ``dtype``; ``dtype=None`` leaves the tree as it is."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: jnp.asarray(x).astype(dtype), tree)


def conj(tree: Any) -> Any:
    """Complex conjugate of every leaf."""
    return jax.tree.map(jnp.conj, tree)


def real(tree: Any) -> Any:
    """Real part of every leaf."""
    return jax.tree.map(jnp.real, tree)


def where(condition: Any, tree_x: Any, tree_y: Any) -> Any:
    """``x`` where ``condition`` else ``y``; ``condition`` a scalar or a tree like ``x``."""
    if jax.tree.structure(condition) == jax.tree.structure(tree_x):
        return jax.tree.map(jnp.where, condition, tree_x, tree_y)
    return jax.tree.map(lambda x, y: jnp.where(condition, x, y), tree_x, tree_y)


def clip(tree: Any, min_value: Any = None, max_value: Any = None) -> Any:
    """Every entry clipped to ``[min_value, max_value]`` (``None``: no bound)."""
    return jax.tree.map(lambda x: jnp.clip(x, min_value, max_value), tree)


def sum(tree: Any, associative_reduction: bool = False) -> Array:  # noqa: A001 - optax's name
    """The sum of every entry of every leaf (0 for an empty tree).

    ``associative_reduction=True`` sums the per-leaf sums pairwise (as a tree) instead
    of left to right, which can be more accurate for many leaves.
    """
    sums = [jnp.sum(wide(x)) for x in jax.tree.leaves(tree)]
    if not sums:
        return jnp.zeros([], jnp.float32)
    if associative_reduction:
        while len(sums) > 1:
            sums = [sums[i] + sums[i + 1] if i + 1 < len(sums) else sums[i]
                    for i in range(0, len(sums), 2)]
        return sums[0]
    return functools.reduce(jnp.add, sums)


def max(tree: Any) -> Array:  # noqa: A001 - optax's name
    """The largest entry of the tree (``-inf`` for an empty tree)."""
    leaves = jax.tree.leaves(tree)
    return functools.reduce(jnp.maximum, [jnp.max(x) for x in leaves], jnp.array(-jnp.inf))


def min(tree: Any) -> Array:  # noqa: A001 - optax's name
    """The smallest entry of the tree (``inf`` for an empty tree)."""
    leaves = jax.tree.leaves(tree)
    return functools.reduce(jnp.minimum, [jnp.min(x) for x in leaves], jnp.array(jnp.inf))


def vdot(tree_x: Any, tree_y: Any) -> Array:
    """``sum conj(x) y`` over all leaves (complex if the trees are)."""
    parts = [jnp.vdot(wide(x), wide(y)) for x, y in
             zip(jax.tree.leaves(tree_x), jax.tree.leaves(tree_y), strict=True)]
    return functools.reduce(jnp.add, parts, jnp.zeros([], jnp.float32))


def norm(tree: Any, ord: Any = None, squared: bool = False) -> Array:  # noqa: A002
    """The norm of all leaves as one vector: ``ord`` ``None``/``2`` (l2), ``1`` or ``inf``;
    ``squared=True`` returns its square."""
    if ord in (None, 2, "fro"):
        squared_norm = tree_sq_norm(tree)
        return squared_norm if squared else jnp.sqrt(squared_norm)
    if ord == 1:
        value = tree_l1_norm(tree)
    elif ord in (jnp.inf, "inf", float("inf")):
        leaves = [jnp.max(jnp.abs(wide(x))) for x in jax.tree.leaves(tree)]
        value = functools.reduce(jnp.maximum, leaves, jnp.zeros([], jnp.float32))
    else:
        raise ValueError(f"optim_fn.tree.norm: `ord` must be None, 1, 2 or inf, got {ord!r}")
    return jnp.square(value) if squared else value


def size(tree: Any) -> int:
    """The number of entries in all leaves."""
    return builtins.sum(jnp.size(x) for x in jax.tree.leaves(tree))
