"""PSGD Kron: SGD preconditioned by a Kronecker product fitted by Li's criterion.

:func:`scale_by_kron` is the direction (before the learning rate) and :func:`kron` the
optimizer. The numbers follow Evan Walters' ``psgd-jax`` 0.2.9 (``psgd_jax.kron``), the
JAX port of Xi-Lin Li's PSGD Kron; ``merge_small_dims`` is ``kron_torch``'s ``merge_dims``.
The per-leaf math is :mod:`optim_fn.rules.kron`.

The randomness: the state keeps a PRNG key (from ``seed``). Each step derives the step's
key as ``fold_in(key, step - 1)`` and splits it as ``psgd-jax`` does (one draw decides the
occasional rebalancing of the factors, shared by every leaf; one key is split into one
key per leaf, in the order of ``jax.tree.leaves``, for that leaf's probe vector V). The
whole-leaf rule gets the shared key and its leaf's index (from the lifter, as data, so
leaves of one shape still batch), so the same seed gives the same numbers, and ``seed=5318008``
(the default, psgd-jax's constant) gives psgd-jax's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.numerics import safe_increment
from optim_fn.core.validation import check_flag as _check_flag
from optim_fn.core.validation import check_int as _check_int
from optim_fn.core.validation import checks_once
from optim_fn.optimizers.classic import add_decayed_weights, scale_by_learning_rate
from optim_fn.rules import kron as rules
from optim_fn.transforms._combine import chain

_FLAT_REASON = "its Kronecker factors are built from each leaf's own axes"
_COMPLEX_REASON = "it follows psgd-jax's real algorithm (real triangular factors)"
# psgd-jax's fixed seed, the default here so that the default numbers are the reference's.
DEFAULT_SEED = 5318008
# The probability of rebalancing the factors at a preconditioner update (psgd-jax's).
_BALANCE_PROBABILITY = 0.01
# The preconditioned direction's RMS is about 1 when P whitens it; capped at 1.1.
_RMS_LIMIT = 1.1


class KronState(NamedTuple):
    """:func:`scale_by_kron`'s state.

    Per leaf: ``mu`` (the momentum, shaped like the leaf; an empty array for ``b1=0``)
    and ``factors`` (a tuple of Kronecker factors :math:`Q_i`, one per axis of the leaf
    after ``merge_small_dims``: a matrix or, for a diagonal axis, a vector; at least
    float32). Shared: ``key`` (the PRNG key data, uint32) and ``update_counter`` (steps
    since the last preconditioner update).
    """

    count: Array
    mu: Updates
    factors: Updates
    key: Array
    update_counter: Array
    hyperparams: Hyperparams


def precond_update_prob_schedule(
    max_prob: float = 1.0, min_prob: float = 0.03, decay: float = 0.001, flat_start: int = 500
) -> Callable[[Array], Array]:
    """The authors' preconditioner update probability: flat, then exponential decay.

    :math:`p(n) = \\min(\\max(p_{max} e^{-d (n - n_0)}, p_{min}), p_{max})` at step
    :math:`n` (1 at the first update): ``max_prob`` for the first ``flat_start`` steps,
    then down to ``min_prob`` (0.03 from about step 4000 with the defaults).
    """

    def schedule(n: Array) -> Array:
        decayed = max_prob * jnp.exp(-decay * (n - flat_start))
        return jnp.minimum(jnp.maximum(decayed, min_prob), max_prob)

    return schedule


def merged_shape(shape: tuple[int, ...], merge_small_dims: bool) -> tuple[int, ...]:
    """The shape the factors are fitted on: with ``merge_small_dims``, a tensor of more
    than two axes becomes the matrix ``(prod(shape[:-1]), shape[-1])``.

    ``kron_torch`` picks the first of ``(prod(shape[:-1]), shape[-1])`` and
    ``(shape[0], prod(shape[1:]))`` when ``last - prod(shape[:-1]) <= prod(shape[1:]) -
    first``, which always holds (``first * last <= prod(shape)``).
    """
    if not merge_small_dims or len(shape) <= 2:
        return tuple(shape)
    return (math.prod(shape[:-1]), shape[-1])


def _step_draws(stored: dict, hyperparams: dict, count: Array) -> tuple[dict, dict]:
    """This step's shared draws and the deterministic update schedule (as psgd-jax)."""
    step_key = jax.random.fold_in(stored["key"], count - 1)
    _, update_key = jax.random.split(step_key)
    rest, balance_key = jax.random.split(update_key)
    do_balance = jax.random.uniform(balance_key) < _BALANCE_PROBABILITY
    _, probe_key = jax.random.split(rest)
    # Every 1/p-th step rather than a coin flip with probability p (psgd-jax, kron_torch).
    counter = safe_increment(stored["update_counter"])
    do_update = counter >= 1 / hyperparams["precond_update_prob"]
    keywords = {"do_update": do_update, "do_balance": do_balance, "probe_key": probe_key}
    return keywords, {"key": stored["key"], "update_counter": jnp.where(do_update, 0, counter)}


