"""PSGD Kron as Evan Walters' ``kron_torch`` 0.3.3 computes it, in NumPy (float64).

Written by us from reading ``kron_torch/kron.py`` of the ``kron_torch`` 0.3.3 wheel on
PyPI (which needs triton, so it is not a test dependency): ``Kron.step``,
``_init_Q_exprs``, ``_calc_A_and_conjB``, ``_update_precond``, ``_lb``,
``_precond_grad``, ``_clip_update_rms``, ``_balance_Q`` and
``precond_update_prob_schedule`` (``ProbScheduler``). It keeps that code's order of
operations and its way of forming :math:`B = V \\times_i Q_i^{-T}` (the probe's axes
rotated, one right triangular solve on the last axis per factor, then a swap), with
``precond_dtype`` = the params' dtype = float64 throughout. The two draws are inputs:
``random_normal(leaf_index, shape)`` stands for ``torch.randn_like`` (the probe V of a
leaf, in its merged shape) and ``random_uniform()`` for ``self.rng.random()`` (one per
step; the factors are rebalanced when it is below 0.01 at an update step).

Where kron_torch differs from ``psgd-jax`` 0.2.9 (and from ``optim_fn.contrib.kron``):

* it fits and preconditions a tensor of 3 or more axes as a matrix (``merge_dims=True``
  by default; ``merge_small_dims`` in ours), and its defaults are ``lr=3e-4``;
* weight decay applies to params of 2 or more axes only (ours: ``weight_decay_mask``);
* a schedule for the update probability is evaluated at the number of steps done (0 at
  the first step); psgd-jax's at the step being taken (1 first); it is float32;
* ``_calc_A_and_conjB`` adds the probe term in place to the tensor it fits on. When that
  is the debiased momentum (``momentum_into_precond_update``) in the factors' dtype (so
  ``.to`` does not copy: float32 params and factors by default, or float64 here), the
  step preconditions :math:`h = \\hat m + \\sqrt{\\epsilon_{32}}\\,\\mathrm{mean}|\\hat m|\\,V`
  instead of :math:`\\hat m` at the steps that update the preconditioner. Transcribed
  (``precondition_probed_momentum=True``); ``False`` preconditions :math:`\\hat m`, as
  psgd-jax;
* ``_balance_Q`` computes the rebalancing scales in the factors' dtype (geometric mean by
  ``exp(mean(log))``); psgd-jax rounds them to float32 (``prod ** (1/k)``): the
  Kronecker product then moves by about float32's epsilon at each rebalancing. The
  option ``balance_scales_float32=True`` computes them as psgd-jax does;
* the RMS clip divides by ``rms + 1e-12``; the spectral-norm estimate ``_lb`` always
  starts from the largest column (the matrix is symmetric: psgd-jax's row or column
  choice gives the same); the triangular solve runs in float32 in kron_torch (a
  precision choice, float64 here); ``memory_save_mode="smart_one_diag"`` exists only
  here; a scalar (0-d) param is not handled (kron_torch fails on it when it updates the
  preconditioner).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

BALANCE_PROBABILITY = 0.01
RMS_LIMIT = 1.1


def precond_update_prob_schedule(
    max_prob: float = 1.0, min_prob: float = 0.03, decay: float = 0.001, flat_start: int = 500
) -> Callable[[float], np.float32]:
    """``ProbScheduler``: ``clamp(max_prob * exp(-decay (n - flat_start)), min_prob,
    max_prob)`` in float32, ``n`` the number of steps done."""
    max_p, min_p = np.float32(max_prob), np.float32(min_prob)
    rate, start = np.float32(decay), np.float32(flat_start)

    def schedule(n: float) -> np.float32:
        p = max_p * np.exp(-rate * (np.float32(n) - start))
        return np.float32(min(max(p, min_p), max_p))

    return schedule


def merged_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``merge_dims``: of ``(prod(shape[:-1]), shape[-1])`` and ``(shape[0],
    prod(shape[1:]))`` the one whose second size minus first is smaller (the first on a
    tie)."""
    if len(shape) <= 2:
        return tuple(shape)
    first = (math.prod(shape[:-1]), shape[-1])
    second = (shape[0], math.prod(shape[1:]))
    return first if first[1] - first[0] <= second[1] - second[0] else second


