"""What a test problem is: a finite sum of per-example losses with a known gradient.

Every problem is written as an average over examples,

.. math::
    f(\\theta) = \\frac{1}{N} \\sum_{i=1}^{N} \\ell_i(\\theta),

so that the three ways of estimating the gradient are defined the same way everywhere
(see :mod:`optim_fn.experiments.batching`): full batch (all :math:`N` examples), stochastic
(one example) and mini-batch (``batch_size`` examples). For the data problems an example
is a data point; for the 2-d test functions an example is one term of the function (the
Rosenbrock function is the mean of ``2 (a - x)^2`` and ``2 b (y - x^2)^2``), which gives
them a genuine stochastic gradient without inventing noise.

Each problem carries a gradient derived by hand (not ``jax.grad``), so that the tests can
check it against ``jax.grad`` of the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax

Params = Any
Batch = Any


@dataclass(frozen=True)
class Problem:
    """A test problem for the runner.

    Attributes:
      name: short name, as the command line spells it (``"rosenbrock"``).
      description: one line for tables and plot titles.
      data: the examples, a pytree of arrays whose leading axis has ``num_examples``.
      loss: ``loss(params, batch) -> scalar``, the mean loss over ``batch`` (a slice of
        ``data`` along its leading axis).
      value_and_grad: ``(params, batch) -> (loss, grads)`` with a hand-derived gradient.
      init: ``init(seed) -> params`` for an int ``seed``. The 2-d functions start at a
        fixed point and ignore the seed; the MLP draws its initial weights on the host
        with ``numpy.random.default_rng(seed)`` (no random-number program to compile).
      minimum: the smallest value of the full loss, or None where it is not known.
      minimizers: the points where the minimum is attained (2-d problems), for plots.
      tolerance: a run has "converged" at the first step whose full loss is below
        ``minimum + tolerance`` (``0 + tolerance`` when the minimum is unknown and the loss
        is non-negative).
      bounds: ``((x_min, x_max), (y_min, y_max))`` of the contour plot, for 2-d problems.
      evaluate: ``evaluate(params) -> {name: scalar}``, held-out metrics such as test
        accuracy, or None.
      default_steps: the number of steps the command line runs by default.
      default_batch: the batch mode the command line uses by default (``"full"``,
        ``"stochastic"`` or ``"minibatch"``).
      options: the keyword arguments the problem was built with (for reports).
    """

    name: str
    description: str
    data: Any
    loss: Callable[[Params, Batch], jax.Array]
    value_and_grad: Callable[[Params, Batch], tuple[jax.Array, Params]]
    init: Callable[[int], Params]
    minimum: float | None
    tolerance: float
    default_steps: int
    default_batch: str = "full"
    minimizers: tuple[tuple[float, float], ...] = ()
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None
    evaluate: Callable[[Params], dict[str, jax.Array]] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def num_examples(self) -> int:
        """N, the number of examples the loss averages over."""
        return int(jax.tree.leaves(self.data)[0].shape[0])

    @property
    def is_2d(self) -> bool:
        """Whether the params are one point of the plane (trajectories can be drawn)."""
        return self.bounds is not None

    def grad(self, params: Params, batch: Batch) -> Params:
        """The hand-derived gradient of :attr:`loss` on ``batch``."""
        return self.value_and_grad(params, batch)[1]

    def full_loss(self, params: Params) -> jax.Array:
        """The objective :math:`f(\\theta)`: the loss over every example."""
        return self.loss(params, self.data)
