"""Differentially private SGD: per-example clipping and Gaussian noise (Abadi et al. 2016).

Unlike every other transform, these take PER-EXAMPLE gradients: each leaf has the
batch on axis 0 (``jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)``), and
return updates shaped like the params. Put :func:`differentially_private_aggregate`
first in a chain. Gradient accumulation (``MultiSteps``, ``apply_every``) would
aggregate already-noised batches and is not what DP-SGD accounts for.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax

from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    identity,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.flat._ravel import check_not_flat
from optim_fn.optimizers import classic
from optim_fn.optimizers.noisy_sgd import _as_key
from optim_fn.transforms._clipping import per_example_global_norm_clip
from optim_fn.transforms._combine import chain


class DifferentiallyPrivateAggregateState(NamedTuple):
    """State of :func:`differentially_private_aggregate`.

    Attributes:
      rng_key: the typed PRNG key the next step's noise comes from.
      count: number of updates so far (int32, saturating).
      hyperparams: ``l2_norm_clip`` and ``noise_multiplier``.
    """

    rng_key: Array
    count: Array
    hyperparams: Hyperparams


def _initial_key(where: str, key: Any, seed: Any) -> Array:
    if seed is not None:
        warnings.warn(
            f"{where}: `seed` is deprecated (as in optax), pass `key` instead",
            DeprecationWarning,
            stacklevel=3,
        )
        if key is not None:
            raise ValueError(f"{where}: pass either `key` or `seed` (deprecated), not both")
        key = seed
    try:
        return _as_key(0 if key is None else key)
    except TypeError:
        raise ValueError(
            f"{where}: `key` must be an int seed or a PRNG key (`jax.random.key(0)`), "
            f"got {key!r}"
        ) from None


def _private_aggregate_rule(updates, rng_key, *, l2_norm_clip, noise_multiplier):
    """Per-example clipping, summed; Gaussian noise of std ``C sigma``; the batch mean."""
    clip_norm = l2_norm_clip
    summed, _ = per_example_global_norm_clip(updates, clip_norm)
    leaves, treedef = jax.tree.flatten(summed)
    batch_size = jax.tree.leaves(updates)[0].shape[0]
    noise_std = clip_norm * noise_multiplier
    new_key, *leaf_keys = jax.random.split(rng_key, len(leaves) + 1)
    noised = [
        ((leaf + noise_std * jax.random.normal(k, leaf.shape, leaf.dtype)) / batch_size)
        .astype(leaf.dtype)
        for leaf, k in zip(leaves, leaf_keys, strict=True)
    ]
    return treedef.unflatten(noised), new_key


@checks_once
def differentially_private_aggregate(
    l2_norm_clip: ScalarOrSchedule,
    noise_multiplier: ScalarOrSchedule,
    key: Any = None,
    *,
    seed: int | None = None,
) -> GradientTransformationExtraArgs:
    """Aggregates per-example gradients as DP-SGD does (Abadi et al. 2016, Algorithm 1).

    With per-example gradients :math:`g_1 \\dots g_B` (the leaves' axis 0), clipping norm
    :math:`C` = ``l2_norm_clip`` and :math:`\\sigma` = ``noise_multiplier``:

    .. math::
        u_t = \\frac{1}{B}\\Big(\\sum_{i=1}^{B} g_i \\min\\big(1, C / \\|g_i\\|\\big)
        + \\sigma C\\, \\xi_t\\Big), \\qquad \\xi_t \\sim \\mathcal N(0, I)

    with :math:`\\|g_i\\|` the norm of example ``i``'s gradient over the whole tree (see
    :func:`optim_fn.per_example_global_norm_clip`). ``key`` is an int seed or a typed
    PRNG key (default seed 0, where optax warns); ``seed=`` is deprecated as in optax.
    The noise of each leaf is drawn in its dtype from the same key stream as optax's
    (split the key into one new key plus one per leaf), so the two give the same
    numbers. Both hyperparameters may be schedules and are stored in the state.
    """
    where = "differentially_private_aggregate"
    check.check_non_negative(where, "l2_norm_clip", l2_norm_clip)
    check.check_non_negative(where, "noise_multiplier", noise_multiplier)
    initial_key = _initial_key(where, key, seed)

    def init_state(params):
        check_not_flat(
            params, where, "per-example gradients carry a batch axis that a FlatTree has not"
        )
        return (initial_key,)

    return rule_transform(
        _private_aggregate_rule,
        DifferentiallyPrivateAggregateState,
        slots=("rng_key",),
        init_state=init_state,
        hyperparams={"l2_norm_clip": l2_norm_clip, "noise_multiplier": noise_multiplier},
        name=where,
    )


@checks_once
def dpsgd(
    learning_rate: ScalarOrSchedule,
    l2_norm_clip: ScalarOrSchedule,
    noise_multiplier: ScalarOrSchedule,
    seed: Any,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """DP-SGD: SGD (optionally with momentum) on privately aggregated gradients.

    .. math::
        p_t = p_{t-1} - \\eta\\, m_t, \\qquad m_t = \\mu m_{t-1} + u_t

    with :math:`u_t` from :func:`differentially_private_aggregate` (per-example clipping
    to ``l2_norm_clip``, Gaussian noise of std ``noise_multiplier * l2_norm_clip``, mean
    over the batch) and :math:`\\mu` = ``momentum`` (no momentum when None; Nesterov's
    form with ``nesterov=True``). ``seed`` is an int or a typed PRNG key. Takes
    per-example gradients (batch on axis 0 of every leaf). Reference: Abadi et al.,
    "Deep Learning with Differential Privacy", CCS 2016 (arXiv:1607.00133).
    PyTorch: Opacus's ``PrivacyEngine`` (outside ``torch.optim``).
    """
    where = "dpsgd"
    check.check_learning_rate(where, learning_rate)
    if momentum is not None:
        check.check_decay(where, "momentum", momentum)
    elif nesterov:
        raise ValueError(f"{where}: `nesterov=True` needs a `momentum`")
    return chain(
        differentially_private_aggregate(l2_norm_clip, noise_multiplier, key=seed),
        classic.trace(momentum, nesterov) if momentum is not None else identity(),
        classic.scale_by_learning_rate(learning_rate),
    )
