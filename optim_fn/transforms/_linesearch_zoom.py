"""The zoom line search: a step satisfying the strong Wolfe conditions.

Bracketing then zooming with cubic/quadratic interpolation (Nocedal & Wright, Numerical
Optimization, Algorithms 3.5 and 3.6), with Hager & Zhang's approximate Wolfe decrease
near a minimum (CG_DESCENT, ACM TOMS 2006). The calling convention (``value=``,
``grad=``, ``value_fn=``, ``has_aux``) is described in :mod:`optim_fn.transforms._linesearch`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import Array, GradientTransformationExtraArgs, Params, Updates
from optim_fn.core.validation import checks_once
from optim_fn.transforms._linesearch import (
    check_call,
    check_count,
    finite_or_inf,
    real_dtype,
    report_failure,
    scalar_loss,
    split_fn_kwargs,
    tree_add_scaled,
    tree_real_vdot,
)


def _cubic_minimizer(a, fa, fpa, b, fb, c, fc):
    """Critical point of the cubic through (a, fa), (b, fb), (c, fc) with slope fpa at a.

    NaN when it has none (then the caller falls back to a quadratic or bisection).
    """
    db, dc = b - a, c - a
    rb, rc = fb - fa - fpa * db, fc - fa - fpa * dc
    denominator = (db * dc) ** 2 * (db - dc)
    cubic = (dc**2 * rb - db**2 * rc) / denominator
    square = (-(dc**3) * rb + db**3 * rc) / denominator
    radical = square * square - 3 * cubic * fpa
    return a + (-square + jnp.sqrt(radical)) / (3 * cubic)


def _quadratic_minimizer(a, fa, fpa, b, fb):
    """Critical point of the quadratic through (a, fa), (b, fb) with slope fpa at a."""
    db = b - a
    curvature = (fb - fa - fpa * db) / (db * db)
    return a - fpa / (2 * curvature)


class ZoomLinesearchInfo(NamedTuple):
    """Diagnostics of a zoom search: evaluations, and the errors of the two criteria at
    the accepted step (0 when satisfied)."""

    num_linesearch_steps: Array
    decrease_error: Array
    curvature_error: Array


class ScaleByZoomLinesearchState(NamedTuple):
    """State of :func:`scale_by_zoom_linesearch`.

    Attributes:
      learning_rate: the step size accepted at the latest update.
      value: the loss at the accepted point (reusable with value_and_grad_from_state).
      grad: the gradient there.
      info: diagnostics of the latest search.
    """

    learning_rate: Array
    value: Array
    grad: Updates
    info: ZoomLinesearchInfo


class _Point(NamedTuple):
    step: Array
    value: Array
    slope: Array


class _Search(NamedTuple):
    evaluations: Array
    bracketed: Array
    done: Array
    failed: Array
    current: _Point
    grad: Any
    decrease_error: Array
    curvature_error: Array
    low: _Point
    high: _Point
    reference: _Point  # third point for the cubic fit
    safe: _Point  # best point with sufficient decrease seen (step 0: none)
    safe_grad: Any


@checks_once
def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: float | None = None,
    tol: float = 0.0,
    increase_factor: float = 2.0,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: float | None = 1e-6,
    stepsize_precision: float = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
    has_aux: bool = False,
) -> GradientTransformationExtraArgs:
    """Scales the update ``u`` by a step ``eta`` satisfying the strong Wolfe conditions.

    .. math::
        f(w + \\eta u) \\le f(w) + c_1 \\eta \\langle u, \\nabla f(w) \\rangle, \\qquad
        |\\langle u, \\nabla f(w + \\eta u) \\rangle| \\le c_2 |\\langle u, \\nabla f(w)
        \\rangle|

    with ``c_1 = slope_rtol``, ``c_2 = curv_rtol``, up to ``tol``. Near a minimum, where
    float rounding makes the first (Armijo) condition unreliable, Hager & Zhang's
    approximate decrease :math:`\\langle u, \\nabla f(w+\\eta u)\\rangle \\le (2 c_1 - 1)
    \\langle u, \\nabla f(w)\\rangle` is accepted instead when
    :math:`f(w+\\eta u) \\le f(w) + \\text{approx\\_dec\\_rtol}\\,|f(w)|` (``None``
    disables it).

    The search grows the step by ``increase_factor`` (from 1, or from the previous step
    with ``initial_guess_strategy="keep"``, capped at ``max_learning_rate``) until it
    brackets an acceptable step, then shrinks the bracket with cubic or quadratic
    interpolation (bisection as a fallback), at most ``max_linesearch_steps``
    evaluations in all. If it runs out, or the bracket becomes narrower than
    ``stepsize_precision``, it takes the lowest point found with sufficient decrease.
    Each evaluation computes the loss and its gradient once; the accepted point's are
    kept in the state. ``verbose=True`` prints (also under jit) when the search fails
    and which point it falls back to. References: Nocedal & Wright (2006), Algorithms 3.5 and 3.6;
    Hager & Zhang, ACM TOMS 32 (2006).
    """
    where = "scale_by_zoom_linesearch"
    check_count(where, "max_linesearch_steps", max_linesearch_steps)
    if initial_guess_strategy not in ("one", "keep"):
        raise ValueError(
            f"{where}: `initial_guess_strategy` must be 'one' or 'keep', "
            f"got {initial_guess_strategy!r}"
        )
    if not 0 < slope_rtol < curv_rtol < 1:
        raise ValueError(
            f"{where}: need 0 < slope_rtol < curv_rtol < 1, got slope_rtol={slope_rtol}, "
            f"curv_rtol={curv_rtol}"
        )
    if increase_factor <= 1:
        raise ValueError(f"{where}: `increase_factor` must be > 1, got {increase_factor}")

    def init(params: Params) -> ScaleByZoomLinesearchState:
        dtype = real_dtype(params)
        return ScaleByZoomLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=jnp.asarray(jnp.inf, dtype),
            grad=jax.tree.map(jnp.zeros_like, params),
            info=ZoomLinesearchInfo(
                jnp.zeros([], jnp.int32), jnp.asarray(jnp.inf, dtype), jnp.asarray(jnp.inf, dtype)
            ),
        )

    def update(updates: Updates, state, params=None, *, value=None, grad=None,
               value_fn=None, **extra_args):
        check_call(where, params, value, grad, value_fn)
        loss = scalar_loss(where, value_fn, has_aux, split_fn_kwargs(where, value_fn, extra_args))
        value_and_grad = jax.value_and_grad(loss)
        # The state's dtype is the params' (a step size set as a Python float included).
        dtype = real_dtype(params)
        grad = jax.tree.map(lambda g, p: jnp.asarray(g).astype(p.dtype), grad, state.grad)
        value0 = jnp.asarray(value).astype(dtype)
        slope0 = tree_real_vdot(updates, grad).astype(dtype)
        guess = (
            jnp.ones([], dtype)
            if initial_guess_strategy == "one"
            else jnp.asarray(state.learning_rate, dtype)
        )
        # A previous search that found nothing leaves 0; growing from 0 would stay at 0.
        guess = jnp.where(guess > 0, guess, 1.0).astype(dtype)
        if max_learning_rate is not None:
            guess = jnp.minimum(guess, max_learning_rate)

        def decrease_error(step, new_value, new_slope):
            error = new_value - value0 - slope_rtol * step * slope0
            if approx_dec_rtol is not None:
                approximate = jnp.maximum(
                    new_slope - (2 * slope_rtol - 1) * slope0,
                    new_value - value0 - approx_dec_rtol * jnp.abs(value0),
                )
                error = jnp.minimum(error, approximate)
            return finite_or_inf(jnp.maximum(error, 0.0))

        def curvature_error(new_slope):
            return finite_or_inf(jnp.maximum(jnp.abs(new_slope) - curv_rtol * jnp.abs(slope0), 0))

        def next_step(s: _Search) -> Array:
            grown = jnp.where(s.evaluations == 0, guess, increase_factor * s.current.step)
            if max_learning_rate is not None:
                grown = jnp.minimum(grown, max_learning_rate)
            low, high, ref = s.low, s.high, s.reference
            width = jnp.abs(high.step - low.step)
            left, right = jnp.minimum(low.step, high.step), jnp.maximum(low.step, high.step)
            cubic = _cubic_minimizer(low.step, low.value, low.slope, high.step, high.value,
                                     ref.step, ref.value)
            quadratic = _quadratic_minimizer(low.step, low.value, low.slope, high.step,
                                             high.value)
            use_cubic = (cubic > left + 0.2 * width) & (cubic < right - 0.2 * width)
            use_quadratic = (quadratic > left + 0.1 * width) & (quadratic < right - 0.1 * width)
            inner = jnp.where(
                use_cubic, cubic, jnp.where(use_quadratic, quadratic, (low.step + high.step) / 2)
            )
            return jnp.where(s.bracketed, inner, grown).astype(dtype)

        def body(s: _Search) -> _Search:
            step = next_step(s)
            new_value, new_grad = value_and_grad(tree_add_scaled(params, step, updates))
            new_grad = jax.tree.map(lambda g, p: g.astype(p.dtype), new_grad, grad)
            new_value = new_value.astype(dtype)
            new_slope = tree_real_vdot(new_grad, updates).astype(dtype)
            new = _Point(step, new_value, new_slope)
            dec, curv = decrease_error(step, new_value, new_slope), curvature_error(new_slope)
            wolfe = jnp.maximum(dec, curv) <= tol
            safer = (dec <= tol) & (new_value < s.safe.value)
            safe = _select(safer, new, s.safe)
            safe_grad = _select(safer, new_grad, s.safe_grad)

            # Bracketing (N&W Algorithm 3.5): the previous point is s.current.
            higher = (dec > 0) | ((s.evaluations > 0) & (new_value >= s.current.value))
            past_minimum = ~higher & (new_slope >= 0)
            found = higher | past_minimum
            at_cap = (
                jnp.zeros([], bool) if max_learning_rate is None else step >= max_learning_rate
            )
            bracket_low = _select(higher, s.current, new)
            bracket_high = _select(higher, new, s.current)

            # Zooming (N&W Algorithm 3.6) inside [low, high].
            zoom_higher = (dec > 0) | (new_value >= s.low.value)
            flip = ~zoom_higher & (new_slope * (s.high.step - s.low.step) >= 0)
            zoom_low = _select(zoom_higher, s.low, new)
            zoom_high = _select(zoom_higher, new, _select(flip, s.low, s.high))
            zoom_reference = _select(zoom_higher | flip, s.high, s.low)
            narrow = (jnp.abs(s.high.step - s.low.step) <= stepsize_precision) & (
                s.safe.step > 0
            )

            low = _select(s.bracketed, zoom_low, bracket_low)
            high = _select(s.bracketed, zoom_high, bracket_high)
            reference = _select(s.bracketed, zoom_reference, bracket_low)
            done = wolfe | (~s.bracketed & at_cap & ~found)
            evaluations = s.evaluations + 1
            failed = ~done & ((evaluations >= max_linesearch_steps) | (s.bracketed & narrow))
            return _Search(
                evaluations=evaluations,
                bracketed=s.bracketed | found,
                done=done,
                failed=failed,
                current=new,
                grad=new_grad,
                decrease_error=dec,
                curvature_error=curv,
                low=low,
                high=high,
                reference=reference,
                safe=safe,
                safe_grad=safe_grad,
            )

        origin = _Point(jnp.zeros([], dtype), value0, slope0)
        start = _Search(
            evaluations=jnp.zeros([], jnp.int32),
            bracketed=jnp.zeros([], bool),
            done=jnp.zeros([], bool),
            failed=jnp.zeros([], bool),
            current=origin,
            grad=grad,
            decrease_error=jnp.asarray(jnp.inf, dtype),
            curvature_error=jnp.asarray(jnp.inf, dtype),
            low=origin,
            high=origin,
            reference=origin,
            safe=_Point(jnp.zeros([], dtype), jnp.asarray(jnp.inf, dtype), slope0),
            safe_grad=grad,
        )
        end = jax.lax.while_loop(lambda s: ~(s.done | s.failed), body, start)

        # On failure: the best point with sufficient decrease, else (no such point) the
        # last one unless its loss is not finite, in which case no step at all.
        use_safe = end.failed & (end.safe.step > 0)
        stay = end.failed & ~use_safe & jnp.isinf(end.decrease_error)
        point = _select(use_safe, end.safe, end.current)
        point = _select(stay, origin, point)
        if verbose:
            _report(where, end, point, origin, tol, max_linesearch_steps)
        final_grad = _select(use_safe, end.safe_grad, _select(stay, grad, end.grad))
        scaled = jax.tree.map(lambda u: (point.step * u).astype(u.dtype), updates)
        return scaled, ScaleByZoomLinesearchState(
            learning_rate=point.step,
            value=point.value,
            grad=final_grad,
            info=ZoomLinesearchInfo(end.evaluations, end.decrease_error, end.curvature_error),
        )

    return GradientTransformationExtraArgs(init, update)


# The reasons a search ends without meeting the strong Wolfe conditions, in optax's words
# (so that logs read the same whichever library ran the search).
NOT_A_DESCENT_DIRECTION = (
    "The linesearch failed because the provided direction is not a descent direction. "
    "Pass updates u with <u, grad> < 0 (e.g. -grad)."
)
NO_STEPSIZE_FOUND = "Linesearch failed, no stepsize satisfying sufficient decrease found."
INTERVAL_NOT_FOUND = (
    "No interval satisfying curvature condition. "
    "Consider increasing maximal possible stepsize of the linesearch."
)
CURVATURE_COND_NOT_SATISFIED = (
    "Returning stepsize with sufficient decrease but curvature condition not satisfied."
)
INTERVAL_TOO_SMALL = "Length of searched interval has been reduced below threshold."


def _report(where: str, end: _Search, point: _Point, origin: _Point, tol: float,
            max_steps: int) -> None:
    """Prints (also under jit) why the search did not meet the strong Wolfe conditions."""
    prefix = (
        f"{where}: no step met the strong Wolfe conditions in {{evaluations}} evaluations "
        "(decrease error {decrease}, curvature error {curvature}); taking step {step}. "
    )
    values = dict(
        evaluations=end.evaluations,
        decrease=end.decrease_error,
        curvature=end.curvature_error,
        step=point.step,
    )
    unmet = jnp.maximum(end.decrease_error, end.curvature_error) > tol
    # Stopped at max_learning_rate before bracketing: it decreases, but not enough slope.
    capped = end.done & unmet
    sufficient = end.safe.step > 0
    narrow = end.failed & (end.evaluations < max_steps)
    reasons = (
        (unmet & (origin.slope >= 0), NOT_A_DESCENT_DIRECTION),
        (end.failed & ~sufficient, NO_STEPSIZE_FOUND),
        (capped, f"{INTERVAL_NOT_FOUND} {CURVATURE_COND_NOT_SATISFIED}"),
        (narrow, f"{INTERVAL_TOO_SMALL} {CURVATURE_COND_NOT_SATISFIED}"),
        (end.failed & sufficient & ~narrow, CURVATURE_COND_NOT_SATISFIED),
    )
    for when, reason in reasons:
        report_failure(when, prefix + reason, **values)


def _select(flag: Array, if_true: Any, if_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), if_true, if_false)
