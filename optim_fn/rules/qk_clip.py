"""QK-clip (Kimi K2's MuonClip): per-head rescaling of attention query and key weights.

Kimi Team, "Kimi K2: Open Agentic Intelligence" (2025, arXiv 2507.20534), QK-Clip for
multi-head attention: after the optimizer's step, each head ``h`` whose largest attention
logit :math:`S_h` exceeds the threshold :math:`\\tau` has its query and key weights
scaled by :math:`\\eta_h^{\\alpha}` and :math:`\\eta_h^{1-\\alpha}`,
:math:`\\eta_h = \\min(1, \\tau / S_h)`, so that its logits (bilinear in the two) shrink
by :math:`\\eta_h` to at most :math:`\\tau`; the other heads are left exactly as they are.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def qk_clip(
    update: Array,
    *,
    param: Array,
    max_logit: Array,
    threshold: Array,
    power: Array,
    num_heads: int,
    output_axis: int,
) -> tuple[Array]:
    """The update that lands one query (or key) weight on its clipped value.

    ``max_logit``: the heads' largest attention logits, shape ``(num_heads,)``; the
    weight's ``output_axis`` holds the heads, ``num_heads`` blocks of equal width.
    ``power``: :math:`\\alpha` for a query weight, :math:`1-\\alpha` for a key weight.
    Returns ``u + (f - 1)(p + u)`` with ``f`` the per-head factor :math:`\\eta_h^{power}`
    broadcast over the head's columns: exactly ``u`` for the heads not clipped.
    """
    eta = jnp.minimum(1.0, threshold / max_logit.astype(threshold.dtype))
    factor = jnp.repeat(eta**power, param.shape[output_axis] // num_heads)
    shape = [1] * param.ndim
    shape[output_axis] = param.shape[output_axis]
    factor = factor.reshape(shape).astype(param.dtype)
    return ((update + (factor - 1) * (param + update)).astype(update.dtype),)
