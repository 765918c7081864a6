"""What an optimizer does with a gradient that holds NaN or inf.

:func:`nonfinite_policy` wraps any transform with one of four policies:

* ``"propagate"`` (the default of every optimizer): no check; a NaN in the gradient
  reaches the update and the state, as in optax and PyTorch. Zero cost.
* ``"skip"``: a step whose gradient has any non-finite entry returns zero updates and
  leaves the inner state unchanged (the step counter too); the state counts skipped
  steps (:class:`NonFiniteState`). Loss-scaled mixed-precision training relies on this.
* ``"raise"``: the step fails with a :class:`FloatingPointError` naming every leaf path
  that holds a NaN or inf, e.g. ``grads['layer']['w'] (3 NaN, 0 inf)``. Works under
  ``jax.jit`` through a host callback: there the error arrives wrapped in JAX's runtime
  error (its message contains the paths) when the result is used. Costs one host round
  trip per step: meant for debugging.
* ``"checkify"``: the same test as a :func:`jax.experimental.checkify.check` per leaf,
  for steps run under :func:`jax.experimental.checkify.checkify` (no host callback; the
  error is returned as data and raised by ``err.throw()``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    OptState,
    Updates,
    with_extra_args,
)
from optim_fn.core.numerics import safe_increment as _saturating_increment
from optim_fn.core.validation import checks_once
from optim_fn.tree._math import all_finite
from optim_fn.tree._structure import path_str

POLICIES = ("propagate", "skip", "raise", "checkify")


class NonFiniteState(NamedTuple):
    """State of the ``"skip"`` policy.

    Attributes:
      inner_state: the wrapped transform's state (unchanged by skipped steps).
      skipped: total number of skipped steps (int32, saturating).
      consecutive_skipped: skipped steps since the last applied one.
      last_finite: whether the latest gradient was finite.
    """

    inner_state: OptState
    skipped: Array
    consecutive_skipped: Array
    last_finite: Array


def _leaf_counts(leaf: Array) -> tuple[Array, Array]:
    """Number of NaN and of inf entries in ``leaf`` (complex: either part)."""
    return jnp.sum(jnp.isnan(leaf)), jnp.sum(jnp.isinf(leaf))




def describe_nonfinite(paths: list[str], nans: Any, infs: Any) -> str:
    """The error message: every offending leaf with its NaN and inf counts."""
    bad = [
        f"grads{path} ({int(n)} NaN, {int(i)} inf)"
        for path, n, i in zip(paths, np.asarray(nans), np.asarray(infs), strict=True)
        if n or i
    ]
    return (
        f"non-finite gradient in {len(bad)} leaf(s): {', '.join(bad)}. Check the loss and "
        "the inputs of this step; to skip such steps instead, use "
        "`optim_fn.nonfinite_policy(optimizer, 'skip')`"
    )




@checks_once
def nonfinite_policy(inner: Any, policy: str = "propagate") -> GradientTransformationExtraArgs:
    """Wraps ``inner`` so that non-finite gradients are propagated, skipped or reported.

    Args:
      inner: any optim_fn or optax gradient transformation.
      policy: ``"propagate"`` (returns ``inner`` as it is), ``"skip"``, ``"raise"`` or
        ``"checkify"``; see the module docstring.

    ``"skip"`` evaluates the inner update and selects, per leaf, between its results and
    the old state (``jnp.where``), so the step compiles to one program with no branch.
    """
    if policy not in POLICIES:
        raise ValueError(
            f"nonfinite_policy: `policy` must be one of {POLICIES}, got {policy!r}"
        )
    inner = with_extra_args(inner)
    if policy == "propagate":
        return inner
    if policy == "skip":
        return _skip(inner)
    return _report(inner, use_checkify=policy == "checkify")


def _skip(inner: GradientTransformationExtraArgs) -> GradientTransformationExtraArgs:
    def init(params):
        zero = jnp.zeros([], jnp.int32)
        return NonFiniteState(inner.init(params), zero, zero, jnp.asarray(True))

    def update(updates: Updates, state: NonFiniteState, params=None, **extra_args):
        finite = all_finite(updates)
        new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
        # Keep the old state where the step is skipped; zeros (not the NaN) as updates.
        inner_state = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old), new_inner, state.inner_state
        )
        out = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), new_updates)
        skipped = jnp.where(finite, state.skipped, _saturating_increment(state.skipped))
        consecutive = jnp.where(
            finite, 0, _saturating_increment(state.consecutive_skipped)
        ).astype(jnp.int32)
        return out, NonFiniteState(inner_state, skipped, consecutive, finite)

    return GradientTransformationExtraArgs(init, update)


def _report(
    inner: GradientTransformationExtraArgs, *, use_checkify: bool
) -> GradientTransformationExtraArgs:
    def update(updates: Updates, state: OptState, params=None, **extra_args):
        with_paths = jax.tree_util.tree_flatten_with_path(updates)[0]
        paths = [path_str(path) for path, _ in with_paths]
        if paths:
            counts = [_leaf_counts(leaf) for _, leaf in with_paths]
            nans = jnp.stack([n for n, _ in counts])
            infs = jnp.stack([i for _, i in counts])
            if use_checkify:
                from jax.experimental import checkify

                for path, (n, i) in zip(paths, counts, strict=True):
                    checkify.check(
                        (n == 0) & (i == 0),
                        f"non-finite gradient at grads{path}: {{n}} NaN, {{i}} inf",
                        n=n,
                        i=i,
                    )
            else:

                def check_on_host(nans, infs):
                    if np.any(nans) or np.any(infs):
                        raise FloatingPointError(describe_nonfinite(paths, nans, infs))

                if isinstance(nans, jax.core.Tracer):
                    jax.debug.callback(check_on_host, nans, infs)
                else:
                    check_on_host(np.asarray(nans), np.asarray(infs))
        return inner.update(updates, state, params, **extra_args)

    return GradientTransformationExtraArgs(inner.init, update)
