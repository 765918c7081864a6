"""Decays of one kind: constant, polynomial, linear, exponential, cosine, piecewise.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp

from optim_fn.core.base import Array, Schedule
from optim_fn.schedules._checks import (
    _as_float,
    _check_int,
    _check_positive,
    _check_real,
    _known_ge,
    _sorted_boundaries,
)


def constant_schedule(value: float) -> Schedule:
    """The schedule that returns ``value`` at every step."""

    def schedule(count: Array) -> Array:
        del count
        return jnp.asarray(value, jnp.float32)

    return schedule


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
        if decay_steps > jnp.iinfo(jnp.int32).max:
            # Longer than a step count (int32) can reach: counted in floats, since
            # ``decay_steps - count`` in int32 would overflow (optax's test uses 1e10).
            elapsed = _as_float(jnp.maximum(jnp.asarray(count), 0))
            remaining = jnp.asarray(float(decay_steps), elapsed.dtype) - elapsed
        else:
            remaining = decay_steps - jnp.clip(jnp.asarray(count), 0, decay_steps)
        cosine = _cosine_weight(remaining, decay_steps)
        return init_value * ((1 - alpha) * cosine**exponent + alpha)

    return schedule
