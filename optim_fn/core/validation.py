"""Construction-time checks of hyperparameters, with messages that name the argument.

Schedules and traced values cannot be checked when the optimizer is built; they pass.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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
    check_scalar(where, name, value)
    number = _concrete(value)
    upper_ok = number is None or (number <= 1 if allow_one else number < 1)
    if number is not None and (number < 0 or not upper_ok):
        _fail(where, name, "in [0, 1]" if allow_one else "in [0, 1)", value)


def check_dtype(where: str, name: str, value: Any) -> None:
    if value is None:
        return
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        _fail(where, name, "None or a floating-point dtype", value)
        return
    if not jnp.issubdtype(dtype, jnp.inexact):
        _fail(where, name, "None or a floating-point dtype", value)
