"""Matrix optimizers (Muon, Shampoo, Kron, Dion, Scion) with FSDP-sharded params, 8 CPU devices.

Whole-leaf rules read each matrix at once (its Gram matrix, its Kronecker factors), so
with the matrix split over 8 devices the compiled step must communicate. This file
measures what crosses devices per step (collectives and their bytes, read from the
compiled HLO), how much of the single-device work each device does (XLA's per-device
FLOP count), and how the state is placed, against ``optax.contrib.muon`` on the same
mesh. The numbers are tabulated in docs/scale_and_trust.md ("Matrix optimizers under
FSDP"). As in tests/test_sharding.py, ``test_on_eight_devices`` reruns this file in one
subprocess with ``--xla_force_host_platform_device_count=8``.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
import pytest
from eight_devices import COLLECTIVES, collectives, run_on_eight_devices
from jax.sharding import AxisType, NamedSharding, PartitionSpec

import optim_fn
import optim_fn.contrib
from optim_fn import sharding

P = PartitionSpec
EIGHT = jax.device_count() >= 8
needs_eight = pytest.mark.skipif(not EIGHT, reason="runs in the 8-device subprocess")
# FSDP: every leaf split 8 ways along its first axis.
SHAPES = {"w_in": (64, 32), "w_out": (32, 64), "b": (32,)}
SPECS = {"w_in": P("data", None), "w_out": P("data", None), "b": P("data")}
MATRICES = ("w_in", "w_out")
OPTIMIZERS = {
    "muon": lambda: optim_fn.contrib.muon(0.02),
    # eps 1e-6 (default 1e-12): the first step's factors are rank-deficient, and inverse
    # 4th roots of ~1e-12 eigenvalues turn float32 reduction-order noise into a 7.5%
    # difference between the sharded and the single-device update (2e-4 at eps 1e-4).
    "shampoo": lambda: optim_fn.contrib.shampoo(1e-3, eps=1e-6),
    "kron": lambda: optim_fn.contrib.kron(1e-3, precond_update_prob=1.0),
    "dion": lambda: optim_fn.contrib.dion(0.02),
    "scion": lambda: optim_fn.contrib.scion(0.02),
    "optax_muon": lambda: optax.contrib.muon(0.02),
    # Elementwise baseline: no communication, an even 1/8 of the work per device.
    "adamw": lambda: optim_fn.adamw(1e-3),
}
MATRIX_OPTIMIZERS = ("muon", "shampoo", "kron", "dion", "scion")


# Two subprocesses, so that the suite's workers can run them side by side.
@pytest.mark.skipif(EIGHT, reason="already on 8 devices")
@pytest.mark.parametrize(("selection", "expected"), [("not owner", 22), ("owner", 8)])
def test_on_eight_devices(selection, expected):
    run_on_eight_devices(__file__, expected, selection)


def flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis["flops"])


@functools.cache
def measure(name: str) -> dict:
    """One sharded and one single-device compile of ``update`` + ``apply_updates``."""
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    rng = np.random.default_rng(0)
    host = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    host_grads = {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    placement = {k: NamedSharding(mesh, SPECS[k]) for k in SHAPES}
    params = {k: jax.device_put(v, placement[k]) for k, v in host.items()}
    grads = {k: jax.device_put(v, placement[k]) for k, v in host_grads.items()}
    optimizer = OPTIMIZERS[name]()
    # optax leaves its scalars unplaced; ours are placed by init already.
    state = sharding.replicate_uncommitted(optimizer.init(params), mesh)

    def step(params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return optim_fn.apply_updates(params, updates), state

    state_placement = sharding.state_shardings(state)
    sharded = jax.jit(
        step,
        in_shardings=(placement, state_placement, placement),
        out_shardings=(placement, state_placement),
    ).lower(params, state, grads).compile()
    single = jax.jit(step).lower(host, optimizer.init(host), host_grads).compile()
    # Waited for before device 0 runs the reference (see measure_layers).
    new_params, _ = jax.block_until_ready(sharded(params, state, grads))
    ref_params, _ = single(host, optimizer.init(host), host_grads)
    return measurements(state, sharded, single, new_params, ref_params, host)


def measurements(state, sharded, single, new_params, ref_params, host) -> dict:
    """The measurements of a sharded step against its single-device reference."""
    update_error = max(
        float(np.linalg.norm(np.asarray(new_params[k]) - ref_params[k])
              / np.linalg.norm(np.asarray(ref_params[k]) - host[k]))
        for k in host
    )
    return {
        "state": state,
        "collectives": collectives(sharded.as_text()),
        "flop_fraction": flops(sharded) / flops(single),
        "update_error": update_error,
    }


def summary(name: str) -> dict:
    """The row of docs/scale_and_trust.md's table (print it with ``-s``)."""
    row = measure(name)
    state = row["state"]
    per_device = set(sharding.per_device_bytes(state).values())
    return {
        "collectives": {k: (len(v), sum(v)) for k, v in row["collectives"].items() if v},
        "bytes_per_step": sum(sum(v) for v in row["collectives"].values()),
        "flop_fraction": round(row["flop_fraction"], 3),
        "state_bytes": sum(leaf.nbytes for leaf in jax.tree.leaves(state)),
        "state_bytes_per_device": per_device.pop(),
    }


