"""NorMuon: Muon with a neuron-wise second moment of the orthogonalized direction.

Li, Liu, Liang, Chen, Zhao & He, "NorMuon: Making Muon more efficient and scalable"
(2025, arXiv 2510.05491); reference code: zichongli5/NorMuon (``normuon_update``), also
microsoft/dion's ``NorMuon``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from optim_fn.contrib._matrix_layout import matrix_rule_transform, with_adam
from optim_fn.contrib._muon import (
    _DEFAULT_NS_COEFFS,
    _check_steps,
    _coefficients,
    scale_by_shape,
)
from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.validation import checks_once
from optim_fn.optimizers import classic
from optim_fn.optimizers.classic import adamw
from optim_fn.rules import orthogonalize as ortho
from optim_fn.transforms._combine import chain
from optim_fn.tree._structure import full_like


class NorMuonState(NamedTuple):
    count: Array
    mu: Updates
    nu: Updates
    ns_coeffs: Array
    hyperparams: Hyperparams


def _neuron_shaped(param: Array, dims: ortho.MuonDimensionNumbers, dtype: Any) -> Array:
    """Zeros of ``param``'s shape with its reduction (input) axes of size 1."""
    reduction, _ = ortho.matrix_axes(param, dims)
    shape = tuple(1 if axis in reduction else size for axis, size in enumerate(param.shape))
    return jnp.zeros(shape, dtype or param.dtype)


@checks_once
def scale_by_normuon(
    beta: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-10,
    ns_eps: ScalarOrSchedule = 1e-7,
    ns_coeffs: Any = _DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    orthogonalizer: str = "newton_schulz",
    weight_dimension_numbers: Any = None,
    split_sizes: Any = None,
    batch_by_shape: bool | None = None,
) -> GradientTransformationExtraArgs:
    r"""NorMuon's direction: orthogonalized momentum, normalised neuron by neuron.

    Per matrix (``fan_in x fan_out``, axes from ``weight_dimension_numbers``):

    .. math::
        m_t = \beta m_{t-1} + (1-\beta) g_t,\quad
        O_t = \mathrm{orth}(\beta m_t + (1-\beta) g_t),\\
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\,\mathrm{mean}_{\mathrm{in}}(O_t^2),\quad
        \tilde O_t = \frac{O_t}{\sqrt{v_t} + \epsilon},\quad
        u_t = \tilde O_t\,\frac{\|O_t\|_F}{\|\tilde O_t\|_F + \epsilon}

    (``nesterov=False``: :math:`\mathrm{orth}(m_t)`), one :math:`v` per output neuron
    (the state ``nu`` has the leaf's shape with its input axes of size 1). ``orth``:
    ``orthogonalizer`` with ``ns_coeffs`` / ``ns_steps`` and ``ns_eps`` in its
    normalisation, as :func:`scale_by_muon`; ``split_sizes``: output blocks
    orthogonalized and rescaled separately. Defaults (the authors'): ``beta=0.95``,
    ``b2=0.95``, ``eps=1e-10``, ``ns_eps=1e-7``, Newton-Schulz ``(3.4445, -4.775,
    2.0315)`` x 5, Nesterov. Reference: Li et al., "NorMuon: Making Muon more efficient
    and scalable" (2025).
    """
    where = "scale_by_normuon"
    _check_steps(where, ns_steps)
    coeffs = _coefficients(where, ns_coeffs, ns_steps, orthogonalizer)
    check.check_decay(where, "beta", beta)
    check.check_decay(where, "b2", b2)
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "ns_eps", ns_eps)
    check.check_dtype(where, "mu_dtype", mu_dtype)
    return matrix_rule_transform(
        ortho.normuon,
        NorMuonState,
        name=where,
        weight_dimension_numbers=weight_dimension_numbers,
        split_sizes=split_sizes,
        slots=("mu", "nu"),
        init_slots=lambda param, dims: (
            full_like(param, 0.0, mu_dtype),
            _neuron_shaped(param, dims, None),
        ),
        coeffs=coeffs,
        hyperparams={"beta": beta, "b2": b2, "eps": eps, "ns_eps": ns_eps},
        decays=("beta", "b2"),
        static={"ns_steps": ns_steps, "orthogonalizer": orthogonalizer, "nesterov": nesterov},
        batch_by_shape=batch_by_shape,
    )


@checks_once
def normuon(
    learning_rate: ScalarOrSchedule,
    beta: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-10,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    ns_eps: ScalarOrSchedule = 1e-7,
    ns_coeffs: Any = _DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    nesterov: bool = True,
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
    r"""NorMuon for the matrices, AdamW for everything else.

    For the matrices (2-d, or those with non-None ``muon_weight_dimension_numbers``):

    .. math::
        p_t = p_{t-1} - \eta\left(\sqrt{\max(1, n_{out}/n_{in})}\; u_t
        + \lambda p_{t-1}\right)

    with :func:`scale_by_normuon`'s :math:`u_t` (Jordan et al.'s shape factor, per
    output block with ``split_sizes``); the other leaves follow :func:`optim_fn.adamw`
    with the ``adam_*`` keywords (defaults as the authors' auxiliary Adam:
    ``(0.9, 0.95)``, ``eps=1e-10``, no weight decay; its learning rate defaults to
    ``learning_rate``). Defaults (the authors'): ``beta=0.95``, ``b2=0.95``,
    ``eps=1e-10``, ``weight_decay=0``. A 4-d convolution kernel is one matrix with its
    spatial axes in the input axis (see :func:`scale_by_muon`); the authors instead
    normalise such kernels over their last spatial axis. Not in flat mode. Reference:
    Li et al., "NorMuon: Making Muon more efficient and scalable" (2025).
    """
    check.check_learning_rate("normuon", learning_rate)
    spec = muon_weight_dimension_numbers
    matrix_part = chain(
        scale_by_normuon(
            beta, b2, eps, ns_eps, ns_coeffs, ns_steps, mu_dtype, nesterov=nesterov,
            orthogonalizer=orthogonalizer, weight_dimension_numbers=spec,
            split_sizes=split_sizes, batch_by_shape=batch_by_shape,
        ),
        scale_by_shape(spec, None, split_sizes),
        classic.add_decayed_weights(weight_decay, weight_decay_mask),
        classic.scale_by_learning_rate(learning_rate),
    )
    adam_part = adamw(
        learning_rate if adam_learning_rate is None else adam_learning_rate,
        b1=adam_b1, b2=adam_b2, eps=adam_eps, mu_dtype=mu_dtype,
        weight_decay=adam_weight_decay,
    )
    return with_adam("normuon", matrix_part, adam_part, spec, split_sizes)
