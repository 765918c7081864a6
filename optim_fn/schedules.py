"""Schedules: functions of the step count, accepted wherever a hyperparameter is.

A schedule maps the step count (an int32 scalar, 0 at the first update) to a scalar.
Any hyperparameter of any optim_fn transform may be a schedule; the value it produced
at the latest step is readable with :func:`optim_fn.get_hyperparams`::

    lr = optim_fn.warmup_cosine_decay_schedule(0.0, 1e-3, warmup_steps=100, decay_steps=10_000)
    opt = optim_fn.adamw(lr)
    ...
    optim_fn.get_hyperparams(state)["learning_rate"]   # the rate used at the latest step

Every schedule here has the name, keywords and defaults of its optax counterpart and
agrees with it to float32 rounding (``tests/test_schedules.py`` checks 1000 steps of each
against optax and against the closed form evaluated in float64). Each is a handful of
scalar ``jnp`` operations, safe under ``jit``/``vmap``. Integer work (clipping the count
to a window, staircase division) is done on the int32 count before converting to float,
so the schedules stay exact past 2^24 steps, where float32 can no longer count.

Differences from optax (all construction-time errors where optax silently did something
else): a negative ``transition_steps`` / ``transition_begin`` / ``decay_steps``, or
``decay_rate <= 0`` in :func:`exponential_decay`, raise ``ValueError`` (optax clamps them
or returns a constant); ``decay_rate == 0`` would be a constant ``init_value`` in optax.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp

from optim_fn.base import Array, Schedule


def constant_schedule(value: float) -> Schedule:
    """The schedule that returns ``value`` at every step."""

    def schedule(count: Array) -> Array:
        del count
        return jnp.asarray(value, jnp.float32)

    return schedule


# ----------------------------------------------------------------------------------------
# Argument checks (construction time, messages name the argument).


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


# ----------------------------------------------------------------------------------------
# Polynomial family.


def polynomial_schedule(
    init_value: float,
    end_value: float,
    power: float,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""Polynomial transition from ``init_value`` (I) to ``end_value`` (E).

    .. math::
        v(t) = \begin{cases} I & t < B \\
        (I - E) \left(1 - \frac{t - B}{T}\right)^{P} + E & B \le t < B + T \\
        E & t \ge B + T \end{cases}

    with ``B = transition_begin``, ``T = transition_steps``, ``P = power``.
    ``transition_steps=0`` holds ``init_value`` forever (as in optax).
    """
    where = "polynomial_schedule"
    for name, value in (("init_value", init_value), ("end_value", end_value), ("power", power)):
        _check_real(where, name, value)
    transition_steps = _check_int(where, "transition_steps", transition_steps, minimum=0)
    transition_begin = _check_int(where, "transition_begin", transition_begin, minimum=0)
    if transition_steps == 0:
        return lambda count: jnp.asarray(init_value, jnp.result_type(float))
    decaying = _known_ge(init_value, end_value)

    def schedule(count: Array) -> Array:
        elapsed = jnp.clip(jnp.asarray(count) - transition_begin, 0, transition_steps)
        if decaying:
            # E + (I - E) r^P with r = (T - elapsed) / T from the integer remainder: no
            # ``1 - t/T`` cancellation as r -> 0, and both terms share a sign.
            remaining = _as_float(transition_steps - elapsed) / transition_steps
            return end_value + (init_value - end_value) * remaining**power
        # Rising (warm-up): I + (E - I) (1 - r^P), with 1 - r^P = -expm1(P log1p(-t/T))
        # accurate at the first steps, where the textbook form loses ~T ulps.
        # Clamped: under jit XLA may turn x / T into x * (1/T), which exceeds 1 by an
        # ulp at x = T, and log1p(-1 - ulp) is NaN.
        done = jnp.minimum(_as_float(elapsed) / transition_steps, 1)
        grown = done if power == 1 else -jnp.expm1(power * jnp.log1p(-done))
        return init_value + (end_value - init_value) * grown

    return schedule


