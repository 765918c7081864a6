"""Combining transforms: ``chain`` and ``masked``.

Both accept optax transforms as well as optim_fn ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Params,
    Updates,
    compiled_when_eager,
    with_extra_args,
)
from optim_fn.core.validation import checks_once
from optim_fn.flat._ravel import FlatTree, buffer_masks, is_flat
from optim_fn.tree._structure import replicate_scalars_like_params


@checks_once
def chain(*transforms: GradientTransformation) -> GradientTransformationExtraArgs:
    """Applies ``transforms`` in order; the state is the tuple of their states.

    Extra keyword arguments given to ``update`` reach every transform (plain optax
    transforms, which take none, are called without them).
    """
    for index, transform in enumerate(transforms):
        if not (hasattr(transform, "init") and hasattr(transform, "update")):
            raise TypeError(
                f"chain: argument {index} is {transform!r}, not a gradient transformation "
                "(an object with `init` and `update`, e.g. `optim_fn.adam(1e-3)`); "
                "did you pass an optimizer factory without calling it?"
            )
    parts = tuple(with_extra_args(t) for t in transforms)

    def init(params: Params) -> tuple:
        # optax blocks (and ours that build scalars themselves) start with unplaced
        # scalars; placing them like sharded params saves jit a second compilation.
        return replicate_scalars_like_params(tuple(part.init(params) for part in parts), params)

    def update(updates: Updates, state: OptState, params: Params = None, **extra_args):
        if not isinstance(state, tuple) or len(state) != len(parts):
            raise ValueError(
                f"chain: expected the state returned by this chain's init (a tuple of "
                f"{len(parts)} states), got {type(state).__name__}"
                + (f" of length {len(state)}" if isinstance(state, tuple) else "")
            )
        new_states = []
        for part, part_state in zip(parts, state, strict=True):
            updates, part_state = part.update(updates, part_state, params, **extra_args)
            new_states.append(part_state)
        return updates, tuple(new_states)

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))


class MaskedState(NamedTuple):
    inner_state: Any


def _full_mask(mask_tree: Any, tree: Any) -> Any:
    """Broadcasts a mask that is a prefix of ``tree`` to one bool per leaf of ``tree``."""

    def spread(flag, subtree):
        return jax.tree.map(lambda _: bool(flag), subtree)

    try:
        return jax.tree.map(spread, mask_tree, tree)
    except ValueError:
        # Containers of another type (a dict mask for FrozenDict / NamedTuple /
        # dataclass params) are matched by key names instead; if that fails too, its
        # message names the unmatched paths.
        from optim_fn.tree._paths import broadcast_to_tree

        try:
            return jax.tree.map(bool, broadcast_to_tree(mask_tree, tree, what="mask"))
        except ValueError as error:
            raise ValueError(
                "masked: the mask must have the structure of the params (or a prefix of "
                f"it), with a bool per leaf or subtree: {error}"
            ) from None


def _select(full_mask: Any, tree: Any) -> Any:
    # A flag is True, False, or (for a FlatTree buffer holding both kinds of leaf) a
    # NumPy bool array; such a buffer goes through the inner transform whole.
    return jax.tree.map(lambda keep, leaf: None if keep is False else leaf, full_mask, tree)


def _merge(keep: Any, original: Any, new: Any) -> Any:
    if keep is False or keep is None:
        return original
    if keep is True:
        return new
    return jnp.where(keep, new, original)


def is_mask_function(mask: Any) -> bool:
    """Whether ``mask`` is a function of the params rather than a tree of bools.

    As in optax: a tree whose leaves are all callable (a plain function is such a tree).
    A callable tree of bools, like an equinox module, is a tree and is read as one.
    """
    flags = jax.tree.leaves(jax.tree.map(callable, mask))
    return bool(flags) and all(flags)


def _has_no_leaves(params: Any) -> bool:
    return not jax.tree.leaves(params, is_leaf=lambda x: x is None)


@checks_once
def masked(
    inner: GradientTransformation, mask: Any | Callable[[Params], Any]
) -> GradientTransformationExtraArgs:
    """Applies ``inner`` only where ``mask`` is True; other leaves pass through unchanged.

    ``mask`` is a tree of bools with the params' structure (or a prefix of it), or a
    function of the params (of the updates, in ``update``) returning one. The inner state
    only holds the selected leaves. On a :class:`~optim_fn.flat.FlatTree` the mask refers
    to the original tree; a buffer that mixes selected and unselected leaves goes through
    ``inner`` whole and is merged elementwise (ravel with ``groups`` to avoid that).
    """
    inner = with_extra_args(inner)
    mask_is_function = is_mask_function(mask)

    def mask_for(tree):
        if is_flat(tree):
            return FlatTree(tuple(buffer_masks(tree, mask)), tree.layout)
        return _full_mask(mask(tree) if mask_is_function else mask, tree)

    def init(params: Params) -> MaskedState:
        if _has_no_leaves(params) and not _has_no_leaves(mask):
            # A tree without leaves that the mask cannot describe: the stand-in params
            # with which optax.tree_map_params (and others) find where the state holds
            # copies of the params. Nothing to mask, and the inner state keeps it.
            return MaskedState(inner.init(params))
        return MaskedState(inner.init(_select(mask_for(params), params)))

    def update(updates: Updates, state: MaskedState, params: Params = None, **extra_args):
        full = mask_for(updates)
        selected_params = None if params is None else _select(full, params)
        inner_updates, inner_state = inner.update(
            _select(full, updates), state.inner_state, selected_params, **extra_args
        )
        merged = jax.tree.map(
            _merge,
            full,
            updates,
            inner_updates,
            is_leaf=lambda x: x is None,
        )
        return merged, MaskedState(inner_state)

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))


@checks_once
def named_chain(*transforms: tuple[str, GradientTransformation]) -> GradientTransformationExtraArgs:
    """Like :func:`chain`, from ``(name, transform)`` pairs; the state is a dict from each
    name to its transform's state (optax's :func:`optax.named_chain`), so a part of the
    state is found by name (``state["adam"]``) instead of by position. (``jax.jit``
    returns dicts with sorted keys; the transforms still run in the order given.)
    """
    names = []
    for index, pair in enumerate(transforms):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise TypeError(
                f"named_chain: argument {index} is {pair!r}, not a (name, transform) pair"
            )
        names.append(pair[0])
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"named_chain: names must be distinct, repeated: {duplicates}")
    inner = chain(*(transform for _, transform in transforms))

    def init(params: Params) -> dict:
        return dict(zip(names, inner.init(params), strict=True))

    def update(updates: Updates, state: dict, params: Params = None, **extra_args):
        if not isinstance(state, dict) or set(state) != set(names):
            raise ValueError(
                f"named_chain: expected the state returned by this chain's init (a dict with "
                f"keys {names}), got {type(state).__name__}"
            )
        updates, states = inner.update(
            updates, tuple(state[n] for n in names), params, **extra_args
        )
        return updates, dict(zip(names, states, strict=True))

    return GradientTransformationExtraArgs(init, update)