@needs_eight
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_holds_one_eighth_of_its_sharded_part(name):
    state = measure(name)["state"]
    sharded_bytes = replicated_bytes = 0
    for leaf in jax.tree.leaves(state):
        spec = leaf.sharding.spec if isinstance(leaf.sharding, NamedSharding) else P()
        if any(axis is not None for axis in spec):
            sharded_bytes += leaf.nbytes
        else:
            replicated_bytes += leaf.nbytes
        # Param-shaped slots (momentum, filtered gradient) are split like their param.
        if leaf.shape in (SHAPES["w_in"], SHAPES["w_out"]):
            assert leaf.sharding.spec[0] == "data", (name, leaf.shape, leaf.sharding)
    per_device = sharding.per_device_bytes(state)
    assert len(per_device) == 8
    assert sharded_bytes > 0 and sharded_bytes % 8 == 0
    assert set(per_device.values()) == {sharded_bytes // 8 + replicated_bytes}, per_device
    print(name, summary(name))


@needs_eight
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_sharded_step_gives_the_single_device_update(name):
    # Relative to the update's norm; the reductions run in another order on 8 devices.
    # Shampoo's eigendecompositions of rank-deficient factors amplify that reordering.
    tolerance = 1e-3 if name == "shampoo" else 1e-5
    assert measure(name)["update_error"] < tolerance


@needs_eight
@pytest.mark.parametrize("name", MATRIX_OPTIMIZERS)
def test_whole_leaf_rules_gather_each_matrix_and_split_part_of_the_work(name):
    found = measure(name)["collectives"]
    full_matrix = 4 * int(np.prod(SHAPES["w_in"]))
    # Each matrix is gathered whole (a 64 x 32 f32 result or larger) at least once per step
    # per matrix; elementwise rules gather nothing (adamw below).
    assert sum(size >= full_matrix for size in found["all-gather"]) >= len(MATRICES), found
    # Dense matmuls on a row-split matrix: XLA splits the contraction (partial sums, then
    # an all-reduce) rather than running the whole rule on every device, so no device does
    # all of the single-device work, but the parts after a gather are repeated on every
    # device: more than an even 1/8 share.
    fraction = measure(name)["flop_fraction"]
    assert 0.15 < fraction < 0.75, fraction
    assert found["all-reduce"], found


@needs_eight
def test_elementwise_baseline_moves_nothing_and_splits_the_work_evenly():
    row = measure("adamw")
    assert not any(row["collectives"].values()), row["collectives"]
    assert abs(row["flop_fraction"] - 1 / 8) < 0.01, row["flop_fraction"]


@needs_eight
@pytest.mark.parametrize("name", ["muon", "scion"])
def test_muon_moves_what_optax_muon_moves(name):
    # Same Newton-Schulz iteration on the same sharded matrices: the same gathers and the
    # same matrix all-reduces (scion reduces one more scalar, for its norms).
    ours, theirs = measure(name)["collectives"], measure("optax_muon")["collectives"]
    for kind in COLLECTIVES:
        assert sorted(s for s in ours[kind] if s > 64) == sorted(
            s for s in theirs[kind] if s > 64
        ), kind
    assert sum(ours["all-gather"]) > 0


# Owner per matrix (optim_fn.sharding.owner_per_matrix) on a transformer-like tree: 8
# matrices of each of two shapes, 3 of a third (padded to 8 with copies) and a vector,
# each split 8 ways along its first axis.
LAYER_SHAPES = {
    **{f"w_in{i}": (32, 16) for i in range(8)},
    **{f"w_out{i}": (16, 32) for i in range(8)},
    **{f"w_head{i}": (8, 24) for i in range(3)},
    "b": (16,),
}
OWNER_OPTIMIZERS = {
    "muon": lambda: optim_fn.contrib.muon(0.02),
    # Unmerged factors (32 x 32 and 16 x 16): by default the 512 entries of a 32 x 16
    # matrix merge into one axis with a 512 x 512 factor, which only slows the test.
    "shampoo": lambda: optim_fn.contrib.shampoo(1e-3, eps=1e-6, merge_small_dims=False),
    "soap": lambda: optim_fn.contrib.soap(1e-3),
    "kron": lambda: optim_fn.contrib.kron(1e-3, precond_update_prob=1.0),
    "dion": lambda: optim_fn.contrib.dion(0.02),
    "scion": lambda: optim_fn.contrib.scion(0.02),
}
# Asserted on 8 devices: one optimizer per kind of state (param-shaped, Kronecker factors,
# triangular factors with per-leaf draws, low-rank). SOAP's and Scion's rows of the docs'
# table are printed by `layer_summary`; their owner paths are the same code, checked on
# one device in tests/test_owner_per_matrix.py (SOAP) and by Muon's here (Scion).
OWNER_TESTED = ("muon", "shampoo", "kron", "dion")


def layer_spec(shape):
    return P("data", *[None] * (len(shape) - 1))


@functools.cache
def measure_layers(name: str, owner: bool = True) -> dict:
    """Two sharded steps on the layer tree (owner mode or plain) against one device."""
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    rng = np.random.default_rng(1)
    host = {k: rng.standard_normal(s).astype(np.float32) for k, s in LAYER_SHAPES.items()}
    host_grads = {k: rng.standard_normal(s).astype(np.float32) for k, s in LAYER_SHAPES.items()}
    placement = {k: NamedSharding(mesh, layer_spec(s)) for k, s in LAYER_SHAPES.items()}
    params = jax.device_put(host, placement)
    grads = jax.device_put(host_grads, placement)
    make = OWNER_OPTIMIZERS[name]
    optimizer = sharding.owner_per_matrix(make(), mesh) if owner else make()
    state = optimizer.init(params)

    def step(optimizer, params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return optim_fn.apply_updates(params, updates), state

    state_placement = sharding.state_shardings(state)
    sharded = jax.jit(
        functools.partial(step, optimizer),
        in_shardings=(placement, state_placement, placement),
        out_shardings=(placement, state_placement),
    ).lower(params, state, grads).compile()
    # The reference: the same stacked program on one device (tests/test_owner_per_matrix.py
    # shows it gives the plain, leaf-by-leaf numbers), so the FLOP ratio compares like
    # with like and the compile stays small.
    one = jax.make_mesh((1,), ("data",), axis_types=(AxisType.Auto,), devices=jax.devices()[:1])
    reference_optimizer = sharding.owner_per_matrix(make(), one) if owner else make()
    reference_state = reference_optimizer.init(host)
    reference = jax.jit(functools.partial(step, reference_optimizer)).lower(
        host, reference_state, host_grads).compile()
    # Waits for each sharded step: on XLA:CPU's simulated devices another computation
    # dispatched while it still runs (its next step, or the one-device reference on
    # device 0) can take the thread a device needs to reach the all-to-all, and the
    # others then wait for it forever.
    first = jax.block_until_ready(sharded(params, state, grads))
    new_params, new_state = jax.block_until_ready(sharded(*first, grads))
    ref_params, ref_state = reference(host, reference_state, host_grads)
    ref_params, _ = reference(ref_params, ref_state, host_grads)
    return measurements(new_state, sharded, reference, new_params, ref_params, host)


def layer_summary(name: str, owner: bool = True) -> dict:
    """A row of docs/scale_and_trust.md's owner-per-matrix table (print it with ``-s``)."""
    row = measure_layers(name) if owner else measure_layers(name, owner=False)
    state = row["state"]
    return {
        "collectives": {k: (len(v), sum(v)) for k, v in row["collectives"].items() if v},
        "flop_fraction": round(row["flop_fraction"], 3),
        "state_bytes": sum(leaf.nbytes for leaf in jax.tree.leaves(state)),
        "state_bytes_per_device": max(sharding.per_device_bytes(state).values()),
        "update_error": float(f"{row['update_error']:.2g}"),
    }


@needs_eight
@pytest.mark.parametrize("name", OWNER_TESTED)
def test_owner_per_matrix_moves_matrices_by_all_to_all_only(name):
    found = measure_layers(name)["collectives"]
    assert not found["all-gather"] and not found["all-reduce"], found
    assert not found["reduce-scatter"] and not found["collective-permute"], found
    # Each matrix crosses twice (its gradient to its owner, its update back), as the
    # devices' row shards: per group, at least the stack's per-device bytes each way.
    stack_bytes = 4 * (8 * 32 * 16 + 8 * 16 * 32 + 8 * 8 * 24) // 8
    assert sum(found["all-to-all"]) >= 2 * stack_bytes, found
    print(name, layer_summary(name))


@needs_eight
@pytest.mark.parametrize("name", OWNER_TESTED)
def test_owner_per_matrix_does_each_matrix_once_and_splits_its_state(name):
    row = measure_layers(name)
    # 8 + 8 matrices split evenly; the 3-matrix group runs as 8 (copies on idle devices).
    assert row["flop_fraction"] < 0.2, row["flop_fraction"]
    state = row["state"]
    split = sum(leaf.nbytes for leaf in jax.tree.leaves(state) if leaf.nbytes > 64)
    per_device = sharding.per_device_bytes(state)
    # Everything but the scalars (count, hyperparameters, Kron's key) is split 8 ways.
    for leaf in jax.tree.leaves(state):
        if leaf.nbytes > 64:
            assert "data" in tuple(leaf.sharding.spec), (name, leaf.shape, leaf.sharding)
    assert max(per_device.values()) - split // 8 < 512, (per_device, split)
    tolerance = 1e-3 if name == "shampoo" else 1e-5
    assert row["update_error"] < tolerance, row["update_error"]
