"""``torch.optim.Adafactor`` with PyTorch's numbers.

torch's Adafactor differs from the paper's Algorithm (and from optax's
``scale_by_factored_rms``) enough that it is not an option of the shared rule: it
factors the LAST TWO axes of every param with more than one axis (row statistics of shape
``[..., m, 1]``, columns ``[..., 1, n]``), clamps (rather than adds) ``eps1``, uses the
relative step ``min(lr, 1/sqrt(t))`` times ``max(eps2, RMS(p))``, and clips the update by
``max(1, RMS(U)/d)``. Hence this module's own state layout.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core import hyperparams as hp
from optim_fn.core.base import (
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    compiled_when_eager,
)
from optim_fn.core.numerics import safe_increment
from optim_fn.tree._structure import check_params, flatten_matching


class AdafactorState(NamedTuple):
    count: jax.Array
    row_var: Any
    col_var: Any
    variance: Any
    hyperparams: hp.Hyperparams


def _lerp(start, end, weight):
    """torch.lerp's formula (two branches, for accuracy at both ends)."""
    diff = end - start
    return jnp.where(weight < 0.5, start + weight * diff, end - diff * (1 - weight))


def _fail(message: str, argument: str) -> None:
    raise ValueError(f"Adafactor: {message} (check `{argument}`)")


