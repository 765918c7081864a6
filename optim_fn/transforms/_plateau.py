"""Reduce the step size when the loss stops improving (Keras/PyTorch ``ReduceLROnPlateau``).

The loss arrives as the extra ``update`` argument ``value=``::

    opt = optim_fn.chain(optim_fn.adam(1e-3), optim_fn.reduce_on_plateau(patience=5))
    ...
    updates, state = opt.update(grads, state, params, value=loss)

The current multiplier is ``state.scale`` (the last block of the chain, here
``state[1].scale``). Same keywords, defaults and decisions as optax's
``contrib.reduce_on_plateau``, with these differences: the scale and the best value are
kept in float32 at least (optax keeps the scale in the params' lowest dtype, so bf16
params round it); ``patience=0`` reduces at every evaluation without improvement (in
optax it never reduces); calling ``update`` without ``value=`` is a clear error.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core import hyperparams as hp
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    Params,
    Updates,
    compiled_when_eager,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.numerics import safe_increment
from optim_fn.core.validation import checks_once


class ReduceLROnPlateauState(NamedTuple):
    """State of :func:`reduce_on_plateau`.

    Attributes:
      scale: the multiplier applied to the updates.
      best_value: the best (lowest) averaged value seen.
      plateau_count: evaluations in a row without improvement.
      cooldown_count: evaluations left before counting plateaus again.
      count: values accumulated towards the next evaluation.
      avg_value: mean of those values.
      hyperparams: factor, rtol, atol, min_scale, patience, cooldown, accumulation_size.
    """

    scale: Array
    best_value: Array
    plateau_count: Array
    cooldown_count: Array
    count: Array
    avg_value: Array
    hyperparams: Hyperparams


def _int_arg(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"reduce_on_plateau: `{name}` must be an int >= {minimum}, got {value!r}")
    return int(value)


@checks_once
def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
) -> GradientTransformationExtraArgs:
    """Multiplies the updates by ``scale``, cut by ``factor`` when ``value`` plateaus.

    Every ``accumulation_size`` calls the mean :math:`\\bar v` of the values passed is
    evaluated. It improves on the best value :math:`b` if
    :math:`\\bar v < (1 - \\text{rtol})\\, b - \\text{atol}`; then :math:`b \\leftarrow
    \\bar v` and the plateau count resets. Otherwise the plateau count grows, and when it
    reaches ``patience`` the scale becomes :math:`\\max(\\text{scale} \\cdot
    \\text{factor}, \\text{min\\_scale})`, the count resets and ``cooldown`` evaluations
    follow during which plateaus are not counted. Defaults as in optax.
    """
    where = "reduce_on_plateau"
    for name, value in (("factor", factor), ("rtol", rtol), ("atol", atol),
                        ("min_scale", min_scale)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{where}: `{name}` must be a real number, got {value!r}")
    if not 0.0 < factor < 1.0:
        raise ValueError(f"{where}: `factor` must be in (0, 1), got {factor!r}")
    if rtol < 0.0 or atol < 0.0:
        raise ValueError(f"{where}: `rtol` and `atol` must be >= 0, got {rtol!r}, {atol!r}")
    if rtol == 0.0 and atol == 0.0:
        raise ValueError(f"{where}: one of `rtol` and `atol` must be > 0 (both are 0)")
    if rtol > 1.0:
        raise ValueError(f"{where}: `rtol` must be <= 1, got {rtol!r}")
    if min_scale < 0.0:
        raise ValueError(f"{where}: `min_scale` must be >= 0, got {min_scale!r}")
    integers = {
        "patience": _int_arg("patience", patience, 0),
        "cooldown": _int_arg("cooldown", cooldown, 0),
        "accumulation_size": _int_arg("accumulation_size", accumulation_size, 1),
    }
    reals = {"factor": factor, "rtol": rtol, "atol": atol, "min_scale": min_scale}

    def init(params: Params) -> ReduceLROnPlateauState:
        dtype = hp.storage_dtype(params)
        values = {k: jnp.asarray(v, dtype) for k, v in reals.items()}
        values.update({k: jnp.asarray(v, jnp.int32) for k, v in integers.items()})
        return ReduceLROnPlateauState(
            scale=jnp.ones([], dtype),
            best_value=jnp.asarray(jnp.inf, dtype),
            plateau_count=jnp.zeros([], jnp.int32),
            cooldown_count=jnp.zeros([], jnp.int32),
            count=jnp.zeros([], jnp.int32),
            avg_value=jnp.zeros([], dtype),
            hyperparams=Hyperparams(values, {}, {}),
        )

    def evaluate(state: ReduceLROnPlateauState) -> ReduceLROnPlateauState:
        h = state.hyperparams.values
        improved = state.avg_value < (1 - h["rtol"]) * state.best_value - h["atol"]
        best = jnp.where(improved, state.avg_value, state.best_value)
        plateau = jnp.where(improved, 0, safe_increment(state.plateau_count))
        cooling = state.cooldown_count > 0
        reduce = ~cooling & (plateau >= h["patience"])
        scale = jnp.where(reduce, jnp.maximum(state.scale * h["factor"], h["min_scale"]),
                          state.scale)
        cooldown = jnp.where(cooling, state.cooldown_count - 1,
                             jnp.where(reduce, h["cooldown"], 0))
        return state._replace(
            scale=scale.astype(state.scale.dtype),
            best_value=best.astype(state.best_value.dtype),
            plateau_count=jnp.where(cooling | reduce, 0, plateau).astype(jnp.int32),
            cooldown_count=cooldown.astype(jnp.int32),
            count=jnp.zeros([], jnp.int32),
            avg_value=jnp.zeros_like(state.avg_value),
        )

    def update(updates: Updates, state: ReduceLROnPlateauState, params=None, *,
               value: Array | None = None, **extra_args):
        del params, extra_args
        if value is None:
            raise ValueError(
                f"{where}: pass the loss as `update(grads, state, params, value=loss)`"
            )
        value = jnp.asarray(value)
        if value.shape != ():
            raise ValueError(f"{where}: `value` must be a scalar, got shape {value.shape}")
        count = safe_increment(state.count)
        value = value.astype(state.avg_value.dtype)
        avg = state.avg_value + (value - state.avg_value) / count.astype(value.dtype)
        state = state._replace(count=count, avg_value=avg.astype(state.avg_value.dtype))
        state = jax.lax.cond(
            count >= state.hyperparams.values["accumulation_size"],
            evaluate,
            lambda s: s,
            state,
        )
        scaled = jax.tree.map(lambda u: (state.scale * u).astype(u.dtype), updates)
        return scaled, state

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))
