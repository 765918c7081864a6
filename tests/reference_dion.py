"""Dion in NumPy, transcribed from microsoft/dion.

Read at microsoft/dion commit 0a059a4542e5aa74b40dcd1dce363836c7afcd48 (2026-08-07):
``dion/dion.py`` (``Dion._init_opt_state_dion``, ``dion_update_ddp`` on one device,
``orthogonalize``, ``fix_all_zero_or_nan``, ``column_normalize``), ``dion/dion_reference.py``
(``dion_update``, ``power_iteration``, ``orthogonalize`` with ``qr_method`` "qr" / "cqr" /
"rcqr", the CQR warm-up) and ``dion/scalar_opts.py`` (``adamw_update``, ``lion_update``).
Written by us from that reading, in the reference's PyTorch layout (a weight is
``(fan_out, fan_in)``) and in float64 throughout (the reference computes its QR
factorisations and column norms in float32: a precision choice). ``Q`` starts from the
matrix the caller gives (the reference draws it with ``torch.randn``), the RCQR
sketches from a NumPy generator.
"""

from __future__ import annotations

import math

import numpy as np


def rank_of(m: int, n: int, rank_fraction: float, rank_multiple_of: int) -> int:
    r = rank_fraction * min(m, n)
    r = rank_multiple_of * math.ceil(r / rank_multiple_of)
    return min(r, m, n)


def _right_solve(p: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``P R^{-1}`` (``solve_triangular(R, P, upper=True, left=False)``)."""
    return np.linalg.solve(upper.T, p.T).T


def orthogonalize(p, qr_method, oversample, rng):
    m, n = p.shape
    q = None
    if qr_method == "cqr":
        try:
            upper = np.linalg.cholesky(p.T @ p).T
            q = _right_solve(p, upper)
        except np.linalg.LinAlgError:
            qr_method = "rcqr"
    if qr_method == "qr" or (qr_method == "rcqr" and m <= n):
        q = np.linalg.qr(p)[0]
    if qr_method == "rcqr" and m > n:
        k = math.ceil(oversample * n / 128.0) * 128
        sketch = rng.normal(scale=math.sqrt(1.0 / k), size=(k, m))
        upper = np.linalg.qr(sketch @ p, mode="r")
        q = _right_solve(p, upper)
        upper = np.linalg.cholesky(q.T @ q).T
        q = _right_solve(q, upper)
    return q


class Dion:
    """``Dion.step`` on one device for a dict of params: "dion" matrices (with their
    initial ``Q``) and "adamw" / "lion" vectors."""

    def __init__(self, params, q_init, *, lr, mu, weight_decay, betas, epsilon,
                 qr_method, oversample, cqr_warmup_steps, power_iters, scalar_algorithm,
                 scalar_lr, scalar_weight_decay, seed=0):
        self.params = {k: np.array(v, np.float64) for k, v in params.items()}
        self.q = {k: np.array(v, np.float64) for k, v in q_init.items()}
        self.momentum = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.variance = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.lr, self.mu, self.weight_decay = lr, mu, weight_decay
        self.beta1, self.beta2 = betas
        self.epsilon, self.qr_method, self.oversample = epsilon, qr_method, oversample
        self.cqr_warmup_steps, self.power_iters = cqr_warmup_steps, power_iters
        self.scalar_algorithm = scalar_algorithm
        self.scalar_lr, self.scalar_weight_decay = scalar_lr, scalar_weight_decay
        self.rng = np.random.default_rng(seed)
        self.step_count = 0

    def step(self, grads):
        self.step_count += 1
        for name, g in grads.items():
            if name in self.q:
                self._dion(name, g)
            elif self.scalar_algorithm == "adamw":
                self._adamw(name, g)
            else:
                self._lion(name, g)
        return self.params

    def _dion(self, name, g):
        x, q_init = self.params[name], self.q[name]
        qr_method = self.qr_method
        if qr_method == "cqr" and self.step_count <= self.cqr_warmup_steps:
            qr_method = "rcqr"
        transpose = x.shape[0] < x.shape[1]
        m = self.momentum[name] + g
        b = m.T if transpose else m
        q = q_init
        for _ in range(self.power_iters):
            p = orthogonalize(b @ q, qr_method, self.oversample, self.rng)
            q = b.T @ p
        r = q
        if np.all(m == 0):
            p, r = np.zeros_like(p), q_init
        else:
            p, r = np.nan_to_num(p), np.nan_to_num(r)
        m = m - (1 - self.mu) * (r @ p.T if transpose else p @ r.T)
        q = r / (np.linalg.norm(r, axis=0, keepdims=True) + self.epsilon)
        x = x * (1 - self.lr * self.weight_decay)
        fan_out, fan_in = x.shape
        scaled_lr = ((fan_out / fan_in) ** 0.5) * self.lr
        x = x - scaled_lr * (q @ p.T if transpose else p @ q.T)
        self.params[name], self.momentum[name], self.q[name] = x, m, q

    def _adamw(self, name, g):
        m = self.momentum[name] + (1 - self.beta1) * (g - self.momentum[name])
        v = self.beta2 * self.variance[name] + (1 - self.beta2) * g * g
        bias_correction1 = 1 - self.beta1**self.step_count
        bias_correction2 = 1 - self.beta2**self.step_count
        denom = np.sqrt(v) / np.sqrt(bias_correction2) + self.epsilon
        x = self.params[name] * (1 - self.scalar_lr * self.scalar_weight_decay)
        self.params[name] = x - self.scalar_lr / bias_correction1 * m / denom
        self.momentum[name], self.variance[name] = m, v

    def _lion(self, name, g):
        m = self.momentum[name]
        u = np.sign(m + (1 - self.beta1) * (g - m))
        self.momentum[name] = m + (1 - self.beta2) * (g - m)
        x = self.params[name] * (1 - self.scalar_lr * self.scalar_weight_decay)
        self.params[name] = x - self.scalar_lr * u
