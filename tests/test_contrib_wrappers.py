"""The contrib wrappers that do not fit the plain-gradient parity cases, against optax.

* ``dpsgd`` / ``differentially_private_aggregate`` take PER-EXAMPLE gradients (a batch
  axis on every leaf): 60 steps of random per-example gradients, some examples clipped
  and some not, the noise drawn from the same key stream as optax's.
* ``split_real_and_imaginary`` needs complex params: 60 steps with a complex and a
  real leaf, wrapping inner transforms with and without params.
* ``mechanize``'s step-by-step parity is in ``tests/test_family_parity.py``; here, what
  parity cannot show (the reference point is the params of the first update).
* ``contrib.reduce_on_plateau`` is the top-level one under optax's contrib names.

Every step compares the updates and the params after ``apply_updates``::

    max over leaves |ours - optax| / max over leaves |optax|  <= 1e-5 (float32), 1e-10 (float64)

plus an independent NumPy check of DP-SGD's formula and bad-input errors.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import optim_fn
from optim_fn import contrib

STEPS = 60
BATCH = 6
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-10}
SHAPES = {"matrix": (4, 3), "vector": (5,), "scalar": ()}


def per_example_data(dtype: type) -> tuple[dict, list[dict]]:
    """Params and per-example gradients whose example norms straddle the clip norm 1.0."""
    rng = np.random.default_rng(7)
    params = {k: rng.normal(size=s).astype(dtype) for k, s in SHAPES.items()}
    grads = []
    for _ in range(STEPS):
        # Example scales 10**U(-1.5, 0.5) over ~4 entries: norms from ~0.06 to ~6.
        scales = 10 ** rng.uniform(-1.5, 0.5, size=BATCH)
        grads.append(
            {
                k: (rng.normal(size=(BATCH, *s)) * scales.reshape((BATCH,) + (1,) * len(s)))
                .astype(dtype)
                for k, s in SHAPES.items()
            }
        )
    return params, grads


def complex_data(dtype: type) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(8)
    cdtype = np.complex64 if dtype == np.float32 else np.complex128

    def draw(shape, cplx):
        x = rng.normal(size=shape) + (1j * rng.normal(size=shape) if cplx else 0)
        return x.astype(cdtype if cplx else dtype)

    params = {"z": draw((4, 3), True), "w": draw((5,), False), "c": draw((), True)}
    grads = []
    for _ in range(STEPS):
        scale = 10 ** rng.uniform(-2, 2)
        grads.append({k: draw(np.shape(v), np.iscomplexobj(v)) * scale for k, v in params.items()})
    return params, grads


def run(transform: Any, apply: Callable, params: dict, grads: list) -> list:
    """``(updates, params)`` after every step, the step jitted once."""
    step = jax.jit(transform.update)
    state = transform.init(params)
    out = []
    for g in grads:
        updates, state = step(g, state, params)
        params = apply(params, updates)
        out.append(jax.device_get((updates, params)))
    return out


def max_relative_error(ours: list, reference: list) -> float:
    worst = 0.0
    for step, (mine, theirs) in enumerate(zip(ours, reference, strict=True)):
        for a_tree, b_tree in zip(mine, theirs, strict=True):
            diff = scale = 0.0
            for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree), strict=True):
                assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, step)
                diff = max(diff, float(np.max(np.abs(a - b), initial=0)))
                scale = max(scale, float(np.max(np.abs(b), initial=0)))
            assert scale > 0, f"optax's step {step} is all zeros: a vacuous comparison"
            worst = max(worst, diff / scale)
    return worst


def compare(make_ours, make_optax, data, dtype) -> float:
    with jax.enable_x64(dtype == np.float64), warnings.catch_warnings():
        # optax's dpsgd passes its seed through the deprecated `seed=` of its aggregate.
        warnings.simplefilter("ignore", DeprecationWarning)
        params, grads = data(dtype)
        params = jax.tree.map(jnp.asarray, params)
        grads = [jax.tree.map(jnp.asarray, g) for g in grads]
        ours = run(make_ours(), optim_fn.apply_updates, params, grads)
        theirs = run(make_optax(), optax.apply_updates, params, grads)
    return max_relative_error(ours, theirs)


DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float64, id="f64")]

# ----------------------------------------------------------------------------------------
# DP-SGD.

DP_CASES = {
    "dpsgd": (
        lambda: contrib.dpsgd(0.1, 1.0, 0.5, 3),
        lambda: optax.contrib.dpsgd(0.1, 1.0, 0.5, 3),
    ),
    "dpsgd_momentum": (
        lambda: contrib.dpsgd(0.1, 0.7, 1.1, 5, momentum=0.9),
        lambda: optax.contrib.dpsgd(0.1, 0.7, 1.1, 5, momentum=0.9),
    ),
    "dpsgd_nesterov": (
        lambda: contrib.dpsgd(0.05, 2.0, 0.3, 0, momentum=0.8, nesterov=True),
        lambda: optax.contrib.dpsgd(0.05, 2.0, 0.3, 0, momentum=0.8, nesterov=True),
    ),
    "aggregate_typed_key": (
        lambda: contrib.differentially_private_aggregate(1.0, 0.8, jax.random.key(11)),
        lambda: optax.contrib.differentially_private_aggregate(1.0, 0.8, jax.random.key(11)),
    ),
    "aggregate_int_key": (
        lambda: contrib.differentially_private_aggregate(0.5, 2.0, 42),
        lambda: optax.contrib.differentially_private_aggregate(0.5, 2.0, 42),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(DP_CASES))
def test_dpsgd_matches_optax_step_by_step(name, dtype):
    make_ours, make_optax = DP_CASES[name]
    error = compare(make_ours, make_optax, per_example_data, dtype)
    print(f"{name} {dtype.__name__}: max relative error {error:.2e}")
    assert error <= TOLERANCE[dtype], (name, error)


def test_the_data_clips_some_examples_and_not_others():
    _, grads = per_example_data(np.float64)
    clipped = [int(optim_fn.per_example_global_norm_clip(g, 1.0)[1]) for g in grads]
    assert 0 < np.mean(clipped) < BATCH, clipped


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (
            lambda: contrib.dpsgd(0.1, 1.0, 0.5, 4),
            lambda: optax.contrib.dpsgd(0.1, 1.0, 0.5, 3),
        ),
        (
            lambda: contrib.dpsgd(0.1, 1.0, 0.5, 3, momentum=0.9, nesterov=True),
            lambda: optax.contrib.dpsgd(0.1, 1.0, 0.5, 3, momentum=0.9),
        ),
        (
            lambda: contrib.dpsgd(0.1, 1.0, 0.0, 3),
            lambda: optax.contrib.dpsgd(0.1, 1.0, 0.5, 3),
        ),
        (
            lambda: contrib.dpsgd(0.1, 0.5, 1.0, 3),
            lambda: optax.contrib.dpsgd(0.1, 1.0, 0.5, 3),
        ),
    ],
    ids=["seed", "nesterov", "noise_multiplier", "l2_norm_clip"],
)
def test_dpsgd_detects_a_flipped_option(ours, theirs):
    assert compare(ours, theirs, per_example_data, np.float32) > 1e3 * TOLERANCE[np.float32]


def test_dp_aggregate_is_the_mean_of_clipped_examples_plus_noise_of_std_c_sigma_over_b():
    """An independent NumPy transcription of Abadi et al.'s aggregation."""
    rng = np.random.default_rng(3)
    scales = np.array([0.01, 0.1, 0.2, 0.5, 1.0, 3.0]).reshape(BATCH, 1)
    grads = {
        "a": rng.normal(size=(BATCH, 4, 3)) * scales[:, :, None],
        "b": rng.normal(size=(BATCH, 5)) * scales * 3,
    }
    clip = 1.5
    with jax.enable_x64(True):
        transform = contrib.differentially_private_aggregate(clip, 0.0, 0)
        params = {"a": jnp.zeros((4, 3)), "b": jnp.zeros(5)}
        updates, _ = transform.update(
            jax.tree.map(jnp.asarray, grads), transform.init(params), params
        )
    norms = np.sqrt(sum(np.sum(g.reshape(BATCH, -1) ** 2, axis=1) for g in grads.values()))
    factor = np.minimum(1.0, clip / norms)
    assert np.any(factor < 1) and np.any(factor == 1)
    for k, g in grads.items():
        expected = np.tensordot(factor, g, axes=1) / BATCH
        np.testing.assert_allclose(np.asarray(updates[k]), expected, rtol=1e-12, atol=0)
    # The noise: zero gradients leave only it, N(0, (C sigma / B)^2) per entry.
    zeros = {"w": jnp.zeros((BATCH, 200, 100), jnp.float32)}
    transform = contrib.differentially_private_aggregate(clip, 2.0, 1)
    state = transform.init({"w": jnp.zeros((200, 100))})
    first, state = transform.update(zeros, state)
    second, _ = transform.update(zeros, state)
    for noise in (first["w"], second["w"]):
        noise = np.asarray(noise, np.float64)
        assert abs(noise.mean()) < 0.05 * clip * 2.0 / BATCH
        np.testing.assert_allclose(noise.std(), clip * 2.0 / BATCH, rtol=0.03)
    assert not np.allclose(first["w"], second["w"]), "the key must advance every step"


