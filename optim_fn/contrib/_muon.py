"""Muon: momentum orthogonalized by Newton-Schulz iterations, for matrix-shaped params.

:func:`muon` applies Muon to the 2-d params (or to those its
``muon_weight_dimension_numbers`` selects, any rank) and AdamW to the others, as
optax does. The Newton-Schulz iteration needs each leaf's own rows and columns, so Muon
refuses flat mode at ``init``.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import jax.numpy as jnp
import numpy as np

from optim_fn.contrib._matrix_layout import leaf_layout, with_adam
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
from optim_fn.optimizers import classic
from optim_fn.optimizers.classic import adamw
from optim_fn.rules import orthogonalize as ortho
from optim_fn.rules.orthogonalize import MuonDimensionNumbers
from optim_fn.transforms._combine import chain
from optim_fn.tree._structure import full_like

_PRECONDITIONINGS = ortho.PRECONDITIONINGS
_DEFAULT_NS_COEFFS = ortho.NEWTON_SCHULZ_COEFFS
_DION_NS_COEFFS = (
    (4.0848, -6.8946, 2.927),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)
_NS_PRESETS = {
    "standard": _DEFAULT_NS_COEFFS,
    "dion": _DION_NS_COEFFS,
    "polar_express": ortho.POLAR_EXPRESS_COEFFS,
}
_axes, _fans = ortho.matrix_axes, ortho.matrix_fans


class MuonState(NamedTuple):
    count: Array
    mu: Updates
    ns_coeffs: Array
    hyperparams: Hyperparams


class ScaleByShapeState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


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
    return ortho.orthogonalize(
        x, ns_coeffs, ns_steps, dimension_numbers, preconditioning=preconditioning, eps=eps
    )


def _muon_rule(
    grad, mu, *, dims, split_sizes, ns_coeffs, count, beta, one_minus_beta, eps, ns_steps,
    preconditioning, orthogonalizer, nesterov, bias_correction, adaptive,
):
    """One leaf: momentum, its (bias-corrected, Nesterov) form, then its polar factor."""
    mu, mu_hat = ortho.muon_momentum(
        grad, mu, beta=beta, one_minus_beta=one_minus_beta, count=count, nesterov=nesterov,
        bias_correction=bias_correction,
    )
    direction = ortho.orthogonalize(
        mu_hat, ns_coeffs, ns_steps, dims, method=orthogonalizer,
        preconditioning=preconditioning, eps=eps, split_sizes=split_sizes,
    )
    if adaptive:
        direction = jnp.sum((mu_hat.conj() * direction).real) * direction
    return direction, mu


def _coefficients(
    where: str, ns_coeffs: Any, ns_steps: int, orthogonalizer: str = "newton_schulz"
) -> np.ndarray:
    """The coefficient table; Polar Express's by default for that orthogonalizer."""
    if orthogonalizer not in ortho.ORTHOGONALIZERS:
        raise ValueError(
            f"{where}: `orthogonalizer` must be one of {ortho.ORTHOGONALIZERS}, got "
            f"{orthogonalizer!r}"
        )
    if orthogonalizer == "polar_express" and (
        isinstance(ns_coeffs, tuple) and ns_coeffs == _DEFAULT_NS_COEFFS
    ):
        ns_coeffs = "polar_express"
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in _NS_PRESETS:
            raise ValueError(
                f"{where}: unknown `ns_coeffs` preset {ns_coeffs!r}; use one of "
                f"{sorted(_NS_PRESETS)} or give the coefficients"
            )
        if ns_coeffs == "polar_express":
            # The authors take the first steps of their sequence (the last row repeated).
            table = _NS_PRESETS[ns_coeffs]
            return np.asarray([table[min(i, len(table) - 1)] for i in range(ns_steps)])
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


def _check_steps(where: str, ns_steps: Any) -> None:
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 1:
        raise ValueError(f"{where}: `ns_steps` must be an integer >= 1, got {ns_steps!r}")


