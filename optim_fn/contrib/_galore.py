"""GaLore: an inner optimizer run on low-rank projections of matrix gradients.

Each selected leaf is viewed as a matrix ``G`` (``m x n``); every ``update_proj_gap``
steps its top-``rank`` singular vectors become the projector ``P``, the inner optimizer
(Adam by default) runs on ``P^T G`` (or ``G P``) and its output is projected back. Which
leaves are projected, the side of the projection and the state layout follow optax's
``optax.contrib.galore``. The projection needs each leaf's rows and columns, so GaLore
refuses flat mode at ``init``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    OptState,
    ScalarOrSchedule,
    Updates,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.flat._ravel import check_not_flat
from optim_fn.optimizers import classic
from optim_fn.transforms._combine import chain


class GaLoreDimensionNumbers(NamedTuple):
    """Which axes of a weight form the rows (``reduction_axis``) and columns of its matrix.

    Every axis must be in exactly one of the two; a leaf of shape ``(embed, heads,
    head_dim)`` with ``reduction_axis=0, output_axis=(1, 2)`` is projected as an
    ``embed x (heads * head_dim)`` matrix.
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


class GaLoreState(NamedTuple):
    """``count``; the inner optimizer's state (on the projected shapes); one projector
    per leaf (``(0, 0)``-shaped for leaves that are not projected); ``scale``."""

    count: Array
    base_optimizer_state: OptState
    projector: Updates
    hyperparams: Hyperparams


def _is_dims_leaf(x: Any) -> bool:
    return x is None or isinstance(x, GaLoreDimensionNumbers)


class _Matrix(NamedTuple):
    """How one leaf is seen as a matrix: the axis order, its ``(m, n)`` and the side."""

    order: tuple[int, ...]
    shape: tuple[int, int]
    rank: int

    @property
    def left(self) -> bool:
        # Project the longer side away: the inner state is rank x n or m x rank.
        return self.shape[0] >= self.shape[1]

    def to_matrix(self, x: Array) -> Array:
        return x.transpose(self.order).reshape(self.shape)

    def from_matrix(self, x: Array, like: Array) -> Array:
        transposed = tuple(like.shape[a] for a in self.order)
        inverse = sorted(range(like.ndim), key=lambda i: self.order[i])
        return x.reshape(transposed).transpose(inverse)


def _matrix(leaf: Array, dims: GaLoreDimensionNumbers, rank: int) -> _Matrix:
    def normalize(axes):
        axes = (axes,) if isinstance(axes, int) else tuple(axes)
        return tuple(a % leaf.ndim for a in axes) if leaf.ndim else axes

    if leaf.ndim < 2:
        raise ValueError(
            f"galore: a leaf of shape {leaf.shape} has GaLoreDimensionNumbers, but only "
            "arrays of rank >= 2 can be projected; give it None"
        )
    reduction, output = normalize(dims.reduction_axis), normalize(dims.output_axis)
    if set(reduction) & set(output):
        raise ValueError(
            f"galore: the reduction axes {reduction} and output axes {output} of a leaf of "
            f"shape {leaf.shape} overlap; they must be disjoint ({dims})"
        )
    if len(set(reduction) | set(output)) != leaf.ndim:
        raise ValueError(
            f"galore: the reduction axes {reduction} and output axes {output} must cover "
            f"every axis of a leaf of shape {leaf.shape} ({dims})"
        )
    m = math.prod(leaf.shape[a] for a in reduction)
    n = math.prod(leaf.shape[a] for a in output)
    return _Matrix(reduction + output, (m, n), min(rank, m, n))


def _dims_per_leaf(tree: Any, spec: Any) -> list:
    """The dimension numbers (or None: not projected) of each leaf of ``tree``."""
    leaves = jax.tree.leaves(tree)
    if spec is None:
        return [GaLoreDimensionNumbers() if jnp.ndim(x) == 2 else None for x in leaves]
    if isinstance(spec, GaLoreDimensionNumbers):
        return [spec if jnp.ndim(x) >= 2 else None for x in leaves]
    resolved = spec(tree) if callable(spec) else spec
    dims = jax.tree.leaves(resolved, is_leaf=_is_dims_leaf)
    if len(dims) != len(leaves) or not all(_is_dims_leaf(d) for d in dims):
        raise ValueError(
            "galore: `weight_dimension_numbers` must be a tree with one "
            "GaLoreDimensionNumbers (or None, not projected) per param leaf"
        )
    return dims


