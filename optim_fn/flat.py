"""Flat mode: a pytree kept as one contiguous buffer per (group, dtype).

XLA compiles one loop per leaf, so for a model with thousands of leaves an optimizer's
compile time and step time grow with the number of leaves, not with the number of
parameters. A :class:`FlatTree` holds the same numbers in a few 1-d buffers and is
itself a pytree whose leaves are those buffers, so every optim_fn (and optax) transform
runs on it unchanged, with state the size of a few buffers::

    flat_params = optim_fn.flat.ravel(params)            # once, outside the step
    state = optimizer.init(flat_params)

    @jax.jit
    def step(flat_params, state, batch):
        grads = jax.grad(lambda p: loss(p.unravel(), batch))(flat_params)   # a FlatTree
        updates, state = optimizer.update(grads, state, flat_params)
        return optim_fn.apply_updates(flat_params, updates), state

``unravel()`` builds the model's usual tree (slices of the buffers) inside the jitted
step. Elementwise rules give bitwise the numbers of tree mode. Reductions over the whole
tree (global-norm clipping) are exact up to summation order. Rules that need each leaf's
own shape (trust ratios, factored moments, matrix orthogonalisation) refuse a FlatTree
with a clear error (:func:`check_not_flat`).

``groups`` puts leaves with different labels (e.g. "decay" / "no_decay") in different
buffers, so masks and parameter groups that follow the labels cost nothing per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class LeafPlace(NamedTuple):
    """Where one leaf lives: its buffer, its offset there, its shape and dtype."""

    buffer: int
    offset: int
    shape: tuple[int, ...]
    dtype: str


class Layout(NamedTuple):
    """The static description of a FlatTree (hashable: it is the pytree's aux data)."""

    treedef: Any
    places: tuple[LeafPlace, ...]
    buffer_keys: tuple[tuple[str, str], ...]  # (group, dtype) of each buffer
    buffer_sizes: tuple[int, ...]


@jax.tree_util.register_pytree_node_class
class FlatTree:
    """A pytree stored as one 1-d buffer per (group, dtype); a pytree itself."""

    def __init__(self, buffers: tuple, layout: Layout):
        self.buffers = tuple(buffers)
        self.layout = layout

    def tree_flatten(self):
        return self.buffers, self.layout

    @classmethod
    def tree_unflatten(cls, layout: Layout, buffers) -> FlatTree:
        return cls(tuple(buffers), layout)

    def unravel(self) -> Any:
        """The tree this FlatTree stands for; each leaf a piece of its buffer.

        Uses ``jnp.split`` (one ``lax.split`` per buffer), whose transpose is a single
        concatenate: the gradient of a loss of ``unravel()`` costs one pass over the
        buffer, where per-leaf slices would transpose to one full-size pad per leaf.
        """
        pieces: list[Any] = [None] * len(self.layout.places)
        for index, buffer in enumerate(self.buffers):
            members = [(i, p) for i, p in enumerate(self.layout.places) if p.buffer == index]
            members.sort(key=lambda item: item[1].offset)
            sizes = [int(np.prod(p.shape, dtype=np.int64)) for _, p in members]
            cuts = np.cumsum(sizes)[:-1].tolist()
            parts = jnp.split(buffer, cuts) if cuts else [buffer]
            for (i, place), part in zip(members, parts, strict=True):
                pieces[i] = part.reshape(place.shape)
        return jax.tree.unflatten(self.layout.treedef, pieces)

    def leaf_structs(self) -> Any:
        """The tree of ``jax.ShapeDtypeStruct`` it stands for (for masks and labels)."""
        structs = [jax.ShapeDtypeStruct(p.shape, jnp.dtype(p.dtype)) for p in self.layout.places]
        return jax.tree.unflatten(self.layout.treedef, structs)

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{group or '-'}:{dtype}[{size}]"
            for (group, dtype), size in zip(
                self.layout.buffer_keys, self.layout.buffer_sizes, strict=True
            )
        )
        return f"FlatTree({len(self.layout.places)} leaves in {parts})"


def is_flat(tree: Any) -> bool:
    return isinstance(tree, FlatTree)


def check_not_flat(tree: Any, who: str, why: str) -> None:
    """Raises for a rule that needs each leaf's own shape, given a FlatTree."""
    if is_flat(tree):
        raise ValueError(
            f"{who} does not work in flat mode: {why}. Keep these params as a tree "
            "(use `optim_fn.flat.ravel` only for elementwise optimizers), or put them in "
            "their own parameter group."
        )


def _labels(tree: Any, groups: Any) -> list[str]:
    leaves_with_paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    if groups is None:
        return ["" for _ in leaves_with_paths]
    if callable(groups):
        return [str(groups(path, leaf)) for path, leaf in leaves_with_paths]
    spread = jax.tree.map(
        lambda label, subtree: jax.tree.map(lambda _: str(label), subtree), groups, tree
    )
    return [str(label) for label in jax.tree.leaves(spread)]


