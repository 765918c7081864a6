"""``torch.optim.lr_scheduler`` as closed-form schedules of the optimizer step.

torch's contract is "one ``scheduler.step()`` after each ``optimizer.step()``": the
lr used by the k-th optimizer step (k = 0, 1, ...) is the scheduler's value at epoch k.
Here that is explicit: each class below builds a :class:`TorchSchedule`, a function of
the step count ``k`` (0 at the first update) giving that lr, to pass as the ``lr`` of any
:mod:`optim_fn.torch` optimizer::

    opt = optim_fn.torch.SGD(lr=StepLR(0.1, step_size=30), momentum=0.9)

The first argument replaces torch's ``optimizer``: it is the optimizer's initial lr
(torch's ``base_lrs``). Schedulers stepped once per epoch instead of once per optimizer
step are ``lambda k: schedule(k // steps_per_epoch)``. Closed forms are used where torch
recurses (chainable schedulers); they agree to ~1e-15. :class:`ReduceLROnPlateau`, which
depends on a metric, wraps the optimizer and takes the metric as an extra ``update``
argument.

torch's per-group lists (``OneCycleLR(max_lr=[...])``, ``CyclicLR(base_lr=[...], ...)``,
``LambdaLR(lr, [f, g])``, a list as the initial lr) give a :class:`PerGroup`, one schedule
per group, for :func:`optim_fn.torch.param_groups`. A scheduler given an optimizer (torch's
call) raises a TypeError spelling the optim_fn call. ``schedule.get_last_lr(state)`` is
torch's ``scheduler.get_last_lr()``: the lr of the next update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optim_fn.core.base import GradientTransformationExtraArgs
from optim_fn.core.hyperparams import get_hyperparams, set_hyperparams
from optim_fn.torch.porting import PerGroup as PerGroup  # one schedule per param group
from optim_fn.torch.porting import (
    per_group,
    per_group_members,
    step_count,
    torch_scheduler,
)

Array = jax.Array


def _epoch(count: Any) -> Array:
    """The step count as a float of the default precision (float64 under x64)."""
    return jnp.asarray(count, dtype=jnp.result_type(float))


class TorchSchedule:
    """An lr as a function of the step count: ``base_lr * factor(k)``.

    ``chainable`` marks torch's multiplicative schedulers (their effects multiply in a
    :func:`ChainedScheduler`). ``momentum``, for :func:`CyclicLR` and :func:`OneCycleLR`
    with ``cycle_momentum``, is the matching schedule for ``momentum`` (SGD) or
    ``betas[0]`` (Adam-like).
    """

    def __init__(
        self,
        base_lr: float,
        factor: Callable[[Array], Array],
        chainable: bool,
        momentum: Callable[[Array], Array] | None = None,
    ):
        self.base_lr = base_lr
        self.factor = factor
        self.chainable = chainable
        self.momentum = momentum

    def __call__(self, count: Any) -> Array:
        return self.base_lr * self.factor(_epoch(count))

    def get_last_lr(self, state: Any) -> list[Array]:
        """torch's ``scheduler.get_last_lr()`` (and ``param_groups[0]["lr"]``) after as
        many ``scheduler.step()`` calls as ``state`` has updates: the lr of the NEXT update,
        ``[self(k)]`` after k updates. ``state`` is the optimizer state (or k itself).

        ``optim_fn.get_hyperparams(state)["lr"]`` is the lr the latest update used
        (``self(k - 1)``; ``self(0)`` before the first update).
        """
        return [self(step_count(state))]


def _positive_int(where: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{where}: `{name}` must be a positive int, got {value!r}")


@torch_scheduler(takes_lr=True)
@per_group("lr", "lr_lambda")
def LambdaLR(lr: float, lr_lambda: Callable[[Array], Array]) -> TorchSchedule:  # noqa: N802
    """``lr_k = lr * lr_lambda(k)``; ``lr_lambda`` must accept a JAX scalar."""
    return TorchSchedule(lr, lr_lambda, chainable=False)


@torch_scheduler(takes_lr=True)
@per_group("lr", "lr_lambda")
def MultiplicativeLR(  # noqa: N802
    lr: float, lr_lambda: Callable[[Array], Array]
) -> TorchSchedule:
    """``lr_k = lr * prod_{i=1..k} lr_lambda(i)`` (a loop over k steps at each call)."""

    def factor(t):
        return jax.lax.fori_loop(
            1, t.astype(jnp.int32) + 1, lambda i, acc: acc * lr_lambda(_epoch(i)), jnp.ones_like(t)
        )

    return TorchSchedule(lr, factor, chainable=True)


@torch_scheduler(takes_lr=True)
@per_group("lr")
def StepLR(lr: float, step_size: int, gamma: float = 0.1) -> TorchSchedule:  # noqa: N802
    """``lr_k = lr * gamma^floor(k / step_size)``."""
    return TorchSchedule(lr, lambda t: gamma ** jnp.floor(t / step_size), chainable=True)


@torch_scheduler(takes_lr=True)
@per_group("lr")
def MultiStepLR(  # noqa: N802
    lr: float, milestones: Sequence[int], gamma: float = 0.1
) -> TorchSchedule:
    """``lr_k = lr * gamma^(number of milestones <= k)`` (a repeated milestone counts twice)."""
    marks = jnp.asarray(sorted(milestones), dtype=jnp.result_type(float))
    return TorchSchedule(
        lr, lambda t: gamma ** jnp.sum(marks <= t).astype(t.dtype), chainable=True
    )


@torch_scheduler(takes_lr=True)
@per_group("lr")
def ConstantLR(  # noqa: N802
    lr: float, factor: float = 1.0 / 3, total_iters: int = 5
) -> TorchSchedule:
    """``lr_k = lr * factor`` for ``k < total_iters``, then ``lr``."""
    if not 0 <= factor <= 1:
        raise ValueError(
            "ConstantLR: Constant multiplicative factor expected to be between 0 and 1 "
            f"(`factor` must be in [0, 1], got {factor!r})"
        )
    return TorchSchedule(lr, lambda t: jnp.where(t < total_iters, factor, 1.0), chainable=True)


@torch_scheduler(takes_lr=True)
@per_group("lr")
def LinearLR(  # noqa: N802
    lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
) -> TorchSchedule:
    """``lr_k = lr * (s + (e - s) min(k, T) / T)``."""
    if not 0 < start_factor <= 1:
        raise ValueError(
            "LinearLR: Starting multiplicative factor expected to be greater than 0 and less "
            f"or equal to 1 (`start_factor` must be in (0, 1], got {start_factor!r})"
        )
    if not 0 <= end_factor <= 1:
        raise ValueError(
            "LinearLR: Ending multiplicative factor expected to be between 0 and 1 "
            f"(`end_factor` must be in [0, 1], got {end_factor!r})"
        )
    return TorchSchedule(
        lr,
        lambda t: start_factor
        + (end_factor - start_factor) * jnp.minimum(t, total_iters) / total_iters,
        chainable=True,
    )


@torch_scheduler(takes_lr=True)
@per_group("lr")
def ExponentialLR(lr: float, gamma: float) -> TorchSchedule:  # noqa: N802
    """``lr_k = lr * gamma^k``."""
    return TorchSchedule(lr, lambda t: gamma**t, chainable=True)


@torch_scheduler(takes_lr=True)
@per_group("lr")
def PolynomialLR(  # noqa: N802
    lr: float, total_iters: int = 5, power: float = 1.0
) -> TorchSchedule:
    """``lr_k = lr * (1 - min(k, T) / T)^power``."""
    return TorchSchedule(
        lr, lambda t: (1 - jnp.minimum(t, total_iters) / total_iters) ** power, chainable=True
    )


@torch_scheduler(takes_lr=True)
@per_group("lr")
def CosineAnnealingLR(  # noqa: N802
    lr: float, T_max: int, eta_min: float = 0.0  # noqa: N803 - torch's keyword
) -> TorchSchedule:
    """``lr_k = eta_min + (lr - eta_min)(1 + cos(pi k / T_max)) / 2``, periodic past T_max."""
    return TorchSchedule(
        lr,
        lambda t: (eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * t / T_max)) / 2) / lr,
        chainable=True,
    )


@torch_scheduler(takes_lr=True)
@per_group("lr")
def CosineAnnealingWarmRestarts(  # noqa: N802
    lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0  # noqa: N803
) -> TorchSchedule:
    """SGDR (Loshchilov & Hutter 2017): cosine from lr to eta_min over ``T_i`` steps, then
    restart with ``T_{i+1} = T_mult * T_i``."""
    _positive_int("CosineAnnealingWarmRestarts", "T_0", T_0)
    if not isinstance(T_mult, int) or T_mult < 1:
        raise ValueError(
            f"CosineAnnealingWarmRestarts: `T_mult` must be an int >= 1, got {T_mult!r}"
        )

    def factor(t):
        if T_mult == 1:
            t_cur, t_i = jnp.mod(t, T_0), T_0
        else:
            # Index of the current cycle, fixed up after the float log near boundaries.
            n = jnp.floor(jnp.log(t / T_0 * (T_mult - 1) + 1) / math.log(T_mult))
            start = lambda n: T_0 * (T_mult**n - 1) / (T_mult - 1)  # noqa: E731
            n = jnp.where(start(n) > t, n - 1, n)
            n = jnp.where(start(n + 1) <= t, n + 1, n)
            t_cur, t_i = t - start(n), T_0 * T_mult**n
        return (eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * t_cur / t_i)) / 2) / lr

    return TorchSchedule(lr, factor, chainable=False)


@torch_scheduler(takes_lr=False)
@per_group("base_lr", "max_lr", "base_momentum", "max_momentum")
def CyclicLR(  # noqa: N802
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[Array], Array] | None = None,
    scale_mode: str = "cycle",
    cycle_momentum: bool = True,
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
) -> TorchSchedule:
    """Cyclical learning rates (Smith 2017) as torch; ``.momentum`` cycles the other way.

    Pass ``.momentum`` as SGD's ``momentum`` or as ``betas[0]`` to do what torch's
    ``cycle_momentum=True`` does (it is None with ``cycle_momentum=False``).
    """
    if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
        raise ValueError(
            "CyclicLR: mode is invalid and scale_fn is None "
            f"(`mode` must be 'triangular', 'triangular2' or 'exp_range', got {mode!r})"
        )
    down = step_size_up if step_size_down is None else step_size_down
    total = float(step_size_up + down)
    ratio = step_size_up / total
    if scale_fn is None:
        scale_mode = "iterations" if mode == "exp_range" else "cycle"
        scale_fn = {
            "triangular": lambda x: jnp.ones_like(x),
            "triangular2": lambda x: 1 / (2.0 ** (x - 1)),
            "exp_range": lambda x: gamma**x,
        }[mode]

    def shape(t):
        cycle = jnp.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        fraction = jnp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        return fraction * scale_fn(cycle if scale_mode == "cycle" else t)

    def momentum(count):
        return max_momentum - (max_momentum - base_momentum) * shape(_epoch(count))

    return TorchSchedule(
        1.0,
        lambda t: base_lr + (max_lr - base_lr) * shape(t),
        chainable=False,
        momentum=momentum if cycle_momentum else None,
    )


@torch_scheduler(takes_lr=False)
@per_group("max_lr", "base_momentum", "max_momentum")
def OneCycleLR(  # noqa: N802
    max_lr: float,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    cycle_momentum: bool = True,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> TorchSchedule:
    """The 1cycle policy (Smith & Topin 2019) as torch; ``.momentum`` as in :func:`CyclicLR`.

    Past ``total_steps`` torch raises; here the last phase extrapolates.
    """
    if total_steps is None:
        if epochs is None or steps_per_epoch is None:
            raise ValueError(
                "OneCycleLR: You must define either total_steps OR (epochs AND "
                "steps_per_epoch) (`total_steps` is missing)"
            )
        total_steps = epochs * steps_per_epoch
    _positive_int("OneCycleLR", "total_steps", total_steps)
    if not 0 <= pct_start <= 1:
        raise ValueError(
            f"OneCycleLR: Expected float between 0 and 1 pct_start, but got {pct_start} "
            "(`pct_start` must be in [0, 1])"
        )
    if anneal_strategy not in ("cos", "linear"):
        raise ValueError(
            "OneCycleLR: anneal_strategy must be one of 'cos' or 'linear', instead got "
            f"{anneal_strategy} (`anneal_strategy`)"
        )
    initial = max_lr / div_factor
    minimum = initial / final_div_factor
    if three_phase:
        phases = [
            (float(pct_start * total_steps) - 1, initial, max_lr, max_momentum, base_momentum),
            (float(2 * pct_start * total_steps) - 2, max_lr, initial, base_momentum, max_momentum),
            (total_steps - 1.0, initial, minimum, max_momentum, max_momentum),
        ]
    else:
        phases = [
            (float(pct_start * total_steps) - 1, initial, max_lr, max_momentum, base_momentum),
            (total_steps - 1.0, max_lr, minimum, base_momentum, max_momentum),
        ]

    def anneal(start, end, pct):
        if anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (jnp.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def piecewise(t, lr_or_momentum):
        value = None
        start_step = 0.0
        # Later phases first so that the earliest phase containing t wins, as torch's loop.
        pieces = []
        for i, (end_step, lr_a, lr_b, m_a, m_b) in enumerate(phases):
            pct = (t - start_step) / (end_step - start_step)
            a, b = (lr_a, lr_b) if lr_or_momentum == "lr" else (m_a, m_b)
            pieces.append((end_step, i == len(phases) - 1, anneal(a, b, pct)))
            start_step = end_step
        value = pieces[-1][2]
        for end_step, _, piece in reversed(pieces[:-1]):
            value = jnp.where(t <= end_step, piece, value)
        return value

    return TorchSchedule(
        1.0,
        lambda t: piecewise(t, "lr"),
        chainable=False,
        momentum=(lambda count: piecewise(_epoch(count), "momentum")) if cycle_momentum else None,
    )


@torch_scheduler(takes_lr=False)
def SequentialLR(  # noqa: N802
    schedulers: Sequence[TorchSchedule], milestones: Sequence[int]
) -> TorchSchedule:
    """``schedulers[i]`` from ``milestones[i-1]`` on, each restarted at its epoch 0.

    Per-group schedulers (:class:`PerGroup`) give one SequentialLR per group."""
    grouped = per_group_members(SequentialLR, schedulers, milestones)
    if grouped is not None:
        return grouped
    if len(milestones) != len(schedulers) - 1:
        raise ValueError(
            "SequentialLR: Sequential Schedulers expects number of schedulers provided to be "
            f"one more than the number of milestone points, but got number of schedulers "
            f"{len(schedulers)} and the number of milestones to be equal to {len(milestones)} "
            "(`milestones` must have len(schedulers) - 1 entries)"
        )
    starts = [0, *milestones]
    base = schedulers[0].base_lr

    def factor(t):
        value = schedulers[0](t) / base
        for start, scheduler in zip(starts[1:], schedulers[1:], strict=True):
            value = jnp.where(t >= start, scheduler(t - start) / base, value)
        return value

    return TorchSchedule(base, factor, chainable=False)


@torch_scheduler(takes_lr=False)
def ChainedScheduler(schedulers: Sequence[TorchSchedule]) -> TorchSchedule:  # noqa: N802
    """Every scheduler stepped each step; for torch's chainable ones the effects multiply.

    Per-group schedulers (:class:`PerGroup`) give one ChainedScheduler per group."""
    grouped = per_group_members(ChainedScheduler, schedulers)
    if grouped is not None:
        return grouped
    for scheduler in schedulers:
        if not scheduler.chainable:
            raise ValueError(
                "ChainedScheduler: only chainable (multiplicative) schedulers compose to a "
                "closed form; `schedulers` may hold StepLR, MultiStepLR, ConstantLR, "
                "LinearLR, ExponentialLR, PolynomialLR, CosineAnnealingLR, MultiplicativeLR"
            )
    base = schedulers[0].base_lr

    def factor(t):
        value = jnp.ones_like(t)
        for scheduler in schedulers:
            value = value * scheduler.factor(t)
        return value

    return TorchSchedule(base, factor, chainable=True)


# ---------------------------------------------------------------------- ReduceLROnPlateau


class ReduceLROnPlateauState(NamedTuple):
    inner: Any
    lr: Array
    best: Array
    num_bad_epochs: Array
    cooldown_counter: Array


def ReduceLROnPlateau(  # noqa: N802
    optimizer: GradientTransformationExtraArgs,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr: float = 0,
    eps: float = 1e-8,
) -> GradientTransformationExtraArgs:
    """Wraps an optim_fn.torch optimizer; ``update(grads, state, params, metric=m)`` is
    ``optimizer.step(); scheduler.step(m)``: this step uses the current lr, then ``m``
    decides the lr of the next step (reduced by ``factor`` after more than ``patience``
    steps without improvement, then ``cooldown`` steps of rest). The optimizer's ``lr``
    must be a number (it is set in its state each step); read it with
    ``get_hyperparams(state)["lr"]``.
    """
    if factor >= 1.0:
        raise ValueError(
            "ReduceLROnPlateau: Factor should be < 1.0. (`factor` must be < 1)"
        )
    if isinstance(min_lr, (list, tuple)):
        raise TypeError(
            "ReduceLROnPlateau: one `min_lr` per param group is not supported: it wraps one "
            "optimizer with one `lr`; give a single number"
        )
    if mode not in ("min", "max"):
        raise ValueError(f"ReduceLROnPlateau: mode {mode} is unknown! (`mode`: 'min' or 'max')")
    if threshold_mode not in ("rel", "abs"):
        raise ValueError(
            f"ReduceLROnPlateau: threshold mode {threshold_mode} is unknown! "
            "(`threshold_mode`: 'rel' or 'abs')"
        )

    def improved(metric, best):
        if mode == "min":
            bound = best * (1 - threshold) if threshold_mode == "rel" else best - threshold
            return metric < bound
        bound = best * (1 + threshold) if threshold_mode == "rel" else best + threshold
        return metric > bound

    def init(params):
        inner = optimizer.init(params)
        lr = get_hyperparams(inner)["lr"]
        worst = jnp.inf if mode == "min" else -jnp.inf
        zero = jnp.zeros([], jnp.int32)
        return ReduceLROnPlateauState(inner, lr, jnp.asarray(worst, lr.dtype), zero, zero)

    def update(grads, state, params=None, *, metric=None, **extra_args):
        if metric is None:
            raise ValueError(
                "ReduceLROnPlateau needs the metric: call "
                "`update(grads, state, params, metric=loss)`"
            )
        inner = set_hyperparams(state.inner, lr=state.lr)
        updates, inner = optimizer.update(grads, inner, params, **extra_args)
        metric = jnp.asarray(metric, state.best.dtype)
        better = improved(metric, state.best)
        best = jnp.where(better, metric, state.best)
        bad = jnp.where(better, 0, state.num_bad_epochs + 1)
        in_cooldown = state.cooldown_counter > 0
        cooldown_counter = jnp.where(in_cooldown, state.cooldown_counter - 1, 0)
        bad = jnp.where(in_cooldown, 0, bad)
        reduce = bad > patience
        reduced = jnp.maximum(state.lr * factor, min_lr)
        lr = jnp.where(reduce & (state.lr - reduced > eps), reduced, state.lr)
        cooldown_counter = jnp.where(reduce, cooldown, cooldown_counter)
        bad = jnp.where(reduce, 0, bad)
        return updates, ReduceLROnPlateauState(inner, lr, best, bad, cooldown_counter)

    return GradientTransformationExtraArgs(init, update)
