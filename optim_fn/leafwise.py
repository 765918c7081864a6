"""Lifting rules that need a leaf's own shape: trust ratios, factored moments, SM3, Muon.

:func:`optim_fn.rule_transform.rule_transform` lifts elementwise rules, whose state has
the params' shapes. The rules here read a whole leaf at once (its norm, its rows and
columns) and may keep state of other shapes per leaf (one scalar per leaf in NovoGrad,
row and column statistics in Adafactor, one vector per axis in SM3). So:

* ``init_slots(param) -> tuple`` builds each leaf's state, of any shape and structure;
  the state holds, per slot, a tree with the params' structure whose leaves are those
  values (the params' tree is a prefix of it).
* ``init`` refuses a :class:`~optim_fn.flat.FlatTree`: in flat mode a "leaf" is a buffer
  of many leaves, and a norm or a matrix factorisation of it means nothing.
* Optionally ``init`` refuses complex params, with the reason.

Everything else is as in ``rule_transform``: hyperparameters are data in the state, the
step count saturates, updates are cast to the gradient's dtype and each slot to its
own dtype.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from optim_fn import hyperparams as hp
from optim_fn.base import GradientTransformationExtraArgs, ScalarOrSchedule, compiled_when_eager
from optim_fn.flat import check_not_flat
from optim_fn.rule_transform import safe_increment
from optim_fn.tree_utils import check_params, flatten_matching


def real_dtype(dtype: Any) -> jnp.dtype:
    """The real dtype of the same width (float32 for complex64)."""
    return jnp.finfo(dtype).dtype


def refuse_complex(params: Any, who: str, why: str) -> None:
    """Raises TypeError if some leaf of ``params`` is complex, giving ``why``."""
    if any(jnp.iscomplexobj(leaf) for leaf in jax.tree.leaves(params)):
        raise TypeError(
            f"{who} does not support complex params: {why}. Optimize the real and "
            "imaginary parts as separate real params (e.g. with `jnp.stack([z.real, "
            "z.imag])`), or use an optimizer that supports complex params."
        )


def _cast_like(new: Any, old: Any) -> Any:
    return jax.tree.map(lambda n, o: jnp.asarray(n).astype(jnp.asarray(o).dtype), new, old)


def leafwise_transform(
    rule: Callable[..., Any],
    state_type: type,
    *,
    slots: Sequence[str] = (),
    init_slots: Callable[[jax.Array], tuple] | None = None,
    hyperparams: Mapping[str, ScalarOrSchedule] | None = None,
    decays: Sequence[str] = (),
    static: Mapping[str, Any] | None = None,
    uses_params: bool = False,
    name: str,
    flat_reason: str,
    complex_reason: str | None = None,
) -> GradientTransformationExtraArgs:
    """Builds the ``(init, update)`` pair applying ``rule`` to each whole leaf.

    Args:
      rule: ``rule(grad, *slot_values, [param=...], [count=...], **hyperparams,
        **static) -> (update, *new_slot_values)``; a slot value may be any pytree.
      state_type: a NamedTuple with fields ``count``, one per slot, and ``hyperparams``.
      slots: the slot names, in the order ``init_slots`` and the rule use them.
      init_slots: ``init_slots(param) -> tuple`` of the leaf's initial slot values.
      hyperparams, decays, static, uses_params, name: as in
        :func:`optim_fn.rule_transform.rule_transform`.
      flat_reason: why the rule cannot run on a flat buffer (for the error message).
      complex_reason: if given, complex params are refused at ``init`` with this reason.
    """
    specs = dict(hyperparams or {})
    decay_names = frozenset(decays)
    static = dict(static or {})
    wants_count = "count" in inspect.signature(rule).parameters
    slots = tuple(slots)

    def init(params):
        check_not_flat(params, name, flat_reason)
        check_params(params, name)
        if complex_reason is not None:
            refuse_complex(params, name, complex_reason)
        leaves, treedef = jax.tree.flatten(params)
        per_leaf = [tuple(init_slots(leaf)) if init_slots else () for leaf in leaves]
        slot_trees = {
            slot: treedef.unflatten([values[i] for values in per_leaf])
            for i, slot in enumerate(slots)
        }
        return state_type(
            count=jnp.zeros([], jnp.int32),
            **slot_trees,
            hyperparams=hp.init_hyperparams(specs, decay_names, hp.storage_dtype(params)),
        )

    def update(grads, state, params=None, **extra_args):
        del extra_args
        if uses_params and params is None:
            raise ValueError(
                f"{name} needs the params: call `update(grads, state, params)` with the "
                "current params"
            )
        trees = {"params": params} if uses_params else {}
        treedef, grad_leaves, flat = flatten_matching(grads, "grads", **trees)
        slot_leaves = {}
        for slot in slots:
            try:
                slot_leaves[slot] = treedef.flatten_up_to(getattr(state, slot))
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"{name}: the grads do not match the optimizer state's {slot!r} tree; "
                    "pass a tree with the same structure as the params given to init "
                    f"({error})"
                ) from None

        hyperparams_now = hp.step_hyperparams(state.hyperparams, specs, decay_names, state.count)
        count = safe_increment(state.count)
        keywords = {**hp.as_keywords(hyperparams_now), **static}
        if wants_count:
            keywords["count"] = count

        update_leaves = []
        new_slot_leaves: list[list[Any]] = [[] for _ in slots]
        for index, grad in enumerate(grad_leaves):
            old_values = [slot_leaves[slot][index] for slot in slots]
            if uses_params:
                keywords["param"] = flat["params"][index]
            update, *new_values = rule(grad, *old_values, **keywords)
            update_leaves.append(jnp.asarray(update).astype(grad.dtype))
            for collected, old, new in zip(new_slot_leaves, old_values, new_values, strict=True):
                collected.append(_cast_like(new, old))

        new_slots = {
            slot: treedef.unflatten(leaves)
            for slot, leaves in zip(slots, new_slot_leaves, strict=True)
        }
        new_state = state_type(count=count, **new_slots, hyperparams=hyperparams_now)
        return treedef.unflatten(update_leaves), new_state

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))
