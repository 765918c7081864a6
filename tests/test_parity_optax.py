"""Step-by-step differential tests of every seed optimizer and building block against optax.

optax is the oracle for the optax-convention numerics: for each configuration both
libraries run 100 steps on the same random gradients (a matrix, a vector, a 3-d array and
a scalar; the gradient scale of each step is 10**uniform(-2, 2), so the moments see four
orders of magnitude; a few entries are exactly zero for the first steps). At every step
the UPDATES are compared, and the params after ``apply_updates``::

    max over leaves |ours - optax|  /  max over leaves |optax|   <= 1e-6 (float32)
                                                                  <= 1e-12 (float64)

A convergence test would pass a wrong Adam; this does not (see ``test_grid_detects_*``,
which checks that flipping each option moves the updates far beyond the tolerance, so
an option that optim_fn silently ignored would fail here).

Each configuration compiles one program holding both 100-step ``lax.scan`` loops.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_catalogue import compile_options

import optim_fn

SHAPES = {"matrix": (4, 3), "vector": (5,), "cube": (2, 3, 2), "scalar": ()}
STEPS = 100
TOLERANCE = {np.float32: 1e-6, np.float64: 1e-12}

MASK_TREE = {"matrix": True, "vector": False, "cube": True, "scalar": False}


def mask_fn(params: Any) -> Any:
    """Decay only matrices and higher: the usual "not biases, not scalars"."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def inverse_time(count: jax.Array) -> jax.Array:
    return 0.1 / (1.0 + 0.05 * count)


WARMUP_COSINE = optax.warmup_cosine_decay_schedule(1e-4, 1e-2, 10, 100, 1e-4)
PIECEWISE = optax.piecewise_constant_schedule(0.1, {30: 0.5, 60: 0.1})


@functools.cache
def make_data(dtype: type) -> tuple[dict, dict]:
    """Initial params and ``STEPS`` stacked gradients with per-step scale 10**U(-2, 2)."""
    rng = np.random.default_rng(20240611)
    params = {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}
    scale = 10.0 ** rng.uniform(-2, 2, size=STEPS)
    grads = {}
    for k, s in SHAPES.items():
        g = rng.normal(size=(STEPS, *s)) * scale.reshape((STEPS,) + (1,) * len(s))
        grads[k] = g.astype(dtype)
    # Exact zeros exercise the s_t = 0 branch of adagrad and 0/eps in the others.
    grads["vector"][:5, :2] = 0.0
    return params, grads


def trajectories(transforms: tuple, applies: tuple, dtype: type) -> list:
    """Runs each transform for ``STEPS`` steps in one jitted program.

    Returns, per transform, ``(updates, params)``, each a tree of arrays stacked over steps.
    """
    params, grads = make_data(dtype)

    def run_one(transform, apply_updates, params, grads):
        def step(carry, grad):
            params, state = carry
            updates, state = transform.update(grad, state, params)
            params = apply_updates(params, updates)
            return (params, state), (updates, params)

        return jax.lax.scan(step, (params, transform.init(params)), grads)[1]

    def run_all(params, grads):
        return [run_one(t, a, params, grads) for t, a in zip(transforms, applies, strict=True)]

    # XLA's cheaper CPU pipeline (test_catalogue's options): ~3x faster compiles; ours and
    # optax's loops are in one program, compiled alike.
    compiled = jax.jit(run_all).lower(params, grads).compile(compile_options())
    return jax.device_get(compiled(params, grads))


def relative_error(ours: Any, reference: Any) -> float:
    """max over steps of (max |ours - reference| / max |reference|), maxima over the tree."""
    ours_leaves, ref_leaves = jax.tree.leaves(ours), jax.tree.leaves(reference)
    assert len(ours_leaves) == len(ref_leaves)
    diff = np.zeros(STEPS)
    scale = np.zeros(STEPS)
    for a, b in zip(ours_leaves, ref_leaves, strict=True):
        assert a.shape == b.shape
        a = np.asarray(a, np.float64).reshape(STEPS, -1)
        b = np.asarray(b, np.float64).reshape(STEPS, -1)
        diff = np.maximum(diff, np.abs(a - b).max(axis=1))
        scale = np.maximum(scale, np.abs(b).max(axis=1))
    assert np.all(scale > 0), "the reference produced an all-zero update: a vacuous check"
    return float(np.max(diff / scale))


class Case(NamedTuple):
    name: str
    ours: Callable[[], optax.GradientTransformation]
    optax: Callable[[], optax.GradientTransformation]
    dtypes: tuple = (np.float32, np.float64)


