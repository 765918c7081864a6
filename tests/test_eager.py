"""Eager ``update`` runs one compiled program; inside a user's jit it adds nothing."""

import jax
import jax.numpy as jnp
import numpy as np

import optim_fn

PARAMS = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3), "s": jnp.float32(2.0)}


def grads(seed):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in PARAMS.items()}


def test_eager_update_equals_the_jitted_update_step_by_step():
    optimizer = optim_fn.adamw(1e-2, weight_decay=0.1)
    eager_state = jit_state = optimizer.init(PARAMS)
    jitted = jax.jit(optimizer.update)
    for seed in range(5):
        eager_updates, eager_state = optimizer.update(grads(seed), eager_state, PARAMS)
        jit_updates, jit_state = jitted(grads(seed), jit_state, PARAMS)
        for key in PARAMS:
            np.testing.assert_array_equal(eager_updates[key], jit_updates[key])


def test_eager_update_compiles_once_then_reuses_the_program(monkeypatch):
    optimizer = optim_fn.adam(1e-3)
    state = optimizer.init(PARAMS)
    traces = []
    original = jnp.sqrt

    def counting_sqrt(x):
        traces.append(1)
        return original(x)

    # The Adam rule calls jnp.sqrt once per leaf each time the update is traced.
    monkeypatch.setattr(jnp, "sqrt", counting_sqrt)
    for seed in range(4):
        _, state = optimizer.update(grads(seed), state, PARAMS)
    state = optim_fn.set_hyperparams(state, learning_rate=5e-4)
    optimizer.update(grads(9), state, PARAMS)
    assert len(traces) == len(PARAMS)  # one trace: no retracing over steps or new lr


def test_inside_a_users_jit_the_update_is_inlined_without_a_nested_jit():
    optimizer = optim_fn.chain(optim_fn.add_decayed_weights(1e-2), optim_fn.adam(1e-3))
    state = optimizer.init(PARAMS)
    jaxpr = jax.make_jaxpr(lambda g, s, p: optimizer.update(g, s, p))(grads(0), state, PARAMS)
    # jnp functions such as `where` are small jitted helpers; our update must not be one.
    nested = [
        eqn.params.get("name")
        for eqn in jaxpr.jaxpr.eqns
        if eqn.primitive.name in ("pjit", "jit")
    ]
    assert "update" not in nested, nested
    eager = jax.make_jaxpr(lambda g, s, p: jax.jit(optimizer.update)(g, s, p))(
        grads(0), state, PARAMS
    )
    assert [e.params.get("name") for e in eager.jaxpr.eqns] == ["update"]  # the check can fail


def test_extra_arguments_that_are_not_arrays_run_uncompiled():
    optimizer = optim_fn.sgd(0.1)
    state = optimizer.init(PARAMS)
    updates, _ = optimizer.update(grads(0), state, PARAMS, value_fn=lambda p: 0.0)
    np.testing.assert_allclose(updates["w"], -0.1 * grads(0)["w"], rtol=1e-6)
