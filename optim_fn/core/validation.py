"""Construction-time checks of hyperparameters, with messages that name the argument.

Schedules and traced values cannot be checked when the optimizer is built; they pass.

Each argument is checked once per construction: a public constructor decorated with
:func:`checks_once` opens a scope, and inside it a check already made on the same
argument (same name, same object, same rule) by an outer constructor is skipped. So
``nadamw(learning_rate=-1)`` fails with ``nadamw``'s message, and the blocks it chains
(``adamw``, ``scale_by_learning_rate``) do not check the learning rate again.
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

_Function = TypeVar("_Function", bound=Callable[..., Any])
_CHECKED: contextvars.ContextVar[set | None] = contextvars.ContextVar(
    "optim_fn_checked", default=None
)
_CONSTRUCTING: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "optim_fn_constructing", default=None
)


def constructing() -> str | None:
    """The public constructor being called (the outermost one), for error messages."""
    return _CONSTRUCTING.get()


def checks_once(constructor: _Function) -> _Function:
    """Decorates a public constructor: within its call, each argument is checked once."""

    @functools.wraps(constructor)
    def construct(*args: Any, **kwargs: Any) -> Any:
        if _CHECKED.get() is not None:
            return constructor(*args, **kwargs)
        token = _CHECKED.set(set())
        name_token = _CONSTRUCTING.set(constructor.__name__)
        try:
            return constructor(*args, **kwargs)
        finally:
            _CONSTRUCTING.reset(name_token)
            _CHECKED.reset(token)

    return construct  # type: ignore[return-value]


def _already_checked(rule: str, name: str, value: Any, *options: Any) -> bool:
    """True if this construction checked ``value`` as ``name`` by ``rule`` before."""
    seen = _CHECKED.get()
    if seen is None:
        return False
    key = (rule, name, id(value), options)
    if key in seen:
        return True
    seen.add(key)
    return False


def _concrete(value: Any) -> float | None:
    if callable(value) or isinstance(value, jax.core.Tracer):
        return None
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything NumPy cannot read is checked elsewhere
        return None
    if array.shape != ():
        return None
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        return None
    return float(array)


def _fail(where: str, name: str, rule: str, value: Any, fix: str = "") -> None:
    raise ValueError(f"{where}: `{name}` must be {rule}, got {value!r}{fix}")


def check_scalar(where: str, name: str, value: Any) -> None:
    """A number or a schedule; not a string, an array of several values or complex."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return
    if _already_checked("scalar", name, value):
        return
    array = np.asarray(value) if not isinstance(value, str) else None
    if (
        array is None
        or array.shape != ()
        or not np.issubdtype(array.dtype, np.number)
        or np.issubdtype(array.dtype, np.complexfloating)
    ):
        _fail(where, name, "a real scalar or a schedule (a function of the step count)", value)
    if not math.isfinite(float(array)):
        _fail(where, name, "finite", value)


def check_non_negative(where: str, name: str, value: Any, fix: str = "") -> None:
    if _already_checked("non_negative", name, value):
        return
    check_scalar(where, name, value)
    number = _concrete(value)
    if number is not None and number < 0:
        _fail(where, name, ">= 0", value, fix)


def check_learning_rate(where: str, value: Any, name: str = "learning_rate") -> None:
    check_non_negative(
        where, name, value, "; the sign is applied for you (updates descend the gradient)"
    )


def check_decay(where: str, name: str, value: Any, *, allow_one: bool = False) -> None:
    """A decay rate in [0, 1) (or [0, 1] with ``allow_one``)."""
    if _already_checked("decay", name, value, allow_one):
        return
    check_scalar(where, name, value)
    number = _concrete(value)
    upper_ok = number is None or (number <= 1 if allow_one else number < 1)
    if number is not None and (number < 0 or not upper_ok):
        _fail(where, name, "in [0, 1]" if allow_one else "in [0, 1)", value)


def check_dtype(where: str, name: str, value: Any) -> None:
    if value is None or _already_checked("dtype", name, value):
        return
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        _fail(where, name, "None or a floating-point dtype", value)
        return
    if not jnp.issubdtype(dtype, jnp.inexact):
        _fail(where, name, "None or a floating-point dtype", value)