def linear_schedule(
    init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    r"""Linear transition: :math:`I + \frac{\min(\max(t - B, 0), T)}{T} (E - I)`.

    ``polynomial_schedule`` with ``power=1``; see there for the arguments.
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def warmup_constant_schedule(
    init_value: float, peak_value: float, warmup_steps: int
) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``, then constant."""
    return linear_schedule(init_value, peak_value, warmup_steps)


# ----------------------------------------------------------------------------------------
# Piecewise schedules.


def piecewise_constant_schedule(
    init_value: float, boundaries_and_scales: Mapping[int, float] | None = None
) -> Schedule:
    r"""``init_value`` times the product of the scales whose boundary has been reached.

    .. math:: v(t) = I \prod_{i:\, t \ge b_i} s_i

    ``boundaries_and_scales`` is ``{b_i: s_i}`` with non-negative scales; e.g.
    ``{1000: 0.1, 2000: 0.1}`` divides the value by 10 at step 1000 and again at 2000.
    """
    where = "piecewise_constant_schedule"
    _check_real(where, "init_value", init_value)
    boundaries, scales = _sorted_boundaries(where, boundaries_and_scales)

    def schedule(count: Array) -> Array:
        count = jnp.asarray(count)
        value = jnp.asarray(init_value, jnp.result_type(float))
        for boundary, scale in zip(boundaries, scales, strict=True):
            value = jnp.where(count >= boundary, value * scale, value)
        return value

    return schedule


def _cosine_weight(remaining: Array, length: int) -> Array:
    """``(1 + cos(pi (1 - r))) / 2`` for ``r = remaining / length``, as ``sin(pi r / 2)^2``.

    The textbook form cancels catastrophically as the weight approaches 0 (float32
    ``1 + cos(x)`` near ``x = pi`` is off by up to 3e-3 relative at the last steps of a
    cosine decay); the sine of the integer remainder stays within 2e-7 relative.
    """
    return jnp.sin((jnp.pi / (2 * length)) * _as_float(remaining)) ** 2


def _interpolate_linear(start, end, elapsed, length):
    # Weights from the integer split of the interval: no cancellation when start and
    # end share a sign (they do: the scales are non-negative).
    return start * (_as_float(length - elapsed) / length) + end * (_as_float(elapsed) / length)


def _interpolate_cosine(start, end, elapsed, length):
    # start cos^2(pi f/2) + end sin^2(pi f/2): the same curve as end + (start - end)
    # (1 + cos(pi f)) / 2, without cancellation when rising or falling.
    return start * _cosine_weight(length - elapsed, length) + end * _cosine_weight(
        elapsed, length
    )


def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: float,
    boundaries_and_scales: Mapping[int, float] | None = None,
) -> Schedule:
    r"""Interpolates between the running products of scales, linearly or by a cosine.

    With boundaries :math:`b_0 = 0 < b_1 < \dots < b_n` and values
    :math:`v_0 = I`, :math:`v_i = v_{i-1} s_i`, for :math:`b_i \le t < b_{i+1}`:

    .. math::
        v(t) = v_i + (v_{i+1} - v_i)\,f \ \text{(linear)}, \qquad
        v(t) = v_{i+1} + (v_i - v_{i+1}) \tfrac{1 + \cos(\pi f)}{2} \ \text{(cosine)},

    with :math:`f = (t - b_i) / (b_{i+1} - b_i)`, and :math:`v(t) = v_n` for
    :math:`t \ge b_n`. ``interpolate_type`` is ``"linear"`` or ``"cosine"``.
    """
    where = "piecewise_interpolate_schedule"
    interpolators = {"linear": _interpolate_linear, "cosine": _interpolate_cosine}
    if interpolate_type not in interpolators:
        raise ValueError(
            f"{where}: `interpolate_type` must be 'linear' or 'cosine', got {interpolate_type!r}"
        )
    interpolate = interpolators[interpolate_type]
    _check_real(where, "init_value", init_value)
    boundaries, scales = _sorted_boundaries(where, boundaries_and_scales)
    values = [float(init_value)]
    for scale in scales:
        values.append(values[-1] * scale)
    starts = (0,) + boundaries

    def schedule(count: Array) -> Array:
        count = jnp.asarray(count)
        result = jnp.asarray(values[-1], jnp.result_type(float))
        # From the last segment back to the first, so the segment containing ``count``
        # is the last ``where`` to win.
        for i in reversed(range(len(boundaries))):
            start, end = starts[i], starts[i + 1]
            length = max(end - start, 1)
            elapsed = jnp.clip(count - start, 0, length)
            inside = (count >= start) & (count < end)
            result = jnp.where(
                inside, interpolate(values[i], values[i + 1], elapsed, length), result
            )
        return jnp.where(count < 0, values[0], result)

    return schedule


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


