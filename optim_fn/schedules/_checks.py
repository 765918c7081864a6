"""Argument checks shared by the schedules (each names the schedule and the argument).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from optim_fn.core.base import Array


def _check_int(where: str, name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{where}: `{name}` must be an integer number of steps, got {value!r}")
    if value < minimum:
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{where}: `{name}` must be {bound}, got {value!r}")
    return int(value)


def _check_real(where: str, name: str, value) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if callable(value) or isinstance(value, (str, bytes)):
        raise ValueError(f"{where}: `{name}` must be a real number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: `{name}` must be a real number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: `{name}` must be finite, got {value!r}")


def _sorted_boundaries(
    where: str, boundaries_and_scales: Mapping[int, float] | None
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    if not boundaries_and_scales:
        return (), ()
    if not isinstance(boundaries_and_scales, Mapping):
        raise ValueError(
            f"{where}: `boundaries_and_scales` must be a dict {{step: scale}}, "
            f"got {boundaries_and_scales!r}"
        )
    items = sorted(boundaries_and_scales.items())
    for step, scale in items:
        _check_int(where, f"boundaries_and_scales key {step!r}", step, minimum=0)
        _check_real(where, f"boundaries_and_scales[{step}]", scale)
        if scale < 0:
            raise ValueError(
                f"{where}: `boundaries_and_scales` must hold non-negative scales, "
                f"got {scale!r} at step {step}"
            )
    return tuple(int(s) for s, _ in items), tuple(float(v) for _, v in items)


def _known_ge(a, b) -> bool:
    """``a >= b`` for concrete numbers; True (the generic branch) for traced values."""
    if isinstance(a, jax.core.Tracer) or isinstance(b, jax.core.Tracer):
        return True
    return bool(a >= b)


def _as_float(count_like: Array) -> Array:
    """An integer quantity as the default float type (float32, float64 under x64)."""
    return jnp.asarray(count_like).astype(jnp.result_type(float))


def _check_positive(where: str, name: str, value) -> None:
    _check_real(where, name, value)
    if not isinstance(value, jax.core.Tracer) and value <= 0:
        raise ValueError(f"{where}: `{name}` must be > 0, got {value!r}")
