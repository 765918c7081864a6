"""Scion in NumPy, transcribed from the authors' ``scion.py``.

Read at LIONS-EPFL/scion commit f58a393e010395a5913176be5673d8839caa6285 (2026-04-08):
the classes ``Spectral``, ``SpectralConv``, ``ColNorm``, ``RowNorm``, ``Sign``, ``BiasRMS``
and ``Scion.step``, and ``zeropower_via_newtonschulz5``. Written by us from that reading,
in the authors' PyTorch layout (a weight is ``(d_out, d_in)``, a convolution kernel
``(out, in, *spatial)``) and in float64 throughout (the authors run Newton-Schulz in
bfloat16: a precision choice, not part of the algorithm).
"""

from __future__ import annotations

import math

import numpy as np

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: np.ndarray, steps: int = 5, eps: float = 1e-7) -> np.ndarray:
    """``zeropower_via_newtonschulz5`` on one 2-d array."""
    a, b, c = NS_COEFFS
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / (np.linalg.norm(x) + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if g.shape[0] > g.shape[1] else x


def lmo(g: np.ndarray, norm: str, *, normalized=None, max_scale=False, ns_eps=1e-7,
        eps=1e-8) -> np.ndarray:
    """The authors' ``Norm.lmo`` of ``g`` in their layout."""
    if norm == "spectral":
        normalized = True if normalized is None else normalized
        d_out, d_in = g.shape
        scale = math.sqrt(d_out / d_in) if normalized else math.sqrt(d_out)
        if max_scale:
            scale = max(1.0, scale)
        return newton_schulz(g, eps=ns_eps) * scale
    if norm == "spectral_conv":
        out = newton_schulz(g.reshape(len(g), -1), eps=ns_eps).reshape(g.shape)
        d_out, d_in, *kernel = g.shape
        if g.ndim == 3:
            return out * (d_out / d_in) ** 0.5 / kernel[0]
        return out * (d_out / d_in) ** 0.5 / kernel[0] ** 2
    if norm == "column":
        rms = 1 / math.sqrt(g.shape[0]) * np.sqrt(np.sum(g**2, axis=0, keepdims=True))
        if normalized:
            rms = rms * g.shape[1]
        return g / (rms + eps)
    if norm == "row":
        normalized = True if normalized is None else normalized
        rms = np.sqrt(np.sum(g**2, axis=-1, keepdims=True))
        if normalized:
            rms = rms * math.sqrt(g.shape[-1])
        return g / (rms + eps)
    if norm == "sign":
        normalized = True if normalized is None else normalized
        return np.sign(g) / g.shape[1] if normalized else np.sign(g)
    if norm == "bias_rms":
        return g / (np.sqrt(np.mean(g**2, axis=0, keepdims=True)) + eps)
    raise ValueError(norm)


class Scion:
    """``Scion.step`` for a dict of params, each with its norm options and radius."""

    def __init__(self, params, groups, lr, momentum, unconstrained):
        self.params = {k: np.array(v, np.float64) for k, v in params.items()}
        self.groups = groups  # name -> (norm, options dict, scale)
        self.lr, self.momentum, self.unconstrained = lr, momentum, unconstrained
        self.buffers = {k: np.zeros_like(v) for k, v in self.params.items()}

    def step(self, grads):
        for name, p in self.params.items():
            g = grads[name]
            if self.momentum != 1:
                buf = self.buffers[name] * (1 - self.momentum) + self.momentum * g
                self.buffers[name] = g = buf
            norm, options, scale = self.groups[name]
            update = scale * lmo(g, norm, **options)
            if not self.unconstrained:
                p = p * (1 - self.lr)
            self.params[name] = p - self.lr * update
        return self.params
