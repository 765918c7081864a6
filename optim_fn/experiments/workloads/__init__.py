"""Real small workloads for the benchmark: flax nnx models trained with ``jax.grad``.

* ``digits_cnn``: a small CNN on scikit-learn's 8x8 digits (test accuracy 0.97).
* ``modular_addition``: grokking, a one-layer transformer on ``(a + b) mod 97`` with half
  of the pairs for training (validation accuracy 0.99; Power et al. 2022).
* ``char_lm``: a character transformer on ``pydoc_data.topics`` (validation loss).
* ``logistic``: L2-regularised logistic regression on breast cancer (suboptimality
  against SciPy's minimum).

Bring your own model with :func:`from_nnx`, :func:`from_equinox` or :func:`make_workload`.
Data ships with scikit-learn and CPython; nothing is downloaded. Flax comes with the
``experiments`` extra and is imported only when a workload is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from optim_fn.experiments.workloads._base import (
    METRICS,
    Workload,
    accuracy,
    check_target,
    cross_entropy,
    from_equinox,
    from_nnx,
    make_workload,
    require_flax,
    train_batch,
)
from optim_fn.experiments.workloads.char_lm import char_lm
from optim_fn.experiments.workloads.digits_cnn import digits_cnn
from optim_fn.experiments.workloads.logistic import logistic_regression
from optim_fn.experiments.workloads.modular import modular_addition

WORKLOADS: dict[str, Callable[..., Workload]] = {
    "digits_cnn": digits_cnn,
    "modular_addition": modular_addition,
    "char_lm": char_lm,
    "logistic": logistic_regression,
}


def build_workloads(names: Sequence[str]) -> list[Workload]:
    """The named workloads; an unknown name raises a ``ValueError`` listing the valid ones."""
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        raise ValueError(
            f"unknown workload {', '.join(map(repr, unknown))}; valid: {', '.join(WORKLOADS)}"
        )
    return [WORKLOADS[name]() for name in names]


__all__ = [
    "METRICS",
    "WORKLOADS",
    "Workload",
    "accuracy",
    "build_workloads",
    "char_lm",
    "check_target",
    "cross_entropy",
    "digits_cnn",
    "from_equinox",
    "from_nnx",
    "logistic_regression",
    "make_workload",
    "modular_addition",
    "require_flax",
    "train_batch",
]