def Adafactor(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1e-2,
    beta2_decay: ScalarOrSchedule = -0.8,
    eps: tuple[float | None, ScalarOrSchedule] = (None, 1e-3),
    d: ScalarOrSchedule = 1.0,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
) -> GradientTransformationExtraArgs:
    """``torch.optim.Adafactor`` (Shazeer & Stern 2018, as implemented in torch 2.13).

    .. math::
        w_t = t^{\\text{beta2\\_decay}},\\ \\rho_t = \\min(\\eta, t^{-1/2}),\\
        \\alpha_t = \\max(\\epsilon_2, \\mathrm{RMS}(p))\\,\\rho_t;\\
        R_t = \\mathrm{lerp}(R, \\overline{g^2}_{\\text{row}}, w_t),\\
        C_t = \\mathrm{lerp}(C, \\overline{g^2}_{\\text{col}}, w_t),\\
        V = R_t C_t / \\max(\\overline{R_t}, \\epsilon_1)

    (1-D params: :math:`V_t = \\mathrm{lerp}(V, g^2, w_t)`);
    :math:`U = g / \\sqrt{\\max(V, \\epsilon_1^2)}`,
    :math:`p \\leftarrow p(1 - \\eta\\lambda) - \\alpha_t U / \\max(1, \\mathrm{RMS}(U)/d)`.
    ``eps1=None`` is the param dtype's machine epsilon. Defaults as torch (the real
    ``weight_decay`` default is 0.0). Real params only, as torch.
    """
    del foreach
    eps1, eps2 = eps
    for value, name, message in [
        (lr, "lr", "Learning rate should be >= 0 but is: {}"),
        (eps2, "eps[1]", "epsilon2 should be >= 0 but is: {}"),
        (weight_decay, "weight_decay", "weight_decay should be >= 0 but is: {}"),
    ]:
        if not callable(value) and not 0.0 <= float(value):
            _fail(message.format(value), name)
    if not callable(beta2_decay) and not float(beta2_decay) <= 0.0:
        _fail(f"beta2_decay should be <= 0 but is: {beta2_decay}", "beta2_decay")
    if eps1 is not None and not 0.0 <= float(eps1):
        _fail(f"epsilon1 should be >= 0 but is: {eps1}", "eps[0]")
    if not callable(d) and not 1.0 <= float(d):
        _fail(f"Clipping threshold d should be >= 1 but is: {d}", "d")
    specs = {"lr": lr, "beta2_decay": beta2_decay, "eps2": eps2, "d": d,
             "weight_decay": weight_decay}
    if eps1 is not None:
        specs["eps1"] = eps1
    where = "Adafactor"

    def init(params):
        check_params(params, where)
        for leaf in jax.tree.leaves(params):
            if jnp.iscomplexobj(leaf):
                raise ValueError("Adafactor does not support complex parameters (`params`)")

        def row(p):
            return jnp.zeros((*p.shape[:-1], 1), p.dtype) if p.ndim > 1 else jnp.zeros([], p.dtype)

        def col(p):
            if p.ndim > 1:
                return jnp.zeros((*p.shape[:-2], 1, p.shape[-1]), p.dtype)
            return jnp.zeros([], p.dtype)

        def var(p):
            return jnp.zeros_like(p) if p.ndim <= 1 else jnp.zeros([], p.dtype)

        return AdafactorState(
            count=jnp.zeros([], jnp.int32),
            row_var=jax.tree.map(row, params),
            col_var=jax.tree.map(col, params),
            variance=jax.tree.map(var, params),
            hyperparams=hp.init_hyperparams(specs, frozenset(), hp.storage_dtype(params)),
        )

    def leaf_update(g, p, row_var, col_var, variance, t, h):
        g = -g if maximize else g
        dtype = p.dtype
        eps1_value = h["eps1"] if "eps1" in h else jnp.finfo(dtype).eps
        weight = t ** h["beta2_decay"]
        rho = jnp.minimum(h["lr"], 1 / jnp.sqrt(t))
        size = max(p.size, 1)
        alpha = jnp.maximum(h["eps2"], jnp.linalg.norm(p.ravel()) / size**0.5) * rho
        decay = -(h["lr"] * h["weight_decay"]) * p
        if p.ndim > 1:
            row_mean = jnp.sum(g * g, axis=-1, keepdims=True) / g.shape[-1]
            col_mean = jnp.sum(g * g, axis=-2, keepdims=True) / g.shape[-2]
            row_var = _lerp(row_var, row_mean.astype(dtype), weight.astype(dtype))
            col_var = _lerp(col_var, col_mean.astype(dtype), weight.astype(dtype))
            estimate = jnp.matmul(row_var, col_var, precision=jax.lax.Precision.HIGHEST)
            estimate = estimate / jnp.maximum(
                jnp.mean(row_var, axis=-2, keepdims=True), eps1_value
            )
        else:
            variance = _lerp(variance, g * g, weight.astype(dtype))
            estimate = variance
        scaled = jax.lax.rsqrt(jnp.maximum(estimate, eps1_value * eps1_value)) * g
        denom = jnp.maximum(1.0, jnp.linalg.norm(scaled.ravel()) / (size**0.5 * h["d"]))
        step = (alpha / denom).astype(dtype)
        return decay - step * scaled, row_var, col_var, variance

    def update(grads, state, params=None, **extra_args):
        del extra_args
        if params is None and jax.tree.leaves(grads):
            raise ValueError(
                "Adafactor needs the params: call `update(grads, state, params)`"
            )
        treedef, grad_leaves, flat = flatten_matching(grads, "grads", params=params)
        row_leaves = treedef.flatten_up_to(state.row_var)
        col_leaves = treedef.flatten_up_to(state.col_var)
        var_leaves = treedef.flatten_up_to(state.variance)
        current = hp.step_hyperparams(state.hyperparams, specs, frozenset(), state.count)
        values = hp.as_keywords(current)
        count = safe_increment(state.count)
        t = count.astype(next(iter(values.values())).dtype)
        outputs = [
            leaf_update(g, p, r, c, v, t, values)
            for g, p, r, c, v in zip(
                grad_leaves, flat["params"], row_leaves, col_leaves, var_leaves, strict=True
            )
        ]
        parts = [jax.tree.unflatten(treedef, [o[i] for o in outputs]) for i in range(4)]
        updates = jax.tree.map(lambda u, g: u.astype(g.dtype), parts[0], grads)
        return updates, AdafactorState(count, parts[1], parts[2], parts[3], current)

    return GradientTransformationExtraArgs(init, compiled_when_eager(update))
