"""Gradient clipping: by value, by global norm, by block RMS, adaptive (AGC), per example.

The thresholds are hyperparameters stored in the state (numbers or schedules), so
``optim_fn.get_hyperparams(state)["max_norm"]`` reads them and
``optim_fn.set_hyperparams(state, max_norm=0.5)`` changes them without recompiling.
:func:`clip_by_global_norm` also keeps the norm it measured, for logging::

    opt = optim_fn.chain(optim_fn.clip_by_global_norm(1.0), optim_fn.adamw(1e-3))
    ...
    state[0].global_norm        # the gradient norm before clipping, at the latest step

Names, keywords and defaults are optax's; results agree with optax to float32 rounding
for finite gradients. Choices that differ, all about degenerate inputs:

* Norms are accumulated in float32 at least (float64 for float64 grads), so bf16/fp16
  gradients do not overflow or lose the norm to rounding.
* A norm exactly equal to the threshold leaves the update untouched, and a zero
  threshold with a zero gradient gives zeros (optax divides 0 by 0 there and returns NaN).
* A non-finite norm (a NaN or inf anywhere in what is clipped) makes the whole clipped
  group NaN: an infinite gradient has no direction to keep, and a NaN update is what
  :func:`optim_fn.apply_if_finite` looks for. (optax returns a mix of zeros and NaN.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core import hyperparams as hp
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    Updates,
    fresh_value,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.numerics import wide as _wide
from optim_fn.core.validation import checks_once
from optim_fn.flat._ravel import check_not_flat
from optim_fn.rules import abs_sq
from optim_fn.tree._math import global_norm


class ClipState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class ClipByBlockRmsState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class AdaptiveGradClipState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


class ClipByGlobalNormState(NamedTuple):
    """State of :func:`clip_by_global_norm`.

    Attributes:
      count: number of updates so far (int32, saturating).
      global_norm: the norm of the incoming updates at the latest step, before clipping.
      hyperparams: ``max_norm``.
    """

    count: Array
    global_norm: Array
    hyperparams: Hyperparams


# ----------------------------------------------------------------------------------------
# Array math shared by the transforms.




def _clip_factor(norm: Array, limit: Array) -> Array:
    """``min(1, limit / norm)``; 1 when ``norm <= limit``; NaN when ``norm`` is not finite."""
    safe_norm = jnp.where(norm > 0, norm, 1)
    factor = jnp.where(norm <= limit, 1, limit / safe_norm)
    return jnp.where(jnp.isfinite(norm), factor, jnp.nan)




def unitwise_norm(x: Array, axis: int | Sequence[int] | None = None) -> Array:
    """The L2 norm of each unit of ``x``, broadcast back to ``x``'s shape.

    A unit is a slice along ``axis``. With ``axis=None`` the reduction follows the usual
    layer layouts (as optax): scalars and vectors are one unit; rank 2 and 3 reduce axis
    0 (input features of a dense kernel); rank 4 reduces (0, 1, 2) (HWIO convolutions);
    rank 5 reduces (0, 1, 2, 3). Other ranks need an explicit ``axis``.
    """
    x = jnp.asarray(x)
    return jnp.broadcast_to(_unit_norms(x, axis), x.shape)


def _unit_norms(x: Array, axis) -> Array:
    if axis is None:
        if x.ndim <= 1 or jnp.squeeze(x).ndim <= 1:
            axis = tuple(range(x.ndim))
        elif x.ndim in (2, 3):
            axis = 0
        elif x.ndim == 4:
            axis = (0, 1, 2)
        elif x.ndim == 5:
            axis = (0, 1, 2, 3)
        else:
            raise ValueError(
                f"unitwise_norm: no default unit for an array of shape {x.shape}; "
                "pass `axis` (the axes that make up one unit)"
            )
    return jnp.sqrt(jnp.sum(abs_sq(_wide(x)), axis=axis, keepdims=True))


# ----------------------------------------------------------------------------------------
# Per-leaf rules, lifted with rule_transform.


def _clip_rule(grad: Array, *, max_delta: Array) -> tuple:
    if jnp.iscomplexobj(grad):
        # Clipping real and imaginary parts separately would rotate the gradient; clip
        # the magnitude and keep the phase.
        magnitude = jnp.abs(grad)
        return (grad * _clip_factor(magnitude, max_delta).astype(magnitude.dtype),)
    return (jnp.clip(grad, -max_delta, max_delta),)


def _block_rms_rule(grad: Array, *, threshold: Array) -> tuple:
    rms = jnp.sqrt(jnp.mean(abs_sq(_wide(grad))))
    return (grad * _clip_factor(rms, threshold),)


def _adaptive_rule(grad: Array, *, param: Array, clipping: Array, eps: Array, axis) -> tuple:
    grad_norm = _unit_norms(grad, axis)
    max_norm = clipping * jnp.maximum(_unit_norms(param, axis), eps)
    factor = jnp.where(grad_norm < max_norm, 1, max_norm / jnp.maximum(grad_norm, 1e-6))
    factor = jnp.where(jnp.isfinite(grad_norm), factor, jnp.nan)
    return (grad * factor,)


def _per_leaf_only(
    transform: GradientTransformationExtraArgs, who: str, why: str
) -> GradientTransformationExtraArgs:
    def update(updates, state, params=None, **extra_args):
        check_not_flat(updates, who, why)
        return transform.update(updates, state, params, **extra_args)

    return GradientTransformationExtraArgs(transform.init, update)


@checks_once
def clip(max_delta: ScalarOrSchedule) -> GradientTransformationExtraArgs:
    """Clips every entry to ``[-max_delta, max_delta]``.

    ``u = min(max(g, -max_delta), max_delta)``; NaN stays NaN, ``±inf`` becomes
    ``±max_delta``. Complex entries keep their phase: ``u = g min(1, max_delta/|g|)``.
    """
    check.check_non_negative("clip", "max_delta", max_delta)
    return rule_transform(
        _clip_rule, ClipState, hyperparams={"max_delta": max_delta}, name="clip"
    )


@checks_once
def clip_by_block_rms(threshold: ScalarOrSchedule) -> GradientTransformationExtraArgs:
    """Scales each leaf (block) so that its root-mean-square is at most ``threshold``.

    ``u = g min(1, threshold / rms(g))``, ``rms(g) = sqrt(mean |g|^2)`` over the leaf.
    """
    check.check_non_negative("clip_by_block_rms", "threshold", threshold)
    return _per_leaf_only(
        rule_transform(
            _block_rms_rule,
            ClipByBlockRmsState,
            hyperparams={"threshold": threshold},
            name="clip_by_block_rms",
        ),
        "clip_by_block_rms",
        "each leaf is a block",
    )


@checks_once
def adaptive_grad_clip(
    clipping: ScalarOrSchedule,
    eps: ScalarOrSchedule = 1e-3,
    axis: int | Sequence[int] | None = None,
) -> GradientTransformationExtraArgs:
    """Adaptive gradient clipping, unit-wise (Brock et al. 2021, NFNets, arXiv:2102.06171).

    For each unit (see :func:`unitwise_norm`; ``axis`` overrides the default layout):

    .. math::
        u = \\begin{cases} g & \\|g\\| < \\lambda \\max(\\|w\\|, \\epsilon) \\\\
        g\\, \\lambda \\max(\\|w\\|, \\epsilon) / \\max(\\|g\\|, 10^{-6}) & \\text{otherwise}
        \\end{cases}

    with :math:`\\lambda` = ``clipping``. Needs ``params``. Defaults: ``eps=1e-3``.
    """
    where = "adaptive_grad_clip"
    check.check_non_negative(where, "clipping", clipping)
    check.check_non_negative(where, "eps", eps)
    if axis is not None:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
            raise ValueError(
                f"{where}: `axis` must be None, an int or a tuple of ints, got {axis!r}"
            )
        axis = axes
    return _per_leaf_only(
        rule_transform(
            _adaptive_rule,
            AdaptiveGradClipState,
            hyperparams={"clipping": clipping, "eps": eps},
            static={"axis": axis},
            uses_params=True,
            name=where,
        ),
        where,
        "its units are slices of each leaf's own shape",
    )


# ----------------------------------------------------------------------------------------
# Global norm: one reduction over the whole tree, so it gets its own state.


def _global_norm_rule(updates: Updates, last_norm: Array, *, max_norm: Array) -> tuple:
    """The whole tree scaled by ``min(1, max_norm / ||g||)``; the norm kept for logging."""
    norm = global_norm(updates)
    factor = _clip_factor(norm, max_norm)
    clipped = jax.tree.map(lambda u: (u * factor).astype(u.dtype), updates)
    return clipped, fresh_value(norm.astype(last_norm.dtype), last_norm)


@checks_once
def clip_by_global_norm(max_norm: ScalarOrSchedule) -> GradientTransformationExtraArgs:
    """Rescales the whole update so that its global L2 norm is at most ``max_norm``.

    .. math:: u = g \\min\\left(1, \\frac{\\text{max\\_norm}}{\\|g\\|_2}\\right),\\qquad
        \\|g\\|_2 = \\sqrt{\\textstyle\\sum_{\\text{leaves}} \\sum |g_i|^2}

    The measured norm (before clipping) is kept in ``state.global_norm`` for logging.
    Reference: Pascanu, Mikolov & Bengio, ICML 2013 (arXiv:1211.5063). Unlike
    ``torch.nn.utils.clip_grad_norm_`` there is no ``1e-6`` added to the norm.
    """
    where = "clip_by_global_norm"
    check.check_non_negative(where, "max_norm", max_norm)
    return rule_transform(
        _global_norm_rule,
        ClipByGlobalNormState,
        slots=("global_norm",),
        init_state=lambda params: (jnp.zeros([], hp.storage_dtype(params)),),
        hyperparams={"max_norm": max_norm},
        name=where,
    )


# ----------------------------------------------------------------------------------------
# Per-example clipping (differential privacy): functions, not transforms, because they
# consume a batch axis that the optimizer never sees.


def _check_batched(grads: Any, where: str) -> list[Array]:
    leaves = [jnp.asarray(g) for g in jax.tree.leaves(grads)]
    if not leaves:
        raise ValueError(f"{where}: `grads` has no leaves")
    batch = leaves[0].shape[0] if leaves[0].ndim else None
    if batch is None or any(g.ndim < 1 or g.shape[0] != batch for g in leaves):
        shapes = jax.tree.map(jnp.shape, grads)
        raise ValueError(
            f"{where}: every leaf of `grads` must have the same batch size on axis 0 "
            f"(one gradient per example), got shapes {shapes}"
        )
    return leaves


def _example_sq_norms(leaf: Array) -> Array:
    """The L2 norm of each example's slice of ``leaf`` (axis 0 is the batch)."""
    axes = tuple(range(1, leaf.ndim))
    return jnp.sum(abs_sq(_wide(leaf)), axis=axes)


