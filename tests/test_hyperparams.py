"""The "hyperparameters are data" contract of :mod:`optim_fn.hyperparams`.

A hyperparameter changed with ``set_hyperparams`` between steps does not retrace the
jitted step and does change the result (to what a fresh optimizer built with the new
value gives); ``get_hyperparams`` reads every value, including what a schedule produced
at the latest step; values are stored in float32 (float64 for float64 params), never
in the params' narrower dtype.
"""

from __future__ import annotations

import contextlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim_fn
from optim_fn import transforms
from optim_fn.testing import random_grads

PARAMS = {
    "w": jnp.asarray(np.random.default_rng(0).normal(size=(3, 2)), jnp.float32),
    "b": jnp.asarray([0.5, -1.5], jnp.float32),
}
GRADS = random_grads(PARAMS, 4, seed=1)


class CountingStep:
    """``jax.jit(update)`` with a Python side effect that counts traces."""

    def __init__(self, optimizer):
        self.traces = 0

        def step(grads, state, params):
            self.traces += 1
            return optimizer.update(grads, state, params)

        self._step = jax.jit(step)

    def __call__(self, grads, state, params=PARAMS):
        return self._step(grads, state, params)


@contextlib.contextmanager
def xla_compilations():
    """Collects the names of the functions XLA compiles inside the ``with`` block."""
    names = []

    def listen(event, duration_secs, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(kwargs.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def is_hyperparam_path(path) -> bool:
    return any(getattr(key, "name", None) == "hyperparams" for key in path)


def with_hyperparams_of(fresh_state, run_state):
    """``run_state`` (its count and moments) with the hyperparameters of ``fresh_state``."""
    return jax.tree_util.tree_map_with_path(
        lambda path, fresh, run: fresh if is_hyperparam_path(path) else run,
        fresh_state,
        run_state,
    )


def max_relative_difference(a, b) -> float:
    a, b = (
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(a)]),
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(b)]),
    )
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# name, optimizer from the value, value at construction, value set after step 1.
CHANGES = [
    ("learning_rate", lambda v: optim_fn.adamw(v, weight_decay=1e-2), 1e-3, 3e-2),
    ("b1", lambda v: optim_fn.adamw(1e-3, b1=v), 0.9, 0.5),
    ("eps", lambda v: optim_fn.adam(1e-3, eps=v), 1e-8, 0.3),
    ("weight_decay", lambda v: optim_fn.adamw(1e-2, weight_decay=v), 1e-4, 0.5),
    ("momentum", lambda v: optim_fn.sgd(0.1, momentum=v), 0.9, 0.3),
    ("momentum", lambda v: optim_fn.rmsprop(0.01, momentum=v, nesterov=True), 0.9, 0.3),
    ("decay", lambda v: optim_fn.rmsprop(0.01, decay=v, centered=True), 0.9, 0.5),
    ("rho", lambda v: optim_fn.adadelta(0.5, rho=v), 0.9, 0.5),
]
IDS = [
    "adamw-learning_rate",
    "adamw-b1",
    "adam-eps",
    "adamw-weight_decay",
    "sgd-momentum",
    "rmsprop-momentum",
    "rmsprop-decay",
    "adadelta-rho",
]


@pytest.mark.parametrize(("name", "make", "old", "new"), CHANGES, ids=IDS)
def test_set_between_steps_changes_the_result_without_retracing(name, make, old, new):
    optimizer, fresh = make(old), make(new)
    step = CountingStep(optimizer)

    _, state_1 = step(GRADS[0], optimizer.init(PARAMS))
    changed = optim_fn.set_hyperparams(state_1, **{name: new})
    assert get_value(changed, name) == np.float32(new)
    updates_2, state_2 = step(GRADS[1], changed)
    updates_3, _ = step(GRADS[2], state_2)

    # Reference: the same moments and count, the hyperparameters of a fresh optimizer
    # built with the new value.
    reference_2, reference_state = fresh.update(
        GRADS[1], with_hyperparams_of(fresh.init(PARAMS), state_1), PARAMS
    )
    reference_3, _ = fresh.update(GRADS[2], reference_state, PARAMS)
    chex.assert_trees_all_close(updates_2, reference_2, rtol=1e-6, atol=0)
    chex.assert_trees_all_close(updates_3, reference_3, rtol=1e-6, atol=0)
    # ... and the new value mattered: the old one gives a clearly different update.
    unchanged_2, _ = step(GRADS[1], state_1)
    assert max_relative_difference(updates_2, unchanged_2) > 1e-2
    # Four calls, four hyperparameter values seen, one trace.
    assert step.traces == 1


