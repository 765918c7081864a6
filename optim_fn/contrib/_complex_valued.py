"""Complex params as pairs of real ones, for transforms written for real numbers."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    compiled_when_eager,
    with_extra_args,
)
from optim_fn.core.validation import checks_once


class SplitRealAndImaginaryArrays(NamedTuple):
    """The real and imaginary parts of one complex leaf, as two real leaves."""

    real: Any
    imaginary: Any


class SplitRealAndImaginaryState(NamedTuple):
    """State of :func:`split_real_and_imaginary`: the inner transform's state."""

    inner_state: Any


def _split(x: Any) -> Any:
    if x is not None and jnp.iscomplexobj(x):
        return SplitRealAndImaginaryArrays(jnp.real(x), jnp.imag(x))
    return x


def _merge(x: Any) -> Any:
    if isinstance(x, SplitRealAndImaginaryArrays):
        return jax.lax.complex(x.real, x.imaginary)
    return x


def _is_pair(x: Any) -> bool:
    return isinstance(x, SplitRealAndImaginaryArrays)


@checks_once
def split_real_and_imaginary(
    inner: GradientTransformation,
) -> GradientTransformationExtraArgs:
    """Runs ``inner`` on each complex leaf as two real leaves (its real and imaginary parts).

    A complex leaf :math:`z = x + iy` with gradient :math:`g = g_x + i g_y` is seen by
    ``inner`` as the pair of real leaves :math:`(x, y)` with gradients
    :math:`(g_x, g_y)`; the pair of real updates :math:`(u_x, u_y)` it returns becomes
    the complex update :math:`u_x + i u_y`. Real leaves pass through unchanged, so
    ``inner`` runs as if the model had twice as many real params. This is what a
    transform that is not defined for complex numbers needs (optim_fn's elementwise
    optimizers accept complex params directly and, using :math:`|g|^2`, treat the
    modulus as one quantity; here the parts get, e.g., separate second moments).
    Extra ``update`` arguments are passed on to ``inner``. As in optax, the gradients
    are used as given: ``jax.grad`` of a real loss w.r.t. complex params returns the
    conjugate of the gradient to descend along (optax issue #196), so pass
    ``jax.tree.map(jnp.conj, grads)``.
    """
    if not (hasattr(inner, "init") and hasattr(inner, "update")):
        raise TypeError(
            f"split_real_and_imaginary: `inner` is {inner!r}, not a gradient transformation"
        )
    inner = with_extra_args(inner)

    def init(params):
        return SplitRealAndImaginaryState(inner.init(jax.tree.map(_split, params)))

    def update(updates, state, params=None, **extra_args):
        split_updates = jax.tree.map(_split, updates)
        split_params = None if params is None else jax.tree.map(_split, params)
        new_updates, inner_state = inner.update(
            split_updates, state.inner_state, split_params, **extra_args
        )
        merged = jax.tree.map(_merge, new_updates, is_leaf=_is_pair)
        return merged, SplitRealAndImaginaryState(inner_state)

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))