def _check_preconditioning(where: str, preconditioning: Any, orthogonalizer: str) -> None:
    if preconditioning not in _PRECONDITIONINGS:
        raise ValueError(
            f"{where}: `preconditioning` must be one of {_PRECONDITIONINGS}, got "
            f"{preconditioning!r}"
        )
    if preconditioning != "frobenius" and orthogonalizer != "newton_schulz":
        raise ValueError(
            f"{where}: `preconditioning={preconditioning!r}` applies to "
            f"`orthogonalizer='newton_schulz'` only (got {orthogonalizer!r}); leave it "
            "'frobenius'"
        )


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
    orthogonalizer: str = "newton_schulz",
    bias_correction: bool = True,
    split_sizes: Any = None,
) -> GradientTransformationExtraArgs:
    """Muon's direction: the orthogonalized (Nesterov) momentum of each matrix.

    .. math::
        m_t = \\beta m_{t-1} + (1-\\beta) g_t,\\quad
        u_t = \\mathrm{NS}(\\hat m_t) \\approx U V^T \\text{ for } \\hat m_t = U S V^T

    with :math:`\\hat m_t` bias-corrected (Nesterov form by default, as in
    :func:`optim_fn.nadam`; ``bias_correction=False``: :math:`\\beta m_t + (1-\\beta)g_t`
    or :math:`m_t`, the form of Jordan et al.'s Muon and ``torch.optim.Muon``).
    ``orthogonalizer``: ``"newton_schulz"`` (the iteration of
    :func:`orthogonalize_via_newton_schulz`), ``"polar_express"`` (Amsel et al. 2025's
    per-step coefficients, used when ``ns_coeffs`` is left at its default, after
    ``X / (1.01 ||X||_F + eps)``), ``"gram_newton_schulz"`` (the same polynomial iterated
    on the Gram matrix of a wide matrix; optax #1660) or ``"svd"`` (the exact
    :math:`UV^T`, for tests); see :mod:`optim_fn.rules.orthogonalize`.
    ``adaptive=True`` scales each leaf by :math:`\\mathrm{Re}\\langle \\hat m_t,
    u_t\\rangle` (Zhao et al.'s AdaMuon-style scale). ``weight_dimension_numbers``: None
    (every leaf a matrix), or a tree (or a function of the params returning one) of
    :class:`MuonDimensionNumbers`; a 4-d convolution kernel is one matrix with its
    spatial axes flattened into the input: ``MuonDimensionNumbers((0, 1, 2), 3)`` for
    flax's ``(h, w, in, out)``, ``((1, 2, 3), 0)`` for PyTorch's ``(out, in, h, w)`` (as
    Jordan et al.'s ``view(len(g), -1)``). ``split_sizes``: cut each matrix's output
    axis into blocks orthogonalized separately (an int: a block size, e.g. a head's
    width; a tuple of sizes, e.g. fused Q, K, V; or a tree / function of those per
    leaf). ``batch_by_shape``: orthogonalize the matrices of one shape in one batched
    call (True), leaf by leaf (False), or batched on accelerators only (None, the
    default: on the CPU batching trades a third less compile time for a third slower
    steps).
    """
    where = "scale_by_muon"
    _check_steps(where, ns_steps)
    coeffs = _coefficients(where, ns_coeffs, ns_steps, orthogonalizer)
    check.check_decay(where, "beta", beta)
    check.check_non_negative(where, "eps", eps)
    check.check_dtype(where, "mu_dtype", mu_dtype)
    _check_preconditioning(where, preconditioning, orthogonalizer)
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
            "orthogonalizer": orthogonalizer,
            "nesterov": nesterov,
            "bias_correction": bias_correction,
            "adaptive": adaptive,
        },
        leaf_keywords=leaf_layout(weight_dimension_numbers, split_sizes),
        constants={"ns_coeffs": lambda params: jnp.asarray(coeffs, hp.storage_dtype(params))},
        name=where,
        flat_reason="it orthogonalizes each leaf as a matrix",
        batch_by_shape=batch_by_shape,
    )


