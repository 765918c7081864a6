"""Parameter groups: different transforms for different parts of a tree, and freezing.

Labels say which group each parameter belongs to. They come from

* a tree of labels shaped like the params, or a prefix of them
  (``{"encoder": "frozen", "head": "train"}``), in any container type: a plain dict
  matches a flax ``FrozenDict``, a NamedTuple or a dataclass by key names;
* a function of the params returning such a tree; or
* patterns on the parameter path, with :func:`path_labels` / :func:`path_mask`::

      # AdamW without weight decay on biases and normalisation scales, in one line:
      opt = optim_fn.adamw(1e-3, mask=optim_fn.path_mask(exclude=("*bias", "*norm*/scale")))

      # Adam on the encoder at a small rate, SGD on the head, nothing on the embeddings:
      opt = optim_fn.partition(
          {"enc": optim_fn.adam(1e-4), "head": optim_fn.sgd(1e-2),
           "frozen": optim_fn.set_to_zero()},
          optim_fn.path_labels({"embed/*": "frozen", "encoder/*": "enc"}, default="head"),
      )

A path is the leaf's keys joined by ``/``: dict keys, attribute names of NamedTuples
and dataclasses, list/tuple indices (``"encoder/layers/0/kernel"``). Patterns are
shell-style globs matched against the whole path (``*`` also matches ``/``), or
compiled regular expressions (``re.compile(...)``, matched with ``search``).

:func:`partition` (optax's name; :func:`multi_transform` is an alias) keeps each group's
state for that group's leaves only. :func:`freeze` zeroes updates of masked leaves;
:func:`selective_transform` also keeps no optimizer state for them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    Params,
    Updates,
    compiled_when_eager,
    with_extra_args,
)
from optim_fn.core.validation import checks_once
from optim_fn.flat._ravel import FlatTree, is_flat
from optim_fn.transforms._combine import is_mask_function
from optim_fn.tree._paths import broadcast_to_tree


class PartitionState(NamedTuple):
    """The state of each group's transform, keyed by label; each holds its leaves only."""

    inner_states: dict[Hashable, Any]


def _select(labels: Any, tree: Any, group: Hashable) -> Any:
    return jax.tree.map(
        lambda label, leaf: leaf if label == group else None,
        labels,
        tree,
        is_leaf=lambda x: x is None,
    )


def _buffer_labels(flat: FlatTree, leaf_labels: Any) -> FlatTree:
    """One label per buffer of a FlatTree; each buffer must hold a single group."""
    per_buffer: list[set] = [set() for _ in flat.buffers]
    for place, label in zip(flat.layout.places, jax.tree.leaves(leaf_labels), strict=True):
        per_buffer[place.buffer].add(label)
    mixed = [sorted(map(str, labels)) for labels in per_buffer if len(labels) > 1]
    if mixed:
        raise ValueError(
            f"partition: a flat buffer holds leaves of several groups {mixed[0]}; ravel "
            "the params with `optim_fn.flat.ravel(params, groups=<the same labels>)` so "
            "that each group has its own buffer"
        )
    return FlatTree(tuple(labels.pop() for labels in per_buffer), flat.layout)


