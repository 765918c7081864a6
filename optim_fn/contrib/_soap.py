"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner (Vyas et al., 2024).

Per leaf (viewed as a tensor with axes ``i``), SOAP keeps Shampoo's Kronecker factor
statistics :math:`L_i` (one ``d_i x d_i`` matrix per preconditioned axis), their
eigenbases :math:`Q_i`, and Adam's moments of the gradient rotated into those bases.
Every ``precondition_frequency`` steps the bases are refreshed by one power-iteration
step and a QR decomposition. The factors need each leaf's own axes, so SOAP refuses
flat mode at ``init``.

The Shampoo core (:func:`~optim_fn.rules.shampoo.kronecker_factor`, ``project`` and
``project_back``, shared with Shampoo in :mod:`optim_fn.rules.shampoo`;
:func:`initial_eigenbasis`, :func:`refreshed_eigenbasis`) is written on one array, and
:func:`scale_by_soap`'s rule reads like the algorithm. The numbers follow the authors'
PyTorch code (github.com/nikhilvyas/SOAP, ``soap.py`` as of commit f42d296, the version
released with the paper), which is what users compare against. A later rewrite of that
file changes the defaults and the algorithm (warm-up, ``eps`` as a floor); it is not
what this module implements.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import leafwise_transform, refuse_complex, rule_transform
from optim_fn.core.validation import check_flag as _check_flag
from optim_fn.core.validation import check_int as _check_int
from optim_fn.core.validation import checks_once
from optim_fn.flat._ravel import check_not_flat
from optim_fn.rules.shampoo import kronecker_factor, project, project_back
from optim_fn.transforms._combine import chain

# Matrix products in full float32 (GPUs default to TF32), so results do not depend on
# the device.
_HIGHEST = jax.lax.Precision.HIGHEST
_FLAT_REASON = "its Kronecker factors are built from each leaf's own axes"
_COMPLEX_REASON = (
    "it follows the authors' real algorithm (Kronecker factors G G^T, real eigenbases)"
)


class SoapState(NamedTuple):
    """:func:`scale_by_soap`'s state.

    Per leaf: ``exp_avg`` (Adam's first moment, kept in the current eigenbasis, as the
    authors do), ``exp_avg_sq`` (second moment, in the eigenbasis), ``GG`` (a tuple with
    one Kronecker factor statistic per axis of the leaf, after ``merge_dims``; a ``(0, 0)``
    placeholder for an axis that is not preconditioned) and ``Q`` (their eigenbases, same
    layout). State is float32 for bfloat16/float16 params.
    """

    count: Array
    exp_avg: Updates
    exp_avg_sq: Updates
    GG: Updates  # noqa: N815 - the authors' name
    Q: Updates  # noqa: N815 - the authors' name
    hyperparams: Hyperparams


class SoapStepState(NamedTuple):
    """The state of :func:`soap`'s last block (learning rate and weight decay)."""

    count: Array
    hyperparams: Hyperparams


# ----------------------------------------------------------------------------------------
# Which axes are preconditioned.


class _Layout(NamedTuple):
    shape: tuple[int, ...]  # the shape the factors are of (after merge_dims)
    preconditioned: tuple[bool, ...]  # per axis of `shape`


def merged_shape(shape: tuple[int, ...], max_precond_dim: int) -> tuple[int, ...]:
    """Consecutive axes merged while their product stays ``<= max_precond_dim``.

    The authors' rule: ``(2, 3, 8)`` with ``max_precond_dim=8`` becomes ``(6, 8)``; an
    axis larger than ``max_precond_dim`` stays alone.
    """
    merged: list[int] = []
    run = 1
    for size in shape:
        if run * size > max_precond_dim:
            if run > 1:
                merged.append(run)
                run = size
            else:
                merged.append(size)
                run = 1
        else:
            run *= size
    if run > 1 or not merged:
        merged.append(run)
    return tuple(merged)


def _layout(
    shape: tuple[int, ...], max_precond_dim: int, merge_dims: bool, precondition_1d: bool
) -> _Layout:
    if len(shape) == 0:
        # The authors' merge_dims gives a scalar a 1x1 factor, whose eigenbasis is +-1:
        # Adam either way.
        return _Layout(shape, ())
    if len(shape) == 1:
        return _Layout(shape, (precondition_1d and shape[0] <= max_precond_dim,))
    if merge_dims:
        shape = merged_shape(shape, max_precond_dim)
    return _Layout(shape, tuple(size <= max_precond_dim for size in shape))


