"""Non-finite gradient policies: propagate, skip, raise (host callback), checkify."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import optim_fn
from optim_fn.nonfinite import NonFiniteState, all_finite, nonfinite_policy

PARAMS = {"layer": {"w": jnp.ones((3, 2)), "b": jnp.zeros((2,))}, "scale": jnp.ones(())}


def grads_sequence(steps=8, bad_steps=(2, 5), seed=0):
    rng = np.random.default_rng(seed)
    sequence = []
    for step in range(steps):
        grads = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), PARAMS)
        if step in bad_steps:
            grads["layer"]["w"][1, 0] = np.nan if step == bad_steps[0] else np.inf
        sequence.append(jax.tree.map(jnp.asarray, grads))
    return sequence


def make_step(optimizer):
    @jax.jit
    def step(params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return optim_fn.apply_updates(params, updates), state, updates

    return step


def test_propagate_is_the_default_and_passes_nan_through():
    inner = optim_fn.adam(0.1)
    wrapped = nonfinite_policy(inner)
    assert wrapped is inner  # no wrapper, no cost
    state = wrapped.init(PARAMS)
    assert jax.tree.structure(state) == jax.tree.structure(inner.init(PARAMS))
    grads = grads_sequence(3, bad_steps=(0,))[0]
    updates, _ = wrapped.update(grads, state, PARAMS)
    assert bool(jnp.isnan(updates["layer"]["w"][1, 0]))


@pytest.mark.parametrize(
    "make", [lambda: optim_fn.adamw(0.1, weight_decay=0.1), lambda: optim_fn.sgd(0.1, 0.9)]
)
def test_skip_equals_a_run_without_the_bad_steps(make):
    sequence = grads_sequence()
    wrapped = nonfinite_policy(make(), "skip")
    step = make_step(wrapped)
    params, state = PARAMS, wrapped.init(PARAMS)
    reference = make()
    ref_step = make_step(reference)
    ref_params, ref_state = PARAMS, reference.init(PARAMS)
    for index, grads in enumerate(sequence):
        params, state, updates = step(params, state, grads)
        finite = index not in (2, 5)
        assert bool(state.last_finite) == finite
        if finite:
            ref_params, ref_state, _ = ref_step(ref_params, ref_state, grads)
        else:
            for leaf in jax.tree.leaves(updates):
                assert bool(jnp.all(leaf == 0))
        # Bitwise: a skipped step leaves the state exactly as it was.
        for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(
            jax.tree.leaves(state.inner_state), jax.tree.leaves(ref_state), strict=True
        ):
            np.testing.assert_array_equal(got, want)
    assert int(state.skipped) == 2
    assert int(state.consecutive_skipped) == 0


def test_skip_counts_consecutive_skips():
    wrapped = nonfinite_policy(optim_fn.adam(0.1), "skip")
    state = wrapped.init(PARAMS)
    assert isinstance(state, NonFiniteState)
    bad = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), PARAMS)
    update = jax.jit(wrapped.update)
    for expected in (1, 2, 3):
        _, state = update(bad, state, PARAMS)
        assert int(state.consecutive_skipped) == expected == int(state.skipped)
        assert int(state.inner_state[0].count) == 0


def test_raise_eagerly_names_every_bad_leaf():
    wrapped = nonfinite_policy(optim_fn.adam(0.1), "raise")
    state = wrapped.init(PARAMS)
    grads = grads_sequence(3, bad_steps=(0,))[0]
    grads["scale"] = jnp.asarray(jnp.inf)
    with pytest.raises(FloatingPointError) as info:
        wrapped.update(grads, state, PARAMS)
    message = str(info.value)
    assert "grads['layer']['w'] (1 NaN, 0 inf)" in message
    assert "grads['scale'] (0 NaN, 1 inf)" in message
    assert "['layer']['b']" not in message
    assert "'skip'" in message  # says how to skip instead


def test_raise_under_jit_names_the_leaf_and_finite_steps_match():
    inner = optim_fn.adam(0.1)
    wrapped = nonfinite_policy(inner, "raise")
    update = jax.jit(wrapped.update)
    state = wrapped.init(PARAMS)
    good = grads_sequence(1, bad_steps=())[0]
    updates, _ = update(good, state, PARAMS)
    expected, _ = jax.jit(inner.update)(good, inner.init(PARAMS), PARAMS)
    for got, want in zip(jax.tree.leaves(updates), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(got, want)
    bad = grads_sequence(3, bad_steps=(0,))[0]
    with pytest.raises(Exception, match=r"grads\['layer'\]\['w'\] \(1 NaN, 0 inf\)"):
        jax.block_until_ready(update(bad, state, PARAMS))


def test_checkify_policy_reports_the_leaf():
    wrapped = nonfinite_policy(optim_fn.adam(0.1), "checkify")
    state = wrapped.init(PARAMS)
    checked = jax.jit(checkify.checkify(wrapped.update))
    error, _ = checked(grads_sequence(1, bad_steps=())[0], state, PARAMS)
    error.throw()  # finite: no error
    error, _ = checked(grads_sequence(3, bad_steps=(0,))[0], state, PARAMS)
    with pytest.raises(Exception, match=r"grads\['layer'\]\['w'\]: 1 NaN, 0 inf"):
        error.throw()


def test_all_finite_and_bad_policy():
    assert bool(all_finite({}))
    assert not bool(all_finite({"a": jnp.asarray([1.0, jnp.nan])}))
    assert not bool(all_finite({"c": jnp.asarray([1 + 1j * jnp.inf])}))
    with pytest.raises(ValueError, match="`policy` must be one of"):
        nonfinite_policy(optim_fn.adam(0.1), "ignore")
