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
# The checks a construction made, by argument name, so that `set_hyperparams` can make
# the same checks later (the rule and its options; never the value).
_RECORDED: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "optim_fn_recorded_checks", default=None
)
# (state type, hyperparameter name) -> the checks its constructors made.
_SET_CHECKS: dict[tuple[type, str], set[tuple]] = {}


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
        recorded_token = _RECORDED.set({})
        try:
            return constructor(*args, **kwargs)
        finally:
            _RECORDED.reset(recorded_token)
            _CONSTRUCTING.reset(name_token)
            _CHECKED.reset(token)

    return construct  # type: ignore[return-value]


def _already_checked(rule: str, name: str, value: Any, *options: Any) -> bool:
    """True if this construction checked ``value`` as ``name`` by ``rule`` before."""
    recorded = _RECORDED.get()
    if recorded is not None:
        recorded.setdefault(name, set()).add((rule, options))
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


def _looks_like_params(value: Any) -> bool:
    """A container of arrays or a multi-element array: the torch habit ``Adam(params, lr)``."""
    if isinstance(value, (list, tuple, dict)):
        return len(value) > 0
    return hasattr(value, "shape") and hasattr(value, "dtype") and np.ndim(value) > 0


def _summary(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of {len(value)} entries"
    return f"an array of shape {tuple(np.shape(value))}"


def check_scalar(
    where: str,
    name: str,
    value: Any,
    kind: str = "a real scalar or a schedule (a function of the step count)",
) -> None:
    """A number or a schedule; not a string, an array of several values or complex."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return
    if _already_checked("scalar", name, value):
        return
    if _looks_like_params(value):
        builder = constructing() or where
        raise ValueError(
            f"{where}: `{name}` must be {kind}, got {_summary(value)}: params? An optimizer "
            "is built from its hyperparameters alone and meets the params later: "
            f"`opt = optim_fn.{builder}(...)` without the params, then "
            "`state = opt.init(params)` and, each step, "
            "`updates, state = opt.update(grads, state, params)`"
        )
    array = np.asarray(value) if not isinstance(value, str) else None
    if (
        array is None
        or array.shape != ()
        or not np.issubdtype(array.dtype, np.number)
        or np.issubdtype(array.dtype, np.complexfloating)
    ):
        _fail(where, name, kind, value)
    if not math.isfinite(float(array)):
        _fail(where, name, "finite", value)


def check_non_negative(where: str, name: str, value: Any, fix: str = "") -> None:
    if _already_checked("non_negative", name, value, fix):
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


def check_int(where: str, name: str, value: Any, minimum: int, allow_inf: bool = False) -> None:
    """A Python integer ``>= minimum`` (a count, a period, a dimension); ``math.inf`` too
    with ``allow_inf``."""
    if allow_inf and isinstance(value, float) and math.isinf(value) and value > 0:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        also = " or math.inf" if allow_inf else ""
        raise ValueError(f"{where}: `{name}` must be an integer >= {minimum}{also}, got {value!r}")


def check_flag(where: str, name: str, value: Any) -> None:
    """``True`` or ``False``, not a truthy stand-in."""
    if not isinstance(value, bool):
        raise ValueError(f"{where}: `{name}` must be True or False, got {value!r}")


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


# ----------------------------------------------------------------------------------------
# The same checks when a hyperparameter is set at run time.


def remember_checks(state_type: type, names: Any) -> None:
    """Keeps the checks this construction made on ``names`` for ``set_hyperparams``.

    Called by the blocks that store hyperparameters (the lifter), inside the public
    constructor's scope: the constructor checked its arguments under the names the block
    stores them by, so a later ``set_hyperparams(state, b1=1.5)`` fails as ``adam(b1=1.5)``
    does.
    """
    recorded = _RECORDED.get()
    if not recorded:
        return
    for name in names:
        if name in recorded:
            _SET_CHECKS.setdefault((state_type, name), set()).update(recorded[name])


def check_set_value(state_type: type | None, name: str, key: str, value: Any) -> None:
    """The checks the constructor made on ``name``, applied to ``value`` set as ``key``."""
    where = "set_hyperparams"
    if callable(value):
        raise TypeError(
            f"{where}: `{key}` got a schedule; schedules are fixed at construction. Give the "
            "optimizer the schedule wrapped in optim_fn.schedules.with_multiplier(...) and "
            f"set `{name}_multiplier` at run time to scale it"
        )
    check_scalar(where, key, value, "a real scalar (a number or a 0-d array)")
    for rule, options in sorted(_SET_CHECKS.get((state_type, name), ()), key=repr):
        if rule == "decay":
            check_decay(where, key, value, allow_one=options[0])
        elif rule == "non_negative":
            check_non_negative(where, key, value, options[0])
