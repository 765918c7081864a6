"""Sharded params and ZeRO-1 state partitioning on 8 simulated CPU devices.

XLA's device count is fixed when jax starts, so ``test_on_eight_devices`` reruns this
file in a subprocess with ``--xla_force_host_platform_device_count=8``; the tests that
need 8 devices skip in a process that has fewer. The compiled HLO is read to count
collectives, and the state's shardings and per-device bytes are read from the arrays.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

import optim_fn
from optim_fn import sharding

P = PartitionSpec
EIGHT = jax.device_count() >= 8
needs_eight = pytest.mark.skipif(not EIGHT, reason="runs in the 8-device subprocess")
COLLECTIVES = ("all-gather", "all-to-all", "all-reduce", "reduce-scatter", "collective-permute")


@pytest.mark.skipif(EIGHT, reason="already on 8 devices")
def test_on_eight_devices():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-x", "-p", "no:cacheprovider"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    # The subprocess must really have run the 8-device tests, not skipped them.
    passed = re.search(r"(\d+) passed", output)
    assert passed and int(passed.group(1)) >= 15, output[-3000:]


def collective_counts(compiled_text: str) -> dict[str, int]:
    """Collective instructions in compiled HLO (async pairs counted once, by their start)."""
    counts = {}
    for name in COLLECTIVES:
        pattern = rf"= [^=]*? {name}(-start)?\("
        counts[name] = len(re.findall(pattern, compiled_text))
    return counts


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
    counts = collective_counts(step.lower(params, state, grads).compile().as_text())
    assert counts["all-gather"] == 0 and counts["all-to-all"] == 0, counts
    assert counts["reduce-scatter"] == 0 and counts["collective-permute"] == 0, counts
    # Global-norm clipping needs the sum of squares from every device: scalars only, one
    # all-reduce per mesh axis at most (explicit 2-d meshes reduce each axis in turn).
    if opt_name == "clip_adam":
        assert 1 <= counts["all-reduce"] <= len(names), counts
    else:
        assert counts["all-reduce"] == 0, counts
    assert all_reduces_are_scalar(step.lower(params, state, grads).compile().as_text())

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
    params = jax.tree.map(lambda b: jax.device_put(b, replicated), flat)
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