def layout_of(tree: Any, groups: Any = None) -> Layout:
    """The layout :func:`ravel` uses for ``tree`` (only shapes and dtypes are read)."""
    leaves, treedef = jax.tree.flatten(tree)
    labels = _labels(tree, groups)
    dtype_names = [jnp.dtype(leaf.dtype).name for leaf in leaves]
    keys = sorted(set(zip(labels, dtype_names, strict=True)))
    index = {key: i for i, key in enumerate(keys)}
    sizes = [0] * len(keys)
    places = []
    for label, leaf in zip(labels, leaves, strict=True):
        buffer = index[(label, jnp.dtype(leaf.dtype).name)]
        shape = tuple(int(d) for d in np.shape(leaf))
        places.append(LeafPlace(buffer, sizes[buffer], shape, jnp.dtype(leaf.dtype).name))
        sizes[buffer] += int(np.prod(shape, dtype=np.int64))
    return Layout(treedef, tuple(places), tuple(keys), tuple(sizes))


def ravel(tree: Any, groups: Any = None, *, layout: Layout | None = None) -> FlatTree:
    """Packs ``tree`` into one buffer per (group, dtype).

    Args:
      tree: a pytree of arrays.
      groups: ``None`` (one buffer per dtype), a function ``(path, leaf) -> label``, or
        a tree of labels with the structure of ``tree`` (or a prefix of it).
      layout: reuse the layout of an existing FlatTree (e.g. to pack gradients computed
        as a tree); must describe ``tree``.

    Outside a trace the buffers are assembled with NumPy and placed with one
    ``device_put`` each (no compilation); inside ``jax.jit`` with ``concatenate``.
    """
    layout = layout if layout is not None else layout_of(tree, groups)
    leaves, treedef = jax.tree.flatten(tree)
    if treedef != layout.treedef or len(leaves) != len(layout.places):
        raise ValueError(
            "flat.ravel: `tree` does not have the structure the `layout` describes; "
            "ravel it without `layout` or pass the tree the layout was made from"
        )
    traced = any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)
    _refuse_sharded(tree)
    members: list[list[Any]] = [[] for _ in layout.buffer_keys]
    for place, leaf in zip(layout.places, leaves, strict=True):
        if tuple(np.shape(leaf)) != place.shape:
            raise ValueError(
                f"flat.ravel: a leaf has shape {np.shape(leaf)}, the layout expects {place.shape}"
            )
        members[place.buffer].append(leaf)
    buffers = []
    for (_, dtype), parts in zip(layout.buffer_keys, members, strict=True):
        if traced:
            buffers.append(jnp.concatenate([jnp.ravel(p).astype(dtype) for p in parts]))
        else:
            host = np.concatenate([np.asarray(p, dtype=dtype).ravel() for p in parts])
            buffers.append(jax.device_put(host))
    return FlatTree(tuple(buffers), layout)


def _refuse_sharded(tree: Any) -> None:
    """Flat buffers live on one device; a sharded leaf would be gathered there silently."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not isinstance(leaf, jax.Array) or isinstance(leaf, jax.core.Tracer):
            continue  # under a trace the buffers are concatenated where jit places them
        sharding = leaf.sharding
        if leaf.committed and not sharding.is_fully_replicated:
            raise ValueError(
                f"flat.ravel: leaf {jax.tree_util.keystr(path)} is sharded across devices "
                f"({sharding}); flat mode keeps one buffer per dtype on one device and would "
                "gather it. Keep sharded params as a tree (the optimizer state follows their "
                "sharding), or ravel only the replicated part."
            )


def buffer_masks(flat: FlatTree, mask: Any | Callable[[Any], Any]) -> list[Any]:
    """Per buffer: True, False, or a NumPy bool array when the buffer is mixed.

    ``mask`` refers to the original tree (a tree of bools, a prefix of it, or a function
    of the tree; a function receives ``jax.ShapeDtypeStruct`` leaves).
    """
    structs = flat.leaf_structs()
    mask_tree = mask(structs) if callable(mask) else mask
    flags = jax.tree.leaves(
        jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), mask_tree, structs)
    )
    per_buffer: list[Any] = []
    for index, size in enumerate(flat.layout.buffer_sizes):
        places = [
            (p, f) for p, f in zip(flat.layout.places, flags, strict=True) if p.buffer == index
        ]
        values = {f for _, f in places}
        if len(values) == 1:
            per_buffer.append(values.pop())
            continue
        host = np.zeros(size, bool)
        for place, flag in places:
            host[place.offset : place.offset + int(np.prod(place.shape, dtype=np.int64))] = flag
        per_buffer.append(host)
    return per_buffer


def tree_size_bytes(tree: Any) -> int:
    """Total bytes of the arrays in ``tree`` (for measuring state sizes)."""
    leaves = jax.tree.leaves(tree)
    return sum(int(np.prod(np.shape(x))) * jnp.dtype(x.dtype).itemsize for x in leaves)

