"""Hyperparameters as data: stored in the optimizer state, readable and settable.

Every optim_fn transform keeps its scalar hyperparameters (learning rate, decay rates,
eps, weight decay, ...) as arrays in its state rather than as constants closed over by
the compiled program. Two things follow:

* changing a hyperparameter between steps does not recompile a jitted step, and
* the value used at the latest step, including what a schedule produced, can be read
  for logging.

Values are stored in float32, or float64 when the params are float64 / complex128, never
in a narrower dtype, so bf16 params do not round ``b2=0.999`` to 1.0. For a decay rate
``b`` the state also keeps ``1 - b`` computed in float64 on the host, because ``1 - b`` in
float32 loses most of its digits (``1 - float32(0.999)`` is off by 1.3e-5 relative).

The API is two functions::

    hyperparams = optim_fn.get_hyperparams(state)      # {"learning_rate": 0.001, "b1": ...}
    state = optim_fn.set_hyperparams(state, learning_rate=3e-4)

A name matches every block that has a hyperparameter of that name; when two blocks of a
chain share a name, :func:`get_hyperparams` reports them under qualified names such as
``"0.eps"`` and ``"1.eps"``, and :func:`set_hyperparams` accepts those too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core.base import Array, OptState, ScalarOrSchedule


class Hyperparams(NamedTuple):
    """The hyperparameters of one transform, as they live in its state.

    Attributes:
      values: hyperparameters given as numbers; :func:`set_hyperparams` changes them.
      scheduled: the value each schedule produced at the latest step (read-only:
        the schedule overwrites it at the next step).
      one_minus: ``1 - b`` for each decay rate ``b``, kept at full precision.
    """

    values: dict[str, Array]
    scheduled: dict[str, Array]
    one_minus: dict[str, Array]


def is_schedule(value: Any) -> bool:
    return callable(value)


def storage_dtype(params: Any) -> jnp.dtype:
    """float32, or float64 when some param is float64/complex128 (never narrower)."""
    dtype = jnp.dtype(jnp.float32)
    for leaf in jax.tree.leaves(params):
        leaf_dtype = jnp.asarray(leaf).dtype if not hasattr(leaf, "dtype") else leaf.dtype
        if jnp.issubdtype(leaf_dtype, jnp.inexact):
            real = jnp.finfo(leaf_dtype).dtype
            dtype = jnp.promote_types(dtype, real)
    return dtype


def _host_scalar(value: Any) -> np.float64 | None:
    """``value`` as a float64 host scalar, or None if it is a traced/device value."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return np.float64(value)
    if isinstance(value, np.ndarray) and value.shape == ():
        return np.float64(value)
    return None


def _as_stored(name: str, value: Any, dtype: Any, with_one_minus: bool):
    host = _host_scalar(value)
    if host is not None:
        stored = jnp.asarray(host, dtype)
        one_minus = jnp.asarray(1.0 - host, dtype) if with_one_minus else None
        return stored, one_minus
    array = jnp.asarray(value)
    if array.shape != ():
        raise ValueError(
            f"hyperparameter {name!r} must be a scalar, got an array of shape {array.shape}"
        )
    if not jnp.issubdtype(array.dtype, jnp.number):
        raise ValueError(f"hyperparameter {name!r} must be a number, got {array.dtype}")
    wide = jnp.promote_types(array.dtype, dtype)
    stored = array.astype(wide).astype(dtype)
    one_minus = (1 - array.astype(wide)).astype(dtype) if with_one_minus else None
    return stored, one_minus


def init_hyperparams(
    specs: Mapping[str, ScalarOrSchedule], decays: frozenset[str], dtype: Any
) -> Hyperparams:
    """The state entry for ``specs`` before the first step (schedules read at count 0)."""
    count = jnp.zeros([], jnp.int32)
    values, scheduled, one_minus = {}, {}, {}
    for name, spec in specs.items():
        target = scheduled if is_schedule(spec) else values
        raw = spec(count) if is_schedule(spec) else spec
        stored, complement = _as_stored(name, raw, dtype, name in decays)
        target[name] = stored
        if complement is not None:
            one_minus[name] = complement
    return Hyperparams(values, scheduled, one_minus)


def step_hyperparams(
    hyperparams: Hyperparams,
    specs: Mapping[str, ScalarOrSchedule],
    decays: frozenset[str],
    count: Array,
) -> Hyperparams:
    """Evaluates the schedules at ``count`` (0 at the first update) for this step."""
    if not hyperparams.scheduled:
        return hyperparams
    scheduled = dict(hyperparams.scheduled)
    one_minus = dict(hyperparams.one_minus)
    for name, spec in specs.items():
        if is_schedule(spec):
            dtype = hyperparams.scheduled[name].dtype
            stored, complement = _as_stored(name, spec(count), dtype, name in decays)
            scheduled[name] = stored
            if complement is not None:
                one_minus[name] = complement
    return Hyperparams(hyperparams.values, scheduled, one_minus)


def as_keywords(hyperparams: Hyperparams) -> dict[str, Array]:
    """The keyword arguments a rule receives: each value and ``one_minus_<decay>``."""
    keywords = {**hyperparams.values, **hyperparams.scheduled}
    keywords.update({f"one_minus_{name}": v for name, v in hyperparams.one_minus.items()})
    return keywords


