"""Linear minimisation oracles (LMOs) of Scion's norms, as plain math on one array.

Pethick et al. 2025, "Training Deep Learning Models with Norm-Constrained LMOs"
(arXiv:2502.07529; the authors' ``scion.py``, LIONS-EPFL/scion). For a norm ball of
radius 1, :math:`\\mathrm{lmo}(d) = \\arg\\min_{\\|s\\| \\le 1} \\langle d, s\\rangle =
-\\mathrm{dir}(d)`; the functions below return ``dir(d)`` (the authors' ``Norm.lmo``: the
sign is applied by the step, ``p <- p - lr * scale * dir(d)``).

Layout: a matrix is ``(fan_in, fan_out)``, the layout of flax's ``Dense`` kernel and of
``Embed``'s ``(vocab, features)`` table, i.e. the transpose of PyTorch's ``(out, in)``
weight that the authors' code reads. The formulas below are the authors', rewritten
for that layout (``d_in = x.shape[0]``, ``d_out = x.shape[1]``). A convolution kernel is
``(*spatial, in, out)`` (flax's ``HWIO``).

=================  ===========================================================
``spectral``       :math:`s\\,UV^T` for :math:`d = USV^T` (Newton-Schulz), with
                   :math:`s = \\sqrt{d_{out}/d_{in}}` (``normalized``) or
                   :math:`\\sqrt{d_{out}}`, and :math:`\\max(1, s)` with ``max_scale``;
                   leading axes of a >2-d leaf are batch axes (one matrix each)
``spectral_conv``  :math:`UV^T` of the ``(prod(spatial) in, out)`` matrix times
                   :math:`\\sqrt{d_{out}/d_{in}} / \\prod \\mathrm{spatial}`
``column``         each input's weights (a row here, a column of PyTorch's
                   weight) divided by their RMS (times :math:`d_{in}` with
                   ``normalized``): the :math:`\\|\\cdot\\|_{1\\to RMS}` ball
``row``            each output's weights divided by their Euclidean norm (times
                   :math:`\\sqrt{d_{in}}` with ``normalized``): :math:`RMS\\to\\infty`
``sign``           :math:`\\mathrm{sign}(d)` (divided by :math:`d_{in}` with
                   ``normalized``): the :math:`\\|\\cdot\\|_{1\\to\\infty}` ball
``bias_rms``       :math:`d / (\\mathrm{RMS}(d) + \\epsilon)` for vectors and scalars
=================  ===========================================================
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from optim_fn.rules import orthogonalize as ortho
from optim_fn.rules.orthogonalize import MuonDimensionNumbers

Array = jax.Array

LMO_NORMS = ("spectral", "spectral_conv", "column", "row", "sign", "bias_rms")
# The authors' defaults of ``normalized`` for each norm (Spectral, ColNorm, RowNorm, Sign).
NORMALIZED_DEFAULTS = {"spectral": True, "column": False, "row": True, "sign": True}
# The authors' additive epsilons: Newton-Schulz's Frobenius normalisation, the RMS ones.
NS_EPS = 1e-7
RMS_EPS = 1e-8


def auto_norm(ndim: int) -> str | None:
    """The authors' ``Auto`` choice for a leaf of ``ndim`` axes (None: no choice)."""
    if ndim <= 1:
        return "bias_rms"
    if ndim == 2:
        return "spectral"
    if ndim in (3, 4):
        return "spectral_conv"
    return None


def spectral_direction(
    x: Array, coeffs: Array, ns_steps: int, *, normalized: bool, max_scale: bool,
    ns_eps: Array | float, method: str = "newton_schulz",
) -> Array:
    """The spectral-norm LMO direction of each ``(fan_in, fan_out)`` matrix of ``x``."""
    fan_in, fan_out = x.shape[-2], x.shape[-1]
    dims = MuonDimensionNumbers(x.ndim - 2, x.ndim - 1)
    polar = ortho.orthogonalize(x, coeffs, ns_steps, dims, method=method, eps=ns_eps)
    scale = math.sqrt(fan_out / fan_in) if normalized else math.sqrt(fan_out)
    if max_scale:
        scale = max(1.0, scale)
    return polar * scale