def _check_positive(where: str, name: str, value) -> None:
    _check_real(where, name, value)
    if not isinstance(value, jax.core.Tracer) and value <= 0:
        raise ValueError(f"{where}: `{name}` must be > 0, got {value!r}")


# ----------------------------------------------------------------------------------------
# Exponential and cosine decays.


def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    r"""Exponential decay: :math:`v(t) = I \cdot r^{(t - B)/T}` for :math:`t > B`, else ``I``.

    ``r = decay_rate``, ``T = transition_steps``, ``B = transition_begin``. With
    ``staircase=True`` the exponent is the integer :math:`\lfloor (t - B) / T \rfloor`.
    ``end_value`` bounds the result: from below when ``r < 1``, from above when ``r > 1``.
    """
    where = "exponential_decay"
    _check_real(where, "init_value", init_value)
    transition_steps = _check_int(where, "transition_steps", transition_steps, minimum=1)
    _check_positive(where, "decay_rate", decay_rate)
    transition_begin = _check_int(where, "transition_begin", transition_begin, minimum=0)
    if end_value is not None:
        _check_real(where, "end_value", end_value)
        bound = jnp.maximum if decay_rate < 1.0 else jnp.minimum

    def schedule(count: Array) -> Array:
        elapsed = jnp.maximum(jnp.asarray(count) - transition_begin, 0)
        if staircase:
            exponent = _as_float(elapsed // transition_steps)
        else:
            exponent = _as_float(elapsed) / transition_steps
        value = init_value * jnp.power(decay_rate, exponent)
        if end_value is not None:
            value = bound(value, end_value)
        return value

    return schedule


def cosine_decay_schedule(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule:
    r"""Cosine decay (Loshchilov & Hutter, SGDR, ICLR 2017).

    .. math::
        v(t) = I \left[(1 - \alpha) \left(\tfrac{1}{2}\left(1 + \cos\tfrac{\pi \min(t, T)}{T}
        \right)\right)^{p} + \alpha\right]

    with ``T = decay_steps`` (> 0), ``p = exponent``; the value ends at ``alpha * I``.
    The bracket is evaluated as :math:`\sin^2(\pi (T - t) / 2T)`, accurate to 2e-7
    relative down to the last step (optax's ``1 + cos`` loses up to 3e-3 there).
    """
    where = "cosine_decay_schedule"
    _check_real(where, "init_value", init_value)
    decay_steps = _check_int(where, "decay_steps", decay_steps, minimum=1)
    _check_real(where, "alpha", alpha)
    _check_real(where, "exponent", exponent)

    def schedule(count: Array) -> Array:
        remaining = decay_steps - jnp.clip(jnp.asarray(count), 0, decay_steps)
        cosine = _cosine_weight(remaining, decay_steps)
        return init_value * ((1 - alpha) * cosine**exponent + alpha)

    return schedule


# ----------------------------------------------------------------------------------------
# Compositions.


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