# Centered RMSprop with bias correction subtracts two nearly equal numbers: at t=1,
# v^ - m^2 = g^2 - g^2 = 0 exactly, and with initial_scale > 0 it is v0 d/(1-d) against
# g^2 up to 1e4. In float32 the result is dominated by rounding, so no two compilations
# agree to 1e-6 (optax's own eager and jitted runs differ by 5e-5 on these cases; optim_fn
# is the closer of the two to a float64 run). These run in float64 only; their float32
# counterparts below drop bias_correction.
FLOAT64_ONLY = (np.float64,)


# Hyperparameters are chosen so that each option visibly changes the numbers (e.g. an eps
# of 1e-4 where its placement is under test: at 1e-8 the two placements differ by ~1e-6).
CASES = [
    # --- sgd
    Case("sgd", lambda: optim_fn.sgd(0.1), lambda: optax.sgd(0.1)),
    Case("sgd_momentum", lambda: optim_fn.sgd(0.1, 0.9), lambda: optax.sgd(0.1, 0.9)),
    Case(
        "sgd_nesterov",
        lambda: optim_fn.sgd(0.05, 0.95, nesterov=True),
        lambda: optax.sgd(0.05, 0.95, nesterov=True),
    ),
    Case(
        "sgd_momentum_schedule",
        lambda: optim_fn.sgd(PIECEWISE, 0.9),
        lambda: optax.sgd(PIECEWISE, 0.9),
    ),
    # optax multiplies a Python-float decay by the bf16 buffer in bf16 (0.9 -> 0.8984375);
    # optim_fn keeps hyperparameters in float32. A NumPy float64 scalar is not weakly
    # typed, so optax then uses the same float32 decay and the two must agree exactly.
    Case(
        "sgd_momentum_bf16_accumulator",
        lambda: optim_fn.sgd(0.1, 0.9, accumulator_dtype=jnp.bfloat16),
        lambda: optax.sgd(0.1, np.float64(0.9), accumulator_dtype=jnp.bfloat16),
    ),
    # --- adagrad
    Case("adagrad", lambda: optim_fn.adagrad(0.1), lambda: optax.adagrad(0.1)),
    Case(
        "adagrad_zero_start",
        lambda: optim_fn.adagrad(0.5, initial_accumulator_value=0.0, eps=1e-3),
        lambda: optax.adagrad(0.5, initial_accumulator_value=0.0, eps=1e-3),
    ),
    # --- rmsprop
    Case("rmsprop", lambda: optim_fn.rmsprop(1e-2), lambda: optax.rmsprop(1e-2)),
    Case(
        "rmsprop_decay_eps",
        lambda: optim_fn.rmsprop(1e-2, decay=0.99, eps=1e-4),
        lambda: optax.rmsprop(1e-2, decay=0.99, eps=1e-4),
    ),
    Case(
        "rmsprop_centered",
        lambda: optim_fn.rmsprop(1e-2, eps=1e-4, centered=True),
        lambda: optax.rmsprop(1e-2, eps=1e-4, centered=True),
    ),
    Case(
        "rmsprop_momentum",
        lambda: optim_fn.rmsprop(1e-2, momentum=0.9),
        lambda: optax.rmsprop(1e-2, momentum=0.9),
    ),
    Case(
        "rmsprop_nesterov",
        lambda: optim_fn.rmsprop(1e-2, momentum=0.9, nesterov=True),
        lambda: optax.rmsprop(1e-2, momentum=0.9, nesterov=True),
    ),
    Case(
        "rmsprop_eps_outside_sqrt",
        lambda: optim_fn.rmsprop(1e-2, eps=1e-4, eps_in_sqrt=False),
        lambda: optax.rmsprop(1e-2, eps=1e-4, eps_in_sqrt=False),
    ),
    Case(
        "rmsprop_bias_correction",
        lambda: optim_fn.rmsprop(1e-2, decay=0.99, bias_correction=True),
        lambda: optax.rmsprop(1e-2, decay=0.99, bias_correction=True),
    ),
    Case(
        "rmsprop_initial_scale",
        lambda: optim_fn.rmsprop(1e-2, initial_scale=1.0),
        lambda: optax.rmsprop(1e-2, initial_scale=1.0),
    ),
    Case(
        "rmsprop_centered_all_options",
        lambda: optim_fn.rmsprop(
            1e-2, 0.95, 1e-4, 0.5, False, True, 0.8, True, bias_correction=True
        ),
        lambda: optax.rmsprop(1e-2, 0.95, 1e-4, 0.5, False, True, 0.8, True, bias_correction=True),
        FLOAT64_ONLY,
    ),
    Case(
        "rmsprop_centered_all_options_but_bias_correction",
        lambda: optim_fn.rmsprop(1e-2, 0.95, 1e-4, 0.5, False, True, 0.8, True),
        lambda: optax.rmsprop(1e-2, 0.95, 1e-4, 0.5, False, True, 0.8, True),
    ),
    Case(
        "rmsprop_schedule",
        lambda: optim_fn.rmsprop(inverse_time, momentum=0.9),
        lambda: optax.rmsprop(inverse_time, momentum=0.9),
    ),
    # --- adadelta (optax's default learning_rate=None climbs the gradient: always pass one)
    Case("adadelta", lambda: optim_fn.adadelta(1.0), lambda: optax.adadelta(1.0)),
    Case(
        "adadelta_rho_eps",
        lambda: optim_fn.adadelta(0.5, rho=0.95, eps=1e-4),
        lambda: optax.adadelta(0.5, rho=0.95, eps=1e-4),
    ),
    Case(
        "adadelta_weight_decay",
        lambda: optim_fn.adadelta(1.0, weight_decay=0.1),
        lambda: optax.adadelta(1.0, weight_decay=0.1),
    ),
    Case(
        "adadelta_weight_decay_mask",
        lambda: optim_fn.adadelta(1.0, weight_decay=0.1, weight_decay_mask=MASK_TREE),
        lambda: optax.adadelta(1.0, weight_decay=0.1, weight_decay_mask=MASK_TREE),
    ),
    # --- adam
    Case("adam", lambda: optim_fn.adam(1e-3), lambda: optax.adam(1e-3)),
    Case(
        "adam_betas_eps",
        lambda: optim_fn.adam(1e-2, b1=0.5, b2=0.99, eps=1e-3),
        lambda: optax.adam(1e-2, b1=0.5, b2=0.99, eps=1e-3),
    ),
    Case(
        "adam_nesterov",
        lambda: optim_fn.adam(1e-3, nesterov=True),
        lambda: optax.adam(1e-3, nesterov=True),
    ),
    Case(
        "adam_eps_root",
        lambda: optim_fn.adam(1e-3, eps_root=1e-4),
        lambda: optax.adam(1e-3, eps_root=1e-4),
    ),
    # See sgd_momentum_bf16_accumulator for why optax gets b1 as a NumPy scalar.
    Case(
        "adam_mu_dtype_bf16",
        lambda: optim_fn.adam(1e-3, mu_dtype=jnp.bfloat16),
        lambda: optax.adam(1e-3, b1=np.float64(0.9), mu_dtype=jnp.bfloat16),
    ),
    Case(
        "adam_schedule",
        lambda: optim_fn.adam(WARMUP_COSINE, nesterov=True),
        lambda: optax.adam(WARMUP_COSINE, nesterov=True),
    ),
    # --- adamw
    Case("adamw", lambda: optim_fn.adamw(1e-3), lambda: optax.adamw(1e-3)),
    Case(
        "adamw_weight_decay",
        lambda: optim_fn.adamw(1e-2, weight_decay=0.1),
        lambda: optax.adamw(1e-2, weight_decay=0.1),
    ),
    Case(
        "adamw_mask_tree",
        lambda: optim_fn.adamw(1e-2, weight_decay=0.1, mask=MASK_TREE),
        lambda: optax.adamw(1e-2, weight_decay=0.1, mask=MASK_TREE),
    ),
    Case(
        "adamw_mask_callable",
        lambda: optim_fn.adamw(1e-2, weight_decay=0.1, mask=mask_fn),
        lambda: optax.adamw(1e-2, weight_decay=0.1, mask=mask_fn),
    ),
    Case(
        "adamw_nesterov_eps_root",
        lambda: optim_fn.adamw(1e-2, eps_root=1e-4, weight_decay=0.1, nesterov=True),
        lambda: optax.adamw(1e-2, eps_root=1e-4, weight_decay=0.1, nesterov=True),
    ),
    Case(
        "adamw_schedules",
        lambda: optim_fn.adamw(WARMUP_COSINE, weight_decay=inverse_time, mask=mask_fn),
        lambda: optax.adamw(WARMUP_COSINE, weight_decay=inverse_time, mask=mask_fn),
    ),
    # --- building blocks
    Case("scale_by_adam", optim_fn.scale_by_adam, optax.scale_by_adam),
    Case(
        "scale_by_adam_all_options",
        lambda: optim_fn.scale_by_adam(0.8, 0.99, 1e-3, 1e-4, nesterov=True),
        lambda: optax.scale_by_adam(0.8, 0.99, 1e-3, 1e-4, nesterov=True),
    ),
    Case("scale_by_rms", optim_fn.scale_by_rms, optax.scale_by_rms),
    Case(
        "scale_by_rms_all_options",
        lambda: optim_fn.scale_by_rms(0.95, 1e-4, 0.5, eps_in_sqrt=False, bias_correction=True),
        lambda: optax.scale_by_rms(0.95, 1e-4, 0.5, eps_in_sqrt=False, bias_correction=True),
    ),
    Case("scale_by_stddev", optim_fn.scale_by_stddev, optax.scale_by_stddev),
    Case(
        "scale_by_stddev_all_options",
        lambda: optim_fn.scale_by_stddev(0.95, 1e-4, 0.5, eps_in_sqrt=False, bias_correction=True),
        lambda: optax.scale_by_stddev(0.95, 1e-4, 0.5, eps_in_sqrt=False, bias_correction=True),
        FLOAT64_ONLY,
    ),
    Case(
        "scale_by_stddev_all_options_but_bias_correction",
        lambda: optim_fn.scale_by_stddev(0.95, 1e-4, 0.5, eps_in_sqrt=False),
        lambda: optax.scale_by_stddev(0.95, 1e-4, 0.5, eps_in_sqrt=False),
    ),
    Case("scale_by_rss", optim_fn.scale_by_rss, optax.scale_by_rss),
    Case(
        "scale_by_rss_zero_start",
        lambda: optim_fn.scale_by_rss(0.0, 1e-3),
        lambda: optax.scale_by_rss(0.0, 1e-3),
    ),
    Case("scale_by_adadelta", optim_fn.scale_by_adadelta, optax.scale_by_adadelta),
    Case(
        "scale_by_adadelta_rho_eps",
        lambda: optim_fn.scale_by_adadelta(0.5, 1e-3),
        lambda: optax.scale_by_adadelta(0.5, 1e-3),
    ),
    Case("trace", lambda: optim_fn.trace(0.9), lambda: optax.trace(0.9)),
    Case(
        "trace_nesterov",
        lambda: optim_fn.trace(0.9, nesterov=True),
        lambda: optax.trace(0.9, nesterov=True),
    ),
    Case(
        "add_decayed_weights",
        lambda: optim_fn.add_decayed_weights(0.1),
        lambda: optax.add_decayed_weights(0.1),
    ),
    Case(
        "add_decayed_weights_mask",
        lambda: optim_fn.add_decayed_weights(0.1, mask_fn),
        lambda: optax.add_decayed_weights(0.1, mask_fn),
    ),
    Case(
        "add_decayed_weights_schedule",
        lambda: optim_fn.add_decayed_weights(inverse_time, MASK_TREE),
        lambda: optax.add_decayed_weights(inverse_time, MASK_TREE),
    ),
    Case(
        "scale_by_learning_rate",
        lambda: optim_fn.scale_by_learning_rate(0.1),
        lambda: optax.scale_by_learning_rate(0.1),
    ),
    Case(
        "scale_by_learning_rate_no_flip",
        lambda: optim_fn.scale_by_learning_rate(0.1, flip_sign=False),
        lambda: optax.scale_by_learning_rate(0.1, flip_sign=False),
    ),
    Case(
        "scale_by_learning_rate_schedule",
        lambda: optim_fn.scale_by_learning_rate(WARMUP_COSINE),
        lambda: optax.scale_by_learning_rate(WARMUP_COSINE),
    ),
    # --- mixing the two libraries in one chain
    Case(
        "optax_chain_of_optim_fn_adam_then_clip",
        lambda: optax.chain(optim_fn.adam(1e-3), optax.clip(1.0)),
        lambda: optax.chain(optax.adam(1e-3), optax.clip(1.0)),
    ),
    Case(
        "optax_chain_of_optim_fn_adam_then_active_clip",
        lambda: optax.chain(optim_fn.adam(1.0), optax.clip(0.5)),
        lambda: optax.chain(optax.adam(1.0), optax.clip(0.5)),
    ),
    Case(
        "optim_fn_chain_of_clip_then_adam",
        lambda: optim_fn.chain(optax.clip(1.0), optim_fn.adam(1e-3)),
        lambda: optax.chain(optax.clip(1.0), optax.adam(1e-3)),
    ),
]


