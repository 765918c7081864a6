"""Distributed Shampoo's step on one leaf (the rule :func:`~optim_fn.contrib.scale_by_shampoo`
lifts over the tree).

A leaf is reshaped to :func:`~optim_fn.rules.shampoo.merged_dims` and cut into blocks of at
most ``max_preconditioner_dim`` per axis; each block has one Kronecker factor per
preconditioned axis and its own preconditioner. The blocks of one shape are stacked
(:func:`~optim_fn.rules.shampoo.block_groups`: at most ``2^ndim`` groups, the full blocks
and those cut short at the ends) and computed by one vmapped call, so the traced program
does not grow with the number of blocks. What is elementwise (gradient filter, grafting
accumulator, corrected eigenvalues, weight decay, momentum) runs on the whole leaf. The
order of operations is Distributed Shampoo's ``_compute_search_directions``
(facebookresearch/optimizers, ``distributed_shampoo/distributed_shampoo.py`` at commit
f606606).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.rules.shampoo import (
    BlockGroup,
    block_groups,
    eigenbasis,
    gather_blocks,
    inverse_root_by_coupled_newton,
    inverse_root_by_eigh,
    keep_if_not_finite,
    kronecker_factor,
    merged_dims,
    project,
    project_back,
    scatter_blocks,
)

Array = jax.Array

GRAFTINGS = (None, "sgd", "adagrad", "rmsprop", "adam")
PRECONDITIONERS = ("root_inverse", "eigenvalue_corrected")
ROOT_INVERSES = ("eigh", "coupled_newton")
WEIGHT_DECAY_TYPES = ("decoupled", "l2")
# Distributed Shampoo's guard against a zero Shampoo direction in the grafting ratio.
_GRAFT_GUARD = 1e-16


class Layout(NamedTuple):
    """How one leaf is preconditioned: its merged shape and its groups of blocks."""

    merged: tuple[int, ...]
    groups: tuple[BlockGroup, ...]


def layout(shape: tuple[int, ...], max_dim: float, merge: bool) -> Layout:
    merged = merged_dims(tuple(shape), max_dim, merge)
    if 0 in merged:
        return Layout(merged, ())
    return Layout(merged, block_groups(merged, max_dim))


def _empty(dtype) -> Array:
    return jnp.zeros((0,), dtype)


def axis_exponents(
    order: int, preconditioner: str, inverse_exponent_override: tuple, ignored_dims: tuple
) -> tuple[float, ...]:
    """Per axis of a block of ``order`` axes: the exponent of its factor's inverse root,
    0 where the axis is not preconditioned (the reference's ``inverse_exponent_override``;
    for the eigenvalue-corrected variant, 1 for an axis with an eigenbasis and 0 for one
    in ``ignored_basis_change_dims``)."""
    if preconditioner == "eigenvalue_corrected":
        ignored = dict(ignored_dims).get(order, ())
        return tuple(0.0 if axis in ignored else 1.0 for axis in range(order))
    override = dict(inverse_exponent_override).get(order, ())
    if isinstance(override, float):
        return (override,) * order
    default = 1 / (2 * max(order, 1))
    return tuple(dict(override).get(axis, default) for axis in range(order))


def eigenvalue_exponent(order: int, inverse_exponent_override: tuple) -> float:
    """The eigenvalue-corrected variant's exponent of its second moment (default 1/2)."""
    return dict(inverse_exponent_override).get(order, 0.5)


def _preconditioned_axes(order: int, options: dict) -> tuple[int, ...]:
    exponents = axis_exponents(
        order,
        options["preconditioner"],
        options["inverse_exponent_override"],
        options["ignored_basis_change_dims"],
    )
    return tuple(axis for axis, exponent in enumerate(exponents) if exponent != 0)


def init_slots(param: Array, options: dict) -> tuple:
    """``(factors, preconditioners, corrected_eigenvalues, grafting_state, filtered_grad,
    momentum_buffer)`` of one leaf. ``factors`` and ``preconditioners``: per group of
    blocks of one shape, per preconditioned axis, the stacked ``(blocks, d, d)``
    matrices. An unused slot is an empty array."""
    dtype = jnp.promote_types(param.dtype, jnp.float32)
    where = layout(param.shape, options["max_preconditioner_dim"], options["merge_small_dims"])
    axes = _preconditioned_axes(len(where.merged), options)
    factors = tuple(
        tuple(jnp.zeros((group.size, group.shape[a], group.shape[a]), dtype) for a in axes)
        for group in where.groups
    )
    preconditioners = tuple(
        tuple(jnp.tile(jnp.eye(group.shape[a], dtype=dtype), (group.size, 1, 1)) for a in axes)
        for group in where.groups
    )
    zeros = jnp.zeros_like(param, dtype=dtype)  # placed like its param (FSDP)
    return (
        factors,
        preconditioners,
        zeros if options["preconditioner"] == "eigenvalue_corrected" else _empty(dtype),
        zeros if options["grafting"] not in (None, "sgd") else _empty(dtype),
        zeros if options["filter_grad"] else _empty(dtype),
        zeros if options["use_momentum"] else _empty(dtype),
    )


