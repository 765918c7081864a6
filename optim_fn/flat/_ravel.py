"""Flat mode's implementation: layouts, ``ravel``, ``FlatTree`` (see :mod:`optim_fn.flat`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.flat import _sharded as sharded


class LeafPlace(NamedTuple):
    """Where one leaf lives: its buffer, its offset there, its shape and dtype.

    For a leaf of a 2-d (sharded) buffer, ``offset`` counts columns and ``spec`` gives,
    per dimension, the mesh axes splitting it; ``spec`` is ``()`` for an unsplit leaf.
    """

    buffer: int
    offset: int
    shape: tuple[int, ...]
    dtype: str
    spec: tuple[tuple[str, ...], ...] = ()


class Layout(NamedTuple):
    """The static description of a FlatTree (hashable: it is the pytree's aux data).

    ``buffer_sizes`` counts each buffer's elements (rows x columns for a 2-d one);
    ``buffer_axes`` names the mesh axes a buffer's rows are split over (``()``: a 1-d
    buffer); ``mesh`` is the mesh of the split buffers (None when there are none).
    """

    treedef: Any
    places: tuple[LeafPlace, ...]
    buffer_keys: tuple[tuple[str, str], ...]  # (group, dtype) of each buffer
    buffer_sizes: tuple[int, ...]
    buffer_axes: tuple[tuple[str, ...], ...] = ()
    mesh: Any = None

    def axes(self, index: int) -> tuple[str, ...]:
        return self.buffer_axes[index] if self.buffer_axes else ()

    def buffer_shape(self, index: int) -> tuple[int, ...]:
        """``(size,)`` for a 1-d buffer, ``(rows, columns)`` for a sharded one."""
        axes, size = self.axes(index), self.buffer_sizes[index]
        if not axes:
            return (size,)
        n_rows = sharded.rows(self.mesh, axes)
        return (n_rows, size // n_rows)

    def members(self, index: int) -> list[tuple[int, LeafPlace]]:
        """``(leaf index, place)`` of the leaves in buffer ``index``, in buffer order."""
        found = [(i, p) for i, p in enumerate(self.places) if p.buffer == index]
        return sorted(found, key=lambda item: item[1].offset)


@jax.tree_util.register_pytree_node_class
class FlatTree:
    """A pytree stored as one buffer per (group, dtype[, mesh axes]); a pytree itself."""

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
        A sharded buffer is split the same way on each device, and each leaf comes back
        with its own sharding.
        """
        layout = self.layout
        if any(layout.buffer_axes) and not any(_is_traced(b) for b in self.buffers):
            # Eagerly, the per-device split runs as one program compiled once per layout.
            return sharded.jitted(_unravel, layout)(self.buffers)
        return _unravel(self.buffers, layout)

    def leaf_structs(self) -> Any:
        """The tree of ``jax.ShapeDtypeStruct`` it stands for (for masks and labels)."""
        structs = [jax.ShapeDtypeStruct(p.shape, jnp.dtype(p.dtype)) for p in self.layout.places]
        return jax.tree.unflatten(self.layout.treedef, structs)

    def __repr__(self) -> str:
        layout = self.layout
        parts = []
        for index, (group, dtype) in enumerate(layout.buffer_keys):
            shape = "x".join(map(str, layout.buffer_shape(index)))
            over = f" over {','.join(layout.axes(index))}" if layout.axes(index) else ""
            parts.append(f"{group or '-'}:{dtype}[{shape}]{over}")
        return f"FlatTree({len(layout.places)} leaves in {', '.join(parts)})"


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _unravel(buffers: tuple, layout: Layout) -> Any:
    pieces: list[Any] = [None] * len(layout.places)
    for index, buffer in enumerate(buffers):
        members = layout.members(index)
        axes = layout.axes(index)
        if axes:
            parts = sharded.unravel_buffer(
                buffer, [p.shape for _, p in members], [p.spec for _, p in members],
                layout.mesh, axes,
            )
        else:
            sizes = [int(np.prod(p.shape, dtype=np.int64)) for _, p in members]
            cuts = np.cumsum(sizes)[:-1].tolist()
            parts = [
                part.reshape(place.shape)
                for (_, place), part in zip(
                    members, jnp.split(buffer, cuts) if cuts else [buffer], strict=True
                )
            ]
        for (i, _), part in zip(members, parts, strict=True):
            pieces[i] = part
    return jax.tree.unflatten(layout.treedef, pieces)


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
    """The layout :func:`ravel` uses for ``tree``.

    Reads shapes, dtypes and placements: a leaf with a ``NamedSharding`` goes to the 2-d
    buffer of the mesh axes it is split over (``jax.ShapeDtypeStruct`` s with a
    ``sharding`` count too).
    """
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    labels = _labels(tree, groups)
    mesh, specs = _placements(with_paths)
    dtype_names = [jnp.dtype(leaf.dtype).name for _, leaf in with_paths]
    axes = [sharded.buffer_axes(spec, mesh) if spec else () for spec in specs]
    leaf_keys = list(zip(labels, dtype_names, axes, strict=True))
    keys = sorted(set(leaf_keys))
    index = {key: i for i, key in enumerate(keys)}
    columns = [0] * len(keys)
    places = []
    for key, (_, leaf), spec in zip(leaf_keys, with_paths, specs, strict=True):
        buffer = index[key]
        shape = tuple(int(d) for d in np.shape(leaf))
        places.append(LeafPlace(buffer, columns[buffer], shape, key[1], spec))
        columns[buffer] += int(np.prod(shape, dtype=np.int64)) // sharded.rows(mesh, key[2])
    sizes = [c * sharded.rows(mesh, key[2]) for c, key in zip(columns, keys, strict=True)]
    buffer_axes = tuple(key[2] for key in keys)
    return Layout(
        treedef,
        tuple(places),
        tuple((label, dtype) for label, dtype, _ in keys),
        tuple(sizes),
        buffer_axes,
        # Only split buffers need the mesh in the layout (the pytree's aux data): a
        # replicated FlatTree keeps one structure wherever it is placed, so gradients
        # raveled on the host still match params raveled from a mesh.
        mesh if any(buffer_axes) else None,
    )


