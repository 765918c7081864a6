"""Dtype policy: low-precision params, moment dtypes, float64, complex, counter saturation.

The policy (see docs/scale_and_trust.md): hyperparameters are stored in float32 (float64
for float64/complex128 params); the rules compute in the promoted dtype (float32 at
least); moments are stored in the param dtype unless ``mu_dtype`` / ``nu_dtype`` say
otherwise; updates come back in the gradient's dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

import optim_fn
from optim_fn.rule_transform import INT32_MAX

RNG_SEED = 0
LOW = [jnp.bfloat16, jnp.float16]

ELEMENTWISE = {
    "sgd": lambda: optim_fn.sgd(0.1, momentum=0.9),
    "adam": lambda: optim_fn.adam(1e-3),
    "adamw": lambda: optim_fn.adamw(1e-3, weight_decay=0.1),
    "nadam": lambda: optim_fn.nadam(1e-3),
    "radam": lambda: optim_fn.radam(1e-3),
    "adamax": lambda: optim_fn.adamax(1e-3),
    "amsgrad": lambda: optim_fn.amsgrad(1e-3),
    "adabelief": lambda: optim_fn.adabelief(1e-3),
    "yogi": lambda: optim_fn.yogi(1e-3),
    "rmsprop": lambda: optim_fn.rmsprop(1e-3, momentum=0.9, centered=True),
    "adagrad": lambda: optim_fn.adagrad(1e-2),
    "adadelta": lambda: optim_fn.adadelta(),
    "lion": lambda: optim_fn.lion(1e-4),
    "clip_adam": lambda: optim_fn.chain(optim_fn.clip_by_global_norm(1.0), optim_fn.adam(1e-3)),
}


def params_of(dtype, seed=RNG_SEED):
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.standard_normal((5, 3)), dtype),
        "b": jnp.asarray(rng.standard_normal((3,)), dtype),
    }


def jitted_update(optimizer):
    return jax.jit(optimizer.update)


@pytest.mark.parametrize("dtype", LOW, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_low_precision_zero_grads_never_nan_and_dtypes_kept(name, dtype):
    # optax #1754/#1789: eps=1e-8 underflows to 0 in float16, and 0/0 gives NaN.
    params = params_of(dtype)
    optimizer = ELEMENTWISE[name]()
    state = optimizer.init(params)
    for value in jax.tree.leaves(optim_fn.get_hyperparams(state)):
        assert value.dtype == jnp.float32
    update = jitted_update(optimizer)
    zeros = jax.tree.map(jnp.zeros_like, params)
    for _ in range(3):
        updates, state = update(zeros, state, params)
        for leaf in jax.tree.leaves(updates):
            assert leaf.dtype == jnp.dtype(dtype)
            assert bool(jnp.all(jnp.isfinite(leaf.astype(jnp.float32))))
        params = optim_fn.apply_updates(params, updates)
    # And tiny gradients (subnormal in float16) stay finite too.
    tiny = jax.tree.map(lambda p: jnp.full_like(p, 1e-7), params)
    updates, state = update(tiny, state, params)
    for leaf in jax.tree.leaves((updates, state)):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert bool(jnp.all(jnp.isfinite(leaf.astype(jnp.float32)))), name


def adam_numpy(grads, b1=0.9, b2=0.999, eps=1e-8, lr=1e-3, mu_dtype=None, nu_dtype=None,
               param_dtype=np.float32):
    """Adam in float32 arithmetic with moments rounded to their storage dtype each step."""
    f32 = np.float32
    mu = np.zeros(grads[0].shape, mu_dtype or param_dtype)
    nu = np.zeros(grads[0].shape, nu_dtype or param_dtype)
    updates = []
    for t, g in enumerate(grads, start=1):
        g = g.astype(f32)
        mu_new = f32(1 - b1) * g + f32(b1) * mu.astype(f32)
        nu_new = f32(1 - b2) * g * g + f32(b2) * nu.astype(f32)
        m_hat = mu_new * (f32(1) / (f32(1) - f32(b1) ** f32(t)))
        v_hat = nu_new * (f32(1) / (f32(1) - f32(b2) ** f32(t)))
        u = (m_hat / (np.sqrt(v_hat) + f32(eps))).astype(param_dtype)
        updates.append((f32(-lr) * u.astype(f32)).astype(param_dtype))
        mu, nu = mu_new.astype(mu.dtype), nu_new.astype(nu.dtype)
    return updates, mu, nu


@pytest.mark.parametrize(
    "mu_dtype,nu_dtype", [(None, None), (jnp.float32, jnp.float32), (None, jnp.float32)]
)
def test_bf16_adam_moment_dtypes_match_reference(mu_dtype, nu_dtype):
    rng = np.random.default_rng(1)
    shape = (64,)
    grads = [rng.standard_normal(shape).astype(ml_dtypes.bfloat16) for _ in range(30)]
    optimizer = optim_fn.chain(
        optim_fn.scale_by_adam(mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        optim_fn.scale_by_learning_rate(1e-3),
    )
    params = jnp.zeros(shape, jnp.bfloat16)
    state = optimizer.init(params)
    assert state[0].mu.dtype == jnp.dtype(mu_dtype or jnp.bfloat16)
    assert state[0].nu.dtype == jnp.dtype(nu_dtype or jnp.bfloat16)
    update = jitted_update(optimizer)
    ours = []
    for g in grads:
        u, state = update(jnp.asarray(g), state)
        assert u.dtype == jnp.bfloat16
        ours.append(np.asarray(u, np.float32))
    ref, ref_mu, ref_nu = adam_numpy(
        grads,
        mu_dtype=None if mu_dtype is None else np.float32,
        nu_dtype=None if nu_dtype is None else np.float32,
        param_dtype=ml_dtypes.bfloat16,
    )
    # One bf16 ulp (2^-8 relative): float32 rounding-order differences may flip a rounding.
    # XLA:GPU keeps bf16 intermediates of a fusion in float32 (xla_allow_excess_precision),
    # so a value stored in bf16 state may differ by one more ulp there.
    rtol = 2**-7 if jax.default_backend() == "cpu" else 2**-6
    for got, want in zip(ours, ref, strict=True):
        np.testing.assert_allclose(got, want.astype(np.float32), rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(np.asarray(state[0].mu, np.float32), ref_mu.astype(np.float32),
                               rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(np.asarray(state[0].nu, np.float32), ref_nu.astype(np.float32),
                               rtol=rtol, atol=1e-6)


def test_nu_dtype_float32_keeps_small_second_moment_increments():
    # b2 = 0.999: each step adds 1e-3 of g^2, below bf16's resolution (2^-8) once nu has
    # grown, so bf16 storage freezes nu; float32 storage tracks the float64 truth.
    steps, g = 400, 1.0
    truth = (1 - 0.999**steps) * g * g
    results = {}
    for nu_dtype in (None, jnp.float32):
        block = optim_fn.scale_by_adam(nu_dtype=nu_dtype)
        state = block.init(jnp.zeros((4,), jnp.bfloat16))
        update = jax.jit(block.update)
        grad = jnp.full((4,), g, jnp.bfloat16)
        for _ in range(steps):
            _, state = update(grad, state)
        results[nu_dtype] = float(state.nu[0])
    assert abs(results[jnp.float32] - truth) / truth < 1e-4
    assert abs(results[None] - truth) / truth > 1e-2  # what the option is for


def test_moment_dtype_options_are_validated():
    with pytest.raises(ValueError, match="nu_dtype"):
        optim_fn.scale_by_adam(nu_dtype=jnp.int32)
    with pytest.raises(ValueError, match="mu_dtype"):
        optim_fn.scale_by_adam(mu_dtype="int8")


def test_float64_under_x64_matches_float64_reference():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        grads = [rng.standard_normal((7,)) for _ in range(20)]
        optimizer = optim_fn.adam(1e-3)
        params = jnp.zeros((7,), jnp.float64)
        state = optimizer.init(params)
        for value in jax.tree.leaves(optim_fn.get_hyperparams(state)):
            assert value.dtype == jnp.float64
        update = jax.jit(optimizer.update)
        mu = nu = np.zeros(7)
        for t, g in enumerate(grads, start=1):
            u, state = update(jnp.asarray(g), state)
            assert u.dtype == jnp.float64
            mu = 0.9 * mu + 0.1 * g
            nu = 0.999 * nu + (1 - 0.999) * g * g
            want = -1e-3 * (mu / (1 - 0.9**t)) / (np.sqrt(nu / (1 - 0.999**t)) + 1e-8)
            np.testing.assert_allclose(np.asarray(u), want, rtol=1e-13, atol=0)


@pytest.mark.parametrize("dtype", [jnp.complex64])
def test_complex_params_match_optax(dtype):
    rng = np.random.default_rng(4)
    shape = (6, 2)
    params = jnp.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape), dtype)
    for ours, theirs in [
        (optim_fn.adam(1e-2), optax.adam(1e-2)),
        (optim_fn.sgd(1e-2, momentum=0.9), optax.sgd(1e-2, momentum=0.9)),
        (optim_fn.rmsprop(1e-2), optax.rmsprop(1e-2)),
    ]:
        s1, s2 = ours.init(params), theirs.init(params)
        u1f, u2f = jax.jit(ours.update), jax.jit(theirs.update)
        for _ in range(20):
            g = jnp.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape), dtype)
            u1, s1 = u1f(g, s1, params)
            u2, s2 = u2f(g, s2, params)
            assert u1.dtype == dtype
            np.testing.assert_allclose(np.asarray(u1), np.asarray(u2), rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16])
def test_counter_saturates_with_finite_bias_correction(dtype):
    optimizer = optim_fn.adam(1e-3)
    params = params_of(dtype)
    state = optimizer.init(params)
    near_max = jnp.asarray(INT32_MAX - 1, jnp.int32)
    state = (state[0]._replace(count=near_max), state[1]._replace(count=near_max))
    update = jitted_update(optimizer)
    grads = jax.tree.map(lambda p: jnp.ones_like(p), params)
    for _ in range(3):
        updates, state = update(grads, state, params)
        assert int(state[0].count) == INT32_MAX and int(state[1].count) == INT32_MAX
        for leaf in jax.tree.leaves(updates):
            assert bool(jnp.all(jnp.isfinite(leaf.astype(jnp.float32))))
    # At t = 2^31-1 both corrections are 1: after k steps of g=1 from zero moments the
    # update is -lr (1-b1^k) / (sqrt(1-b2^k) + eps), no bias correction.
    k = 3
    want = -1e-3 * (1 - 0.9**k) / (np.sqrt(1 - 0.999**k) + 1e-8)
    np.testing.assert_allclose(
        np.asarray(updates["w"], np.float32), want, rtol=1e-3 if dtype == jnp.float16 else 1e-5
    )
