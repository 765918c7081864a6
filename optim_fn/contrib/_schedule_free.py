"""Schedule-Free optimization: iterate averaging in place of a learning-rate schedule.

Train with the params the optimizer returns (the interpolation ``y``); evaluate with
:func:`schedule_free_eval_params`, which recovers the average ``x``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.contrib._common import copy_params
from optim_fn.core import hyperparams as hp
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformation,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    with_extra_args,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.optimizers.classic import sgd
from optim_fn.schedules._composite import warmup_constant_schedule
from optim_fn.transforms._combine import chain


class ScheduleFreeState(NamedTuple):
    """``z`` is the base optimizer's iterate; ``max_lr`` and ``weight_sum`` the averaging.

    ``count`` is the number of updates so far. The hyperparameters are ``b1``,
    ``learning_rate`` (as seen by the averaging weights) and ``weight_lr_power``.
    """

    count: Array
    weight_sum: Array
    max_lr: Array
    base_optimizer_state: Any
    z: Any
    hyperparams: Hyperparams


class _AliasScheduleFreeState(ScheduleFreeState):
    """The state of schedule_free_sgd/adamw, whose averaging reads the base optimizer's
    learning rate (one step ahead): one ``learning_rate`` is reported and set for both."""

    mirrored_hyperparams = ("learning_rate",)


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    """The averaged params ``x = (y - (1 - b1) z) / b1`` to evaluate a schedule-free model.

    ``state`` is the state of :func:`schedule_free` (or of an alias built on it, possibly
    inside a chain), ``params`` the params being trained (``y``).
    """
    found = _find_state(state)
    if found is None:
        raise ValueError(
            "schedule_free_eval_params needs the state of optim_fn.contrib.schedule_free "
            f"(or schedule_free_sgd / schedule_free_adamw), got {type(state).__name__}"
        )
    b1 = jnp.asarray(hp.as_keywords(found.hyperparams)["b1"])
    # By leaves, not by tree_map: under flax nnx the params are boxed as `Param`s and the
    # state's z as `OptVariable`s, two trees of one shape that tree_map refuses to pair.
    y_leaves, treedef = jax.tree.flatten(params)
    z_leaves = jax.tree.leaves(found.z)
    if [jnp.shape(y) for y in y_leaves] != [jnp.shape(z) for z in z_leaves]:
        raise ValueError(
            "schedule_free_eval_params: `params` do not match the params the optimizer was "
            f"initialised with: shapes {[jnp.shape(y) for y in y_leaves]} against "
            f"{[jnp.shape(z) for z in z_leaves]}"
        )
    return treedef.unflatten(
        [
            ((y - (1 - b1) * z) / b1).astype(jnp.asarray(y).dtype)
            for y, z in zip(y_leaves, z_leaves, strict=True)
        ]
    )


def _find_state(state: Any) -> ScheduleFreeState | None:
    if isinstance(state, ScheduleFreeState):
        return state
    if hasattr(state, "opt_state") and not isinstance(state, tuple):  # nnx.Optimizer
        return _find_state(state.opt_state)
    if isinstance(state, tuple):
        for child in state:
            found = _find_state(child)
            if found is not None:
                return found
    return None


def _schedule_free_rule(
    grads, weight_sum, max_lr, base_optimizer_state, z, *, params, extra_args, b1,
    learning_rate, weight_lr_power, base,
):
    """The base step moves ``z``; ``y`` interpolates ``z`` and the weighted average ``x``."""
    max_lr = jnp.maximum(max_lr, learning_rate)
    weight = max_lr**weight_lr_power
    weight_sum = weight_sum + weight
    # 0/0 before any step with a positive learning rate: no averaging yet.
    ck = jnp.where(
        jnp.isnan(weight) | jnp.isnan(weight_sum),
        jnp.nan,
        jnp.nan_to_num(weight / weight_sum, nan=0.0, posinf=jnp.inf),
    )
    base_updates, base_state = base.update(grads, base_optimizer_state, params, **extra_args)
    new_z = jax.tree.map(lambda zi, u: (zi + u).astype(zi.dtype), z, base_updates)

    def new_update(y, z_old, z_new):
        x_old = (y - (1 - b1) * z_old) / b1
        x_new = (1 - ck) * x_old + ck * z_new
        return (b1 * x_new + (1 - b1) * z_new - y).astype(jnp.asarray(y).dtype)

    updates = jax.tree.map(new_update, params, z, new_z)
    return updates, weight_sum, max_lr, base_state, new_z


@checks_once
def schedule_free(
    base_optimizer: GradientTransformation,
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    weight_lr_power: ScalarOrSchedule = 2.0,
    state_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """Turns ``base_optimizer`` into its schedule-free version (Defazio et al. 2024).

    With :math:`z_{t+1} = z_t + \\text{base update}(g(y_t))`, weights
    :math:`c_{t+1} = \\gamma_{max,t}^{r} / \\sum_{s \\le t} \\gamma_{max,s}^{r}` (``r`` =
    ``weight_lr_power``, :math:`\\gamma_{max}` the running max of the learning rate):

    .. math::
        x_{t+1} = (1 - c_{t+1})\\, x_t + c_{t+1} z_{t+1}, \\qquad
        y_{t+1} = b_1 x_{t+1} + (1 - b_1) z_{t+1}

    The params handed in and out are :math:`y` (gradients are taken there); ``x`` is
    recovered by :func:`schedule_free_eval_params`. ``z`` is kept in ``state_dtype``
    (default: the params' dtype). As in optax, the averaging weight of update ``t`` (from
    0) reads a learning-rate schedule at ``t + 1``. Needs ``params``.
    """
    return _schedule_free(
        base_optimizer, learning_rate, b1, weight_lr_power, state_dtype, ScheduleFreeState
    )


def _schedule_free(
    base_optimizer, learning_rate, b1, weight_lr_power, state_dtype, state_type
) -> GradientTransformationExtraArgs:
    where = "schedule_free"
    check.check_learning_rate(where, learning_rate)
    check.check_decay(where, "b1", b1, allow_one=True)
    check.check_non_negative(where, "weight_lr_power", weight_lr_power)
    check.check_dtype(where, "state_dtype", state_dtype)
    base = with_extra_args(base_optimizer)
    # The averaging reads a schedule one step ahead of the base optimizer (optax's
    # convention, kept so the two give the same iterates).
    lr_spec = (
        (lambda count: learning_rate(count + 1)) if callable(learning_rate) else (learning_rate)
    )

    def init_state(params):
        dtype = hp.storage_dtype(params)
        return (
            jnp.zeros([], dtype),
            jnp.zeros([], dtype),
            base.init(params),
            copy_params(params, state_dtype),
        )

    return rule_transform(
        _schedule_free_rule,
        state_type,
        slots=("weight_sum", "max_lr", "base_optimizer_state", "z"),
        init_state=init_state,
        hyperparams={"b1": b1, "learning_rate": lr_spec, "weight_lr_power": weight_lr_power},
        static={"base": base},
        uses_params=True,
        extra_args="*",
        name=where,
    )


def _warmed_up(learning_rate: ScalarOrSchedule, warmup_steps: int | None) -> ScalarOrSchedule:
    if warmup_steps is None:
        return learning_rate
    if not callable(learning_rate):
        return warmup_constant_schedule(0.0, learning_rate, warmup_steps)
    # A schedule is warmed up by a factor rising linearly from 0 to 1 (optax's
    # annotation admits numbers only, so it has no rule to follow here).
    factor = warmup_constant_schedule(0.0, 1.0, warmup_steps)
    return lambda count: factor(count) * learning_rate(count)


@checks_once
def schedule_free_sgd(
    learning_rate: ScalarOrSchedule = 1.0,
    warmup_steps: int | None = None,
    b1: ScalarOrSchedule = 0.9,
    weight_decay: ScalarOrSchedule | None = None,
    weight_lr_power: ScalarOrSchedule = 2.0,
    state_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """Schedule-Free SGD: :func:`schedule_free` around SGD (with L2 ``weight_decay``).

    ``warmup_steps`` ramps the learning rate linearly from 0. Defaults:
    ``learning_rate=1``, ``b1=0.9``, ``weight_lr_power=2``. Reference: Defazio, Yang,
    Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled", NeurIPS 2024.
    Evaluate with :func:`schedule_free_eval_params`. PyTorch: none in ``torch.optim``
    (``schedulefree.SGDScheduleFree`` in the authors' package).
    """
    learning_rate = _warmed_up(learning_rate, warmup_steps)
    optimizer = sgd(learning_rate)
    if weight_decay is not None:
        check.check_non_negative("schedule_free_sgd", "weight_decay", weight_decay)
        optimizer = chain(classic.add_decayed_weights(weight_decay), optimizer)
    return _schedule_free(
        optimizer, learning_rate, b1, weight_lr_power, state_dtype, _AliasScheduleFreeState
    )


@checks_once
def schedule_free_adamw(
    learning_rate: ScalarOrSchedule = 0.0025,
    warmup_steps: int | None = None,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_lr_power: ScalarOrSchedule = 2.0,
    state_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """Schedule-Free AdamW: :func:`schedule_free` around RMS scaling with decoupled decay.

    The base step is ``-lr (g / (sqrt(v_t/(1-b2^t)) + eps) + wd y)``; the momentum of
    Adam is replaced by the schedule-free interpolation (``b1``). Defaults:
    ``learning_rate=2.5e-3``, ``b1=0.9``, ``b2=0.999``, ``eps=1e-8``. Reference: Defazio
    et al., NeurIPS 2024. Evaluate with :func:`schedule_free_eval_params`. PyTorch: none
    in ``torch.optim`` (``schedulefree.AdamWScheduleFree``).
    """
    learning_rate = _warmed_up(learning_rate, warmup_steps)
    check.check_non_negative("schedule_free_adamw", "weight_decay", weight_decay)
    optimizer = chain(
        classic.scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        classic.add_decayed_weights(weight_decay),
        classic.scale_by_learning_rate(learning_rate),
    )
    return _schedule_free(
        optimizer, learning_rate, b1, weight_lr_power, state_dtype, _AliasScheduleFreeState
    )
