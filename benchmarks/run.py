"""Benchmarks optim_fn (tree and flat mode) against optax and torch.optim, in one run.

    python benchmarks/run.py            # the full run (tens of minutes on 2 cores)
    python benchmarks/run.py --quick    # small trees, a couple of minutes at most (CI)

For each tree (one 25M leaf, a ResNet-50-like tree, 2000 small leaves, a transformer-like
stack) and optimizer (SGD with momentum, Adam, AdamW, global-norm clipping + AdamW) it
measures compile time, step time (median of interleaved repetitions, params and state
donated), effective GB/s against a bandwidth limit it measures itself, and the compiled
program's peak memory. Then: a full train step (loss, grad, update) on the small-leaf
tree, eager (un-jitted) updates, ``init`` time, and the compile-time curve over the number
of leaves. Prints tables with ratios to optax and torch fused and writes JSON. The machine
is shared and noisy: read the ratios, which come from interleaved measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import trees  # noqa: E402

import optim_fn  # noqa: E402
from optim_fn import flat  # noqa: E402

try:
    import torch
except ImportError:  # torch is optional: its columns are left out
    torch = None

BYTES_PER_PARAM = {"sgd_momentum": 20, "adam": 28, "adamw": 28, "clip_adamw": 32}


def optim_fn_clip():
    return getattr(optim_fn, "clip_by_global_norm", None)


def make_optimizers(library: str) -> dict[str, Callable[[], object]]:
    lib = optax if library == "optax" else optim_fn
    out = {
        "sgd_momentum": lambda: lib.sgd(1e-3, momentum=0.9),
        "adam": lambda: lib.adam(1e-3),
        "adamw": lambda: lib.adamw(1e-3, weight_decay=1e-4),
    }
    clip = optax.clip_by_global_norm if library == "optax" else optim_fn_clip()
    if clip is not None:
        out["clip_adamw"] = lambda: lib.chain(clip(1.0), lib.adamw(1e-3, weight_decay=1e-4))
    return out


def random_tree(shapes, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return {
        k: jax.device_put(rng.standard_normal(s, dtype=np.float32) * scale)
        for k, s in shapes.items()
    }


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- bandwidth


def measure_bandwidth(n: int, reps: int) -> float:
    """GB/s of a jitted, donated ``a + s*b`` (12 bytes per element): the machine's limit."""
    triad = jax.jit(lambda a, b: a + 1.5 * b, donate_argnums=0)
    a = jax.device_put(np.ones(n, np.float32))
    b = jax.device_put(np.ones(n, np.float32))
    a = triad(a, b)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a = jax.block_until_ready(triad(a, b))
        times.append(time.perf_counter() - start)
    return 12 * n / statistics.median(times) / 1e9


# ----------------------------------------------------------------------------- JAX steps


class JaxRunner:
    """One jitted, donated update+apply step; keeps its own params and state."""

    def __init__(self, optimizer, params, grads):
        self.optimizer = optimizer

        def step(params, state, grads):
            updates, state = optimizer.update(grads, state, params)
            return optim_fn.apply_updates(params, updates), state

        # Our own copy: the step donates (deletes) its input params.
        params = jax.tree.map(lambda x: jax.device_put(np.asarray(x)), params)
        self.params, self.grads = params, grads
        self.state = optimizer.init(params)
        start = time.perf_counter()
        self.compiled = (
            jax.jit(step, donate_argnums=(0, 1)).lower(params, self.state, grads).compile()
        )
        self.compile_s = time.perf_counter() - start
        memory = self.compiled.memory_analysis()
        self.peak_bytes = None
        if memory is not None:
            self.peak_bytes = int(
                memory.argument_size_in_bytes
                + memory.output_size_in_bytes
                - memory.alias_size_in_bytes
                + memory.temp_size_in_bytes
            )
            self.temp_bytes = int(memory.temp_size_in_bytes)
        self.run()  # warm up

    def run(self):
        self.params, self.state = self.compiled(self.params, self.state, self.grads)
        return self.params


def torch_device() -> str:
    """torch runs where jax does: on the GPU when jax's default backend is one."""
    if torch is not None and jax.default_backend() == "gpu" and torch.cuda.is_available():
        return "cuda"
    return "cpu"


