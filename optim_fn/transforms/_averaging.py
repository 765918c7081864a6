"""Weight averaging: Lookahead and an exponential moving average (EMA) of the params.

* :func:`lookahead` (Zhang et al. 2019): a fast optimizer takes ``sync_period`` steps,
  then the slow weights move a fraction ``slow_step_size`` towards the fast ones and the
  fast weights restart from there. Params are a :class:`LookaheadParams` pair, as in
  optax.
* :func:`ema_params` keeps ``ema <- decay * ema + (1 - decay) * params`` after every
  step of the wrapped optimizer (Polyak-Ruppert averaging with exponential weights, as
  in timm's ``ModelEmaV2`` or the EMA of diffusion models); evaluate with
  ``state.ema``.

``slow_step_size`` and ``decay`` are hyperparameters stored in the state: readable with
:func:`optim_fn.get_hyperparams`, settable with :func:`optim_fn.set_hyperparams`, and
either may be a schedule of the step count.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core import hyperparams as hp
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformation,
    GradientTransformationExtraArgs,
    Params,
    ScalarOrSchedule,
    Updates,
    compiled_when_eager,
    with_extra_args,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.numerics import safe_increment
from optim_fn.core.validation import checks_once
from optim_fn.rules import moving_average


class LookaheadParams(NamedTuple):
    """The fast and slow params of :func:`lookahead`.

    Compute gradients at ``fast``; evaluate (and deploy) ``slow``.
    """

    fast: Params
    slow: Params

    @classmethod
    def init_synced(cls, params: Params) -> LookaheadParams:
        """Fast and slow params both equal to ``params``."""
        return cls(fast=params, slow=params)


class LookaheadState(NamedTuple):
    """State of :func:`lookahead`.

    Attributes:
      fast_state: the fast optimizer's state.
      steps_since_sync: fast steps since the last synchronisation (0 to k-1).
      count: updates so far (for a scheduled ``slow_step_size``).
      hyperparams: ``slow_step_size``.
    """

    fast_state: Any
    steps_since_sync: Array
    count: Array
    hyperparams: Hyperparams


@checks_once
def lookahead(
    fast_optimizer: GradientTransformation,
    sync_period: int,
    slow_step_size: ScalarOrSchedule,
    reset_state: bool = False,
) -> GradientTransformationExtraArgs:
    """Lookahead: k steps forward, one step back (Zhang, Lucas, Hinton & Ba, NeurIPS 2019).

    With :math:`\\phi` the slow and :math:`\\theta` the fast params, each call applies the
    fast optimizer, :math:`\\theta \\leftarrow \\theta + u`; every ``sync_period``-th call
    then also sets

    .. math:: \\phi \\leftarrow \\phi + \\alpha (\\theta - \\phi), \\qquad
        \\theta \\leftarrow \\phi

    with :math:`\\alpha` = ``slow_step_size``. ``reset_state=True`` re-initialises the fast
    optimizer's state at each synchronisation. ``update`` needs ``params`` as a
    :class:`LookaheadParams` and returns updates of the same form; apply them unmodified.
    Same names and semantics as :func:`optax.lookahead`.
    """
    where = "lookahead"
    if not (hasattr(fast_optimizer, "init") and hasattr(fast_optimizer, "update")):
        raise TypeError(f"{where}: `fast_optimizer` is {fast_optimizer!r}, not a transform")
    if isinstance(sync_period, bool) or not isinstance(sync_period, int) or sync_period < 1:
        raise ValueError(f"{where}: `sync_period` must be an int >= 1, got {sync_period!r}")
    check.check_decay(where, "slow_step_size", slow_step_size, allow_one=True)
    fast_optimizer = with_extra_args(fast_optimizer)
    specs = {"slow_step_size": slow_step_size}
    no_decays: frozenset[str] = frozenset()

    def fast_of(params: Any) -> Params:
        return params.fast if isinstance(params, LookaheadParams) else params

    def init(params: LookaheadParams | Params) -> LookaheadState:
        fast = fast_of(params)
        return LookaheadState(
            fast_state=fast_optimizer.init(fast),
            steps_since_sync=jnp.zeros([], jnp.int32),
            count=jnp.zeros([], jnp.int32),
            hyperparams=hp.init_hyperparams(specs, no_decays, hp.storage_dtype(fast)),
        )

    def update(updates: Updates, state: LookaheadState, params=None, **extra_args):
        if not isinstance(params, LookaheadParams):
            raise ValueError(
                f"{where}: `update` needs `params` as optim_fn.LookaheadParams(fast, slow) "
                "(create them with `LookaheadParams.init_synced(params)`), got "
                f"{type(params).__name__}"
            )
        hyperparams = hp.step_hyperparams(state.hyperparams, specs, no_decays, state.count)
        alpha = hp.as_keywords(hyperparams)["slow_step_size"]
        fast_updates, fast_state = fast_optimizer.update(
            updates, state.fast_state, params.fast, **extra_args
        )
        sync = state.steps_since_sync == sync_period - 1

        def slow_update(fast, update, slow):
            gap = fast + update - slow
            return jnp.where(sync, (alpha * gap).astype(gap.dtype), -0.0).astype(slow.dtype)

        def fast_update(fast, update, slow):
            # At a sync the fast params jump to the new slow params: from theta + u back
            # by (1 - alpha) of the gap, i.e. to phi + alpha (theta + u - phi).
            gap = fast + update - slow
            jumped = update - ((1 - alpha) * gap).astype(gap.dtype)
            return jnp.where(sync, jumped, update).astype(update.dtype)

        new_updates = LookaheadParams(
            fast=jax.tree.map(fast_update, params.fast, fast_updates, params.slow),
            slow=jax.tree.map(slow_update, params.fast, fast_updates, params.slow),
        )
        if reset_state:
            fresh = fast_optimizer.init(params.fast)
            # A state may hold Python scalars (a bool flag): jnp.asarray reads their dtype.
            fast_state = jax.tree.map(
                lambda current, initial: jnp.where(sync, initial, current).astype(
                    jnp.asarray(current).dtype
                ),
                fast_state,
                fresh,
            )
        return new_updates, LookaheadState(
            fast_state=fast_state,
            steps_since_sync=jnp.where(sync, 0, state.steps_since_sync + 1).astype(jnp.int32),
            count=safe_increment(state.count),
            hyperparams=hyperparams,
        )

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))


class EmaParamsState(NamedTuple):
    """State of :func:`ema_params`.

    Attributes:
      count: updates so far.
      ema: the averaged params, in the params' structure (evaluate with these).
      inner_state: the wrapped optimizer's state.
      hyperparams: ``decay`` (and its ``1 - decay`` at full precision).
    """

    count: Array
    ema: Params
    inner_state: Any
    hyperparams: Hyperparams


def _ema_params_rule(
    updates, ema, inner_state, *, params, decay, one_minus_decay, inner, extra_args
):
    """``inner``'s update, unchanged; the average moves towards the params it gives."""
    new_updates, inner_state = inner.update(updates, inner_state, params, **extra_args)

    def average(ema, param, update):
        new_param = (param + update).astype(param.dtype)
        return moving_average(new_param, ema, decay, one_minus_decay).astype(ema.dtype)

    return new_updates, jax.tree.map(average, ema, params, new_updates), inner_state


