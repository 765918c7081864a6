"""Hyperparameters as state for any transform factory, optax's included.

optim_fn's own transforms already keep their hyperparameters in the state. To get the
same for a transform of another library (or your own), wrap its factory::

    opt = optim_fn.inject_hyperparams(optax.lion)(learning_rate=schedule, b1=0.9)
    state = opt.init(params)
    optim_fn.get_hyperparams(state)            # {"learning_rate": ..., "b1": ..., ...}
    state = optim_fn.set_hyperparams(state, b1=0.95)   # no recompilation

Same name and keywords as :func:`optax.inject_hyperparams`. The numeric arguments are
stored in the state as a :class:`~optim_fn.core.hyperparams.Hyperparams` (float32, or the
params' dtype when wider; ints as int32), so :func:`optim_fn.get_hyperparams` and
:func:`optim_fn.set_hyperparams` work on it. Unlike optax, float hyperparameters are
never stored narrower than float32 (optax uses the params' dtype, so with bf16 params
``b2=0.999`` becomes 1.0, optax issue #1414). Callables are schedules of the step count
(0 at the first update) unless named in ``static_args``; bools, strings and ``None``
are passed through as they are.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core import hyperparams as hp
from optim_fn.core.base import (
    Array,
    GradientTransformation,
    GradientTransformationExtraArgs,
    compiled_when_eager,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.numerics import safe_increment
from optim_fn.core.validation import checks_once


class InjectHyperparamsState(NamedTuple):
    """State of a transform built by :func:`inject_hyperparams`.

    Attributes:
      count: updates so far (the step count schedules see).
      hyperparams: the numeric arguments and the latest scheduled values.
      inner_state: the wrapped transform's state.
    """

    count: Array
    hyperparams: Hyperparams
    inner_state: Any


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.number)):
        return True
    return isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) or (
        hasattr(value, "dtype") and jnp.issubdtype(value.dtype, jnp.integer)
    )


def _keep_dtypes(new_state: Any, old: InjectHyperparamsState) -> Any:
    """``new_state`` with the dtypes of the previous inner state.

    float32 hyperparameters promote a bf16 transform's moments to float32; casting back
    keeps the state's dtypes (and so the compiled step) fixed across steps.
    """
    old_state = old.inner_state
    if jax.tree.structure(new_state) != jax.tree.structure(old_state):
        return new_state
    return jax.tree.map(lambda n, o: jnp.asarray(n).astype(jnp.asarray(o).dtype),
                        new_state, old_state)


@checks_once
def inject_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformationExtraArgs]:
    """Wraps ``inner_factory`` so that its numeric arguments live in the state.

    Args:
      inner_factory: a function returning a transform (``optax.adam``, ``optax.lion``,
        ``optim_fn.clip_by_global_norm``, your own).
      static_args: names of arguments to pass through as they are, e.g. callables
        that are not schedules, or ints that set shapes (``memory_size``).
      hyperparam_dtype: dtype for float hyperparameters; default float32, or the params'
        dtype when wider.

    Returns:
      A function with ``inner_factory``'s signature, where any numeric argument may be a
      schedule, returning a :class:`optax.GradientTransformationExtraArgs`.
    """
    static_args = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    unknown = static_args - set(signature.parameters)
    if unknown:
        raise ValueError(
            f"inject_hyperparams: `static_args` {sorted(unknown)} are not parameters of "
            f"{getattr(inner_factory, '__name__', inner_factory)!r}; its parameters are "
            f"{list(signature.parameters)}"
        )

    @functools.wraps(inner_factory)
    def factory(*args: Any, **kwargs: Any) -> GradientTransformationExtraArgs:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        static, numbers, schedules = {}, {}, {}
        for name, value in bound.arguments.items():
            if name in static_args or not (callable(value) or _is_number(value)):
                static[name] = value
            elif callable(value):
                schedules[name] = value
            else:
                numbers[name] = value
        integers = {name for name, value in numbers.items() if _is_integer(value)}

        def store(name: str, value: Any, dtype: Any) -> Array:
            if name in integers:
                return jnp.asarray(value, jnp.int32)
            return jnp.asarray(value).astype(dtype)

        def build(hyperparams: Hyperparams) -> GradientTransformationExtraArgs:
            transform = inner_factory(**static, **hyperparams.values, **hyperparams.scheduled)
            if not (hasattr(transform, "init") and hasattr(transform, "update")):
                raise TypeError(
                    f"inject_hyperparams: the factory returned {transform!r}, not a transform"
                )
            return transform

        def run(hyperparams: Hyperparams):
            transform = build(hyperparams)
            if isinstance(transform, GradientTransformationExtraArgs):
                return transform.update
            return lambda u, s, p=None, **extra: transform.update(u, s, p)

        def evaluate(count: Array, dtype: Any) -> dict[str, Array]:
            return {name: store(name, s(count), dtype) for name, s in schedules.items()}

        def init(params) -> InjectHyperparamsState:
            dtype = jnp.dtype(hyperparam_dtype or hp.storage_dtype(params))
            count = jnp.zeros([], jnp.int32)
            hyperparams = Hyperparams(
                {name: store(name, v, dtype) for name, v in numbers.items()},
                evaluate(count, dtype),
                {},
            )
            return InjectHyperparamsState(count, hyperparams, build(hyperparams).init(params))

        def update(updates, state: InjectHyperparamsState, params=None, **extra_args):
            current = state.hyperparams
            scheduled = {
                name: jnp.asarray(s(state.count)).astype(current.scheduled[name].dtype)
                for name, s in schedules.items()
            }
            hyperparams = Hyperparams(current.values, scheduled, {})
            new_updates, inner_state = run(hyperparams)(
                updates, state.inner_state, params, **extra_args
            )
            return new_updates, InjectHyperparamsState(
                safe_increment(state.count), hyperparams, _keep_dtypes(inner_state, state)
            )

        return GradientTransformationExtraArgs(init, compiled_when_eager(update))

    return factory
