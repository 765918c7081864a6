"""Line searches: a step size along the update direction, from evaluations of the loss.

Both follow optax's calling convention: the transform's ``update`` takes the extra
keyword arguments ``value`` (the loss at ``params``), ``grad`` (its gradient) and
``value_fn`` (the loss as a function of the params; any further keyword arguments of
``update`` that ``value_fn`` accepts are passed on to it, e.g. a batch)::

    solver = optim_fn.chain(optim_fn.sgd(1.0),
                            optim_fn.scale_by_backtracking_linesearch(max_backtracking_steps=15))
    value, grad = jax.value_and_grad(loss)(params, batch)
    updates, state = solver.update(grad, state, params, value=value, grad=grad,
                                   value_fn=loss, batch=batch)

With ``has_aux=True``, ``value_fn`` returns ``(loss, aux)`` like a function given to
``jax.value_and_grad(..., has_aux=True)``; the search uses the loss only.

* :func:`scale_by_backtracking_linesearch`: Armijo's sufficient decrease, shrinking the
  step geometrically (Nocedal & Wright, Numerical Optimization, Algorithm 3.1).
* :func:`~optim_fn.transforms.scale_by_zoom_linesearch` (in
  :mod:`optim_fn.transforms._linesearch_zoom`): the strong Wolfe conditions, by bracketing and
  zooming with cubic/quadratic interpolation (Nocedal & Wright, Algorithms 3.5 and 3.6),
  with Hager & Zhang's approximate Wolfe decrease near a minimum (CG_DESCENT, 2006).

Both keep the value and gradient at the accepted point in their state, so
:func:`value_and_grad_from_state` can reuse them at the next iteration. Keywords and
defaults are optax's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import Array, GradientTransformationExtraArgs, Params, Updates
from optim_fn.core.validation import checks_once
from optim_fn.tree._math import tree_accumulation_dtype as real_dtype
from optim_fn.tree._math import tree_add_scaled, tree_real_vdot

# ----------------------------------------------------------------------------------------
# Tree arithmetic shared with L-BFGS.








# ----------------------------------------------------------------------------------------
# The loss function and its keyword arguments.


def split_fn_kwargs(where: str, value_fn: Callable, extra_args: dict) -> dict:
    """The extra arguments ``value_fn`` accepts; raises naming any it does not."""
    try:
        parameters = inspect.signature(value_fn).parameters
    except (TypeError, ValueError):
        return dict(extra_args)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(extra_args)
    unused = sorted(k for k in extra_args if k not in parameters)
    if unused:
        raise TypeError(
            f"{where}: extra arguments {unused} are not parameters of `value_fn`; pass "
            "only arguments the loss function takes (e.g. the batch)"
        )
    return dict(extra_args)


def scalar_loss(where: str, value_fn: Callable, has_aux: bool, fn_kwargs: dict) -> Callable:
    """``params -> loss`` (a scalar), dropping ``aux`` when ``has_aux``."""

    def loss(params):
        out = value_fn(params, **fn_kwargs)
        if has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(
                    f"{where}: with has_aux=True `value_fn` must return (loss, aux), got "
                    f"{type(out).__name__}"
                )
            out = out[0]
        elif isinstance(out, tuple):
            raise TypeError(
                f"{where}: `value_fn` returned a tuple; if it returns (loss, aux), build "
                "the line search (or lbfgs) with has_aux=True"
            )
        out = jnp.asarray(out)
        if out.shape != ():
            raise TypeError(f"{where}: `value_fn` must return a scalar, got shape {out.shape}")
        return out

    return loss


def check_call(where: str, params, value, grad, value_fn) -> None:
    if params is None or value is None or grad is None or value_fn is None:
        raise ValueError(
            f"{where}: `update` needs params and the keyword arguments value= (the loss at "
            "params), grad= (its gradient) and value_fn= (the loss function): "
            "`update(grad, state, params, value=value, grad=grad, value_fn=loss)`"
        )


def finite_or_inf(x: Array) -> Array:
    return jnp.where(jnp.isnan(x), jnp.inf, x)


# ----------------------------------------------------------------------------------------
# Backtracking (Armijo).


class BacktrackingLinesearchInfo(NamedTuple):
    """Diagnostics: evaluations made, and the decrease error (0 when satisfied)."""

    num_linesearch_steps: Array
    decrease_error: Array


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """State of :func:`scale_by_backtracking_linesearch`.

    Attributes:
      learning_rate: the step size accepted at the latest update.
      value: the loss at the accepted point (reusable with value_and_grad_from_state).
      grad: the gradient there when ``store_grad=True``, else None.
      info: diagnostics of the latest search.
    """

    learning_rate: Array
    value: Array
    grad: Updates | None
    info: BacktrackingLinesearchInfo


@checks_once
def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: float = 1e-4,
    decrease_factor: float = 0.8,
    increase_factor: float = 1.5,
    max_learning_rate: float = 1.0,
    atol: float = 0.0,
    rtol: float = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
    has_aux: bool = False,
) -> GradientTransformationExtraArgs:
    """Scales the update ``u`` by a step ``eta`` with sufficient decrease (Armijo).

    .. math::
        f(w + \\eta u) \\le (1 + \\text{rtol}) f(w) + \\eta\\, c\\, \\langle u, \\nabla f(w)
        \\rangle + \\text{atol}

    with ``c = slope_rtol``. The first trial is ``min(increase_factor * eta_prev,
    max_learning_rate)``; each failure multiplies it by ``decrease_factor``, at most
    ``max_backtracking_steps`` times. If every trial gives a NaN or inf loss the step is
    0. ``u`` must be a descent direction (``<u, grad> < 0``), e.g. ``-grad``.
    ``store_grad=True`` also computes the gradient at the accepted point (one more
    evaluation) for :func:`value_and_grad_from_state`. ``verbose=True`` prints (also
    under jit) when no trial step satisfied the condition. Reference: Nocedal & Wright
    (2006), Algorithm 3.1; Vaswani et al., Painless SGD (2019).
    """
    where = "scale_by_backtracking_linesearch"
    check_count(where, "max_backtracking_steps", max_backtracking_steps)
    if not 0 < decrease_factor < 1:
        raise ValueError(f"{where}: `decrease_factor` must be in (0, 1), got {decrease_factor}")
    if increase_factor < 1:
        raise ValueError(f"{where}: `increase_factor` must be >= 1, got {increase_factor}")

    def init(params: Params) -> ScaleByBacktrackingLinesearchState:
        dtype = real_dtype(params)
        return ScaleByBacktrackingLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=jnp.asarray(jnp.inf, dtype),
            grad=jax.tree.map(jnp.zeros_like, params) if store_grad else None,
            info=BacktrackingLinesearchInfo(
                jnp.zeros([], jnp.int32), jnp.asarray(jnp.inf, dtype)
            ),
        )

    def update(updates: Updates, state, params=None, *, value=None, grad=None,
               value_fn=None, **extra_args):
        check_call(where, params, value, grad, value_fn)
        loss = scalar_loss(where, value_fn, has_aux, split_fn_kwargs(where, value_fn, extra_args))
        # The state's dtype is the params' (a step size set as a Python float included).
        dtype = real_dtype(params)
        value = jnp.asarray(value).astype(dtype)
        slope = tree_real_vdot(updates, grad).astype(dtype)

        def decrease_error(step, new_value):
            error = new_value - (1 + rtol) * value - step * slope_rtol * slope
            return jnp.maximum(finite_or_inf(error), 0.0)

        def trial(carry):
            step, _, _, evaluations = carry
            step = jnp.where(evaluations > 0, step * decrease_factor, step).astype(dtype)
            new_value = loss(tree_add_scaled(params, step, updates)).astype(dtype)
            return step, new_value, decrease_error(step, new_value), evaluations + 1

        def keep_going(carry):
            _, _, error, evaluations = carry
            return ~(error <= atol) & (evaluations <= max_backtracking_steps)

        # After a search that found nothing (step 0), start over from the largest step
        # rather than from 0 forever.
        previous = jnp.where(state.learning_rate > 0, state.learning_rate, max_learning_rate)
        first = jnp.minimum(increase_factor * previous, max_learning_rate)
        start = (first.astype(dtype), value, jnp.asarray(jnp.inf, dtype), jnp.zeros([], jnp.int32))
        step, new_value, error, evaluations = jax.lax.while_loop(keep_going, trial, start)
        if verbose:
            report_failure(
                ~(error <= atol),
                f"{where}: no step met the sufficient decrease in {{evaluations}} trials "
                "(decrease error {error}); taking step {step}",
                evaluations=evaluations,
                error=error,
                step=jnp.where(jnp.isinf(error), 0.0, step),
            )
        step = jnp.where(jnp.isinf(error), 0.0, step).astype(dtype)
        new_value = jnp.where(jnp.isinf(error), value, new_value)
        new_grad = None
        if store_grad:
            accepted = tree_add_scaled(params, step, updates)
            new_grad = jax.tree.map(lambda g, p: g.astype(p.dtype), jax.grad(loss)(accepted),
                                    state.grad)
        scaled = jax.tree.map(lambda u: (step * u).astype(u.dtype), updates)
        return scaled, ScaleByBacktrackingLinesearchState(
            learning_rate=step,
            value=new_value,
            grad=new_grad,
            info=BacktrackingLinesearchInfo(evaluations, error),
        )

    return GradientTransformationExtraArgs(init, update)


def report_failure(failed: Array, message: str, **values: Array) -> None:
    """Prints ``message`` (a ``jax.debug.print`` format) when ``failed``, also under jit."""
    jax.lax.cond(
        failed, lambda: jax.debug.print(message, **values), lambda: None
    )


def check_count(where: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: `{name}` must be an int >= 1, got {value!r}")


# ----------------------------------------------------------------------------------------
# Reusing the line search's last evaluation.


def _find_value_and_grad(state: Any) -> list[Any]:
    found = []

    def walk(node):
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            if "value" in node._fields and "grad" in node._fields:
                found.append(node)
                return
            for child in node:
                walk(child)
        elif isinstance(node, (tuple, list)):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            for child in node.values():
                walk(child)

    walk(state)
    return found


def value_and_grad_from_state(
    value_fn: Callable[..., Any], has_aux: bool = False
) -> Callable[..., Any]:
    """Like ``jax.value_and_grad(value_fn, has_aux)``, reusing the line search's evaluation.

    The returned function takes ``(params, *args, state=opt_state, **kwargs)``. When the
    line search in ``opt_state`` stored a finite loss (it evaluated the loss and gradient
    at the point it accepted, which are the new params), those are returned without
    recomputing the gradient; otherwise (first iteration) it calls
    ``jax.value_and_grad``. With ``has_aux=True`` it returns ``((loss, aux), grad)``;
    ``aux`` comes from one forward evaluation of ``value_fn`` (no gradient).
    Only valid for a deterministic loss (the same function at every iteration).
    """

    def value_and_grad(params: Params, *args: Any, state: Any, **kwargs: Any):
        holders = _find_value_and_grad(state)
        if len(holders) != 1 or holders[0].grad is None:
            message = (
                "value_and_grad_from_state: the optimizer state must hold exactly one line "
                "search state with a stored value and gradient (scale_by_zoom_linesearch, "
                "or scale_by_backtracking_linesearch with store_grad=True); found "
                f"{len(holders)}"
            )
            # Several: ambiguous, a KeyError as optax's (a lookup by name); none: the
            # state is the wrong kind, a ValueError as optax's.
            raise KeyError(message) if len(holders) > 1 else ValueError(message)
        stored_value, stored_grad = holders[0].value, holders[0].grad
        compute = jax.value_and_grad(value_fn, has_aux=has_aux)

        def recompute():
            out, g = compute(params, *args, **kwargs)
            g = jax.tree.map(lambda a, b: jnp.asarray(a).astype(b.dtype), g, stored_grad)
            # jnp.asarray: a loss may come back as a Python float (a constant function).
            if has_aux:
                return (jnp.asarray(out[0]).astype(stored_value.dtype), out[1]), g
            return jnp.asarray(out).astype(stored_value.dtype), g

        def reuse():
            if has_aux:
                return (stored_value, value_fn(params, *args, **kwargs)[1]), stored_grad
            return stored_value, stored_grad

        return jax.lax.cond(jnp.isfinite(stored_value), reuse, recompute)

    return value_and_grad
