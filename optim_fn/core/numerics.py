"""Array helpers shared by every layer: widening for reductions, ``|x|^2``, dtypes, the
saturating step counter. One copy each; nothing here knows about pytrees."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

INT32_MAX = jnp.iinfo(jnp.int32).max


def safe_increment(count: Array) -> Array:
    """``count + 1``, saturating at the integer maximum instead of wrapping to negative."""
    count = jnp.asarray(count)
    return jnp.where(count < jnp.iinfo(count.dtype).max, count + 1, count).astype(count.dtype)


def wide(x: Array) -> Array:
    """``x`` in float32 at least (complex64 at least for complex ``x``): reductions are
    accumulated there, so bf16 leaves do not lose their norms to rounding."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def abs_sq(x: Array) -> Array:
    """``|x|^2``, real even for complex ``x`` (one second moment per complex entry)."""
    if jnp.iscomplexobj(x):
        return (x.conj() * x).real
    return x * x


def real_dtype(dtype: Any) -> jnp.dtype:
    """The real dtype of the same width (float32 for complex64, bf16 for bf16)."""
    return jnp.finfo(dtype).dtype
