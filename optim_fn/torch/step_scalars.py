"""Scalar optimizer state that torch keeps as float32 tensors (NAdam's ``mu_product``).

torch keeps NAdam's ``mu_product`` as a 0-d float32 tensor, even for float64 params, and
that rounding shows in float64 results (1.6e-9 after 5 steps). (ASGD's ``eta`` and ``mu``
do not go through here: they follow the params' precision, see
``optim_fn.torch.adaptive._with_asgd_scalars``.)

:func:`with_step_scalars` wraps a :func:`~optim_fn.rule_transform` transform: before
each step it computes the per-step scalars from the stored ones and the current
hyperparameters, hands them to the rule as extra keywords, and stores the new float32
scalars next to the per-parameter state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp

from optim_fn.core import hyperparams as hp
from optim_fn.core.base import GradientTransformationExtraArgs, compiled_when_eager
from optim_fn.core.numerics import safe_increment

Scalars = dict[str, Any]


def with_step_scalars(
    inner: GradientTransformationExtraArgs,
    inner_type: type,
    outer_type: type,
    specs: Mapping[str, Any],
    decays: frozenset[str],
    init_scalars: Callable[[Scalars], Scalars],
    step_scalars: Callable[[Scalars, Scalars, Any], tuple[Scalars, Scalars]],
) -> GradientTransformationExtraArgs:
    """Adds float32 scalar state to ``inner``.

    Args:
      inner: built by ``rule_transform`` with state ``inner_type``; its rule takes the
        per-step scalars as keywords.
      outer_type: ``inner_type``'s fields plus one per stored scalar.
      specs, decays: the hyperparameters ``inner`` was built with.
      init_scalars: ``hyperparams -> stored scalars`` (values at count 0).
      step_scalars: ``(stored, hyperparams, t) -> (rule keywords, new stored)`` with ``t``
        the step number (1 at the first update) in the hyperparameters' dtype.
    """
    inner_fields = inner_type._fields

    def init(params):
        state = inner.init(params)
        stored = init_scalars(hp.as_keywords(state.hyperparams))
        stored = {k: jnp.asarray(v, jnp.float32) for k, v in stored.items()}
        return outer_type(**state._asdict(), **stored)

    def update(grads, state, params=None, **extra_args):
        del extra_args
        current = hp.step_hyperparams(state.hyperparams, specs, decays, state.count)
        values = hp.as_keywords(current)
        dtype = next(iter(values.values())).dtype
        t = safe_increment(state.count).astype(dtype)
        stored = {k: getattr(state, k) for k in outer_type._fields if k not in inner_fields}
        keywords, new_stored = step_scalars(
            {k: v.astype(dtype) for k, v in stored.items()}, values, t
        )
        injected = state.hyperparams._replace(
            values={**state.hyperparams.values, **keywords}
        )
        inner_state = inner_type(**{f: getattr(state, f) for f in inner_fields})
        updates, new_inner = inner.update(grads, inner_state._replace(hyperparams=injected), params)
        cleaned = new_inner.hyperparams._replace(
            values={k: v for k, v in new_inner.hyperparams.values.items() if k not in keywords}
        )
        new_stored = {k: jnp.asarray(v).astype(jnp.float32) for k, v in new_stored.items()}
        return updates, outer_type(
            **new_inner._replace(hyperparams=cleaned)._asdict(), **new_stored
        )

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))