@checks_once
def partition(
    transforms: Mapping[Hashable, GradientTransformation],
    param_labels: Any | Callable[[Params], Any],
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformationExtraArgs:
    """Applies ``transforms[label]`` to the leaves labelled ``label``.

    Args:
      transforms: label -> transform (optim_fn or optax).
      param_labels: a tree of labels shaped like the params (or a prefix, in any mapping
        type), or a function of the params returning one (e.g. :func:`path_labels`).
        Every label must be a key of ``transforms``.
      mask_compatible_extra_args: also split extra ``update`` arguments that are trees
        shaped like the updates, giving each group its own leaves.

    Each group's state covers only its leaves, so a frozen group under
    :func:`set_to_zero` costs no memory. Same names and behaviour as
    :func:`optax.partition` (formerly ``multi_transform``). On a
    :class:`~optim_fn.flat.FlatTree` the labels refer to the original tree and each
    buffer must hold one group (ravel with ``groups=`` the same labels).
    """
    if not isinstance(transforms, Mapping) or not transforms:
        raise ValueError(
            "partition: `transforms` must be a non-empty dict {label: transform}, "
            f"got {transforms!r}"
        )
    for label, transform in transforms.items():
        if not (hasattr(transform, "init") and hasattr(transform, "update")):
            raise TypeError(
                f"partition: transforms[{label!r}] is {transform!r}, not a gradient "
                "transformation; did you pass an optimizer factory without calling it?"
            )
    parts = {label: with_extra_args(t) for label, t in transforms.items()}

    def labels_for(tree: Any) -> Any:
        if is_flat(tree):
            return _buffer_labels(tree, labels_for(tree.leaf_structs()))
        given = param_labels(tree) if callable(param_labels) else param_labels
        labels = broadcast_to_tree(given, tree, what="param_labels")
        unknown = sorted(
            {str(lab) for lab in jax.tree.leaves(labels) if lab not in parts}
        )
        if unknown:
            raise ValueError(
                f"partition: labels {unknown} have no transform; `transforms` has "
                f"{sorted(str(k) for k in parts)}. Add them to `transforms` or relabel."
            )
        return labels

    def init(params: Params) -> PartitionState:
        labels = labels_for(params)
        return PartitionState(
            {group: part.init(_select(labels, params, group)) for group, part in parts.items()}
        )

    def update(updates: Updates, state: PartitionState, params: Params = None, **extra_args):
        labels = labels_for(updates)
        structure = jax.tree.structure(updates)
        merged = updates
        new_states = {}
        for group, part in parts.items():
            group_extra = extra_args
            if mask_compatible_extra_args:
                group_extra = {
                    k: _select(labels, v, group)
                    if jax.tree.structure(v) == structure
                    else v
                    for k, v in extra_args.items()
                }
            group_updates, new_states[group] = part.update(
                _select(labels, updates, group),
                state.inner_states[group],
                None if params is None else _select(labels, params, group),
                **group_extra,
            )
            merged = jax.tree.map(
                lambda label, old, new, g=group: new if label == g else old,
                labels,
                merged,
                group_updates,
                is_leaf=lambda x: x is None,
            )
        return merged, PartitionState(new_states)

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))


multi_transform = partition


def _negative_zero_like(update: Any) -> Any:
    update = jnp.asarray(update)
    if jnp.issubdtype(update.dtype, jnp.complexfloating):
        return jnp.full(update.shape, complex(-0.0, -0.0), update.dtype)
    return jnp.full(update.shape, -0.0, update.dtype)


@checks_once
def set_to_zero() -> GradientTransformationExtraArgs:
    """Replaces every update by zero, so the params stay where they are.

    The zero is ``-0.0``: ``p + (-0.0) == p`` bit for bit for every float ``p``, while
    ``+0.0`` would turn a ``-0.0`` parameter into ``+0.0``.
    """

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(updates: Updates, state: EmptyState, params: Params = None, **extra_args):
        del params, extra_args
        return jax.tree.map(_negative_zero_like, updates), state

    return GradientTransformationExtraArgs(init, update)


@checks_once
def freeze(mask: Any | Callable[[Params], Any]) -> GradientTransformationExtraArgs:
    """Zeroes the updates where ``mask`` is True: those parameters stay bit-for-bit fixed.

    ``mask`` is a bool, a tree of bools (a prefix of the params, any mapping type) or a
    function of the params (e.g. :func:`path_mask`). Put it last in a chain: a later
    transform with state (momentum) could turn the zeros back into a step. To also keep
    no optimizer state for the frozen leaves, use :func:`selective_transform`.
    """
    from optim_fn.transforms._combine import masked

    return masked(set_to_zero(), mask)


@checks_once
def selective_transform(
    optimizer: GradientTransformation, *, freeze_mask: Any | Callable[[Params], Any]
) -> GradientTransformationExtraArgs:
    """Runs ``optimizer`` on the leaves where ``freeze_mask`` is False; freezes the rest.

    The optimizer's state covers only the trainable leaves. ``freeze_mask`` as in
    :func:`freeze`. Same as :func:`optax.selective_transform`, but frozen leaves get
    ``-0.0`` updates (see :func:`set_to_zero`).
    """

    def labels(params: Params) -> Any:
        given = freeze_mask(params) if is_mask_function(freeze_mask) else freeze_mask
        full = broadcast_to_tree(given, params, what="freeze_mask")
        return jax.tree.map(lambda frozen: "freeze" if frozen else "train", full)

    return partition({"train": optimizer, "freeze": set_to_zero()}, labels)
