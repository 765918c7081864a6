"""Writes the golden checkpoints of every optimizer in tests/catalogue.py. Run by hand.

The files freeze what the code they were made with does, so that any later change
(moving modules, refactoring a rule, a new state layout) can be checked against it by
``tests/test_golden_checkpoints.py``: each stored state must restore into the current
code and continue bit for bit as the uninterrupted run of the old code did. They are
committed and stay; regenerate them ONLY from code known to be right (the commit before
a change, never the change itself), and only when a difference is intended (a fixed bug,
a changed row of the catalogue), saying so in the commit message.

For each catalogue row, from the row's fixed start params (``catalogue.initial_params``)
and the gradient of ``catalogue.loss`` at the current params, 5 steps are run (jitted
unless the row says otherwise), and written:

* ``msgpack/<name>.msgpack``: the state after step 3, ``flax.serialization.to_bytes``
  (typed PRNG keys as their raw data: ``catalogue.keys_as_data``).
* ``orbax/<name>/``: the same state, an orbax-checkpoint ``StandardCheckpointer``
  checkpoint (zero-size arrays, which orbax refuses, left out: ``catalogue.without_empty``).
* ``steps/<name>.npz``: the start params (``params0/<i>``), the params after steps 3, 4
  and 5 (``params3/<i>`` ...), the updates of steps 4 and 5 (``updates4/<i>``,
  ``updates5/<i>``) and the gradients they were computed from (``grads4/<i>``,
  ``grads5/<i>``), leaves in ``jax.tree.leaves`` order; ``paths`` names the leaves.
* ``MANIFEST.json``: the versions, platform and code commit the files come from, and per
  row the state's leaves (path, dtype, shape), for the failure messages.

Usage, from the root of the checkout whose code is to be frozen::

    PYTHONPATH=$PWD python tests/golden/make_golden.py            # every row
    PYTHONPATH=$PWD python tests/golden/make_golden.py adam lamb  # some rows (merged)

Writing some rows (a new row's first files, or a row whose change is intended) leaves
the other rows' files and MANIFEST.json's top-level ``code_commit`` and ``environment``
(those of the last full run) as they are; each row written records its own.

The script writes next to itself (``--out DIR`` elsewhere) and prints which optim_fn it
froze: check that it is the intended checkout. Runs on the CPU, in float32, about a
minute.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import jax

jax.config.update("jax_platforms", "cpu")

import flax  # noqa: E402
import flax.serialization  # noqa: E402
import jaxlib  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import catalogue  # noqa: E402

import optim_fn  # noqa: E402

SAVE_AT, STEPS = 3, 5


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def paths(tree):
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def run_row(entry):
    """The uninterrupted run: state after SAVE_AT steps and the arrays of the npz."""
    params0 = catalogue.initial_params(entry)
    optimizer = entry.make()
    params = catalogue.optimizer_params(entry, params0)
    state = optimizer.init(params)
    step = catalogue.make_step(entry, optimizer)
    arrays = {f"params0/{i}": x for i, x in enumerate(leaves(params0))}
    saved = None
    for k in range(1, STEPS + 1):
        if k > SAVE_AT:
            grads = catalogue.grads_for(entry, params)
            arrays.update({f"grads{k}/{i}": x for i, x in enumerate(leaves(grads))})
        params, state, updates = step(params, state)
        if k == SAVE_AT:
            saved = jax.device_get(catalogue.keys_as_data(state))
        if k >= SAVE_AT:
            arrays.update({f"params{k}/{i}": x for i, x in enumerate(leaves(params))})
        if k > SAVE_AT:
            arrays.update({f"updates{k}/{i}": x for i, x in enumerate(leaves(updates))})
    arrays["paths"] = np.asarray(paths(params))
    return saved, arrays


def write_row(entry, out, checkpointer):
    state, arrays = run_row(entry)
    msgpack = out / "msgpack" / f"{entry.name}.msgpack"
    msgpack.write_bytes(flax.serialization.to_bytes(state))
    np.savez_compressed(out / "steps" / f"{entry.name}.npz", **arrays)
    target = (out / "orbax" / entry.name).resolve()
    if target.exists():
        shutil.rmtree(target)
    checkpointer.save(target, catalogue.without_empty(state))
    checkpointer.wait_until_finished()
    leaves_info = [
        f"{p} {np.asarray(x).dtype}{list(np.shape(x))}"
        for p, x in zip(paths(state), jax.tree.leaves(state), strict=True)
    ]
    return {
        "state_leaves": leaves_info,
        "msgpack_sha256": hashlib.sha256(msgpack.read_bytes()).hexdigest(),
    }


def code_commit():
    root = Path(optim_fn.__file__).resolve().parents[1]
    try:
        found = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
            check=True,
        )
        # Read-only: `git diff` (not `git status`, which may rewrite the index).
        dirty = subprocess.run(
            ["git", "-C", str(root), "diff", "--quiet", "HEAD", "--", "optim_fn"],
            capture_output=True, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return found.stdout.strip() + (" (optim_fn/ modified)" if dirty else "")


def environment():
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "system": platform.system(),
        "processor": platform.processor(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "orbax-checkpoint": ocp.__version__ if hasattr(ocp, "__version__") else "?",
        "numpy": np.__version__,
        "backend": jax.default_backend(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="rows to (re)write; default: all")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    rows = [catalogue.BY_NAME[n] for n in args.names] if args.names else catalogue.CATALOGUE
    out = args.out
    print(f"freezing optim_fn from {Path(optim_fn.__file__).resolve().parent}")
    for sub in ("msgpack", "orbax", "steps"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    manifest_path = out / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    # Some rows into an existing set: the top level keeps naming the full run's code.
    merged = bool(args.names) and "code_commit" in manifest
    rows_info = manifest.get("rows", {}) if args.names else {}
    made_with = {"code_commit": code_commit(), "environment": environment()}
    with ocp.StandardCheckpointer() as checkpointer:
        for entry in rows:
            info = write_row(entry, out, checkpointer)
            rows_info[entry.name] = {**info, **made_with} if merged else info
            print(f"  {entry.name}", flush=True)
    top = {key: manifest[key] for key in made_with} if merged else made_with
    manifest = {
        "made_by": "tests/golden/make_golden.py",
        "code_commit": top["code_commit"],
        "steps": {"saved_after": SAVE_AT, "total": STEPS},
        "environment": top["environment"],
        "rows": dict(sorted(rows_info.items())),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(rows)} row(s) to {out}")


if __name__ == "__main__":
    main()
