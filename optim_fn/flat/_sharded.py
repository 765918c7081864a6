"""Flat buffers on a mesh: sharded leaves packed so that every device keeps its own shards.

A leaf placed with ``NamedSharding(mesh, spec)`` holds one block on each device. Its
buffer is 2-d, ``(R, C)``, placed with ``NamedSharding(mesh, P(axes, None))``: ``axes``
are the mesh axes the leaf is split over, in the mesh's order, and ``R`` is the product
of their sizes. Row ``r`` lives on the devices whose coordinates along ``axes`` are
``r`` in row-major order, and holds exactly those devices' blocks of every member leaf,
each raveled, one after another. Globally that is the leaf reshaped so that every split
dimension ``n_i`` becomes ``(N_i, n_i / N_i)``, the ``N_i`` moved to the front in mesh-axis
order and the rest flattened; on each device it is just its block raveled, so packing
and unpacking never move data between devices. Leaves split over the same mesh axes
(``P("data", "model")``, a transposed ``P("model", "data")``, ``P(("data", "model"))``)
share a buffer; a leaf replicated over a mesh axis gives a buffer replicated over it.

Inside ``jax.jit`` both directions are a ``shard_map`` over the mesh (each device
reshapes and concatenates or splits its own blocks), so the compiled step has no
all-gather, all-to-all or collective-permute however the partitioner would have read a
global reshape, with Auto and Explicit mesh axes alike. The gradient of ``unravel`` is a
``shard_map`` of one concatenate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

# Per dimension of a leaf, the mesh axes splitting it (() where it is not split).
Spec = tuple[tuple[str, ...], ...]


def normalize_spec(spec: PartitionSpec, ndim: int) -> Spec:
    """``P("data", None)``, ``P("data")`` and ``P(("data",))`` all become ``(("data",), ())``."""
    entries = []
    for entry in tuple(spec) + (None,) * (ndim - len(spec)):
        if entry is None or entry is PartitionSpec.UNCONSTRAINED:
            entries.append(())
        elif isinstance(entry, str):
            entries.append((entry,))
        else:
            entries.append(tuple(entry))
    return tuple(entries)


def partition_spec(spec: Spec) -> PartitionSpec:
    return PartitionSpec(*(None if not axes else axes[0] if len(axes) == 1 else axes
                           for axes in spec))


def is_split(spec: Spec) -> bool:
    return any(spec)


def leaf_placement(leaf: Any, where: str) -> tuple[Mesh | None, Spec]:
    """The mesh a leaf is placed on (None: no mesh) and how it is split over it.

    Concrete arrays and ``ShapeDtypeStruct`` s report their ``NamedSharding``; tracers
    report one only for Explicit mesh axes (with Auto axes jit decides the placement).
    """
    ndim = len(np.shape(leaf))
    if isinstance(leaf, jax.core.Tracer):
        sharding = getattr(jax.typeof(leaf), "sharding", None)
        spec = normalize_spec(sharding.spec, ndim) if sharding is not None else ()
        if is_split(spec):
            return None, spec  # an abstract mesh: the caller decides what to do
        return None, ()
    sharding = getattr(leaf, "sharding", None)
    if isinstance(sharding, NamedSharding):
        spec = normalize_spec(sharding.spec, ndim)
        check_divisible(np.shape(leaf), spec, sharding.mesh, where)
        return sharding.mesh, spec if is_split(spec) else ()
    if sharding is not None and not sharding.is_fully_replicated:
        raise ValueError(
            f"flat.ravel: leaf {where} is split across devices by a "
            f"{type(sharding).__name__}; flat mode reads a sharded leaf's layout from a "
            "NamedSharding. Place it with `jax.device_put(x, NamedSharding(mesh, spec))`."
        )
    return None, ()


def check_divisible(shape: Sequence[int], spec: Spec, mesh: Mesh, where: str) -> None:
    # JAX refuses uneven NamedShardings today; a padded one would put padding in a row.
    for size, axes in zip(shape, spec, strict=False):
        parts = math.prod(mesh.shape[a] for a in axes)
        if axes and size % parts:
            raise ValueError(
                f"flat.ravel: leaf {where} has a dimension of size {size} split {parts} "
                f"ways over mesh axes {axes}; flat mode needs even shards. Pad the leaf "
                "or keep it replicated."
            )


def buffer_axes(spec: Spec, mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes a leaf is split over, in the mesh's own order (its buffer's key)."""
    used = {axis for axes in spec for axis in axes}
    return tuple(axis for axis in mesh.axis_names if axis in used)


def rows(mesh: Mesh | None, axes: tuple[str, ...]) -> int:
    return math.prod(mesh.shape[a] for a in axes) if axes else 1


