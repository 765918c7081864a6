"""``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` as transforms.

torch scales every gradient by ``min(1, max_norm / (total_norm + 1e-6))``: the 1e-6 term
means a gradient whose norm equals ``max_norm`` is still scaled down slightly, and the
multiplication always happens (an infinite norm gives a factor 0 and NaN gradients).
optax's ``clip_by_global_norm`` has no such term. The total norm of the latest step is in
the state, for logging: ``state.total_norm``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import GradientTransformationExtraArgs, compiled_when_eager


def _vector_norm(x: jax.Array, norm_type: float) -> jax.Array:
    return jnp.linalg.norm(jnp.ravel(x), ord=norm_type)


def get_total_norm(grads: Any, norm_type: float = 2.0) -> jax.Array:
    """torch's ``get_total_norm``: the norm of the per-leaf norms (``inf``: the max |g|)."""
    leaves = jax.tree.leaves(grads)
    if not leaves:
        return jnp.zeros([])
    norms = jnp.stack([_vector_norm(leaf, norm_type) for leaf in leaves])
    return _vector_norm(norms, norm_type)


def _raise_nonfinite(total_norm, norm_type):
    if not math.isfinite(float(total_norm)):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is "
            "non-finite, so it cannot be clipped. To disable this error and scale the "
            "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
        )


class ClipGradNormState(NamedTuple):
    total_norm: jax.Array


def clip_grad_norm_(
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> GradientTransformationExtraArgs:
    """Scales all gradients by ``min(1, max_norm / (||g||_p + 1e-6))``, as torch.

    ``||g||_p`` is the ``norm_type`` norm of the per-leaf ``norm_type`` norms (any order
    ``jnp.linalg.norm`` accepts, ``float("inf")`` included). With ``error_if_nonfinite``
    a NaN/inf total raises ``RuntimeError`` (inside ``jit``, when the step runs).
    ``foreach`` is accepted and ignored.
    """
    del foreach
    try:
        max_norm = float(max_norm)
        norm_type = float(norm_type)
    except (TypeError, ValueError):
        raise ValueError(
            "clip_grad_norm_: `max_norm` and `norm_type` must be numbers, got "
            f"{max_norm!r} and {norm_type!r}"
        ) from None

    def init(params):
        del params
        return ClipGradNormState(jnp.zeros([]))

    def update(grads, state, params=None, **extra_args):
        del params, extra_args
        total = get_total_norm(grads, norm_type)
        if error_if_nonfinite:
            jax.debug.callback(_raise_nonfinite, total, norm_type)
        coefficient = jnp.minimum(max_norm / (total + 1e-6), 1.0)
        clipped = jax.tree.map(lambda g: g * coefficient.astype(g.dtype), grads)
        return clipped, ClipGradNormState(total.astype(state.total_norm.dtype))

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))


class ClipGradValueState(NamedTuple):
    pass


def clip_grad_value_(
    clip_value: float, foreach: bool | None = None
) -> GradientTransformationExtraArgs:
    """``g = clamp(g, -clip_value, clip_value)`` elementwise, as torch.

    ``foreach`` is accepted and ignored.
    """
    del foreach
    try:
        clip_value = float(clip_value)
    except (TypeError, ValueError):
        raise ValueError(
            f"clip_grad_value_: `clip_value` must be a number, got {clip_value!r}"
        ) from None

    def init(params):
        del params
        return ClipGradValueState()

    def update(grads, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(lambda g: jnp.clip(g, -clip_value, clip_value), grads), state

    return GradientTransformationExtraArgs(init, update)