def _kron_rule(
    grad, mu, factors, *, count, b1, one_minus_b1, precond_lr, precond_update_prob, do_update,
    do_balance, probe_key, leaf_index, leaf_count, use_momentum, momentum_into_precond_update,
    merge_small_dims,
):
    del precond_update_prob  # used by _step_draws
    if use_momentum:
        mu = one_minus_b1 * grad + b1 * mu
        momentum = mu / (1 - b1**count).astype(mu.dtype)
    else:
        momentum = grad
    shape = merged_shape(grad.shape, merge_small_dims)
    momentum = momentum.reshape(shape)
    fit_on = momentum if momentum_into_precond_update else grad.reshape(shape)

    def update_factors(factors):
        if len(factors) > 1:
            factors = jax.lax.cond(do_balance, rules.balance, lambda f: f, factors)
        probe_keys = jax.random.split(probe_key, leaf_count)
        v = jax.random.normal(probe_keys[leaf_index], shape, fit_on.dtype)
        damping = jnp.sqrt(jnp.finfo(jnp.float32).eps).astype(fit_on.dtype)
        h = fit_on + damping * jnp.mean(jnp.abs(fit_on)) * v
        new = rules.whitening_update(factors, h, v, precond_lr)
        return tuple(n.astype(f.dtype) for n, f in zip(new, factors, strict=True))

    factors = jax.lax.cond(do_update, update_factors, lambda f: f, tuple(factors))
    direction = rules.clip_rms(rules.precondition(factors, momentum), _RMS_LIMIT)
    return direction.reshape(grad.shape), mu, factors




