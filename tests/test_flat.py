"""Flat mode: a FlatTree gives the numbers of tree mode and a program that does not grow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
from optim_fn import flat

SHAPES = [(4, 3), (3,), (2, 2, 2), (), (17, 5), (1,)]


def make_params(seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return {f"l{i}": jnp.asarray(rng.normal(size=s), dtype) for i, s in enumerate(SHAPES)}


def random_grads(rng, params):
    scale = 10 ** rng.uniform(-2, 2)
    return {k: jnp.asarray(rng.normal(size=v.shape) * scale, v.dtype) for k, v in params.items()}


def test_ravel_unravel_round_trip_keeps_values_dtypes_and_structure():
    params = {
        "a": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3, jnp.bfloat16)},
        "c": [jnp.zeros((2, 1, 2), jnp.float16), jnp.float32(3.0), None],
    }
    packed = flat.ravel(params)
    assert len(packed.buffers) == 3  # one per dtype
    restored = packed.unravel()
    assert jax.tree.structure(restored) == jax.tree.structure(params)
    for original, back in zip(jax.tree.leaves(params), jax.tree.leaves(restored), strict=True):
        assert back.dtype == original.dtype and back.shape == original.shape
        np.testing.assert_array_equal(np.asarray(back), np.asarray(original))


def test_ravel_under_jit_equals_eager_ravel():
    params = make_params()
    eager = flat.ravel(params)
    traced = jax.jit(lambda p: flat.ravel(p, layout=eager.layout))(params)
    np.testing.assert_array_equal(np.asarray(eager.buffers[0]), np.asarray(traced.buffers[0]))


def test_groups_put_leaves_in_separate_buffers():
    params = make_params()
    packed = flat.ravel(params, groups=lambda path, leaf: "decay" if leaf.ndim > 1 else "no")
    assert [key for key, _ in packed.layout.buffer_keys] == ["decay", "no"]
    assert packed.layout.buffer_sizes == (12 + 8 + 85, 3 + 1 + 1)


def test_gradient_of_the_unravelled_loss_is_the_ravelled_gradient():
    params = make_params()
    packed = flat.ravel(params)

    def loss(tree):
        return sum(jnp.sum(jnp.sin(x) * x) for x in jax.tree.leaves(tree))

    flat_grads = jax.grad(lambda p: loss(p.unravel()))(packed)
    assert isinstance(flat_grads, flat.FlatTree)
    expected = flat.ravel(jax.grad(loss)(params), layout=packed.layout)
    np.testing.assert_allclose(flat_grads.buffers[0], expected.buffers[0], rtol=1e-6, atol=1e-7)
    # The gradient is assembled with one concatenate, not one full-size pad per leaf.
    hlo = jax.jit(jax.grad(lambda p: loss(p.unravel()))).lower(packed).as_text()
    assert "pad" not in hlo and "concatenate" in hlo


OPTIMIZERS = {
    "sgd": lambda: optim_fn.sgd(0.1),
    "nesterov": lambda: optim_fn.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: optim_fn.adam(1e-2),
    "adam_nesterov": lambda: optim_fn.adam(1e-2, nesterov=True),
    "adamw_mask": lambda: optim_fn.adamw(
        1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    ),
    "rmsprop_centered": lambda: optim_fn.rmsprop(1e-2, centered=True, bias_correction=True),
    "rmsprop_torch_eps": lambda: optim_fn.rmsprop(1e-2, eps_in_sqrt=False, momentum=0.9),
    "adagrad": lambda: optim_fn.adagrad(0.1),
    "adadelta": lambda: optim_fn.adadelta(),
    "adadelta_wd": lambda: optim_fn.adadelta(weight_decay=0.1),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_flat_mode_gives_the_numbers_of_tree_mode(name):
    """Bitwise on every leaf of more than one element.

    XLA:CPU compiles a fusion over a 1-element array (0-d or shape (1,)) with scalar code
    that can round differently from its vector loop, so those leaves (here "l3", "l5")
    are checked to a few ulps instead.
    """
    optimizer = OPTIMIZERS[name]()
    rng = np.random.default_rng(1)
    params = make_params()
    packed = flat.ravel(params)
    state, flat_state = optimizer.init(params), optimizer.init(packed)
    step = jax.jit(optimizer.update)
    for _ in range(20):
        grads = random_grads(rng, params)
        updates, state = step(grads, state, params)
        flat_updates, flat_state = step(flat.ravel(grads, layout=packed.layout), flat_state, packed)
        params = optim_fn.apply_updates(params, updates)
        packed = optim_fn.apply_updates(packed, flat_updates)
        assert_same_numbers(flat_updates.unravel(), updates)
    assert_same_numbers(packed.unravel(), params)


def assert_same_numbers(got_tree, expected_tree):
    for key, expected in expected_tree.items():
        got = got_tree[key]
        if expected.size > 1:
            np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=key)
        else:
            np.testing.assert_allclose(got, expected, rtol=5e-7, atol=0, err_msg=key)


def test_flat_state_has_one_slot_per_buffer_not_per_leaf():
    params = {f"w{i}": jnp.ones((i % 7 + 1, 3)) for i in range(200)}
    state = optim_fn.adam(1e-3).init(flat.ravel(params))
    assert len(jax.tree.leaves(state[0].mu)) == 1
    assert flat.tree_size_bytes(state[0].mu) == flat.tree_size_bytes(params)


def test_compiled_update_does_not_grow_with_the_number_of_leaves():
    def hlo_size(n_leaves):
        params = {f"w{i}": jnp.ones((i % 13 + 2,)) for i in range(n_leaves)}
        packed = flat.ravel(params)
        optimizer = optim_fn.adamw(1e-3)
        state = optimizer.init(packed)
        lowered = jax.jit(optimizer.update).lower(packed, state, packed)
        return len(lowered.as_text().splitlines())

    assert hlo_size(300) == hlo_size(3)


def test_mask_aligned_with_groups_selects_whole_buffers():
    params = make_params()
    packed = flat.ravel(params, groups=lambda path, leaf: "decay" if leaf.ndim > 1 else "no")
    masks = flat.buffer_masks(packed, lambda tree: jax.tree.map(lambda x: x.ndim > 1, tree))
    assert masks == [True, False]


def test_weight_decay_touches_exactly_the_masked_leaves_in_flat_mode():
    params = make_params()
    packed = flat.ravel(params)  # one buffer mixing decayed and non-decayed leaves
    optimizer = optim_fn.add_decayed_weights(
        0.5, mask=lambda t: jax.tree.map(lambda x: x.ndim > 1, t)
    )
    zeros = jax.tree.map(jnp.zeros_like, packed)
    updates, _ = optimizer.update(zeros, optimizer.init(packed), packed)
    for key, value in updates.unravel().items():
        expected = 0.5 * params[key] if params[key].ndim > 1 else jnp.zeros_like(params[key])
        np.testing.assert_array_equal(np.asarray(value), np.asarray(expected), err_msg=key)


def test_rules_that_need_leaf_shapes_refuse_flat_trees_clearly():
    packed = flat.ravel(make_params())
    with pytest.raises(ValueError, match=r"trust_ratio does not work in flat mode: needs"):
        flat.check_not_flat(packed, "trust_ratio", "needs each layer's own norm")
    flat.check_not_flat(make_params(), "trust_ratio", "needs each layer's own norm")


def test_ravel_with_a_foreign_layout_is_an_error():
    packed = flat.ravel(make_params())
    with pytest.raises(ValueError, match=r"does not have the structure the `layout` describes"):
        flat.ravel({"x": jnp.ones(3)}, layout=packed.layout)


def test_sharded_leaves_stay_on_their_devices_and_mixed_meshes_are_refused():
    """A sharded leaf goes to a 2-d buffer whose rows are its shards (the 8-device checks
    are in tests/test_sharding.py); leaves on two meshes cannot share a FlatTree."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from optim_fn import flat
        mesh = jax.make_mesh((4,), ("data",))
        host = np.arange(8.0, dtype=np.float32).reshape(4, 2)
        sharded = jax.device_put(host, NamedSharding(mesh, P("data")))
        replicated = jax.device_put(np.ones(3, np.float32), NamedSharding(mesh, P()))
        packed = flat.ravel({"w": sharded, "r": replicated})
        print(packed)
        one_d, two_d = packed.buffers
        assert one_d.sharding.is_fully_replicated and one_d.sharding.mesh == mesh
        assert two_d.shape == (4, 2) and two_d.sharding.spec == P("data", None)
        for shard in two_d.addressable_shards:
            own = [s for s in sharded.addressable_shards if s.device == shard.device][0]
            assert np.array_equal(np.asarray(shard.data), np.asarray(own.data).reshape(1, 2))
        back = packed.unravel()
        assert back["w"].sharding.is_equivalent_to(sharded.sharding, 2)
        assert np.array_equal(np.asarray(back["w"]), host)
        pair = jax.make_mesh((2,), ("data",), devices=jax.devices()[:2])
        other = jax.device_put(np.ones((2, 2), np.float32), NamedSharding(pair, P("data")))
        try:
            flat.ravel({"w": sharded, "x": other})
        except ValueError as error:
            print(error)
        """
    )
    import os

    # Simulated devices are CPU devices: on a GPU machine jax would default to its one GPU.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "FlatTree(2 leaves in -:float32[3], -:float32[4x2] over data)" in out.stdout
    assert "leaves ['w'] and ['x'] are placed on different meshes" in out.stdout