def parity_errors(case: Case, dtype: type) -> dict[str, float]:
    """Runs ``case`` in ``dtype``; returns the max relative errors of updates and params."""
    with jax.enable_x64(dtype == np.float64):
        (our_updates, our_params), (ref_updates, ref_params) = trajectories(
            (case.ours(), case.optax()), (optim_fn.apply_updates, optax.apply_updates), dtype
        )
    for leaf in jax.tree.leaves((our_updates, our_params)):
        assert leaf.dtype == dtype, f"{case.name}: got a {leaf.dtype} leaf in a {dtype} run"
        assert np.all(np.isfinite(leaf)), f"{case.name}: non-finite values"
    return {
        "updates": relative_error(our_updates, ref_updates),
        "params": relative_error(our_params, ref_params),
    }


PARITY_PARAMS = [
    pytest.param(case, dtype, id=f"{case.name}-{'f32' if dtype == np.float32 else 'f64'}")
    for dtype in (np.float32, np.float64)
    for case in CASES
    if dtype in case.dtypes
]


@pytest.mark.parametrize("case, dtype", PARITY_PARAMS)
def test_matches_optax_step_by_step(case: Case, dtype: type):
    errors = parity_errors(case, dtype)
    tolerance = TOLERANCE[dtype]
    assert errors["updates"] <= tolerance, f"{case.name} updates: {errors}"
    assert errors["params"] <= tolerance, f"{case.name} params: {errors}"


