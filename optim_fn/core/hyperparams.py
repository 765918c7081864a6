"""Hyperparameters as data: stored in the optimizer state, readable and settable.

Every optim_fn transform keeps its scalar hyperparameters (learning rate, decay rates,
eps, weight decay, ...) as arrays in its state rather than as constants closed over by
the compiled program. Two things follow:

* changing a hyperparameter between steps does not recompile a jitted step, and
* the value used at the latest step, including what a schedule produced, can be read
  for logging.

The API is two functions::

    hyperparams = optim_fn.get_hyperparams(state)      # {"learning_rate": 0.001, "b1": ...}
    state = optim_fn.set_hyperparams(state, learning_rate=3e-4)

**Names.** A hyperparameter is named by its block's keyword (``learning_rate``, ``b1``,
``eps``; torch's names in :mod:`optim_fn.torch`: ``lr``). A name that one block has is
reported bare. When several blocks share a name, each is qualified by the shortest of:

1. its group's label in a partition (``"muon.learning_rate"``, ``"adam.learning_rate"``;
   ``"0.lr"``, ``"1.lr"`` for torch's param groups),
2. the positions in the chains that lead to it as well (``"0.eps"``, ``"1.eps"`` for the
   first and second block of a chain),
3. the whole path through the state (``"inner_states.0.lr"``),

that tells it apart. :func:`set_hyperparams` takes the names :func:`get_hyperparams`
reports, any longer form of them, and a bare name shared by several blocks, which sets
them all. Read-only entries: what a schedule produced (wrap the schedule in
:func:`with_multiplier` to scale it at run time through ``<name>_multiplier``) and step
sizes an optimizer derives from its state (``effective_learning_rate`` of Prodigy,
D-Adaptation, DoG and DoWG).

flax nnx states (``nnx.Optimizer.opt_state``) work as they are: values come back as
arrays, and ``opt.opt_state = set_hyperparams(opt.opt_state, ...)`` keeps nnx's boxes,
so an ``nnx.jit`` step does not trace again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp

from optim_fn.core._hyperparam_values import (
    MULTIPLIER_SUFFIX,
    Hyperparams,
    HyperparamSpecs,
    ScheduleFn,
    WithMultiplier,
    _as_stored,
    as_keywords,
    init_hyperparams,
    is_schedule,
    step_hyperparams,
    storage_dtype,
    with_multiplier,
)
from optim_fn.core.base import Array, OptState
from optim_fn.core.validation import check_set_value

__all__ = [
    "HyperparamSpecs",
    "Hyperparams",
    "ReadOnlyHyperparameterError",
    "ScheduleFn",
    "WithMultiplier",
    "as_keywords",
    "get_hyperparams",
    "init_hyperparams",
    "is_schedule",
    "set_hyperparams",
    "step_hyperparams",
    "storage_dtype",
    "with_multiplier",
]

_FIELD, _INDEX, _KEY = "field", "index", "key"
_SCHEDULED = "scheduled"
_DERIVED = "derived"


class ReadOnlyHyperparameterError(ValueError):
    """``set_hyperparams`` on a value a schedule produces or the optimizer derives."""


class _Derived(dict):
    """Step sizes a state derives (``derived_hyperparams()``): readable, never settable."""


class _Found(NamedTuple):
    path: tuple[tuple[str, str], ...]  # (kind, text): a NamedTuple field, a position, a key
    name: str
    value: Array
    read_only: str | None  # None, _SCHEDULED or _DERIVED
    owner: type | None  # the state NamedTuple that holds it (its checks, its mirrors)
    hidden: bool  # mirrors a block below it: set with it, never reported


def _is_box(x: Any) -> bool:
    """A flax nnx Variable (``OptArray``, ``Param``...), without importing flax."""
    return any(
        c.__name__ == "Variable" and c.__module__.startswith("flax.")
        for c in type(x).__mro__
    )


def _unbox(x: Any) -> Any:
    if not _is_box(x):
        return x
    return x.get_value() if hasattr(x, "get_value") else x.value


def _is_named_tuple(node: Any) -> bool:
    return isinstance(node, tuple) and hasattr(node, "_fields")


def _walk(node: Any, path: tuple, owner: type | None) -> Iterator[tuple[tuple, Any, Any]]:
    """Yields (path, holder, owner) for every hyperparameter holder in ``node``."""
    if isinstance(node, Hyperparams):
        yield path, node, owner
    elif _is_named_tuple(node):
        for field in node._fields:
            child = getattr(node, field)
            if field == "hyperparams" and isinstance(child, Mapping):
                # optax.inject_hyperparams keeps a plain dict under this name.
                yield path, child, type(node)
            elif field == "hyperparams":
                yield from _walk(child, path, type(node))
            else:
                yield from _walk(child, path + ((_FIELD, field),), type(node))
        derived = getattr(type(node), "derived_hyperparams", None)
        if derived is not None:
            yield path, _Derived(derived(node)), type(node)
    elif isinstance(node, (tuple, list)):
        for index, child in enumerate(node):
            yield from _walk(child, path + ((_INDEX, str(index)),), owner)
    elif isinstance(node, Mapping):
        for key, child in node.items():
            yield from _walk(child, path + ((_KEY, str(key)),), owner)


def _found(state: OptState) -> list[_Found]:
    found = []
    for path, holder, owner in _walk(state, (), None):
        mirrors = getattr(owner, "mirrored_hyperparams", ())
        if isinstance(holder, Hyperparams):
            entries = [(k, v, None) for k, v in holder.values.items()]
            entries += [(k, v, _SCHEDULED) for k, v in holder.scheduled.items()]
        elif isinstance(holder, _Derived):
            entries = [(k, v, _DERIVED) for k, v in holder.items()]
        else:
            entries = [(k, v, None) for k, v in holder.items() if not callable(v)]
        found += [
            _Found(path, k, v, read_only, owner, k in mirrors) for k, v, read_only in entries
        ]
    # Copies below a wrapper that refreshes them (inject_hyperparams) are hidden too.
    for outer in [item for item in found if getattr(item.owner, "shadows_inner_hyperparams", 0)]:
        for i, item in enumerate(found):
            if (
                item.name == outer.name
                and len(item.path) > len(outer.path)
                and item.path[: len(outer.path)] == outer.path
            ):
                found[i] = item._replace(hidden=True)
    return found


def _forms(item: _Found) -> list[str]:
    """The item's names from shortest to longest (the scheme in the module docstring)."""
    keys = [text for kind, text in item.path if kind == _KEY]
    positions = [text for kind, text in item.path if kind != _FIELD]
    everything = [text for _, text in item.path]
    return [".".join(parts + [item.name]) for parts in ([], keys, positions, everything)]