def test_dp_hyperparameters_are_state_data_and_may_be_schedules():
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.asarray([[3.0, 0.0, 4.0], [0.3, 0.0, 0.4]])}
    transform = contrib.differentially_private_aggregate(lambda c: 1.0 + c, 0.0, 0)
    state = transform.init(params)
    first, state = transform.update(grads, state)
    second, state = transform.update(grads, state)
    # Example 0 (norm 5) is clipped to 1, then to 2; example 1 (norm 0.5) never.
    np.testing.assert_allclose(first["w"], [(0.6 + 0.3) / 2, 0, (0.8 + 0.4) / 2], rtol=1e-6)
    np.testing.assert_allclose(second["w"], [(1.2 + 0.3) / 2, 0, (1.6 + 0.4) / 2], rtol=1e-6)
    assert float(optim_fn.get_hyperparams(state)["l2_norm_clip"]) == 2.0
    fixed = contrib.differentially_private_aggregate(1.0, 0.0, 0)
    state = optim_fn.set_hyperparams(fixed.init(params), l2_norm_clip=0.5)
    third, _ = fixed.update(grads, state)
    np.testing.assert_allclose(third["w"], [(0.3 + 0.3) / 2, 0, (0.4 + 0.4) / 2], rtol=1e-6)


# ----------------------------------------------------------------------------------------
# Complex params as real pairs.

