"""Orthogonalisers: the polar factor ``U V^T`` of ``X = U S V^T``, as plain math on arrays.

The Muon family (:mod:`optim_fn.contrib`'s ``muon``, ``normuon``, ``adamuon``) replaces a
matrix's momentum by (an approximation of) its polar factor. Four ways to compute it:

* ``"newton_schulz"``: ``X / (||X||_F + eps)``, then the quintic steps
  :math:`X \\mapsto aX + (bA + cA^2)X`, :math:`A = XX^H` (Jordan et al. 2024; one triple
  for every step, or one row per step);
* ``"polar_express"``: the same steps with the per-step minimax-optimal coefficients of
  Amsel et al. 2025 (:data:`POLAR_EXPRESS_COEFFS`) after ``X / (1.01 ||X||_F + eps)``;
* ``"gram_newton_schulz"``: the same polynomial, iterated on the small Gram matrix
  :math:`R = XX^H` of a wide ``X`` with the accumulated factor ``Q`` applied once at the
  end and a restart (``X <- QX``, ``R <- XX^H``) before the steps in ``restarts``
  (Dao-AILab's gram-newton-schulz; optax PR #1717);
* ``"svd"``: the exact ``U V^T`` from an SVD (for tests: slow, and it maps zero singular
  values to arbitrary directions where the iterations keep them at zero).

Tall matrices are transposed first, so every iteration works on the smaller Gram matrix.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.rules.adam_variants import first_moment_hat
from optim_fn.rules.classic import debias, moving_average

Array = jax.Array

ORTHOGONALIZERS = ("newton_schulz", "polar_express", "gram_newton_schulz", "svd")
PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
NEWTON_SCHULZ_COEFFS = (3.4445, -4.775, 2.0315)
# Amsel et al.'s `optimal_composition(l=1e-3, num_iters=10, safety_factor_eps=1e-2,
# cushion=0.02)` (NoahAmsel/PolarExpress, polar_express.py), evaluated in float64;
# tests/test_muon_successors.py recomputes them from our transcription of that routine.
POLAR_EXPRESS_COEFFS = (
    (8.237312490495555, -23.157747414558198, 16.680568411445915),
    (4.082441999064838, -2.893047735332589, 0.5252849256975651),
    (3.9263479922546547, -2.854746803476529, 0.5318022422894988),
    (3.2982187133085152, -2.424541981026706, 0.48632008358844064),
    (2.297036943455257, -1.63662558125903, 0.4002628455953626),
    (1.8763805351440408, -1.2347896577722248, 0.35891887501668485),
    (1.856442348572721, -1.2132449881149632, 0.3568003487930794),
    (1.8564367725311115, -1.2132398983353458, 0.3568007177502274),
    (1.8564311670389742, -1.2132289082904242, 0.3567953310203733),
    (1.8749954775665585, -1.249990955154933, 0.3749954775883744),
)
# The authors divide by 1.01 ||X||_F: a margin for the rounding of the norm.
POLAR_EXPRESS_SAFETY = 1.01
GRAM_RESTARTS = (2,)


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a weight are its input (``reduction_axis``) and output axes.

    The other axes are batch axes: each slice is orthogonalized on its own.
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


def matrix_axes(x: Array, dims: MuonDimensionNumbers) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The (reduction, output) axes of ``x``, normalised to non-negative ints."""

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


def matrix_fans(x: Array, dims: MuonDimensionNumbers) -> tuple[int, int]:
    """``(fan_in, fan_out)``: the sizes of the reduction and output axes, multiplied."""
    reduction, output = matrix_axes(x, dims)
    return math.prod(x.shape[a] for a in reduction), math.prod(x.shape[a] for a in output)


def to_matrices(x: Array, dims: MuonDimensionNumbers) -> tuple[Array, tuple]:
    """``x`` as a stack ``(batch, fan_in, fan_out)`` and what :func:`from_matrices` needs."""
    reduction, output = matrix_axes(x, dims)
    batch = tuple(a for a in range(x.ndim) if a not in reduction + output)
    order = batch + reduction + output
    shape = [x.shape[a] for a in order]
    stack = x.transpose(order).reshape(
        math.prod(shape[: len(batch)]),
        math.prod(x.shape[a] for a in reduction),
        math.prod(x.shape[a] for a in output),
    )
    return stack, (order, shape)


def from_matrices(stack: Array, layout: tuple) -> Array:
    """Inverse of :func:`to_matrices`."""
    order, shape = layout
    inverse = sorted(range(len(order)), key=lambda i: order[i])
    return stack.reshape(shape).transpose(inverse)


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


def _steps(coeffs: Array, ns_steps: int) -> list:
    return [coeffs] * ns_steps if coeffs.ndim == 1 else list(coeffs)