@checks_once
def ema_params(
    inner: GradientTransformation, decay: ScalarOrSchedule = 0.999
) -> GradientTransformationExtraArgs:
    """Wraps ``inner`` and keeps an exponential moving average of the params it produces.

    .. math:: \\bar\\theta_0 = \\theta_0, \\qquad
        \\bar\\theta_t = d\\, \\bar\\theta_{t-1} + (1 - d)\\, \\theta_t, \\quad
        \\theta_t = \\theta_{t-1} + u_t

    where :math:`u_t` is ``inner``'s update, returned unchanged. The average starts at
    the initial params (so no bias correction is needed) and is kept in the params'
    dtype, like the params. ``decay`` may be a schedule (e.g. a warm-up towards 0.9999).
    ``update`` needs ``params``. Wrap the whole optimizer, so that ``u_t`` is the final
    update. Memory: one copy of the params.
    """
    where = "ema_params"
    if not (hasattr(inner, "init") and hasattr(inner, "update")):
        raise TypeError(f"{where}: `inner` is {inner!r}, not a gradient transformation")
    check.check_decay(where, "decay", decay, allow_one=True)
    inner = with_extra_args(inner)
    return rule_transform(
        _ema_params_rule,
        EmaParamsState,
        slots=("ema", "inner_state"),
        init_state=lambda params: (jax.tree.map(jnp.array, params), inner.init(params)),
        hyperparams={"decay": decay},
        decays=("decay",),
        static={"inner": inner},
        uses_params=True,
        extra_args="*",
        name=where,
    )