# ----------------------------------------------------------------------------------------
# The Shampoo core, on one array.


def initial_eigenbasis(factor: Array) -> Array:
    """Eigenvectors of the (symmetric) ``factor``, by decreasing eigenvalue."""
    return jnp.linalg.eigh(factor)[1][:, ::-1]


def refreshed_eigenbasis(factor: Array, basis: Array) -> tuple[Array, Array]:
    """One power-iteration step from ``basis``, orthonormalised by QR.

    The columns of ``basis`` are first sorted by their Rayleigh quotients
    :math:`q^T L q`, largest first; returns the new basis and that order (the second
    moment's coordinates along this axis follow it).
    """
    estimated_eigenvalues = jnp.sum(basis * jnp.matmul(factor, basis, precision=_HIGHEST), axis=0)
    order = jnp.argsort(-estimated_eigenvalues)
    power_step = jnp.matmul(factor, basis[:, order], precision=_HIGHEST)
    return jnp.linalg.qr(power_step)[0], order


# ----------------------------------------------------------------------------------------
# The SOAP rule on one leaf.


def _accumulate_factors(gg: tuple, g: Array, layout: _Layout, beta: Array, one_minus: Array):
    return tuple(
        beta * factor + one_minus * kronecker_factor(g, axis) if active else factor
        for axis, (factor, active) in enumerate(zip(gg, layout.preconditioned, strict=True))
    )


def _refresh(exp_avg: Array, exp_avg_sq: Array, gg: tuple, bases: tuple, layout: _Layout):
    """New eigenbases; the moments follow them (the first moment rotated, the second's
    coordinates re-ordered, as the authors do)."""
    exp_avg = project_back(exp_avg, bases, layout.preconditioned)
    new_bases = []
    for axis, (factor, basis, active) in enumerate(
        zip(gg, bases, layout.preconditioned, strict=True)
    ):
        if not active:
            new_bases.append(basis)
            continue
        basis, order = refreshed_eigenbasis(factor, basis)
        exp_avg_sq = jnp.take(exp_avg_sq, order, axis=axis)
        new_bases.append(basis)
    new_bases = tuple(new_bases)
    return project(exp_avg, new_bases, layout.preconditioned), exp_avg_sq, new_bases


def _soap_rule(
    grad: Array,
    exp_avg: Array,
    exp_avg_sq: Array,
    gg: tuple,
    bases: tuple,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    shampoo_beta: Array,
    one_minus_shampoo_beta: Array,
    eps: Array,
    precondition_frequency: int,
    max_precond_dim: int,
    merge_dims: bool,
    precondition_1d: bool,
    normalize_grads: bool,
    correct_bias: bool,
) -> tuple:
    layout = _layout(grad.shape, max_precond_dim, merge_dims, precondition_1d)
    active = layout.preconditioned
    g = grad.astype(exp_avg.dtype).reshape(layout.shape)
    m, v = exp_avg.reshape(layout.shape), exp_avg_sq.reshape(layout.shape)

    def first_call(m, v, gg, bases):
        # Only sets up the eigenbasis: the gradient never meets a basis built from itself.
        gg = _accumulate_factors(gg, g, layout, shampoo_beta, one_minus_shampoo_beta)
        bases = tuple(
            initial_eigenbasis(f) if on else q for f, q, on in zip(gg, bases, active, strict=True)
        )
        return jnp.zeros_like(g), m, v, gg, bases

    def later_call(m, v, gg, bases):
        t = (count - 1).astype(g.dtype)  # the authors count from the second call
        g_rotated = project(g, bases, active)
        m = b1 * m + one_minus_b1 * g_rotated
        v = b2 * v + one_minus_b2 * g_rotated**2
        direction = project_back(m / (jnp.sqrt(v) + eps), bases, active)
        if normalize_grads:
            direction = direction / (1e-30 + jnp.sqrt(jnp.mean(direction**2)))
        if correct_bias:
            direction = direction * (jnp.sqrt(1 - b2**t) / (1 - b1**t))
        # The factors and bases are updated after the step, as the authors do.
        gg = _accumulate_factors(gg, g, layout, shampoo_beta, one_minus_shampoo_beta)
        if any(active):
            m, v, bases = jax.lax.cond(
                (count - 1) % precondition_frequency == 0,
                lambda m, v, bases: _refresh(m, v, gg, bases, layout),
                lambda m, v, bases: (m, v, bases),
                m,
                v,
                bases,
            )
        return direction, m, v, gg, bases

    if any(active):
        outputs = jax.lax.cond(count == 1, first_call, later_call, m, v, gg, bases)
    else:  # Adam, without the eigenbasis machinery; the first call still only counts.
        direction, m_new, v_new, _, _ = later_call(m, v, gg, bases)
        keep = count == 1
        outputs = (
            jnp.where(keep, 0, direction),
            jnp.where(keep, m, m_new),
            jnp.where(keep, v, v_new),
            gg,
            bases,
        )
    direction, m, v, gg, bases = outputs
    return direction.reshape(grad.shape), m.reshape(grad.shape), v.reshape(grad.shape), gg, bases


