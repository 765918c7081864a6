"""Dion: low-rank orthonormalised updates by power iteration with error feedback.

Ahn, Xu, Abreu, Zhang & Langford 2025, "Dion: Distributed Orthonormalized Updates"
(arXiv:2504.05295); reference: microsoft/dion (``dion/dion.py``, single-device path, and
``dion/dion_reference.py`` for the QR variants). The rule is
:func:`optim_fn.rules.dion.dion`, a whole-leaf rule on the lifter; the matrices get Dion,
the other leaves AdamW (or Lion), as the reference's parameter groups do.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.contrib._matrix_layout import dims_per_leaf, leaf_layout
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    Updates,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.flat._ravel import check_not_flat
from optim_fn.optimizers import classic
from optim_fn.optimizers.classic import adamw
from optim_fn.optimizers.signs import lion
from optim_fn.rules import dion as dion_rules
from optim_fn.rules import orthogonalize as ortho
from optim_fn.transforms._combine import chain
from optim_fn.transforms._partition import partition
from optim_fn.tree._structure import full_like

_FLAT_REASON = "it factorises each leaf as a matrix"


class DionState(NamedTuple):
    """``momentum``: the error-feedback buffer ``M`` of each matrix; ``q``: its right factor
    ``Q``, ``(*batch, n, r)``; ``key``: a raw ``uint32[2]`` key per leaf, for the sketches
    of randomized Cholesky QR."""

    count: Array
    momentum: Updates
    q: Updates
    key: Updates
    hyperparams: Hyperparams


def _check(where: str, rank_fraction, rank_multiple_of, qr_method, oversample,
           cqr_warmup_steps, power_iters, seed) -> None:
    if isinstance(rank_fraction, bool) or not isinstance(rank_fraction, (int, float)) or not (
        0 < rank_fraction <= 1
    ):
        raise ValueError(f"{where}: `rank_fraction` must be in (0, 1], got {rank_fraction!r}")
    for name, value, low in (("rank_multiple_of", rank_multiple_of, 1),
                             ("power_iters", power_iters, 1),
                             ("cqr_warmup_steps", cqr_warmup_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{where}: `{name}` must be an integer >= {low}, got {value!r}")
    if qr_method not in dion_rules.QR_METHODS:
        raise ValueError(
            f"{where}: `qr_method` must be one of {dion_rules.QR_METHODS}, got {qr_method!r}"
        )
    if isinstance(oversample, bool) or not isinstance(oversample, (int, float)) or oversample < 1:
        raise ValueError(f"{where}: `oversample` must be a number >= 1, got {oversample!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{where}: `seed` must be an int, got {seed!r}")


@checks_once
def scale_by_dion(
    rank_fraction: float = 1.0,
    mu: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    *,
    rank_multiple_of: int = 1,
    qr_method: str = "rcqr",
    oversample: float = 1.25,
    cqr_warmup_steps: int = 150,
    power_iters: int = 1,
    weight_dimension_numbers: Any = None,
    seed: int = 0,
    batch_by_shape: bool | None = None,
) -> GradientTransformationExtraArgs:
    """Dion's direction for each matrix: :math:`\\sqrt{d_{out}/d_{in}}\\, P Q^T`.

    .. math::
        M \\leftarrow M + G,\\; P = \\mathrm{orth}(MQ),\\; R = M^T P,\\;
        M \\leftarrow M - (1-\\mu) P R^T,\\; Q \\leftarrow \\mathrm{colnorm}(R)

    (see :mod:`optim_fn.rules.dion` for the orientation and the QR variants). The rank
    is ``rank_fraction * min(d_in, d_out)`` rounded up to a multiple of
    ``rank_multiple_of``. ``Q`` starts as a standard normal matrix drawn from
    ``seed`` (one key per leaf, as the reference's ``torch.randn``; not orthonormalised:
    the first power iteration does that), and the sketches of ``qr_method="rcqr"`` come
    from a key per leaf kept in the state, split each step. Every leaf is a
    ``(fan_in, fan_out)`` matrix, or has ``weight_dimension_numbers``
    (:class:`~optim_fn.contrib.MuonDimensionNumbers`, a tree or a function of the
    params) naming its input and output axes; other axes are batch axes, each slice a
    matrix with its own ``Q``. The reference computes the QR factorisations and column
    norms in float32; here they run in the params' dtype.
    """
    where = "scale_by_dion"
    _check(where, rank_fraction, rank_multiple_of, qr_method, oversample, cqr_warmup_steps,
           power_iters, seed)
    check.check_decay(where, "mu", mu, allow_one=True)
    check.check_non_negative(where, "eps", eps)
    layout = leaf_layout(weight_dimension_numbers, None)
    pending: list[tuple] = []

    def init_slots(param):
        dims, leaf_key = pending.pop(0)
        stack, _ = ortho.to_matrices(param, dims)
        batch, fan_in, fan_out = stack.shape
        rank = dion_rules.low_rank(fan_in, fan_out, rank_fraction, rank_multiple_of)
        q_key, sketch_key = jax.random.split(leaf_key)
        shape = (batch, *dion_rules.q_shape(fan_in, fan_out, rank))
        # Drawn in at least float32, so a bfloat16 run starts from float32's Q, rounded.
        dtype = jnp.result_type(param)
        q = jax.random.normal(q_key, shape, jnp.promote_types(dtype, jnp.float32)).astype(dtype)
        return full_like(param, 0.0), q, jax.random.key_data(sketch_key)

    inner = rule_transform(
        dion_rules.dion,
        DionState,
        slots=("momentum", "q", "key"),
        init_slots=init_slots,
        hyperparams={"mu": mu, "eps": eps},
        static={"qr_method": qr_method, "oversample": float(oversample),
                "cqr_warmup_steps": cqr_warmup_steps, "power_iters": power_iters},
        leaf_keywords=lambda updates: [{"dims": k["dims"]} for k in layout(updates)],
        name=where,
        flat_reason=_FLAT_REASON,
        complex_reason="its QR and Cholesky factorisations are written for real matrices",
        batch_by_shape=batch_by_shape,
    )

    def init(params):
        check_not_flat(params, where, _FLAT_REASON)
        dims = dims_per_leaf(params, weight_dimension_numbers)
        base = jax.random.key(seed)
        pending[:] = [(d, jax.random.fold_in(base, i)) for i, d in enumerate(dims)]
        for leaf, d in zip(jax.tree.leaves(params), dims, strict=True):
            ortho.matrix_axes(leaf, d)  # a leaf that is no matrix fails here
            if leaf.ndim < 2:
                raise ValueError(
                    f"{where}: a leaf of shape {leaf.shape} is not a matrix; use `dion`, "
                    "which gives vectors and scalars to AdamW or Lion"
                )
        return inner.init(params)

    return GradientTransformationExtraArgs(init, inner.update)


def _labels(spec: Any):
    """``params -> labels``: "dion" for the matrices (2-d, or non-None dims), else "scalar"."""

    def labels(params):
        if spec is None:
            return jax.tree.map(lambda x: "dion" if x.ndim == 2 else "scalar", params)
        resolved = spec(params) if callable(spec) else spec
        with_none, treedef = jax.tree.flatten(params, is_leaf=lambda x: x is None)
        dims = jax.tree.leaves(
            resolved, is_leaf=lambda x: x is None or isinstance(x, ortho.MuonDimensionNumbers)
        )
        if len(dims) != len(with_none):
            raise ValueError(
                "dion: `dion_weight_dimension_numbers` must have one MuonDimensionNumbers "
                "(or None, for the scalar optimizer) per param leaf"
            )
        return treedef.unflatten([
            None if p is None else ("scalar" if d is None else "dion")
            for p, d in zip(with_none, dims, strict=True)
        ])

    return labels


@checks_once
def dion(
    learning_rate: ScalarOrSchedule,
    rank_fraction: float = 1.0,
    mu: ScalarOrSchedule = 0.95,
    weight_decay: ScalarOrSchedule = 0.01,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    *,
    rank_multiple_of: int = 1,
    qr_method: str = "rcqr",
    oversample: float = 1.25,
    cqr_warmup_steps: int = 150,
    power_iters: int = 1,
    scalar_optimizer: str = "adamw",
    scalar_learning_rate: ScalarOrSchedule | None = None,
    scalar_weight_decay: ScalarOrSchedule | None = None,
    dion_weight_dimension_numbers: Any = None,
    seed: int = 0,
    batch_by_shape: bool | None = None,
) -> GradientTransformationExtraArgs:
    """Dion (Ahn et al. 2025) for the matrices, AdamW (or Lion) for the other leaves.

    For each matrix (2-d leaves, or those ``dion_weight_dimension_numbers`` names):

    .. math::
        p_t = (1 - \\eta\\lambda) p_{t-1} - \\eta \\sqrt{d_{out}/d_{in}}\\; P_t Q_t^T

    with :func:`scale_by_dion`'s low-rank factors, :math:`\\eta` = ``learning_rate`` and
    :math:`\\lambda` = ``weight_decay``. The other leaves follow
    ``scalar_optimizer``: ``"adamw"`` (:func:`optim_fn.adamw` with ``b1``, ``b2``,
    ``eps``) or ``"lion"`` (:func:`optim_fn.lion` with ``b1``, ``b2``), at
    ``scalar_learning_rate`` (default ``learning_rate``, as the reference's shared
    ``lr``) and ``scalar_weight_decay`` (default ``weight_decay``). Defaults are the
    reference's (``microsoft/dion``'s ``Dion``): ``rank_fraction=1``, ``mu=0.95``,
    ``weight_decay=0.01``, betas ``(0.9, 0.95)``, ``eps=1e-8`` (the column
    normalisation's and Adam's), ``qr_method="rcqr"`` with ``oversample=1.25``,
    ``cqr_warmup_steps=150`` (``"cqr"`` only), ``power_iters=1``; its learning rate
    default is 0.01. Matrices are ``(fan_in, fan_out)`` (flax's layout). Not in flat mode.
    """
    where = "dion"
    check.check_learning_rate(where, learning_rate)
    if scalar_optimizer not in ("adamw", "lion"):
        raise ValueError(
            f"{where}: `scalar_optimizer` must be 'adamw' or 'lion', got {scalar_optimizer!r}"
        )
    scalar_learning_rate = learning_rate if scalar_learning_rate is None else scalar_learning_rate
    scalar_weight_decay = weight_decay if scalar_weight_decay is None else scalar_weight_decay
    spec = dion_weight_dimension_numbers
    matrix_part = chain(
        scale_by_dion(
            rank_fraction, mu, eps, rank_multiple_of=rank_multiple_of, qr_method=qr_method,
            oversample=oversample, cqr_warmup_steps=cqr_warmup_steps,
            power_iters=power_iters, weight_dimension_numbers=spec, seed=seed,
            batch_by_shape=batch_by_shape,
        ),
        classic.add_decayed_weights(weight_decay),
        classic.scale_by_learning_rate(learning_rate),
    )
    if scalar_optimizer == "adamw":
        scalar_part = adamw(scalar_learning_rate, b1=b1, b2=b2, eps=eps,
                            weight_decay=scalar_weight_decay)
    else:
        scalar_part = lion(scalar_learning_rate, b1=b1, b2=b2, weight_decay=scalar_weight_decay)
    split = partition({"dion": matrix_part, "scalar": scalar_part}, _labels(spec))

    def init(params):
        check_not_flat(params, where, _FLAT_REASON)
        return split.init(params)

    return GradientTransformationExtraArgs(init, split.update)
