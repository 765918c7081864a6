"""Measures the flags of every catalogue row and prints those that disagree with the table.

Run by hand (about a minute on 2 cores)::

    python tests/golden/derive_flags.py            # every row
    python tests/golden/derive_flags.py adam lamb  # some rows

Probes (3 jitted steps of the standard problem, float32; see tests/catalogue.py):

* whole_tree: add 0.1 to the first entry of the first leaf's params; does the update of
  another leaf change (at all)?
* whole_leaf: the optimizer sees the matrix and the cube each split into two blocks
  along their second-to-last axis (the gradients, the values and the loss are those of
  the joined tree); do its updates differ from the unsplit run by more than 1e-4
  relative? Where the split tree cannot run (a configuration that names leaves), the
  perturbation decides: other entries of the same leaf change, no other leaf does.
* flat: init and update on ``optim_fn.flat.ravel(params)`` run and move the params as
  tree mode does, to 1e-5 of the params' scale (rounding in whole-tree
  reductions is allowed for; per-leaf noise streams or unfactored moments are not).
* complex: complex64 params run and give finite complex64 updates.
* needs_params: ``update(grads, state)`` without params raises.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import catalogue  # noqa: E402

import optim_fn  # noqa: E402
import optim_fn.flat  # noqa: E402

STEPS = 3
SPLIT = ("w", "cube", "table", "v")


def run(entry, params, *, view=None, with_params=True):
    """Updates of ``STEPS`` steps; ``view=(split, join)`` shows the optimizer split leaves."""
    optimizer = entry.make()
    split, join = view or (lambda t: t, lambda t: t)
    p = catalogue.optimizer_params(entry, params)
    state = optimizer.init(split(p))

    def step(p, state):
        grads = catalogue.grads_for(entry, p)
        extra = catalogue.extra_args_for(entry, p)
        if view is not None:
            extra = {k: _split_value(v, split, join) for k, v in extra.items()}
        updates, state = optimizer.update(
            split(grads), state, split(p) if with_params else None, **extra
        )
        updates = join(updates)
        return optim_fn.apply_updates(p, updates), state, updates

    step = jax.jit(step) if entry.jit else step
    out = []
    for _ in range(STEPS):
        p, state, updates = step(p, state)
        out.append(updates)
    return out


def _split_value(value, split, join):
    if callable(value):
        return lambda s: value(join(s))
    if isinstance(value, dict):
        return split(value)
    return value


def splitter():
    def split(tree):
        if not isinstance(tree, dict):
            return tree
        out = {}
        for key, leaf in tree.items():
            if key in SPLIT and getattr(leaf, "ndim", 0) >= 2:
                cut = 1
                out[key + "_0"], out[key + "_1"] = (
                    jax.lax.slice_in_dim(leaf, 0, cut, axis=leaf.ndim - 2),
                    jax.lax.slice_in_dim(leaf, cut, leaf.shape[-2], axis=leaf.ndim - 2),
                )
            else:
                out[key] = leaf
        return out

    def join(tree):
        if not isinstance(tree, dict) or not any(k.endswith("_0") for k in tree):
            return tree
        out = {}
        for key in tree:
            if key.endswith("_0"):
                base = key[:-2]
                a, b = tree[key], tree[base + "_1"]
                out[base] = jnp.concatenate([a, b], axis=a.ndim - 2)
            elif not key.endswith("_1"):
                out[key] = tree[key]
        return out

    return split, join


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def relative(a_list, b_list):
    worst = 0.0
    for a, b in zip(a_list, b_list, strict=True):
        for x, y in zip(leaves(a), leaves(b), strict=True):
            scale = max(np.max(np.abs(y)), 1e-30)
            worst = max(worst, float(np.max(np.abs(x - y)) / scale))
    return worst


def _cumulative(updates, k):
    """The sum of the first k + 1 updates: the params' movement after step k + 1."""
    return jax.tree.map(lambda *u: sum(u[1:], u[0]), *updates[: k + 1])


