"""``torch.optim.LBFGS`` (without line search) with PyTorch's numbers.

torch's LBFGS runs up to ``max_iter`` inner iterations per ``step(closure)``, re-evaluating
the loss between them, with data-dependent stopping tests. This port keeps that control
flow in Python, so ``update`` runs eagerly (not under ``jax.jit``), as torch's step does;
the loss function is an extra argument: ``update(grads, state, params, loss_fn=f)`` with
``f(params) -> scalar loss`` (``grads`` are those of ``f`` at ``params``, or None).
The update returned is ``new_params - params``. ``line_search_fn="strong_wolfe"`` runs
torch's strong-Wolfe line search (``lbfgs_strong_wolfe``) instead of the fixed step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from optim_fn.core.base import GradientTransformationExtraArgs
from optim_fn.torch.lbfgs_strong_wolfe import strong_wolfe
from optim_fn.torch.porting import torch_optimizer


class LBFGSState(NamedTuple):
    """torch's ``state[params[0]]``: direction, step, history and counters."""

    d: Any = None
    t: Any = None
    old_dirs: tuple = ()
    old_stps: tuple = ()
    ro: tuple = ()
    H_diag: Any = None  # noqa: N815 - torch's name
    prev_flat_grad: Any = None
    prev_loss: Any = None
    n_iter: int = 0
    func_evals: int = 0
    loss: Any = None


@torch_optimizer
def LBFGS(  # noqa: N802 - torch's class name
    lr: float = 1,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> GradientTransformationExtraArgs:
    """``torch.optim.LBFGS`` (Nocedal 1980; Liu & Nocedal 1989), fixed step ``lr`` or strong Wolfe.

    Two-loop recursion over the last ``history_size`` pairs
    :math:`(s_i, y_i)` with :math:`y_i^T s_i > 10^{-10}`, initial scaling
    :math:`H_0 = y^T s / y^T y`; the first iteration's step is
    :math:`\\min(1, 1/\\|g\\|_1)\\,\\eta`. Stops as torch on ``max_iter``, ``max_eval``
    (default ``max_iter * 5 // 4``), ``tolerance_grad`` (max |g|) and ``tolerance_change``.
    With ``line_search_fn="strong_wolfe"`` that step is only the line search's first trial
    (torch's ``_strong_wolfe``: c1=1e-4, c2=0.9, cubic interpolation, at most the evaluations
    left in ``max_eval``). Defaults as torch. The step's first loss is kept in ``state.loss``.
    """
    if line_search_fn not in (None, "strong_wolfe"):
        raise ValueError(
            f"LBFGS: `line_search_fn`={line_search_fn!r} is not supported; use None or "
            "'strong_wolfe' (as torch)"
        )
    if max_eval is None:
        max_eval = max_iter * 5 // 4

    def init(params):
        del params
        return LBFGSState()

    def update(grads, state, params=None, *, loss_fn: Callable[[Any], Any] | None = None,
               **extra_args):
        del grads, extra_args
        if loss_fn is None or params is None:
            raise ValueError(
                "LBFGS needs the params and the loss: call "
                "`update(grads, state, params, loss_fn=lambda p: loss(p))`"
            )
        flat, unravel = ravel_pytree(params)
        value_and_grad = jax.jit(jax.value_and_grad(lambda x: loss_fn(unravel(x))))
        x = flat

        def directional_evaluate(x0, step, direction):
            loss_at, grad_at = value_and_grad(x0 + step * direction)
            return float(loss_at), grad_at

        loss, g = value_and_grad(x)
        orig_loss = loss
        s = state._asdict()
        s["func_evals"] += 1
        current_evals = 1
        if float(jnp.max(jnp.abs(g))) <= tolerance_grad:
            return jax.tree.map(jnp.zeros_like, params), LBFGSState(**{**s, "loss": orig_loss})
        d, t = s["d"], s["t"]
        dirs, stps, ro = list(s["old_dirs"]), list(s["old_stps"]), list(s["ro"])
        h_diag, prev_g, prev_loss = s["H_diag"], s["prev_flat_grad"], s["prev_loss"]
        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            s["n_iter"] += 1
            if s["n_iter"] == 1:
                d, dirs, stps, ro, h_diag = -g, [], [], [], 1.0
            else:
                y = g - prev_g
                step = d * t
                ys = jnp.dot(y, step)
                if float(ys) > 1e-10:
                    if len(dirs) == history_size:
                        dirs.pop(0), stps.pop(0), ro.pop(0)
                    dirs.append(y), stps.append(step), ro.append(1.0 / ys)
                    h_diag = ys / jnp.dot(y, y)
                q = -g
                alphas = [None] * len(dirs)
                for i in range(len(dirs) - 1, -1, -1):
                    alphas[i] = jnp.dot(stps[i], q) * ro[i]
                    q = q - alphas[i] * dirs[i]
                d = r = q * h_diag
                for i in range(len(dirs)):
                    beta = jnp.dot(dirs[i], r) * ro[i]
                    r = r + stps[i] * (alphas[i] - beta)
                d = r
            prev_g, prev_loss = g, loss
            if s["n_iter"] == 1:
                t = min(1.0, 1.0 / float(jnp.sum(jnp.abs(g)))) * lr
            else:
                t = lr
            gtd = jnp.dot(g, d)
            if float(gtd) > -tolerance_change:
                break
            if line_search_fn == "strong_wolfe":
                loss, g, t, evals = strong_wolfe(
                    directional_evaluate, x, t, d, float(loss), g, float(gtd),
                    max_ls=max_eval - current_evals,
                )
                x = x + t * d
            else:
                x = x + t * d
                evals = 0
                if n_iter != max_iter:
                    loss, g = value_and_grad(x)
                    evals = 1
            current_evals += evals
            s["func_evals"] += evals
            if n_iter == max_iter or current_evals >= max_eval:
                break
            if float(jnp.max(jnp.abs(g))) <= tolerance_grad:
                break
            if float(jnp.max(jnp.abs(d * t))) <= tolerance_change:
                break
            if abs(float(loss) - float(prev_loss)) < tolerance_change:
                break
        new_state = LBFGSState(
            d=d, t=t, old_dirs=tuple(dirs), old_stps=tuple(stps), ro=tuple(ro), H_diag=h_diag,
            prev_flat_grad=prev_g, prev_loss=prev_loss, n_iter=s["n_iter"],
            func_evals=s["func_evals"], loss=orig_loss,
        )
        return jax.tree.map(lambda a, b: a - b, unravel(x), params), new_state

    return GradientTransformationExtraArgs(init, update)
