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
:func:`optim_fn.set_hyperparams` work on it, and it also reads and assigns like optax's
dict (``state.hyperparams["b1"] = 0.95``, see :class:`InjectedHyperparams`). An optim_fn
transform inside keeps its hyperparameters in its own state: at every step they are
replaced by the injected values, so a schedule reaches it (as it reaches optax's).
Unlike optax, float hyperparameters are never stored narrower than float32 (optax uses
the params' dtype, so with bf16 params ``b2=0.999`` becomes 1.0, optax issue #1414).
Callables are schedules of the step count (0 at the first update) unless named in
``static_args``; bools, strings, ``None`` and PRNG keys are passed through as they are.
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


class InjectedHyperparams(Hyperparams):
    """:class:`~optim_fn.core.hyperparams.Hyperparams` that also read like optax's dict.

    ``state.hyperparams["learning_rate"]`` reads the value used at the latest step,
    ``state.hyperparams["b2"] = 0.95`` sets a number for the next steps (as in optax, a
    scheduled one is overwritten by its schedule), and ``in``, ``keys()``, ``items()``
    and ``get()`` work as on a dict. (``.values`` is the field of the numbers given as
    numbers, not a method.) In the state it is the same tree as ``Hyperparams``, so
    checkpoints written before it existed restore into it.
    """

    __slots__ = ()

    def _holder(self, name: str) -> dict:
        for holder in (self.values, self.scheduled):
            if name in holder:
                return holder
        raise KeyError(f"no hyperparameter {name!r}; these are: {list(self.keys())}")

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._holder(key)[key]
        return super().__getitem__(key)

    def __setitem__(self, name: str, value: Any) -> None:
        holder = self._holder(name)
        # Same dtype as before, so a jitted step does not trace again.
        holder[name] = jnp.asarray(value, jnp.asarray(holder[name]).dtype)

    def __contains__(self, name: object) -> bool:
        return name in self.values or name in self.scheduled

    def keys(self):
        return {**self.values, **self.scheduled}.keys()

    def items(self):
        return {**self.values, **self.scheduled}.items()

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default


class _InjectHyperparamsFields(NamedTuple):
    count: Array
    hyperparams: InjectedHyperparams
    inner_state: Any


class InjectHyperparamsState(_InjectHyperparamsFields):
    """State of a transform built by :func:`inject_hyperparams`.

    Attributes:
      count: updates so far (the step count schedules see).
      hyperparams: the numeric arguments and the latest scheduled values; reads and
        assigns like optax's dict (``state.hyperparams["learning_rate"]``, see
        :class:`InjectedHyperparams`).
      inner_state: the wrapped transform's state.
    """

    __slots__ = ()
    # The wrapped optim_fn blocks keep copies of the injected values, refreshed at every
    # step: get_hyperparams reports each value once, and setting it sets the copies too.
    shadows_inner_hyperparams = True

    def __new__(cls, count: Any, hyperparams: Any, inner_state: Any):
        # Whoever rebuilds the state (jax's unflatten, set_hyperparams, a checkpoint
        # restore) may hand back plain Hyperparams: keep the dict-like reading.
        if isinstance(hyperparams, Hyperparams) and not isinstance(
            hyperparams, InjectedHyperparams
        ):
            hyperparams = InjectedHyperparams(*hyperparams)
        return super().__new__(cls, count, hyperparams, inner_state)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.number)):
        return True
    # A typed PRNG key is data, not a number: it is passed through as it is.
    return (
        isinstance(value, (np.ndarray, jax.Array))
        and np.ndim(value) == 0
        and jnp.issubdtype(value.dtype, jnp.number)
    )


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

    def cast(new: Any, old: Any) -> Any:
        old_dtype = jnp.asarray(old).dtype
        if not jnp.issubdtype(old_dtype, jnp.number):  # keys, bools: as they are
            return new
        return jnp.asarray(new).astype(old_dtype)

    return jax.tree.map(cast, new_state, old_state)


def _float_like(updates: Any) -> Any:
    """``updates`` with integer leaves as float32: a stand-in for params at ``init``
    (which refuses integer params) when ``update`` is called without params."""
    return jax.tree.map(
        lambda u: u if jnp.issubdtype(jnp.asarray(u).dtype, jnp.inexact)
        else jnp.asarray(u, jnp.float32),
        updates,
    )


def _is_holder(node: Any) -> bool:
    return isinstance(node, Hyperparams)


def _with_hyperparams_of(inner_state: Any, fresh_state: Any) -> Any:
    """``inner_state`` with each of its ``Hyperparams`` taken from ``fresh_state``.

    optim_fn's transforms read their hyperparameters from their state, not from the
    arguments they were built with; ``fresh_state`` (the inner ``init`` with this step's
    values) holds them, under whatever names the inner transform stores them.
    """
    if jax.tree.structure(inner_state, is_leaf=_is_holder) != jax.tree.structure(
        fresh_state, is_leaf=_is_holder
    ):
        raise ValueError(
            "inject_hyperparams: the wrapped transform's state changed its structure "
            "since init, so its hyperparameters cannot be replaced at each step; wrap a "
            "transform whose state keeps its structure"
        )

    def take(old: Any, new: Any) -> Any:
        if not _is_holder(old):
            return old
        return jax.tree.map(lambda n, o: jnp.asarray(n).astype(o.dtype), new, old)

    return jax.tree.map(take, inner_state, fresh_state, is_leaf=_is_holder)


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

        def run(transform: GradientTransformation):
            if isinstance(transform, GradientTransformationExtraArgs):
                return transform.update
            return lambda u, s, p=None, **extra: transform.update(u, s, p)

        def evaluate(count: Array, dtype: Any) -> dict[str, Array]:
            return {name: store(name, s(count), dtype) for name, s in schedules.items()}

        def init(params) -> InjectHyperparamsState:
            dtype = jnp.dtype(hyperparam_dtype or hp.storage_dtype(params))
            count = jnp.zeros([], jnp.int32)
            hyperparams = InjectedHyperparams(
                {name: store(name, v, dtype) for name, v in numbers.items()},
                evaluate(count, dtype),
                {},
            )
            return InjectHyperparamsState(count, hyperparams, build(hyperparams).init(params))

        def update(updates, state: InjectHyperparamsState, params=None, **extra_args):
            current = state.hyperparams
            # A number put in the state as a Python float or int is stored like the
            # ones init stored; schedules are read at this step's count.
            values = {
                name: v if hasattr(v, "dtype") else store(name, v, hyperparam_dtype or jnp.float32)
                for name, v in current.values.items()
            }
            scheduled = {
                name: jnp.asarray(s(state.count)).astype(jnp.asarray(current.scheduled[name]).dtype)
                for name, s in schedules.items()
            }
            hyperparams = InjectedHyperparams(values, scheduled, {})
            transform = build(hyperparams)
            inner_state = state.inner_state
            if any(_is_holder(node) for node in jax.tree.leaves(inner_state, is_leaf=_is_holder)):
                fresh = transform.init(params if params is not None else _float_like(updates))
                inner_state = _with_hyperparams_of(inner_state, fresh)
            new_updates, inner_state = run(transform)(updates, inner_state, params, **extra_args)
            return new_updates, InjectHyperparamsState(
                safe_increment(state.count), hyperparams, _keep_dtypes(inner_state, state)
            )

        return GradientTransformationExtraArgs(init, compiled_when_eager(update))

    return factory