class TorchRunner:
    def __init__(self, name: str, mode: str, shapes, grads_np):
        torch.manual_seed(0)
        self.device = torch_device()
        self.params = [
            torch.zeros(s, dtype=torch.float32, device=self.device, requires_grad=True)
            for s in shapes.values()
        ]
        for p, g in zip(self.params, grads_np.values(), strict=True):
            p.grad = torch.tensor(np.asarray(g), device=self.device)
        flags = {"foreach": True} if mode == "foreach" else {"fused": True}
        self.clip = name == "clip_adamw"
        if name == "sgd_momentum":
            self.optimizer = torch.optim.SGD(self.params, lr=1e-3, momentum=0.9, **flags)
        elif name == "adam":
            self.optimizer = torch.optim.Adam(self.params, lr=1e-3, **flags)
        else:
            self.optimizer = torch.optim.AdamW(self.params, lr=1e-3, weight_decay=1e-4, **flags)
        self.compile_s = 0.0
        self.peak_bytes = None
        self.run()

    def run(self):
        with torch.no_grad():
            if self.clip:
                torch.nn.utils.clip_grad_norm_(self.params, 1.0, foreach=True)
            self.optimizer.step()
        if self.device == "cuda":  # the timer must see the kernels finish, as jax's does
            torch.cuda.synchronize()
        return None


def step_table(tree_name, shapes, reps, with_torch) -> list[dict]:
    params = random_tree(shapes, seed=1)
    grads = random_tree(shapes, seed=2, scale=1e-2)
    n_params = trees.count_params(shapes)
    rows = []
    for opt_name in make_optimizers("optim_fn"):
        runners: dict[str, object] = {}
        runners["optax"] = JaxRunner(make_optimizers("optax")[opt_name](), params, grads)
        runners["optim_fn tree"] = JaxRunner(make_optimizers("optim_fn")[opt_name](), params, grads)
        packed = flat.ravel(params)
        runners["optim_fn flat"] = JaxRunner(
            make_optimizers("optim_fn")[opt_name](), packed, flat.ravel(grads, layout=packed.layout)
        )
        if with_torch:
            for mode in ("foreach", "fused"):
                runners[f"torch {mode}"] = TorchRunner(opt_name, mode, shapes, grads)
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(reps):  # interleaved, so drifts in machine load hit all alike
            for key, runner in runners.items():
                times[key].append(timed(runner.run))
        for key, runner in runners.items():
            step_s = statistics.median(times[key])
            rows.append(
                {
                    "tree": tree_name,
                    "leaves": len(shapes),
                    "params": n_params,
                    "optimizer": opt_name,
                    "impl": key,
                    "compile_s": runner.compile_s,
                    "step_ms": step_s * 1e3,
                    "gb_per_s": BYTES_PER_PARAM[opt_name] * n_params / step_s / 1e9,
                    "peak_mb": None if runner.peak_bytes is None else runner.peak_bytes / 2**20,
                    "temp_mb": getattr(runner, "temp_bytes", 0) / 2**20
                    if runner.peak_bytes is not None
                    else None,
                }
            )
        del runners
    return rows


# ----------------------------------------------------------------------------- other targets


def train_step_comparison(shapes, reps) -> dict:
    """Full step (loss, grad, update) on many leaves: optim_fn flat mode vs optax tree mode."""
    params = random_tree(shapes, seed=3)
    params_copy = random_tree(shapes, seed=3)

    def loss(tree):
        return sum(jnp.sum(jnp.tanh(x) * x) for x in jax.tree.leaves(tree))

    def optax_step(p, s):
        grads = jax.grad(loss)(p)
        updates, s = optax_adam.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    def flat_step(p, s):
        grads = jax.grad(lambda q: loss(q.unravel()))(p)
        updates, s = ours.update(grads, s, p)
        return optim_fn.apply_updates(p, updates), s

    optax_adam, ours = optax.adam(1e-3), optim_fn.adam(1e-3)
    results = {}
    for name, step, p, opt in [
        ("optax tree", optax_step, params, optax_adam),
        ("optim_fn flat", flat_step, flat.ravel(params_copy), ours),
    ]:
        state = opt.init(p)
        start = time.perf_counter()
        compiled = jax.jit(step, donate_argnums=(0, 1)).lower(p, state).compile()
        compile_s = time.perf_counter() - start
        p, state = compiled(p, state)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            p, state = jax.block_until_ready(compiled(p, state))
            times.append(time.perf_counter() - start)
        results[name] = {"compile_s": compile_s, "step_ms": statistics.median(times) * 1e3}
    return results


def update_compile_comparison(shapes) -> dict:
    """Compile time of the (clip +) AdamW update alone: optax vs optim_fn tree and flat."""
    params = random_tree(shapes, seed=4)
    out = {}
    for name, opt, p in [
        ("optax", make_optimizers("optax")["adamw"](), params),
        ("optim_fn tree", make_optimizers("optim_fn")["adamw"](), params),
        ("optim_fn flat", make_optimizers("optim_fn")["adamw"](), flat.ravel(params)),
    ]:
        state = opt.init(p)
        start = time.perf_counter()
        jax.jit(opt.update).lower(p, state, p).compile()
        out[name] = time.perf_counter() - start
    return out


