"""Shampoo, as the PyTorch Distributed Shampoo (Shi et al. 2023) computes it.

:func:`scale_by_shampoo` is the direction (the search direction before the learning rate)
and :func:`shampoo` the optimizer. The numbers follow facebookresearch/optimizers
``distributed_shampoo`` (the maintained implementation; read at commit f606606,
2026-08-05) on a single device; the step on one leaf is
:func:`optim_fn.contrib._shampoo_rule.shampoo_rule`, the per-block math
:mod:`optim_fn.rules.shampoo`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from optim_fn.contrib._shampoo_rule import (
    GRAFTINGS,
    PRECONDITIONERS,
    ROOT_INVERSES,
    WEIGHT_DECAY_TYPES,
    init_slots,
    shampoo_rule,
)
from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import refuse_complex, rule_transform
from optim_fn.core.validation import check_flag as _check_flag
from optim_fn.core.validation import check_int as _check_int
from optim_fn.core.validation import checks_once
from optim_fn.flat._ravel import check_not_flat
from optim_fn.optimizers.classic import scale_by_learning_rate
from optim_fn.transforms._combine import chain

_FLAT_REASON = "its Kronecker factors are built from each leaf's own axes"
_COMPLEX_REASON = (
    "it follows Distributed Shampoo's real algorithm (factors G G^T, real inverse roots)"
)
_DEFAULT_GRAFTING_B2 = {"rmsprop": 0.99, "adam": 0.999}


class ShampooState(NamedTuple):
    """:func:`scale_by_shampoo`'s state.

    Per leaf, whose blocks are grouped by shape (the full blocks and those cut short at
    the ends: at most ``2^ndim`` groups): ``factors`` (per group, per preconditioned axis,
    the ``(blocks, d, d)`` stack of Kronecker factors), ``preconditioners`` (same layout:
    their inverse roots, or their eigenvectors for the eigenvalue-corrected variant;
    identities until the first computation),
    ``corrected_eigenvalues`` (the eigenvalue-corrected variant's second moment, in the
    eigenbases, shaped like the leaf), ``grafting_state`` (the grafted AdaGrad / RMSprop /
    Adam second moment), ``filtered_grad`` (the gradient's moving average, for ``b1 > 0``)
    and ``momentum_buffer`` (for ``momentum > 0``). An unused slot is an empty array.
    State is at least float32.
    """

    count: Array
    factors: Updates
    preconditioners: Updates
    corrected_eigenvalues: Updates
    grafting_state: Updates
    filtered_grad: Updates
    momentum_buffer: Updates
    hyperparams: Hyperparams


def _check_choice(where: str, name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{where}: `{name}` must be one of {choices}, got {value!r}")




def _exponent_overrides(where: str, overrides: Any, preconditioner: str) -> tuple:
    """``inverse_exponent_override`` checked and frozen: ``((order, value), ...)`` with a
    float or ``((axis, float), ...)`` per order."""
    if overrides is None:
        return ()
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{where}: `inverse_exponent_override` must be a dict, got {overrides!r}")
    frozen = []
    for order, value in sorted(overrides.items()):
        if isinstance(order, bool) or not isinstance(order, int) or order < 0:
            raise ValueError(
                f"{where}: the keys of `inverse_exponent_override` are tensor orders "
                f"(integers >= 0), got {order!r}"
            )
        if isinstance(value, Mapping):
            if preconditioner == "eigenvalue_corrected":
                raise ValueError(
                    f"{where}: with preconditioner='eigenvalue_corrected', "
                    "`inverse_exponent_override` maps an order to one exponent (of the "
                    f"corrected eigenvalues), got {value!r} for order {order}"
                )
            axes = []
            for axis, exponent in sorted(value.items()):
                if not isinstance(axis, int) or not 0 <= axis <= max(order - 1, 0):
                    raise ValueError(
                        f"{where}: `inverse_exponent_override[{order}]` names axis {axis!r}, "
                        f"not in [0, {max(order - 1, 0)}]"
                    )
                axes.append((axis, _exponent(where, exponent)))
            frozen.append((order, tuple(axes)))
        else:
            frozen.append((order, _exponent(where, value)))
    return tuple(frozen)


def _exponent(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(
            f"{where}: an exponent in `inverse_exponent_override` must be a number >= 0 "
            f"(0: the axis is not preconditioned), got {value!r}"
        )
    return float(value)


def _ignored_dims(where: str, ignored: Any, preconditioner: str) -> tuple:
    if ignored is None:
        return ()
    if preconditioner != "eigenvalue_corrected":
        raise ValueError(
            f"{where}: `ignored_basis_change_dims` is for preconditioner="
            "'eigenvalue_corrected'; for the root inverse set the axis' exponent to 0 in "
            "`inverse_exponent_override`"
        )
    if not isinstance(ignored, Mapping):
        raise ValueError(f"{where}: `ignored_basis_change_dims` must be a dict, got {ignored!r}")
    return tuple(
        (int(order), tuple(int(a) for a in axes)) for order, axes in sorted(ignored.items())
    )


def _is_zero(value: Any) -> bool:
    return not callable(value) and float(value) == 0.0


@checks_once
def scale_by_shampoo(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 1.0,
    b3: ScalarOrSchedule = -1.0,
    eps: ScalarOrSchedule = 1e-12,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_type: str = "decoupled",
    max_preconditioner_dim: int | float = 1024,
    precondition_frequency: int = 1,
    start_preconditioning_step: int = -1,
    use_bias_correction: bool = True,
    grafting: str | None = None,
    grafting_b2: ScalarOrSchedule | None = None,
    grafting_eps: ScalarOrSchedule = 1e-10,
    preconditioner: str = "root_inverse",
    root_inverse: str = "eigh",
    newton_max_iterations: int = 100,
    newton_tolerance: float = 1e-6,
    inverse_exponent_override: Mapping[int, Any] | None = None,
    ignored_basis_change_dims: Mapping[int, Sequence[int]] | None = None,
    momentum: ScalarOrSchedule = 0.0,
    dampening: ScalarOrSchedule = 0.0,
    nesterov: bool = False,
    merge_small_dims: bool = True,
) -> GradientTransformationExtraArgs:
    """Distributed Shampoo's search direction (before the learning rate).

    Each leaf is reshaped (``merge_small_dims``: axes of size 1 dropped, neighbouring
    axes merged from the last while their product is ``<= max_preconditioner_dim``; with
    ``False`` the shape is kept, the reference's ``target_parameter_dimensionality=inf``) and
    cut into blocks of at most ``max_preconditioner_dim`` along each axis. For a block of
    order :math:`o` with gradient :math:`G_t` (plus :math:`\\lambda W` for
    ``weight_decay_type="l2"``) and one factor :math:`L_k` per axis, at step :math:`t`:

    .. math::
        L_k &\\leftarrow \\beta_2 L_k + w\\, G_{(k)} G_{(k)}^T, \\qquad
            w = 1 \\text{ if } \\beta_2 = 1 \\text{ (AdaGrad's sum) else } 1 - \\beta_2 \\\\
        \\bar G_t &= \\frac{\\beta_3 F_{t-1} + (1-\\beta_3) G_t}{1 - \\beta_3 \\beta_1^{t-1}},
            \\qquad F_t = \\beta_1 F_{t-1} + (1 - \\beta_1) G_t \\\\
        P_t &= \\bar G_t \\times_1 \\hat L_1 \\cdots \\times_o \\hat L_o, \\qquad
            \\hat L_k = \\big(L_k / c_t + \\epsilon I\\big)^{-1/(2o)}, \\qquad
            c_t = 1 - \\beta_2^t

    (:math:`c_t = 1` for :math:`\\beta_2 = 1` or ``use_bias_correction=False``, which also
    drops the filter's correction; ``b1=0`` uses :math:`G_t` itself; ``b3=-1`` means
    ``b1``). :math:`\\hat L_k` is recomputed at ``start_preconditioning_step`` (-1: equal to
    ``precondition_frequency``) and at every later multiple of ``precondition_frequency``,
    by an eigendecomposition (``root_inverse="eigh"``; an eigenvalue below :math:`\\epsilon`
    shifts the spectrum up as the reference does) or the coupled inverse Newton iteration
    (``"coupled_newton"``, ``newton_max_iterations``, ``newton_tolerance``); it is the
    identity before, and a computation that gives NaN or infinity keeps the previous one.
    ``inverse_exponent_override`` (the reference's): ``{order: exponent}`` or
    ``{order: {axis: exponent}}`` replaces :math:`1/(2o)` for blocks of that order; an
    exponent of 0 leaves the axis unpreconditioned (no factor).

    ``preconditioner="eigenvalue_corrected"`` (SOAP's idea): the eigenbases :math:`Q_k` of
    :math:`L_k / c_t + \\epsilon I` are recomputed on that schedule instead, and
    :math:`E \\leftarrow \\beta_2 E + w (G_t \\times_k Q_k^T)^2` every step;
    :math:`P_t = \\big((\\bar G_t \\times_k Q_k^T) / (\\sqrt{E / c_t} + \\epsilon)\\big)
    \\times_k Q_k` (``inverse_exponent_override={order: p}`` uses :math:`E^p` instead of
    :math:`\\sqrt{E}`; ``ignored_basis_change_dims={order: [axis, ...]}`` keeps those axes
    in the parameters' basis).

    Grafting (``grafting`` in ``"sgd"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``): per
    block, :math:`P_t \\leftarrow P_t \\, \\|D_t\\| / (\\|P_t\\| + 10^{-16})` with the grafted
    method's direction :math:`D_t = \\bar G_t / (\\sqrt{V_t} + \\epsilon_g)` (SGD:
    :math:`\\bar G_t`), :math:`V_t = \\beta_g V_{t-1} + (1-\\beta_g) G_t^2` (AdaGrad:
    :math:`V_{t-1} + G_t^2`; Adam divides :math:`V_t` by :math:`1 - \\beta_g^t`);
    ``grafting_b2`` :math:`\\beta_g` defaults to 0.99 (RMSprop) and 0.999 (Adam),
    ``grafting_eps`` :math:`\\epsilon_g` to 1e-10. Before ``start_preconditioning_step``
    the direction is :math:`D_t` itself (without grafting, Shampoo's with the identity).

    Then ``weight_decay`` :math:`\\lambda` (``"decoupled"``): :math:`P_t + \\lambda W`;
    ``momentum`` :math:`\\mu` > 0 (with ``dampening`` :math:`\\delta`):
    :math:`M_t = \\mu M_{t-1} + (1-\\delta) P_t` and the direction is :math:`M_t`, or
    :math:`(1-\\delta) P_t + \\mu M_t` with ``nesterov``.

    Defaults are Distributed Shampoo's: ``b1=0.9``, ``b2=1.0``, ``b3=-1`` (``b1``),
    ``eps=1e-12``, ``max_preconditioner_dim=1024``, ``precondition_frequency=1``,
    ``start_preconditioning_step=-1``, ``use_bias_correction=True``, no grafting, root
    inverse by eigendecomposition, no momentum. References: Gupta, Koren & Singer,
    "Shampoo: Preconditioned Stochastic Tensor Optimization" (ICML 2018); Anil et al.,
    "Scalable Second Order Optimization for Deep Learning" (arXiv:2002.09018); Shi et al.,
    "A Distributed Data-Parallel PyTorch Implementation of the Distributed Shampoo
    Optimizer" (arXiv:2309.06497). Not offered: the reference's higher-order coupled
    iteration, QR eigendecomposition, KL-Shampoo, pseudo-inverse, trace scaling,
    corrected/independent weight decay, iterate averaging, ``beta2``-free factor sums
    (``drop_weighting_factor_on_gsquare``) and factor dtypes (the state is the params'
    dtype, at least float32). ``update`` needs the params (weight decay). Real params
    only; not in flat mode.
    """
    where = "scale_by_shampoo"
    check.check_decay(where, "b1", b1)
    check.check_decay(where, "b2", b2, allow_one=True)
    check.check_scalar(where, "b3", b3)
    if not callable(b3) and b3 != -1 and not 0 <= b3 < 1:
        raise ValueError(f"{where}: `b3` must be in [0, 1), or -1 to use `b1`, got {b3!r}")
    check.check_non_negative(where, "eps", eps)
    check.check_non_negative(where, "weight_decay", weight_decay)
    _check_choice(where, "weight_decay_type", weight_decay_type, WEIGHT_DECAY_TYPES)
    _check_int(where, "max_preconditioner_dim", max_preconditioner_dim, 1, allow_inf=True)
    _check_int(where, "precondition_frequency", precondition_frequency, 1)
    _check_int(where, "start_preconditioning_step", start_preconditioning_step, -1)
    if start_preconditioning_step == -1:
        start_preconditioning_step = precondition_frequency
    if start_preconditioning_step < precondition_frequency:
        raise ValueError(
            f"{where}: `start_preconditioning_step` must be >= `precondition_frequency` "
            f"({precondition_frequency}) or -1, got {start_preconditioning_step}"
        )
    _check_choice(where, "grafting", grafting, GRAFTINGS)
    if grafting_b2 is None:
        grafting_b2 = _DEFAULT_GRAFTING_B2.get(grafting, 1.0)
    check.check_decay(where, "grafting_b2", grafting_b2, allow_one=True)
    check.check_non_negative(where, "grafting_eps", grafting_eps)
    _check_choice(where, "preconditioner", preconditioner, PRECONDITIONERS)
    _check_choice(where, "root_inverse", root_inverse, ROOT_INVERSES)
    _check_int(where, "newton_max_iterations", newton_max_iterations, 0)
    if isinstance(newton_tolerance, bool) or not isinstance(newton_tolerance, (int, float)):
        raise ValueError(f"{where}: `newton_tolerance` must be a number, got {newton_tolerance!r}")
    overrides = _exponent_overrides(where, inverse_exponent_override, preconditioner)
    if root_inverse == "coupled_newton" and preconditioner == "root_inverse":
        for _, value in overrides:
            for exponent in (value,) if isinstance(value, float) else dict(value).values():
                if exponent != 0 and abs(1 / exponent - round(1 / exponent)) > 1e-12:
                    raise ValueError(
                        f"{where}: the coupled Newton iteration needs inverse roots of "
                        f"integer order: `inverse_exponent_override` must hold 1/k, got "
                        f"{exponent!r} (use root_inverse='eigh')"
                    )
    ignored = _ignored_dims(where, ignored_basis_change_dims, preconditioner)
    check.check_decay(where, "momentum", momentum)
    check.check_decay(where, "dampening", dampening)
    _check_flag(where, "use_bias_correction", use_bias_correction)
    _check_flag(where, "nesterov", nesterov)
    _check_flag(where, "merge_small_dims", merge_small_dims)
    if not callable(b3) and b3 == -1:
        b3 = b1
    static = {
        "max_preconditioner_dim": max_preconditioner_dim,
        "merge_small_dims": merge_small_dims,
        "precondition_frequency": precondition_frequency,
        "start_preconditioning_step": start_preconditioning_step,
        "use_bias_correction": use_bias_correction,
        "grafting": grafting,
        "preconditioner": preconditioner,
        "root_inverse": root_inverse,
        "newton_max_iterations": newton_max_iterations,
        "newton_tolerance": float(newton_tolerance),
        "inverse_exponent_override": overrides,
        "ignored_basis_change_dims": ignored,
        "weight_decay_type": weight_decay_type,
        "nesterov": nesterov,
        # As the reference, no filtered gradient for b1 = 0 and no buffer without momentum.
        "filter_grad": not _is_zero(b1),
        "use_momentum": not _is_zero(momentum),
    }
    return rule_transform(
        shampoo_rule,
        ShampooState,
        slots=(
            "factors",
            "preconditioners",
            "corrected_eigenvalues",
            "grafting_state",
            "filtered_grad",
            "momentum_buffer",
        ),
        init_slots=lambda param: init_slots(param, static),
        hyperparams={
            "b1": b1,
            "b2": b2,
            "b3": b3,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "dampening": dampening,
            "grafting_b2": grafting_b2,
            "grafting_eps": grafting_eps,
        },
        decays=("b1", "b2", "b3", "grafting_b2"),
        static=static,
        # Always, as the repository's other blocks with weight decay: a decay set later
        # with set_hyperparams must not be silently dropped for want of the params.
        uses_params=True,
        name=where,
        flat_reason=_FLAT_REASON,
        complex_reason=_COMPLEX_REASON,
        batch_by_shape=None,
    )


@checks_once
def shampoo(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 1.0,
    b3: ScalarOrSchedule = -1.0,
    eps: ScalarOrSchedule = 1e-12,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_type: str = "decoupled",
    max_preconditioner_dim: int | float = 1024,
    precondition_frequency: int = 1,
    start_preconditioning_step: int = -1,
    use_bias_correction: bool = True,
    grafting: str | None = None,
    grafting_b2: ScalarOrSchedule | None = None,
    grafting_eps: ScalarOrSchedule = 1e-10,
    preconditioner: str = "root_inverse",
    root_inverse: str = "eigh",
    newton_max_iterations: int = 100,
    newton_tolerance: float = 1e-6,
    inverse_exponent_override: Mapping[int, Any] | None = None,
    ignored_basis_change_dims: Mapping[int, Sequence[int]] | None = None,
    momentum: ScalarOrSchedule = 0.0,
    dampening: ScalarOrSchedule = 0.0,
    nesterov: bool = False,
    merge_small_dims: bool = True,
) -> GradientTransformationExtraArgs:
    """Distributed Shampoo (Shi et al. 2023): :func:`scale_by_shampoo`'s direction
    :math:`P_t`, then :math:`W_t = W_{t-1} - \\eta P_t` with :math:`\\eta` =
    ``learning_rate`` (default 1e-2, the reference's). The other arguments and defaults
    are :func:`scale_by_shampoo`'s. Decoupled weight decay is added to :math:`P_t` before
    the learning rate (and before momentum), as the reference does. Real params only; not
    in flat mode.
    """
    check.check_learning_rate("shampoo", learning_rate)
    direction = scale_by_shampoo(
        b1=b1,
        b2=b2,
        b3=b3,
        eps=eps,
        weight_decay=weight_decay,
        weight_decay_type=weight_decay_type,
        max_preconditioner_dim=max_preconditioner_dim,
        precondition_frequency=precondition_frequency,
        start_preconditioning_step=start_preconditioning_step,
        use_bias_correction=use_bias_correction,
        grafting=grafting,
        grafting_b2=grafting_b2,
        grafting_eps=grafting_eps,
        preconditioner=preconditioner,
        root_inverse=root_inverse,
        newton_max_iterations=newton_max_iterations,
        newton_tolerance=newton_tolerance,
        inverse_exponent_override=inverse_exponent_override,
        ignored_basis_change_dims=ignored_basis_change_dims,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        merge_small_dims=merge_small_dims,
    )
    both = chain(direction, scale_by_learning_rate(learning_rate))

    def init(params):
        check_not_flat(params, "shampoo", _FLAT_REASON)
        refuse_complex(params, "shampoo", _COMPLEX_REASON)
        return both.init(params)

    return GradientTransformationExtraArgs(init, both.update)
