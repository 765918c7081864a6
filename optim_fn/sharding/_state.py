"""Sharded optimizer state: shardings, ZeRO-1, bytes (see :mod:`optim_fn.sharding`)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from optim_fn.core.base import GradientTransformationExtraArgs, OptState, with_extra_args


def state_shardings(state: OptState) -> Any:
    """The sharding of every array leaf of ``state`` (the same tree, shardings as leaves)."""
    return jax.tree.map(lambda leaf: getattr(leaf, "sharding", None), state)


def replicate_uncommitted(state: OptState, mesh: Mesh) -> OptState:
    """``state`` with its unplaced leaves (step counter, hyperparameters) replicated on ``mesh``.

    ``init`` places slots like their params but leaves scalars unplaced; a jitted step
    returns them replicated on the mesh, so the second step's inputs differ in sharding
    from the first's and jit compiles once more. Placing them up front avoids that
    second compilation (seconds to minutes for a large model)::

        state = optim_fn.sharding.replicate_uncommitted(optimizer.init(params), mesh)
    """
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(leaf):
        if isinstance(leaf, jax.Array) and not getattr(leaf, "committed", True):
            return jax.device_put(leaf, replicated)
        return leaf

    return jax.tree.map(place, state)


def per_device_bytes(tree: Any) -> dict[Any, int]:
    """Bytes of ``tree``'s arrays held on each device: ``{device: bytes}``.

    Counts what is actually resident (the addressable shards), so a replicated array
    counts in full on every device and a split one by its shard.
    """
    totals: dict[Any, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in getattr(leaf, "addressable_shards", ()):
            totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
    return totals


def partition_spec_for(shape: tuple[int, ...], axis_size: int, axis: str) -> PartitionSpec:
    """How :func:`partition_state` splits an array of ``shape`` over ``axis_size`` devices.

    The largest dimension divisible by ``axis_size`` is split (the first such on ties);
    arrays with none (scalars, odd sizes) stay replicated, since padding would change the
    state's shapes and break checkpoints taken without the wrapper.
    """
    best = None
    for dim, size in enumerate(shape):
        if size % axis_size == 0 and size > 0 and (best is None or size > shape[best]):
            best = dim
    if best is None:
        return PartitionSpec()
    spec: list[Any] = [None] * len(shape)
    spec[best] = axis
    return PartitionSpec(*spec)


def partition_state(
    inner: Any, mesh: Mesh, axis: str = "data"
) -> GradientTransformationExtraArgs:
    """Wraps ``inner`` so that its state is split across the mesh axis ``axis`` (ZeRO-1).

    Args:
      inner: any optim_fn or optax gradient transformation.
      mesh: the device mesh the training step runs on.
      axis: the (data-parallel) mesh axis to split the optimizer state over.

    The params and gradients are replicated (the ZeRO-1 setting); the updates come back
    replicated. Results are those of
    ``inner`` on one device: each device applies the same elementwise rule to its slice.
    Whole-tree reductions inside ``inner`` (global-norm clipping) become an all-reduce
    of one scalar. Use it inside ``jax.jit``; eagerly it works but places every step.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"partition_state: `mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}; "
            "build one with `jax.make_mesh((n,), ('data',))`"
        )
    if axis not in mesh.axis_names:
        raise ValueError(
            f"partition_state: `axis` {axis!r} is not an axis of the mesh, whose axes are "
            f"{mesh.axis_names}; pass one of them"
        )
    inner = with_extra_args(inner)
    axis_size = mesh.shape[axis]
    explicit = dict(zip(mesh.axis_names, mesh.axis_types, strict=True))[axis] == AxisType.Explicit

    def split(leaf):
        return NamedSharding(mesh, partition_spec_for(np.shape(leaf), axis_size, axis))

    def replicated(leaf):
        return NamedSharding(mesh, PartitionSpec())

    def constrain(tree, sharding_of):
        def one(leaf):
            if not hasattr(leaf, "shape"):
                return leaf
            sharding = sharding_of(leaf)
            if not isinstance(leaf, jax.core.Tracer):
                return jax.device_put(leaf, sharding)
            # Explicit mesh axes carry the sharding in the type, so it is changed with
            # `reshard`; Auto axes take a constraint for the partitioner.
            if explicit:
                return jax.sharding.reshard(leaf, sharding)
            return jax.lax.with_sharding_constraint(leaf, sharding)

        return jax.tree.map(one, tree)

    def init(params):
        return constrain(inner.init(params), split)

    def update(updates, state, params=None, **extra_args):
        # Slicing a replicated array to its local part needs no communication.
        local_updates = constrain(updates, split)
        local_params = None if params is None else constrain(params, split)
        new_updates, new_state = inner.update(local_updates, state, local_params, **extra_args)
        return constrain(new_updates, replicated), constrain(new_state, split)

    return GradientTransformationExtraArgs(init, update)
