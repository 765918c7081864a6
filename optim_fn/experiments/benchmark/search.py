"""Search spaces and the quasi-random tuning sampler (AlgoPerf's external tuning, in small).

A search space maps each tuned hyperparameter to a :class:`Range`. Trials are the first
``n`` points of the Halton sequence in ``[0, 1)^d`` (bases 2, 3, 5, ... one per
hyperparameter, in the space's order), optionally shifted by a seeded uniform vector
modulo 1 (a Cranley-Patterson rotation), then mapped into each range:

* ``"linear"``: ``low + u (high - low)``;
* ``"log"``: ``exp(log low + u (log high - log low))``;
* ``"one_minus_log"``: the value is ``1 - v`` with ``v`` log-uniform in ``[low, high]``
  (for decay rates such as ``b1``: ``low=0.01, high=0.1`` covers ``0.9 .. 0.99``).

Halton points fill the cube evenly from the first few on, which is why AlgoPerf uses
them for its tuning trials: a handful of trials covers the space better than random ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

SCALES = ("linear", "log", "one_minus_log")
PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)


@dataclass(frozen=True)
class Range:
    """A hyperparameter's range ``[low, high]`` and how it is sampled (see the module)."""

    low: float
    high: float
    scale: str = "log"

    def check(self, name: str) -> None:
        if self.scale not in SCALES:
            raise ValueError(
                f"search space {name!r}: scale must be one of {', '.join(SCALES)}, "
                f"got {self.scale!r}"
            )
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(
                f"search space {name!r}: the range [{self.low!r}, {self.high!r}] is empty; "
                "give low < high (fix a value with the optimizer's keywords instead)"
            )
        if self.scale != "linear" and self.low <= 0:
            raise ValueError(
                f"search space {name!r}: a {self.scale} range needs low > 0, got {self.low!r}"
            )

    def map(self, unit: np.ndarray) -> np.ndarray:
        """Points of ``[0, 1)`` to values of the range."""
        unit = np.asarray(unit, np.float64)
        if self.scale == "linear":
            return self.low + unit * (self.high - self.low)
        logs = np.log(self.low) + unit * (np.log(self.high) - np.log(self.low))
        return np.exp(logs) if self.scale == "log" else 1.0 - np.exp(logs)


def radical_inverse(index: int, base: int) -> float:
    """The ``index``-th van der Corput number in ``base``: its digits mirrored after the point."""
    value, scale = 0.0, 1.0 / base
    while index > 0:
        index, digit = divmod(index, base)
        value += digit * scale
        scale /= base
    return value


def halton(count: int, dimensions: int) -> np.ndarray:
    """``(count, dimensions)``: Halton points 1..count (point 0, the origin, is skipped)."""
    if dimensions > len(PRIMES):
        raise ValueError(f"at most {len(PRIMES)} tuned hyperparameters, got {dimensions}")
    return np.array(
        [[radical_inverse(i, PRIMES[d]) for d in range(dimensions)] for i in range(1, count + 1)]
    ).reshape(count, dimensions)


def sample(
    space: Mapping[str, Range], count: int, seed: int | None = None
) -> dict[str, np.ndarray]:
    """``count`` trials from ``space``: a dict of ``(count,)`` arrays, one per name.

    ``seed=None``: the plain Halton points; an integer: rotated by a seeded shift.
    """
    if count < 1:
        raise ValueError(f"the number of trials must be at least 1, got {count}")
    for name, bounds in space.items():
        bounds.check(name)
    unit = halton(count, len(space))
    if seed is not None:
        unit = (unit + np.random.default_rng(seed).random(len(space))) % 1.0
    return {name: bounds.map(unit[:, d]) for d, (name, bounds) in enumerate(space.items())}