def perturbation(entry, params, base):
    key = next(iter(params))
    moved = dict(params)
    moved[key] = params[key].reshape(-1).at[0].add(0.1).reshape(params[key].shape)
    other = run(entry, moved)
    same_leaf = other_leaf = False
    for before, after in zip(base, other, strict=True):
        fb = jax.tree_util.tree_flatten_with_path(before)[0]
        fa = jax.tree_util.tree_flatten_with_path(after)[0]
        for (path, x), (_, y) in zip(fb, fa, strict=True):
            x, y = np.asarray(x), np.asarray(y)
            names = jax.tree_util.keystr(path)
            if f"'{key}'" in names:
                rest_x, rest_y = x.reshape(-1)[1:], y.reshape(-1)[1:]
                same_leaf |= not np.array_equal(rest_x, rest_y)
            else:
                other_leaf |= not np.array_equal(x, y)
    return same_leaf, other_leaf


def probe(entry):
    found, notes = {}, []
    params = catalogue.initial_params(entry)
    base = run(entry, params)
    same_leaf, other_leaf = perturbation(entry, params, base)
    found["whole_tree"] = other_leaf
    try:
        split_err = relative(run(entry, params, view=splitter()), base)
        found["whole_leaf"] = split_err > 1e-4
        notes.append(f"split {split_err:.1e}")
    except Exception as error:  # noqa: BLE001
        found["whole_leaf"] = same_leaf and not other_leaf
        notes.append(f"split fails ({type(error).__name__}); same-leaf change {same_leaf}")
    # flat mode
    try:
        packed = optim_fn.flat.ravel(params)
        flat_updates = run(entry, packed)
        unpacked = [
            jax.tree.map(lambda x: x.unravel() if isinstance(x, optim_fn.flat.FlatTree) else x,
                         u, is_leaf=lambda x: isinstance(x, optim_fn.flat.FlatTree))
            for u in flat_updates
        ]
        err = relative(unpacked, base)
        # Judged on the params (updates that are differences of params, as lookahead's
        # synchronisation, lose relative digits to cancellation).
        scale = max(float(np.max(np.abs(x))) for x in leaves(params))
        moved_err = max(
            float(np.max(np.abs(a - b))) / scale
            for k in range(STEPS)
            for a, b in zip(leaves(_cumulative(unpacked, k)), leaves(_cumulative(base, k)),
                            strict=True)
        )
        found["flat"] = moved_err <= 1e-5
        notes.append(f"flat updates {err:.1e} params {moved_err:.1e}")
    except Exception as error:  # noqa: BLE001
        found["flat"] = False
        notes.append(f"flat refused: {type(error).__name__}: {str(error)[:70]}")
    # complex
    try:
        cparams = jax.tree.map(lambda x: x.astype(jnp.complex64) * (1 + 0.5j), params)
        out = run(entry, cparams)
        ok = all(
            x.dtype == np.complex64 and np.all(np.isfinite(x)) for u in out for x in leaves(u)
        )
        found["complex"] = ok
        if not ok:
            notes.append("complex: wrong dtype or non-finite")
    except Exception as error:  # noqa: BLE001
        found["complex"] = False
        notes.append(f"complex refused: {type(error).__name__}: {str(error)[:60]}")
    # needs params
    try:
        run(entry, params, with_params=False)
        found["needs_params"] = False
    except Exception:  # noqa: BLE001
        found["needs_params"] = True
    return found, notes


def main(names):
    rows = [catalogue.BY_NAME[n] for n in names] if names else catalogue.CATALOGUE
    disagreements = 0
    for entry in rows:
        try:
            found, notes = probe(entry)
        except Exception:  # noqa: BLE001
            print(f"{entry.name}: PROBE FAILED")
            traceback.print_exc()
            disagreements += 1
            continue
        wrong = {k: v for k, v in found.items() if getattr(entry, k) != v}
        disagreements += bool(wrong)
        mark = "DIFFERS " + str(wrong) if wrong else "ok"
        print(f"{entry.name:36s} {mark}  [{'; '.join(notes)}]", flush=True)
    print(f"{disagreements} row(s) disagree with the table")
    return disagreements


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