def _newton_schulz(x, coeffs, ns_steps, preconditioning, eps):
    if preconditioning == "frobenius":
        x = x / (jnp.linalg.norm(x) + eps)
    elif preconditioning == "spectral":
        x = x / (jnp.linalg.norm(x, ord=2) + eps)
    for index, step_coeffs in enumerate(_steps(coeffs, ns_steps)):
        if index == 0 and preconditioning == "aol":
            x = _aol_first_step(x, step_coeffs, eps)
        elif index == 0 and preconditioning == "schatten":
            x = _schatten_first_step(x, step_coeffs, eps)
        else:
            x = _ns_step(x, step_coeffs)
    return x


def _gram_newton_schulz(x, coeffs, ns_steps, eps, restarts):
    x = x / (jnp.linalg.norm(x) + eps)
    if x.shape[0] == x.shape[1]:
        # As the reference: a square matrix gains nothing from the Gram form.
        return _newton_schulz(x, coeffs, ns_steps, "none", eps)
    steps = _steps(coeffs, ns_steps)
    identity = jnp.eye(x.shape[0], dtype=x.dtype)
    r, q = _gram(x), None
    for index, (a, b, c) in enumerate(steps):
        restart = index in restarts and index != 0
        if restart:
            x = q @ x
            r = _gram(x)
        z = b * r + c * r @ r
        q = z + a * identity if index == 0 or restart else a * q + q @ z
        if index < len(steps) - 1 and index + 1 not in restarts:
            rz = a * r + r @ z
            r = a * rz + z @ rz
    return q @ x


def _svd_polar(x):
    u, _, vh = jnp.linalg.svd(x, full_matrices=False)
    return u @ vh


def orthogonalize_matrix(
    x: Array,
    coeffs: Array,
    ns_steps: int,
    *,
    method: str = "newton_schulz",
    preconditioning: str = "frobenius",
    eps: Array | float = 1e-8,
    restarts: Sequence[int] = GRAM_RESTARTS,
) -> Array:
    """The (approximate) polar factor of one matrix by ``method`` (see the module doc).

    ``coeffs``: one ``(a, b, c)`` triple for all ``ns_steps`` steps, or one row per step.
    ``preconditioning`` (Newton-Schulz only): Frobenius or spectral normalisation, or
    the AOL / Schatten rescaling folded into the first step. ``restarts``: the Gram
    iteration's restart steps.
    """
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    coeffs = coeffs.astype(x.dtype)
    if method == "newton_schulz":
        x = _newton_schulz(x, coeffs, ns_steps, preconditioning, eps)
    elif method == "polar_express":
        x = x / (jnp.linalg.norm(x) * POLAR_EXPRESS_SAFETY + eps)
        x = _newton_schulz(x, coeffs, ns_steps, "none", eps)
    elif method == "gram_newton_schulz":
        x = _gram_newton_schulz(x, coeffs, ns_steps, eps, tuple(restarts))
    elif method == "svd":
        x = _svd_polar(x)
    else:
        raise ValueError(f"unknown orthogonalizer {method!r}; use one of {ORTHOGONALIZERS}")
    return x.T if transposed else x


def orthogonalize(
    x: Array,
    coeffs: Array,
    ns_steps: int,
    dims: MuonDimensionNumbers,
    *,
    method: str = "newton_schulz",
    preconditioning: str = "frobenius",
    eps: Array | float = 1e-8,
    split_sizes: Sequence[int] | None = None,
) -> Array:
    """:func:`orthogonalize_matrix` on each matrix of ``x`` (axes named by ``dims``).

    ``split_sizes``: cut the (flattened) output axis into blocks of these sizes,
    orthogonalized separately (e.g. the Q, K and V parts of a fused projection, or the
    heads of an attention weight), as if each block were its own parameter.
    """
    stack, layout = to_matrices(x, dims)

    def one(matrix):
        return orthogonalize_matrix(
            matrix, coeffs, ns_steps, method=method, preconditioning=preconditioning, eps=eps
        )

    if split_sizes is None:
        result = jax.vmap(one)(stack)
    else:
        ends = list(itertools.accumulate(split_sizes))
        blocks = jnp.split(stack, ends[:-1], axis=-1)
        result = jnp.concatenate([jax.vmap(one)(block) for block in blocks], axis=-1)
    return from_matrices(result, layout)


def muon_momentum(
    grad: Array,
    mu: Array,
    *,
    beta: Array,
    one_minus_beta: Array,
    count: Array,
    nesterov: bool,
    bias_correction: bool,
) -> tuple[Array, Array]:
    """``(m_t, m_hat)``: the momentum ``m_t = b m + (1-b) g`` and the matrix to orthogonalize.

    ``m_hat``: ``b m_t + (1-b) g`` (Nesterov) or ``m_t``; with ``bias_correction`` the two
    terms are divided by ``1 - b^(t+1)`` and ``1 - b^t`` (optax's form) or ``m_t`` by
    ``1 - b^t``; without it, the form of Jordan et al.'s Muon, NorMuon and AdaMuon.
    """
    mu = moving_average(grad, mu, beta, one_minus_beta)
    if bias_correction:
        return mu, first_moment_hat(mu, grad, beta, one_minus_beta, count, nesterov)
    if nesterov:
        return mu, beta * mu + one_minus_beta * grad
    return mu, mu


