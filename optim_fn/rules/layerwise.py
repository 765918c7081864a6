"""Rules that scale a whole leaf by a norm ratio: trust ratios (LAMB, LARS), Fromage, NovoGrad.

Each takes one gradient array, its per-leaf state (of any shape) and scalar
hyperparameters, and returns ``(update, *new_state)``. Norms are accumulated in float32
at least, so bf16 leaves do not lose them to rounding; they are real for complex leaves.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optim_fn import _legacy
from optim_fn.core.numerics import wide
from optim_fn.rules.classic import abs_sq

Array = jax.Array




def norm(x: Array) -> Array:
    """The Euclidean (Frobenius) norm of a whole leaf, real, float32 at least."""
    return jnp.sqrt(jnp.sum(abs_sq(wide(x))))


def trust_ratio(
    grad: Array, *, param: Array, min_norm: Array, trust_coefficient: Array, eps: Array
) -> tuple:
    """LARS/LAMB's layer-wise trust ratio (You et al. 2017, 2020).

    ``u = g * c ||p|| / (||g|| + eps)`` with both norms floored at ``min_norm``, and
    ``u = g`` where either norm is 0.
    """
    param_norm = jnp.maximum(norm(param), min_norm)
    update_norm = jnp.maximum(norm(grad), min_norm)
    ratio = trust_coefficient * param_norm / (update_norm + eps)
    ratio = jnp.where((param_norm == 0) | (update_norm == 0), 1.0, ratio)
    return (grad * ratio.astype(grad.real.dtype),)


def param_block_norm(grad: Array, *, param: Array, min_scale: Array) -> tuple:
    """``u = g max(||p||, min_scale)``."""
    return (grad * jnp.maximum(norm(param), min_scale).astype(grad.real.dtype),)


def param_block_rms(grad: Array, *, param: Array, min_scale: Array) -> tuple:
    """``u = g max(rms(p), min_scale)``, ``rms(p) = sqrt(mean |p|^2)`` (Adafactor's scale)."""
    rms = jnp.sqrt(jnp.mean(abs_sq(wide(param)))) if param.size else jnp.zeros([])
    return (grad * jnp.maximum(rms, min_scale).astype(grad.real.dtype),)


def fromage_step(grad: Array, *, param: Array, learning_rate: Array) -> tuple:
    """Fromage's step after the trust ratio (Bernstein et al. 2020, Algorithm 1).

    ``p_t = (p - lr g ||p||/||g||) / sqrt(1 + lr^2)``, i.e. ``u = -lr m g + (m - 1) p`` with
    ``m = 1/sqrt(1+lr^2)``; ``m - 1 = -lr^2 m / (1 + sqrt(1+lr^2))`` is computed without
    the cancellation of ``m - 1`` (which loses half the digits in float32 for lr=1e-3).
    """
    root = jnp.sqrt(1 + learning_rate**2)
    mult = 1 / root
    shrink = -(learning_rate**2) * mult / (1 + root)
    return (-(learning_rate * mult) * grad + shrink * param,)


def novograd(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    param: Array,
    count: Array,
    b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
    eps_root: Array,
    weight_decay: Array,
) -> tuple:
    """NovoGrad (Ginsburg et al. 2019, Algorithm 1): a second moment per layer.

    ``v_t = b2 v + (1-b2) ||g||^2`` (``v_1 = ||g||^2``);
    ``m_t = b1 m + g/(sqrt(v_t + eps_root) + eps) + wd p`` (``m_1`` without ``b1 m``);
    ``u = m_t``.
    """
    square_norm = jnp.sum(abs_sq(wide(grad))).astype(nu.dtype)
    first = count == 1
    nu = jnp.where(first, square_norm, one_minus_b2 * square_norm + b2 * nu)
    step = grad / (jnp.sqrt(nu + eps_root) + eps).astype(grad.real.dtype) + weight_decay * param
    mu = jnp.where(first, step, b1 * mu + step)
    return mu, mu, nu

__getattr__ = _legacy.fallback(__name__)  # the SM3 and Adafactor rules lived here before 0.1
