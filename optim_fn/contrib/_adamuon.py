"""AdaMuon: an Adam-like elementwise second moment on Muon's orthogonalized direction.

Si, Zhang, Wu, Chen, Xie & Shen (2025), "AdaMuon: Adaptive Muon Optimizer", arXiv
2507.11005; reference code: Chongjie-Si/AdaMuon (``adamuon.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from optim_fn.contrib._matrix_layout import matrix_rule_transform, with_adam
from optim_fn.contrib._muon import _DEFAULT_NS_COEFFS, _check_steps, _coefficients
from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.optimizers.classic import adamw
from optim_fn.rules import orthogonalize as ortho
from optim_fn.transforms._combine import chain
from optim_fn.tree._structure import full_like


class AdaMuonState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    ns_coeffs: Array
    hyperparams: Hyperparams


@checks_once
def scale_by_adamuon(
    beta: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    ns_eps: ScalarOrSchedule = 1e-7,
    ns_coeffs: Any = _DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    rms_scale: float = 0.2,
    orthogonalizer: str = "newton_schulz",
    weight_dimension_numbers: Any = None,
    split_sizes: Any = None,
    batch_by_shape: bool | None = None,
) -> GradientTransformationExtraArgs:
    r"""AdaMuon's direction: orthogonalized momentum over its own RMS, at a fixed RMS.

    Per matrix (``n_in x n_out``, axes from ``weight_dimension_numbers``):

    .. math::
        m_t = \beta m_{t-1} + (1-\beta) g_t,\quad
        O_t = \mathrm{orth}(\beta m_t + (1-\beta) g_t),\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) O_t^2,\\
        \hat O_t = \frac{O_t}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon},\quad
        u_t = r\sqrt{\max(n_{in}, n_{out})}\,
              \frac{\sqrt{\min(n_{in}, n_{out})}\,\hat O_t}{\|\hat O_t\|_F + \epsilon}

    (an update RMS of about ``r = rms_scale``; ``nesterov=False``:
    :math:`\mathrm{orth}(m_t)`). ``orth``: ``orthogonalizer`` with ``ns_coeffs`` /
    ``ns_steps`` and ``ns_eps``, as :func:`scale_by_muon`; ``split_sizes``: output
    blocks orthogonalized and scaled separately. Defaults (the authors' code):
    ``beta=0.95``, ``b2=0.999``, ``eps=1e-8``, ``ns_eps=1e-7``, Newton-Schulz x 5,
    Nesterov, ``rms_scale=0.2``. Reference: Si et al., "AdaMuon: Adaptive Muon Optimizer"
    (2025).
    """
    where = "scale_by_adamuon"
    _check_steps(where, ns_steps)
    coeffs = _coefficients(where, ns_coeffs, ns_steps, orthogonalizer)
    check.check_decay(where, "beta", beta)
    check.check_decay(where, "b2", b2)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "ns_eps", ns_eps)
    check.check_non_negative(where, "rms_scale", rms_scale)
    check.check_dtype(where, "mu_dtype", mu_dtype)
    return matrix_rule_transform(
        ortho.adamuon,
        AdaMuonState,
        name=where,
        weight_dimension_numbers=weight_dimension_numbers,
        split_sizes=split_sizes,
        slots=("mu", "nu"),
        init_slots=lambda param, dims: (
            full_like(param, 0.0, mu_dtype),
            full_like(param, 0.0, None),
        ),
        coeffs=coeffs,
        hyperparams={"beta": beta, "b2": b2, "eps": eps, "ns_eps": ns_eps},
        decays=("beta", "b2"),
        static={
            "ns_steps": ns_steps,
            "orthogonalizer": orthogonalizer,
            "nesterov": nesterov,
            "rms_scale": float(rms_scale),
        },
        batch_by_shape=batch_by_shape,
    )


@checks_once
def adamuon(
    learning_rate: ScalarOrSchedule,
    beta: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.01,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    ns_eps: ScalarOrSchedule = 1e-7,
    ns_coeffs: Any = _DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    nesterov: bool = True,
    rms_scale: float = 0.2,
    orthogonalizer: str = "newton_schulz",
    adam_b1: ScalarOrSchedule = 0.9,
    adam_b2: ScalarOrSchedule = 0.95,
    adam_eps: ScalarOrSchedule = 1e-10,
    adam_weight_decay: ScalarOrSchedule = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any = None,
    split_sizes: Any = None,
    batch_by_shape: bool | None = None,
) -> GradientTransformationExtraArgs:
    r"""AdaMuon for the matrices, AdamW for everything else.

    For the matrices (2-d, or those with non-None ``muon_weight_dimension_numbers``):
    :math:`p_t = p_{t-1} - \eta\,(u_t + \lambda p_{t-1})` with
    :func:`scale_by_adamuon`'s :math:`u_t` (already at RMS ``rms_scale``); the other
    leaves follow :func:`optim_fn.adamw` with the ``adam_*`` keywords (defaults: the
    auxiliary Adam of Jordan et al.'s Muon, ``(0.9, 0.95)``, ``eps=1e-10``, no weight
    decay; its learning rate defaults to ``learning_rate``). Defaults (the authors'
    code): ``beta=0.95``, ``b2=0.999``, ``eps=1e-8``, ``weight_decay=0.01``. A 4-d
    convolution kernel is one matrix with its spatial axes in the input axis (see
    :func:`scale_by_muon`). The paper's later version also orthogonalizes
    ``sign(m_t)`` and drops the bias correction; this follows the released code. Not in
    flat mode. Reference: Si et al., "AdaMuon: Adaptive Muon Optimizer" (2025).
    """
    check.check_learning_rate("adamuon", learning_rate)
    spec = muon_weight_dimension_numbers
    matrix_part = chain(
        scale_by_adamuon(
            beta, b2, eps, ns_eps, ns_coeffs, ns_steps, mu_dtype, nesterov=nesterov,
            rms_scale=rms_scale, orthogonalizer=orthogonalizer,
            weight_dimension_numbers=spec, split_sizes=split_sizes,
            batch_by_shape=batch_by_shape,
        ),
        classic.add_decayed_weights(weight_decay, weight_decay_mask),
        classic.scale_by_learning_rate(learning_rate),
    )
    adam_part = adamw(
        learning_rate if adam_learning_rate is None else adam_learning_rate,
        b1=adam_b1, b2=adam_b2, eps=adam_eps, mu_dtype=mu_dtype,
        weight_decay=adam_weight_decay,
    )
    return with_adam("adamuon", matrix_part, adam_part, spec, split_sizes)