@pytest.mark.parametrize(("name", "make", "old", "new"), CHANGES[:5], ids=IDS[:5])
def test_set_before_the_first_step_equals_a_fresh_optimizer(name, make, old, new):
    optimizer, fresh = make(old), make(new)
    step = CountingStep(optimizer)
    state = optim_fn.set_hyperparams(optimizer.init(PARAMS), **{name: new})
    fresh_state = fresh.init(PARAMS)
    chex.assert_trees_all_equal(
        optim_fn.get_hyperparams(state), optim_fn.get_hyperparams(fresh_state)
    )
    params = fresh_params = PARAMS
    for grads in GRADS:
        updates, state = step(grads, state, params)
        fresh_updates, fresh_state = fresh.update(grads, fresh_state, fresh_params)
        chex.assert_trees_all_close(updates, fresh_updates, rtol=1e-6, atol=0)
        params = optim_fn.apply_updates(params, updates)
        fresh_params = optim_fn.apply_updates(fresh_params, fresh_updates)
    assert step.traces == 1


def test_the_jitted_step_compiles_once_across_steps_and_new_values():
    optimizer = optim_fn.adamw(1e-3, weight_decay=1e-4)
    step = CountingStep(optimizer)
    with xla_compilations() as compiled:
        state = optimizer.init(PARAMS)
        for grads in GRADS[:2]:
            _, state = step(grads, state)
        for learning_rate in (3e-4, 1e-4):
            _, state = step(GRADS[2], optim_fn.set_hyperparams(state, learning_rate=learning_rate))
    assert step.traces == 1
    assert [name for name in compiled if "step" in name] == ["jit(step)"]


def test_compilation_counter_counts():
    """The counter of the test above sees compilations (so its failure is real)."""

    @jax.jit
    def affine(x):
        return x * 3.0 + 1.0

    with xla_compilations() as compiled:
        affine(np.ones(7, np.float32))
        affine(np.zeros(7, np.float32))  # same signature: no compilation
        affine(np.zeros(8, np.float32))  # new shape: a second one
    assert [name for name in compiled if "affine" in name] == ["jit(affine)"] * 2


def get_value(state, name):
    return np.asarray(optim_fn.get_hyperparams(state)[name])


def test_set_inside_jit_does_not_retrace_and_matches_fresh_optimizers():
    optimizer = optim_fn.adamw(1e-3, weight_decay=1e-4)
    traces = []

    @jax.jit
    def step(grads, state, params, learning_rate, weight_decay):
        traces.append(None)
        state = optim_fn.set_hyperparams(
            state, learning_rate=learning_rate, weight_decay=weight_decay
        )
        read = optim_fn.get_hyperparams(state)
        return optimizer.update(grads, state, params), read["learning_rate"]

    state = optimizer.init(PARAMS)
    for lr, wd in [(1e-3, 1e-4), (0.05, 0.0), (0.2, 0.3)]:
        (updates, _), read_lr = step(GRADS[0], state, PARAMS, lr, wd)
        fresh = optim_fn.adamw(lr, weight_decay=wd)
        expected, _ = fresh.update(GRADS[0], fresh.init(PARAMS), PARAMS)
        chex.assert_trees_all_close(updates, expected, rtol=1e-6, atol=0)
        assert read_lr == np.float32(lr)
    assert len(traces) == 1


