"""Construction-time checks with PyTorch's messages, naming the argument.

Each check raises ``ValueError`` exactly where ``torch.optim`` does, with torch's own
message (so a search for it finds both) prefixed by the class and followed by the
argument's name. Schedules (callables) are not checked: their values are data.
"""

from __future__ import annotations

from typing import Any


def _number(value: Any) -> float | None:
    if callable(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def fail(where: str, message: str, argument: str, rule: str) -> None:
    raise ValueError(f"{where}: {message} (`{argument}` must be {rule})")


def at_least(where: str, label: str, argument: str, value: Any, bound: float = 0.0) -> None:
    """torch's ``if not bound <= value: raise ValueError(f"Invalid {label}: {value}")``."""
    number = _number(value)
    if number is not None and not bound <= number:
        fail(where, f"Invalid {label}: {value}", argument, f">= {bound}")


def in_unit_interval(
    where: str, label: str, argument: str, value: Any, include_one: bool = False
) -> None:
    """``0 <= value < 1`` (``<= 1`` with ``include_one``)."""
    number = _number(value)
    if number is None:
        return
    ok = 0.0 <= number <= 1.0 if include_one else 0.0 <= number < 1.0
    if not ok:
        interval = "[0, 1]" if include_one else "[0, 1)"
        fail(where, f"Invalid {label}: {value}", argument, f"in {interval}")


def pair(where: str, argument: str, value: Any) -> tuple[Any, Any]:
    """A 2-sequence such as ``betas``; anything else is a ValueError naming it."""
    try:
        first, second = value
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: `{argument}` must be a pair of numbers, got {value!r}"
        ) from None
    return first, second


def betas(where: str, value: Any) -> tuple[Any, Any]:
    """torch's ``Invalid beta parameter at index i`` checks on ``betas=(b1, b2)``."""
    b1, b2 = pair(where, "betas", value)
    in_unit_interval(where, "beta parameter at index 0", "betas[0]", b1)
    in_unit_interval(where, "beta parameter at index 1", "betas[1]", b2)
    return b1, b2