def _assemble(stacks: list, where: Layout, dtype) -> Array:
    out = jnp.zeros(where.merged, dtype)
    for group, blocks in zip(where.groups, stacks, strict=True):
        out = scatter_blocks(out, group, blocks)
    return out


def _grafting_direction(g_bar, accumulator, kind, grafting_eps, bias_correction):
    """The grafted method's direction (SGD: the filtered gradient itself)."""
    if kind == "sgd":
        return g_bar
    if kind == "adam":
        accumulator = accumulator / bias_correction
    return g_bar / (jnp.sqrt(accumulator) + grafting_eps)


def shampoo_rule(
    grad: Array,
    factors: tuple,
    preconditioners: tuple,
    corrected_eigenvalues: Array,
    grafting_state: Array,
    filtered_grad: Array,
    momentum_buffer: Array,
    *,
    param: Array | None = None,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    b3: Array,
    one_minus_b3: Array,
    eps: Array,
    weight_decay: Array,
    momentum: Array,
    dampening: Array,
    grafting_b2: Array,
    one_minus_grafting_b2: Array,
    grafting_eps: Array,
    max_preconditioner_dim: float,
    merge_small_dims: bool,
    precondition_frequency: int,
    start_preconditioning_step: int,
    use_bias_correction: bool,
    grafting: str | None,
    preconditioner: str,
    root_inverse: str,
    newton_max_iterations: int,
    newton_tolerance: float,
    inverse_exponent_override: tuple,
    ignored_basis_change_dims: tuple,
    weight_decay_type: str,
    nesterov: bool,
    filter_grad: bool,
    use_momentum: bool,
) -> tuple:
    slots = (
        factors,
        preconditioners,
        corrected_eigenvalues,
        grafting_state,
        filtered_grad,
        momentum_buffer,
    )
    if grad.size == 0:
        return (jnp.zeros_like(grad), *slots)
    dtype = jnp.promote_types(grad.dtype, jnp.float32)
    where = layout(grad.shape, max_preconditioner_dim, merge_small_dims)
    g = grad.astype(dtype).reshape(where.merged)
    p = None if param is None else param.astype(dtype).reshape(where.merged)
    if weight_decay_type == "l2" and p is not None:
        g = g + weight_decay * p
    t = count.astype(dtype)
    order = len(where.merged)  # every block of the leaf has this many axes
    exponents = axis_exponents(
        order, preconditioner, inverse_exponent_override, ignored_basis_change_dims
    )
    selected = tuple(exponent != 0 for exponent in exponents)
    axes = [axis for axis in range(order) if selected[axis]]

    def by_axis(matrices):
        """A block's matrices (one per preconditioned axis) laid out per axis."""
        laid_out = [None] * order
        for axis, matrix in zip(axes, matrices, strict=True):
            laid_out[axis] = matrix
        return tuple(laid_out)

    def per_block(function, *stacked):
        return jax.vmap(function)(*stacked)

    stacks = [gather_blocks(g, group) for group in where.groups]

    # The factors: L_k <- b2 L_k + w G_(k) G_(k)^T, with w = 1 for b2 = 1 (AdaGrad's sum).
    weight = jnp.where(b2 == 1, jnp.ones_like(one_minus_b2), one_minus_b2)
    factors = tuple(
        tuple(
            b2 * f + weight * per_block(lambda block, a=axis: kronecker_factor(block, a), blocks)
            for axis, f in zip(axes, fs, strict=True)
        )
        for blocks, fs in zip(stacks, factors, strict=True)
    )
    if use_bias_correction:
        bias_correction2 = jnp.where(b2 < 1, 1 - b2**t, jnp.ones_like(t))
    else:
        bias_correction2 = jnp.ones_like(t)

    # The amortized computation, on the bias-corrected factors, every
    # `precondition_frequency` steps after `start_preconditioning_step` and at it.
    def compute(corrected, exponent):
        if preconditioner == "eigenvalue_corrected":
            return eigenbasis(corrected, eps)
        root = 1 / exponent
        if root_inverse == "coupled_newton":
            return inverse_root_by_coupled_newton(
                corrected, round(root), eps, newton_max_iterations, newton_tolerance
            )
        return inverse_root_by_eigh(corrected, root, eps)

    def refresh(old):
        # The stacks of one size and exponent are joined and computed by one vmapped
        # call: one eigendecomposition or Newton loop per kind, however many blocks.
        kinds: dict[tuple, list[tuple[int, int]]] = {}
        for i, fs in enumerate(factors):
            for k, stack in enumerate(fs):
                kinds.setdefault((stack.shape[-1], exponents[axes[k]]), []).append((i, k))
        new = [list(olds) for olds in old]
        for (_, exponent), places in kinds.items():
            joined = jnp.concatenate([factors[i][k] for i, k in places]) / bias_correction2
            computed = per_block(lambda a, e=exponent: compute(a, e), joined)
            start = 0
            for i, k in places:
                size = factors[i][k].shape[0]
                part = computed[start : start + size]
                start += size
                new[i][k] = per_block(keep_if_not_finite, part, old[i][k])
        return tuple(tuple(values) for values in new)

    step = count
    perform = ((step % precondition_frequency == 0) & (step > start_preconditioning_step)) | (
        step == start_preconditioning_step
    )
    if axes:
        preconditioners = jax.lax.cond(perform, refresh, lambda old: old, preconditioners)

    if preconditioner == "eigenvalue_corrected":
        # Adam's second moment of the gradient in the (possibly new) eigenbasis.
        rotated = [
            per_block(lambda block, *qs: project(block, by_axis(qs), selected), blocks, *qs)
            for blocks, qs in zip(stacks, preconditioners, strict=True)
        ]
        squares = _assemble([r * r for r in rotated], where, dtype)
        corrected_eigenvalues = (
            b2 * corrected_eigenvalues.reshape(where.merged) + weight * squares
        ).reshape(grad.shape)

    if grafting in ("adagrad", "rmsprop", "adam"):
        graft_b2 = 1 if grafting == "adagrad" else grafting_b2
        graft_weight = 1 if grafting == "adagrad" else one_minus_grafting_b2
        accumulator = graft_b2 * grafting_state.reshape(where.merged) + graft_weight * (g * g)
        grafting_state = accumulator.reshape(grad.shape)
    else:
        accumulator = None

    # The filtered gradient: G_bar = lerp(F, G, 1 - b3) / (1 - b3 b1^(t-1)),
    # F <- lerp(F, G, 1 - b1).
    if filter_grad:
        previous = filtered_grad.reshape(where.merged)
        g_bar = b3 * previous + one_minus_b3 * g
        filtered_grad = (b1 * previous + one_minus_b1 * g).reshape(grad.shape)
        if use_bias_correction:
            g_bar = g_bar / (1 - b3 * b1 ** (t - 1))
    else:
        g_bar = g

    # Shampoo's direction per block.
    bars = [gather_blocks(g_bar, group) for group in where.groups]
    if preconditioner == "eigenvalue_corrected":
        power = eigenvalue_exponent(order, inverse_exponent_override)
        merged_second = corrected_eigenvalues.reshape(where.merged)

        def corrected_direction(bar, second, *qs):
            second = second / bias_correction2
            scale = jnp.sqrt(second) if power == 0.5 else second ** (1 / (1 / power))
            rotated_bar = project(bar, by_axis(qs), selected)
            return project_back(rotated_bar / (scale + eps), by_axis(qs), selected)

        directions = [
            per_block(corrected_direction, bar, gather_blocks(merged_second, group), *qs)
            for bar, group, qs in zip(bars, where.groups, preconditioners, strict=True)
        ]
    else:
        directions = [
            per_block(lambda bar, *roots: project(bar, by_axis(roots), selected), bar, *roots)
            for bar, roots in zip(bars, preconditioners, strict=True)
        ]

    if grafting is not None:
        # Adam's grafting always corrects its bias; AdaGrad's and RMSprop's never.
        graft_correction = (
            jnp.where(grafting_b2 < 1, 1 - grafting_b2**t, jnp.ones_like(t))
            if grafting == "adam"
            else None
        )
        grafted = _grafting_direction(g_bar, accumulator, grafting, grafting_eps, graft_correction)

        def graft(direction, grafted_block):
            ratio = jnp.linalg.norm(grafted_block) / (jnp.linalg.norm(direction) + _GRAFT_GUARD)
            return direction * ratio

        directions = [
            per_block(graft, d, gather_blocks(grafted, group))
            for d, group in zip(directions, where.groups, strict=True)
        ]
        direction = _assemble(directions, where, dtype)
        direction = jnp.where(step < start_preconditioning_step, grafted, direction)
    else:
        direction = _assemble(directions, where, dtype)

    if weight_decay_type == "decoupled" and p is not None:
        direction = direction + weight_decay * p
    direction = direction.reshape(grad.shape)
    if use_momentum:
        momentum_buffer = momentum * momentum_buffer + (1 - dampening) * direction
        if nesterov:
            direction = (1 - dampening) * direction + momentum * momentum_buffer
        else:
            direction = momentum_buffer
    return (
        direction,
        factors,
        preconditioners,
        corrected_eigenvalues,
        grafting_state,
        filtered_grad,
        momentum_buffer,
    )
