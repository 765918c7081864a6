"""Sharded params, ZeRO-1 state partitioning and flat mode on a mesh, on 8 CPU devices.

XLA's device count is fixed when jax starts, so ``test_on_eight_devices`` reruns this
file in a subprocess with ``--xla_force_host_platform_device_count=8``; the tests that
need 8 devices skip in a process that has fewer. The compiled HLO is read to count
collectives, and the state's shardings and per-device bytes are read from the arrays.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from eight_devices import collective_counts, run_on_eight_devices
from jax.sharding import AxisType, NamedSharding, PartitionSpec

import optim_fn
from optim_fn import sharding

P = PartitionSpec
EIGHT = jax.device_count() >= 8
needs_eight = pytest.mark.skipif(not EIGHT, reason="runs in the 8-device subprocess")


@pytest.mark.skipif(EIGHT, reason="already on 8 devices")
def test_on_eight_devices():
    run_on_eight_devices(__file__, expected=38)


def all_reduces_are_scalar(compiled_text: str) -> bool:
    """Every all-reduce in the HLO moves 0-d values only (e.g. ``f32[]`` or a tuple of them)."""
    results = re.findall(r"= (\(?[^=]*?\)?) all-reduce(?:-start)?\(", compiled_text)
    return all(re.fullmatch(r"\(?(\w+\[\](, )?)+\)?", r.strip()) for r in results)


def random_params(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def place(tree, mesh, specs):
    return {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in tree.items()}


def make_step(optimizer):
    def step(params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return optim_fn.apply_updates(params, updates), state

    return jax.jit(step)


def slot_leaves(state):
    """Per-parameter state arrays (rank >= 1): moments, accumulators."""
    return [leaf for leaf in jax.tree.leaves(state) if np.ndim(leaf) >= 1]


SHAPES = {"w": (64, 32), "v": (16, 8), "b": (32,)}
MESHES = {
    "fsdp_1d": ((8,), ("data",), {"w": P("data"), "v": P("data"), "b": P()}),
    "data_x_model": (
        (4, 2),
        ("data", "model"),
        {"w": P("data", "model"), "v": P(None, "model"), "b": P("model")},
    ),
}
OPTIMIZERS = {
    "adamw": lambda: optim_fn.adamw(1e-3, weight_decay=0.1),
    "sgd_momentum": lambda: optim_fn.sgd(0.1, momentum=0.9, nesterov=True),
    "clip_adam": lambda: optim_fn.chain(optim_fn.clip_by_global_norm(1.0), optim_fn.adam(1e-3)),
}


@needs_eight
@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
@pytest.mark.parametrize("mesh_name", list(MESHES))
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_state_follows_param_sharding_and_no_gather(opt_name, mesh_name, axis_type):
    shape, names, specs = MESHES[mesh_name]
    mesh = jax.make_mesh(shape, names, axis_types=(axis_type,) * len(names))
    host = random_params(SHAPES)
    params = place(host, mesh, specs)
    optimizer = OPTIMIZERS[opt_name]()
    state = optimizer.init(params)

    # Every per-parameter slot is placed exactly like its param, without user placement.
    for block in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, dict) and "w" in x):
        if isinstance(block, dict) and set(block) == set(SHAPES):
            for key in SHAPES:
                assert block[key].sharding.is_equivalent_to(params[key].sharding, 2), key
    assert len(slot_leaves(state)) > 0

    grads = place(random_params(SHAPES, seed=1), mesh, specs)
    step = make_step(optimizer)
    text = step.lower(params, state, grads).compile().as_text()
    counts = collective_counts(text)
    assert counts["all-gather"] == 0 and counts["all-to-all"] == 0, counts
    assert counts["reduce-scatter"] == 0 and counts["collective-permute"] == 0, counts
    # Global-norm clipping needs the sum of squares from every device: scalars only, one
    # all-reduce per mesh axis at most (explicit 2-d meshes reduce each axis in turn).
    if opt_name == "clip_adam":
        assert 1 <= counts["all-reduce"] <= len(names), counts
    else:
        assert counts["all-reduce"] == 0, counts
    assert all_reduces_are_scalar(text)

    # Same numbers as the unsharded run (elementwise rules: bitwise up to fusion order).
    new_params, new_state = step(params, state, grads)
    ref_params, _ = make_step(optimizer)(host, optimizer.init(host), random_params(SHAPES, 1))
    for key in SHAPES:
        assert new_params[key].sharding.is_equivalent_to(params[key].sharding, len(SHAPES[key]))
        np.testing.assert_allclose(new_params[key], ref_params[key], rtol=2e-6, atol=1e-7)
    new_shardings = jax.tree.leaves(sharding.state_shardings(new_state))
    old_shardings = jax.tree.leaves(sharding.state_shardings(state))
    for new, old, leaf in zip(new_shardings, old_shardings, jax.tree.leaves(state), strict=True):
        if np.ndim(leaf) >= 1:
            assert new.is_equivalent_to(old, np.ndim(leaf))


@needs_eight
@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
@pytest.mark.parametrize("opt_name", ["adamw", "clip_adam"])
def test_zero1_splits_state_and_matches_unsharded(opt_name, axis_type):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(axis_type,))
    replicated = {k: P() for k in SHAPES}
    host = random_params(SHAPES)
    params = place(host, mesh, replicated)
    plain = OPTIMIZERS[opt_name]()
    optimizer = sharding.partition_state(plain, mesh, "data")
    state = optimizer.init(params)
    full_state = plain.init(params)

    # 1/8 of every state array on each device (all these shapes divide by 8).
    full_bytes = sum(leaf.nbytes for leaf in slot_leaves(full_state))
    per_device = sharding.per_device_bytes(slot_leaves(state))
    assert len(per_device) == 8
    assert set(per_device.values()) == {full_bytes // 8}, (per_device, full_bytes)
    unsplit = sharding.per_device_bytes(slot_leaves(full_state))
    assert set(unsplit.values()) == {full_bytes}

    step = make_step(optimizer)
    reference_step = make_step(plain)
    grads_host = random_params(SHAPES, seed=1)
    grads = place(grads_host, mesh, replicated)
    counts = collective_counts(step.lower(params, state, grads).compile().as_text())
    # The updates are gathered once per state-sized leaf; nothing else moves.
    assert counts["all-gather"] == len(SHAPES), counts
    assert counts["all-to-all"] == 0 and counts["collective-permute"] == 0, counts
    assert counts["all-reduce"] == (1 if opt_name == "clip_adam" else 0), counts

    rng = np.random.default_rng(2)
    ref_params, ref_state = host, plain.init(host)
    for _ in range(10):
        grads_host = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
        params, state = step(params, state, place(grads_host, mesh, replicated))
        ref_params, ref_state = reference_step(ref_params, ref_state, grads_host)
    for key in SHAPES:
        assert params[key].sharding.is_fully_replicated
        np.testing.assert_allclose(params[key], ref_params[key], rtol=2e-6, atol=2e-7)
    for leaf, ref in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
        # Clipping's norm is summed in another order across devices: a few ulps.
        scale = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
        np.testing.assert_allclose(leaf, ref, rtol=2e-6, atol=2e-6 * scale)
    # The state stays split after the steps.
    assert set(sharding.per_device_bytes(slot_leaves(state)).values()) == {full_bytes // 8}


@needs_eight
def test_zero1_leaves_indivisible_leaves_replicated():
    mesh = jax.make_mesh((8,), ("data",))
    spec = sharding.partition_spec_for((3, 5), 8, "data")
    assert spec == P()
    assert sharding.partition_spec_for((3, 16), 8, "data") == P(None, "data")
    assert sharding.partition_spec_for((), 8, "data") == P()
    params = place({"odd": np.ones((3, 5), np.float32)}, mesh, {"odd": P()})
    optimizer = sharding.partition_state(optim_fn.adam(0.1), mesh)
    state = optimizer.init(params)
    params2, _ = make_step(optimizer)(params, state, params)
    np.testing.assert_allclose(params2["odd"], np.full((3, 5), 0.9), rtol=1e-6)


def test_partition_state_rejects_bad_arguments():
    mesh = jax.make_mesh((1,), ("data",))
    with pytest.raises(ValueError, match="`axis` 'model' is not an axis"):
        sharding.partition_state(optim_fn.adam(0.1), mesh, "model")
    with pytest.raises(TypeError, match="`mesh` must be a jax.sharding.Mesh"):
        sharding.partition_state(optim_fn.adam(0.1), "data")


def test_collective_counter_reads_hlo():
    text = (
        "%all-reduce = f32[] all-reduce(%x), channel_id=1\n"
        "%ag = f32[8]{0} all-gather-start(%y), dimensions={0}\n"
        "%agd = f32[8]{0} all-gather-done(%ag)\n"
    )
    counts = collective_counts(text)
    assert all_reduces_are_scalar(text)
    assert not all_reduces_are_scalar("%a = f32[8]{0} all-reduce(%x)")
    assert all_reduces_are_scalar("%a = (f32[], f32[]) all-reduce(%x, %y)")
    assert counts["all-reduce"] == 1 and counts["all-gather"] == 1 and counts["all-to-all"] == 0


@needs_eight
def test_zero1_on_flat_buffers():
    # Flat mode: the whole model is one 1-d buffer, split evenly over the data axis.
    mesh = jax.make_mesh((8,), ("data",))
    host = random_params(SHAPES)
    flat = optim_fn.flat.ravel(host)
    assert flat.buffers[0].size % 8 == 0
    replicated = NamedSharding(mesh, P())
    # Raveling leaves replicated on the mesh gives the same buffer, replicated there.
    params = optim_fn.flat.ravel(place(host, mesh, {k: P() for k in SHAPES}))
    assert params.buffers[0].sharding.is_equivalent_to(replicated, 1)
    np.testing.assert_array_equal(params.buffers[0], flat.buffers[0])
    plain = optim_fn.adamw(1e-3, weight_decay=0.1)
    optimizer = sharding.partition_state(plain, mesh, "data")
    state = optimizer.init(params)
    full_bytes = sum(leaf.nbytes for leaf in slot_leaves(plain.init(params)))
    assert set(sharding.per_device_bytes(slot_leaves(state)).values()) == {full_bytes // 8}
    grads_host = random_params(SHAPES, seed=1)
    grads = jax.tree.map(lambda b: jax.device_put(b, replicated), optim_fn.flat.ravel(grads_host))
    new_params, _ = make_step(optimizer)(params, state, grads)
    ref_params, _ = make_step(plain)(host, plain.init(host), grads_host)
    for key in SHAPES:
        np.testing.assert_allclose(new_params.unravel()[key], ref_params[key], rtol=2e-6, atol=1e-7)


@needs_eight
def test_the_jitted_step_compiles_once_with_sharded_params():
    mesh = jax.make_mesh((8,), ("data",))
    # Full-rank specs: jit returns P("data", None) for P("data"), another cache key.
    specs = {"w": P("data", None), "v": P("data", None), "b": P(None)}
    params = place(random_params(SHAPES), mesh, specs)
    for name in ("clip_adam", "adamw"):
        optimizer = OPTIMIZERS[name]()
        state = optimizer.init(params)
        # init places the scalars (count, hyperparameters) replicated on the params' mesh;
        # unplaced, the step would return them placed and compile a second time.
        assert all(leaf.committed for leaf in jax.tree.leaves(state)), name
        assert jax.tree.all(jax.tree.map(
            lambda a, b: a.sharding == b.sharding,
            sharding.replicate_uncommitted(state, mesh), state,
        ))
        step = make_step(optimizer)
        p = params
        for _ in range(3):
            p, state = step(p, state, params)
        assert step._cache_size() == 1, name


# Flat mode on a mesh: sharded leaves packed into per-device rows of 2-d buffers.

FLAT_MESHES = {
    # 8-way FSDP: leaves split on dim 0, one on dim 1, some replicated, a bf16 one.
    "fsdp_1d": (
        (8,),
        ("data",),
        {
            "w": ((64, 32), np.float32, P("data", None)),
            "v": ((16, 8), np.float32, P("data", None)),
            "u": ((8, 24), np.float32, P(None, "data")),
            "b": ((32,), np.float32, P("data")),
            "r": ((24,), np.float32, P(None)),
            "s": ((5,), np.float32, P(None)),
            "h": ((32, 8), jnp.bfloat16, P("data", None)),
        },
    ),
    # data=4 x model=2: "f" is split like "a" but transposed, and lands in a's buffer.
    "data_x_model": (
        (4, 2),
        ("data", "model"),
        {
            "a": ((16, 8), np.float32, P("data", "model")),
            "f": ((6, 8), np.float32, P("model", "data")),
            "m": ((4, 6), np.float32, P("model", None)),
            "g": ((8,), np.float32, P("model")),
            "c": ((3, 8), np.float32, P(None, "data")),
            "d": ((8, 4), np.float32, P("data", None)),
            "e": ((5,), np.float32, P(None)),
        },
    ),
}
# The mesh axes each mesh's buffers are split over (() is the replicated 1-d buffer).
FLAT_BUFFER_AXES = {
    "fsdp_1d": [((), "float32"), (("data",), "bfloat16"), (("data",), "float32")],
    "data_x_model": [
        ((), "float32"),
        (("data",), "float32"),
        (("data", "model"), "float32"),
        (("model",), "float32"),
    ],
}
FLAT_OPTIMIZERS = {
    "adamw": lambda: optim_fn.adamw(1e-2, weight_decay=0.1),
    "sgd_nesterov": lambda: optim_fn.sgd(0.1, momentum=0.9, nesterov=True),
    "clip_adam": lambda: optim_fn.chain(optim_fn.clip_by_global_norm(1.0), optim_fn.adam(1e-2)),
    # The decayed (2-d) and undecayed (1-d) leaves share buffers: a mixed mask.
    "masked_decay": lambda: optim_fn.adamw(
        1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
    ),
}


def flat_setup(mesh_name, axis_type=AxisType.Explicit, seed=0):
    shape, names, leaves = FLAT_MESHES[mesh_name]
    mesh = jax.make_mesh(shape, names, axis_types=(axis_type,) * len(names))
    rng = np.random.default_rng(seed)
    host = {k: rng.standard_normal(s).astype(d) for k, (s, d, _) in leaves.items()}
    specs = {k: spec for k, (_, _, spec) in leaves.items()}
    return mesh, host, specs


def split_ways(mesh, spec):
    return int(np.prod([mesh.shape[a] for entry in spec if entry for a in np.atleast_1d(entry)]))


def bf16_ulps(a, b):
    """The largest distance between ``a`` and ``b`` in bf16 units in the last place."""

    def ordered(x):
        bits = np.asarray(x, jnp.bfloat16).view(np.int16).astype(np.int32)
        return np.where(bits < 0, -(bits & 0x7FFF), bits)

    return int(np.abs(ordered(a) - ordered(b)).max())


def assert_same_tree(got, expected):
    """Bitwise equal leaves, each placed as the expected one."""
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        np.testing.assert_array_equal(
            np.asarray(got[key], np.float32), np.asarray(value, np.float32), err_msg=key
        )
        assert got[key].sharding.is_equivalent_to(value.sharding, value.ndim), key


@needs_eight
@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
@pytest.mark.parametrize("mesh_name", list(FLAT_MESHES))
def test_flat_round_trip_on_a_mesh_keeps_every_shard_in_place(mesh_name, axis_type):
    mesh, host, specs = flat_setup(mesh_name, axis_type)
    params = place(host, mesh, specs)
    packed = optim_fn.flat.ravel(params)
    layout = packed.layout

    # One buffer per (dtype, mesh axes), rows split over those axes, every one committed.
    dtypes = [dtype for _, dtype in layout.buffer_keys]
    assert sorted(zip(layout.buffer_axes, dtypes, strict=True)) == FLAT_BUFFER_AXES[mesh_name]
    for index, buffer in enumerate(packed.buffers):
        axes = layout.axes(index)
        assert buffer.committed and buffer.sharding.mesh == mesh
        assert buffer.shape == layout.buffer_shape(index)
        if axes:
            rows = int(np.prod([mesh.shape[a] for a in axes]))
            assert buffer.ndim == 2 and buffer.shape[0] == rows
            entry = axes[0] if len(axes) == 1 else axes
            assert buffer.sharding.is_equivalent_to(NamedSharding(mesh, P(entry, None)), 2)
            # Each device's row is its own blocks of the member leaves, raveled in order.
            for shard in buffer.addressable_shards:
                own = [
                    np.asarray(s.data).ravel()
                    for i, p in layout.members(index)
                    for s in jax.tree.leaves(params)[i].addressable_shards
                    if s.device == shard.device
                ]
                np.testing.assert_array_equal(np.asarray(shard.data)[0], np.concatenate(own))
        else:
            assert buffer.ndim == 1 and buffer.sharding.is_fully_replicated

    # Back to the tree, bit for bit, every leaf placed as before (eagerly and under jit).
    assert_same_tree(packed.unravel(), params)
    round_trip = jax.jit(lambda p: optim_fn.flat.ravel(p.unravel(), layout=p.layout))
    again = round_trip(packed)
    for a, b in zip(again.buffers, packed.buffers, strict=True):
        assert a.sharding == b.sharding
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    counts = collective_counts(round_trip.lower(packed).compile().as_text())
    assert sum(counts.values()) == 0, counts

    # Each device holds exactly the params' shards: 1/N of a leaf split N ways.
    expected = sum(x.nbytes // split_ways(mesh, specs[k]) for k, x in host.items())
    assert set(sharding.per_device_bytes(packed).values()) == {expected}
    assert sharding.per_device_bytes(packed) == sharding.per_device_bytes(params)
    state = optim_fn.adam(1e-3).init(packed)
    for slot in (state[0].mu, state[0].nu):
        assert [b.sharding for b in slot.buffers] == [b.sharding for b in packed.buffers]
    assert set(sharding.per_device_bytes(slot_leaves(state)).values()) == {2 * expected}

    # Groups split buffers further; NumPy leaves are cut into the layout's blocks.
    grouped = optim_fn.flat.ravel(params, groups=lambda path, x: "mat" if x.ndim > 1 else "vec")
    assert_same_tree(grouped.unravel(), params)
    from_host = optim_fn.flat.ravel(host, layout=layout)
    for a, b in zip(from_host.buffers, packed.buffers, strict=True):
        assert a.sharding == b.sharding
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def flat_step(optimizer):
    def step(packed, state, grads):
        updates, state = optimizer.update(grads, state, packed)
        return optim_fn.apply_updates(packed, updates), state

    return jax.jit(step)


@needs_eight
@pytest.mark.parametrize("mesh_name", list(FLAT_MESHES))
@pytest.mark.parametrize("opt_name", list(FLAT_OPTIMIZERS))
def test_flat_mode_on_a_mesh_gives_tree_mode_numbers(opt_name, mesh_name):
    mesh, host, specs = flat_setup(mesh_name)
    optimizer = FLAT_OPTIMIZERS[opt_name]()
    params = place(host, mesh, specs)
    packed = optim_fn.flat.ravel(params)
    tree_state, flat_state = optimizer.init(params), optimizer.init(packed)
    single = {k: jnp.asarray(v) for k, v in host.items()}
    single_state = optimizer.init(single)
    step, tree_step, single_step = flat_step(optimizer), make_step(optimizer), make_step(optimizer)
    rng = np.random.default_rng(1)
    for _ in range(20):
        scale = 10 ** rng.uniform(-1, 1)
        g = {k: (rng.standard_normal(v.shape) * scale).astype(v.dtype) for k, v in host.items()}
        grads = place(g, mesh, specs)
        flat_grads = optim_fn.flat.ravel(grads, layout=packed.layout)
        packed, flat_state = step(packed, flat_state, flat_grads)
        params, tree_state = tree_step(params, tree_state, grads)
        single, single_state = single_step(single, single_state, g)
    assert step._cache_size() == 1
    got = packed.unravel()
    for key, expected in params.items():
        assert got[key].sharding.is_equivalent_to(expected.sharding, expected.ndim), key
        a, b, c = (np.asarray(t[key], np.float32) for t in (got, params, single))
        if expected.dtype == jnp.bfloat16:
            # Flat and tree mode agree on the mesh; both differ from one device by a few
            # bf16 ulps (XLA:CPU rounds bf16 fusions of the per-device shapes differently).
            assert bf16_ulps(got[key], params[key]) <= 1, key
            gap = bf16_ulps(got[key], single[key])
            assert gap <= min(8, bf16_ulps(params[key], single[key]) + 1), key
        elif opt_name == "clip_adam":
            # The global norm is summed in another order in each mode: a few ulps.
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6 * np.abs(b).max(), err_msg=key)
            np.testing.assert_allclose(a, c, rtol=2e-6, atol=2e-6 * np.abs(c).max(), err_msg=key)
        else:
            np.testing.assert_array_max_ulp(a, b, maxulp=1)
            np.testing.assert_allclose(a, c, rtol=2e-6, atol=2e-6 * np.abs(c).max(), err_msg=key)
    # The state stays split like the params after the steps.
    for slot in slot_leaves(flat_state):
        assert any(slot.sharding == b.sharding for b in packed.buffers)
    assert sharding.per_device_bytes(packed) == sharding.per_device_bytes(params)


@needs_eight
@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
@pytest.mark.parametrize("mesh_name", list(FLAT_MESHES))
def test_flat_step_on_a_mesh_moves_no_data(mesh_name, axis_type):
    mesh, host, specs = flat_setup(mesh_name, axis_type)
    params = place(host, mesh, specs)
    packed = optim_fn.flat.ravel(params)

    def loss(tree):
        return sum(jnp.sum(jnp.sin(x.astype(jnp.float32)) * x) for x in jax.tree.leaves(tree))

    for opt_name in ("adamw", "clip_adam"):
        optimizer = FLAT_OPTIMIZERS[opt_name]()
        state = optimizer.init(packed)

        @jax.jit
        def train_step(packed, state, optimizer=optimizer):
            grads = jax.grad(lambda q: loss(q.unravel()))(packed)
            updates, state = optimizer.update(grads, state, packed)
            return optim_fn.apply_updates(packed, updates), state

        update_only = flat_step(optimizer)
        text = train_step.lower(packed, state).compile().as_text()
        counts = collective_counts(text)
        assert counts["all-gather"] == counts["all-to-all"] == 0, counts
        assert counts["collective-permute"] == counts["reduce-scatter"] == 0, counts
        # The gradient of unravel is one concatenate per buffer, not a pad per leaf.
        assert all_reduces_are_scalar(text) and not re.search(r" pad\(", text)
        updated = update_only.lower(packed, state, packed).compile().as_text()
        counts = collective_counts(updated)
        tree_counts = collective_counts(
            make_step(optimizer).lower(params, optimizer.init(params), params).compile().as_text()
        )
        if opt_name == "adamw":
            assert sum(counts.values()) == 0, counts
        else:
            # One scalar all-reduce per group of mesh axes the buffers are split over
            # (XLA fuses some), never more than tree mode needs on the same params.
            n_axis_groups = len({axes for axes in packed.layout.buffer_axes if axes})
            assert 1 <= counts["all-reduce"] <= n_axis_groups, counts
            assert counts["all-reduce"] <= tree_counts["all-reduce"], (counts, tree_counts)
            assert sum(counts.values()) == counts["all-reduce"] and all_reduces_are_scalar(updated)
        # Compiles once: the step returns buffers and state placed as it received them.
        p, s = packed, state
        for _ in range(3):
            p, s = train_step(p, s)
        assert train_step._cache_size() == 1, opt_name
        for a, b in zip(jax.tree.leaves((p, s)), jax.tree.leaves((packed, state)), strict=True):
            assert a.sharding == b.sharding


@needs_eight
def test_flat_mode_on_a_mesh_refuses_what_would_move_data():
    mesh, host, specs = flat_setup("fsdp_1d")
    params = place(host, mesh, specs)
    packed = optim_fn.flat.ravel(params)
    # Leaves on two meshes.
    other = NamedSharding(jax.make_mesh((4,), ("data",), devices=jax.devices()[:4]), P("data"))
    mixed = dict(params, extra=jax.device_put(np.ones((8, 2), np.float32), other))
    with pytest.raises(ValueError, match=r"leaves \['b'\] and \['extra'\] are placed on diff"):
        optim_fn.flat.ravel(mixed)
    # Gradients split unlike the params the layout was made from.
    wrong = dict(params, w=jax.device_put(host["w"], NamedSharding(mesh, P(None, "data"))))
    with pytest.raises(ValueError, match=r"leaf \['w'\] is split as P\(None, 'data'\), but"):
        optim_fn.flat.ravel(wrong, layout=packed.layout)
    gathered = dict(params, w=jax.device_put(host["w"], NamedSharding(mesh, P())))
    with pytest.raises(ValueError, match=r"leaf \['w'\] is not split, but the layout has it split"):
        optim_fn.flat.ravel(gathered, layout=packed.layout)
    split_r = dict(params, r=jax.device_put(host["r"], NamedSharding(mesh, P("data"))))
    with pytest.raises(ValueError, match=r"leaf \['r'\] is split as P\('data',\), but the la"):
        optim_fn.flat.ravel(split_r, layout=packed.layout)
    x_mesh = jax.make_mesh((8,), ("x",))
    elsewhere = dict(params, w=jax.device_put(host["w"], NamedSharding(x_mesh, P("x"))))
    with pytest.raises(ValueError, match=r"leaf \['w'\] is split as P\('x', None\)"):
        optim_fn.flat.ravel(elsewhere, layout=packed.layout)
    auto_mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    auto = dict(params, w=jax.device_put(host["w"], NamedSharding(auto_mesh, P("data"))))
    with pytest.raises(ValueError, match=r"leaf \['w'\] is on mesh .* place it on the layout's"):
        optim_fn.flat.ravel(auto, layout=packed.layout)
    # Under jit the layout of explicitly sharded tracers must come from outside.
    with pytest.raises(ValueError, match=r"pass `layout=flat_params.layout`"):
        jax.jit(optim_fn.flat.ravel)(params)
    # A sharded FlatTree's mixed mask is one flag per column, shared by every row.
    layout = packed.layout
    masks = optim_fn.flat.buffer_masks(packed, lambda t: jax.tree.map(lambda x: x.ndim > 1, t))
    index = max(i for i, axes in enumerate(layout.buffer_axes) if axes == ("data",))
    assert layout.buffer_keys[index][1] == "float32"
    mixed = masks[index]
    assert mixed.shape == (layout.buffer_shape(index)[1],)
    assert mixed.sum() == sum(host[k].size // 8 for k in ("w", "v", "u"))
    assert not mixed[layout.places[sorted(host).index("b")].offset :][:4].any()
    assert masks[layout.buffer_axes.index(())] is False
