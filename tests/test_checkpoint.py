"""Optimizer state through checkpoints: orbax-checkpoint, flax serialization, NumPy.

A run saved at step k, restored into a freshly built optimizer and continued must give
bitwise the params and state of the run that was never interrupted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
from optim_fn.nonfinite import NonFiniteState, nonfinite_policy

ocp = pytest.importorskip("orbax.checkpoint")
serialization = pytest.importorskip("flax.serialization")

STEPS, SAVE_AT = 12, 5
PARAMS = {
    "dense": {"kernel": jnp.asarray(np.linspace(-1, 1, 12).reshape(4, 3), jnp.float32)},
    "bias": jnp.zeros((3,), jnp.float32),
    "half": jnp.ones((2,), jnp.bfloat16),
}

OPTIMIZERS = {
    "adamw_schedule": lambda: optim_fn.adamw(
        optim_fn.warmup_cosine_decay_schedule(0.0, 0.1, 3, 20), weight_decay=0.01
    ),
    "clip_sgd_nesterov": lambda: optim_fn.chain(
        optim_fn.clip_by_global_norm(0.5), optim_fn.sgd(0.05, momentum=0.9, nesterov=True)
    ),
    "skip_nonfinite_adam": lambda: nonfinite_policy(optim_fn.adam(1e-2), "skip"),
}


def grads_at(step, with_nan):
    rng = np.random.default_rng(step)
    grads = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), p.dtype), PARAMS)
    if with_nan and step == 3:  # exercises the skip policy's state
        grads["bias"] = grads["bias"].at[0].set(jnp.nan)
    return grads


def make_step(optimizer):
    @jax.jit
    def step(params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return optim_fn.apply_updates(params, updates), state

    return step


def run(optimizer, params, state, start, stop):
    step = make_step(optimizer)
    with_nan = isinstance(state, NonFiniteState)
    for index in range(start, stop):
        params, state = step(params, state, grads_at(index, with_nan))
    return params, state


def save_restore_orbax(tree, template, tmp_path):
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "ckpt", tree)
        checkpointer.wait_until_finished()
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        return checkpointer.restore(tmp_path / "ckpt", abstract)


def save_restore_flax(tree, template, tmp_path):
    path = tmp_path / "state.msgpack"
    path.write_bytes(serialization.to_bytes(tree))
    return serialization.from_bytes(template, path.read_bytes())


def save_restore_numpy(tree, template, tmp_path):
    path = tmp_path / "state.npz"
    leaves = jax.tree.leaves(tree)
    # Raw bytes: .npy has no bfloat16, and a byte view round-trips every dtype exactly.
    np.savez(path, *[np.asarray(leaf).reshape(-1).view(np.uint8) for leaf in leaves])
    with np.load(path) as loaded:
        raw = [loaded[f"arr_{i}"] for i in range(len(leaves))]
    restored = [
        jnp.asarray(r.view(np.dtype(t.dtype)).reshape(t.shape))
        for r, t in zip(raw, jax.tree.leaves(template), strict=True)
    ]
    return jax.tree.unflatten(jax.tree.structure(template), restored)


METHODS = {"orbax": save_restore_orbax, "flax": save_restore_flax, "numpy": save_restore_numpy}


def assert_bitwise(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        as_bytes = [np.asarray(x).reshape(-1).view(np.uint8) for x in (a, b)]
        np.testing.assert_array_equal(*as_bytes)
        assert bool(jnp.all(jnp.isfinite(a)))


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_restore_and_continue_is_bitwise(name, method, tmp_path):
    optimizer = OPTIMIZERS[name]()
    state0 = optimizer.init(PARAMS)
    # The state is arrays only: nothing that a serializer would have to pickle.
    for leaf in jax.tree.leaves(state0):
        assert isinstance(leaf, jax.Array), type(leaf)

    full_params, full_state = run(optimizer, PARAMS, state0, 0, STEPS)

    params_k, state_k = run(optimizer, PARAMS, state0, 0, SAVE_AT)
    fresh = OPTIMIZERS[name]()  # as after a process restart: a new optimizer object
    template = fresh.init(PARAMS)
    restored_state = METHODS[method](state_k, template, tmp_path)
    restored_params = METHODS[method](params_k, PARAMS, _subdir(tmp_path, "params"))
    assert_bitwise(restored_state, state_k)
    assert_bitwise(restored_params, params_k)
    assert optim_fn.get_hyperparams(restored_state).keys() == optim_fn.get_hyperparams(
        state_k
    ).keys()

    resumed_params, resumed_state = run(fresh, restored_params, restored_state, SAVE_AT, STEPS)
    assert_bitwise(resumed_params, full_params)
    assert_bitwise(resumed_state, full_state)


def _subdir(path, name):
    sub = path / name
    sub.mkdir()
    return sub


def test_set_hyperparams_survives_a_checkpoint(tmp_path):
    optimizer = optim_fn.adam(1e-3)
    state = optim_fn.set_hyperparams(optimizer.init(PARAMS), learning_rate=3e-4, b2=0.99)
    restored = save_restore_flax(state, optimizer.init(PARAMS), tmp_path)
    values = optim_fn.get_hyperparams(restored)
    assert float(values["learning_rate"]) == np.float32(3e-4)
    assert float(values["b2"]) == np.float32(0.99)