SPLIT_CASES = {
    "adam": (
        lambda: contrib.split_real_and_imaginary(optim_fn.adam(1e-2)),
        lambda: optax.contrib.split_real_and_imaginary(optax.adam(1e-2)),
    ),
    # Uses the params (weight decay), which must be split the same way.
    "adamw": (
        lambda: contrib.split_real_and_imaginary(optim_fn.adamw(1e-2, weight_decay=0.1)),
        lambda: optax.contrib.split_real_and_imaginary(optax.adamw(1e-2, weight_decay=0.1)),
    ),
    # A real-only rule: Rprop's sign comparisons have no complex meaning.
    "rprop": (
        lambda: contrib.split_real_and_imaginary(optim_fn.rprop(1e-2)),
        lambda: optax.contrib.split_real_and_imaginary(optax.rprop(1e-2)),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_split_real_and_imaginary_matches_optax_step_by_step(name, dtype):
    make_ours, make_optax = SPLIT_CASES[name]
    error = compare(make_ours, make_optax, complex_data, dtype)
    print(f"split {name} {dtype.__name__}: max relative error {error:.2e}")
    assert error <= TOLERANCE[dtype], (name, error)


def test_split_real_and_imaginary_runs_real_only_rules_on_complex_params():
    # optim_fn.rprop refuses complex params; split, it sees real pairs. optax's rprop
    # lags a step (tests/test_family_reference.py), so the reference is our rprop run
    # on the real and imaginary parts as separate real leaves.
    with pytest.raises(TypeError, match="complex"):
        optim_fn.rprop(1e-2).init({"z": jnp.ones(2, jnp.complex64)})
    params, grads = complex_data(np.float32)
    as_pairs = lambda t: {  # noqa: E731 - a one-line tree reshuffle
        "zr": t["z"].real, "zi": t["z"].imag, "w": t["w"], "cr": t["c"].real, "ci": t["c"].imag,
    }  # fmt: skip
    ours = run(SPLIT_CASES["rprop"][0](), optim_fn.apply_updates, params, grads)
    real = run(optim_fn.rprop(1e-2), optim_fn.apply_updates, as_pairs(params), map(as_pairs, grads))
    for (u, _), (v, _) in zip(ours, real, strict=True):
        np.testing.assert_array_equal(u["z"], v["zr"] + 1j * v["zi"])
        np.testing.assert_array_equal(u["w"], v["w"])
        assert u["z"].dtype == np.complex64 and u["w"].dtype == np.float32


def test_split_real_and_imaginary_passes_extra_arguments_to_the_inner_transform():
    params = {"z": jnp.asarray([1.0 + 2.0j, -1.0j], jnp.complex64)}
    grads = {"z": jnp.asarray([0.5 + 0.5j, 1.0 - 1.0j], jnp.complex64)}
    transform = contrib.split_real_and_imaginary(optim_fn.polyak_sgd())
    updates, _ = transform.update(grads, transform.init(params), params, value=jnp.asarray(2.0))
    # Polyak: step = value / ||g||^2 = 2 / 2.5 over the four real parts.
    np.testing.assert_allclose(
        np.asarray(updates["z"]), -0.8 * np.asarray(grads["z"]), rtol=1e-6
    )


# ----------------------------------------------------------------------------------------
# Mechanic beyond parity; reduce_on_plateau under contrib.


def test_mechanize_measures_from_the_params_of_the_first_update():
    init_params = {"w": jnp.zeros(3)}
    loaded = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    transform = contrib.mechanize(optim_fn.sgd(1.0))
    state = transform.init(init_params)
    _, state = transform.update({"w": jnp.ones(3)}, state, loaded)
    np.testing.assert_array_equal(state.x0["w"], loaded["w"])
    _, state = transform.update({"w": jnp.ones(3)}, state, {"w": jnp.ones(3)})
    np.testing.assert_array_equal(state.x0["w"], loaded["w"])
    values = optim_fn.get_hyperparams(state)
    assert {"weight_decay", "eps", "s_init"} <= set(values)
    assert state.s.shape == (6,) and state.s.dtype == jnp.float32


def test_mechanize_hyperparameters_may_be_schedules():
    rng = np.random.default_rng(5)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
    grads = [{"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)} for _ in range(8)]

    def weight_decay(count):
        return jnp.where(count < 4, 0.1, 0.5)

    by_schedule = run(
        contrib.mechanize(optim_fn.sgd(0.1), weight_decay, s_init=lambda c: 0.1 + 0 * c),
        optim_fn.apply_updates,
        params,
        grads,
    )
    first = run(contrib.mechanize(optim_fn.sgd(0.1), 0.1, s_init=0.1), optim_fn.apply_updates,
                params, grads)  # fmt: skip
    assert max_relative_error(by_schedule[:4], first[:4]) <= 1e-6
    assert max_relative_error(by_schedule[4:], first[4:]) > 1e-3


def test_contrib_reduce_on_plateau_is_the_top_level_one_with_optax_state_fields():
    assert contrib.reduce_on_plateau is optim_fn.reduce_on_plateau
    assert contrib.ReduceLROnPlateauState is optim_fn.ReduceLROnPlateauState
    theirs = optax.contrib.ReduceLROnPlateauState._fields
    assert contrib.ReduceLROnPlateauState._fields[: len(theirs)] == theirs


# ----------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "build, pattern",
    [
        (lambda: contrib.dpsgd(-0.1, 1.0, 0.5, 0), "dpsgd: `learning_rate` must be >= 0"),
        (lambda: contrib.dpsgd(0.1, -1.0, 0.5, 0), "`l2_norm_clip` must be >= 0"),
        (lambda: contrib.dpsgd(0.1, 1.0, -0.5, 0), "`noise_multiplier` must be >= 0"),
        (lambda: contrib.dpsgd(0.1, 1.0, 0.5, "seed"), "`key` must be an int seed or a PRNG"),
        (lambda: contrib.dpsgd(0.1, 1.0, 0.5, 0, momentum=1.5), r"`momentum` must be in \[0, 1\)"),
        (lambda: contrib.dpsgd(0.1, 1.0, 0.5, 0, nesterov=True), "`nesterov=True` needs"),
        (
            lambda: contrib.differentially_private_aggregate(1.0, 0.5, 1, seed=2),
            "either `key` or `seed`",
        ),
        (lambda: contrib.mechanize(optim_fn.sgd(1.0), num_betas=0), "`num_betas` must be an int"),
        (lambda: contrib.mechanize(optim_fn.sgd(1.0), num_betas=2.5), "`num_betas` must be"),
        (lambda: contrib.mechanize(optim_fn.sgd(1.0), weight_decay=-1.0), "`weight_decay`"),
        (lambda: contrib.mechanize(optim_fn.sgd(1.0), eps=-1.0), "mechanize: `eps` must be"),
        (lambda: contrib.mechanize(optim_fn.sgd(1.0), s_init=-1.0), "`s_init` must be >= 0"),
    ],
)
def test_bad_construction_arguments_are_named(build, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match=pattern):
            build()


def test_wrappers_refuse_what_is_not_a_transform():
    with pytest.raises(TypeError, match="`base_optimizer` is .* not a gradient transformation"):
        contrib.mechanize(0.1)
    with pytest.raises(TypeError, match="`inner` is .* not a gradient transformation"):
        contrib.split_real_and_imaginary("adam")


def test_seed_is_deprecated_as_in_optax_and_gives_the_same_key():
    with pytest.warns(DeprecationWarning, match="`seed` is deprecated"):
        by_seed = contrib.differentially_private_aggregate(1.0, 0.5, seed=9)
    by_key = contrib.differentially_private_aggregate(1.0, 0.5, 9)
    params = {"w": jnp.zeros(2)}
    assert jnp.array_equal(
        jax.random.key_data(by_seed.init(params).rng_key),
        jax.random.key_data(by_key.init(params).rng_key),
    )


def test_bad_per_example_gradients_and_missing_params_say_what_to_pass():
    transform = contrib.dpsgd(0.1, 1.0, 0.5, 0)
    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    state = transform.init(params)
    with pytest.raises(ValueError, match="same batch size on axis 0"):
        transform.update({"w": jnp.ones((4, 3)), "b": jnp.ones(())}, state, params)
    with pytest.raises(ValueError, match="same batch size on axis 0"):
        transform.update({"w": jnp.ones((4, 3)), "b": jnp.ones(3)}, state, params)
    mechanic = contrib.mechanize(optim_fn.adam(1.0))
    with pytest.raises(ValueError, match="mechanize needs the params"):
        mechanic.update(params, mechanic.init(params))