def spectral_conv_direction(
    x: Array, coeffs: Array, ns_steps: int, *, ns_eps: Array | float,
    method: str = "newton_schulz",
) -> Array:
    """The authors' ``SpectralConv`` for a ``(*spatial, in, out)`` kernel.

    Divided by the kernel's size, ``prod(spatial)``: the authors divide by ``k^2`` with
    ``k`` the first spatial size (the same for square kernels), pytorch-optimizer by the
    product.
    """
    spatial, fan_in, fan_out = x.shape[:-2], x.shape[-2], x.shape[-1]
    dims = MuonDimensionNumbers(tuple(range(x.ndim - 1)), x.ndim - 1)
    polar = ortho.orthogonalize(x, coeffs, ns_steps, dims, method=method, eps=ns_eps)
    return polar * (math.sqrt(fan_out / fan_in) / math.prod(spatial))


def column_direction(x: Array, *, normalized: bool, eps: Array | float) -> Array:
    """Each input's weights (axis 1 of ``(fan_in, fan_out)``) over their RMS."""
    fan_in, fan_out = x.shape
    rms = jnp.sqrt(jnp.sum(jnp.square(x), axis=1, keepdims=True)) / math.sqrt(fan_out)
    if normalized:
        rms = rms * fan_in
    return x / (rms + eps)


def row_direction(x: Array, *, normalized: bool, eps: Array | float) -> Array:
    """Each output's weights (axis 0 of ``(fan_in, fan_out)``) over their norm."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=0, keepdims=True))
    if normalized:
        norm = norm * math.sqrt(x.shape[0])
    return x / (norm + eps)


def sign_direction(x: Array, *, normalized: bool) -> Array:
    """``sign(x)``, divided by ``fan_in`` when ``normalized``."""
    return jnp.sign(x) / x.shape[0] if normalized else jnp.sign(x)


def bias_rms_direction(x: Array, *, eps: Array | float) -> Array:
    """A vector (or scalar) over its RMS."""
    return x / (jnp.sqrt(jnp.mean(jnp.square(x))) + eps)


def lmo_direction(
    x: Array, norm: str, *, normalized: bool, max_scale: bool, coeffs: Array,
    ns_steps: int, ns_eps: Array | float, eps: Array | float, method: str,
) -> Array:
    """``dir(x)`` for the norm named ``norm`` (one of :data:`LMO_NORMS`)."""
    if norm == "spectral":
        return spectral_direction(x, coeffs, ns_steps, normalized=normalized,
                                  max_scale=max_scale, ns_eps=ns_eps, method=method)
    if norm == "spectral_conv":
        return spectral_conv_direction(x, coeffs, ns_steps, ns_eps=ns_eps, method=method)
    if norm == "column":
        return column_direction(x, normalized=normalized, eps=eps)
    if norm == "row":
        return row_direction(x, normalized=normalized, eps=eps)
    if norm == "sign":
        return sign_direction(x, normalized=normalized)
    if norm == "bias_rms":
        return bias_rms_direction(x, eps=eps)
    raise ValueError(f"unknown LMO norm {norm!r}; use one of {LMO_NORMS}")


def scion(
    grad, d, *, norm, normalized, max_scale, coeffs, ns_steps, method, momentum, scale,
    ns_eps, eps,
):
    """Scion's step on one leaf: the averaged gradient and the scaled LMO direction.

    .. math::
        d_t = (1 - \\alpha) d_{t-1} + \\alpha g_t,\\qquad u_t = \\rho\\,\\mathrm{dir}(d_t)

    with ``alpha = momentum`` (the authors' convention: one minus the usual momentum)
    and ``rho = scale`` (the radius). Returns ``(u_t, d_t)``.
    """
    d = (1 - momentum) * d + momentum * grad
    direction = lmo_direction(
        d, norm, normalized=normalized, max_scale=max_scale, coeffs=jnp.asarray(coeffs),
        ns_steps=ns_steps, ns_eps=ns_eps, eps=eps, method=method,
    )
    return scale * direction, d