def _init_slots(param: Array, layout_of) -> tuple:
    dtype = jnp.promote_types(param.dtype, jnp.float32)
    layout = layout_of(param.shape)
    factors = tuple(
        jnp.zeros((size, size) if on else (0, 0), dtype)
        for size, on in zip(layout.shape, layout.preconditioned, strict=True)
    )
    zeros = jnp.zeros(param.shape, dtype)
    return zeros, zeros, factors, factors




@checks_once
def scale_by_soap(
    b1: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.95,
    shampoo_beta: ScalarOrSchedule = -1,
    eps: ScalarOrSchedule = 1e-8,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    normalize_grads: bool = False,
    correct_bias: bool = True,
) -> GradientTransformationExtraArgs:
    """SOAP's direction: Adam in the eigenbasis of Shampoo's Kronecker factors.

    For a leaf with gradient :math:`G_t` and factors :math:`L_i` over its axes ``i``
    (after ``merge_dims``; axes longer than ``max_precond_dim`` and, unless
    ``precondition_1d``, vectors keep the identity), with :math:`t` counting from the
    second call:

    .. math::
        \\tilde G &= G_t \\times_i Q_i^T, \\qquad
        m_t = \\beta_1 m + (1-\\beta_1)\\tilde G, \\qquad
        v_t = \\beta_2 v + (1-\\beta_2)\\tilde G^2 \\\\
        D_t &= \\frac{\\sqrt{1-\\beta_2^t}}{1-\\beta_1^t}\\,
              \\Big(\\frac{m_t}{\\sqrt{v_t} + \\epsilon}\\Big) \\times_i Q_i \\\\
        L_i &\\leftarrow \\beta_s L_i + (1-\\beta_s)\\, G_{(i)} G_{(i)}^T

    (``normalize_grads`` divides the rotated-back direction by its RMS before the bias
    correction; ``correct_bias=False`` drops the factor). The first call only builds the
    factors and :math:`Q_i` = their eigenvectors by decreasing eigenvalue, and returns a
    zero update. Every ``precondition_frequency`` steps after the factor update,
    :math:`Q_i \\leftarrow \\mathrm{QR}(L_i Q_i)` with the columns of :math:`Q_i` sorted
    by :math:`q^T L_i q` first; :math:`m` moves to the new basis and :math:`v`'s
    coordinates follow the sort. ``shampoo_beta`` :math:`\\beta_s` < 0 means ``b2``.

    Defaults are the authors': ``b1=b2=0.95``, ``eps=1e-8``,
    ``precondition_frequency=10``, ``max_precond_dim=10000``. Reference: Vyas et al.,
    "SOAP: Improving and Stabilizing Shampoo using Adam" (arXiv:2409.11321, 2024).
    Differences from the authors' code: between refreshes it does not rotate :math:`m`
    out of the basis and back (an identity up to rounding); scalars are plain Adam
    (their ``merge_dims`` gives them a 1x1 factor, with the same numbers); state is at
    least float32; the ``channels_last`` data format is not offered. Real params only;
    not in flat mode.
    """
    where = "scale_by_soap"
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_scalar(where, "shampoo_beta", shampoo_beta)
    if not callable(shampoo_beta) and shampoo_beta >= 1:
        raise ValueError(
            f"{where}: `shampoo_beta` must be in [0, 1), or negative to use `b2`, got "
            f"{shampoo_beta!r}"
        )
    check.check_non_negative(where, "eps", eps)
    _check_int(where, "precondition_frequency", precondition_frequency, 1)
    _check_int(where, "max_precond_dim", max_precond_dim, 1)
    for name, flag in [
        ("merge_dims", merge_dims),
        ("precondition_1d", precondition_1d),
        ("normalize_grads", normalize_grads),
        ("correct_bias", correct_bias),
    ]:
        _check_flag(where, name, flag)
    if not callable(shampoo_beta) and shampoo_beta < 0:
        shampoo_beta = b2
    static = {
        "precondition_frequency": precondition_frequency,
        "max_precond_dim": max_precond_dim,
        "merge_dims": merge_dims,
        "precondition_1d": precondition_1d,
        "normalize_grads": normalize_grads,
        "correct_bias": correct_bias,
    }

    def layout_of(shape):
        return _layout(shape, max_precond_dim, merge_dims, precondition_1d)

    return leafwise_transform(
        _soap_rule,
        SoapState,
        slots=("exp_avg", "exp_avg_sq", "GG", "Q"),
        init_slots=lambda param: _init_slots(param, layout_of),
        hyperparams={"b1": b1, "b2": b2, "shampoo_beta": shampoo_beta, "eps": eps},
        decays=("b1", "b2", "shampoo_beta"),
        static=static,
        name=where,
        flat_reason=_FLAT_REASON,
        complex_reason=_COMPLEX_REASON,
    )


