"""Schedules made of others: warm-up then decay, joins, one-cycle, SGDR restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import jax.numpy as jnp

from optim_fn.core.base import Array, Schedule
from optim_fn.schedules._checks import (
    _check_int,
    _check_positive,
    _check_real,
)
from optim_fn.schedules._decay import (
    cosine_decay_schedule,
    exponential_decay,
    linear_schedule,
    piecewise_interpolate_schedule,
)


def warmup_constant_schedule(
    init_value: float, peak_value: float, warmup_steps: int
) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``, then constant."""
    return linear_schedule(init_value, peak_value, warmup_steps)


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One-cycle policy with three linear phases (Smith & Topin 2017, arXiv:1708.07120).

    From ``peak_value / div_factor`` up to ``peak_value`` over the first
    ``pct_start * transition_steps`` steps, back down to ``peak_value / div_factor`` by
    ``pct_final * transition_steps``, then to ``peak_value / (div_factor *
    final_div_factor)`` at ``transition_steps`` (held after that).
    """
    where = "linear_onecycle_schedule"
    transition_steps = _check_int(where, "transition_steps", transition_steps, minimum=1)
    _check_real(where, "peak_value", peak_value)
    _check_positive(where, "div_factor", div_factor)
    _check_positive(where, "final_div_factor", final_div_factor)
    return piecewise_interpolate_schedule(
        "linear",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(pct_final * transition_steps): 1.0 / div_factor,
            transition_steps: 1.0 / final_div_factor,
        },
    )


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One-cycle policy with cosine phases (Smith & Topin 2017, arXiv:1708.07120).

    Cosine rise from ``peak_value / div_factor`` to ``peak_value`` over the first
    ``pct_start * transition_steps`` steps, then cosine decay to ``peak_value /
    (div_factor * final_div_factor)`` at ``transition_steps`` (held after that).
    """
    where = "cosine_onecycle_schedule"
    transition_steps = _check_int(where, "transition_steps", transition_steps, minimum=1)
    _check_real(where, "peak_value", peak_value)
    _check_positive(where, "div_factor", div_factor)
    _check_positive(where, "final_div_factor", final_div_factor)
    return piecewise_interpolate_schedule(
        "cosine",
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            transition_steps: 1.0 / (div_factor * final_div_factor),
        },
    )


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Runs ``schedules[i]`` from ``boundaries[i-1]`` to ``boundaries[i]``.

    Each schedule sees the steps counted from its own start (``count - boundaries[i-1]``).
    ``boundaries`` has one entry fewer than ``schedules``.
    """
    where = "join_schedules"
    schedules = list(schedules)
    boundaries = [
        _check_int(where, f"boundaries[{i}]", b, minimum=0) for i, b in enumerate(boundaries)
    ]
    if not schedules:
        raise ValueError(f"{where}: `schedules` must hold at least one schedule")
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"{where}: `boundaries` must have one entry fewer than `schedules` "
            f"({len(schedules)} schedules need {len(schedules) - 1} boundaries), "
            f"got {len(boundaries)}"
        )
    for i, schedule in enumerate(schedules):
        if not callable(schedule):
            raise ValueError(f"{where}: `schedules[{i}]` must be a schedule, got {schedule!r}")

    def joined(count: Array) -> Array:
        count = jnp.asarray(count)
        value = schedules[0](count)
        for boundary, schedule in zip(boundaries, schedules[1:], strict=True):
            value = jnp.where(count < boundary, value, schedule(count - boundary))
        return value

    return joined


def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then cosine decay to ``end_value``.

    ``decay_steps`` is the total length, warm-up included, so the cosine part lasts
    ``decay_steps - warmup_steps`` steps; ``exponent`` as in :func:`cosine_decay_schedule`.
    """
    where = "warmup_cosine_decay_schedule"
    warmup_steps = _check_int(where, "warmup_steps", warmup_steps, minimum=0)
    decay_steps = _check_int(where, "decay_steps", decay_steps, minimum=1)
    if decay_steps <= warmup_steps:
        raise ValueError(
            f"{where}: `decay_steps` is the total length including warm-up, so it must be "
            f"greater than `warmup_steps`; got decay_steps={decay_steps}, "
            f"warmup_steps={warmup_steps}"
        )
    _check_real(where, "peak_value", peak_value)
    _check_real(where, "end_value", end_value)
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent),
        ],
        [warmup_steps],
    )


def warmup_exponential_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then :func:`exponential_decay` from it.

    The decay's ``transition_begin`` counts from the end of the warm-up.
    """
    where = "warmup_exponential_decay_schedule"
    warmup_steps = _check_int(where, "warmup_steps", warmup_steps, minimum=0)
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            exponential_decay(
                peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
            ),
        ],
        [warmup_steps],
    )


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, float]]) -> Schedule:
    """SGD with warm restarts (Loshchilov & Hutter, ICLR 2017): cosine cycles back to back.

    ``cosine_kwargs`` is a sequence of keyword dicts for
    :func:`warmup_cosine_decay_schedule`; each cycle lasts its ``decay_steps``.
    """
    schedules, boundaries, start = [], [], 0
    for index, kwargs in enumerate(cosine_kwargs):
        if "decay_steps" not in kwargs:
            raise ValueError(
                f"sgdr_schedule: `cosine_kwargs[{index}]` needs a 'decay_steps' entry "
                "(the length of that cycle)"
            )
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        start += kwargs["decay_steps"]
        boundaries.append(start)
    return join_schedules(schedules, boundaries[:-1])
