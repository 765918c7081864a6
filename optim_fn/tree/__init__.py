"""Tree math and tree paths: norms, inner products, finiteness, labels from path patterns.

Every reduction accumulates in float32 at least (bf16 leaves do not lose their norm to
rounding) and is real for complex leaves (``|z|^2``, ``Re <a, b>``).
"""

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
