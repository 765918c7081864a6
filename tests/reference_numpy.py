"""Independent NumPy transcriptions of the seed optimizers and LaProp, from the papers' formulas.

Each optimizer is a small class holding its state as NumPy arrays (float64, or complex128
for complex params) in dicts keyed like the params. ``step(grads, params)`` advances one
step with an explicit loop over the leaves and returns the update to add to the params.
Nothing here imports jax, optax or optim_fn, so a mistake shared by optim_fn and optax
cannot hide in these formulas.

Conventions shared with optim_fn (documented in its docstrings): ``t`` is 1 at the first
step; a learning rate may be a function of the step count ``t - 1`` (0 at the first step);
for complex entries the second moment is ``|g|^2`` (a real number per complex entry);
"momentum" is the heavy-ball buffer ``v_t = x_t + mu v_{t-1}``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Tree = dict[str, np.ndarray]


def abs_sq(x: np.ndarray) -> np.ndarray:
    """``|x|^2`` as a real array: one second moment per (complex) entry."""
    return (x * np.conj(x)).real


def value_at(hyperparameter: float | Callable[[int], float], step_count: int) -> float:
    """A number, or a schedule evaluated at the step count (0 at the first step)."""
    if callable(hyperparameter):
        return float(hyperparameter(step_count))
    return float(hyperparameter)


def zeros_like(params: Tree, value: float = 0.0) -> Tree:
    return {k: np.full(np.shape(p), value, dtype=np.asarray(p).dtype) for k, p in params.items()}


class Reference:
    """Base: counts steps; subclasses implement ``_step(t, grads, params)``."""

    def init(self, params: Tree) -> None:
        self.t = 0

    def step(self, grads: Tree, params: Tree) -> Tree:
        self.t += 1
        return self._step(self.t, grads, params)

    def _step(self, t: int, grads: Tree, params: Tree) -> Tree:
        raise NotImplementedError


class Momentum:
    """Heavy ball (Polyak 1964): ``v_t = x_t + mu v_{t-1}``; emits ``v_t``.

    Nesterov form (Sutskever et al. 2013, as rewritten for a gradient evaluated at the
    current point): emits ``x_t + mu v_t``.
    """

    def __init__(self, momentum: float, nesterov: bool):
        self.momentum = momentum
        self.nesterov = nesterov

    def init(self, params: Tree) -> None:
        self.v = zeros_like(params)

    def __call__(self, x: Tree) -> Tree:
        out = {}
        for k in x:
            self.v[k] = x[k] + self.momentum * self.v[k]
            out[k] = x[k] + self.momentum * self.v[k] if self.nesterov else self.v[k]
        return out


class SGD(Reference):
    """``p_t = p_{t-1} - lr * g_t`` (with momentum: ``- lr * v_t``)."""

    def __init__(self, learning_rate, momentum: float | None = None, nesterov: bool = False):
        self.learning_rate = learning_rate
        self.trace = None if momentum is None else Momentum(momentum, nesterov)

    def init(self, params: Tree) -> None:
        super().init(params)
        if self.trace is not None:
            self.trace.init(params)

    def _step(self, t, grads, params):
        lr = value_at(self.learning_rate, t - 1)
        direction = grads if self.trace is None else self.trace(grads)
        return {k: -lr * direction[k] for k in grads}


class Adagrad(Reference):
    """Duchi, Hazan & Singer (2011), diagonal form with eps inside the root.

    ``s_t = s_{t-1} + |g_t|^2`` (``s_0 = initial_accumulator_value``);
    ``p_t = p_{t-1} - lr g_t / sqrt(s_t + eps)``, and no step where ``s_t = 0``.
    """

    def __init__(self, learning_rate, initial_accumulator_value=0.1, eps=1e-7):
        self.learning_rate = learning_rate
        self.s0 = initial_accumulator_value
        self.eps = eps

    def init(self, params):
        super().init(params)
        self.s = {k: np.full(np.shape(p), float(self.s0)) for k, p in params.items()}

    def _step(self, t, grads, params):
        lr = value_at(self.learning_rate, t - 1)
        out = {}
        for k, g in grads.items():
            self.s[k] = self.s[k] + abs_sq(g)
            out[k] = np.zeros_like(g)
            for i in np.ndindex(g.shape):
                s = self.s[k][i]
                if s > 0:
                    out[k][i] = -lr * g[i] / np.sqrt(s + self.eps)
        return out


class RMSprop(Reference):
    """Hinton, Lecture 6e (2012); centered form of Graves (2013, eq. 38-40).

    ``v_t = d v_{t-1} + (1-d)|g_t|^2`` (``v_0 = initial_scale``); centered:
    ``m_t = d m_{t-1} + (1-d) g_t`` and the denominator uses ``v_t - |m_t|^2``. With
    ``bias_correction`` the averages are divided by ``1 - d^t`` first. The scaled gradient
    is ``g / sqrt(D + eps)`` (``eps_in_sqrt``) or ``g / (sqrt(D) + eps)``; it is multiplied
    by ``-lr`` and then, if given, passed through heavy-ball momentum.
    """

    def __init__(
        self,
        learning_rate,
        decay=0.9,
        eps=1e-8,
        initial_scale=0.0,
        eps_in_sqrt=True,
        centered=False,
        momentum=None,
        nesterov=False,
        bias_correction=False,
    ):
        self.learning_rate = learning_rate
        self.decay = decay
        self.eps = eps
        self.initial_scale = initial_scale
        self.eps_in_sqrt = eps_in_sqrt
        self.centered = centered
        self.bias_correction = bias_correction
        self.trace = None if momentum is None else Momentum(momentum, nesterov)

    def init(self, params):
        super().init(params)
        self.v = {k: np.full(np.shape(p), self.initial_scale) for k, p in params.items()}
        self.m = zeros_like(params)
        if self.trace is not None:
            self.trace.init(params)

    def _step(self, t, grads, params):
        lr = value_at(self.learning_rate, t - 1)
        d = self.decay
        correction = 1.0 - d**t if self.bias_correction else 1.0
        scaled = {}
        for k, g in grads.items():
            self.v[k] = d * self.v[k] + (1 - d) * abs_sq(g)
            self.m[k] = d * self.m[k] + (1 - d) * g
            denominator = self.v[k] / correction
            if self.centered:
                denominator = denominator - abs_sq(self.m[k] / correction)
            if self.eps_in_sqrt:
                root = np.sqrt(denominator + self.eps)
            else:
                root = np.sqrt(denominator) + self.eps
            scaled[k] = -lr * g / root
        return scaled if self.trace is None else self.trace(scaled)


class Adadelta(Reference):
    """Zeiler (2012), Algorithm 1, with coupled (L2) weight decay and a learning rate.

    ``g' = g + wd p`` on masked leaves; ``E[g^2]_t = rho E[g^2] + (1-rho)|g'|^2``;
    ``dx = sqrt(E[dx^2] + eps) / sqrt(E[g^2]_t + eps) g'``;
    ``E[dx^2]_t = rho E[dx^2] + (1-rho)|dx|^2``; ``p_t = p_{t-1} - lr dx``.
    """

    def __init__(self, learning_rate=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, mask=None):
        self.learning_rate = learning_rate
        self.rho = rho
        self.eps = eps
        self.weight_decay = weight_decay
        self.mask = mask

    def init(self, params):
        super().init(params)
        self.e_g = {k: np.zeros(np.shape(p)) for k, p in params.items()}
        self.e_x = {k: np.zeros(np.shape(p)) for k, p in params.items()}

    def _step(self, t, grads, params):
        lr = value_at(self.learning_rate, t - 1)
        rho = self.rho
        out = {}
        for k, g in grads.items():
            if self.mask is None or self.mask[k]:
                g = g + self.weight_decay * params[k]
            self.e_g[k] = rho * self.e_g[k] + (1 - rho) * abs_sq(g)
            dx = np.sqrt(self.e_x[k] + self.eps) / np.sqrt(self.e_g[k] + self.eps) * g
            self.e_x[k] = rho * self.e_x[k] + (1 - rho) * abs_sq(dx)
            out[k] = -lr * dx
        return out


class Adam(Reference):
    """Kingma & Ba (2015), Algorithm 1; NAdam with constant b1 (Dozat 2016); AdamW.

    ``m_t = b1 m + (1-b1) g``; ``v_t = b2 v + (1-b2)|g|^2``; ``v^ = v_t/(1-b2^t)``;
    ``m^ = m_t/(1-b1^t)``, or with Nesterov ``b1 m_t/(1-b1^{t+1}) + (1-b1) g/(1-b1^t)``;
    ``a = m^ / (sqrt(v^ + eps_root) + eps)``.
    Adam: ``p_t = p - lr a``. AdamW (Loshchilov & Hutter 2019, decoupled decay on the
    masked leaves): ``p_t = p - lr (a + wd p)``.
    """

    def __init__(
        self,
        learning_rate,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        eps_root=0.0,
        nesterov=False,
        weight_decay=0.0,
        mask=None,
    ):
        self.learning_rate = learning_rate
        self.b1, self.b2, self.eps, self.eps_root = b1, b2, eps, eps_root
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.mask = mask

    def init(self, params):
        super().init(params)
        self.m = zeros_like(params)
        self.v = {k: np.zeros(np.shape(p)) for k, p in params.items()}

    def _step(self, t, grads, params):
        lr = value_at(self.learning_rate, t - 1)
        wd = value_at(self.weight_decay, t - 1)
        b1, b2 = self.b1, self.b2
        out = {}
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * abs_sq(g)
            if self.nesterov:
                m_hat = b1 * self.m[k] / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
            else:
                m_hat = self.m[k] / (1 - b1**t)
            v_hat = self.v[k] / (1 - b2**t)
            direction = m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps)
            if self.mask is None or self.mask[k]:
                direction = direction + wd * params[k]
            out[k] = -lr * direction
        return out


class LaProp(Reference):
    """Ziyin, Wang & Ueda (2020, arXiv:2002.04839), Algorithm 1, in the paper's names:
    momentum ``mu`` (b1), adaptivity ``nu`` (b2), ``eps``, learning rate ``lambda_t``.

    ``lr_in_momentum=True`` (the default) is the authors' code (``laprop.py`` of
    github.com/Z-T-WANG/LaProp-Optimizer; its README, "Additional Details compared with
    the Paper"): the learning rate is part of the momentum, and the momentum's bias
    correction is the same running average of the learning rates. ``False`` is the
    paper's line as printed (learning rate outside the momentum). Per step ``t``::

        c_n <- nu c_n + (1 - nu)                        (1 - nu^t for a constant nu)
        n_t  = nu n_{t-1} + (1 - nu) |g_t|^2
        s_t  = g_t / (sqrt(n_t / c_n) + eps)            the normalised gradient
        authors:  c_m <- mu c_m + (1 - mu) lambda_t
                  m_t  = mu m_{t-1} + (1 - mu) lambda_t s_t
                  x_t  = x_{t-1} - (lambda_t / c_m) m_t    (lambda_t / c_m := 1 if lambda_t = 0)
        paper:    c_m <- mu c_m + (1 - mu)              (1 - mu^t)
                  m_t  = mu m_{t-1} + (1 - mu) s_t
                  x_t  = x_{t-1} - lambda_t m_t / c_m

    (``c_n = c_m = 0``, ``n_0 = m_0 = 0``; ``mu``, ``nu`` may be functions of the step
    count, read at each step as the authors do.) ``weight_decay`` adds AdamW's decoupled
    ``- lambda_t wd x_{t-1}`` on the masked leaves (the authors' fairseq version; their
    ``laprop.py`` multiplies by ``1 - wd`` after the step instead).
    """

    def __init__(
        self,
        learning_rate,
        mu=0.9,
        nu=0.999,
        eps=1e-15,
        weight_decay=0.0,
        mask=None,
        lr_in_momentum=True,
    ):
        self.learning_rate = learning_rate
        self.mu, self.nu, self.eps = mu, nu, eps
        self.weight_decay = weight_decay
        self.mask = mask
        self.lr_in_momentum = lr_in_momentum

    def init(self, params):
        super().init(params)
        self.m = zeros_like(params)
        self.n = {k: np.zeros(np.shape(p)) for k, p in params.items()}
        self.c_m = 0.0
        self.c_n = 0.0

    def _step(self, t, grads, params):
        lam = value_at(self.learning_rate, t - 1)
        wd = value_at(self.weight_decay, t - 1)
        mu, nu = value_at(self.mu, t - 1), value_at(self.nu, t - 1)
        self.c_n = nu * self.c_n + (1 - nu)
        weight = lam if self.lr_in_momentum else 1.0
        self.c_m = mu * self.c_m + (1 - mu) * weight
        if not self.lr_in_momentum:
            step_size = lam / self.c_m
        elif lam != 0:
            step_size = lam / self.c_m
        else:
            step_size = 1.0
        out = {}
        for k, g in grads.items():
            self.n[k] = nu * self.n[k] + (1 - nu) * abs_sq(g)
            s = g / (np.sqrt(self.n[k] / self.c_n) + self.eps)
            self.m[k] = mu * self.m[k] + (1 - mu) * weight * s
            out[k] = -step_size * self.m[k]
            if self.mask is None or self.mask[k]:
                out[k] = out[k] - lam * wd * params[k]
        return out


def run(optimizer: Reference, params: Tree, grads_per_step: list[Tree]) -> tuple[list, list]:
    """Runs ``optimizer`` over the gradients; returns the updates and params of each step."""
    params = {k: np.array(v) for k, v in params.items()}
    optimizer.init(params)
    updates_log, params_log = [], []
    for grads in grads_per_step:
        updates = optimizer.step(grads, params)
        params = {k: params[k] + updates[k] for k in params}
        updates_log.append(updates)
        params_log.append(params)
    return updates_log, params_log