def buffer_sharding(mesh: Mesh, axes: tuple[str, ...]) -> NamedSharding:
    """``P(axes, None)`` for a 2-d buffer; ``P(None)`` for a replicated 1-d one.

    Written in the form jit gives its outputs, so that a step's outputs match its
    inputs and jit compiles once: full rank on a mesh with Explicit axes, without
    trailing ``None`` s on an all-Auto one (``P("data")`` and ``P("data", None)``, or
    ``P()`` and ``P(None)``, are distinct cache keys).
    """
    explicit = AxisType.Explicit in tuple(mesh.axis_types)
    if not axes:
        return NamedSharding(mesh, PartitionSpec(None) if explicit else PartitionSpec())
    rows_entry = axes[0] if len(axes) == 1 else axes
    if explicit:
        return NamedSharding(mesh, PartitionSpec(rows_entry, None))
    return NamedSharding(mesh, PartitionSpec(rows_entry))


def block_shape(shape: tuple[int, ...], spec: Spec, mesh: Mesh) -> tuple[int, ...]:
    """One device's block of a leaf of ``shape`` split as ``spec``."""
    return tuple(
        size // math.prod(mesh.shape[a] for a in axes)
        for size, axes in zip(shape, spec, strict=True)
    )


def assemble(
    leaves: Sequence[Any], specs: Sequence[Spec], mesh: Mesh, axes: tuple[str, ...], dtype: str
) -> jax.Array:
    """A 2-d buffer built on the host from each device's own blocks (eager ravel).

    Chosen over a jitted concatenate with ``out_shardings``: it compiles nothing (a
    model with thousands of leaf shapes would otherwise compile a large program at
    ravel time), it reads only this process's shards (so it works unchanged under
    ``jax.distributed``), and the bits are copied, not computed. Leaves that are not
    committed jax arrays (NumPy, unplaced) are cut into the same blocks on the host.
    """
    n_rows = rows(mesh, axes)
    columns = sum(int(np.prod(np.shape(leaf), dtype=np.int64)) for leaf in leaves) // n_rows
    sharding = buffer_sharding(mesh, axes)
    devices = sorted(sharding.addressable_devices, key=lambda d: d.id)
    per_leaf = []
    for leaf, spec in zip(leaves, specs, strict=True):
        placed = isinstance(leaf, jax.Array) and isinstance(leaf.sharding, NamedSharding)
        if placed:
            blocks = {shard.device: shard.data for shard in leaf.addressable_shards}
        else:
            host = np.asarray(leaf)
            index_map = NamedSharding(mesh, partition_spec(spec)).addressable_devices_indices_map(
                host.shape
            )
            blocks = {device: host[index] for device, index in index_map.items()}
        per_leaf.append(blocks)
    # Devices holding the same row (replicas over the other axes) share one host copy.
    row_of = sharding.addressable_devices_indices_map((n_rows, columns))
    host_rows: dict[int, np.ndarray] = {}
    arrays = []
    for device in devices:
        row = row_of[device][0].start or 0
        if row not in host_rows:
            parts = [np.asarray(blocks[device], dtype=dtype).ravel() for blocks in per_leaf]
            host_rows[row] = np.concatenate(parts)[None, :]
        arrays.append(jax.device_put(host_rows[row], device))
    return jax.make_array_from_single_device_arrays((n_rows, columns), sharding, arrays)


def replicate(host: np.ndarray, mesh: Mesh) -> jax.Array:
    """A 1-d buffer replicated on ``mesh`` (each of this process's devices gets a copy)."""
    sharding = buffer_sharding(mesh, ())
    arrays = [jax.device_put(host, device) for device in sharding.addressable_devices]
    return jax.make_array_from_single_device_arrays(host.shape, sharding, arrays)


def ravel_traced(
    leaves: Sequence[Any], specs: Sequence[Spec], mesh: Mesh, axes: tuple[str, ...], dtype: str
) -> jax.Array:
    """Inside a trace: each device ravels and concatenates its own blocks."""

    def local(*blocks):
        return jnp.concatenate([b.reshape(1, -1).astype(dtype) for b in blocks], axis=1)

    return jax.shard_map(
        local,
        mesh=mesh,
        in_specs=tuple(partition_spec(s) for s in specs),
        out_specs=buffer_sharding(mesh, axes).spec,
    )(*leaves)


def unravel_buffer(
    buffer: Any,
    shapes: Sequence[tuple[int, ...]],
    specs: Sequence[Spec],
    mesh: Mesh,
    axes: tuple[str, ...],
) -> list[Any]:
    """The member leaves of a 2-d buffer, in column order, each with its own sharding.

    One ``split`` per device (its transpose, in the gradient, is one concatenate).
    """
    blocks = [block_shape(shape, spec, mesh) for shape, spec in zip(shapes, specs, strict=True)]
    cuts = np.cumsum([math.prod(b) for b in blocks])[:-1].tolist()

    def local(row):
        parts = jnp.split(row, cuts, axis=1) if cuts else [row]
        return tuple(p.reshape(b) for p, b in zip(parts, blocks, strict=True))

    return list(
        jax.shard_map(
            local,
            mesh=mesh,
            in_specs=buffer_sharding(mesh, axes).spec,
            out_specs=tuple(partition_spec(s) for s in specs),
        )(buffer)
    )


@functools.lru_cache(maxsize=64)
def jitted(function: Any, layout: Any) -> Any:
    """``function(buffers, layout)`` compiled once per layout, for eager calls."""
    return jax.jit(lambda buffers: function(buffers, layout))