def test_schedules_are_read_at_the_latest_step():
    def lr_schedule(count):
        return 0.1 * 0.5**count

    b1_schedule = optax.linear_schedule(0.5, 0.9, transition_steps=3)
    optimizer = optim_fn.adam(lr_schedule, b1=b1_schedule)
    # The scaling alone, with the same b1 schedule: the update is -lr_t times it.
    unit = transforms.scale_by_adam(b1=b1_schedule)
    step, unit_step = CountingStep(optimizer), CountingStep(unit)

    state, unit_state = optimizer.init(PARAMS), unit.init(PARAMS)
    # Before any update, get_hyperparams shows what the first update will use.
    assert get_value(state, "learning_rate") == np.float32(lr_schedule(0))
    for k, grads in enumerate(GRADS, start=1):
        updates, state = step(grads, state)
        scaled, unit_state = unit_step(grads, unit_state)
        count_used = k - 1  # the count is 0 at the first update
        assert int(state[0].count) == k
        assert get_value(state, "learning_rate") == np.float32(lr_schedule(count_used))
        assert get_value(state, "b1") == np.float32(b1_schedule(count_used))
        # The value reported is the value used.
        learning_rate = np.float32(lr_schedule(count_used))
        expected = jax.tree.map(lambda u, lr=learning_rate: -lr * u, scaled)
        chex.assert_trees_all_close(updates, expected, rtol=1e-6, atol=0)
    assert step.traces == 1


def test_setting_a_scheduled_hyperparameter_is_an_error():
    state = optim_fn.adam(lambda count: 1e-3 / (1 + count)).init(PARAMS)
    with pytest.raises(ValueError, match="'learning_rate' follows a schedule"):
        optim_fn.set_hyperparams(state, learning_rate=0.1)
    # The other hyperparameters stay settable, in the same call's absence.
    assert get_value(optim_fn.set_hyperparams(state, b1=0.5), "b1") == np.float32(0.5)


def test_unknown_names_raise_key_error_listing_valid_names():
    state = optim_fn.adamw(1e-3).init(PARAMS)
    with pytest.raises(KeyError) as caught:
        optim_fn.set_hyperparams(state, lr=0.1)
    message = str(caught.value)
    assert "'lr'" in message
    for name in ["learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay"]:
        assert repr(name) in message
    with pytest.raises(KeyError, match="valid names"):
        optim_fn.set_hyperparams(state, **{"7.eps": 0.1})


def test_shared_names_are_qualified_by_block():
    def make(rms_eps, adam_eps):
        return optim_fn.chain(
            transforms.scale_by_rms(eps=rms_eps),
            transforms.scale_by_adam(eps=adam_eps),
            transforms.scale_by_learning_rate(1e-2),
        )

    optimizer = make(1e-8, 1e-6)
    state = optimizer.init(PARAMS)
    values = optim_fn.get_hyperparams(state)
    assert "eps" not in values
    assert values["0.eps"] == np.float32(1e-8)
    assert values["1.eps"] == np.float32(1e-6)
    assert {"decay", "b1", "b2", "learning_rate"} <= set(values)  # unique: bare names

    step = CountingStep(optimizer)
    for changed, fresh in [
        (optim_fn.set_hyperparams(state, **{"1.eps": 0.5}), make(1e-8, 0.5)),
        (optim_fn.set_hyperparams(state, eps=0.25), make(0.25, 0.25)),  # bare: every block
    ]:
        chex.assert_trees_all_equal(
            optim_fn.get_hyperparams(changed), optim_fn.get_hyperparams(fresh.init(PARAMS))
        )
        updates, _ = step(GRADS[0], changed)
        expected, _ = fresh.update(GRADS[0], fresh.init(PARAMS), PARAMS)
        chex.assert_trees_all_close(updates, expected, rtol=1e-6, atol=0)
    assert step.traces == 1


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_storage_is_float32_for_narrow_params(dtype):
    params = {"w": jnp.ones((4,), dtype), "b": jnp.zeros((), dtype)}
    optimizer = optim_fn.adamw(1e-3, b2=0.999)
    state = optimizer.init(params)
    for name, value in optim_fn.get_hyperparams(state).items():
        assert value.dtype == jnp.float32, name
    assert get_value(state, "b2") == np.float32(0.999) != 1.0
    # 1 - b2 kept at full precision, not 1 - float32(0.999) (off by 1.3e-5 relative).
    assert state[0].hyperparams.one_minus["b2"] == np.float32(1.0 - 0.999)
    # A value set later is stored the same way.
    state = optim_fn.set_hyperparams(state, b2=0.9999)
    assert get_value(state, "b2").dtype == np.float32
    assert state[0].hyperparams.one_minus["b2"] == np.float32(1.0 - 0.9999)


