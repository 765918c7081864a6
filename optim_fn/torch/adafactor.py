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
from optim_fn.core.base import GradientTransformationExtraArgs, ScalarOrSchedule
from optim_fn.core.lift import rule_transform
from optim_fn.torch.porting import torch_optimizer


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


def _init_slots(p):
    """Row and column statistics of the last two axes (placeholders for vectors)."""
    if jnp.iscomplexobj(p):
        raise ValueError("Adafactor does not support complex parameters (`params`)")
    if p.ndim > 1:
        row = jnp.zeros((*p.shape[:-1], 1), p.dtype)
        col = jnp.zeros((*p.shape[:-2], 1, p.shape[-1]), p.dtype)
        return row, col, jnp.zeros([], p.dtype)
    return jnp.zeros([], p.dtype), jnp.zeros([], p.dtype), jnp.zeros_like(p)


def _adafactor_rule(
    g, row_var, col_var, variance, *, param, count, lr, beta2_decay, eps2, d, weight_decay,
    maximize, eps1=None,
):
    """One leaf of torch's Adafactor step (see :func:`Adafactor` for the formulas)."""
    p = param
    g = -g if maximize else g
    dtype = p.dtype
    t = count.astype(lr.dtype)
    eps1_value = eps1 if eps1 is not None else jnp.finfo(dtype).eps
    weight = t**beta2_decay
    rho = jnp.minimum(lr, 1 / jnp.sqrt(t))
    size = max(p.size, 1)
    alpha = jnp.maximum(eps2, jnp.linalg.norm(p.ravel()) / size**0.5) * rho
    decay = -(lr * weight_decay) * p
    if p.ndim > 1:
        row_mean = jnp.sum(g * g, axis=-1, keepdims=True) / g.shape[-1]
        col_mean = jnp.sum(g * g, axis=-2, keepdims=True) / g.shape[-2]
        row_var = _lerp(row_var, row_mean.astype(dtype), weight.astype(dtype))
        col_var = _lerp(col_var, col_mean.astype(dtype), weight.astype(dtype))
        estimate = jnp.matmul(row_var, col_var, precision=jax.lax.Precision.HIGHEST)
        estimate = estimate / jnp.maximum(jnp.mean(row_var, axis=-2, keepdims=True), eps1_value)
    else:
        variance = _lerp(variance, g * g, weight.astype(dtype))
        estimate = variance
    scaled = jax.lax.rsqrt(jnp.maximum(estimate, eps1_value * eps1_value)) * g
    denom = jnp.maximum(1.0, jnp.linalg.norm(scaled.ravel()) / (size**0.5 * d))
    step = (alpha / denom).astype(dtype)
    return decay - step * scaled, row_var, col_var, variance


@torch_optimizer
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
    return rule_transform(
        _adafactor_rule,
        AdafactorState,
        slots=("row_var", "col_var", "variance"),
        init_slots=_init_slots,
        hyperparams=specs,
        static={"maximize": maximize},
        uses_params=True,
        name="Adafactor",
        flat_reason="it factors the last two axes of each param",
    )
