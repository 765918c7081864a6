"""Pytree plumbing, written once for every rule: state creation, structure checks, dtypes.

``None`` in a tree is an empty subtree (as in :mod:`jax.tree_util`): it holds no
leaves, gets no state and comes back as ``None``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def path_str(path: tuple) -> str:
    """A readable form of a pytree key path, e.g. ``['layer']['w']`` or ``[0]``."""
    return jax.tree_util.keystr(path) or "<root>"


def check_params(params: Any, who: str) -> None:
    """Raises TypeError naming every leaf of ``params`` that is not a float or complex."""
    bad = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = np.asarray(leaf).dtype
        if not jnp.issubdtype(dtype, jnp.inexact):
            bad.append(f"{path_str(path)} ({dtype})")
    if bad:
        raise TypeError(
            f"{who}: params must be floating point or complex, but these leaves are not: "
            f"{', '.join(bad)}. Cast them (e.g. `.astype(jnp.float32)`) or keep them out "
            "of the optimized tree (mask or partition them)."
        )


def full_like(leaf: Any, value: float, dtype: Any = None) -> Array:
    """An array shaped like ``leaf``, filled with ``value``, placed where ``leaf`` is.

    Outside a trace this builds the buffer with NumPy and places it with one
    ``device_put``, which costs no compilation; ``jnp.zeros`` would compile one program
    per distinct shape (seconds for a model with thousands of leaf shapes).
    """
    dtype = jnp.dtype(dtype if dtype is not None else leaf.dtype)
    if isinstance(leaf, jax.core.Tracer):
        return jnp.full(leaf.shape, value, dtype)
    host = np.full(np.shape(leaf), value, dtype)
    # Follow the param's placement only when it is pinned (committed, e.g. sharded):
    # pinning state the user left unpinned would make jit compile again for each mix of
    # pinned and unpinned inputs.
    if getattr(leaf, "committed", False):
        return jax.device_put(host, leaf.sharding)
    return jax.device_put(host)


def tree_full_like(tree: Any, value: float, dtype: Any = None) -> Any:
    return jax.tree.map(lambda leaf: full_like(leaf, value, dtype), tree)


def flatten_matching(reference: Any, reference_name: str, **others: Any):
    """Flattens ``reference`` and every tree in ``others``, which must share its structure.

    Returns ``(treedef, reference_leaves, {name: leaves})``. Raises ValueError naming the
    paths that differ, so a gradient tree that does not match the optimizer state fails
    with a message rather than an opaque tree_map error.
    """
    ref_with_paths, treedef = jax.tree_util.tree_flatten_with_path(reference)
    ref_leaves = [leaf for _, leaf in ref_with_paths]
    flat = {}
    for name, tree in others.items():
        with_paths, other_def = jax.tree_util.tree_flatten_with_path(tree)
        if other_def != treedef:
            ref_paths = {path_str(p) for p, _ in ref_with_paths}
            other_paths = {path_str(p) for p, _ in with_paths}
            missing = sorted(other_paths - ref_paths)
            extra = sorted(ref_paths - other_paths)
            detail = []
            if missing:
                detail.append(f"missing from {reference_name}: {', '.join(missing[:8])}")
            if extra:
                detail.append(f"in {reference_name} but not in the {name}: {', '.join(extra[:8])}")
            if not detail:
                detail.append(f"structures differ: {treedef} vs {other_def}")
            raise ValueError(
                f"{reference_name} do not match the optimizer's {name} tree ("
                + "; ".join(detail)
                + "). Pass a tree with the same structure as the params given to init."
            )
        for (path, ref_leaf), (_, leaf) in zip(ref_with_paths, with_paths, strict=True):
            if np.shape(ref_leaf) != np.shape(leaf):
                raise ValueError(
                    f"{reference_name} leaf {path_str(path)} has shape {np.shape(ref_leaf)} "
                    f"but the {name} leaf there has shape {np.shape(leaf)}; pass a tree "
                    "with the same shapes as the params given to init"
                )
        flat[name] = [leaf for _, leaf in with_paths]
    return treedef, ref_leaves, flat


def replicate_scalars_like_params(state: Any, params: Any) -> Any:
    """Places the unplaced leaves of ``state`` replicated on the mesh of sharded ``params``.

    Slots are created with their param's sharding, but scalars (the step count,
    hyperparameters) start unplaced; a jitted step returns them replicated on the mesh,
    so without this its second call would see new input shardings and compile again.
    Does nothing when no param is committed to a multi-device, fully addressable mesh.
    """
    mesh = None
    for leaf in jax.tree.leaves(params):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
            sharding = leaf.sharding
            if (
                leaf.committed
                and isinstance(sharding, jax.sharding.NamedSharding)
                and sharding.is_fully_addressable
            ):
                mesh = sharding.mesh
                break
    if mesh is None or mesh.size == 1:
        return state
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def place(leaf):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
            if not leaf.committed:
                return jax.device_put(leaf, replicated)
        return leaf

    return jax.tree.map(place, state)
