"""``torch.optim.Muon`` with PyTorch's numbers (to bfloat16 precision).

torch runs Newton-Schulz in bfloat16, so a port can match it only to bf16 precision
(differences of a few percent of the orthogonalised update). The momentum is torch's EMA
form (``buf = lerp(buf, g, 1 - mu)``), not the docstring's ``mu buf + g``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn import rules
from optim_fn.contrib._muon import orthogonalize_via_newton_schulz
from optim_fn.core.base import GradientTransformationExtraArgs, ScalarOrSchedule
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import Slot, rule_transform
from optim_fn.torch.porting import torch_optimizer


class MuonState(NamedTuple):
    count: Any
    momentum_buffer: Any
    hyperparams: Hyperparams


def _adjusted_lr(lr, shape, adjust_lr_fn):
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1.0, rows / cols))
    return lr * 0.2 * math.sqrt(max(rows, cols))


def _muon_rule(
    grad, buffer, *, param, lr, weight_decay, momentum, one_minus_momentum, eps,
    nesterov, ns_coefficients, ns_steps, adjust_lr_fn,
):
    buffer = rules.moving_average(grad, buffer, momentum, one_minus_momentum)
    direction = (
        rules.moving_average(grad, buffer, momentum, one_minus_momentum) if nesterov else buffer
    )
    orthogonal = orthogonalize_via_newton_schulz(
        direction.astype(jnp.bfloat16),
        jnp.asarray(ns_coefficients, jnp.bfloat16),
        ns_steps,
        "frobenius",
        eps,
    )
    step = _adjusted_lr(lr, param.shape, adjust_lr_fn) * orthogonal.astype(param.dtype)
    # Weight decay uses the unadjusted lr, as torch.
    return -(lr * weight_decay) * param - step, buffer


@torch_optimizer
def Muon(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1e-3,
    weight_decay: ScalarOrSchedule = 0.1,
    momentum: ScalarOrSchedule = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
    eps: float = 1e-07,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
) -> GradientTransformationExtraArgs:
    """``torch.optim.Muon`` (Jordan et al. 2024): orthogonalised momentum for 2-D params.

    .. math::
        B_t = \\mu B + (1-\\mu) G, \\quad U = (1-\\mu) G + \\mu B_t \\text{ (Nesterov) or } B_t,
        \\quad p \\leftarrow p(1 - \\eta\\lambda) - \\tilde\\eta\\, \\mathrm{NS}_5(U)

    with Newton-Schulz in bfloat16 and :math:`\\tilde\\eta = \\eta\\sqrt{\\max(1, A/B)}`
    (``adjust_lr_fn=None``/``"original"``) or :math:`0.2\\,\\eta\\sqrt{\\max(A, B)}`
    (``"match_rms_adamw"``) for an ``A x B`` param. Defaults as torch. 2-D real params only.
    """
    where = "Muon"
    for value, name, label in [
        (lr, "lr", "Learning rate"), (weight_decay, "weight_decay", "weight decay"),
        (momentum, "momentum", "momentum"),
    ]:
        if not callable(value) and not 0.0 <= float(value):
            raise ValueError(f"Muon: {label} should be >= 0 but is: {value} (check `{name}`)")
    if adjust_lr_fn not in (None, "original", "match_rms_adamw"):
        raise ValueError(
            f"Muon: Adjust learning rate function {adjust_lr_fn} is not supported "
            "(`adjust_lr_fn` must be None, 'original' or 'match_rms_adamw')"
        )
    inner = rule_transform(
        _muon_rule,
        MuonState,
        slots=[Slot("momentum_buffer")],
        hyperparams={"lr": lr, "weight_decay": weight_decay, "momentum": momentum},
        decays=("momentum",),
        static={"nesterov": nesterov, "ns_coefficients": tuple(ns_coefficients),
                "ns_steps": int(ns_steps), "adjust_lr_fn": adjust_lr_fn, "eps": float(eps)},
        uses_params=True,
        name=where,
    )

    def init(params):
        for leaf in jax.tree.leaves(params):
            if jnp.ndim(leaf) != 2 or jnp.iscomplexobj(leaf):
                raise ValueError(
                    "Muon only supports 2D parameters whereas we found a parameter with "
                    f"size: {jnp.shape(leaf)} (`params` must be real matrices; use "
                    "optim_fn.partition to give other params another optimizer)"
                )
        return inner.init(params)

    return GradientTransformationExtraArgs(init, inner.update)
