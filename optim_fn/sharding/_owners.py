"""``owner_per_matrix``: matrix optimizers under FSDP, each matrix's work on one device."""

from __future__ import annotations

from typing import Any

from jax.sharding import Mesh

from optim_fn.core._owners import owners_on, register_with_flax
from optim_fn.core.base import GradientTransformationExtraArgs, with_extra_args


def owner_per_matrix(
    inner: Any, mesh: Mesh, axes: str | tuple[str, ...] | None = None
) -> GradientTransformationExtraArgs:
    """Runs each matrix's whole-leaf rule on one device, with its state kept there.

    For the matrix optimizers (``muon``, ``normuon``, ``adamuon``, ``shampoo``, ``soap``,
    ``kron``, ``dion``, ``scion``) with FSDP-sharded params. Without this wrapper XLA
    gathers each matrix or partitions its matmuls, so every device repeats part of every
    matrix's work and each preconditioner is replicated on every device. With it, the
    matrices of one shape are stacked and the stack is split over ``axes``: per step, one
    all-to-all brings each device its ``ceil(B / N)`` matrices whole (``B`` matrices of
    that shape, ``N`` devices), the rule runs there with that matrix's state (split
    across devices by matrix, ``1/N`` per device when ``B`` is a multiple of ``N``), and
    a second all-to-all sends the updates back split as the params are. Elementwise
    blocks in ``inner`` (AdamW for the non-matrix leaves, weight decay, clipping) are
    untouched. The numbers equal ``inner``'s.

    It pays off when each shape has at least ``N`` matrices (the layers of a
    transformer); a group of fewer is padded with copies of its own matrices, which the
    idle devices compute and drop. The state of the wrapped rules is stored stacked by
    shape (:class:`optim_fn.core._owners.OwnedSlots`) rather than shaped like the
    params, so a checkpoint written with it restores with it, on the same mesh size
    (flax msgpack: registered here when flax is installed).

    Args:
      inner: an optim_fn optimizer or chain (optax blocks pass through unchanged).
      mesh: the mesh the params are placed on.
      axes: the mesh axes to spread the matrices over (default: all of them).
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"owner_per_matrix: `mesh` must be a jax.sharding.Mesh, got "
            f"{type(mesh).__name__}; build one with `jax.make_mesh((n,), ('data',))`"
        )
    if axes is None:
        names = tuple(mesh.axis_names)
    else:
        names = (axes,) if isinstance(axes, str) else tuple(axes)
    unknown = [name for name in names if name not in mesh.axis_names]
    if unknown or not names:
        raise ValueError(
            f"owner_per_matrix: `axes` {axes!r} must name axes of the mesh, whose axes are "
            f"{tuple(mesh.axis_names)}; pass some of them or None for all"
        )
    inner = with_extra_args(inner)
    register_with_flax()

    def init(params):
        with owners_on(mesh, names):
            return inner.init(params)

    return GradientTransformationExtraArgs(init, inner.update)
