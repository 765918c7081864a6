"""The one lifter: an update rule, written as plain math on arrays, becomes a transform
over pytrees.

A *rule* is a function of one gradient array and that leaf's state (the *slots*:
moments, accumulators, factored statistics), plus scalar keyword arguments
(hyperparameters, the step count, static flags). It returns the update and the new
slots::

    def adam(grad, mu, nu, *, count, b1, one_minus_b1, b2, one_minus_b2, eps, eps_root):
        mu = b1 * mu + one_minus_b1 * grad
        ...
        return update, mu, nu

:func:`rule_transform` does the rest, once for every rule: state creation with the
params' structure, placement (scalars replicated on the params' mesh) and dtypes;
structure and shape checks on ``update``; hyperparameters stored as data (see
:mod:`optim_fn.core.hyperparams`), decay rates with their ``one_minus_`` at full
precision; the saturating step count; casting updates back to the gradient's dtype and
each slot back to its own.

Two kinds of rule:

* *elementwise* (the default): slots have the params' shapes (:class:`Slot`); the same
  rule then runs on a tree, on flat buffers (:mod:`optim_fn.flat`) or on sharded arrays.
* *whole-leaf* (``init_slots=``): the rule reads a whole leaf at once (its norm, its rows
  and columns, its polar factor) and its state may have any shape (one scalar per leaf in
  NovoGrad, row and column statistics in Adafactor). With ``batch_by_shape=True`` the
  leaves of one shape and dtype are batched: stacked, one ``vmap``-ed rule, unstacked,
  so a matrix optimizer's traced program grows with the number of distinct shapes, not
  with the number of leaves.
  Whole-leaf rules refuse flat buffers (a norm of a buffer of many leaves means nothing).
* *whole-tree* (``init_state=``): the rule needs global quantities (the norm of all the
  gradients, an inner product of two trees: DoG, D-Adaptation, MoMo, Polyak). It takes
  and returns whole trees; its state slots are any pytrees made from the params.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core import _owners, validation
from optim_fn.core import hyperparams as hp
from optim_fn.core.base import (
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    compiled_when_eager,
)
from optim_fn.core.numerics import safe_increment
from optim_fn.flat._ravel import check_not_flat
from optim_fn.tree._structure import (
    check_params,
    flatten_matching,
    replicate_scalars_like_params,
    tree_full_like,
)


class Slot(NamedTuple):
    """A piece of per-parameter state: its field name, initial value and dtype.

    ``dtype=None`` means the param's own dtype.
    """

    name: str
    initial_value: float = 0.0
    dtype: Any = None


def refuse_complex(params: Any, who: str, why: str) -> None:
    """Raises TypeError if some leaf of ``params`` is complex, giving ``why``."""
    if any(jnp.iscomplexobj(leaf) for leaf in jax.tree.leaves(params)):
        raise TypeError(
            f"{who} does not support complex params: {why}. Optimize the real and "
            "imaginary parts as separate real params (e.g. with `jnp.stack([z.real, "
            "z.imag])`), or use an optimizer that supports complex params."
        )


def _cast_like(new: Any, old: Any) -> Any:
    def cast(n, o):
        dtype = jnp.asarray(o).dtype
        # a typed PRNG key cannot be cast, only kept
        return n if getattr(n, "dtype", None) == dtype else jnp.asarray(n).astype(dtype)

    return jax.tree.map(cast, new, old)


def _signature(*trees: Any) -> tuple:
    """What must agree for leaves to share one batched call: structure, shapes, dtypes."""
    return tuple(
        (jax.tree.structure(tree), tuple((x.shape, x.dtype) for x in jax.tree.leaves(tree)))
        for tree in trees
    )


def _leaf_caller(rule: Callable, keywords: dict) -> Callable[[dict], Callable]:
    """``caller(own)(grad, slot_values, param, leaf_index)``: the rule on one leaf's
    arguments; ``leaf_index`` (the leaf's position in tree order, an int or, batched, a
    traced int32) is passed on when not None."""

    def caller(own: dict) -> Callable:
        def call(grad, slot_values, param, leaf_index=None):
            extra = {} if param is None else {"param": param}
            if leaf_index is not None:
                extra["leaf_index"] = leaf_index
            return tuple(rule(grad, *slot_values, **extra, **own, **keywords))

        return call

    return caller


def _apply_whole_leaf(
    rule: Callable,
    arguments: list,
    leaf_keywords: list,
    keywords: dict,
    batch: bool,
    indexed: bool = False,
) -> list:
    """``rule`` on each leaf's arguments; leaves with one signature share a vmapped call.

    ``arguments`` holds, per leaf, ``(grad, slot_values, param)``; ``leaf_keywords`` the
    leaf's static keywords (hashable); ``indexed``: the rule takes ``leaf_index``.
    Returns, per leaf, ``(update, *new_slot_values)`` in the input order.
    """
    results: list[Any] = [None] * len(arguments)
    groups: dict[tuple, list[int]] = {}
    for index, args in enumerate(arguments):
        own = tuple(sorted(leaf_keywords[index].items()))
        key = (_signature(*args), own) if batch else (index,)
        groups.setdefault(key, []).append(index)

    for indices in groups.values():
        call = _leaf_caller(rule, keywords)(leaf_keywords[indices[0]])
        if len(indices) == 1:
            results[indices[0]] = call(*arguments[indices[0]], indices[0] if indexed else None)
            continue
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[arguments[i] for i in indices])
        if indexed:
            stacked = (*stacked, jnp.asarray(indices, jnp.int32))
        # Keeps XLA from fusing the many-operand concatenate into the rule's loops (on
        # the CPU that multiplies compile time and slows the step).
        stacked = jax.lax.optimization_barrier(stacked)
        outputs = jax.lax.optimization_barrier(jax.vmap(call)(*stacked))
        for position, index in enumerate(indices):
            results[index] = jax.tree.map(lambda x, p=position: x[p], outputs)
    return results


def rule_transform(
    rule: Callable[..., Any],
    state_type: type,
    *,
    slots: Sequence[Slot | str] = (),
    init_slots: Callable[[jax.Array], tuple] | None = None,
    hyperparams: Mapping[str, ScalarOrSchedule] | None = None,
    decays: Sequence[str] = (),
    static: Mapping[str, Any] | None = None,
    uses_params: bool = False,
    name: str,
    flat_reason: str | None = None,
    complex_reason: str | None = None,
    batch_by_shape: bool | None = False,
    leaf_keywords: Callable[[Any], list[dict]] | None = None,
    constants: Mapping[str, Callable[[Any], Any]] | None = None,
    init_state: Callable[[Any], tuple] | None = None,
    extra_args: Sequence[str] = (),
    previous_count: bool = False,
    scalars: Mapping[str, Callable[[dict], Any]] | None = None,
    step_scalars: Callable[[dict, dict, Any], tuple[dict, dict]] | None = None,
) -> GradientTransformationExtraArgs:
    """Builds the ``(init, update)`` pair that applies ``rule`` leaf by leaf.

    Args:
      rule: ``rule(grad, *slot_values, [param=...], [count=...], **hyperparams,
        **static) -> (update, *new_slot_values)``.
      state_type: a NamedTuple with fields ``count``, one per slot, and ``hyperparams``.
      slots: the per-parameter state, in the order the rule takes and returns it:
        :class:`Slot` s for an elementwise rule, or names when ``init_slots`` is given.
      init_slots: makes the rule whole-leaf: ``init_slots(param) -> tuple`` gives each
        leaf's initial slot values, of any shape and structure.
      hyperparams: scalar hyperparameters (numbers or schedules), stored in the state.
      decays: names among ``hyperparams`` that are decay rates; the rule also receives
        ``one_minus_<name>`` computed at full precision.
      static: Python values fixed at construction (flags such as ``nesterov``).
      uses_params: the rule needs the params (passed as ``param=``); ``update`` then
        raises if called without them.
      name: the public name, used in error messages.
      flat_reason: whole-leaf rules: why the rule cannot run on a flat buffer.
      complex_reason: if given, complex params are refused at ``init`` with this reason.
      batch_by_shape: whole-leaf rules: batch the leaves of one shape and dtype into one
        vmapped call; None: batch on accelerators, not on the CPU. Measured on the CPU
        (``benchmarks/matrix_lifter.py``, 24 transformer layers): batching cuts Muon's
        compile time by a third but makes its step a third slower (stacking and
        unstacking copy every leaf, and the CPU gains nothing from fewer, larger
        kernels); for cheap rules (norms, factored means) it costs compile time too.
      leaf_keywords: whole-leaf rules: ``leaf_keywords(grads) -> [dict, ...]``, static
        (hashable) keywords for each leaf, in leaf order (e.g. which axes are a matrix's
        rows); leaves batch together only when theirs are equal.
      constants: ``{field: make(params)}``: arrays made once at ``init``, kept in the
        state field of that name and passed to the rule as keywords (e.g. a table of
        iteration coefficients).
      init_state: makes the rule whole-tree: ``init_state(params) -> tuple`` gives the
        initial slot values (any pytrees); the rule is called once with the whole
        ``grads`` tree, the slot values and (``uses_params``) ``params=`` the params tree.
      extra_args: names of ``update``'s extra keyword arguments that the rule takes
        (e.g. ``value`` for the loss); the rule gets None for one not given. ``"*"``:
        the rule gets them all as one dict, ``extra_args=`` (a wrapper passes them on to
        the transform it wraps).
      previous_count: the rule also gets ``previous_count=``, the count before this
        update (0 at the first), for a rule that acts every ``k`` steps from the first
        (``count`` saturates at the int32 maximum, so ``count - 1`` is not always it).
      scalars: ``{field: make(hyperparams)}``: scalar state outside the slots (torch's
        NAdam ``mu_product``, ASGD's ``eta`` and ``mu``), made at ``init`` from the
        hyperparameters' initial values (a dict of arrays); its dtype is ``make``'s.
      step_scalars: ``(stored, hyperparams, count) -> (keywords, new_stored)``, run once
        per step before the rule: the rule gets ``keywords``; ``new_stored`` replaces the
        stored scalars (cast to their dtypes).
    """
    specs = dict(hyperparams or {})
    validation.remember_checks(state_type, specs)
    decay_names = frozenset(decays)
    static = dict(static or {})
    wants_count = "count" in inspect.signature(rule).parameters
    # A rule that draws per-leaf random numbers (Kron's probes) takes the leaf's index
    # as data, so that leaves of one shape still batch.
    indexed = "leaf_index" in inspect.signature(rule).parameters
    whole_leaf = init_slots is not None
    whole_tree = init_state is not None
    if whole_leaf and whole_tree:
        raise ValueError(f"{name}: give `init_slots` (whole-leaf) or `init_state` (whole-tree)")
    slot_names = tuple(s if isinstance(s, str) else s.name for s in slots)
    constants = dict(constants or {})
    scalars = dict(scalars or {})

    def init(params):
        if whole_leaf:
            check_not_flat(params, name, flat_reason or "it reads whole leaves")
        check_params(params, name)
        if complex_reason is not None:
            refuse_complex(params, name, complex_reason)
        if whole_tree:
            slot_trees = dict(zip(slot_names, tuple(init_state(params)), strict=True))
        elif whole_leaf:
            leaves, treedef = jax.tree.flatten(params)
            per_leaf = [tuple(init_slots(leaf)) for leaf in leaves]
            owners = _owners.active()
            if owners is not None and slot_names:
                own = leaf_keywords(params) if leaf_keywords else [{} for _ in leaves]
                layout = _owners.plan(params, own, *owners, name)
                owned = _owners.own_slots(per_leaf, layout, len(slot_names))
                slot_trees = dict(zip(slot_names, owned, strict=True))
            else:
                slot_trees = {
                    slot: treedef.unflatten([values[i] for values in per_leaf])
                    for i, slot in enumerate(slot_names)
                }
        else:
            slot_trees = {s.name: tree_full_like(params, s.initial_value, s.dtype) for s in slots}
        hyperparams = hp.init_hyperparams(specs, decay_names, hp.storage_dtype(params))
        initial = hp.as_keywords(hyperparams)
        state = state_type(
            count=jnp.zeros([], jnp.int32),
            **slot_trees,
            **{field: make(params) for field, make in constants.items()},
            **{field: make(initial) for field, make in scalars.items()},
            hyperparams=hyperparams,
        )
        return replicate_scalars_like_params(state, params)

    def slot_leaves(treedef, state, grad_leaves):
        if not whole_leaf:
            return None
        found = {}
        for slot in slot_names:
            try:
                found[slot] = treedef.flatten_up_to(getattr(state, slot))
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"{name}: the grads do not match the optimizer state's {slot!r} tree; "
                    "pass a tree with the same structure as the params given to init "
                    f"({error})"
                ) from None
        return found

    def step_keywords(state):
        """This step's hyperparameters, the incremented count, and the rule's keywords."""
        hyperparams_now = hp.step_hyperparams(state.hyperparams, specs, decay_names, state.count)
        count = safe_increment(state.count)
        keywords = {**hp.as_keywords(hyperparams_now), **static}
        keywords.update({field: getattr(state, field) for field in constants})
        if wants_count:
            keywords["count"] = count
        if previous_count:
            keywords["previous_count"] = state.count
        stored = {field: getattr(state, field) for field in scalars}
        if step_scalars is not None:
            scalar_keywords, new_stored = step_scalars(
                stored, hp.as_keywords(hyperparams_now), count
            )
            keywords.update(scalar_keywords)
            stored = _cast_like(new_stored, stored)
        return hyperparams_now, count, keywords, stored

    def new_state(state, count, new_slots, hyperparams_now, stored):
        return state_type(
            count=count,
            **new_slots,
            **{field: getattr(state, field) for field in constants},
            **stored,
            hyperparams=hyperparams_now,
        )

    def update_tree(grads, state, params, keywords):
        """A whole-tree rule: one call on the trees; casts as for the other kinds."""
        if uses_params:
            flatten_matching(grads, "grads", params=params)
            check_params(params, name)
            keywords = {**keywords, "params": params}
        old_values = tuple(getattr(state, slot) for slot in slot_names)
        updates, *new_values = rule(grads, *old_values, **keywords)
        updates = jax.tree.map(lambda u, g: jnp.asarray(u).astype(g.dtype), updates, grads)
        return updates, {
            slot: _cast_like(new, old)
            for slot, old, new in zip(slot_names, old_values, new_values, strict=True)
        }

    extra_names = (extra_args,) if extra_args == "*" else tuple(extra_args)
    # A block of an optimizer names the optimizer the user called, then itself.
    owner = validation.constructing()
    needs_params_prefix = f"{owner}: " if owner and owner != name else ""

    def update(grads, state, params=None, **extra_args):
        if extra_names == ("*",):
            forwarded = {"extra_args": extra_args}
        else:
            forwarded = {extra: extra_args.get(extra) for extra in extra_names}
        # A tree with no leaves (e.g. everything masked out) needs no params.
        if uses_params and params is None and jax.tree.leaves(grads):
            raise ValueError(
                f"{needs_params_prefix}{name} needs the params: call "
                "`update(grads, state, params)` with the current params"
            )
        if whole_tree:
            hyperparams_now, count, keywords, stored = step_keywords(state)
            keywords.update(forwarded)
            updates, new_slots = update_tree(grads, state, params, keywords)
            return updates, new_state(state, count, new_slots, hyperparams_now, stored)
        trees = {} if whole_leaf else {s: getattr(state, s) for s in slot_names}
        with_params = uses_params and params is not None
        if with_params:
            trees["params"] = params
        treedef, grad_leaves, flat = flatten_matching(grads, "grads", **trees)
        owned = [getattr(state, slot) for slot in slot_names if whole_leaf]
        by_owner = bool(owned) and isinstance(owned[0], _owners.OwnedSlots)
        if whole_leaf and not by_owner:
            flat.update(slot_leaves(treedef, state, grad_leaves))
        if with_params:
            check_params(params, name)

        hyperparams_now, count, keywords, stored = step_keywords(state)
        keywords.update(forwarded)
        if by_owner:
            update_leaves, new_owned = _owners.apply_owned(
                _leaf_caller(rule, keywords),
                grad_leaves,
                flat["params"] if with_params else None,
                owned,
                leaf_keywords(grads) if leaf_keywords else [{} for _ in grad_leaves],
                _cast_like,
                indexed,
                name,
            )
            updates = treedef.unflatten([
                jnp.asarray(u).astype(g.dtype)
                for u, g in zip(update_leaves, grad_leaves, strict=True)
            ])
            new_slots = dict(zip(slot_names, new_owned, strict=True))
            return updates, new_state(state, count, new_slots, hyperparams_now, stored)
        arguments = [
            (
                grad,
                tuple(flat[slot][index] for slot in slot_names),
                flat["params"][index] if with_params else None,
            )
            for index, grad in enumerate(grad_leaves)
        ]
        if whole_leaf:
            own = leaf_keywords(grads) if leaf_keywords else [{} for _ in arguments]
            batch = batch_by_shape
            if batch is None:
                batch = jax.default_backend() != "cpu"
            results = _apply_whole_leaf(rule, arguments, own, keywords, batch, indexed)
        else:
            results = [
                rule(grad, *values, **({"param": param} if with_params else {}), **keywords)
                for grad, values, param in arguments
            ]

        update_leaves = []
        new_slot_leaves: list[list[Any]] = [[] for _ in slot_names]
        for (grad, old_values, _), (update, *new_values) in zip(arguments, results, strict=True):
            update_leaves.append(jnp.asarray(update).astype(grad.dtype))
            for collected, old, new in zip(new_slot_leaves, old_values, new_values, strict=True):
                collected.append(_cast_like(new, old))

        new_slots = {
            slot: treedef.unflatten(leaves)
            for slot, leaves in zip(slot_names, new_slot_leaves, strict=True)
        }
        updates = treedef.unflatten(update_leaves)
        return updates, new_state(state, count, new_slots, hyperparams_now, stored)

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))


def leafwise_transform(
    rule: Callable[..., Any],
    state_type: type,
    *,
    slots: Sequence[str] = (),
    init_slots: Callable[[jax.Array], tuple] | None = None,
    flat_reason: str,
    **options: Any,
) -> GradientTransformationExtraArgs:
    """:func:`rule_transform` for a whole-leaf rule (the name this had before 0.1)."""
    return rule_transform(
        rule,
        state_type,
        slots=slots,
        init_slots=init_slots or (lambda param: ()),
        flat_reason=flat_reason,
        **options,
    )
