"""Compile and step time of whole-leaf optimizers (Muon, Adafactor, LAMB) against optax.

The tree is transformer-shaped: ``--layers`` blocks of 6 matrices (q, k, v, o, MLP in
and out) and 2 norm scales, plus an embedding. Whole-leaf rules read each matrix at once
(its norm, its rows and columns, its polar factor); applied leaf by leaf in a Python loop
their compiled program grows with the number of leaves. Batched by shape (stack the
leaves of one shape, one vmapped rule, unstack) it does not.

Both libraries run in the same process, on the same tree and gradients; the table gives
optim_fn / optax ratios (below 1: optim_fn is faster)::

    python benchmarks/matrix_lifter.py            # 24 layers, d_model 64
    python benchmarks/matrix_lifter.py --layers 4 --reps 5   # quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optim_fn
import optim_fn.contrib


def transformer_tree(layers: int, d_model: int, vocab: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"embed": (vocab, d_model)}
    for layer in range(layers):
        prefix = f"layer{layer:02d}"
        for name in ("q", "k", "v", "o"):
            shapes[f"{prefix}/attn_{name}"] = (d_model, d_model)
        shapes[f"{prefix}/mlp_in"] = (d_model, 4 * d_model)
        shapes[f"{prefix}/mlp_out"] = (4 * d_model, d_model)
        shapes[f"{prefix}/norm1"] = (d_model,)
        shapes[f"{prefix}/norm2"] = (d_model,)
    return shapes


def optimizers() -> dict[str, tuple[Callable, Callable]]:
    return {
        "muon": (
            lambda: optim_fn.contrib.muon(learning_rate=0.02),
            lambda: optax.contrib.muon(learning_rate=0.02),
        ),
        "muon_batched": (
            lambda: optim_fn.contrib.muon(learning_rate=0.02, batch_by_shape=True),
            lambda: optax.contrib.muon(learning_rate=0.02),
        ),
        "adafactor": (
            lambda: optim_fn.adafactor(learning_rate=1e-2, min_dim_size_to_factor=32),
            lambda: optax.adafactor(learning_rate=1e-2, min_dim_size_to_factor=32),
        ),
        "lamb": (
            lambda: optim_fn.lamb(learning_rate=1e-3, weight_decay=1e-2),
            lambda: optax.lamb(learning_rate=1e-3, weight_decay=1e-2),
        ),
    }


def measure(make: Callable, params: dict, grads: dict, reps: int) -> dict[str, float]:
    optimizer = make()
    state = optimizer.init(params)

    def step(params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    start = time.perf_counter()
    compiled = jax.jit(step).lower(params, state, grads).compile()
    compile_s = time.perf_counter() - start
    params_now, state = compiled(params, state, grads)
    jax.block_until_ready(params_now)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        params_now, state = compiled(params_now, state, grads)
        jax.block_until_ready(params_now)
        times.append(time.perf_counter() - start)
    return {"compile_s": compile_s, "step_ms": 1e3 * statistics.median(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)

    shapes = transformer_tree(args.layers, args.d_model, args.vocab)
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    grads = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    print(f"tree: {len(shapes)} leaves, {sum(int(np.prod(s)) for s in shapes.values()):,} "
          f"floats; jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0]}")
    rows = []
    print(f"{'optimizer':<12} {'compile optim_fn':>17} {'optax':>8} {'ratio':>6} "
          f"{'step optim_fn':>14} {'optax':>9} {'ratio':>6}")
    for name, (ours, theirs) in optimizers().items():
        a = measure(ours, params, grads, args.reps)
        b = measure(theirs, params, grads, args.reps)
        row = {"optimizer": name, "optim_fn": a, "optax": b,
               "compile_ratio": a["compile_s"] / b["compile_s"],
               "step_ratio": a["step_ms"] / b["step_ms"]}
        rows.append(row)
        print(f"{name:<12} {a['compile_s']:>16.2f}s {b['compile_s']:>7.2f}s "
              f"{row['compile_ratio']:>6.2f} {a['step_ms']:>12.2f}ms {b['step_ms']:>7.2f}ms "
              f"{row['step_ratio']:>6.2f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"leaves": len(shapes), "rows": rows}, file, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