def block_norms(stack: Array, split_sizes: Sequence[int] | None) -> Array:
    """The Frobenius norm of each matrix of ``stack`` ``(batch, in, out)``, or of each of
    its output blocks, broadcastable against ``stack``."""
    if split_sizes is None:
        return jnp.sqrt(jnp.sum(jnp.square(stack), axis=(-2, -1), keepdims=True))
    blocks = jnp.split(stack, list(itertools.accumulate(split_sizes))[:-1], axis=-1)
    norms = [jnp.sqrt(jnp.sum(jnp.square(b), axis=(-2, -1), keepdims=True)) for b in blocks]
    return jnp.concatenate(
        [
            jnp.broadcast_to(n, (*b.shape[:-2], 1, b.shape[-1]))
            for n, b in zip(norms, blocks, strict=True)
        ],
        axis=-1,
    )


def normuon(
    grad: Array, mu: Array, nu: Array, *, dims, split_sizes, ns_coeffs, count, beta,
    one_minus_beta, b2,
    one_minus_b2, eps, ns_eps, ns_steps, orthogonalizer, nesterov,
) -> tuple[Array, Array, Array]:
    r"""NorMuon (Li et al. 2025): Muon's direction with a neuron-wise second moment.

    :math:`O = \mathrm{orth}(\hat m_t)` per matrix (``fan_in x fan_out``);
    :math:`v_t = \beta_2 v + (1-\beta_2)\,\mathrm{mean}_{in}(O^2)` (one entry per output
    neuron); :math:`\tilde O = O / (\sqrt{v_t} + \epsilon)`, rescaled to the Frobenius
    norm of :math:`O` (per output block with ``split_sizes``): :math:`u = \tilde O\,
    \|O\|_F / (\|\tilde O\|_F + \epsilon)`. ``nu`` has the leaf's shape with its
    reduction axes of size 1.
    """
    mu, mu_hat = muon_momentum(
        grad, mu, beta=beta, one_minus_beta=one_minus_beta, count=count, nesterov=nesterov,
        bias_correction=False,
    )
    direction = orthogonalize(
        mu_hat, ns_coeffs, ns_steps, dims, method=orthogonalizer, eps=ns_eps,
        split_sizes=split_sizes,
    )
    stack, layout = to_matrices(direction, dims)
    second, second_layout = to_matrices(nu, dims)
    norm = block_norms(stack, split_sizes)
    second = moving_average(jnp.mean(jnp.square(stack), axis=-2, keepdims=True), second, b2,
                            one_minus_b2)
    stack = stack / (jnp.sqrt(second) + eps)
    stack = stack * (norm / (block_norms(stack, split_sizes) + eps))
    return from_matrices(stack, layout), mu, from_matrices(second, second_layout)


def adamuon(
    grad: Array, mu: Array, nu: Array, *, dims, split_sizes, ns_coeffs, count, beta,
    one_minus_beta, b2,
    one_minus_b2, eps, ns_eps, ns_steps, orthogonalizer, nesterov, rms_scale,
) -> tuple[Array, Array, Array]:
    r"""AdaMuon (Si et al. 2025): an elementwise second moment of Muon's direction.

    :math:`O = \mathrm{orth}(\hat m_t)`; :math:`v_t = \beta_2 v + (1-\beta_2) O^2`;
    :math:`\hat O = O / (\sqrt{v_t / (1-\beta_2^t)} + \epsilon)`;
    :math:`u = \hat O \sqrt{\min(n_{in}, n_{out})} / (\|\hat O\|_F + \epsilon)
    \cdot r \sqrt{\max(n_{in}, n_{out})}` per matrix (per output block), an update
    RMS of about ``r = rms_scale``.
    """
    mu, mu_hat = muon_momentum(
        grad, mu, beta=beta, one_minus_beta=one_minus_beta, count=count, nesterov=nesterov,
        bias_correction=False,
    )
    direction = orthogonalize(
        mu_hat, ns_coeffs, ns_steps, dims, method=orthogonalizer, eps=ns_eps,
        split_sizes=split_sizes,
    )
    nu = moving_average(jnp.square(direction), nu, b2, one_minus_b2)
    direction = direction / (jnp.sqrt(debias(nu, b2, count)) + eps)
    stack, layout = to_matrices(direction, dims)
    fan_in, fan_out = stack.shape[-2], stack.shape[-1]
    widths = (fan_out,) if split_sizes is None else tuple(split_sizes)
    small = np.concatenate([np.full(w, math.sqrt(min(fan_in, w))) for w in widths])
    large = np.concatenate([np.full(w, rms_scale * math.sqrt(max(fan_in, w))) for w in widths])
    dtype = stack.dtype
    stack = stack * (small.astype(dtype) / (block_norms(stack, split_sizes) + eps))
    stack = stack * large.astype(dtype)
    return from_matrices(stack, layout), mu, nu
