"""L-BFGS: a quasi-Newton method from the last ``m`` steps and gradient changes.

The usual deterministic loop, reusing the line search's last evaluation::

    solver = optim_fn.lbfgs()
    state = solver.init(params)
    value_and_grad = optim_fn.value_and_grad_from_state(loss)

    @jax.jit
    def step(params, state):
        value, grad = value_and_grad(params, state=state)
        updates, state = solver.update(grad, state, params, value=value, grad=grad,
                                       value_fn=loss)
        return optim_fn.apply_updates(params, updates), state

For a loss that returns ``(loss, aux)``, build ``lbfgs(has_aux=True)`` and use
``value_and_grad_from_state(loss, has_aux=True)``, which returns ``((loss, aux), grad)``.

Names, keywords, defaults and state fields are optax's (``optax.lbfgs``,
``optax.scale_by_lbfgs``). One difference: a pair with non-positive curvature
:math:`\\langle s, y \\rangle \\le 0` (possible on a non-convex loss when the line search
gives up) is left out of the inverse-Hessian estimate instead of entering it with a
negative weight, so the direction stays a descent direction.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import (
    Array,
    GradientTransformation,
    GradientTransformationExtraArgs,
    Params,
    ScalarOrSchedule,
    Updates,
    identity,
)
from optim_fn.core.numerics import safe_increment
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.transforms._combine import chain
from optim_fn.transforms._linesearch import tree_add_scaled, tree_real_vdot
from optim_fn.transforms._linesearch_zoom import scale_by_zoom_linesearch


class ScaleByLBFGSState(NamedTuple):
    """State of :func:`scale_by_lbfgs`.

    Attributes:
      count: updates so far.
      params: the params at the latest update.
      updates: the gradient at the latest update.
      diff_params_memory: the last ``m`` steps :math:`s_i = w_{i+1} - w_i`, stacked on a
        leading axis of size ``m`` (a ring buffer).
      diff_updates_memory: the matching :math:`y_i = g_{i+1} - g_i`.
      weights_memory: :math:`\\rho_i = 1 / \\langle s_i, y_i \\rangle` (0 for an empty slot
        or a pair left out).
    """

    count: Array
    params: Params
    updates: Updates
    diff_params_memory: Any
    diff_updates_memory: Any
    weights_memory: Array


def _slot(tree: Any, index: Array) -> Any:
    return jax.tree.map(lambda x: x[index], tree)


def _two_loop(grad, s_memory, y_memory, rho, gamma, newest):
    """``H g`` by the two-loop recursion (Nocedal & Wright, Algorithm 7.4).

    ``H`` is the L-BFGS inverse Hessian built from the pairs in memory, starting from
    ``gamma * I``; slots with ``rho = 0`` are inert.
    """
    m = rho.shape[0]
    newest_first = (newest - jnp.arange(m)) % m

    def backward(q, i):
        alpha = rho[i] * tree_real_vdot(_slot(s_memory, i), q)
        return tree_add_scaled(q, -alpha, _slot(y_memory, i)), alpha

    q, alphas = jax.lax.scan(backward, grad, newest_first)
    r = jax.tree.map(lambda x: (gamma * x).astype(x.dtype), q)

    def forward(r, index_alpha):
        i, alpha = index_alpha
        beta = rho[i] * tree_real_vdot(_slot(y_memory, i), r)
        return tree_add_scaled(r, alpha - beta, _slot(s_memory, i)), None

    r, _ = jax.lax.scan(forward, r, (newest_first[::-1], alphas[::-1]))
    return r


@checks_once
def scale_by_lbfgs(
    memory_size: int = 10, scale_init_precond: bool = True
) -> GradientTransformationExtraArgs:
    """Multiplies the gradient by the L-BFGS estimate of the inverse Hessian.

    With the last ``m = memory_size`` pairs :math:`s_i = w_{i+1} - w_i`,
    :math:`y_i = g_{i+1} - g_i` and :math:`\\rho_i = 1/\\langle s_i, y_i\\rangle`:

    .. math::
        H_{i+1} = (I - \\rho_i s_i y_i^\\top) H_i (I - \\rho_i y_i s_i^\\top)
        + \\rho_i s_i s_i^\\top, \\qquad H_0 = \\gamma I

    and the output is :math:`H g`, computed by the two-loop recursion without forming
    :math:`H`. With ``scale_init_precond``, :math:`\\gamma = \\langle s, y\\rangle /
    \\langle y, y\\rangle` of the newest pair (Nocedal & Wright eq. 7.20), and
    :math:`\\min(1, 1/\\|g\\|)` at the first step (optax's choice, a unit first step);
    otherwise :math:`\\gamma = 1`. Needs ``params``. Memory: ``2 m + 2`` copies of the
    params. References: Liu & Nocedal, Math. Programming 45 (1989); Nocedal & Wright,
    Numerical Optimization (2006), Algorithms 7.4 and 7.5.
    """
    if isinstance(memory_size, bool) or not isinstance(memory_size, int) or memory_size < 1:
        raise ValueError(f"scale_by_lbfgs: `memory_size` must be an int >= 1, got {memory_size!r}")

    def init(params: Params) -> ScaleByLBFGSState:
        stacked = jax.tree.map(
            lambda p: jnp.zeros((memory_size,) + jnp.shape(p), jnp.asarray(p).dtype), params
        )
        zeros = jax.tree.map(jnp.zeros_like, params)
        real = jnp.promote_types(
            jnp.finfo(jnp.result_type(*jax.tree.leaves(params))).dtype, jnp.float32
        )
        return ScaleByLBFGSState(
            count=jnp.zeros([], jnp.int32),
            params=zeros,
            updates=zeros,
            diff_params_memory=stacked,
            diff_updates_memory=stacked,
            weights_memory=jnp.zeros([memory_size], real),
        )

    def update(updates: Updates, state: ScaleByLBFGSState, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "scale_by_lbfgs needs the params: call `update(grads, state, params)`"
            )
        first = state.count == 0
        newest = (state.count - 1) % memory_size
        s = jax.tree.map(lambda a, b: (a - b).astype(a.dtype), params, state.params)
        y = jax.tree.map(lambda a, b: (a - b).astype(a.dtype), updates, state.updates)
        sy = tree_real_vdot(s, y)
        keep = ~first & (sy > 0)
        rho = jnp.where(keep, 1 / jnp.where(keep, sy, 1), 0).astype(state.weights_memory.dtype)
        s_memory = jax.tree.map(
            lambda mem, x: mem.at[newest].set(jnp.where(keep, x, 0).astype(mem.dtype)),
            state.diff_params_memory, s,
        )
        y_memory = jax.tree.map(
            lambda mem, x: mem.at[newest].set(jnp.where(keep, x, 0).astype(mem.dtype)),
            state.diff_updates_memory, y,
        )
        weights = state.weights_memory.at[newest].set(rho)
        if scale_init_precond:
            yy = tree_real_vdot(y, y)
            gamma = jnp.where(keep & (yy > 0), sy / jnp.where(yy > 0, yy, 1), 1.0)
            grad_norm = jnp.sqrt(tree_real_vdot(updates, updates))
            gamma = jnp.where(first, jnp.minimum(1.0, 1.0 / grad_norm), gamma)
        else:
            gamma = jnp.ones([], state.weights_memory.dtype)
        direction = _two_loop(updates, s_memory, y_memory, weights, gamma, newest)
        return direction, ScaleByLBFGSState(
            count=safe_increment(state.count),
            params=jax.tree.map(lambda p, old: p.astype(old.dtype), params, state.params),
            updates=jax.tree.map(lambda g, old: g.astype(old.dtype), updates, state.updates),
            diff_params_memory=s_memory,
            diff_updates_memory=y_memory,
            weights_memory=weights,
        )

    return GradientTransformationExtraArgs(init, update)


_DEFAULT = object()


@checks_once
def lbfgs(
    learning_rate: ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: GradientTransformation | None = _DEFAULT,  # type: ignore[assignment]
    *,
    has_aux: bool = False,
) -> GradientTransformationExtraArgs:
    """L-BFGS with a line search: ``w <- w - eta H g``.

    ``H g`` comes from :func:`scale_by_lbfgs`; the step ``eta`` from ``linesearch``,
    by default ``scale_by_zoom_linesearch(max_linesearch_steps=20,
    initial_guess_strategy="one")`` (strong Wolfe conditions, which keep
    :math:`\\langle s, y\\rangle > 0`). ``linesearch=None`` means no line search (use a
    ``learning_rate`` then). ``learning_rate`` (default None: 1) scales the direction
    before the line search. ``update`` takes optax's extra arguments ``value=``,
    ``grad=`` and ``value_fn=`` (see :mod:`optim_fn.transforms._linesearch`); ``has_aux=True`` when
    ``value_fn`` returns ``(loss, aux)`` (only for the default line search: build your
    own with ``has_aux=True``). Defaults as :func:`optax.lbfgs`.
    """
    if linesearch is _DEFAULT:
        linesearch = scale_by_zoom_linesearch(
            max_linesearch_steps=20, initial_guess_strategy="one", has_aux=has_aux
        )
    elif has_aux:
        raise ValueError(
            "lbfgs: `has_aux=True` applies to the default line search; build yours with "
            "has_aux=True (e.g. scale_by_zoom_linesearch(20, has_aux=True)) and leave "
            "lbfgs's has_aux False"
        )
    if linesearch is None:
        linesearch = identity()
    step = classic.scale_by_learning_rate(1.0 if learning_rate is None else learning_rate)
    return chain(scale_by_lbfgs(memory_size, scale_init_precond), step, linesearch)
