"""``optim_fn.sharding.owner_per_matrix`` on one device: the same numbers, its errors.

The 8-device measurements (collectives, per-device work and state) are in
tests/test_matrix_sharding.py. Here a one-device mesh still takes the owner path (leaves
stacked by shape, the rule vmapped over the stack, the slots stored stacked), so every
matrix optimizer must give its plain numbers step by step: a group built in the wrong
order, a slot unstacked into the wrong leaf or a leaf index lost would show.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

import optim_fn
import optim_fn.contrib
from optim_fn import sharding
from optim_fn.core._owners import OwnedSlots

# Two groups of two same-shape matrices, interleaved in leaf order, and a vector (a group
# of one: AdamW's under Muon, the rule's own 1-d handling under Shampoo and Kron).
SHAPES = {"a": (6, 4), "b": (4, 6), "c": (6, 4), "d": (4, 6), "bias": (4,)}
OPTIMIZERS = {
    "muon": lambda: optim_fn.contrib.muon(0.02, weight_decay=0.01),
    "shampoo": lambda: optim_fn.contrib.shampoo(1e-2, precondition_frequency=2, eps=1e-6),
    "soap": lambda: optim_fn.contrib.soap(1e-2, precondition_frequency=2),
    # Per-leaf random probes: each leaf must keep its own index inside the stack.
    "kron": lambda: optim_fn.contrib.kron(1e-2, precond_update_prob=1.0),
    "dion": lambda: optim_fn.contrib.dion(0.02, rank_fraction=0.5),
}
# NorMuon, AdaMuon and Scion take Muon's path (param-shaped slots); they run on 8
# devices in tests/test_matrix_sharding.py.


def one_device_mesh():
    return jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def problem():
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in SHAPES.items()}
    targets = {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in SHAPES.items()}

    def loss(params):  # params-dependent gradients, coupled through a product
        value = sum(jnp.sum((params[k] - targets[k]) ** 2) for k in SHAPES)
        return value + jnp.sum(params["a"] @ params["b"]) ** 2 / 100

    return params, jax.grad(loss)


def run(optimizer, params, grad_fn, steps=4):
    state = optimizer.init(params)

    @jax.jit
    def step(params, state):
        updates, state = optimizer.update(grad_fn(params), state, params)
        return optim_fn.apply_updates(params, updates), state

    trajectory = []
    for _ in range(steps):
        params, state = step(params, state)
        trajectory.append(params)
    return trajectory, state


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_owner_path_gives_the_plain_numbers_step_by_step(name):
    mesh = one_device_mesh()
    params, grad_fn = problem()
    placed = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    plain, _ = run(OPTIMIZERS[name](), params, grad_fn)
    owned, state = run(sharding.owner_per_matrix(OPTIMIZERS[name](), mesh), placed, grad_fn)
    assert any(isinstance(x, OwnedSlots) for x in jax.tree.leaves(
        state, is_leaf=lambda x: isinstance(x, OwnedSlots))), "no slot stored by owner"
    for step, (ours, theirs) in enumerate(zip(owned, plain, strict=True)):
        for key in SHAPES:
            # Same rule, vmapped instead of called leaf by leaf: float32 reorderings only.
            np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-5, atol=2e-6,
                                       err_msg=f"{name} step {step} leaf {key}")


def test_hyperparameters_read_and_set_through_the_owned_state():
    mesh = one_device_mesh()
    params, grad_fn = problem()
    optimizer = sharding.owner_per_matrix(optim_fn.contrib.shampoo(1e-2, eps=1e-6), mesh)
    state = optimizer.init(params)
    assert float(optim_fn.get_hyperparams(state)["learning_rate"]) == pytest.approx(1e-2)
    state = optim_fn.set_hyperparams(state, learning_rate=0.0)
    updates, _ = jax.jit(optimizer.update)(grad_fn(params), state, params)
    assert all(float(jnp.max(jnp.abs(u))) == 0.0 for u in jax.tree.leaves(updates))


def test_bad_arguments_name_the_argument_and_the_fix():
    mesh = one_device_mesh()
    with pytest.raises(TypeError, match="owner_per_matrix: `mesh` must be a jax.sharding.Mesh"):
        sharding.owner_per_matrix(optim_fn.contrib.muon(0.02), "data")
    with pytest.raises(ValueError, match=r"`axes` 'model' must name axes of the mesh"):
        sharding.owner_per_matrix(optim_fn.contrib.muon(0.02), mesh, axes="model")
    other = jax.make_mesh((1,), ("other",), axis_types=(jax.sharding.AxisType.Auto,))
    params = {"w": jax.device_put(jnp.ones((4, 4)), NamedSharding(other, PartitionSpec()))}
    optimizer = sharding.owner_per_matrix(optim_fn.contrib.shampoo(1e-2), mesh)
    with pytest.raises(ValueError, match=r"param \['w'\] is placed on another mesh"):
        optimizer.init(params)
    state = optimizer.init({"w": jnp.ones((4, 4))})
    with pytest.raises(ValueError, match="do not match the optimizer state's owner layout"):
        two = {"w": jnp.ones((4, 4)), "v": jnp.ones((4, 4))}
        optimizer.update(two, state, two)


def test_msgpack_checkpoint_restores_and_resumes_bit_for_bit():
    serialization = pytest.importorskip("flax.serialization")
    mesh = one_device_mesh()
    params, grad_fn = problem()
    optimizer = sharding.owner_per_matrix(optim_fn.contrib.shampoo(1e-2, eps=1e-6), mesh)
    step = jax.jit(optimizer.update)
    _, state = step(grad_fn(params), optimizer.init(params), params)
    restored = serialization.from_bytes(optimizer.init(params), serialization.to_bytes(state))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    ours, _ = step(grad_fn(params), restored, params)
    theirs, _ = step(grad_fn(params), state, params)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_array_equal(a, b)
    other = {"a": params["a"]}
    with pytest.raises(ValueError, match="the checkpoint holds 3 groups of matrices"):
        serialization.from_bytes(optimizer.init(other), serialization.to_bytes(state))