def _placements(with_paths: list) -> tuple[Any, list]:
    """The one mesh the leaves are placed on (or None) and each leaf's split."""
    mesh, mesh_leaf, specs = None, "", []
    for path, leaf in with_paths:
        where = jax.tree_util.keystr(path)
        leaf_mesh, spec = sharded.leaf_placement(leaf, where)
        if spec and leaf_mesh is None:
            raise ValueError(
                f"flat.ravel: leaf {where} is a tracer split over mesh axes {spec}; under "
                "jax.jit the layout cannot be read from it. Ravel the params outside jit "
                "and pass `layout=flat_params.layout`."
            )
        if leaf_mesh is not None:
            if mesh is not None and leaf_mesh != mesh:
                raise ValueError(
                    f"flat.ravel: leaves {mesh_leaf} and {where} are placed on different "
                    f"meshes ({mesh} and {leaf_mesh}); a FlatTree lives on one mesh. Place "
                    "every leaf on the same mesh, or ravel the two parts separately."
                )
            mesh, mesh_leaf = leaf_mesh, mesh_leaf or where
        specs.append(spec)
    return mesh, specs


def ravel(tree: Any, groups: Any = None, *, layout: Layout | None = None) -> FlatTree:
    """Packs ``tree`` into one buffer per (group, dtype), and per mesh axes on a mesh.

    Args:
      tree: a pytree of arrays.
      groups: ``None`` (one buffer per dtype), a function ``(path, leaf) -> label``, or
        a tree of labels with the structure of ``tree`` (or a prefix of it).
      layout: reuse the layout of an existing FlatTree (e.g. to pack gradients computed
        as a tree); must describe ``tree``, sharded leaves placed as the layout says.

    Outside a trace the buffers are assembled with NumPy and placed with one
    ``device_put`` each (per device for sharded buffers; no compilation); inside
    ``jax.jit`` with ``concatenate`` (per device, in a ``shard_map``, for sharded ones).
    """
    layout = layout if layout is not None else layout_of(tree, groups)
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    if treedef != layout.treedef or len(with_paths) != len(layout.places):
        raise ValueError(
            "flat.ravel: `tree` does not have the structure the `layout` describes; "
            "ravel it without `layout` or pass the tree the layout was made from"
        )
    traced = any(_is_traced(leaf) for _, leaf in with_paths)
    members: list[list[Any]] = [[] for _ in layout.buffer_keys]
    for place, (path, leaf) in zip(layout.places, with_paths, strict=True):
        if tuple(np.shape(leaf)) != place.shape:
            raise ValueError(
                f"flat.ravel: a leaf has shape {np.shape(leaf)}, the layout expects {place.shape}"
            )
        _check_placement(leaf, place, layout, jax.tree_util.keystr(path))
        members[place.buffer].append(leaf)
    # Replicated buffers go where the leaves are: the layout's mesh, or the leaves' own.
    mesh = layout.mesh if layout.mesh is not None or traced else _placements(with_paths)[0]
    buffers = []
    for index, ((_, dtype), parts) in enumerate(zip(layout.buffer_keys, members, strict=True)):
        axes = layout.axes(index)
        specs = [p.spec for _, p in layout.members(index)]
        if axes and traced:
            buffers.append(sharded.ravel_traced(parts, specs, layout.mesh, axes, dtype))
        elif axes:
            buffers.append(sharded.assemble(parts, specs, layout.mesh, axes, dtype))
        elif traced:
            buffers.append(jnp.concatenate([jnp.ravel(p).astype(dtype) for p in parts]))
        else:
            host = np.concatenate([np.asarray(_local(p), dtype=dtype).ravel() for p in parts])
            if mesh is None:
                buffers.append(jax.device_put(host))
            else:
                buffers.append(sharded.replicate(host, mesh))
    return FlatTree(tuple(buffers), layout)