def _clipped_sum(leaves: list[Array], limit) -> tuple[list[Array], Array]:
    norms = jnp.sqrt(sum(_example_sq_norms(leaf) for leaf in leaves))
    multipliers = jnp.where(norms > limit, limit / jnp.where(norms > 0, norms, 1), 1.0)
    num_clipped = jnp.sum(multipliers < 1).astype(jnp.int32)
    sums = []
    for leaf in leaves:
        wide = _wide(leaf)
        total = jnp.tensordot(multipliers.astype(wide.dtype), wide, axes=1)
        keep = leaf.dtype if jnp.issubdtype(leaf.dtype, jnp.inexact) else wide.dtype
        sums.append(total.astype(keep))
    return sums, num_clipped


def per_example_global_norm_clip(grads: Any, l2_norm_clip: float) -> tuple[Any, Array]:
    """Clips each example's gradient to global L2 norm ``l2_norm_clip`` and sums them.

    ``grads`` holds per-example gradients: every leaf has the batch on axis 0. Returns
    ``(sum_i g_i min(1, C / ||g_i||), number of examples clipped)``; the sum has the
    per-example shapes. Abadi et al., Deep Learning with Differential Privacy (2016).
    """
    where = "per_example_global_norm_clip"
    check.check_non_negative(where, "l2_norm_clip", l2_norm_clip)
    leaves = _check_batched(grads, where)
    sums, num_clipped = _clipped_sum(leaves, l2_norm_clip)
    treedef = jax.tree.structure(grads)
    return jax.tree.unflatten(treedef, sums), num_clipped


