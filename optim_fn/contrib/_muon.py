"""Muon: momentum orthogonalized by Newton-Schulz iterations, for matrix-shaped params.

:func:`muon` applies Muon to the 2-d params (or to those its
``muon_weight_dimension_numbers`` selects, any rank) and AdamW to the others, as
optax does. The Newton-Schulz iteration needs each leaf's own rows and columns, so Muon
refuses flat mode at ``init``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core import hyperparams as hp
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
from optim_fn.rules.adam_variants import first_moment_hat
from optim_fn.rules.classic import moving_average
from optim_fn.transforms._combine import chain
from optim_fn.transforms._partition import partition
from optim_fn.tree._structure import full_like

_PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
_DEFAULT_NS_COEFFS = (3.4445, -4.775, 2.0315)
_DION_NS_COEFFS = (
    (4.0848, -6.8946, 2.927),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)
_NS_PRESETS = {"standard": _DEFAULT_NS_COEFFS, "dion": _DION_NS_COEFFS}


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a weight are its input (``reduction_axis``) and output axes.

    The other axes are batch axes: each slice is orthogonalized on its own.
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


class MuonState(NamedTuple):
    count: Array
    mu: Updates
    ns_coeffs: Array
    hyperparams: Hyperparams


class ScaleByShapeState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


def _is_dims(x: Any) -> bool:
    return isinstance(x, MuonDimensionNumbers)


def _axes(x: Array, dims: MuonDimensionNumbers) -> tuple[tuple[int, ...], tuple[int, ...]]:
    def normalize(axes):
        axes = (axes,) if isinstance(axes, int) else tuple(axes)
        return tuple(a % x.ndim for a in axes)

    reduction, output = normalize(dims.reduction_axis), normalize(dims.output_axis)
    if set(reduction) & set(output):
        raise ValueError(
            f"muon: the reduction axes {reduction} and output axes {output} of a leaf of "
            f"shape {x.shape} overlap; they must be disjoint ({dims})"
        )
    return reduction, output


def _fans(x: Array, dims: MuonDimensionNumbers) -> tuple[int, int]:
    reduction, output = _axes(x, dims)
    return math.prod(x.shape[a] for a in reduction), math.prod(x.shape[a] for a in output)


def _gram(x: Array) -> Array:
    return x @ x.T.conj()


def _ns_step(x: Array, coeffs: Array) -> Array:
    a = _gram(x)
    return coeffs[0] * x + (coeffs[1] * a + coeffs[2] * a @ a) @ x


def _aol_first_step(x: Array, coeffs: Array, eps: float) -> Array:
    # Almost-orthogonal-layer rescaling (Prach & Lampert 2022): rows scaled so that the
    # Gram matrix has absolute row sums at most 1.
    a = _gram(x)
    s = jax.lax.rsqrt(jnp.maximum(jnp.abs(a).sum(axis=-1), eps))[:, None]
    x, a = x * s, a * s * s.T
    return coeffs[0] * x + (coeffs[1] * a + coeffs[2] * a @ a) @ x


def _schatten_first_step(x: Array, coeffs: Array, eps: float) -> Array:
    a = _gram(x)
    s = jax.lax.rsqrt(jnp.maximum(jnp.linalg.norm(a), eps))
    x, a = x * s, a * s**2
    return coeffs[0] * x + (coeffs[1] * a + coeffs[2] * a @ a) @ x


def _orthogonalize_matrix(x, coeffs, ns_steps, preconditioning, eps):
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    if preconditioning == "frobenius":
        x = x / (jnp.linalg.norm(x) + eps)
    elif preconditioning == "spectral":
        x = x / (jnp.linalg.norm(x, ord=2) + eps)
    coeffs = coeffs.astype(x.dtype)
    steps = [coeffs] * ns_steps if coeffs.ndim == 1 else list(coeffs)
    for index, step_coeffs in enumerate(steps):
        if index == 0 and preconditioning == "aol":
            x = _aol_first_step(x, step_coeffs, eps)
        elif index == 0 and preconditioning == "schatten":
            x = _schatten_first_step(x, step_coeffs, eps)
        else:
            x = _ns_step(x, step_coeffs)
    return x.T if transposed else x


def orthogonalize_via_newton_schulz(
    x: Array,
    ns_coeffs: Array,
    ns_steps: int = 5,
    preconditioning: Literal["frobenius", "spectral", "aol", "schatten"] = "frobenius",
    eps: float = 1e-8,
    dimension_numbers: MuonDimensionNumbers | None = None,
) -> Array:
    """Approximates the orthogonal factor ``U V^T`` of ``x = U S V^T`` (Newton-Schulz).

    After a normalisation (``preconditioning``: Frobenius or spectral norm, or the AOL
    / Schatten rescaling folded into the first step), each step maps
    :math:`X \\mapsto aX + (bA + cA^2)X` with :math:`A = XX^H` and ``(a, b, c)`` from
    ``ns_coeffs`` (one triple for every step, or one row per step). ``x`` is a matrix,
    or any array with ``dimension_numbers`` naming its input and output axes (the
    others are batch axes). Reference: Jordan et al., "Muon" (2024); Bernstein & Newhouse
    (2024).
    """
    ns_coeffs = jnp.asarray(ns_coeffs)
    if ns_coeffs.ndim > 2 or ns_coeffs.shape[-1] != 3:
        raise ValueError(
            f"Newton-Schulz coefficients must have shape (3,) or (n, 3), got {ns_coeffs.shape}"
        )
    if preconditioning not in _PRECONDITIONINGS:
        raise ValueError(
            f"unknown preconditioning {preconditioning!r}; use one of {_PRECONDITIONINGS}"
        )
    if dimension_numbers is None:
        if x.ndim != 2:
            raise ValueError(
                f"orthogonalize_via_newton_schulz: a leaf of shape {x.shape} is not a matrix; "
                "pass `dimension_numbers=MuonDimensionNumbers(reduction_axis, output_axis)`"
            )
        dimension_numbers = MuonDimensionNumbers()
    reduction, output = _axes(x, dimension_numbers)
    batch = tuple(a for a in range(x.ndim) if a not in reduction + output)
    order = batch + reduction + output
    shape = [x.shape[a] for a in order]
    flat = x.transpose(order).reshape(
        math.prod(shape[: len(batch)]),
        math.prod(x.shape[a] for a in reduction),
        math.prod(x.shape[a] for a in output),
    )
    result = jax.vmap(
        lambda m: _orthogonalize_matrix(m, ns_coeffs, ns_steps, preconditioning, eps)
    )(flat)
    inverse = sorted(range(x.ndim), key=lambda i: order[i])
    return result.reshape(shape).transpose(inverse)


def _dims_per_leaf(updates: Any, spec: Any) -> list:
    """The dimension numbers of each (non-None) leaf of ``updates``, in leaf order."""
    leaves = jax.tree.leaves(updates)
    if spec is None:
        return [MuonDimensionNumbers()] * len(leaves)
    resolved = spec(updates) if callable(spec) else spec
    with_none = jax.tree.leaves(updates, is_leaf=lambda x: x is None)
    dims = jax.tree.leaves(resolved, is_leaf=lambda x: x is None or _is_dims(x))
    if len(dims) != len(with_none):
        raise ValueError(
            "muon: the weight dimension numbers must be a tree with one "
            "MuonDimensionNumbers (or None) per param leaf"
        )
    return [d for u, d in zip(with_none, dims, strict=True) if u is not None]


def _hashable(dims: MuonDimensionNumbers) -> MuonDimensionNumbers:
    """The same dimension numbers with tuples for lists (leaves are grouped by them)."""
    as_tuple = lambda axes: axes if isinstance(axes, int) else tuple(axes)  # noqa: E731
    return MuonDimensionNumbers(as_tuple(dims.reduction_axis), as_tuple(dims.output_axis))


def _muon_rule(
    grad, mu, *, dims, ns_coeffs, count, beta, one_minus_beta, eps, ns_steps, preconditioning,
    nesterov, adaptive,
):
    """One leaf: momentum, its bias-corrected (Nesterov) form, then its polar factor."""
    mu = moving_average(grad, mu, beta, one_minus_beta)
    mu_hat = first_moment_hat(mu, grad, beta, one_minus_beta, count, nesterov)
    direction = orthogonalize_via_newton_schulz(
        mu_hat, ns_coeffs, ns_steps, preconditioning, eps, dims
    )
    if adaptive:
        direction = jnp.sum((mu_hat.conj() * direction).real) * direction
    return direction, mu


def _coefficients(where: str, ns_coeffs: Any, ns_steps: int) -> np.ndarray:
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in _NS_PRESETS:
            raise ValueError(
                f"{where}: unknown `ns_coeffs` preset {ns_coeffs!r}; use one of "
                f"{sorted(_NS_PRESETS)} or give the coefficients"
            )
        ns_coeffs = _NS_PRESETS[ns_coeffs]
    coeffs = np.asarray(ns_coeffs, np.float64)
    if coeffs.ndim > 2 or coeffs.shape[-1] != 3:
        raise ValueError(f"{where}: `ns_coeffs` must have shape (3,) or (n, 3), got {coeffs.shape}")
    if coeffs.ndim == 2:
        if coeffs.shape[0] < ns_steps:
            raise ValueError(
                f"{where}: {coeffs.shape[0]} rows of `ns_coeffs` are not enough for "
                f"`ns_steps={ns_steps}` (one row per step)"
            )
        coeffs = coeffs[-ns_steps:]
    return coeffs


@checks_once
def scale_by_muon(
    ns_coeffs: Any = _DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: Literal["frobenius", "spectral", "aol", "schatten"] = "frobenius",
    weight_dimension_numbers: Any = None,
    batch_by_shape: bool | None = None,
) -> GradientTransformationExtraArgs:
    """Muon's direction: the orthogonalized (Nesterov) momentum of each matrix.

    .. math::
        m_t = \\beta m_{t-1} + (1-\\beta) g_t,\\quad
        u_t = \\mathrm{NS}(\\hat m_t) \\approx U V^T \\text{ for } \\hat m_t = U S V^T

    with :math:`\\hat m_t` bias-corrected (Nesterov form by default, as in
    :func:`optim_fn.nadam`) and NS the iteration of
    :func:`orthogonalize_via_newton_schulz`. ``adaptive=True`` scales each leaf by
    :math:`\\mathrm{Re}\\langle \\hat m_t, u_t\\rangle` (Zhao et al.'s AdaMuon-style
    scale). ``weight_dimension_numbers``: None (every leaf a matrix), or a tree (or a
    function of the params returning one) of :class:`MuonDimensionNumbers`.
    ``batch_by_shape``: orthogonalize the matrices of one shape in one batched call
    (True), leaf by leaf (False), or batched on accelerators only (None, the default:
    on the CPU batching trades a third less compile time for a third slower steps).
    """
    where = "scale_by_muon"
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 1:
        raise ValueError(f"{where}: `ns_steps` must be an integer >= 1, got {ns_steps!r}")
    coeffs = _coefficients(where, ns_coeffs, ns_steps)
    check.check_decay(where, "beta", beta)
    check.check_non_negative(where, "eps", eps)
    check.check_dtype(where, "mu_dtype", mu_dtype)
    if preconditioning not in _PRECONDITIONINGS:
        raise ValueError(
            f"{where}: `preconditioning` must be one of {_PRECONDITIONINGS}, got "
            f"{preconditioning!r}"
        )
    return rule_transform(
        _muon_rule,
        MuonState,
        slots=("mu",),
        init_slots=lambda param: (full_like(param, 0.0, mu_dtype),),
        hyperparams={"beta": beta, "eps": eps},
        decays=("beta",),
        static={
            "ns_steps": ns_steps,
            "preconditioning": preconditioning,
            "nesterov": nesterov,
            "adaptive": adaptive,
        },
        leaf_keywords=lambda updates: [
            {"dims": _hashable(dims)}
            for dims in _dims_per_leaf(updates, weight_dimension_numbers)
        ],
        constants={"ns_coeffs": lambda params: jnp.asarray(coeffs, hp.storage_dtype(params))},
        name=where,
        flat_reason="it orthogonalizes each leaf as a matrix",
        batch_by_shape=batch_by_shape,
    )


def _shape_rule(update, *, fan_in, fan_out, consistent_rms):
    """One leaf times the factor of its ``fan_in x fan_out`` shape."""
    if consistent_rms is None:
        factor = math.sqrt(max(1.0, fan_out / fan_in))
    else:
        factor = math.sqrt(max(fan_in, fan_out)) * consistent_rms
    return ((factor * update).astype(update.dtype),)


@checks_once
def scale_by_shape(
    weight_dimension_numbers: Any = None, consistent_rms: float | None = None
) -> GradientTransformationExtraArgs:
    """Scales each matrix's update for its shape.

    ``sqrt(max(1, fan_out / fan_in))`` (Jordan et al.'s width transfer) or, with
    ``consistent_rms=r``, ``r sqrt(max(fan_in, fan_out))`` (an update RMS of about ``r``,
    comparable to AdamW's; Liu et al., "Muon is Scalable for LLM Training", 2025).
    """

    def fans(updates):
        dims = _dims_per_leaf(updates, weight_dimension_numbers)
        pairs = [_fans(u, dim) for u, dim in zip(jax.tree.leaves(updates), dims, strict=True)]
        return [{"fan_in": fan_in, "fan_out": fan_out} for fan_in, fan_out in pairs]

    return rule_transform(
        _shape_rule,
        ScaleByShapeState,
        init_slots=lambda param: (),
        static={"consistent_rms": consistent_rms},
        leaf_keywords=fans,
        name="scale_by_shape",
        flat_reason="it scales each leaf by its matrix's shape",
    )


@checks_once
def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: Any = _DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: Literal["frobenius", "spectral", "aol", "schatten"] = "frobenius",
    adam_b1: ScalarOrSchedule = 0.9,
    adam_b2: ScalarOrSchedule = 0.999,
    adam_eps_root: ScalarOrSchedule = 0.0,
    adam_weight_decay: ScalarOrSchedule = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: float | None = None,
    batch_by_shape: bool | None = None,
) -> GradientTransformationExtraArgs:
    """Muon for the matrices, AdamW for everything else.

    For the Muon params (2-d by default; those with non-None
    ``muon_weight_dimension_numbers`` otherwise):

    .. math::
        p_t = p_{t-1} - \\eta\\left(s\\, \\mathrm{NS}(\\hat m_t) + \\lambda p_{t-1}\\right)

    with :func:`scale_by_muon`'s direction and :func:`scale_by_shape`'s factor ``s``;
    the other params follow :func:`optim_fn.adamw` (``adam_*`` keywords, ``eps``,
    ``adam_learning_rate`` defaulting to ``learning_rate``, Nesterov as ``nesterov``).
    Defaults: ``ns_coeffs=(3.4445, -4.775, 2.0315)`` (or ``"dion"``), ``ns_steps=5``,
    ``beta=0.95``, ``nesterov=True``. Reference: Jordan et al., "Muon: An optimizer for
    hidden layers in neural networks" (2024). A 2-d ``ns_coeffs`` needs at least
    ``ns_steps`` rows and uses the last ``ns_steps``. PyTorch: ``torch.optim.Muon`` (2.9+)
    runs Newton-Schulz in bfloat16. Not in flat mode. ``batch_by_shape``: as in
    :func:`scale_by_muon` (default: batched on accelerators, leaf by leaf on the CPU).
    """
    check.check_learning_rate("muon", learning_rate)
    if adam_learning_rate is None:
        adam_learning_rate = learning_rate
    spec = muon_weight_dimension_numbers

    def labels(params):
        if spec is None:
            return jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adam", params)
        resolved = spec(params) if callable(spec) else spec
        with_none, treedef = jax.tree.flatten(params, is_leaf=lambda x: x is None)
        dims = jax.tree.leaves(resolved, is_leaf=lambda x: x is None or _is_dims(x))
        if len(dims) != len(with_none):
            raise ValueError(
                "muon: `muon_weight_dimension_numbers` must have one MuonDimensionNumbers "
                "(or None, for AdamW) per param leaf"
            )
        return treedef.unflatten(
            [
                None if p is None else ("adam" if d is None else "muon")
                for p, d in zip(with_none, dims, strict=True)
            ]
        )

    muon_part = chain(
        scale_by_muon(
            ns_coeffs,
            ns_steps,
            beta,
            eps,
            mu_dtype,
            nesterov=nesterov,
            adaptive=adaptive,
            preconditioning=preconditioning,
            weight_dimension_numbers=spec,
            batch_by_shape=batch_by_shape,
        ),
        scale_by_shape(spec, consistent_rms),
        classic.add_decayed_weights(weight_decay, weight_decay_mask),
        classic.scale_by_learning_rate(learning_rate),
    )
    adam_part = adamw(
        adam_learning_rate,
        b1=adam_b1,
        b2=adam_b2,
        eps=eps,
        eps_root=adam_eps_root,
        mu_dtype=mu_dtype,
        weight_decay=adam_weight_decay,
        nesterov=nesterov,
    )
    split = partition({"muon": muon_part, "adam": adam_part}, labels)

    def init(params):
        check_not_flat(params, "muon", "it orthogonalizes each 2-d leaf as a matrix")
        return split.init(params)

    return GradientTransformationExtraArgs(init, split.update)
