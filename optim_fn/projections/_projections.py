"""Euclidean projections of a pytree onto convex sets, under optax's names
(``optax.projections``): ``argmin_{y in C} ||y - x||_2`` where the whole tree is one
vector.

Inner products and norms accumulate in float32 at least (:mod:`optim_fn.tree`). Use them
in projected gradient descent: ``params = projection(optim_fn.apply_updates(params, u))``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from optim_fn.tree._math import tree_l1_norm, tree_real_vdot, tree_sq_norm


def _scaled(factor: Any, tree: Any) -> Any:
    return jax.tree.map(lambda x: (factor * x).astype(jnp.asarray(x).dtype), tree)


def _plus_scaled(x: Any, factor: Any, a: Any) -> Any:
    return jax.tree.map(lambda xi, ai: (xi + factor * ai).astype(jnp.asarray(xi).dtype), x, a)


def _like(bound: Any, tree: Any) -> Any:
    """``bound`` as a tree like ``tree``: itself if it is one, else broadcast per leaf."""
    if jax.tree.structure(bound) == jax.tree.structure(tree):
        return bound
    return jax.tree.map(lambda _: bound, tree)


def projection_non_negative(tree: Any) -> Any:
    """Onto the non-negative orthant: ``max(x, 0)`` entrywise."""
    return jax.tree.map(jax.nn.relu, tree)


def projection_box(tree: Any, lower: Any, upper: Any) -> Any:
    """Onto the box ``lower <= y <= upper`` (scalars or trees like ``tree``): a clip."""
    return jax.tree.map(jnp.clip, tree, _like(lower, tree), _like(upper, tree))


def projection_hypercube(tree: Any, scale: Any = 1) -> Any:
    """Onto ``[0, scale]^n`` (default ``scale=1``; a scalar or a tree like ``tree``)."""
    return projection_box(tree, 0, scale)


def projection_linf_ball(tree: Any, scale: Any = 1) -> Any:
    """Onto ``{y : max |y_i| <= scale}``: a clip to ``[-scale, scale]``."""
    return jax.tree.map(lambda x: jnp.clip(x, -scale, scale), tree)


def projection_l2_ball(tree: Any, scale: Any = 1) -> Any:
    """Onto ``{y : ||y||_2 <= scale}``: ``x * scale / max(||x||, scale)``."""
    factor = scale / jnp.sqrt(jnp.maximum(tree_sq_norm(tree), jnp.square(scale)))
    return _scaled(factor, tree)


def projection_l2_sphere(tree: Any, scale: Any = 1) -> Any:
    """Onto ``{y : ||y||_2 = scale}``: ``x * scale / ||x||`` (undefined at ``x = 0``)."""
    return _scaled(scale / jnp.sqrt(tree_sq_norm(tree)), tree)


def projection_hyperplane(x: Any, a: Any, b: Any) -> Any:
    """Onto ``{y : <a, y> = b}``: ``x + (b - <a, x>) / <a, a> * a``."""
    return _plus_scaled(x, (b - tree_real_vdot(x, a)) / tree_real_vdot(a, a), a)


def projection_halfspace(x: Any, a: Any, b: Any) -> Any:
    """Onto ``{y : <a, y> <= b}``: ``x + min(0, (b - <a, x>) / <a, a>) * a``."""
    step = jnp.minimum((b - tree_real_vdot(x, a)) / tree_real_vdot(a, a), 0.0)
    return _plus_scaled(x, step, a)


def projection_vector(x: Any, a: Any) -> Any:
    """Onto the line spanned by ``a``: ``<a, x> / <a, a> * a``."""
    return _scaled(tree_real_vdot(x, a) / tree_real_vdot(a, a), a)


def _unit_simplex(v: jax.Array) -> jax.Array:
    # Held, Wolfe & Crowder (1974) / Duchi et al. (2008): sort, find the support size
    # rho, shift by theta = (sum of the rho largest - 1) / rho, clip at 0.
    u = jnp.sort(v)[::-1]
    excess = jnp.cumsum(u) - 1.0
    ranks = jnp.arange(1, v.shape[0] + 1, dtype=v.dtype)
    rho = jnp.count_nonzero(u - excess / ranks > 0)
    theta = excess[rho - 1] / rho.astype(v.dtype)
    return jnp.maximum(v - theta, 0.0)


def projection_simplex(tree: Any, scale: Any = 1) -> Any:
    """Onto ``{y : y >= 0, sum y = scale}`` (all leaves together), by sorting:
    ``max(x - theta, 0)`` with the one ``theta`` that makes the sum ``scale``
    (Duchi et al., *Efficient projections onto the l1-ball*, ICML 2008)."""
    values, unravel = ravel_pytree(tree)
    return unravel(scale * _unit_simplex(values / scale))


def projection_l1_sphere(tree: Any, scale: Any = 1) -> Any:
    """Onto ``{y : ||y||_1 = scale}``: ``sign(x) * simplex(|x|, scale)``."""
    magnitudes = projection_simplex(jax.tree.map(jnp.abs, tree), scale)
    return jax.tree.map(lambda x, m: jnp.sign(x) * m, tree, magnitudes)


def projection_l1_ball(tree: Any, scale: Any = 1) -> Any:
    """Onto ``{y : ||y||_1 <= scale}``: ``x`` if inside, else its l1-sphere projection."""
    inside = tree_l1_norm(tree) <= scale
    return jax.lax.cond(
        inside, lambda t: t, lambda t: projection_l1_sphere(t, scale), tree
    )
