"""Counts the kernels (top-level fusions and other ops of the compiled program's entry
computation) of one update + apply step, optax vs optim_fn tree and flat mode.

On a GPU each of them is a kernel launch, so for trees of many small leaves the count,
not the bytes moved, sets the step time.

    python benchmarks/kernels.py [--tree resnet50_like] [--optimizers adam,clip_adamw]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import trees  # noqa: E402
from run import make_optimizers, random_tree  # noqa: E402

import optim_fn  # noqa: E402
from optim_fn import flat  # noqa: E402

SKIP = {"parameter", "tuple", "get-tuple-element", "constant", "bitcast", "copy-start",
        "copy-done"}


def entry_ops(hlo_text: str) -> Counter:
    """Opcode counts of the ENTRY computation (each fusion counted as 'fusion')."""
    entry = hlo_text[hlo_text.index("ENTRY"):]
    entry = entry[: entry.index("\n}")]
    ops = Counter()
    for line in entry.splitlines()[1:]:
        match = re.search(r"= \S+ ([a-z\-]+)\(", line) or re.search(r"= \(.*?\) ([a-z\-]+)\(", line)
        if match and match.group(1) not in SKIP:
            ops[match.group(1)] += 1
    return ops


def step_program(optimizer, params, grads):
    def step(params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return optim_fn.apply_updates(params, updates), state

    state = optimizer.init(params)
    return jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default="resnet50_like")
    parser.add_argument("--optimizers", default="sgd_momentum,adam,adamw,clip_adamw")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    shapes = trees.all_trees(args.quick)[args.tree]
    params, grads = random_tree(shapes, seed=1), random_tree(shapes, seed=2, scale=1e-2)
    print(f"{args.tree}: {len(shapes)} leaves on {jax.devices()[0]}")
    for name in args.optimizers.split(","):
        for impl in ("optax", "optim_fn tree", "optim_fn flat"):
            opt = make_optimizers("optax" if impl == "optax" else "optim_fn")[name]()
            p, g = params, grads
            if impl == "optim_fn flat":
                p = flat.ravel(params)
                g = flat.ravel(grads, layout=p.layout)
            ops = entry_ops(step_program(opt, p, g).as_text())
            detail = ", ".join(f"{k} {v}" for k, v in ops.most_common())
            print(f"  {name:13} {impl:14} {sum(ops.values()):5} ops: {detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