def diagonal_flags(shape, max_size_triangular, min_ndim_triangular, memory_save_mode):
    """Per axis of the (merged) shape: a diagonal factor (True) or a triangular one."""
    order = len(shape)
    by_mode = [False] * order
    largest = int(np.argsort(shape)[::-1][0]) if order else 0
    if memory_save_mode == "smart_one_diag":
        ranked = sorted(shape)
        if order > 1 and ranked[-1] > ranked[-2]:
            by_mode[largest] = True
    elif memory_save_mode == "one_diag":
        by_mode[largest] = True
    elif memory_save_mode == "all_diag":
        by_mode = [True] * order
    elif memory_save_mode is not None:
        raise ValueError(f"memory_save_mode {memory_save_mode!r} is not kron_torch's")
    return [
        size == 1 or size > max_size_triangular or order < min_ndim_triangular or flag
        for size, flag in zip(shape, by_mode, strict=True)
    ]


def _apply_on_axis(q: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` with its index on ``axis`` mapped by ``q``: ``sum_n q[a, n] x[..n..]`` (a
    triangular factor) or ``q[a] x[..a..]`` (a diagonal one)."""
    letters = "abcdefghijklm"[: x.ndim]
    if q.ndim == 1:
        return np.einsum(f"{letters[axis]},{letters}->{letters}", q, x)
    out = letters.replace(letters[axis], "z")
    return np.einsum(f"z{letters[axis]},{letters}->{out}", q, x)


def _gram_on_axis(x: np.ndarray, axis: int, diagonal: bool) -> np.ndarray:
    """``X_(i) X_(i)^T`` (every other axis summed over), or its diagonal."""
    letters = "abcdefghijklm"[: x.ndim]
    if diagonal:
        return np.einsum(f"{letters},{letters}->{letters[axis]}", x, x)
    other = letters.replace(letters[axis], "z")
    return np.einsum(f"{letters},{other}->{letters[axis]}z", x, x)


def spectral_norm_lower_bound(a: np.ndarray, max_abs: float) -> float:
    """``_lb``: one power step from ``a``'s column of largest norm, ``a`` scaled by its
    largest magnitude."""
    a = a / max_abs
    column = a[:, int(np.argmax(np.sum(a * a, axis=0)))]
    x = column @ a
    x = x / np.linalg.norm(x)
    return float(np.linalg.norm(a @ x) * max_abs)


def _times_inverse_upper(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``x @ inv(q)`` on the last axis, ``q`` upper triangular (forward substitution:
    column ``j`` of ``y`` from ``y q = x``)."""
    y = np.zeros_like(x)
    for j in range(q.shape[0]):
        y[..., j] = (x[..., j] - y[..., :j] @ q[:j, j]) / q[j, j]
    return y


def probe_solve(v: np.ndarray, factors: Sequence[np.ndarray]) -> np.ndarray:
    """``conjB``: ``v`` with each axis multiplied from the right by ``Q_i^{-1}``, as
    kron_torch orders it (axes rotated left, solve on the last, swap it back)."""
    order = v.ndim
    b = np.transpose(v, (*range(1, order), 0))
    for i, q in enumerate(factors):
        if q.ndim < 2:
            b = b / q
        else:
            b = _times_inverse_upper(b, q)
        if i < order - 1:
            b = np.swapaxes(b, i, order - 1)
    return b


class KronTorch:
    """``kron_torch.Kron`` on a list of params (one param group), float64 NumPy."""

    def __init__(
        self,
        shapes: Sequence[tuple[int, ...]],
        lr: float = 0.0003,
        b1: float = 0.9,
        weight_decay: float = 0.0,
        preconditioner_update_probability: float | Callable | None = None,
        max_size_triangular: int = 8192,
        min_ndim_triangular: int = 2,
        memory_save_mode: str | None = None,
        momentum_into_precond_update: bool = True,
        precond_lr: float = 0.1,
        precond_init_scale: float = 1.0,
        merge_dims: bool = True,
        precondition_probed_momentum: bool = True,
        balance_scales_float32: bool = False,
    ):
        if preconditioner_update_probability is None:
            preconditioner_update_probability = precond_update_prob_schedule()
        self.lr, self.b1, self.weight_decay = lr, b1, weight_decay
        self.update_probability = preconditioner_update_probability
        self.momentum_into_precond_update = momentum_into_precond_update
        self.precond_lr = precond_lr
        self.precondition_probed_momentum = precondition_probed_momentum
        self.balance_scales_float32 = balance_scales_float32
        self.prob_step = 0
        self.update_counter = 0
        self.step_count = 0
        self.update_steps: list[int] = []  # the steps (1 first) that updated the factors
        self.shapes = [tuple(s) for s in shapes]
        self.merged = []
        self.momentum = []
        self.factors = []
        for shape in self.shapes:
            if not shape:
                raise ValueError("kron_torch does not update a scalar param's preconditioner")
            work = merged_shape(shape) if merge_dims else shape
            diagonal = diagonal_flags(
                work, max_size_triangular, min_ndim_triangular, memory_save_mode
            )
            scale = precond_init_scale ** (1 / len(work))
            self.merged.append(work)
            self.momentum.append(np.zeros(work))
            self.factors.append([
                scale * (np.ones(n) if diag else np.eye(n))
                for n, diag in zip(work, diagonal, strict=True)
            ])

    def _balance(self, factors):
        if self.balance_scales_float32:
            norms = np.array([np.max(np.abs(q)) for q in factors], np.float32)
            mean = np.prod(norms) ** np.float32(1 / len(factors))
            scales = (mean / norms).astype(np.float64)
        else:
            norms = np.array([np.max(np.abs(q)) for q in factors])
            scales = np.exp(np.mean(np.log(norms))) / norms
        return [q * s for q, s in zip(factors, scales, strict=True)]

    def _update_factors(self, factors, fit_on, v):
        """``_update_precond`` (with ``_calc_A_and_conjB``); returns the new factors and
        the probed tensor ``h``."""
        tiny = np.finfo(np.float64).tiny
        h = fit_on + np.sqrt(np.finfo(np.float32).eps) * np.mean(np.abs(fit_on)) * v
        b = probe_solve(v, factors)
        a = h
        for axis, q in enumerate(factors):
            a = _apply_on_axis(q, a, axis)
        new = []
        for axis, q in enumerate(factors):
            diagonal = q.ndim < 2
            gram_a, gram_b = _gram_on_axis(a, axis, diagonal), _gram_on_axis(b, axis, diagonal)
            step = (gram_a - gram_b) * self.precond_lr
            total = gram_a + gram_b
            max_abs = float(np.max(np.abs(total)))
            if diagonal:
                step = step * (q / max(max_abs, tiny))
            else:
                bound = spectral_norm_lower_bound(total, max_abs) if max_abs > 0 else max_abs
                step = (np.triu(step) / max(bound, tiny)) @ q
            new.append(q - step)
        return new, h

    def step(
        self,
        params: Sequence[np.ndarray],
        grads: Sequence[np.ndarray],
        random_normal: Callable[[int, tuple[int, ...]], np.ndarray],
        random_uniform: Callable[[], float],
    ) -> list[np.ndarray]:
        """One ``Kron.step``: the new params (float64 arrays of the params' shapes)."""
        # torch compares its int32 counter with 1 / p in float32 (p a float32 tensor from
        # a schedule, or a Python float).
        probability = self.update_probability
        if callable(probability):
            threshold = np.float32(1) / probability(float(self.prob_step))
        else:
            threshold = np.float32(1 / probability)
        self.update_counter += 1
        do_update = self.update_counter >= threshold
        if do_update:
            self.update_counter = 0
        self.prob_step += 1
        balance = random_uniform() < BALANCE_PROBABILITY and do_update
        self.step_count += 1
        if do_update:
            self.update_steps.append(self.step_count)
        new_params = []
        for index, (param, grad) in enumerate(zip(params, grads, strict=True)):
            grad = np.asarray(grad, np.float64).reshape(self.merged[index])
            mu = self.b1 * self.momentum[index] + (1 - self.b1) * grad
            self.momentum[index] = mu
            direction = mu / (1 - self.b1**self.step_count)
            factors = self.factors[index]
            if grad.ndim > 1 and balance:
                factors = self._balance(factors)
            if do_update:
                fit_on = direction if self.momentum_into_precond_update else grad
                v = np.asarray(random_normal(index, grad.shape), np.float64)
                factors, probed = self._update_factors(factors, fit_on, v)
                if self.momentum_into_precond_update and self.precondition_probed_momentum:
                    direction = probed
            self.factors[index] = factors
            for axis, q in enumerate(factors):
                direction = _apply_on_axis(q, direction, axis)
                direction = _apply_on_axis(q.T if q.ndim == 2 else q, direction, axis)
            rms = np.sqrt(np.mean(direction * direction))
            direction = direction * min(1.0, RMS_LIMIT / (rms + 1e-12))
            direction = direction.reshape(param.shape)
            if self.weight_decay != 0 and param.ndim >= 2:
                direction = direction + self.weight_decay * param
            new_params.append(param - self.lr * direction)
        return new_params