def _public_names(found: list[_Found]) -> dict[int, str]:
    """The reported name of each visible item, by its index in ``found``."""
    visible = [i for i, item in enumerate(found) if not item.hidden]
    by_name: dict[str, list[int]] = {}
    for i in visible:
        by_name.setdefault(found[i].name, []).append(i)
    names = {}
    for group in by_name.values():
        forms = {i: _forms(found[i]) for i in group}
        for i in group:
            others = [j for j in group if j != i]
            level = next(
                (lv for lv in range(4) if all(forms[i][lv] != forms[j][lv] for j in others)),
                3,
            )
            names[i] = forms[i][level]
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    for i, name in names.items():
        if counts[name] > 1:  # two blocks at one path (should not happen): number them
            names[i] = f"{_forms(found[i])[3]}#{i}"
    return names


def _state_of(state: Any, where: str) -> Any:
    if _is_named_tuple(state) or isinstance(state, (tuple, list, Mapping)):
        return state
    if hasattr(state, "opt_state"):  # nnx.Optimizer
        if where == "set_hyperparams":
            raise TypeError(
                "set_hyperparams: got an optimizer object; pass its state and assign the "
                "result back: `opt.opt_state = optim_fn.set_hyperparams(opt.opt_state, ...)`"
            )
        return state.opt_state
    raise TypeError(
        f"{where}: expected the optimizer state that `init(params)` returned, got "
        f"{type(state).__name__}"
    )


def _check_is_state(state: Any, where: str) -> None:
    """An empty result is right for a state without hyperparameters, not for params."""
    types = []

    def collect(node):
        node = _unbox(node)
        if _is_named_tuple(node):
            types.append(type(node))
            for child in node:
                collect(child)
        elif isinstance(node, (tuple, list)):
            for child in node:
                collect(child)
        elif isinstance(node, Mapping):
            for child in node.values():
                collect(child)

    collect(state)
    if not types:
        raise TypeError(
            f"{where}: this is not an optimizer state (no state of any block in it: params "
            "or gradients?); pass the state that `init(params)` returned"
        )
    if all(t.__module__.startswith("optax.") for t in types):
        raise TypeError(
            f"{where}: this optax state keeps no hyperparameters as data; build the "
            "optimizer with optim_fn, or wrap it in optax.inject_hyperparams"
        )


def get_hyperparams(state: OptState) -> dict[str, Array]:
    """Every hyperparameter in ``state`` with the value used at the latest step.

    Names follow the scheme of :mod:`optim_fn.core.hyperparams`: bare when one block has
    the name, else qualified by the group label (``"muon.learning_rate"``) or chain
    position (``"0.eps"``). Scheduled values are what the schedule produced for the latest
    update. An ``nnx.Optimizer`` or its ``opt_state`` may be passed; values are arrays.

    Raises:
      TypeError: ``state`` is not an optimizer state (params, an optax state without
        hyperparameters, a string).
    """
    state = _state_of(state, "get_hyperparams")
    found = _found(state)
    if not found:
        _check_is_state(state, "get_hyperparams")
    names = _public_names(found)
    return {names[i]: _unbox(found[i].value) for i in sorted(names)}