def _key_data(where: str, seed: Any) -> Callable[[dict], Array]:
    """``scalars=`` maker for the stored key: from an integer seed or a PRNG key."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return lambda values: jax.random.PRNGKey(int(seed))
    if isinstance(seed, jax.Array) and jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        data = jax.random.key_data(seed)
    else:
        data = None if isinstance(seed, bool) else np.asarray(seed) if seed is not None else None
    if data is None or data.shape != (2,) or data.dtype != np.uint32:
        raise ValueError(
            f"{where}: `seed` must be an integer or a PRNG key (jax.random.key(n) or "
            f"jax.random.PRNGKey(n)), got {seed!r}"
        )
    return lambda values: jnp.asarray(data)


def _shifted(schedule: Callable) -> Callable:
    """The lifter evaluates schedules at the steps done (0 first); psgd-jax at the step
    being taken (1 first)."""
    return lambda count: schedule(count + 1)


@checks_once
def scale_by_kron(
    b1: ScalarOrSchedule = 0.9,
    precond_update_prob: ScalarOrSchedule | None = None,
    max_size_triangular: int = 8192,
    min_ndim_triangular: int = 2,
    memory_save_mode: str | None = None,
    momentum_into_precond_update: bool = True,
    precond_lr: ScalarOrSchedule = 0.1,
    precond_init_scale: float = 1.0,
    merge_small_dims: bool = False,
    seed: Any = DEFAULT_SEED,
    mu_dtype: Any = None,
    precond_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """PSGD Kron's direction (before the learning rate).

    Per leaf :math:`W` with gradient :math:`g_t` (reshaped to a matrix by
    ``merge_small_dims``), momentum with the authors' bias correction
    :math:`m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t`, :math:`\\hat m_t = m_t / (1 -
    \\beta_1^t)` (:math:`\\hat m_t = g_t` for ``b1=0``), and a preconditioner
    :math:`P = \\bigotimes_i Q_i^T Q_i` with one factor per axis (upper triangular, or
    diagonal: see ``max_size_triangular``, ``min_ndim_triangular``, ``memory_save_mode``).
    At the steps when the preconditioner is updated, with a probe
    :math:`v \\sim N(0, I)` and :math:`h = \\hat m_t + \\sqrt{\\epsilon_{32}}\\,
    \\mathrm{mean}|\\hat m_t|\\, v` (:math:`g_t` instead of :math:`\\hat m_t` when
    ``momentum_into_precond_update=False``), every factor takes one step of the fit
    :math:`\\min_P E[h^T P h + v^T P^{-1} v]` on its Lie group
    (:func:`optim_fn.rules.kron.whitening_update`, step size ``precond_lr``
    :math:`\\eta`):

    .. math::
        Q_i \\leftarrow Q_i - \\frac{\\eta\\,\\mathrm{triu}(A_{(i)}A_{(i)}^T -
            B_{(i)}B_{(i)}^T)}{\\|A_{(i)}A_{(i)}^T + B_{(i)}B_{(i)}^T\\|} Q_i, \\quad
        A = h \\times_j Q_j, \\quad B = v \\times_j Q_j^{-T}

    (about once in 100 updates the factors are first rebalanced to equal largest
    entries). The direction is :math:`u_t = P \\hat m_t`, scaled down to RMS 1.1 if above.

    The preconditioner is updated when the steps since its last update reach :math:`1/p`
    (every :math:`\\lceil 1/p \\rceil`-th step for a constant :math:`p`: a counter, not a
    coin flip, as both references) with ``precond_update_prob`` :math:`p`, a number or a
    schedule of the step :math:`n` (1 at the first update); default the authors'
    :func:`precond_update_prob_schedule` (1 for 500 steps, then decaying to 0.03).
    ``max_size_triangular`` (8192): larger axes get a diagonal factor;
    ``min_ndim_triangular`` (2): leaves with fewer axes get diagonal factors;
    ``memory_save_mode``: None, ``"one_diag"`` (the largest axis diagonal) or
    ``"all_diag"``; ``precond_init_scale`` (1): :math:`P_0 = s^2 I`;
    ``merge_small_dims`` (False, as psgd-jax; kron_torch merges): fit the factors of a
    tensor of 3 or more axes on a matrix (:func:`merged_shape`); ``seed``: an integer or
    a PRNG key for the probes and the rebalancing draws (see the module's docstring);
    ``mu_dtype`` (default the params') and ``precond_dtype`` (default the params', at
    least float32): the dtypes of the momentum and of the factors.
    Defaults: ``b1=0.9``, ``precond_lr=0.1``. Real params only; not in flat mode.

    References: X.-L. Li, "Preconditioned Stochastic Gradient Descent", IEEE TNNLS 2018
    (arXiv:1512.04202); X.-L. Li, "Black Box Lie Group Preconditioners for SGD",
    arXiv:2211.04422 (2022); E. Walters, ``psgd-jax`` and ``kron_torch``.
    """
    where = "scale_by_kron"
    check.check_decay(where, "b1", b1)
    if precond_update_prob is None:
        precond_update_prob = precond_update_prob_schedule()
    check.check_scalar(where, "precond_update_prob", precond_update_prob)
    if not callable(precond_update_prob) and not 0 < float(precond_update_prob) <= 1:
        raise ValueError(
            f"{where}: `precond_update_prob` must be in (0, 1] or a schedule, "
            f"got {precond_update_prob!r}"
        )
    _check_int(where, "max_size_triangular", max_size_triangular, 0)
    _check_int(where, "min_ndim_triangular", min_ndim_triangular, 0)
    if memory_save_mode not in rules.MEMORY_SAVE_MODES:
        raise ValueError(
            f"{where}: `memory_save_mode` must be one of {rules.MEMORY_SAVE_MODES}, "
            f"got {memory_save_mode!r}"
        )
    _check_flag(where, "momentum_into_precond_update", momentum_into_precond_update)
    _check_flag(where, "merge_small_dims", merge_small_dims)
    check.check_non_negative(where, "precond_lr", precond_lr)
    scale = precond_init_scale
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(
            f"{where}: `precond_init_scale` must be a number > 0, got {precond_init_scale!r}"
        )
    check.check_dtype(where, "mu_dtype", mu_dtype)
    check.check_dtype(where, "precond_dtype", precond_dtype)
    make_key = _key_data(where, seed)
    use_momentum = callable(b1) or float(b1) != 0.0

    def init_slots(param):
        shape = merged_shape(param.shape, merge_small_dims)
        diagonal = rules.diagonal_axes(
            shape, max_size_triangular, min_ndim_triangular, memory_save_mode
        )
        dtype = jnp.promote_types(param.dtype, jnp.float32)
        dtype = dtype if precond_dtype is None else jnp.dtype(precond_dtype)
        mu_type = param.dtype if mu_dtype is None else jnp.dtype(mu_dtype)
        # zeros_like: the momentum is placed like its param (sharded under FSDP).
        mu = jnp.zeros_like(param, dtype=mu_type) if use_momentum else jnp.zeros((0,), mu_type)
        return mu, rules.init_factors(shape, diagonal, float(precond_init_scale), dtype)

    prob = _shifted(precond_update_prob) if callable(precond_update_prob) else precond_update_prob
    return rule_transform(
        _kron_rule,
        KronState,
        slots=("mu", "factors"),
        init_slots=init_slots,
        hyperparams={"b1": b1, "precond_lr": precond_lr, "precond_update_prob": prob},
        decays=("b1",),
        static={
            "use_momentum": use_momentum,
            "momentum_into_precond_update": momentum_into_precond_update,
            "merge_small_dims": merge_small_dims,
        },
        leaf_keywords=lambda grads: [
            {"leaf_count": len(jax.tree.leaves(grads))} for _ in jax.tree.leaves(grads)
        ],
        scalars={"key": make_key, "update_counter": lambda values: jnp.zeros([], jnp.int32)},
        step_scalars=_step_draws,
        name=where,
        flat_reason=_FLAT_REASON,
        complex_reason=_COMPLEX_REASON,
        batch_by_shape=None,
    )


@checks_once
def kron(
    learning_rate: ScalarOrSchedule = 0.001,
    b1: ScalarOrSchedule = 0.9,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = None,
    precond_update_prob: ScalarOrSchedule | None = None,
    max_size_triangular: int = 8192,
    min_ndim_triangular: int = 2,
    memory_save_mode: str | None = None,
    momentum_into_precond_update: bool = True,
    precond_lr: ScalarOrSchedule = 0.1,
    precond_init_scale: float = 1.0,
    merge_small_dims: bool = False,
    seed: Any = DEFAULT_SEED,
    mu_dtype: Any = None,
    precond_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """PSGD Kron: :math:`W \\leftarrow W - \\alpha (u_t + \\lambda W)` with
    :func:`scale_by_kron`'s :math:`u_t` and decoupled ``weight_decay`` :math:`\\lambda`
    (on the leaves ``weight_decay_mask`` selects), as psgd-jax's ``kron``.

    Defaults (psgd-jax's): ``learning_rate=0.001``, ``b1=0.9``, no weight decay, the
    authors' update probability schedule, ``max_size_triangular=8192``,
    ``min_ndim_triangular=2``, ``precond_lr=0.1``, ``precond_init_scale=1``. Li,
    "Preconditioned Stochastic Gradient Descent" (IEEE TNNLS 2018); Li, "Black Box Lie
    Group Preconditioners for SGD" (2022).
    """
    check.check_learning_rate("kron", learning_rate)
    return chain(
        scale_by_kron(
            b1, precond_update_prob, max_size_triangular, min_ndim_triangular,
            memory_save_mode, momentum_into_precond_update, precond_lr, precond_init_scale,
            merge_small_dims, seed, mu_dtype, precond_dtype,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
