"""Sophia: a clipped, diagonally preconditioned momentum with a Hutchinson Hessian estimate.

``update`` needs what the Hessian estimator needs; the default one needs the objective:
``update(grads, state, params, obj_fn=loss_of_params)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.contrib._common import require_params
from optim_fn.core import validation as check
from optim_fn.core.base import (
    Array,
    GradientTransformation,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    Updates,
    with_extra_args,
)
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.rules.classic import debias, moving_average
from optim_fn.transforms._combine import chain
from optim_fn.tree._structure import tree_full_like


class HutchinsonState(NamedTuple):
    key: jax.Array


class SophiaState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    hessian_fn_state: Any
    hyperparams: Hyperparams


def _lowest_dtype(params: Any) -> Any:
    dtypes = {jnp.dtype(leaf.dtype) for leaf in jax.tree.leaves(params)}
    return min(dtypes, key=lambda d: d.itemsize) if dtypes else jnp.float32


@checks_once
def hutchinson_estimator_diag_hessian(
    random_seed: jax.Array | None = None,
) -> GradientTransformationExtraArgs:
    """Hutchinson's estimate of the Hessian diagonal: ``u = z * (H z)``, ``z`` Rademacher.

    ``update`` ignores the incoming updates and needs ``params`` and ``obj_fn`` (the
    objective as a function of the params); ``H z`` is a forward-over-reverse
    Hessian-vector product. One probe per call (Hutchinson 1989; Bekas et al. 2007).
    """

    def init(params):
        del params
        return HutchinsonState(random_seed if random_seed is not None else jax.random.PRNGKey(0))

    def update(updates, state, params=None, obj_fn=None, **extra_args):
        del updates, extra_args
        require_params(params, "hutchinson_estimator_diag_hessian")
        if obj_fn is None:
            raise ValueError(
                "hutchinson_estimator_diag_hessian needs the objective: call `update(grads, "
                "state, params, obj_fn=loss_fn)` with `loss_fn(params) -> scalar`"
            )
        key, subkey = jax.random.split(state.key)
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(subkey, len(leaves))
        dtype = _lowest_dtype(params)
        signs = treedef.unflatten(
            [
                jax.random.rademacher(k, leaf.shape, jnp.float32).astype(dtype)
                for k, leaf in zip(keys, leaves, strict=True)
            ]
        )
        hvp = jax.jvp(jax.grad(obj_fn), (params,), (signs,))[1]
        product = jax.tree.map(lambda h, z: h * z, hvp, signs)
        return product, HutchinsonState(key)

    return GradientTransformationExtraArgs(init, update)


def _sophia_rule(
    grads, mu, nu, hessian_fn_state, *, params, extra_args, count, previous_count, b1,
    one_minus_b1, b2, one_minus_b2, eps, gamma, clip_threshold=None, hessian_fn,
    update_interval, verbose, print_win_rate_every_n_steps,
):
    """Debiased momentum over the clipped Hessian estimate ``nu``, refreshed every
    ``update_interval`` steps from the first."""
    new_mu = jax.tree.map(lambda g, m: moving_average(g, m, b1, one_minus_b1), grads, mu)
    scaled = jax.tree.map(
        lambda m, v, g: (debias(m, b1, count) / jnp.maximum(gamma * v, eps)).astype(g.dtype),
        new_mu,
        nu,
        grads,
    )
    if clip_threshold is not None:
        limit = clip_threshold
        if verbose and print_win_rate_every_n_steps > 0:
            inside = sum(jnp.sum(jnp.abs(u) < limit) for u in jax.tree.leaves(scaled))
            size = sum(u.size for u in jax.tree.leaves(scaled))
            jax.lax.cond(
                count % print_win_rate_every_n_steps == 0,
                lambda: jax.debug.print("Sophia optimizer win rate: {}", inside / size),
                lambda: None,
            )
        scaled = jax.tree.map(lambda u: jnp.clip(u, -limit, limit).astype(u.dtype), scaled)

    def refresh(hessian_state, nu):
        diagonal, hessian_state = hessian_fn.update(grads, hessian_state, params, **extra_args)
        nu = jax.tree.map(
            lambda d, n: moving_average(d, n, b2, one_minus_b2).astype(n.dtype), diagonal, nu
        )
        return hessian_state, nu

    hessian_state, nu = jax.lax.cond(
        previous_count % update_interval == 0,
        refresh,
        lambda hs, n: (hs, n),
        hessian_fn_state,
        nu,
    )
    new_mu = jax.tree.map(lambda new, old: new.astype(old.dtype), new_mu, mu)
    return scaled, new_mu, nu, hessian_state


@checks_once
def scale_by_sophia(
    b1: ScalarOrSchedule = 0.965,
    b2: ScalarOrSchedule = 0.99,
    eps: ScalarOrSchedule = 1e-8,
    gamma: ScalarOrSchedule = 0.01,
    clip_threshold: ScalarOrSchedule | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformationExtraArgs:
    """Sophia's scaling (Liu, Li, Hall, Liang & Ma 2024, Algorithm 3); needs ``params``.

    .. math::
        m_t = b_1 m_{t-1} + (1-b_1) g_t,\\quad
        u_t = \\mathrm{clip}\\left(\\frac{m_t/(1-b_1^t)}{\\max(\\gamma h_{t-1}, \\epsilon)},
        \\pm\\rho\\right)

    and every ``update_interval`` steps (from the first)
    :math:`h_t = b_2 h_{t-1} + (1-b_2) \\hat h_t` with :math:`\\hat h_t` from
    ``hessian_diagonal_fn`` (default: :func:`hutchinson_estimator_diag_hessian`, which
    needs ``obj_fn=`` in ``update``). :math:`\\rho` is ``clip_threshold`` (None: no
    clipping). Real params only.
    """
    where = "scale_by_sophia"
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "gamma", gamma)
    if clip_threshold is not None:
        check.check_non_negative(where, "clip_threshold", clip_threshold)
    # inject_hyperparams hands integer arguments over as int32 arrays (traced under jit).
    is_integer = isinstance(update_interval, int) or (
        hasattr(update_interval, "dtype")
        and jnp.issubdtype(update_interval.dtype, jnp.integer)
        and jnp.ndim(update_interval) == 0
    )
    if (
        isinstance(update_interval, bool)
        or not is_integer
        or (not isinstance(update_interval, jax.core.Tracer) and update_interval < 1)
    ):
        raise ValueError(
            f"{where}: `update_interval` must be an integer >= 1, got {update_interval!r}"
        )
    check.check_dtype(where, "mu_dtype", mu_dtype)
    hessian_fn = with_extra_args(
        hessian_diagonal_fn
        if hessian_diagonal_fn is not None
        else hutchinson_estimator_diag_hessian()
    )
    specs = {"b1": b1, "b2": b2, "eps": eps, "gamma": gamma}
    if clip_threshold is not None:
        specs["clip_threshold"] = clip_threshold
    return rule_transform(
        _sophia_rule,
        SophiaState,
        slots=("mu", "nu", "hessian_fn_state"),
        init_state=lambda params: (
            tree_full_like(params, 0.0, mu_dtype),
            tree_full_like(params, 0.0),
            hessian_fn.init(params),
        ),
        hyperparams=specs,
        decays=("b1", "b2"),
        static={
            "hessian_fn": hessian_fn,
            "update_interval": update_interval,
            "verbose": verbose,
            "print_win_rate_every_n_steps": print_win_rate_every_n_steps,
        },
        uses_params=True,
        extra_args="*",
        previous_count=True,
        complex_reason="its Hessian probes and clipping are real-valued",
        name=where,
    )


@checks_once
def sophia(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.965,
    b2: ScalarOrSchedule = 0.99,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    weight_decay_mask: Any = None,
    gamma: ScalarOrSchedule = 0.01,
    clip_threshold: ScalarOrSchedule | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformationExtraArgs:
    """Sophia: momentum divided by a (lazily refreshed) Hessian-diagonal estimate, clipped.

    .. math::
        p_{t+1} = p_t - \\eta\\left(\\mathrm{clip}\\left(\\frac{\\hat m_t}{\\max(\\gamma
        h_t, \\epsilon)}, \\pm\\rho\\right) + \\lambda p_t\\right)

    (see :func:`scale_by_sophia`). Defaults: ``b1=0.965``, ``b2=0.99``, ``eps=1e-8``,
    ``weight_decay=1e-4``, ``gamma=0.01``, ``clip_threshold=1``, ``update_interval=10``.
    Reference: Liu et al., "Sophia: A Scalable Stochastic Second-order Optimizer for
    Language Model Pre-training", ICLR 2024. ``update`` needs ``obj_fn=`` with the
    default estimator. PyTorch: none. Real params only.
    """
    check.check_learning_rate("sophia", learning_rate)
    check.check_non_negative("sophia", "weight_decay", weight_decay)
    return chain(
        scale_by_sophia(
            b1,
            b2,
            eps,
            gamma,
            clip_threshold,
            update_interval,
            hessian_diagonal_fn,
            mu_dtype,
            verbose,
            print_win_rate_every_n_steps,
        ),
        classic.add_decayed_weights(weight_decay, weight_decay_mask),
        classic.scale_by_learning_rate(learning_rate),
    )
