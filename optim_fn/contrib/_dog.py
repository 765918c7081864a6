"""DoG and DoWG: step sizes from the distance travelled over the gradients seen."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.contrib._common import copy_params, require_params, tree_norm, tree_sq_norm
from optim_fn.core import hyperparams as hp
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    compiled_when_eager,
    fresh_value,
    identity,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.numerics import safe_increment
from optim_fn.optimizers import classic
from optim_fn.transforms._combine import chain
from optim_fn.tree._structure import check_params

_INIT_STEP_TYPES = ("distance", "learning_rate", "heuristic")


class DoGState(NamedTuple):
    """``learning_rate`` is the DoG step size used at the latest update (for logging)."""

    count: Array
    init_params: Any
    max_dist: Array
    sum_sq_norm_grads: Array
    learning_rate: Array
    hyperparams: Hyperparams


class DoWGState(NamedTuple):
    """``learning_rate`` is the DoWG step size used at the latest update (for logging)."""

    count: Array
    init_params: Any
    weighted_sq_norm_grads: Array
    estim_sq_dist: Array
    learning_rate: Array
    hyperparams: Hyperparams


def _scaled(updates: Any, step: Array) -> Any:
    return jax.tree.map(lambda u: (step * u).astype(u.dtype), updates)


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
    specs = {"eps": eps}

    def init(params):
        check_params(params, where)
        dtype = hp.storage_dtype(params)
        if kind == "distance":
            r_epsilon = jnp.asarray(value, dtype)
        elif kind == "heuristic":
            r_epsilon = (value * (1 + tree_norm(params))).astype(dtype)
        else:
            r_epsilon = jnp.zeros([], dtype)
        return DoGState(
            count=jnp.zeros([], jnp.int32),
            init_params=copy_params(params),
            max_dist=r_epsilon,
            sum_sq_norm_grads=jnp.zeros([], dtype),
            learning_rate=jnp.zeros([], dtype),
            hyperparams=hp.init_hyperparams(specs, frozenset(), dtype),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        require_params(params, where)
        hyperparams_now = hp.step_hyperparams(state.hyperparams, specs, frozenset(), state.count)
        eps_now = hp.as_keywords(hyperparams_now)["eps"]
        dtype = state.max_dist.dtype
        distance = tree_norm(jax.tree.map(jnp.subtract, state.init_params, params))
        max_dist = jnp.maximum(state.max_dist, distance.astype(dtype))
        sum_sq = state.sum_sq_norm_grads + tree_sq_norm(updates).astype(dtype)
        step = max_dist / jnp.sqrt(sum_sq + eps_now)
        if kind == "learning_rate":
            step = jnp.where(state.count == 0, jnp.asarray(value, dtype), step)
        new_state = DoGState(
            safe_increment(state.count),
            state.init_params,
            max_dist,
            sum_sq,
            fresh_value(step, state.learning_rate),
            hyperparams_now,
        )
        return _scaled(updates, step), new_state

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))


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
    specs = {"eps": eps}

    def init(params):
        check_params(params, where)
        dtype = hp.storage_dtype(params)
        hyperparams = hp.init_hyperparams(specs, frozenset(), dtype)
        initial = (
            hp.as_keywords(hyperparams)["eps"]
            if init_estim_sq_dist is None
            else (jnp.asarray(init_estim_sq_dist, dtype))
        )
        return DoWGState(
            count=jnp.zeros([], jnp.int32),
            init_params=copy_params(params),
            weighted_sq_norm_grads=jnp.zeros([], dtype),
            estim_sq_dist=initial,
            learning_rate=jnp.zeros([], dtype),
            hyperparams=hyperparams,
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        require_params(params, where)
        hyperparams_now = hp.step_hyperparams(state.hyperparams, specs, frozenset(), state.count)
        eps_now = hp.as_keywords(hyperparams_now)["eps"]
        dtype = state.estim_sq_dist.dtype
        sq_dist = tree_sq_norm(jax.tree.map(jnp.subtract, state.init_params, params))
        estim_sq_dist = jnp.maximum(state.estim_sq_dist, sq_dist.astype(dtype))
        weighted = estim_sq_dist * tree_sq_norm(updates).astype(dtype)
        weighted = weighted + state.weighted_sq_norm_grads
        step = estim_sq_dist / (jnp.sqrt(weighted) + eps_now)
        new_state = DoWGState(
            safe_increment(state.count),
            state.init_params,
            weighted,
            estim_sq_dist,
            fresh_value(step, state.learning_rate),
            hyperparams_now,
        )
        return _scaled(updates, step), new_state

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))


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
