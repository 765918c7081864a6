"""Wrappers: accumulation, skipping non-finite steps, lookahead, EMA of params,
reduce-on-plateau, conditional transforms and hyperparameter injection.

Each is checked step by step against optax where optax has it, and against a NumPy
transcription or a scripted sequence worked out by hand.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim_fn
from optim_fn.flat import tree_size_bytes

SHAPES = {"w": (4, 3), "b": (3,)}


def tree(seed, scale=1.0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.standard_normal(s) * scale, dtype) for k, s in SHAPES.items()}


PARAMS = tree(0)


def max_abs_difference(a, b) -> float:
    return max(
        float(jnp.max(jnp.abs(x - y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def assert_bitwise_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x).view(np.uint32), np.asarray(y).view(np.uint32))


# ----------------------------------------------------------------------------------------
# MultiSteps.


@pytest.mark.parametrize("inner_name", ["sgd", "adam"])
def test_k_micro_steps_equal_one_step_on_the_mean_gradient(inner_name):
    k = 4
    make = {"sgd": lambda: optim_fn.sgd(1.0), "adam": lambda: optim_fn.adam(0.05)}[inner_name]
    inner = make()
    accumulate = optim_fn.MultiSteps(make(), every_k_schedule=k)
    acc_step, ref_step = jax.jit(accumulate.update), jax.jit(inner.update)
    params, ref_params = PARAMS, PARAMS
    state, ref_state = accumulate.init(params), inner.init(params)
    for cycle in range(3):
        micro = [tree(10 * cycle + i) for i in range(k)]
        for i, grads in enumerate(micro):
            before = params
            updates, state = acc_step(grads, state, params)
            params = optim_fn.apply_updates(params, updates)
            if i < k - 1:
                assert_bitwise_equal(params, before)  # -0.0 updates: nothing moves
                assert not bool(accumulate.has_updated(state))
        total = micro[0]
        for grads in micro[1:]:
            total = jax.tree.map(jnp.add, total, grads)
        mean = jax.tree.map(lambda s: s / k, total)
        ref_updates, ref_state = ref_step(mean, ref_state, ref_params)
        ref_params = optim_fn.apply_updates(ref_params, ref_updates)
        assert bool(accumulate.has_updated(state))
        assert int(state.gradient_step) == cycle + 1
        if inner_name == "sgd":
            # -1 * mean: the gradient handed to the optimizer is the mean, bit for bit.
            assert_bitwise_equal(updates, ref_updates)
        else:
            # Adam compiled inside lax.switch may fuse differently (FMA): a few ulps.
            for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_accumulation_state_is_the_inner_state_plus_one_accumulator():
    inner = optim_fn.adam(1e-3)
    accumulate = optim_fn.MultiSteps(optim_fn.adam(1e-3), every_k_schedule=8)
    state = accumulate.init(PARAMS)
    params_bytes = tree_size_bytes(PARAMS)
    counters = 2 * 4  # mini_step and gradient_step, int32
    assert tree_size_bytes(state) == tree_size_bytes(inner.init(PARAMS)) + params_bytes + counters
    assert tree_size_bytes(state.acc_grads) == params_bytes
    # bf16 params: the accumulator is float32 (an explicit dtype overrides it).
    half = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(accumulate.init(half).acc_grads))
    small = optim_fn.MultiSteps(inner, 8, accumulator_dtype=jnp.bfloat16)
    assert tree_size_bytes(small.init(half).acc_grads) == params_bytes // 2


def test_multisteps_matches_optax():
    ours = optim_fn.MultiSteps(optim_fn.adam(0.05), every_k_schedule=3)
    reference = optax.MultiSteps(optax.adam(0.05), every_k_schedule=3)
    ours_state, ref_state = ours.init(PARAMS), reference.init(PARAMS)
    ours_step, ref_step = jax.jit(ours.update), jax.jit(reference.update)
    for i in range(12):
        ours_updates, ours_state = ours_step(tree(i), ours_state, PARAMS)
        ref_updates, ref_state = ref_step(tree(i), ref_state, PARAMS)
        assert max_abs_difference(ours_updates, ref_updates) <= 1e-6 * 0.05
        assert int(ours_state.mini_step) == int(ref_state.mini_step)
        assert int(ours_state.gradient_step) == int(ref_state.gradient_step)


def test_multisteps_sum_schedule_and_skipping():
    # k from a schedule: 1 for the first update, then 2.
    opt = optim_fn.MultiSteps(
        optim_fn.sgd(1.0),
        every_k_schedule=lambda step: jnp.where(step < 1, 1, 2),
        use_grad_mean=False,
        should_skip_update_fn=optim_fn.skip_not_finite,
    )
    state = opt.init(PARAMS)
    ones = jax.tree.map(jnp.ones_like, PARAMS)
    nan = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), PARAMS)
    emitted = []
    for grads in [ones, ones, nan, ones, ones, ones]:
        updates, state = opt.update(grads, state, PARAMS)
        emitted.append(float(updates["b"][0]))
    # step 1 emits alone; then pairs (the NaN micro-step is ignored entirely).
    assert emitted == [-1.0, -0.0, -0.0, -2.0, -0.0, -2.0]
    assert int(state.skip_state["num_not_finite"]) == 0
    assert int(state.gradient_step) == 3


def test_multisteps_rejects_bad_k():
    with pytest.raises(ValueError, match=r"`every_k_schedule` must be >= 1"):
        optim_fn.MultiSteps(optim_fn.sgd(0.1), 0)
    with pytest.raises(TypeError, match="not a gradient transformation"):
        optim_fn.MultiSteps(optim_fn.sgd, 2)


# ----------------------------------------------------------------------------------------
# apply_if_finite.


def test_skip_non_finite_counter_sequence_with_reset_after_giving_up():
    opt = optim_fn.apply_if_finite(optim_fn.adam(0.1), max_consecutive_errors=2)
    state = opt.init(PARAMS)
    step = jax.jit(opt.update)
    script = "FNINNNFNNNNF"  # finite, NaN, inf
    counts, applied, totals = [], [], []
    params = PARAMS
    for i, kind in enumerate(script):
        grads = tree(i)
        if kind != "F":
            bad = jnp.nan if kind == "N" else jnp.inf
            grads = {**grads, "w": grads["w"].at[1, 2].set(bad)}
        adam_count = int(state.inner_state[0].count)
        before = params
        updates, state = step(grads, state, params)
        params = optim_fn.apply_updates(params, updates)
        counts.append(int(state.notfinite_count))
        totals.append(int(state.total_notfinite))
        applied.append(int(state.inner_state[0].count) == adam_count + 1)
        if not applied[-1]:
            assert_bitwise_equal(params, before)
        assert bool(state.last_finite) == (kind == "F")
    # After 2 skips in a row the 3rd bad step is applied and the count starts over, so
    # the next bad steps are skipped again (optax keeps counting: 3, 4, ... and applies).
    assert counts == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 0]
    assert applied == [True, False, False, True, False, False, True, False, False, True,
                       False, True]
    assert totals == [0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 9]


def test_apply_if_finite_with_zero_tolerance_applies_everything():
    opt = optim_fn.apply_if_finite(optim_fn.sgd(1.0), max_consecutive_errors=0)
    state = opt.init(PARAMS)
    nan = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), PARAMS)
    updates, state = opt.update(nan, state)
    assert np.isnan(np.asarray(updates["b"])).all() and int(state.notfinite_count) == 0


# ----------------------------------------------------------------------------------------
# Lookahead.


@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_matches_optax(reset_state):
    ours = optim_fn.lookahead(optim_fn.sgd(0.1, momentum=0.9), 3, 0.5, reset_state)
    reference = optax.lookahead(optax.sgd(0.1, momentum=0.9), 3, 0.5, reset_state)
    ours_params = optim_fn.LookaheadParams.init_synced(PARAMS)
    ref_params = optax.LookaheadParams.init_synced(PARAMS)
    ours_state, ref_state = ours.init(ours_params), reference.init(ref_params)
    for i in range(10):
        u, ours_state = ours.update(tree(i), ours_state, ours_params)
        ours_params = optim_fn.apply_updates(ours_params, u)
        u, ref_state = reference.update(tree(i), ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, u)
        assert max_abs_difference(ours_params, tuple(ref_params)) <= 1e-6


def test_lookahead_matches_the_paper_in_float64():
    # Zhang et al. 2019, Algorithm 1 with SGD as the inner optimizer.
    k, alpha, lr = 4, 0.3, 0.1
    opt = optim_fn.lookahead(optim_fn.sgd(lr), k, alpha)
    params = optim_fn.LookaheadParams.init_synced(PARAMS)
    state = opt.init(params)
    slow = {n: np.asarray(p, np.float64) for n, p in PARAMS.items()}
    fast = {n: v.copy() for n, v in slow.items()}
    for i in range(11):
        grads = tree(i)
        updates, state = opt.update(grads, state, params)
        params = optim_fn.apply_updates(params, updates)
        fast = {n: fast[n] - lr * np.asarray(grads[n], np.float64) for n in fast}
        if (i + 1) % k == 0:
            slow = {n: slow[n] + alpha * (fast[n] - slow[n]) for n in slow}
            fast = {n: v.copy() for n, v in slow.items()}
        for n in SHAPES:
            np.testing.assert_allclose(params.fast[n], fast[n], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(params.slow[n], slow[n], rtol=1e-5, atol=1e-6)
        if (i + 1) % k:
            assert int(state.steps_since_sync) == (i + 1) % k
    assert float(optim_fn.get_hyperparams(state)["slow_step_size"]) == pytest.approx(alpha)


def test_lookahead_needs_lookahead_params():
    opt = optim_fn.lookahead(optim_fn.sgd(0.1), 2, 0.5)
    state = opt.init(PARAMS)
    with pytest.raises(ValueError, match="LookaheadParams"):
        opt.update(PARAMS, state, PARAMS)
    with pytest.raises(ValueError, match="`sync_period` must be an int >= 1"):
        optim_fn.lookahead(optim_fn.sgd(0.1), 0, 0.5)


# ----------------------------------------------------------------------------------------
# EMA of params.


def test_ema_params_matches_a_float64_transcription():
    decay = 0.9
    inner = optim_fn.adam(0.05)
    opt = optim_fn.ema_params(optim_fn.adam(0.05), decay=decay)
    state, inner_state = opt.init(PARAMS), inner.init(PARAMS)
    params = PARAMS
    ema = {n: np.asarray(p, np.float64) for n, p in PARAMS.items()}
    step = jax.jit(opt.update)
    for i in range(20):
        updates, state = step(tree(i), state, params)
        inner_updates, inner_state = inner.update(tree(i), inner_state, params)
        assert_bitwise_equal(updates, inner_updates)  # the wrapped updates pass unchanged
        params = optim_fn.apply_updates(params, updates)
        ema = {n: decay * ema[n] + (1 - decay) * np.asarray(params[n], np.float64) for n in ema}
        for n in SHAPES:
            np.testing.assert_allclose(state.ema[n], ema[n], rtol=1e-6, atol=1e-7)
    assert float(optim_fn.get_hyperparams(state)["decay"]) == pytest.approx(decay)


def test_ema_params_decay_schedule_and_missing_params():
    opt = optim_fn.ema_params(optim_fn.sgd(1.0), decay=lambda count: jnp.where(count < 1, 0.0, 1.0))
    state = opt.init(PARAMS)
    ones = jax.tree.map(jnp.ones_like, PARAMS)
    _, state = opt.update(ones, state, PARAMS)  # decay 0: the EMA jumps to the new params
    np.testing.assert_array_equal(state.ema["b"], PARAMS["b"] - 1)
    _, state = opt.update(ones, state, PARAMS)  # decay 1: frozen
    np.testing.assert_array_equal(state.ema["b"], PARAMS["b"] - 1)
    with pytest.raises(ValueError, match="needs the params"):
        opt.update(ones, state)


# ----------------------------------------------------------------------------------------
# reduce_on_plateau.

LOSSES = [5, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(patience=2, cooldown=1, accumulation_size=2),
        dict(factor=0.5, patience=3, rtol=0.0, atol=0.5, min_scale=0.2),
        dict(),
    ],
)
def test_reduce_on_plateau_matches_optax(kwargs):
    ours = optim_fn.reduce_on_plateau(**kwargs)
    reference = optax.contrib.reduce_on_plateau(**kwargs)
    ours_state, ref_state = ours.init(PARAMS), reference.init(PARAMS)
    ref_step = jax.jit(reference.update)
    grads = tree(1)
    for loss in LOSSES * 2:
        ours_updates, ours_state = ours.update(grads, ours_state, value=jnp.float32(loss))
        ref_updates, ref_state = ref_step(grads, ref_state, value=jnp.float32(loss))
        assert float(ours_state.scale) == float(ref_state.scale)
        assert int(ours_state.plateau_count) == int(ref_state.plateau_count)
        assert int(ours_state.cooldown_count) == int(ref_state.cooldown_count)
        assert max_abs_difference(ours_updates, ref_updates) == 0.0


def test_reduce_on_plateau_by_hand_in_a_chain():
    opt = optim_fn.chain(optim_fn.sgd(1.0), optim_fn.reduce_on_plateau(factor=0.5, patience=2))
    state = opt.init(PARAMS)
    ones = jax.tree.map(jnp.ones_like, PARAMS)
    scales = []
    for loss in [3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0]:
        updates, state = opt.update(ones, state, PARAMS, value=loss)
        scales.append(float(state[1].scale))
        assert float(updates["b"][0]) == -scales[-1]
    # Improvements at 3 and 2; plateaus of 2 at steps 4 and 6; 1.0 improves.
    assert scales == [1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match="value=loss"):
        opt.update(ones, state, PARAMS)
    with pytest.raises(ValueError, match=r"`factor` must be in \(0, 1\)"):
        optim_fn.reduce_on_plateau(factor=1.5)


# ----------------------------------------------------------------------------------------
# Conditional transforms.


@pytest.mark.parametrize(
    "ours_fn, optax_fn",
    [
        (optim_fn.conditionally_transform, optax.conditionally_transform),
        (optim_fn.conditionally_mask, optax.conditionally_mask),
    ],
)
def test_conditional_wrappers_match_optax(ours_fn, optax_fn):
    def every_third(step):
        return step % 3 == 0

    ours = ours_fn(optim_fn.adam(0.1), every_third)
    reference = optax_fn(optax.adam(0.1), every_third)
    ours_state, ref_state = ours.init(PARAMS), reference.init(PARAMS)
    ref_step = jax.jit(reference.update)
    for i in range(9):
        ours_updates, ours_state = ours.update(tree(i), ours_state)
        ref_updates, ref_state = ref_step(tree(i), ref_state)
        assert max_abs_difference(ours_updates, ref_updates) <= 1e-7


def test_conditionally_transform_forwards_extra_args():
    opt = optim_fn.conditionally_transform(
        optim_fn.sgd(1.0), lambda step, *, warm: warm, forward_extra_args=True
    )
    state = opt.init(PARAMS)
    ones = jax.tree.map(jnp.ones_like, PARAMS)
    updates, state = opt.update(ones, state, warm=jnp.array(False))
    assert float(updates["b"][0]) == 1.0  # passed through
    updates, state = opt.update(ones, state, warm=jnp.array(True))
    assert float(updates["b"][0]) == -1.0


# ----------------------------------------------------------------------------------------
# inject_hyperparams.


def test_inject_hyperparams_matches_optax_with_a_schedule():
    def schedule(count):
        return 0.1 / (1.0 + count)

    ours = optim_fn.inject_hyperparams(optax.adam)(learning_rate=schedule, b1=0.8)
    reference = optax.inject_hyperparams(optax.adam)(learning_rate=schedule, b1=0.8)
    ours_state, ref_state = ours.init(PARAMS), reference.init(PARAMS)
    step = jax.jit(ours.update)
    for i in range(10):
        ours_updates, ours_state = step(tree(i), ours_state, PARAMS)
        ref_updates, ref_state = reference.update(tree(i), ref_state, PARAMS)
        assert max_abs_difference(ours_updates, ref_updates) <= 1e-6 * 0.1
        assert float(optim_fn.get_hyperparams(ours_state)["learning_rate"]) == pytest.approx(
            schedule(i), rel=1e-7
        )


def test_injected_hyperparams_are_settable_without_recompiling_and_float32_for_bf16():
    half = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS)
    opt = optim_fn.inject_hyperparams(optax.adam)(learning_rate=0.1, b2=0.999)
    state = opt.init(half)
    hyper = optim_fn.get_hyperparams(state)
    # optax stores these in the params' dtype, where bf16(0.999) == 1.0.
    assert hyper["b2"].dtype == jnp.float32 and float(hyper["b2"]) == pytest.approx(0.999)
    step = jax.jit(opt.update)
    grads = jax.tree.map(jnp.ones_like, half)
    first, state = step(grads, state, half)
    state = optim_fn.set_hyperparams(state, learning_rate=0.2)
    second, state = step(grads, state, half)
    assert step._cache_size() == 1
    # Adam's first steps on constant gradients are ~ -lr (bias-corrected).
    np.testing.assert_allclose(np.asarray(first["b"], np.float32), -0.1, rtol=1e-2)
    np.testing.assert_allclose(np.asarray(second["b"], np.float32), -0.2, rtol=1e-2)


def test_inject_hyperparams_static_args_and_ints():
    opt = optim_fn.inject_hyperparams(optax.clip_by_global_norm)(max_norm=1)
    state = opt.init(PARAMS)
    assert optim_fn.get_hyperparams(state)["max_norm"].dtype == jnp.int32
    state = optim_fn.set_hyperparams(state, max_norm=2)
    updates, _ = opt.update(tree(3, scale=100.0), state)
    assert float(optim_fn.global_norm(updates)) == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(ValueError, match=r"`static_args` \['nope'\] are not parameters"):
        optim_fn.inject_hyperparams(optax.adam, static_args="nope")
    masked_sgd = optim_fn.inject_hyperparams(optax.masked, static_args=("mask",))
    opt = masked_sgd(optax.sgd(1.0), mask=functools.partial(jax.tree.map, lambda _: True))
    opt.update(PARAMS, opt.init(PARAMS))
