"""DoG and DoWG: step sizes from the distance travelled over the gradients seen."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.contrib._common import copy_params
from optim_fn.core import hyperparams as hp
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    fresh_value,
    identity,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.transforms._combine import chain
from optim_fn.tree._math import tree_norm, tree_sq_norm

_INIT_STEP_TYPES = ("distance", "learning_rate", "heuristic")


class DoGState(NamedTuple):
    """``learning_rate`` is the DoG step size used at the latest update (for logging)."""

    count: Array
    init_params: Any
    max_dist: Array
    sum_sq_norm_grads: Array
    learning_rate: Array
    hyperparams: Hyperparams

    def derived_hyperparams(self) -> dict[str, Array]:
        """``effective_learning_rate``: the DoG step size of the latest update (the
        alias multiplies it by its ``learning_rate``, 1 by default)."""
        return {"effective_learning_rate": jnp.asarray(self.learning_rate)}


class DoWGState(NamedTuple):
    """``learning_rate`` is the DoWG step size used at the latest update (for logging)."""

    count: Array
    init_params: Any
    weighted_sq_norm_grads: Array
    estim_sq_dist: Array
    learning_rate: Array
    hyperparams: Hyperparams

    def derived_hyperparams(self) -> dict[str, Array]:
        """``effective_learning_rate``: the DoWG step size of the latest update (the
        alias multiplies it by its ``learning_rate``, 1 by default)."""
        return {"effective_learning_rate": jnp.asarray(self.learning_rate)}


def _scaled(updates: Any, step: Array) -> Any:
    return jax.tree.map(lambda u: (step * u).astype(u.dtype), updates)


def _dog_rule(
    updates, max_dist, sum_sq_norm_grads, learning_rate, *, params, init_params, count, eps,
    kind, init_value,
):
    """The whole tree scaled by ``max distance from p_0 / sqrt(sum of ||g||^2 + eps)``."""
    dtype = max_dist.dtype
    distance = tree_norm(jax.tree.map(jnp.subtract, init_params, params))
    max_dist = jnp.maximum(max_dist, distance.astype(dtype))
    sum_sq = sum_sq_norm_grads + tree_sq_norm(updates).astype(dtype)
    step = max_dist / jnp.sqrt(sum_sq + eps)
    if kind == "learning_rate":
        step = jnp.where(count == 1, jnp.asarray(init_value, dtype), step)
    return _scaled(updates, step), max_dist, sum_sq, fresh_value(step, learning_rate)


def _dowg_rule(
    updates, weighted_sq_norm_grads, estim_sq_dist, learning_rate, *, params, init_params, eps
):
    """The whole tree scaled by ``r^2 / (sqrt(sum of r^2 ||g||^2) + eps)``."""
    dtype = estim_sq_dist.dtype
    sq_dist = tree_sq_norm(jax.tree.map(jnp.subtract, init_params, params))
    estim_sq_dist = jnp.maximum(estim_sq_dist, sq_dist.astype(dtype))
    weighted = estim_sq_dist * tree_sq_norm(updates).astype(dtype)
    weighted = weighted + weighted_sq_norm_grads
    step = estim_sq_dist / (jnp.sqrt(weighted) + eps)
    return _scaled(updates, step), weighted, estim_sq_dist, fresh_value(step, learning_rate)


@checks_once
def scale_by_dog(
    init_step: tuple[Literal["distance", "learning_rate", "heuristic"], float],
    eps: ScalarOrSchedule = 1e-8,
) -> GradientTransformationExtraArgs:
    """DoG's step size (Ivgi, Hinder & Carmon 2023, Algorithm 1); needs ``params``.

    .. math::
        \\bar r_t = \\max(\\bar r_{t-1}, \\|p_t - p_0\\|),\\quad
        G_t = G_{t-1} + \\|g_t\\|^2,\\quad u_t = \\frac{\\bar r_t}{\\sqrt{G_t + \\epsilon}} g_t

    ``init_step`` sets :math:`\\bar r_0`: ``("distance", r)`` gives ``r``;
    ``("heuristic", a)`` gives ``a (1 + ||p_0||)``; ``("learning_rate", lr)`` gives 0 and
    uses ``lr`` as the first step size instead. Norms are over the whole tree.
    """
    where = "scale_by_dog"
    if not (isinstance(init_step, tuple) and len(init_step) == 2):
        raise ValueError(
            f"{where}: `init_step` must be a pair (kind, value) with kind in "
            f"{_INIT_STEP_TYPES}, e.g. ('heuristic', 1e-6); got {init_step!r}"
        )
    kind, value = init_step
    if kind not in _INIT_STEP_TYPES:
        raise ValueError(
            f"{where}: the kind in `init_step` must be one of {_INIT_STEP_TYPES}, got {kind!r}"
        )
    check.check_non_negative(where, "init_step value", value)
    check.check_non_negative(where, "eps", eps)

    def init_state(params):
        dtype = hp.storage_dtype(params)
        if kind == "distance":
            r_epsilon = jnp.asarray(value, dtype)
        elif kind == "heuristic":
            r_epsilon = (value * (1 + tree_norm(params))).astype(dtype)
        else:
            r_epsilon = jnp.zeros([], dtype)
        return r_epsilon, jnp.zeros([], dtype), jnp.zeros([], dtype)

    return rule_transform(
        _dog_rule,
        DoGState,
        slots=("max_dist", "sum_sq_norm_grads", "learning_rate"),
        init_state=init_state,
        constants={"init_params": copy_params},
        hyperparams={"eps": eps},
        static={"kind": kind, "init_value": value},
        uses_params=True,
        name=where,
    )


@checks_once
def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    init_step: tuple[str, float] = ("heuristic", 1e-6),
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule | None = None,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """DoG ("Distance over Gradients"): a parameter-free SGD step size.

    .. math::
        p_{t+1} = p_t - \\eta\\, \\frac{\\max_{s \\le t} \\|p_s - p_0\\|}
        {\\sqrt{\\sum_{s \\le t} \\|g_s\\|^2 + \\epsilon}}\\, g_t

    ``learning_rate`` is a multiplier on the DoG step (1 in the paper); ``init_step``
    sets the initial distance (see :func:`scale_by_dog`); ``weight_decay`` (with ``mask``)
    adds ``wd p`` to the gradient first. Defaults: ``learning_rate=1``,
    ``init_step=("heuristic", 1e-6)``, ``eps=1e-8``. Reference: Ivgi, Hinder & Carmon,
    "DoG is SGD's Best Friend", ICML 2023. PyTorch: none.
    """
    check.check_learning_rate("dog", learning_rate)
    if weight_decay is not None:
        check.check_non_negative("dog", "weight_decay", weight_decay)
    return chain(
        classic.add_decayed_weights(weight_decay, mask)
        if weight_decay is not None
        else identity(),
        scale_by_dog(init_step, eps),
        classic.scale_by_learning_rate(learning_rate),
    )


@checks_once
def scale_by_dowg(
    init_estim_sq_dist: float | None = None, eps: ScalarOrSchedule = 1e-4
) -> GradientTransformationExtraArgs:
    """DoWG's step size (Khaled, Mishchenko & Jin 2023, Algorithm 1); needs ``params``.

    .. math::
        \\bar r_t^2 = \\max(\\bar r_{t-1}^2, \\|p_t - p_0\\|^2),\\quad
        v_t = v_{t-1} + \\bar r_t^2 \\|g_t\\|^2,\\quad
        u_t = \\frac{\\bar r_t^2}{\\sqrt{v_t} + \\epsilon} g_t

    ``init_estim_sq_dist`` is :math:`\\bar r_0^2` (default ``eps``).
    """
    where = "scale_by_dowg"
    if init_estim_sq_dist is not None:
        check.check_non_negative(where, "init_estim_sq_dist", init_estim_sq_dist)
    check.check_non_negative(where, "eps", eps)

    def init_state(params):
        dtype = hp.storage_dtype(params)
        initial = (
            hp.as_keywords(hp.init_hyperparams({"eps": eps}, frozenset(), dtype))["eps"]
            if init_estim_sq_dist is None
            else (jnp.asarray(init_estim_sq_dist, dtype))
        )
        return jnp.zeros([], dtype), initial, jnp.zeros([], dtype)

    return rule_transform(
        _dowg_rule,
        DoWGState,
        slots=("weighted_sq_norm_grads", "estim_sq_dist", "learning_rate"),
        init_state=init_state,
        constants={"init_params": copy_params},
        hyperparams={"eps": eps},
        uses_params=True,
        name=where,
    )


@checks_once
def dowg(
    learning_rate: ScalarOrSchedule = 1.0,
    init_estim_sq_dist: float | None = None,
    eps: ScalarOrSchedule = 1e-4,
    weight_decay: ScalarOrSchedule | None = None,
    mask: Any = None,
) -> GradientTransformationExtraArgs:
    """DoWG ("Distance over Weighted Gradients"): a parameter-free, universal SGD step.

    .. math::
        p_{t+1} = p_t - \\eta\\, \\frac{\\bar r_t^2}{\\sqrt{\\sum_{s \\le t} \\bar r_s^2
        \\|g_s\\|^2} + \\epsilon}\\, g_t, \\quad \\bar r_t = \\max_{s \\le t}\\|p_s - p_0\\|

    Defaults: ``learning_rate=1``, ``init_estim_sq_dist=eps``, ``eps=1e-4``. Reference:
    Khaled, Mishchenko & Jin, "DoWG Unleashed", NeurIPS 2023. PyTorch: none.
    """
    check.check_learning_rate("dowg", learning_rate)
    if weight_decay is not None:
        check.check_non_negative("dowg", "weight_decay", weight_decay)
    return chain(
        classic.add_decayed_weights(weight_decay, mask)
        if weight_decay is not None
        else identity(),
        scale_by_dowg(init_estim_sq_dist, eps),
        classic.scale_by_learning_rate(learning_rate),
    )
