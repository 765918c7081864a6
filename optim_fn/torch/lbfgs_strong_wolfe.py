"""torch's strong-Wolfe line search for ``LBFGS(line_search_fn="strong_wolfe")``.

Same decisions, in the same order, as ``torch.optim.lbfgs._strong_wolfe`` (itself a port
of Torch7's ``lswolfe.lua``): a bracketing phase that extrapolates with safeguarded cubic
interpolation, then a zoom phase that shrinks the bracket. Scalars (steps, losses,
directional derivatives) are host floats because every test on them steers Python control
flow; only the gradients stay arrays. ``tolerance_change`` here is torch's fixed 1e-9, not
the optimizer's argument (torch does not pass that one through).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp


def cubic_interpolate(
    x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
    bounds: tuple[float, float] | None = None,
) -> float:
    """Minimizer of the cubic through ``(x1, f1, f1'=g1)`` and ``(x2, f2, f2'=g2)``.

    With :math:`d_1 = g_1 + g_2 - 3 (f_1 - f_2)/(x_1 - x_2)` and
    :math:`d_2 = \\sqrt{d_1^2 - g_1 g_2}`, the minimizer measured from the larger point
    :math:`x_2` is :math:`x_2 - (x_2 - x_1)(g_2 + d_2 - d_1)/(g_2 - g_1 + 2 d_2)`, clipped to
    ``bounds`` (default: the interval between the points). Without a real minimizer
    (:math:`d_1^2 < g_1 g_2`) it returns the middle of the bounds.
    """
    if bounds is not None:
        lo, hi = bounds
    else:
        lo, hi = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(min_pos, lo), hi)


def strong_wolfe(
    obj_func: Callable[[Any, float, Any], tuple[float, Any]],
    x: Any, t: float, d: Any, f: float, g: Any, gtd: float,
    c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9, max_ls: int = 25,
) -> tuple[float, Any, float, int]:
    """Step ``t`` along ``d`` from ``x`` meeting the strong Wolfe conditions.

    Sufficient decrease :math:`f(x + t d) \\le f + c_1 t\\, g^T d` and curvature
    :math:`|\\nabla f(x + t d)^T d| \\le -c_2\\, g^T d` (Nocedal & Wright, 2006, Alg. 3.5-3.6),
    with at most ``max_ls`` evaluations after the first. ``obj_func(x, t, d)`` returns the
    loss and gradient at ``x + t d``. Returns ``(loss, grad, t, evaluations)`` at the best
    point found, as torch.
    """
    d_norm = float(jnp.max(jnp.abs(d)))
    f_new, g_new = obj_func(x, t, d)
    evals = 1
    gtd_new = float(jnp.dot(g_new, d))

    # Bracketing: extrapolate until an interval is known to hold an acceptable step.
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    bracket = bracket_f = bracket_g = bracket_gtd = None
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        t_old = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                              bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = t_old, f_new, g_new, gtd_new
        f_new, g_new = obj_func(x, t, d)
        evals += 1
        gtd_new = float(jnp.dot(g_new, d))
        ls_iter += 1

    if ls_iter == max_ls:
        # torch keeps its last bracket_gtd here; the zoom below cannot run, so it is unused.
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # Zoom: shrink the bracket around a point meeting both conditions.
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                              bracket[1], bracket_f[1], bracket_gtd[1])
        # A trial hugging an end of the bracket makes little progress: after two such
        # trials in a row (or one outside the bracket) move it 10% of the width inside.
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new = obj_func(x, t, d)
        evals += 1
        gtd_new = float(jnp.dot(g_new, d))
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], evals
