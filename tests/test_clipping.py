"""Clipping: against optax on random gradients, and against values worked out by hand,
including zero, infinite and NaN gradients."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim_fn
import optim_fn.contrib

INF, NAN = float("inf"), float("nan")


SHAPES = {"dense": (5, 4), "bias": (4,), "conv": (3, 3, 2, 4), "heads": (2, 3, 4)}


def random_tree(seed, scale=1.0, batch=()):
    # NumPy draws: jax.random would compile one program per shape, eagerly.
    rng = np.random.default_rng(seed)
    return {
        name: jnp.asarray(rng.standard_normal(batch + shape) * scale, jnp.float32)
        for name, shape in SHAPES.items()
    }


def max_relative_difference(ours, reference) -> float:
    worst = 0.0
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference), strict=True):
        scale = max(float(jnp.max(jnp.abs(b))), 1e-30)
        worst = max(worst, float(jnp.max(jnp.abs(a - b))) / scale)
    return worst


@pytest.mark.parametrize(
    "ours, reference",
    [
        (optim_fn.clip(0.5), optax.clip(0.5)),
        (optim_fn.clip_by_global_norm(2.0), optax.clip_by_global_norm(2.0)),
        (optim_fn.clip_by_block_rms(0.7), optax.clip_by_block_rms(0.7)),
        (optim_fn.adaptive_grad_clip(0.05), optax.adaptive_grad_clip(0.05)),
        (optim_fn.adaptive_grad_clip(0.2, eps=1e-2), optax.adaptive_grad_clip(0.2, eps=1e-2)),
        (
            optim_fn.chain(optim_fn.clip_by_global_norm(1.0), optim_fn.adam(1e-2)),
            optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
        ),
    ],
    ids=["clip", "global_norm", "block_rms", "agc", "agc_eps", "global_norm_then_adam"],
)
def test_matches_optax_on_random_gradients_step_by_step(ours, reference):
    params = random_tree(1)
    ours_state, ref_state = ours.init(params), reference.init(params)
    ours_step, ref_step = jax.jit(ours.update), jax.jit(reference.update)
    worst = 0.0
    for i in range(30):
        # Scales from 0.01 to 100 so that some steps clip and some do not.
        grads = random_tree(100 + i, scale=10.0 ** ((i % 5) - 2))
        ours_updates, ours_state = ours_step(grads, ours_state, params)
        ref_updates, ref_state = ref_step(grads, ref_state, params)
        worst = max(worst, max_relative_difference(ours_updates, ref_updates))
        params = optax.apply_updates(params, ref_updates)
    assert worst <= 1e-6, worst


def test_clip_by_value_by_hand():
    grads = {"g": jnp.array([-3.0, -0.5, 0.0, 0.5, 3.0, INF, -INF, NAN])}
    opt = optim_fn.clip(1.0)
    updates, _ = opt.update(grads, opt.init(grads))
    expected = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 1.0, -1.0, NAN], np.float32)
    np.testing.assert_array_equal(np.asarray(updates["g"]), expected)


def test_clip_complex_keeps_the_phase():
    grads = {"g": jnp.array([3.0 + 4.0j, 0.3 - 0.4j])}
    opt = optim_fn.clip(1.0)
    updates, _ = opt.update(grads, opt.init(grads))
    np.testing.assert_allclose(np.asarray(updates["g"]), [0.6 + 0.8j, 0.3 - 0.4j], rtol=1e-7)


def test_global_norm_by_hand_and_readable_from_state():
    grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}
    opt = optim_fn.clip_by_global_norm(1.0)
    state = opt.init(grads)
    updates, state = opt.update(grads, state)
    np.testing.assert_allclose(updates["a"], [0.6, 0.0], rtol=1e-7)
    np.testing.assert_allclose(updates["b"], [[0.8]], rtol=1e-7)
    assert float(state.global_norm) == 5.0
    assert float(optim_fn.get_hyperparams(state)["max_norm"]) == 1.0


@pytest.mark.parametrize("max_norm", [5.0, 10.0])
def test_global_norm_at_or_below_the_threshold_is_untouched_bitwise(max_norm):
    grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([[4.0]])}
    opt = optim_fn.clip_by_global_norm(max_norm)
    updates, _ = opt.update(grads, opt.init(grads))
    for got, given in zip(jax.tree.leaves(updates), jax.tree.leaves(grads), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(given))


@pytest.mark.parametrize(
    "make",
    [
        lambda t: optim_fn.clip_by_global_norm(t),
        lambda t: optim_fn.clip_by_block_rms(t),
        lambda t: optim_fn.clip(t),
    ],
    ids=["global_norm", "block_rms", "clip"],
)
@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_zero_gradients_stay_zero_even_with_a_zero_threshold(make, threshold):
    # optax's clip_by_global_norm(0.0) divides 0 by 0 here and returns NaN.
    grads = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    opt = make(threshold)
    updates, _ = opt.update(grads, opt.init(grads))
    for leaf in jax.tree.leaves(updates):
        np.testing.assert_array_equal(np.asarray(leaf), 0.0)


@pytest.mark.parametrize("bad", [INF, NAN])
def test_non_finite_gradient_makes_the_clipped_group_nan(bad):
    grads = {"a": jnp.array([1.0, bad]), "b": jnp.array([2.0, 3.0])}
    opt = optim_fn.clip_by_global_norm(1.0)
    updates, state = opt.update(grads, opt.init(grads))
    assert np.all(np.isnan(np.asarray(updates["a"]))) and np.all(np.isnan(updates["b"]))
    assert not np.isfinite(float(state.global_norm))

    # clip_by_block_rms: only the block holding the bad entry is poisoned.
    opt = optim_fn.clip_by_block_rms(1.0)
    updates, _ = opt.update(grads, opt.init(grads))
    assert np.all(np.isnan(np.asarray(updates["a"])))
    np.testing.assert_allclose(updates["b"], np.array([2.0, 3.0]) / np.sqrt(6.5), rtol=1e-7)


def test_block_rms_by_hand():
    grads = {"big": jnp.array([3.0, 4.0]), "small": jnp.array([0.1, -0.2, 0.3])}
    opt = optim_fn.clip_by_block_rms(1.0)
    updates, _ = opt.update(grads, opt.init(grads))
    rms = np.sqrt((9 + 16) / 2)
    np.testing.assert_allclose(updates["big"], np.array([3.0, 4.0]) / rms, rtol=1e-7)
    np.testing.assert_array_equal(np.asarray(updates["small"]), np.asarray(grads["small"]))


def test_adaptive_grad_clip_by_hand():
    params = {
        "vector": jnp.array([3.0, 4.0]),  # one unit, norm 5
        "zeros": jnp.zeros(2),  # norm 0 -> eps = 1e-3
        "dense": jnp.array([[3.0, 0.0], [4.0, 1.0]]),  # units are columns: norms 5 and 1
    }
    grads = {
        "vector": jnp.array([0.0, 1.0]),
        "zeros": jnp.array([1.0, 0.0]),
        "dense": jnp.array([[0.3, 0.0], [0.4, 2.0]]),
    }
    opt = optim_fn.adaptive_grad_clip(0.1)
    updates, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(updates["vector"], [0.0, 0.5], rtol=1e-6)  # max norm 0.5
    np.testing.assert_allclose(updates["zeros"], [1e-4, 0.0], rtol=1e-6)  # 0.1 * 1e-3
    # Column 0: grad norm 0.5 >= 0.1 * 5 = 0.5 -> scaled by 0.5 / 0.5 (kept);
    # column 1: grad norm 2 > 0.1 * 1 -> scaled to norm 0.1.
    np.testing.assert_allclose(updates["dense"], [[0.3, 0.0], [0.4, 0.1]], rtol=1e-6)


def test_adaptive_grad_clip_needs_params():
    opt = optim_fn.adaptive_grad_clip(0.1)
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="needs the params"):
        opt.update(params, opt.init(params))


def test_norms_accumulate_in_float32_for_half_precision():
    # 300^2 overflows float16 (max 65504); the norm must still be right.
    grads = {"w": jnp.full((4,), 300.0, jnp.float16)}
    opt = optim_fn.clip_by_global_norm(1.0)
    updates, state = opt.update(grads, opt.init(grads))
    assert float(state.global_norm) == pytest.approx(600.0, rel=1e-7)
    assert updates["w"].dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(updates["w"], np.float32), 0.5, rtol=1e-3)
    # bf16 sums of many small squares lose everything past 8 bits; float32 does not.
    many = {"w": jnp.full((10_000,), 0.01, jnp.bfloat16)}
    norm = float(optim_fn.global_norm(many))
    exact = float(np.sqrt(10_000) * np.float32(jnp.bfloat16(0.01)))
    assert norm == pytest.approx(exact, rel=1e-6)


def test_max_norm_is_settable_and_schedulable_without_recompiling():
    grads = {"w": jnp.array([3.0, 4.0])}
    opt = optim_fn.clip_by_global_norm(1.0)
    state = opt.init(grads)
    step = jax.jit(opt.update)
    updates, state = step(grads, state)
    np.testing.assert_allclose(updates["w"], [0.6, 0.8], rtol=1e-7)
    state = optim_fn.set_hyperparams(state, max_norm=2.5)
    updates, state = step(grads, state)
    np.testing.assert_allclose(updates["w"], [1.5, 2.0], rtol=1e-7)
    assert step._cache_size() == 1

    scheduled = optim_fn.clip_by_global_norm(lambda count: 1.0 + count)
    state = scheduled.init(grads)
    for count in range(3):
        updates, state = scheduled.update(grads, state)
        np.testing.assert_allclose(jnp.linalg.norm(updates["w"]), 1.0 + count, rtol=1e-6)
        assert float(optim_fn.get_hyperparams(state)["max_norm"]) == 1.0 + count


def test_per_example_global_norm_clip_by_hand_and_against_optax():
    grads = [jnp.array([[0.0, 0, 0], [0, 3, 4], [4, 0, 3], [3, 4, 0]])]
    total, clipped = optim_fn.per_example_global_norm_clip(grads, 1.25)
    np.testing.assert_allclose(total[0], [1.75, 1.75, 1.75], rtol=1e-7)
    assert int(clipped) == 3
    total, clipped = optim_fn.per_example_global_norm_clip(grads, 0.0)
    np.testing.assert_array_equal(np.asarray(total[0]), 0.0)
    assert int(clipped) == 3

    batch = random_tree(3, batch=(6,))
    ours_fn = jax.jit(optim_fn.per_example_global_norm_clip)
    ref_fn = jax.jit(optax.per_example_global_norm_clip)
    for limit in (0.5, 5.0, 50.0):
        ours, ours_count = ours_fn(batch, limit)
        ref, ref_count = ref_fn(batch, limit)
        assert max_relative_difference(ours, ref) <= 1e-6
        assert int(ours_count) == int(ref_count)


@pytest.mark.parametrize("uniform", [True, False])
def test_per_example_layer_norm_clip_against_optax(uniform):
    batch = random_tree(4, batch=(5,))
    ours, ours_counts = jax.jit(
        lambda g: optim_fn.per_example_layer_norm_clip(g, 3.0, uniform=uniform)
    )(batch)
    ref, ref_counts = jax.jit(
        lambda g: optax.per_example_layer_norm_clip(g, 3.0, uniform=uniform)
    )(batch)
    assert max_relative_difference(ours, ref) <= 1e-6
    assert jax.tree.map(int, ours_counts) == jax.tree.map(int, ref_counts)


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (lambda: optim_fn.clip_by_global_norm(-1.0), ValueError, r"`max_norm` must be >= 0"),
        (lambda: optim_fn.clip(-0.1), ValueError, r"`max_delta` must be >= 0"),
        (lambda: optim_fn.clip_by_block_rms(-1.0), ValueError, r"`threshold` must be >= 0"),
        (lambda: optim_fn.adaptive_grad_clip(-1.0), ValueError, r"`clipping` must be >= 0"),
        (lambda: optim_fn.adaptive_grad_clip(0.1, axis="rows"), ValueError, r"`axis` must be"),
        (
            lambda: optim_fn.per_example_global_norm_clip([jnp.ones(3), jnp.ones((2, 3))], 1.0),
            ValueError,
            r"same batch size on axis 0",
        ),
        (lambda: optim_fn.unitwise_norm(jnp.ones((2,) * 6)), ValueError, r"pass `axis`"),
    ],
)
def test_bad_input_raises_naming_the_argument(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: optim_fn.chain(optim_fn.clip_by_global_norm(1.0), optim_fn.adamw(1e-3)),
        lambda: optim_fn.polyak_sgd(),
        lambda: optim_fn.contrib.dog(),
        lambda: optim_fn.contrib.dowg(),
    ],
    ids=["clip_by_global_norm+adamw", "polyak_sgd", "dog", "dowg"],
)
def test_donated_step_copies_no_state_scalar(make):
    # A state field written but never read (a norm or step size kept for logging) is an
    # argument jax.jit drops; the donated scalars after it then pair with the wrong
    # outputs and XLA copies each one (a kernel launch per scalar per step on a GPU).
    optimizer = make()
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones((3,))}

    def step(params, state, grads):
        # `value` (the loss) is read by polyak_sgd and ignored by the others.
        updates, state = optimizer.update(grads, state, params, value=jnp.sum(grads["b"]))
        return optim_fn.apply_updates(params, updates), state

    state = optimizer.init(params)
    text = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile().as_text()
    entry = text[text.index("ENTRY") :]
    scalar_copies = re.findall(r"= [fs]32\[\] copy\(", entry)
    assert not scalar_copies, entry