def per_example_layer_norm_clip(
    grads: Any, global_l2_norm_clip: float, uniform: bool = True
) -> tuple[Any, Any]:
    """Per-example clipping with one threshold per leaf (layer), then the sum over examples.

    With ``K`` leaves and overall threshold ``C``, leaf ``k`` is clipped to
    ``C / sqrt(K)`` (``uniform=True``) or ``C sqrt(D_k / D)`` with ``D_k`` its size per
    example and ``D`` the total. Returns ``(tree of sums, tree of clipped counts)``.
    McMahan et al., Learning Differentially Private Recurrent Language Models (2018).
    """
    where = "per_example_layer_norm_clip"
    check.check_non_negative(where, "global_l2_norm_clip", global_l2_norm_clip)
    leaves = _check_batched(grads, where)
    total = sum(leaf[0].size for leaf in leaves)
    sums, counts = [], []
    for leaf in leaves:
        if uniform:
            limit = global_l2_norm_clip / len(leaves) ** 0.5
        else:
            limit = global_l2_norm_clip * (leaf[0].size / total) ** 0.5
        (leaf_sum,), count = _clipped_sum([leaf], limit)
        sums.append(leaf_sum)
        counts.append(count)
    treedef = jax.tree.structure(grads)
    return jax.tree.unflatten(treedef, sums), jax.tree.unflatten(treedef, counts)
