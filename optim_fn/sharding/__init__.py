"""Optimizers on meshes: state placed like the params, and ZeRO-1 state partitioning.

**Sharded params (FSDP, data x model).** Nothing to do: ``init`` builds every
per-parameter slot with the sharding of its (committed) param, so with params placed by
a :class:`jax.sharding.NamedSharding` the state is placed the same way, and a jitted
update of elementwise rules compiles to no collective at all (global-norm clipping adds
one scalar all-reduce). :func:`state_shardings` reads the placement back, e.g. for a
jit's ``out_shardings`` or a checkpoint's restore arguments; :func:`replicate_uncommitted`
places the scalars (step counter, hyperparameters) on the mesh too, which saves the jitted
step one recompilation at its second call.

**Replicated params (data parallel): partition the state (ZeRO stage 1).**
:func:`partition_state` wraps an optimizer so that each per-parameter state array is
split across one mesh axis: with ``N`` devices on that axis every device holds ``1/N`` of
the state. Inside a jitted step the (replicated) gradient is sliced locally to each
device's part, the rule runs on that part, and the update is gathered back to
replicated once (one all-gather per state-sized leaf, the only communication added)::

    mesh = jax.make_mesh((8,), ("data",))
    optimizer = optim_fn.sharding.partition_state(optim_fn.adam(1e-3), mesh, "data")
    state = optimizer.init(params)           # params replicated over "data"

Reference: Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
Parameter Models", SC 2020 (stage 1 = optimizer-state partitioning).
"""

from optim_fn import _legacy
from optim_fn.sharding._owners import owner_per_matrix
from optim_fn.sharding._state import (
    partition_spec_for,
    partition_state,
    per_device_bytes,
    replicate_uncommitted,
    state_shardings,
)

__all__ = [
    "owner_per_matrix",
    "partition_spec_for",
    "partition_state",
    "per_device_bytes",
    "replicate_uncommitted",
    "state_shardings",
]

__getattr__ = _legacy.fallback(__name__)  # names this module held before the layout
