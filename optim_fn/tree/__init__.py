"""Tree math and tree paths: norms, inner products, finiteness, labels from path patterns.

Every reduction accumulates in float32 at least (bf16 leaves do not lose their norm to
rounding) and is real for complex leaves (``|z|^2``, ``Re <a, b>``). optax.tree's
leafwise arithmetic and reductions are here under optax's names (``add``, ``scale``,
``vdot``, ``norm``, ...; ``_arith.py``).
"""

from optim_fn.tree._arith import (
    add,
    add_scale,
    cast,
    clip,
    conj,
    div,
    max,
    min,
    mul,
    norm,
    ones_like,
    real,
    scale,
    size,
    sub,
    sum,
    vdot,
    where,
    zeros_like,
)
from optim_fn.tree._math import (
    all_finite,
    global_norm,
    tree_add_scaled,
    tree_l1_norm,
    tree_norm,
    tree_real_vdot,
    tree_sq_norm,
)
from optim_fn.tree._paths import (
    Pattern,
    broadcast_to_tree,
    leaf_paths,
    path_labels,
    path_mask,
    path_string,
)
from optim_fn.tree._structure import (
    full_like,
    tree_full_like,
)

__all__ = [
    "add",
    "add_scale",
    "cast",
    "clip",
    "conj",
    "div",
    "max",
    "min",
    "mul",
    "norm",
    "ones_like",
    "real",
    "scale",
    "size",
    "sub",
    "sum",
    "vdot",
    "where",
    "zeros_like",
    "Pattern",
    "all_finite",
    "broadcast_to_tree",
    "full_like",
    "global_norm",
    "leaf_paths",
    "path_labels",
    "path_mask",
    "path_string",
    "tree_add_scaled",
    "tree_full_like",
    "tree_l1_norm",
    "tree_norm",
    "tree_real_vdot",
    "tree_sq_norm",
]