def _top_singular_vectors(grad: Array, matrix: _Matrix, dtype: Any) -> Array:
    """The projector: the leading ``rank`` left (or right) singular vectors, ``m x r``
    (or ``n x r``), of the gradient matrix.

    The SVD runs in float32 at least (float64/complex128 for such leaves; optax always
    uses float32) and the projector is stored in the leaf's dtype.
    """
    g = matrix.to_matrix(grad)
    g = g.astype(jnp.promote_types(g.dtype, jnp.float32))
    u, _, vh = jnp.linalg.svd(g, full_matrices=False)
    if matrix.left:
        return u[:, : matrix.rank].astype(dtype)
    # Right singular vectors are the rows of V^H: conj-transposed, columns of V.
    return vh[: matrix.rank, :].conj().T.astype(dtype)


def _project(grad: Array, projector: Array, matrix: _Matrix) -> Array:
    g = matrix.to_matrix(grad)
    return projector.conj().T @ g if matrix.left else g @ projector


def _project_back(low_rank: Array, projector: Array, matrix: _Matrix, like: Array) -> Array:
    full = projector @ low_rank if matrix.left else low_rank @ projector.conj().T
    return matrix.from_matrix(full, like)


def _matrices(tree: Any, weight_dimension_numbers: Any, rank: int) -> list:
    """How each leaf of ``tree`` is seen as a matrix (None: not projected)."""
    dims = _dims_per_leaf(tree, weight_dimension_numbers)
    return [
        None if d is None else _matrix(x, d, rank)
        for x, d in zip(jax.tree.leaves(tree), dims, strict=True)
    ]


def _galore_rule(
    updates, base_optimizer_state, projector_tree, *, previous_count, scale, rank, update_proj_gap,
    base_optimizer, weight_dimension_numbers,
):
    """Project (refreshing ``P`` every ``update_proj_gap`` steps), run the inner
    optimizer on the projections, project back and scale."""
    refresh = previous_count % update_proj_gap == 0
    leaves, treedef = jax.tree.flatten(updates)
    projector_leaves = treedef.flatten_up_to(projector_tree)
    per_leaf = _matrices(updates, weight_dimension_numbers, rank)

    projectors, low_rank = [], []
    for grad, projector, matrix in zip(leaves, projector_leaves, per_leaf, strict=True):
        if matrix is None:
            projectors.append(projector)
            low_rank.append(grad)
            continue
        projector = jax.lax.cond(
            refresh,
            lambda g=grad, m=matrix, d=projector.dtype: _top_singular_vectors(g, m, d),
            lambda p=projector: p,
        )
        projectors.append(projector)
        low_rank.append(_project(grad, projector, matrix))

    inner, base_state = base_optimizer.update(
        treedef.unflatten(low_rank), base_optimizer_state, None
    )
    full = []
    for u, grad, projector, matrix in zip(
        treedef.flatten_up_to(inner), leaves, projectors, per_leaf, strict=True
    ):
        if matrix is None:
            full.append(u)
            continue
        back = _project_back(u, projector, matrix, grad)
        full.append((scale * back).astype(grad.dtype))
    return treedef.unflatten(full), base_state, treedef.unflatten(projectors)