def _local(leaf: Any) -> Any:
    # A replicated array of a multi-process mesh is read from this process's own copy.
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return leaf.addressable_data(0)
    return leaf


def _check_placement(leaf: Any, place: LeafPlace, layout: Layout, where: str) -> None:
    """A placed leaf must be split as the layout says: anything else would move data."""
    if _is_traced(leaf):
        sharding = getattr(jax.typeof(leaf), "sharding", None)
        mesh_axes = getattr(getattr(sharding, "mesh", None), "axis_types", ())
        if jax.sharding.AxisType.Explicit not in mesh_axes:
            return  # Auto axes: the leaf's placement is jit's to choose
        spec = sharded.normalize_spec(sharding.spec, len(place.shape))
        _check_split(spec if sharded.is_split(spec) else (), place.spec, where)
        return
    leaf_mesh, split = sharded.leaf_placement(leaf, where)
    on_a_mesh = isinstance(getattr(leaf, "sharding", None), jax.sharding.NamedSharding)
    if not split and not (place.spec and on_a_mesh):
        return  # replicated or unplaced: copied into place, nothing is gathered
    _check_split(split, place.spec, where)
    if leaf_mesh != layout.mesh:
        raise ValueError(
            f"flat.ravel: leaf {where} is on mesh {leaf_mesh}, the layout's buffers on "
            f"{layout.mesh}; place it on the layout's mesh."
        )


def _check_split(got: Any, want: Any, where: str) -> None:
    def describe(spec):
        return f"split as {sharded.partition_spec(spec)}" if spec else "not split"

    if got != want:
        raise ValueError(
            f"flat.ravel: leaf {where} is {describe(got)}, but the layout has it "
            f"{describe(want)}; place it like the params the layout was made from "
            "(e.g. `jax.device_put(grads, params_shardings)`), or ravel without `layout`."
        )


def buffer_masks(flat: FlatTree, mask: Any | Callable[[Any], Any]) -> list[Any]:
    """Per buffer: True, False, or a NumPy bool array when the buffer is mixed.

    For a 2-d (sharded) buffer the array has one entry per column and broadcasts over
    the rows, which all share one column layout.

    ``mask`` refers to the original tree (a tree of bools, a prefix of it, or a function
    of the tree; a function receives ``jax.ShapeDtypeStruct`` leaves).
    """
    structs = flat.leaf_structs()
    mask_tree = mask(structs) if callable(mask) else mask
    flags = jax.tree.leaves(
        jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), mask_tree, structs)
    )
    layout = flat.layout
    per_buffer: list[Any] = []
    for index in range(len(layout.buffer_sizes)):
        places = [(p, f) for p, f in zip(layout.places, flags, strict=True) if p.buffer == index]
        values = {f for _, f in places}
        if len(values) == 1:
            per_buffer.append(values.pop())
            continue
        # A 2-d buffer's rows share one column layout: a (columns,) mask broadcasts.
        shape = layout.buffer_shape(index)
        host = np.zeros(shape[-1], bool)
        for place, flag in places:
            width = int(np.prod(place.shape, dtype=np.int64)) // (shape[0] if len(shape) > 1 else 1)
            host[place.offset : place.offset + width] = flag
        per_buffer.append(host)
    return per_buffer


def tree_size_bytes(tree: Any) -> int:
    """Total bytes of the arrays in ``tree`` (for measuring state sizes)."""
    leaves = jax.tree.leaves(tree)
    return sum(int(np.prod(np.shape(x))) * jnp.dtype(x.dtype).itemsize for x in leaves)

