"""PyTorch's treatment of complex parameters: real and imaginary parts as two reals.

``torch.optim`` runs every optimizer on ``torch.view_as_real(p)``, so Adam keeps one
second moment per real component (not one ``|g|^2`` per complex entry) and sign-based
rules take signs componentwise. :func:`as_real_pairs` gives any array rule that
behaviour, so the torch face needs no complex-specific copy of the math.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def _to_real(x: jax.Array) -> jax.Array:
    return jnp.stack([x.real, x.imag], axis=-1)


def _to_complex(x: jax.Array) -> jax.Array:
    return jax.lax.complex(x[..., 0], x[..., 1])


def as_real_pairs(rule: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps ``rule`` so complex leaves are processed as ``(real, imag)`` pairs.

    The gradient, the slots and ``param`` are viewed as real arrays with a trailing axis
    of 2; every returned array is turned back into a complex array. Real leaves go
    straight through, untouched.
    """

    @functools.wraps(rule)
    def wrapped(grad, *slots, **keywords):
        if not jnp.iscomplexobj(grad):
            return rule(grad, *slots, **keywords)
        if "param" in keywords:
            keywords = {**keywords, "param": _to_real(keywords["param"])}
        outputs = rule(_to_real(grad), *(_to_real(s) for s in slots), **keywords)
        return tuple(_to_complex(jnp.asarray(o)) for o in outputs)

    return wrapped


def both_parts_initialised(transform: Any, field: str, value: float) -> Any:
    """``transform`` whose ``init`` starts ``state.<field>`` at ``complex(value, value)``
    for complex params, as torch (e.g. Adagrad's ``sum``, Rprop's ``step_size``): one
    initial value per real component. Real params keep ``value``.
    """
    from optim_fn.core.base import GradientTransformationExtraArgs

    def init(params):
        state = transform.init(params)
        slot = jax.tree.map(
            lambda s: s + 1j * jnp.asarray(value, s.real.dtype) if jnp.iscomplexobj(s) else s,
            getattr(state, field),
        )
        return state._replace(**{field: slot})

    return GradientTransformationExtraArgs(init, transform.update)
