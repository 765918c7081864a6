"""The same training step under jax.distributed: 2 processes x 4 CPU devices on localhost.

The test launches two worker processes (this file run as a script), which join one
8-device mesh through ``jax.distributed.initialize``; params are FSDP-sharded over all
8 devices (so each process holds half of them), a second run packs the same sharded
params in flat mode (``optim_fn.flat.ravel``: each device keeps its own shards), and a
third uses ZeRO-1 (``optim_fn.sharding.partition_state``) with replicated params. Process
0 gathers the final params and writes them out; the test compares them with a
single-process run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np

STEPS = 6
SHAPES = {"w": (16, 8), "b": (8,)}


def host_params():
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}


def host_grads(step):
    rng = np.random.default_rng(100 + step)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}


def make_optimizer():
    import optim_fn

    return optim_fn.chain(optim_fn.clip_by_global_norm(2.0), optim_fn.adamw(1e-2, weight_decay=0.1))


def train(params, optimizer, place):
    import jax

    import optim_fn

    @jax.jit
    def step(params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return optim_fn.apply_updates(params, updates), state

    params = place(params)
    state = optimizer.init(params)
    for index in range(STEPS):
        params, state = step(params, state, place(host_grads(index)))
    return params, state


def worker(process_id: int, port: int, out_path: str) -> None:
    import jax

    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}",
        num_processes=2,
        process_id=process_id,
        initialization_timeout=60,
    )
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding, PartitionSpec

    from optim_fn import flat, sharding

    assert jax.device_count() == 8 and jax.local_device_count() == 4
    mesh = jax.make_mesh((8,), ("data",))

    def place_with(specs):
        def place(tree):
            return {
                k: jax.make_array_from_callback(
                    v.shape, NamedSharding(mesh, specs[k]), lambda index, v=v: v[index]
                )
                for k, v in tree.items()
            }

        return place

    fsdp_specs = {"w": PartitionSpec("data"), "b": PartitionSpec()}
    fsdp, _ = train(host_params(), make_optimizer(), place_with(fsdp_specs))
    flat_fsdp, flat_state = train(
        host_params(), make_optimizer(), lambda tree: flat.ravel(place_with(fsdp_specs)(tree))
    )
    # The split buffer is 2-d, one row per device: this process holds 4 of its 8 rows.
    (split,) = [b for b in flat_fsdp.buffers if b.ndim == 2]
    assert split.shape[0] == 8 and len(split.addressable_shards) == 4
    flat_fsdp = flat_fsdp.unravel()
    assert flat_fsdp["w"].sharding.spec == fsdp["w"].sharding.spec
    zero1_optimizer = sharding.partition_state(make_optimizer(), mesh, "data")
    zero1, zero1_state = train(
        host_params(), zero1_optimizer, place_with({k: PartitionSpec() for k in SHAPES})
    )
    # Each of this process's 4 devices holds 1/8 of adamw's moments (2 slots per param).
    slot_bytes = sharding.per_device_bytes([x for x in jax.tree.leaves(zero1_state) if x.ndim])
    full = 2 * 4 * sum(int(np.prod(s)) for s in SHAPES.values())
    assert len(slot_bytes) == 4 and set(slot_bytes.values()) == {full // 8}, slot_bytes
    gathered = {
        f"{run}_{k}": np.asarray(multihost_utils.process_allgather(v, tiled=True))
        for run, tree in (("fsdp", fsdp), ("flat", flat_fsdp), ("zero1", zero1))
        for k, v in tree.items()
    }
    # Each process held a part of the FSDP params: the gather must have brought them all.
    assert sum(s.data.size for s in fsdp["w"].addressable_shards) == fsdp["w"].size // 2
    if process_id == 0:
        np.savez(out_path, **gathered)
    jax.distributed.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_two_processes_match_single_process(tmp_path):
    out_path = str(tmp_path / "result.npz")
    port = free_port()
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(i), str(port), out_path],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=120)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-4000:]

    import jax.numpy as jnp

    def on_one_device(tree):
        return {k: jnp.asarray(v) for k, v in tree.items()}

    expected, _ = train(host_params(), make_optimizer(), on_one_device)
    with np.load(out_path) as result:
        for run in ("fsdp", "flat", "zero1"):
            for key in SHAPES:
                got = result[f"{run}_{key}"]
                assert got.shape == SHAPES[key]
                # Clipping's norm is summed across devices in another order: a few ulps.
                np.testing.assert_allclose(got, np.asarray(expected[key]), rtol=2e-6, atol=2e-7)
        assert not np.array_equal(result["fsdp_w"], host_params()["w"])  # it did train


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