# Each pair: optim_fn with an option, optax with that option flipped. If the option had no
# visible effect on this data, the parity test above could not tell whether optim_fn
# honours it; these show each one moves the updates by far more than the tolerance.
MUTANTS = [
    Case(
        "sgd_nesterov",
        lambda: optim_fn.sgd(0.05, 0.95, nesterov=True),
        lambda: optax.sgd(0.05, 0.95),
    ),
    Case(
        "rmsprop_centered",
        lambda: optim_fn.rmsprop(1e-2, eps=1e-4, centered=True),
        lambda: optax.rmsprop(1e-2, eps=1e-4),
    ),
    Case(
        "rmsprop_eps_in_sqrt",
        lambda: optim_fn.rmsprop(1e-2, eps=1e-4, eps_in_sqrt=False),
        lambda: optax.rmsprop(1e-2, eps=1e-4),
    ),
    Case(
        "rmsprop_bias_correction",
        lambda: optim_fn.rmsprop(1e-2, decay=0.99, bias_correction=True),
        lambda: optax.rmsprop(1e-2, decay=0.99),
    ),
    Case(
        "rmsprop_initial_scale",
        lambda: optim_fn.rmsprop(1e-2, initial_scale=1.0),
        lambda: optax.rmsprop(1e-2),
    ),
    Case(
        "rmsprop_nesterov",
        lambda: optim_fn.rmsprop(1e-2, momentum=0.9, nesterov=True),
        lambda: optax.rmsprop(1e-2, momentum=0.9),
    ),
    Case(
        "adam_nesterov",
        lambda: optim_fn.adam(1e-3, nesterov=True),
        lambda: optax.adam(1e-3),
    ),
    Case(
        "adam_eps_root",
        lambda: optim_fn.adam(1e-3, eps_root=1e-4),
        lambda: optax.adam(1e-3),
    ),
    Case(
        "adam_mu_dtype",
        lambda: optim_fn.adam(1e-3, mu_dtype=jnp.bfloat16),
        lambda: optax.adam(1e-3),
    ),
    Case(
        "adamw_mask",
        lambda: optim_fn.adamw(1e-2, weight_decay=0.1, mask=mask_fn),
        lambda: optax.adamw(1e-2, weight_decay=0.1),
    ),
    Case(
        "adadelta_weight_decay_mask",
        lambda: optim_fn.adadelta(1.0, weight_decay=0.1, weight_decay_mask=MASK_TREE),
        lambda: optax.adadelta(1.0, weight_decay=0.1),
    ),
    Case(
        "adagrad_initial_accumulator",
        lambda: optim_fn.adagrad(0.5, initial_accumulator_value=0.0, eps=1e-3),
        lambda: optax.adagrad(0.5, initial_accumulator_value=0.1, eps=1e-3),
    ),
]


@pytest.mark.parametrize("case", MUTANTS, ids=[c.name for c in MUTANTS])
def test_grid_detects_a_flipped_option(case: Case):
    errors = parity_errors(case, np.float32)
    assert errors["updates"] > 1e3 * TOLERANCE[np.float32], (case.name, errors)