# ----------------------------------------------------------------------------------------
# Reading and setting hyperparameters anywhere in a (possibly nested) optimizer state.


class _Found(NamedTuple):
    path: tuple[str, ...]
    name: str
    value: Array
    settable: bool


def _walk(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yields (path, holder) for every hyperparameter holder in ``node``."""
    if isinstance(node, Hyperparams):
        yield path, node
        return
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        for field in node._fields:
            child = getattr(node, field)
            if field == "hyperparams" and isinstance(child, dict):
                # optax.inject_hyperparams keeps a plain dict under this name.
                yield path, child
            elif field == "hyperparams":
                yield from _walk(child, path)
            else:
                yield from _walk(child, path + (field,))
    elif isinstance(node, (tuple, list)):
        for index, child in enumerate(node):
            yield from _walk(child, path + (str(index),))
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from _walk(child, path + (str(key),))


def _found(state: OptState) -> list[_Found]:
    found = []
    for path, holder in _walk(state, ()):
        if isinstance(holder, Hyperparams):
            found += [_Found(path, k, v, True) for k, v in holder.values.items()]
            found += [_Found(path, k, v, False) for k, v in holder.scheduled.items()]
        else:
            found += [
                _Found(path, k, v, True)
                for k, v in holder.items()
                if not callable(v)
            ]
    return found


def _public_names(found: list[_Found]) -> list[str]:
    counts: dict[str, int] = {}
    for item in found:
        counts[item.name] = counts.get(item.name, 0) + 1
    return [
        item.name if counts[item.name] == 1 else ".".join(item.path + (item.name,))
        for item in found
    ]


def get_hyperparams(state: OptState) -> dict[str, Array]:
    """Every hyperparameter in ``state`` with the value used at the latest step.

    Names are bare (``"learning_rate"``) when unique in the state, and qualified by the
    block's position (``"0.eps"``) when several blocks share a name. Scheduled values are
    included: they are what the schedule produced for the latest update.
    """
    found = _found(state)
    return {name: item.value for name, item in zip(_public_names(found), found, strict=True)}


def set_hyperparams(state: OptState, **new_values: Any) -> OptState:
    """Returns ``state`` with hyperparameters replaced; shapes and dtypes are kept.

    Works inside or outside ``jax.jit``, and never triggers a recompile of a jitted
    step (the new values are data of the same dtype and shape). A bare name sets every
    block with that hyperparameter; a qualified name (``"1.eps"``) sets one block.

    Raises:
      KeyError: a name that no block in ``state`` has (the message lists valid names).
      ValueError: a name whose value a schedule produces (it would be overwritten at the
        next step: pass a different schedule at construction instead).
    """
    found = _found(state)
    names = _public_names(found)
    targets: dict[tuple[tuple[str, ...], str], Any] = {}
    for key, value in new_values.items():
        matches = [
            item
            for item, public in zip(found, names, strict=True)
            if key in (item.name, public, ".".join(item.path + (item.name,)))
        ]
        if not matches:
            raise KeyError(
                f"no hyperparameter named {key!r} in this optimizer state; "
                f"valid names: {sorted(set(names))}"
            )
        for item in matches:
            if not item.settable:
                raise ValueError(
                    f"hyperparameter {key!r} follows a schedule, so a value set here would "
                    "be overwritten at the next step; give the optimizer a different "
                    "schedule (or a number) at construction instead"
                )
            targets[(item.path, item.name)] = value
    return _replace(state, (), targets)


def _replace(node: Any, path: tuple[str, ...], targets: dict) -> Any:
    if isinstance(node, Hyperparams):
        values, one_minus = dict(node.values), dict(node.one_minus)
        for name in node.values:
            if (path, name) in targets:
                stored, complement = _as_stored(
                    name, targets[(path, name)], node.values[name].dtype, name in one_minus
                )
                values[name] = stored
                if complement is not None:
                    one_minus[name] = complement
        return Hyperparams(values, node.scheduled, one_minus)
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        fields = {}
        for field in node._fields:
            child = getattr(node, field)
            if field == "hyperparams" and isinstance(child, dict):
                fields[field] = {
                    k: _replace_plain(v, targets.get((path, k))) for k, v in child.items()
                }
            elif field == "hyperparams":
                fields[field] = _replace(child, path, targets)
            else:
                fields[field] = _replace(child, path + (field,), targets)
        return type(node)(**fields)
    if isinstance(node, (tuple, list)):
        return type(node)(
            _replace(child, path + (str(i),), targets) for i, child in enumerate(node)
        )
    if isinstance(node, dict):
        return {k: _replace(v, path + (str(k),), targets) for k, v in node.items()}
    return node


def _replace_plain(old: Any, new: Any) -> Any:
    if new is None:
        return old
    old_array = jnp.asarray(old)
    return jnp.asarray(new, old_array.dtype).reshape(old_array.shape)


HyperparamSpecs = Mapping[str, ScalarOrSchedule]
ScheduleFn = Callable[[Array], Array]