def _soap_step_rule(
    direction: Array, *, param: Array, count: Array, learning_rate: Array, weight_decay: Array
) -> tuple:
    """The authors' parameter step ``p <- (p - lr D)(1 - lr wd)``, as an update."""
    decay = learning_rate * weight_decay
    update = -learning_rate * direction * (1 - decay) - decay * param
    return (jnp.where(count == 1, jnp.zeros_like(update), update),)


@checks_once
def soap(
    learning_rate: ScalarOrSchedule = 3e-3,
    b1: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.95,
    shampoo_beta: ScalarOrSchedule = -1,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.01,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    normalize_grads: bool = False,
    correct_bias: bool = True,
) -> GradientTransformationExtraArgs:
    """SOAP (Vyas et al., 2024): :func:`scale_by_soap`'s direction and decoupled decay.

    .. math::
        p_t = (1 - \\eta\\lambda)\\,(p_{t-1} - \\eta D_t)

    with :math:`D_t` from :func:`scale_by_soap`, :math:`\\eta` = ``learning_rate`` and
    :math:`\\lambda` = ``weight_decay``, applied after the step as in the authors' code
    (AdamW's :math:`p - \\eta(D + \\lambda p)` differs by :math:`\\eta^2\\lambda D`). The
    first update is zero, weight decay included: that call only builds the eigenbasis.
    Defaults are the authors': ``learning_rate=3e-3``, ``b1=b2=0.95``,
    ``shampoo_beta=-1`` (use ``b2``), ``eps=1e-8``, ``weight_decay=0.01``,
    ``precondition_frequency=10``, ``max_precond_dim=10000``. Reference: "SOAP:
    Improving and Stabilizing Shampoo using Adam" (arXiv:2409.11321); the authors'
    PyTorch code is github.com/nikhilvyas/SOAP. Real params only; not in flat mode.
    """
    check.check_learning_rate("soap", learning_rate)
    check.check_non_negative("soap", "weight_decay", weight_decay)
    direction = scale_by_soap(
        b1,
        b2,
        shampoo_beta,
        eps,
        precondition_frequency,
        max_precond_dim,
        merge_dims,
        precondition_1d,
        normalize_grads,
        correct_bias,
    )
    step = rule_transform(
        _soap_step_rule,
        SoapStepState,
        hyperparams={"learning_rate": learning_rate, "weight_decay": weight_decay},
        uses_params=True,
        name="soap",
    )
    both = chain(direction, step)

    def init(params):
        check_not_flat(params, "soap", _FLAT_REASON)
        refuse_complex(params, "soap", _COMPLEX_REASON)
        return both.init(params)

    return GradientTransformationExtraArgs(init, both.update)
