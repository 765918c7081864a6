"""How hyperparameters are stored in a state: :class:`Hyperparams` and its updates.

Values are stored in float32, or float64 when the params are float64 / complex128, never
in a narrower dtype, so bf16 params do not round ``b2=0.999`` to 1.0. For a decay rate
``b`` the state also keeps ``1 - b`` computed in float64 on the host, because ``1 - b`` in
float32 loses most of its digits (``1 - float32(0.999)`` is off by 1.3e-5 relative).

A schedule wrapped in :func:`with_multiplier` also stores ``<name>_multiplier``, a number
that scales what the schedule produces and that ``set_hyperparams`` can change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core.base import Array, ScalarOrSchedule

MULTIPLIER_SUFFIX = "_multiplier"


class WithMultiplier(NamedTuple):
    """A schedule scaled by a multiplier kept in the state (see :func:`with_multiplier`)."""

    schedule: Callable[[Array], Array]
    multiplier: float

    def __call__(self, count: Array) -> Array:
        return self.schedule(count) * self.multiplier


def with_multiplier(schedule: Callable[[Array], Array], multiplier: float = 1.0) -> WithMultiplier:
    """Marks ``schedule`` as scalable at run time without recompiling.

    The block that receives it stores ``<name>_multiplier`` beside the scheduled value
    and uses ``schedule(count) * multiplier``; ``set_hyperparams(state,
    learning_rate_multiplier=0.5)`` halves every later step of the schedule::

        opt = optim_fn.adamw(optim_fn.with_multiplier(optim_fn.cosine_decay_schedule(1e-3, 1000)))
        state = optim_fn.set_hyperparams(opt.init(params), learning_rate_multiplier=0.5)
    """
    if not callable(schedule):
        raise TypeError(
            "with_multiplier: `schedule` must be a schedule (a function of the step count), "
            f"got {schedule!r}; a number is already settable with set_hyperparams"
        )
    if isinstance(schedule, WithMultiplier):
        return WithMultiplier(schedule.schedule, schedule.multiplier * multiplier)
    return WithMultiplier(schedule, multiplier)


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
    if host is not None and jnp.issubdtype(dtype, jnp.integer) and host != int(host):
        raise ValueError(f"hyperparameter {name!r} is an integer; got {value!r}")
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
    if jnp.issubdtype(dtype, jnp.integer) and not jnp.issubdtype(array.dtype, jnp.integer):
        raise ValueError(
            f"hyperparameter {name!r} is an integer; got {value!r} of dtype {array.dtype}"
        )
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
        if isinstance(spec, WithMultiplier):
            values[name + MULTIPLIER_SUFFIX], _ = _as_stored(
                name + MULTIPLIER_SUFFIX, spec.multiplier, dtype, False
            )
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
            value = spec(count)
            if isinstance(spec, WithMultiplier):
                value = spec.schedule(count) * hyperparams.values[name + MULTIPLIER_SUFFIX]
            stored, complement = _as_stored(name, value, dtype, name in decays)
            scheduled[name] = stored
            if complement is not None:
                one_minus[name] = complement
    return Hyperparams(hyperparams.values, scheduled, one_minus)


def as_keywords(hyperparams: Hyperparams) -> dict[str, Array]:
    """The keyword arguments a rule receives: each value and ``one_minus_<decay>``."""
    keywords = {**hyperparams.values, **hyperparams.scheduled}
    for name in hyperparams.scheduled:
        keywords.pop(name + MULTIPLIER_SUFFIX, None)
    keywords.update({f"one_minus_{name}": v for name, v in hyperparams.one_minus.items()})
    return keywords


HyperparamSpecs = Mapping[str, ScalarOrSchedule]
ScheduleFn = Callable[[Array], Array]
