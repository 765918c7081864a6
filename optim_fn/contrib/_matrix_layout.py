"""Which leaves of a tree are matrices, their axes and output blocks (the Muon family).

Shared by :mod:`optim_fn.contrib._muon`, ``_normuon`` and ``_adamuon``: the per-leaf
``MuonDimensionNumbers`` and ``split_sizes`` (static keywords of the whole-leaf rules)
and the partition of a tree into the Muon matrices and the AdamW rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core import hyperparams as hp
from optim_fn.core.base import GradientTransformationExtraArgs
from optim_fn.core.lift import rule_transform
from optim_fn.flat._ravel import check_not_flat
from optim_fn.rules.orthogonalize import MuonDimensionNumbers, matrix_fans
from optim_fn.transforms._partition import partition


def _is_dims(x: Any) -> bool:
    return isinstance(x, MuonDimensionNumbers)


def dims_per_leaf(updates: Any, spec: Any) -> list:
    """The dimension numbers of each (non-None) leaf of ``updates``, in leaf order."""
    leaves = jax.tree.leaves(updates)
    if spec is None:
        return [MuonDimensionNumbers()] * len(leaves)
    resolved = spec(updates) if callable(spec) else spec
    with_none = jax.tree.leaves(updates, is_leaf=lambda x: x is None)
    dims = jax.tree.leaves(resolved, is_leaf=lambda x: x is None or _is_dims(x))
    if len(dims) != len(with_none):
        raise ValueError(
            "muon: the weight dimension numbers must be a tree with one "
            "MuonDimensionNumbers (or None) per param leaf"
        )
    return [d for u, d in zip(with_none, dims, strict=True) if u is not None]


def _hashable(dims: MuonDimensionNumbers) -> MuonDimensionNumbers:
    """The same dimension numbers with tuples for lists (leaves are grouped by them)."""
    as_tuple = lambda axes: axes if isinstance(axes, int) else tuple(axes)  # noqa: E731
    return MuonDimensionNumbers(as_tuple(dims.reduction_axis), as_tuple(dims.output_axis))


def _is_split(x: Any) -> bool:
    return isinstance(x, int) or (
        isinstance(x, (tuple, list)) and all(isinstance(s, int) for s in x)
    )


def splits_per_leaf(updates: Any, spec: Any, dims: list) -> list:
    """Each leaf's ``split_sizes`` (a tuple summing to its fan-out, or None), leaf order."""
    leaves = jax.tree.leaves(updates)
    if spec is None:
        return [None] * len(leaves)
    if _is_split(spec):
        per_leaf = [spec] * len(leaves)
    else:
        resolved = spec(updates) if callable(spec) else spec
        with_none = jax.tree.leaves(updates, is_leaf=lambda x: x is None)
        found = jax.tree.leaves(resolved, is_leaf=lambda x: x is None or _is_split(x))
        if len(found) != len(with_none):
            raise ValueError(
                "muon: `split_sizes` must be an int, a tuple of ints, or a tree (or a "
                "function of the params returning one) with one of those (or None) per leaf"
            )
        per_leaf = [f for u, f in zip(with_none, found, strict=True) if u is not None]
    result = []
    for leaf, dim, split in zip(leaves, dims, per_leaf, strict=True):
        if split is None:
            result.append(None)
            continue
        fan_out = matrix_fans(leaf, dim)[1]
        if isinstance(split, int):
            if split < 1 or fan_out % split:
                raise ValueError(
                    f"muon: `split_sizes={split}` (a block size) does not divide the output "
                    f"size {fan_out} of a leaf of shape {leaf.shape}; give a block size that "
                    "divides it or a tuple of sizes summing to it"
                )
            split = (split,) * (fan_out // split)
        if sum(split) != fan_out or min(split) < 1:
            raise ValueError(
                f"muon: `split_sizes={tuple(split)}` must be positive and sum to the output "
                f"size {fan_out} of a leaf of shape {leaf.shape}"
            )
        result.append(None if len(split) == 1 else tuple(split))
    return result


def leaf_layout(weight_dimension_numbers: Any, split_sizes: Any):
    """``leaf_keywords`` for the lifter: each leaf's dims and output blocks."""

    def keywords(updates):
        dims = dims_per_leaf(updates, weight_dimension_numbers)
        splits = splits_per_leaf(updates, split_sizes, dims)
        return [
            {"dims": _hashable(d), "split_sizes": split}
            for d, split in zip(dims, splits, strict=True)
        ]

    return keywords


def muon_labels(spec: Any, where: str = "muon"):
    """``params -> labels``: "muon" for the matrices (2-d, or non-None dims), else "adam"."""

    def labels(params):
        if spec is None:
            return jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adam", params)
        resolved = spec(params) if callable(spec) else spec
        with_none, treedef = jax.tree.flatten(params, is_leaf=lambda x: x is None)
        dims = jax.tree.leaves(resolved, is_leaf=lambda x: x is None or _is_dims(x))
        if len(dims) != len(with_none):
            raise ValueError(
                f"{where}: `muon_weight_dimension_numbers` must have one "
                "MuonDimensionNumbers (or None, for AdamW) per param leaf"
            )
        return treedef.unflatten(
            [
                None if p is None else ("adam" if d is None else "muon")
                for p, d in zip(with_none, dims, strict=True)
            ]
        )

    return labels


def with_adam(where: str, matrix_part, adam_part, spec: Any, split_sizes: Any = None):
    """``matrix_part`` on the Muon leaves, ``adam_part`` on the others; not flat."""
    split = partition({"muon": matrix_part, "adam": adam_part}, muon_labels(spec, where))

    def init(params):
        check_not_flat(params, where, "it orthogonalizes each 2-d leaf as a matrix")
        if split_sizes is not None:
            # Fails here, naming the leaf, rather than at the first update.
            matrices = jax.tree.map(
                lambda p, label: p if label == "muon" else None, params,
                muon_labels(spec, where)(params),
            )
            splits_per_leaf(matrices, split_sizes, dims_per_leaf(matrices, spec))
        return split.init(params)

    return GradientTransformationExtraArgs(init, split.update)


def matrix_rule_transform(
    rule: Callable,
    state_type: type,
    *,
    name: str,
    weight_dimension_numbers: Any,
    split_sizes: Any,
    slots: tuple[str, ...],
    init_slots: Callable[[Any, MuonDimensionNumbers], tuple],
    coeffs: np.ndarray,
    **lifter_keywords: Any,
) -> GradientTransformationExtraArgs:
    """The lifter's whole-leaf transform of a Muon-family ``rule``.

    ``init_slots(param, dims)`` also gets the leaf's dimension numbers (a neuron-wise
    statistic keeps the output axes only); the rule gets ``dims`` and ``split_sizes``
    per leaf and the coefficient table ``ns_coeffs`` (stored in the state).
    """
    pending: list[MuonDimensionNumbers] = []
    inner = rule_transform(
        rule,
        state_type,
        slots=slots,
        # The lifter calls init_slots leaf by leaf in tree order: the order of `pending`.
        init_slots=lambda param: init_slots(param, pending.pop(0)),
        leaf_keywords=leaf_layout(weight_dimension_numbers, split_sizes),
        constants={"ns_coeffs": lambda params: jnp.asarray(coeffs, hp.storage_dtype(params))},
        name=name,
        flat_reason="it orthogonalizes each leaf as a matrix",
        complex_reason="its neuron-wise statistics are written for real matrices",
        **lifter_keywords,
    )

    def init(params):
        check_not_flat(params, name, "it orthogonalizes each leaf as a matrix")
        pending[:] = dims_per_leaf(params, weight_dimension_numbers)
        return inner.init(params)

    return GradientTransformationExtraArgs(init, inner.update)

