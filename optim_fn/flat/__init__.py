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

**On a mesh.** Leaves placed with a ``NamedSharding`` stay where they are: leaves split
over the same mesh axes share a 2-d buffer ``(R, C)`` placed with ``P(axes, None)``,
whose row on each device is that device's own blocks raveled (see
:mod:`optim_fn.flat._sharded`), so ``ravel``, the update and ``unravel`` move no data
between devices and the optimizer state is split exactly like the params. Replicated
leaves share a 1-d buffer replicated on the mesh. One buffer per (group, dtype, mesh
axes); leaves on different meshes are an error.
"""

from optim_fn import _legacy
from optim_fn.flat._ravel import (
    FlatTree,
    Layout,
    LeafPlace,
    buffer_masks,
    check_not_flat,
    is_flat,
    layout_of,
    ravel,
    tree_size_bytes,
)

__all__ = [
    "FlatTree",
    "Layout",
    "LeafPlace",
    "buffer_masks",
    "check_not_flat",
    "is_flat",
    "layout_of",
    "ravel",
    "tree_size_bytes",
]

__getattr__ = _legacy.fallback(__name__)  # names this module held before the layout
