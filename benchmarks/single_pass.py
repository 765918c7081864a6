"""Can XLA:CPU run an Adam step in one pass over memory? What we tried, measured in one run.

    python benchmarks/single_pass.py [--size N]

An ideal Adam step reads p, g, m, v and writes p, m, v once: 28 bytes per float32 param.
XLA:CPU emits one loop fusion per output array (it has no multi-output loop fusion on CPU),
so the step is three full-size loops (m, v, then p re-reading m and v): about 40 bytes
per param. The formulations compared:

* ``optax`` and ``optim_fn``: the libraries' jitted update + apply.
* ``one_expression``: the whole step written as a single jnp expression.
* ``chunked_scan``: a ``lax.scan`` over 64K-element chunks, so that each chunk's three
  loops run on data in cache (one pass over main memory in principle).
* ``chunked_fori``: the same with ``fori_loop`` and in-place ``dynamic_update_slice``.

It prints the number of full-size fusions in each compiled program and the step time.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optim_fn
from optim_fn import rules

HYPER = dict(b1=0.9, one_minus_b1=0.1, b2=0.999, one_minus_b2=0.001, eps=1e-8, eps_root=0.0)


def adam_arrays(p, m, v, g, count):
    kw = {k: jnp.float32(x) for k, x in HYPER.items()}
    update, m, v = rules.adam(g, m, v, count=count, nesterov=False, **kw)
    return p - 1e-3 * update, m, v


def chunked_scan(chunk):
    def step(p, m, v, g, count):
        n = p.shape[0]
        shape = (n // chunk, chunk)

        def body(carry, xs):
            return carry, adam_arrays(*xs, count)

        _, out = jax.lax.scan(body, None, tuple(x.reshape(shape) for x in (p, m, v, g)))
        return tuple(x.reshape(n) for x in out)

    return step


def chunked_fori(chunk):
    def step(p, m, v, g, count):
        def body(i, carry):
            def piece(x):
                return jax.lax.dynamic_slice(x, (i * chunk,), (chunk,))

            new = adam_arrays(*(piece(x) for x in (*carry, g)), count)
            return tuple(
                jax.lax.dynamic_update_slice(old, part, (i * chunk,))
                for old, part in zip(carry, new, strict=True)
            )

        return jax.lax.fori_loop(0, p.shape[0] // chunk, body, (p, m, v))

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2**22)
    parser.add_argument("--chunk", type=int, default=2**16)
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    n = args.size
    g = jax.device_put(np.full(n, 1e-2, np.float32))
    count = jnp.int32(3)

    def fresh():
        return [jax.device_put(np.ones(n, np.float32)) for _ in range(3)]

    variants = {
        "one_expression": adam_arrays,
        "chunked_scan": chunked_scan(args.chunk),
        "chunked_fori": chunked_fori(args.chunk),
    }
    compiled = {}
    for name, fn in variants.items():
        compiled[name] = jax.jit(fn, donate_argnums=(0, 1, 2)).lower(*fresh(), g, count).compile()

    # The libraries, as a user runs them: a donated update + apply with the state as input.
    for name, optimizer in [("optax", optax.adam(1e-3)), ("optim_fn", optim_fn.adam(1e-3))]:
        def step(p, state, g, optimizer=optimizer):
            updates, state = optimizer.update(g, state, p)
            return optim_fn.apply_updates(p, updates), state

        state = optimizer.init(jax.device_put(np.ones(n, np.float32)))
        compiled[name] = (
            jax.jit(step, donate_argnums=(0, 1))
            .lower(jax.device_put(np.ones(n, np.float32)), state, g)
            .compile()
        )

    inputs = {}
    for name in compiled:
        if name in ("optax", "optim_fn"):
            opt = optax.adam(1e-3) if name == "optax" else optim_fn.adam(1e-3)
            p = jax.device_put(np.ones(n, np.float32))
            inputs[name] = [p, opt.init(p)]
        else:
            inputs[name] = fresh()

    times = {name: [] for name in compiled}
    for _ in range(args.reps):
        for name, program in compiled.items():
            start = time.perf_counter()
            if name in ("optax", "optim_fn"):
                p, state = jax.block_until_ready(program(*inputs[name], g))
                inputs[name] = [p, state]
            else:
                inputs[name] = list(jax.block_until_ready(program(*inputs[name], g, count)))
            times[name].append(time.perf_counter() - start)

    print(f"Adam step on {n} float32 params (ideal traffic 28 bytes/param)")
    for name, program in compiled.items():
        text = program.as_text()
        full_size = [
            line for line in text.splitlines()
            if " fusion(" in line and re.search(rf"f32\[{n}\]", line.split("fusion(")[0])
        ]
        median = statistics.median(times[name])
        print(f"  {name:15} full-size fusions {len(full_size):2d}   {median * 1e3:8.2f} ms   "
              f"{28 * n / median / 1e9:5.1f} GB/s effective")


if __name__ == "__main__":
    main()