def eager_comparison(shapes, reps) -> dict:
    """``update`` called without an outer jit, as in a notebook, vs the jitted update."""
    params = random_tree(shapes, seed=5)
    grads = random_tree(shapes, seed=6, scale=1e-2)
    out = {}
    for name, opt in [("optax", optax.adam(1e-3)), ("optim_fn", optim_fn.adam(1e-3))]:
        state = opt.init(params)
        jitted = jax.jit(opt.update)
        calls = {
            "eager": lambda opt=opt, state=state: opt.update(grads, state, params)[0],
            "jit": lambda jitted=jitted, state=state: jitted(grads, state, params)[0],
        }
        for call in calls.values():
            jax.block_until_ready(call())
        times = {k: [] for k in calls}
        for _ in range(reps):
            for key, call in calls.items():
                times[key].append(timed(call))
        out[name] = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return out


def init_comparison(shapes, with_optax_eager: bool) -> dict:
    params = random_tree(shapes, seed=7)
    out = {"optim_fn": timed(lambda: optim_fn.adam(1e-3).init(params))}
    out["optim_fn flat (ravel + init)"] = timed(lambda: optim_fn.adam(1e-3).init(flat.ravel(params)))
    out["optax jit"] = timed(lambda: jax.jit(optax.adam(1e-3).init)(params))
    if with_optax_eager:
        out["optax eager"] = timed(lambda: optax.adam(1e-3).init(params))
    return out


def compile_curve(counts, optax_max_leaves) -> list[dict]:
    rows = []
    for kind, maker in [("distinct", trees.distinct_vectors), ("same", trees.same_vectors)]:
        for count in counts:
            params = random_tree(maker(count), seed=8)
            for impl in ("optim_fn flat", "optim_fn tree", "optax"):
                # Per-leaf programs (optax, optim_fn tree mode) take minutes past 1000
                # leaves (445 s for optax at 5000); flat mode is measured at every count.
                if impl != "optim_fn flat" and count > optax_max_leaves:
                    continue
                library = "optax" if impl == "optax" else "optim_fn"
                opts = make_optimizers(library)
                opt = (opts.get("clip_adamw") or opts["adamw"])()
                p = flat.ravel(params) if impl == "optim_fn flat" else params
                state = opt.init(p)
                start = time.perf_counter()
                jax.jit(opt.update).lower(p, state, p).compile()
                rows.append(
                    {"shapes": kind, "leaves": count, "impl": impl,
                     "compile_s": time.perf_counter() - start}
                )
    return rows


# ----------------------------------------------------------------------------- report


