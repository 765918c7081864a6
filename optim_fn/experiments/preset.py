"""A named optimizer preset: what the command line builds for ``--optimizers NAME``.

Its own module so that the preset tables (:mod:`~optim_fn.experiments.registry`,
:mod:`~optim_fn.experiments.matrix_presets`) can live in several modules without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from optim_fn.core.base import GradientTransformation


@dataclass(frozen=True)
class Preset:
    """A named optimizer: a factory, fixed keywords, and per-problem learning rates.

    ``learning_rates`` maps a problem name to the learning rate used when the user gives
    none; ``"*"`` is the fallback. They were picked from the command line's own
    learning-rate sweep (the sensitivity plot), among the values that converge without
    oscillating, so that the default comparison shows each method working.

    The modern and matrix presets' rates (``registry.MODERN``,
    ``matrix_presets.MATRIX``) came from one sweep per optimizer and problem with
    :func:`~optim_fn.experiments.runner.run`: the learning rates 1e-5, 3e-5, ..., 1, 3
    (a 1-3-10 grid) in one ``vmap``, the problem's default steps and batch mode, seed 0;
    the rate with the lowest final full loss won, ties (within float32 resolution,
    ``1e-9 + 1e-7 |minimum|``) going to the smaller rate. ``"*"`` is the most common
    winner (the smaller on a tie). Parameter-free methods keep their learning rate 1.
    """

    factory: Callable[..., GradientTransformation]
    keywords: dict[str, Any] = field(default_factory=dict)
    learning_rates: dict[str, float] = field(default_factory=dict)
    summary: str = ""

    def learning_rate(self, problem: str) -> float:
        return self.learning_rates.get(problem, self.learning_rates["*"])