def _targets(found: list[_Found], names: dict[int, str], key: str) -> list[int]:
    exact = [i for i, name in names.items() if name == key]
    if exact:
        chosen = exact
    else:
        chosen = [i for i, item in enumerate(found) if item.name == key and not item.hidden]
        chosen = chosen or [
            i for i, item in enumerate(found) if not item.hidden and key in _forms(item)[1:]
        ]
    # Hidden copies of a chosen value, above it (schedule-free's copy of its base's
    # learning rate) or below it (the blocks inside inject_hyperparams).
    mirrors = [
        j
        for j, item in enumerate(found)
        if item.hidden
        and any(found[i].name == item.name and _nested(found[i].path, item.path) for i in chosen)
    ]
    return chosen + mirrors


def _nested(path: tuple, other: tuple) -> bool:
    shorter = min(len(path), len(other))
    return path[:shorter] == other[:shorter]


def set_hyperparams(state: OptState, **new_values: Any) -> OptState:
    """Returns ``state`` with hyperparameters replaced; shapes, dtypes and boxes are kept.

    Works inside or outside ``jax.jit``, and never triggers a recompile of a jitted
    step (the new values are data of the same dtype and shape). Takes the names
    :func:`get_hyperparams` reports (or longer forms of them); a bare name shared by
    several blocks sets them all. Each value is checked as the constructor checks it.

    Raises:
      KeyError: a name that no block in ``state`` has (the message lists valid names).
      ValueError: a value the constructor would refuse (``b1=1.5``), a name whose value a
        schedule produces (use :func:`with_multiplier`) or that the state derives.
      TypeError: a string, an array or a schedule as the value, or not a state.
    """
    state = _state_of(state, "set_hyperparams")
    found = _found(state)
    if not found:
        _check_is_state(state, "set_hyperparams")
    names = _public_names(found)
    targets: dict[tuple[tuple, str], Any] = {}
    for key, value in new_values.items():
        chosen = _targets(found, names, key)
        if not chosen:
            raise KeyError(
                f"set_hyperparams: no hyperparameter named {key!r} in this optimizer state; "
                f"valid names: {sorted(names.values())}"
            )
        for i in chosen:
            item = found[i]
            if item.read_only == _SCHEDULED:
                raise ReadOnlyHyperparameterError(
                    f"set_hyperparams: {key!r} follows a schedule, so a value set here "
                    "would be overwritten at the next step; wrap the schedule in "
                    "optim_fn.with_multiplier(...) at construction and set "
                    f"`{item.name}{MULTIPLIER_SUFFIX}` instead"
                )
            if item.read_only == _DERIVED:
                raise ReadOnlyHyperparameterError(
                    f"set_hyperparams: {key!r} is derived by the optimizer from its state "
                    "at every step (read-only); set the hyperparameters it is made of"
                )
            check_set_value(item.owner, item.name, key, value)
            targets[(item.path, item.name)] = value
    return _replace(state, (), targets)


def _stored_like(old: Any, name: str, value: Any, with_one_minus: bool):
    raw = jnp.asarray(_unbox(old))  # a Python number in a hand-written optax state too
    stored, complement = _as_stored(name, value, raw.dtype, with_one_minus)
    if _is_box(old):
        return old.replace(stored), complement
    return stored, complement


def _replace(node: Any, path: tuple, targets: dict) -> Any:
    if not any(target_path[: len(path)] == path for target_path, _ in targets):
        return node
    if isinstance(node, Hyperparams):
        values, one_minus = dict(node.values), dict(node.one_minus)
        for name in node.values:
            if (path, name) in targets:
                values[name], complement = _stored_like(
                    node.values[name], name, targets[(path, name)], name in one_minus
                )
                if complement is not None:
                    old = one_minus[name]
                    one_minus[name] = old.replace(complement) if _is_box(old) else complement
        return Hyperparams(values, node.scheduled, one_minus)
    if _is_named_tuple(node):
        fields = {}
        for field in node._fields:
            child = getattr(node, field)
            if field == "hyperparams" and isinstance(child, Mapping):
                fields[field] = type(child)(
                    {
                        k: v if (path, k) not in targets
                        else _stored_like(v, k, targets[(path, k)], False)[0]
                        for k, v in child.items()
                    }
                )
            elif field == "hyperparams":
                fields[field] = _replace(child, path, targets)
            else:
                fields[field] = _replace(child, path + ((_FIELD, field),), targets)
        return type(node)(**fields)
    if isinstance(node, (tuple, list)):
        return type(node)(
            _replace(child, path + ((_INDEX, str(i)),), targets) for i, child in enumerate(node)
        )
    if isinstance(node, Mapping):
        return type(node)(
            {k: _replace(v, path + ((_KEY, str(k)),), targets) for k, v in node.items()}
        )
    return node