@checks_once
def scale_by_galore(
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: ScalarOrSchedule = 1.0,
    base_optimizer: GradientTransformationExtraArgs | None = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformationExtraArgs:
    """GaLore's scaling (Zhao et al. 2024): the inner optimizer on low-rank gradients.

    For a projected leaf seen as an ``m x n`` matrix :math:`G_t`, with
    :math:`r = \\min(\\text{rank}, m, n)`:

    .. math::
        P_t = \\begin{cases} U_{:, :r} \\text{ of } \\mathrm{svd}(G_t) = U S V^H &
        t - 1 \\equiv 0 \\pmod{\\text{update\\_proj\\_gap}} \\\\
        P_{t-1} & \\text{otherwise} \\end{cases},\\quad
        R_t = P_t^H G_t,\\quad u_t = \\text{scale} \\cdot P_t\\, \\rho(R_t)

    for :math:`m \\ge n` (left projection); for :math:`m < n`, :math:`P_t = V_{:, :r}`,
    :math:`R_t = G_t P_t` and :math:`u_t = \\text{scale}\\cdot\\rho(R_t) P_t^H`.
    :math:`\\rho` is ``base_optimizer`` (default :func:`optim_fn.scale_by_adam`), whose
    state lives on the ``r x n`` (``m x r``) projections and is kept across projector
    refreshes, as in the paper and optax. Leaves that are not projected get
    :math:`\\rho(G_t)` unscaled (as in optax).

    ``weight_dimension_numbers``: None (every 2-d leaf, as a matrix), one
    :class:`GaLoreDimensionNumbers` (every leaf of rank >= 2), or a tree of them with
    None for leaves not projected (or a function of the params returning it). The
    ``base_optimizer`` must not need the params (it sees projected shapes): use
    ``galore(weight_decay=...)`` for weight decay. Defaults: ``rank=128``,
    ``update_proj_gap=200``, ``scale=1``. The side is optax's (the paper's reference
    code projects the other side of tall matrices); the SVD of float64 leaves is taken
    in float64 (optax: float32). Complex leaves use :math:`P^H`. Not in flat mode.
    """
    where = "scale_by_galore"
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"{where}: `rank` must be an integer >= 1, got {rank!r}")
    if (
        isinstance(update_proj_gap, bool)
        or not isinstance(update_proj_gap, int)
        or update_proj_gap < 1
    ):
        raise ValueError(
            f"{where}: `update_proj_gap` must be an integer >= 1 (steps between SVDs), got "
            f"{update_proj_gap!r}"
        )
    check.check_scalar(where, "scale", scale)
    if base_optimizer is None:
        base_optimizer = classic.scale_by_adam()
    elif not (hasattr(base_optimizer, "init") and hasattr(base_optimizer, "update")):
        raise ValueError(
            f"{where}: `base_optimizer` must be a gradient transformation (init, update), "
            f"got {base_optimizer!r}"
        )
    if not (
        callable(weight_dimension_numbers)
        or all(
            _is_dims_leaf(d)
            for d in jax.tree.leaves(weight_dimension_numbers, is_leaf=_is_dims_leaf)
        )
    ):
        raise ValueError(
            f"{where}: `weight_dimension_numbers` must be None, a GaLoreDimensionNumbers, "
            "a tree of them or a function of the params returning one"
        )

    def init_state(params):
        check_not_flat(params, where, "it projects each leaf as a matrix")
        leaves, treedef = jax.tree.flatten(params)
        projectors, proxies = [], []
        for leaf, matrix in zip(
            leaves, _matrices(params, weight_dimension_numbers, rank), strict=True
        ):
            dtype = jnp.asarray(leaf).dtype
            if matrix is None:
                projectors.append(jnp.zeros((0, 0), dtype))
                proxies.append(jnp.zeros(jnp.shape(leaf), dtype))
                continue
            m, n = matrix.shape
            r = matrix.rank
            projectors.append(jnp.zeros((m, r) if matrix.left else (n, r), dtype))
            proxies.append(jnp.zeros((r, n) if matrix.left else (m, r), dtype))
        return base_optimizer.init(treedef.unflatten(proxies)), treedef.unflatten(projectors)

    return rule_transform(
        _galore_rule,
        GaLoreState,
        slots=("base_optimizer_state", "projector"),
        init_state=init_state,
        hyperparams={"scale": scale},
        static={
            "rank": rank,
            "update_proj_gap": update_proj_gap,
            "base_optimizer": base_optimizer,
            "weight_dimension_numbers": weight_dimension_numbers,
        },
        previous_count=True,
        name=where,
    )


@checks_once
def galore(
    learning_rate: ScalarOrSchedule,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: ScalarOrSchedule = 1.0,
    base_optimizer: GradientTransformationExtraArgs | None = None,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformationExtraArgs:
    """GaLore: memory-efficient full-parameter training by gradient low-rank projection.

    .. math:: p_t = p_{t-1} - \\eta_t \\left(u_t + \\lambda p_{t-1}\\right)

    with :math:`u_t` from :func:`scale_by_galore` (Adam on the rank-``rank`` projections
    of the matrix gradients, refreshed by an SVD every ``update_proj_gap`` steps) and
    :math:`\\lambda` = ``weight_decay`` applied in the full space (``mask`` limits it).
    Defaults: ``rank=128``, ``update_proj_gap=200``, ``scale=1``, ``weight_decay=0``.
    Reference: Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
    Projection", ICML 2024 (arXiv:2403.03507). PyTorch: none in ``torch.optim`` (the
    ``galore-torch`` package). Not in flat mode.
    """
    check.check_learning_rate("galore", learning_rate)
    check.check_non_negative("galore", "weight_decay", weight_decay)
    return chain(
        scale_by_galore(rank, update_proj_gap, scale, base_optimizer, weight_dimension_numbers),
        classic.add_decayed_weights(weight_decay, mask),
        classic.scale_by_learning_rate(learning_rate),
    )
