"""Scion: steps along the linear minimisation oracle of a norm chosen per layer type.

Pethick, Xie, Antonakopoulos, Zhu, Silveti-Falls & Cevher 2025, "Training Deep Learning
Models with Norm-Constrained LMOs" (arXiv:2502.07529); the authors' code is
LIONS-EPFL/scion (``scion.py``: ``Scion``, the norms ``Spectral``, ``SpectralConv``,
``ColNorm``, ``RowNorm``, ``Sign``, ``BiasRMS``, ``Auto``). The LMOs are plain math in
:mod:`optim_fn.rules.lmo`; each leaf is one whole-leaf rule on the lifter.

The layer types are labels (e.g. from :func:`optim_fn.path_labels`), each with its norm and
radius, as the authors' parameter groups::

    labels = optim_fn.path_labels(
        {"embed/*": "embedding", "head/*": "head", "*bias": "vector", "*": "hidden"})
    opt = optim_fn.contrib.scion(
        2**-12,
        norms={"embedding": "column", "hidden": "spectral", "head": "sign",
               "vector": "bias_rms"},
        scales={"embedding": 50.0, "hidden": 50.0, "head": 3000.0, "vector": 1.0},
        labels=labels,
    )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

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
from optim_fn.rules import lmo
from optim_fn.rules import orthogonalize as ortho
from optim_fn.transforms._combine import chain
from optim_fn.transforms._partition import partition
from optim_fn.tree._structure import full_like

_ORTHOGONALIZERS = ("newton_schulz", "polar_express", "svd")
# Which leaves each norm accepts: (smallest ndim, largest ndim).
_RANKS = {
    "spectral": (2, None),
    "spectral_conv": (3, None),
    "column": (2, 2),
    "row": (2, 2),
    "sign": (2, 2),
    "bias_rms": (0, 1),
}


class ScionNorm(NamedTuple):
    """One layer type's norm: its name and the authors' options.

    ``name``: ``"spectral"`` (hidden matrices), ``"spectral_conv"`` (convolution kernels
    ``(*spatial, in, out)``), ``"column"`` and ``"row"`` (embeddings, input layers),
    ``"sign"`` (output heads), ``"bias_rms"`` (vectors) or ``"auto"`` (the authors'
    choice by the number of axes: <= 1 bias_rms, 2 spectral, 3-4 spectral_conv).
    ``normalized``: None for the authors' default of that norm (True for spectral, row
    and sign, False for column); see :mod:`optim_fn.rules.lmo`. ``max_scale``: spectral
    only, the factor :math:`\\max(1, \\sqrt{d_{out}/d_{in}})` (the authors' ``max=True``,
    for input layers).
    """

    name: str
    normalized: bool | None = None
    max_scale: bool = False


class ScionState(NamedTuple):
    """``d``: the averaged gradient of each leaf (the authors' ``momentum_buffer``)."""

    count: Array
    d: Updates
    hyperparams: Hyperparams


def _as_norm(where: str, norm: Any) -> ScionNorm:
    if isinstance(norm, str):
        norm = ScionNorm(norm)
    if not isinstance(norm, ScionNorm):
        raise TypeError(
            f"{where}: a norm must be a name or a `ScionNorm(name, normalized, max_scale)`, "
            f"got {norm!r}"
        )
    if norm.name != "auto" and norm.name not in lmo.LMO_NORMS:
        raise ValueError(
            f"{where}: unknown norm {norm.name!r}; use one of {('auto', *lmo.LMO_NORMS)}"
        )
    if norm.max_scale and norm.name not in ("spectral", "auto"):
        raise ValueError(f"{where}: `max_scale` applies to the spectral norm, not {norm.name!r}")
    return norm


def _leaf_keywords(where: str, norm: ScionNorm) -> Callable[[Any], list[dict]]:
    """Each leaf's norm (``auto`` resolved by its number of axes) and options."""

    def keywords(tree: Any) -> list[dict]:
        found = []
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            name = lmo.auto_norm(leaf.ndim) if norm.name == "auto" else norm.name
            low, high = _RANKS.get(name, (0, -1))
            if name is None or leaf.ndim < low or (high is not None and leaf.ndim > high):
                raise ValueError(
                    f"{where}: the norm {norm.name!r} does not apply to the leaf "
                    f"{jax.tree_util.keystr(path)} of shape {leaf.shape}; give its layer type "
                    "a norm for its number of axes (spectral: >= 2, spectral_conv: >= 3, "
                    "column / row / sign: 2, bias_rms: <= 1)"
                )
            normalized = norm.normalized
            if normalized is None:
                normalized = lmo.NORMALIZED_DEFAULTS.get(name, False)
            found.append({"norm": name, "normalized": bool(normalized),
                          "max_scale": bool(norm.max_scale and name == "spectral")})
        return found

    return keywords


def _coefficients(orthogonalizer: str, ns_steps: int) -> tuple:
    if orthogonalizer == "polar_express":
        table = ortho.POLAR_EXPRESS_COEFFS
        return tuple(table[min(i, len(table) - 1)] for i in range(ns_steps))
    return ortho.NEWTON_SCHULZ_COEFFS


def _one_norm(
    where: str, norm: ScionNorm, scale: ScalarOrSchedule, momentum: ScalarOrSchedule,
    ns_steps: int, orthogonalizer: str, ns_eps: ScalarOrSchedule, eps: ScalarOrSchedule,
    batch_by_shape: bool | None,
) -> GradientTransformationExtraArgs:
    keywords = _leaf_keywords(where, norm)
    inner = rule_transform(
        lmo.scion,
        ScionState,
        slots=("d",),
        init_slots=lambda param: (full_like(param, 0.0),),
        hyperparams={"momentum": momentum, "scale": scale, "ns_eps": ns_eps, "eps": eps},
        static={"coeffs": _coefficients(orthogonalizer, ns_steps), "ns_steps": ns_steps,
                "method": orthogonalizer},
        leaf_keywords=keywords,
        name=where,
        flat_reason="its norms read each leaf's rows and columns",
        complex_reason="its sign and spectral oracles are written for real matrices",
        batch_by_shape=batch_by_shape,
    )

    def init(params):
        check_not_flat(params, where, "its norms read each leaf's rows and columns")
        keywords(params)  # a leaf its norm does not apply to fails here, named
        return inner.init(params)

    return GradientTransformationExtraArgs(init, inner.update)


@checks_once
def scale_by_scion(
    norms: str | ScionNorm | Mapping[Any, str | ScionNorm] = "auto",
    scales: ScalarOrSchedule | Mapping[Any, ScalarOrSchedule] = 1.0,
    labels: Any = None,
    momentum: ScalarOrSchedule = 0.1,
    *,
    ns_steps: int = 5,
    orthogonalizer: str = "newton_schulz",
    ns_eps: ScalarOrSchedule = lmo.NS_EPS,
    eps: ScalarOrSchedule = lmo.RMS_EPS,
    batch_by_shape: bool | None = None,
) -> GradientTransformationExtraArgs:
    """Scion's direction: the radius times the LMO direction of the averaged gradient.

    .. math::
        d_t = (1-\\alpha) d_{t-1} + \\alpha g_t,\\qquad u_t = \\rho_\\ell\\,
        \\mathrm{dir}_\\ell(d_t)

    per leaf of layer type :math:`\\ell`, with :math:`\\alpha` = ``momentum`` (the
    authors' convention: the weight of the new gradient, one minus the usual momentum;
    1 means no averaging), :math:`\\rho_\\ell` = ``scales[ℓ]`` and the direction of
    ``norms[ℓ]`` (:class:`ScionNorm` or its name; see :mod:`optim_fn.rules.lmo`).
    ``norms``: one norm for every leaf, or ``{label: norm}`` with ``labels`` (a tree of
    labels or a function of the params returning one, e.g. :func:`optim_fn.path_labels`);
    ``scales`` likewise one radius or ``{label: radius}``. With a dict the state is a
    :func:`optim_fn.partition` state of one :class:`ScionState` per label.
    ``orthogonalizer``: the spectral norms' polar factor: ``"newton_schulz"`` (the
    authors' 5 quintic steps after ``X / (||X||_F + ns_eps)``), ``"polar_express"`` or
    ``"svd"`` (exact). Matrices are ``(fan_in, fan_out)`` (flax's layout); a leaf of more
    axes under ``"spectral"`` is a stack of matrices over its leading axes (e.g. stacked
    layers), under ``"spectral_conv"`` a ``(*spatial, in, out)`` convolution kernel.
    The authors run Newton-Schulz in bfloat16; here it runs in the params' dtype.
    """
    where = "scale_by_scion"
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 1:
        raise ValueError(f"{where}: `ns_steps` must be an integer >= 1, got {ns_steps!r}")
    if orthogonalizer not in _ORTHOGONALIZERS:
        raise ValueError(
            f"{where}: `orthogonalizer` must be one of {_ORTHOGONALIZERS}, got {orthogonalizer!r}"
        )
    check.check_decay(where, "momentum", momentum, allow_one=True)
    check.check_non_negative(where, "ns_eps", ns_eps)
    check.check_non_negative(where, "eps", eps)
    options = (ns_steps, orthogonalizer, ns_eps, eps, batch_by_shape)
    if not isinstance(norms, Mapping):
        if labels is not None or isinstance(scales, Mapping):
            raise ValueError(
                f"{where}: `labels` and a dict of `scales` go with a dict of `norms` "
                "{label: norm}; with one norm for every leaf give one scale and no labels"
            )
        check.check_scalar(where, "scales", scales)
        return _one_norm(where, _as_norm(where, norms), scales, momentum, *options)
    if labels is None:
        raise ValueError(
            f"{where}: `norms` is a dict {{label: norm}}: pass `labels=` (a tree of labels, "
            "or a function of the params such as `optim_fn.path_labels({...})`)"
        )
    if isinstance(scales, Mapping):
        missing = sorted(map(str, set(norms) - set(scales)))
        extra = sorted(map(str, set(scales) - set(norms)))
        if missing or extra:
            raise ValueError(
                f"{where}: `scales` must have the labels of `norms`; missing {missing}, "
                f"unknown {extra}"
            )
    per_label = {}
    for label, norm in norms.items():
        scale = scales[label] if isinstance(scales, Mapping) else scales
        check.check_scalar(where, f"scales[{label!r}]", scale)
        per_label[label] = _one_norm(
            f"{where}[{label!r}]", _as_norm(where, norm), scale, momentum, *options
        )
    return partition(per_label, labels)


@checks_once
def scion(
    learning_rate: ScalarOrSchedule,
    norms: str | ScionNorm | Mapping[Any, str | ScionNorm] = "auto",
    scales: ScalarOrSchedule | Mapping[Any, ScalarOrSchedule] = 1.0,
    labels: Any = None,
    momentum: ScalarOrSchedule = 0.1,
    *,
    unconstrained: bool = False,
    ns_steps: int = 5,
    orthogonalizer: str = "newton_schulz",
    ns_eps: ScalarOrSchedule = lmo.NS_EPS,
    eps: ScalarOrSchedule = lmo.RMS_EPS,
    batch_by_shape: bool | None = None,
) -> GradientTransformationExtraArgs:
    """Scion (Pethick et al. 2025): conditional-gradient steps on per-layer norm balls.

    .. math::
        p_t = (1-\\gamma) p_{t-1} - \\gamma \\rho_\\ell\\,\\mathrm{dir}_\\ell(d_t)
        \\quad\\text{(constrained, the default)},\\qquad
        p_t = p_{t-1} - \\gamma \\rho_\\ell\\,\\mathrm{dir}_\\ell(d_t)
        \\quad\\text{(``unconstrained=True``, "uScion")}

    with :math:`\\gamma` = ``learning_rate`` and :func:`scale_by_scion`'s averaged
    gradient :math:`d_t`, norms, radii (``scales``) and ``labels``. The constrained form
    keeps the iterates in the ball of radius :math:`\\rho_\\ell` (it is
    :math:`p \\leftarrow p + \\gamma(\\rho\\,\\mathrm{lmo}(d) - p)`, weight decay of 1 times
    the learning rate); it needs the params at ``update``. Defaults: ``momentum=0.1`` (the
    authors' recommended value; their class defaults to 1, no averaging), ``scales=1``,
    ``norms="auto"``, constrained (as the authors' ``unconstrained=False``; note
    ``pytorch_optimizer.SCION`` defaults to ``constraint=False``), 5 Newton-Schulz steps
    with ``ns_eps=1e-7``, ``eps=1e-8`` in the RMS norms. Example settings (the authors'
    README, nanoGPT): ``learning_rate=2**-12``, ``norms={"hidden": "spectral", "head":
    "sign"}``, ``scales={"hidden": 50.0, "head": 3000.0}``. Not in flat mode.
    """
    check.check_learning_rate("scion", learning_rate)
    blocks = [
        scale_by_scion(
            norms, scales, labels, momentum, ns_steps=ns_steps, orthogonalizer=orthogonalizer,
            ns_eps=ns_eps, eps=eps, batch_by_shape=batch_by_shape,
        )
    ]
    if not unconstrained:
        blocks.append(classic.add_decayed_weights(1.0))
    blocks.append(classic.scale_by_learning_rate(learning_rate))
    return chain(*blocks)