def print_step_table(rows, bandwidth):
    print(f"\nStep time (median), bandwidth limit measured here: {bandwidth:.1f} GB/s")
    header = (f"{'tree':18} {'optimizer':13} {'impl':14} {'compile s':>9} {'step ms':>9} "
              f"{'GB/s':>6} {'%limit':>6} {'/optax':>7} {'/fused':>7} {'peak MB':>8} {'temp MB':>8}")
    print(header)
    print("-" * len(header))
    index = {(r["tree"], r["optimizer"], r["impl"]): r for r in rows}
    for r in rows:
        optax_row = index.get((r["tree"], r["optimizer"], "optax"))
        fused = index.get((r["tree"], r["optimizer"], "torch fused"))
        ratio = r["step_ms"] / optax_row["step_ms"] if optax_row else float("nan")
        fused_ratio = r["step_ms"] / fused["step_ms"] if fused else float("nan")
        peak = "" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
        temp = "" if r["temp_mb"] is None else f"{r['temp_mb']:.1f}"
        print(f"{r['tree']:18} {r['optimizer']:13} {r['impl']:14} {r['compile_s']:9.2f} "
              f"{r['step_ms']:9.2f} {r['gb_per_s']:6.1f} {100 * r['gb_per_s'] / bandwidth:6.0f} "
              f"{ratio:7.2f} {fused_ratio:7.2f} {peak:>8} {temp:>8}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small trees, few repetitions")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per step")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the JSON")
    parser.add_argument("--no-torch", action="store_true", help="leave torch.optim out")
    parser.add_argument("--curve", default=None, help="leaf counts, e.g. 10,100,1000,5000")
    parser.add_argument("--optax-max-leaves", type=int, default=1000,
                        help="largest leaf count compiled per leaf (optax, tree mode) in the curve")
    parser.add_argument("--optax-eager-init", action="store_true",
                        help="also time optax's eager init on the small-leaf tree (slow)")
    parser.add_argument("--trees", default=None,
                        help="comma-separated subset of: one_leaf, resnet50_like, small_leaves, transformer_like")
    parser.add_argument("--small-leaves", type=int, default=None,
                        help="leaves of the small-leaf tree (default 2000, quick 50)")
    parser.add_argument("--distinct", type=int, default=None,
                        help="leaves of distinct shapes in the update-compile comparison (default 1000)")
    parser.add_argument("--name", default=None, help="JSON file name (default quick/full)")
    parser.add_argument("--sections", default="steps,train,compile,eager,init,curve",
                        help="comma-separated subset of the measurements to run")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))

    quick = args.quick
    reps = args.reps or (3 if quick else 15)
    with_torch = torch is not None and not args.no_torch
    if with_torch:
        torch.set_num_threads(os.cpu_count() or 1)
    counts = [int(c) for c in (args.curve or ("10,50" if quick else "10,100,1000,5000")).split(",")]
    all_shapes = trees.all_trees(quick, args.small_leaves)
    chosen = args.trees.split(",") if args.trees else list(all_shapes)
    unknown = sorted(set(chosen) - set(all_shapes))
    if unknown:
        parser.error(f"unknown trees {unknown}; valid: {sorted(all_shapes)}")
    tree_shapes = {name: all_shapes[name] for name in chosen}

    started = time.perf_counter()
    bandwidth = measure_bandwidth(2**22 if quick else 2**26, reps)
    rows, train, update_compile, eager, init, curve = [], {}, {}, {}, {}, []
    if "steps" in sections:
        for name, shapes in tree_shapes.items():
            rows += step_table(name, shapes, reps, with_torch)
            print(f"  measured {name} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        print_step_table(rows, bandwidth)

    small = all_shapes["small_leaves"]
    if "train" in sections:
        train = train_step_comparison(small, reps)
        print(f"\nFull train step (loss, grad, Adam update) on {len(small)} small leaves:")
        for name, result in train.items():
            print(f"  {name:14} compile {result['compile_s']:7.2f} s   step {result['step_ms']:8.2f} ms")
        flat_r, optax_r = train["optim_fn flat"], train["optax tree"]
        print(f"  ratios flat/optax: compile {flat_r['compile_s'] / optax_r['compile_s']:.3f}x, "
              f"step {flat_r['step_ms'] / optax_r['step_ms']:.3f}x")

    if "compile" in sections:
        distinct = trees.distinct_vectors(args.distinct or (50 if quick else 1000))
        update_compile = update_compile_comparison(distinct)
        print(f"\nCompile of the AdamW update, {len(distinct)} leaves of distinct shapes:")
        for name, seconds in update_compile.items():
            print(f"  {name:14} {seconds:7.2f} s  ({seconds / update_compile['optax']:.3f}x optax)")

    if "eager" in sections:
        eager = eager_comparison(all_shapes["resnet50_like"], reps)
        print("\nEager update (no outer jit), ResNet-50-like tree, Adam:")
        for name, result in eager.items():
            print(f"  {name:9} eager {result['eager']:8.2f} ms   jitted {result['jit']:8.2f} ms   "
                  f"eager/jit {result['eager'] / result['jit']:.2f}x")
        print(f"  optim_fn eager / optax eager: {eager['optim_fn']['eager'] / eager['optax']['eager']:.3f}x")

    if "init" in sections:
        init = init_comparison(small, args.optax_eager_init)
        print(f"\nAdam init on {len(small)} small leaves:")
        for name, seconds in init.items():
            print(f"  {name:28} {seconds:7.3f} s")

    if "curve" in sections:
        curve = compile_curve(counts, args.optax_max_leaves)
        clip_name = "clip_by_global_norm + adamw" if optim_fn_clip() else "adamw"
        print(f"\nCompile time of the {clip_name} update vs number of leaves (100 floats each):")
        for row in curve:
            print(f"  {row['shapes']:8} {row['leaves']:6} leaves  {row['impl']:14} {row['compile_s']:8.2f} s")

    result = {
        "command": " ".join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])]),
        "quick": quick,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "optax": optax.__version__,
                    "torch": None if torch is None else torch.__version__,
                    "device": str(jax.devices()[0]),
                    "torch_device": None if torch is None else torch_device()},
        "bandwidth_gb_per_s": bandwidth,
        "steps": rows,
        "train_step": train,
        "update_compile_distinct": update_compile,
        "eager": eager,
        "init": init,
        "compile_curve": curve,
        "total_s": time.perf_counter() - started,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parser_name = args.name or ("quick" if quick else "full")
    path = out / f"{parser_name}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {path} ({result['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
