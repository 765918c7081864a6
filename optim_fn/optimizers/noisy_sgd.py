"""Gradient noise: ``add_noise`` and the ``noisy_sgd`` optimizer (optax's names and defaults)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.transforms._combine import chain


class AddNoiseState(NamedTuple):
    """``rng_key`` is a typed PRNG key; ``count`` the number of updates so far."""

    count: Array
    rng_key: Array
    hyperparams: Hyperparams


def _as_key(key: Any) -> Array:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jnp.integer) and key.shape == ():
        return jax.random.key(key)  # a seed given as an (possibly traced) integer array
    if isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(key)
    raise TypeError(
        f"add_noise: `key` must be an int seed or a PRNG key (`jax.random.key(0)`), got {key!r}"
    )


def _resolve_key(where: str, key: Any, seed: int | None) -> Any:
    if seed is not None:
        if key is not None:
            raise ValueError(f"{where}: pass either `key` or `seed` (deprecated), not both")
        return seed
    return 0 if key is None else key


def _noise_rule(updates: Any, rng_key: Array, *, count: Array, eta: Array, gamma: Array):
    """Every leaf plus Gaussian noise of variance ``eta / t^gamma``; one key per leaf."""
    std = jnp.sqrt(eta / count**gamma)
    rng_key, sample_key = jax.random.split(rng_key)
    leaves, treedef = jax.tree.flatten(updates)
    keys = jax.random.split(sample_key, len(leaves))
    noisy = [
        leaf + (std * jax.random.normal(k, leaf.shape, leaf.dtype)).astype(leaf.dtype)
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return treedef.unflatten(noisy), rng_key


@checks_once
def add_noise(
    eta: ScalarOrSchedule,
    gamma: ScalarOrSchedule,
    key: Any = None,
    *,
    seed: int | None = None,
) -> GradientTransformationExtraArgs:
    """Adds annealed Gaussian noise (Neelakantan et al. 2015).

    .. math:: u_t = g_t + \\sigma_t \\xi_t, \\quad \\sigma_t^2 = \\eta / t^{\\gamma},
        \\quad \\xi_t \\sim \\mathcal N(0, I)

    ``key`` is an int seed or a PRNG key (default seed 0; ``seed=`` is accepted as in
    optax); the noise of each leaf is drawn in its dtype (complex normal for complex
    leaves) from the same key stream as optax, so the two give the same numbers.
    """
    where = "add_noise"
    check.check_non_negative(where, "eta", eta)
    check.check_non_negative(where, "gamma", gamma)
    initial_key = _as_key(_resolve_key(where, key, seed))
    return rule_transform(
        _noise_rule,
        AddNoiseState,
        slots=("rng_key",),
        init_state=lambda params: (initial_key,),
        hyperparams={"eta": eta, "gamma": gamma},
        name=where,
    )


@checks_once
def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: ScalarOrSchedule = 0.01,
    gamma: ScalarOrSchedule = 0.55,
    key: Any = None,
    *,
    seed: int | None = None,
) -> GradientTransformationExtraArgs:
    """SGD on gradients plus annealed Gaussian noise.

    .. math::
        p_t = p_{t-1} - \\alpha (g_t + \\sigma_t \\xi_t), \\quad
        \\sigma_t^2 = \\eta / t^{\\gamma}, \\quad \\xi_t \\sim \\mathcal N(0, I)

    Defaults: ``eta=0.01``, ``gamma=0.55``, ``key=0``. Reference: Neelakantan et al.,
    "Adding Gradient Noise Improves Learning for Very Deep Networks", 2015.
    PyTorch: none.
    """
    check.check_learning_rate("noisy_sgd", learning_rate)
    return chain(
        add_noise(eta, gamma, key, seed=seed), classic.scale_by_learning_rate(learning_rate)
    )
