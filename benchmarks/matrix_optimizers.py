"""Compile and step time of the matrix optimizers against optax's Muon and PyTorch's.

Muon, NorMuon, AdaMuon, Shampoo, Kron, Dion, Scion and SOAP (``optim_fn.contrib``) on the
transformer-shaped tree of ``matrix_lifter.py`` (``--layers`` blocks of 6 matrices and 2
norm scales, plus an embedding), at two depths to show how compile and step time grow
with the number of leaves. Each optimizer runs leaf by leaf (tree mode, the CPU default)
and, where it takes ``batch_by_shape``, batched by shape. References in the same process,
on the same tree and gradients: ``optax.contrib.muon`` (jitted like ours) and, where they
exist, ``torch.optim.Muon`` and pytorch_optimizer's implementations (eager ``step()``,
the way they are used). Ratios are ours / theirs (below 1: optim_fn is faster)::

    python benchmarks/matrix_optimizers.py            # 2 and 8 layers, d_model 64 (~5 min)
    python benchmarks/matrix_optimizers.py --quick    # 1 and 2 layers, 2 reps (~2 min)

Both libraries run on one CPU thread (see below). Not run by the test suite: even the
quick run compiles 26 programs.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

# One thread each, set before jax and torch start: torch's OpenMP threads on a busy
# 2-core machine wait for each other (a Muon step 15 ms on one thread, 260 ms on two),
# which would make the ratios measure the machine's load, not the libraries.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from matrix_lifter import measure, transformer_tree  # noqa: E402

import optim_fn  # noqa: E402
import optim_fn.contrib  # noqa: E402

try:
    import pytorch_optimizer
    import torch

    torch.set_num_threads(1)
except ImportError:  # the JAX rows still run
    torch = pytorch_optimizer = None

RESULTS = Path(__file__).resolve().parent / "results"
LR = {"muon": 0.02, "normuon": 0.02, "adamuon": 0.02, "shampoo": 1e-3, "kron": 1e-3,
      "dion": 0.02, "scion": 0.02, "soap": 3e-3}
BATCHABLE = ("muon", "normuon", "adamuon", "dion", "scion")


def ours(name: str, batched: bool) -> Callable:
    extra = {"batch_by_shape": True} if batched else {}
    if name == "kron":  # a preconditioner update every step in both libraries
        extra["precond_update_prob"] = 1.0
    return lambda: getattr(optim_fn.contrib, name)(LR[name], **extra)


def torch_references(name: str) -> dict[str, Callable]:
    """Optimizer factories over a list of torch params, one per PyTorch implementation."""
    if torch is None:
        return {}

    def matrices_and_rest(params):
        return [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]

    def muon_groups(params, **muon):
        two_d, rest = matrices_and_rest(params)
        return [dict(params=two_d, use_muon=True, **muon), dict(params=rest, use_muon=False)]

    def torch_muon(params):
        # torch.optim.Muon takes 2-d params only: AdamW for the norms, as in Muon's recipe.
        two_d, rest = matrices_and_rest(params)
        muon = torch.optim.Muon(two_d, lr=0.02, weight_decay=0.0)
        adamw = torch.optim.AdamW(rest, lr=3e-4, weight_decay=0.0)

        class Both:
            def step(self):
                muon.step()
                adamw.step()

        return Both()

    lookup = pytorch_optimizer.load_optimizer
    table: dict[str, dict[str, Callable]] = {
        "muon": {
            "torch.optim.Muon": torch_muon,
            "pytorch_optimizer": lambda ps: lookup("muon")(muon_groups(ps), lr=0.02),
        },
        "normuon": {"pytorch_optimizer": lambda ps: lookup("normuon")(muon_groups(ps), lr=0.02)},
        "adamuon": {"pytorch_optimizer": lambda ps: lookup("adamuon")(muon_groups(ps), lr=0.02)},
        "shampoo": {"pytorch_optimizer": lambda ps: lookup("shampoo")(ps, lr=1e-3)},
        "kron": {
            "pytorch_optimizer": lambda ps: lookup("kron")(
                ps, lr=1e-3, pre_conditioner_update_probability=1.0
            )
        },
        "scion": {"pytorch_optimizer": lambda ps: lookup("scion")(ps, lr=0.02)},
        "soap": {"pytorch_optimizer": lambda ps: lookup("soap")(ps, lr=3e-3)},
    }
    return table.get(name, {})


def measure_torch(make: Callable, params: dict, grads: dict, reps: int) -> dict[str, float]:
    """Eager ``step()`` time (median over ``reps`` after one warm-up step) and first step."""
    tensors = [torch.tensor(np.asarray(v), requires_grad=True) for v in params.values()]
    for tensor, grad in zip(tensors, grads.values(), strict=True):
        tensor.grad = torch.tensor(np.asarray(grad))
    optimizer = make(tensors)
    start = time.perf_counter()
    optimizer.step()
    first_s = time.perf_counter() - start
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {"first_step_s": first_s, "step_ms": 1e3 * statistics.median(times)}


def run(layers_list: list[int], d_model: int, vocab: int, reps: int,
        names: list[str]) -> list[dict]:
    rows = []
    for layers in layers_list:
        shapes = transformer_tree(layers, d_model, vocab)
        rng = np.random.default_rng(0)
        params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
        grads = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
        jax_params = jax.tree.map(jax.numpy.asarray, params)
        jax_grads = jax.tree.map(jax.numpy.asarray, grads)

        leaves = len(shapes)

        def record(name, impl, result, layers=layers, leaves=leaves):
            rows.append({"optimizer": name, "impl": impl, "layers": layers,
                         "leaves": leaves, **result})
            timing = (f"compile {result['compile_s']:7.2f} s" if "compile_s" in result
                      else f"first   {result['first_step_s']:7.2f} s")
            print(f"{layers:>3} layers  {name:<8} {impl:<22} {timing}  "
                  f"step {result['step_ms']:9.2f} ms", flush=True)

        record("muon", "optax", measure(lambda: optax.contrib.muon(0.02), jax_params,
                                        jax_grads, reps))
        for name in names:
            record(name, "optim_fn tree", measure(ours(name, False), jax_params, jax_grads, reps))
            if name in BATCHABLE:
                record(name, "optim_fn batched",
                       measure(ours(name, True), jax_params, jax_grads, reps))
            for impl, make in torch_references(name).items():
                record(name, impl, measure_torch(make, params, grads, reps))
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """Per optimizer, depth and optim_fn mode: step and compile ratios to each reference."""
    by_key = {(r["optimizer"], r["impl"], r["layers"]): r for r in rows}
    out = []
    for row in rows:
        if not row["impl"].startswith("optim_fn"):
            continue
        entry = {k: row[k] for k in ("optimizer", "impl", "layers", "leaves", "compile_s",
                                     "step_ms")}
        for ref in ("optax", "torch.optim.Muon", "pytorch_optimizer"):
            other = by_key.get((row["optimizer"], ref, row["layers"]))
            if other is not None:
                entry[f"step_ratio_{ref}"] = row["step_ms"] / other["step_ms"]
                if "compile_s" in other:
                    entry[f"compile_ratio_{ref}"] = row["compile_s"] / other["compile_s"]
        out.append(entry)
    return out


def table(entries: list[dict], layers_list: list[int]) -> str:
    small, large = layers_list[0], layers_list[-1]
    lines = [f"{'optimizer':<9} {'mode':<8} {'compile ' + str(small) + 'L':>11} "
             f"{str(large) + 'L':>7} {'step ' + str(small) + 'L':>10} {str(large) + 'L':>9} "
             f"{'/optax':>7} {'/torch':>7} {'/pt_opt':>8}"]
    keyed = {(e["optimizer"], e["impl"], e["layers"]): e for e in entries}
    for e in entries:
        if e["layers"] != small:
            continue
        big = keyed.get((e["optimizer"], e["impl"], large), e)

        def ratio(ref, big=big):
            value = big.get(f"step_ratio_{ref}")
            return f"{value:.2f}" if value is not None else "-"

        lines.append(
            f"{e['optimizer']:<9} {e['impl'].split()[-1]:<8} {e['compile_s']:>10.2f}s "
            f"{big['compile_s']:>6.2f}s {e['step_ms']:>8.2f}ms {big['step_ms']:>7.2f}ms "
            f"{ratio('optax'):>7} {ratio('torch.optim.Muon'):>7} "
            f"{ratio('pytorch_optimizer'):>8}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="2,8", help="comma-separated depths")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--optimizers", default=",".join(LR))
    parser.add_argument("--quick", action="store_true", help="1 and 2 layers, 2 reps")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the .json and .txt")
    args = parser.parse_args(argv)
    layers_list = [1, 2] if args.quick else [int(x) for x in args.layers.split(",")]
    reps = 2 if args.quick else args.reps
    names = args.optimizers.split(",")
    unknown = sorted(set(names) - set(LR))
    if unknown:
        parser.error(f"--optimizers: unknown {unknown}; choose from {sorted(LR)}")

    header = (f"{datetime.date.today()} {platform.machine()} {jax.devices()[0]}; "
              f"jax {jax.__version__}, optax {optax.__version__}"
              + (f", torch {torch.__version__}, pytorch_optimizer "
                 f"{importlib.metadata.version('pytorch_optimizer')}" if torch is not None else "")
              + f"; d_model {args.d_model}, vocab {args.vocab}, reps {reps}")
    print(header, flush=True)
    rows = run(layers_list, args.d_model, args.vocab, reps, names)
    entries = ratios(rows)
    text = (header + "\nstep ratios at the larger depth: optim_fn / optax.contrib.muon, "
            "/ torch.optim.Muon, / pytorch_optimizer (same algorithm)\n"
            + table(entries, layers_list))
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "matrix_optimizers_quick" if args.quick else "matrix_optimizers"
    (out / f"{stem}.json").write_text(json.dumps(
        {"header": header, "layers": layers_list, "rows": rows, "ratios": entries}, indent=1
    ))
    (out / f"{stem}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