def _shape_rule(update, *, dims, split_sizes, consistent_rms):
    """One leaf times the factor of its ``fan_in x fan_out`` shape (per output block)."""

    def factor(fan_in, fan_out):
        if consistent_rms is None:
            return math.sqrt(max(1.0, fan_out / fan_in))
        return math.sqrt(max(fan_in, fan_out)) * consistent_rms

    fan_in, fan_out = _fans(update, dims)
    if split_sizes is None:
        return ((factor(fan_in, fan_out) * update).astype(update.dtype),)
    per_output = np.concatenate([np.full(size, factor(fan_in, size)) for size in split_sizes])
    stack, layout = ortho.to_matrices(update, dims)
    scaled = ortho.from_matrices(stack * per_output.astype(stack.real.dtype), layout)
    return (scaled.astype(update.dtype),)


@checks_once
def scale_by_shape(
    weight_dimension_numbers: Any = None,
    consistent_rms: float | None = None,
    split_sizes: Any = None,
) -> GradientTransformationExtraArgs:
    """Scales each matrix's update for its shape.

    ``sqrt(max(1, fan_out / fan_in))`` (Jordan et al.'s width transfer) or, with
    ``consistent_rms=r``, ``r sqrt(max(fan_in, fan_out))`` (an update RMS of about ``r``,
    comparable to AdamW's; Liu et al., "Muon is Scalable for LLM Training", 2025).
    With ``split_sizes`` (as :func:`scale_by_muon`'s) each output block gets the factor
    of its own ``fan_in x block`` shape, as if it were a separate parameter.
    """
    return rule_transform(
        _shape_rule,
        ScaleByShapeState,
        init_slots=lambda param: (),
        static={"consistent_rms": consistent_rms},
        leaf_keywords=leaf_layout(weight_dimension_numbers, split_sizes),
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
    orthogonalizer: str = "newton_schulz",
    bias_correction: bool = True,
    split_sizes: Any = None,
) -> GradientTransformationExtraArgs:
    """Muon for the matrices, AdamW for everything else.

    For the Muon params (2-d by default; those with non-None
    ``muon_weight_dimension_numbers`` otherwise, e.g. 4-d convolution kernels with
    their spatial axes flattened into the input axis, see :func:`scale_by_muon`):

    .. math::
        p_t = p_{t-1} - \\eta\\left(s\\, \\mathrm{NS}(\\hat m_t) + \\lambda p_{t-1}\\right)

    with :func:`scale_by_muon`'s direction and :func:`scale_by_shape`'s factor ``s``;
    the other params follow :func:`optim_fn.adamw` (``adam_*`` keywords, ``eps``,
    ``adam_learning_rate`` defaulting to ``learning_rate``, Nesterov as ``nesterov``).
    Defaults: ``ns_coeffs=(3.4445, -4.775, 2.0315)`` (or ``"dion"``,
    ``"polar_express"``), ``ns_steps=5``, ``beta=0.95``, ``nesterov=True``,
    ``orthogonalizer="newton_schulz"`` (or ``"polar_express"``,
    ``"gram_newton_schulz"``, ``"svd"``), ``bias_correction=True`` (optax's form;
    False: ``torch.optim.Muon``'s). ``split_sizes``: output blocks orthogonalized and
    scaled separately. Reference: Jordan et al., "Muon: An optimizer for hidden layers
    in neural networks" (2024). A 2-d ``ns_coeffs`` needs at least ``ns_steps`` rows
    and uses the last ``ns_steps``. PyTorch: ``torch.optim.Muon`` (2.9+) runs
    Newton-Schulz in bfloat16. Not in flat mode. ``batch_by_shape``: as in
    :func:`scale_by_muon` (default: batched on accelerators, leaf by leaf on the CPU).
    """
    check.check_learning_rate("muon", learning_rate)
    if adam_learning_rate is None:
        adam_learning_rate = learning_rate
    spec = muon_weight_dimension_numbers
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
            orthogonalizer=orthogonalizer,
            bias_correction=bias_correction,
            split_sizes=split_sizes,
        ),
        scale_by_shape(spec, consistent_rms, split_sizes),
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
    return with_adam("muon", muon_part, adam_part, spec, split_sizes)
