"""See optimizers in action: test problems, a jitted runner, plots, the command line.

* Problems (:mod:`~optim_fn.experiments.functions`, :mod:`~optim_fn.experiments.datasets`):
  2-d test functions with known minima, linear and logistic regression, an MLP on the
  handwritten digits that scikit-learn ships. Each is a mean over examples, with
  full-batch, stochastic and mini-batch gradients (:mod:`~optim_fn.experiments.batching`).
* :func:`run`: N steps in one ``lax.scan``, ``vmap``-ed over seeds and hyperparameter
  grids, with a history of loss, path, gradient and update norms and hyperparameters.
* Plots (:mod:`~optim_fn.experiments.plots`) and the ``compare`` job behind
  ``python -m optim_fn compare`` (:mod:`~optim_fn.experiments.compare`).
"""

from optim_fn import _legacy
from optim_fn.experiments import _requirements  # noqa: F401 - first: names the extra if missing
from optim_fn.experiments.batching import BATCH_MODES, Batching, make_batching
from optim_fn.experiments.datasets import digits_mlp, linear_regression, logistic_regression
from optim_fn.experiments.functions import (
    beale,
    himmelblau,
    quadratic,
    rastrigin,
    rosenbrock,
    saddle,
)
from optim_fn.experiments.problem import Problem
from optim_fn.experiments.runner import History, global_norm, product_grid, run

__all__ = [
    "BATCH_MODES",
    "Batching",
    "History",
    "Problem",
    "beale",
    "digits_mlp",
    "global_norm",
    "himmelblau",
    "linear_regression",
    "logistic_regression",
    "make_batching",
    "product_grid",
    "quadratic",
    "rastrigin",
    "rosenbrock",
    "run",
    "saddle",
]

__getattr__ = _legacy.fallback(__name__)  # names this module held before the layout
