"""Owner-per-matrix placement for whole-leaf rules: each matrix's work on one device.

With FSDP each matrix is split over the devices, and a rule that reads a matrix whole
(an orthogonalization, Kronecker factors, a QR) makes XLA gather it or partition its
matmuls: every device repeats part of every matrix's work. Here instead the leaves of
one shape (a *group*: same shape, dtype, sharding and per-leaf keywords) are stacked
along a new leading axis, and that axis is split over the mesh: each device receives
its matrices whole (one all-to-all of the row shards), runs the rule on them with their
state, which lives there (so the preconditioners are split across devices by matrix,
not replicated), and sends the updates' row shards back (a second all-to-all). Groups
are padded to a multiple of the device count with copies of their own leaves (valid
numbers, never read back), so with ``B`` matrices of a shape each device runs
``ceil(B / N)`` of them.

The slots of such a rule are stored as :class:`OwnedSlots` (one stacked array per group
and slot value) instead of trees shaped like the params; the layout travels in the
pytree's static part, so ``update`` needs nothing but the state. Built by
:func:`optim_fn.sharding.owner_per_matrix`, which activates :func:`owners_on` around
``init``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("optim_fn_owners", default=None)


@contextlib.contextmanager
def owners_on(mesh: Mesh, axes: tuple[str, ...]) -> Iterator[None]:
    """Whole-leaf rules initialised inside this context store their slots by owner."""
    token = _ACTIVE.set((mesh, axes))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> tuple[Mesh, tuple[str, ...]] | None:
    """The ``(mesh, axes)`` of the enclosing :func:`owners_on`, or None."""
    return _ACTIVE.get()


@dataclasses.dataclass(frozen=True)
class OwnerLayout:
    """Which leaves share a stack, how their stack is split, how each leaf is split.

    ``groups[g]`` lists the leaf indices (tree order) of group ``g``; ``leaf_specs[g]``
    is the full-rank PartitionSpec of those leaves; ``mesh`` and ``axes`` say where the
    stack's leading axis is split.
    """

    mesh: Mesh
    axes: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]
    leaf_specs: tuple[PartitionSpec, ...]
    num_leaves: int

    @property
    def owners(self) -> int:
        return math.prod(self.mesh.shape[axis] for axis in self.axes)

    def padded(self, group: int) -> tuple[int, ...]:
        """The group's leaf indices repeated cyclically up to a multiple of ``owners``."""
        indices = self.groups[group]
        size = -(-len(indices) // self.owners) * self.owners
        return tuple(indices[i % len(indices)] for i in range(size))

    def owner_sharding(self, ndim: int) -> NamedSharding:
        """A stack split along its leading axis over ``axes``."""
        lead = self.axes[0] if len(self.axes) == 1 else self.axes
        return NamedSharding(self.mesh, PartitionSpec(lead, *[None] * (ndim - 1)))

    def leaf_sharding(self, group: int, ndim: int) -> NamedSharding:
        """A stack whose every entry is split as the group's leaves are."""
        spec = tuple(self.leaf_specs[group])
        rest = [None] * (ndim - 1 - len(spec))
        return NamedSharding(self.mesh, PartitionSpec(None, *spec, *rest))


@jax.tree_util.register_pytree_node_class
class OwnedSlots:
    """One slot of a whole-leaf rule, stored by owner: ``stacks[g]`` is group ``g``'s
    slot values stacked (and padded) along a leading axis split over the mesh."""

    def __init__(self, stacks: Sequence[Any], layout: OwnerLayout):
        self.stacks = tuple(stacks)
        self.layout = layout

    def tree_flatten(self) -> tuple[tuple, OwnerLayout]:
        return self.stacks, self.layout

    @classmethod
    def tree_unflatten(cls, layout: OwnerLayout, stacks: Sequence[Any]) -> OwnedSlots:
        return cls(stacks, layout)

    def __repr__(self) -> str:
        return f"OwnedSlots({len(self.stacks)} groups over {self.layout.owners} owners)"


def register_with_flax() -> None:
    """Lets ``flax.serialization`` (msgpack checkpoints) write and restore
    :class:`OwnedSlots`: the stacks by group index, the layout from the target state.
    Does nothing without flax; called by :func:`optim_fn.sharding.owner_per_matrix`."""
    try:
        from flax import serialization
    except ImportError:
        return

    def to_state_dict(owned: OwnedSlots) -> dict:
        return {str(i): serialization.to_state_dict(stack) for i, stack in enumerate(owned.stacks)}

    def from_state_dict(target: OwnedSlots, state: dict) -> OwnedSlots:
        if len(state) != len(target.stacks):
            raise ValueError(
                f"owner_per_matrix: the checkpoint holds {len(state)} groups of matrices and "
                f"the state to restore into {len(target.stacks)}; restore with the params' "
                "shapes and the optimizer the checkpoint was written with"
            )
        stacks = [
            serialization.from_state_dict(stack, state[str(i)])
            for i, stack in enumerate(target.stacks)
        ]
        return OwnedSlots(stacks, target.layout)

    serialization.register_serialization_state(
        OwnedSlots, to_state_dict, from_state_dict, override=True
    )


def _place(value: Any, sharding: NamedSharding) -> Any:
    if not isinstance(value, jax.core.Tracer):
        return jax.device_put(value, sharding)
    axis_types = dict(zip(sharding.mesh.axis_names, sharding.mesh.axis_types, strict=True))
    # Explicit axes carry the sharding in the type (changed with `reshard`); Auto axes
    # take a constraint for the partitioner.
    if any(axis_types[name] == AxisType.Explicit for name in sharding.mesh.axis_names):
        return jax.sharding.reshard(value, sharding)
    return jax.lax.with_sharding_constraint(value, sharding)


def _full_rank_spec(leaf: Any, mesh: Mesh, who: str, path: str) -> PartitionSpec:
    sharding = getattr(leaf, "sharding", None)
    committed = isinstance(leaf, jax.Array) and leaf.committed
    if not committed or not isinstance(sharding, NamedSharding):
        return PartitionSpec(*[None] * leaf.ndim)
    if sharding.mesh != mesh:
        raise ValueError(
            f"{who}: param {path} is placed on another mesh than the one given to "
            "owner_per_matrix; place the params on that mesh "
            "(`jax.device_put(params, NamedSharding(mesh, spec))`) or pass their mesh"
        )
    spec = tuple(sharding.spec)
    return PartitionSpec(*spec, *[None] * (leaf.ndim - len(spec)))


def plan(
    params: Any, keywords: list[dict], mesh: Mesh, axes: tuple[str, ...], who: str
) -> OwnerLayout:
    """Groups the leaves of ``params`` by shape, dtype, sharding and own keywords."""
    paths_and_leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    groups: dict[tuple, list[int]] = {}
    specs: dict[tuple, PartitionSpec] = {}
    for index, (path, leaf) in enumerate(paths_and_leaves):
        spec = _full_rank_spec(leaf, mesh, who, jax.tree_util.keystr(path))
        own = tuple(sorted(keywords[index].items()))
        key = (tuple(leaf.shape), jnp.dtype(leaf.dtype), tuple(spec), own)
        groups.setdefault(key, []).append(index)
        specs[key] = spec
    return OwnerLayout(
        mesh=mesh,
        axes=axes,
        groups=tuple(tuple(indices) for indices in groups.values()),
        leaf_specs=tuple(specs.values()),
        num_leaves=len(paths_and_leaves),
    )


def _stack(values: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *values)


def own_slots(per_leaf: list[tuple], layout: OwnerLayout, count: int) -> list[OwnedSlots]:
    """The initial slots (``per_leaf[i]``: leaf i's ``count`` slot values), by owner."""
    owned = []
    for slot in range(count):
        stacks = []
        for group in range(len(layout.groups)):
            stacked = _stack([per_leaf[i][slot] for i in layout.padded(group)])
            stacks.append(
                jax.tree.map(lambda x: _place(x, layout.owner_sharding(x.ndim)), stacked)
            )
        owned.append(OwnedSlots(stacks, layout))
    return owned


def apply_owned(
    call: Callable[[dict], Callable],
    grads: list,
    params: list | None,
    owned: Sequence[OwnedSlots],
    keywords: list[dict],
    cast: Callable[[Any, Any], Any],
    indexed: bool = False,
    who: str = "update",
) -> tuple[list, list[OwnedSlots]]:
    """Runs ``call(own_keywords)(grad, slot_values, param, leaf_index)`` vmapped over each group's
    stack on its owners; returns the updates per leaf and the new slots by owner."""
    layout = owned[0].layout if owned else None
    if layout is None or layout.num_leaves != len(grads):
        raise ValueError(
            f"{who}: the grads do not match the optimizer state's owner layout "
            "(owner_per_matrix): pass a tree "
            "with the same structure as the params given to init"
        )
    updates: list[Any] = [None] * len(grads)
    new_stacks: list[list] = [[] for _ in owned]
    # Each all-to-all waits on the previous one's result, so that every device runs them
    # in one order: independent collectives may otherwise start in different orders on
    # different devices, and a runtime that blocks a thread per waiting device (XLA:CPU)
    # can deadlock.
    previous: list[Any] = []

    def in_order(value: Any) -> Any:
        if previous:
            value, _ = jax.lax.optimization_barrier((value, previous[-1]))
        return value

    def reshard(value: jax.Array, *shardings: NamedSharding) -> jax.Array:
        value = in_order(value)
        for sharding in shardings:
            value = _place(value, sharding)
        previous.append(value)
        return value

    for group, indices in enumerate(layout.groups):
        order = layout.padded(group)

        def to_owners(leaves: list, group: int = group, order: tuple = order) -> jax.Array:
            # Stacked as the leaves are split (no communication), then re-split along
            # the stack: an all-to-all of the leaves' shards.
            stacked = jnp.stack([leaves[i] for i in order])
            stacked = _place(stacked, layout.leaf_sharding(group, stacked.ndim))
            return reshard(stacked, layout.owner_sharding(stacked.ndim))

        slot_values = tuple(slot.stacks[group] for slot in owned)
        param_stack = None if params is None else to_owners(params)
        index_stack = None
        if indexed:
            index_stack = _place(jnp.asarray(order, jnp.int32), layout.owner_sharding(1))
        update, *new_values = jax.vmap(call(keywords[indices[0]]))(
            to_owners(grads), slot_values, param_stack, index_stack
        )
        update = _place(update, layout.owner_sharding(update.ndim))
        update = reshard(update, layout.leaf_sharding(group, update.ndim))
        for position, index in enumerate(indices):
            updates[index] = update[position]
        for collected, old, new in zip(new_stacks, slot_values, new_values, strict=True):
            new = jax.tree.map(lambda x: _place(x, layout.owner_sharding(x.ndim)), new)
            collected.append(cast(new, old))
    return updates, [OwnedSlots(stacks, layout) for stacks in new_stacks]