def test_bf16_params_step_with_b2_below_one():
    # If b2 were rounded to bfloat16 it would be 1.0: nu would stay 0 and the first
    # update, m_hat / sqrt(nu_hat), would be 0/0.
    params = {"w": jnp.zeros((4,), jnp.bfloat16)}
    grads = {"w": jnp.asarray([1.0, -2.0, 0.5, -0.25], jnp.bfloat16)}
    optimizer = optim_fn.adam(1e-3, b2=0.999)
    updates, state = optimizer.update(grads, optimizer.init(params), params)
    g = np.asarray(grads["w"], np.float64)
    nu = np.asarray(state[0].nu["w"], np.float64)
    np.testing.assert_allclose(nu, (1.0 - 0.999) * g**2, rtol=2**-7)
    # One Adam step from zero moments is -lr * g / |g|.
    np.testing.assert_allclose(np.asarray(updates["w"], np.float64), -1e-3 * np.sign(g), rtol=2**-7)


def test_float64_storage_under_x64():
    with jax.enable_x64(True):
        params = {"w": jnp.ones((3,), jnp.float64), "h": jnp.ones((2,), jnp.float32)}
        optimizer = optim_fn.adam(1e-3, b2=0.999)
        state = optimizer.init(params)
        for name, value in optim_fn.get_hyperparams(state).items():
            assert value.dtype == jnp.float64, name
        assert get_value(state, "b2") == np.float64(0.999)
        assert state[0].hyperparams.one_minus["b2"] == np.float64(1.0) - np.float64(0.999)
        state = optim_fn.set_hyperparams(state, learning_rate=1e-2)
        assert get_value(state, "learning_rate") == np.float64(1e-2)
        updates, state = jax.jit(optimizer.update)(params, state, params)
        assert updates["w"].dtype == jnp.float64 and updates["h"].dtype == jnp.float32
        assert get_value(state, "learning_rate").dtype == np.float64
        # complex128 params also store float64 (their real dtype).
        complex_state = optimizer.init({"z": jnp.ones((2,), jnp.complex128)})
        assert get_value(complex_state, "eps").dtype == np.float64


def test_values_keep_their_dtype_and_must_be_scalars():
    state = optim_fn.sgd(1, momentum=0.9).init(PARAMS)  # an int learning rate
    assert get_value(state, "learning_rate").dtype == np.float32
    state = optim_fn.set_hyperparams(
        state, learning_rate=np.float64(0.25), momentum=jnp.asarray(0.5)
    )
    assert get_value(state, "learning_rate") == np.float32(0.25)
    assert get_value(state, "momentum").dtype == np.float32
    with pytest.raises(ValueError, match="`learning_rate` must be a real scalar"):
        optim_fn.set_hyperparams(state, learning_rate=jnp.ones(2))


def test_reads_and_sets_optax_inject_hyperparams_states():
    schedule = optax.linear_schedule(1e-2, 0.0, transition_steps=10)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=schedule, b1=0.8)
    state = optimizer.init(PARAMS)
    values = optim_fn.get_hyperparams(state)
    assert set(values) == {"learning_rate", "b1", "b2", "eps", "eps_root"}
    for name, value in values.items():
        assert value == state.hyperparams[name]
    for k, grads in enumerate(GRADS[:2], start=1):
        _, state = optimizer.update(grads, state, PARAMS)
        assert get_value(state, "learning_rate") == np.float32(schedule(k - 1))

    # Setting works on optax's dict too, and optax's update uses the new value.
    constant = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    state = optim_fn.set_hyperparams(constant.init(PARAMS), learning_rate=0.5, b1=0.7)
    assert state.hyperparams["learning_rate"] == np.float32(0.5)
    updates, _ = constant.update(GRADS[0], state, PARAMS)
    fresh = optax.inject_hyperparams(optax.adam)(learning_rate=0.5, b1=0.7)
    expected, _ = fresh.update(GRADS[0], fresh.init(PARAMS))
    chex.assert_trees_all_close(updates, expected, rtol=1e-6, atol=0)
    unchanged, _ = constant.update(GRADS[0], constant.init(PARAMS))
    assert max_relative_difference(updates, unchanged) > 0.5

    # Mixed in one chain with optim_fn blocks, every name is found.
    mixed = optim_fn.chain(
        transforms.scale_by_adam(b1=0.8),
        optax.inject_hyperparams(optax.scale)(step_size=-0.1),
    )
    values = optim_fn.get_hyperparams(mixed.init(PARAMS))
    assert values["step_size"] == np.float32(-0.1)
    assert values["b1"] == np.float32(0.8)
