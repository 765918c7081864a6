"""L2-regularised logistic regression on scikit-learn's breast-cancer data (convex).

Standardised features ``x``, labels ``y`` in {0, 1}, an ``nnx.Linear(30, 1)``:

.. math::
    f(w, b) = \\frac1n \\sum_i \\log(1 + e^{-s_i (x_i^\\top w + b)})
              + \\frac\\lambda2 \\lVert w \\rVert^2, \\qquad s_i = 2 y_i - 1

The minimum ``f*`` comes from SciPy's L-BFGS-B (in float64, to a gradient norm of
1e-10); the metric is the suboptimality ``f(w, b) - f*`` on the full data.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.experiments.workloads._base import Workload, from_nnx, require_flax


def cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Standardised features (569, 30) float32 and labels (569,) in {0, 1} float32."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    return x.astype(np.float32), data.target.astype(np.float32)


def logistic_objective(
    w: jax.Array, b: jax.Array, x: jax.Array, y: jax.Array, l2: float
) -> jax.Array:
    """The regularised mean logistic loss above."""
    margins = (2 * y - 1) * (x @ w + b)
    return jnp.mean(jax.nn.softplus(-margins)) + 0.5 * l2 * jnp.sum(w * w)


def scipy_minimum(x: np.ndarray, y: np.ndarray, l2: float) -> float:
    """``f*`` by SciPy's L-BFGS-B in float64, with the gradient written out in NumPy."""
    from scipy.optimize import minimize

    x64, signs = x.astype(np.float64), 2.0 * y.astype(np.float64) - 1.0

    def value_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        margins = signs * (x64 @ w + b)
        value = np.mean(np.logaddexp(0.0, -margins)) + 0.5 * l2 * w @ w
        weight = -signs / (1.0 + np.exp(margins)) / len(signs)  # d/dz of softplus(-s z)
        grad = np.append(x64.T @ weight + l2 * w, weight.sum())
        return float(value), grad

    result = minimize(
        value_and_grad, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
        options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10_000},
    )
    return float(result.fun)


def logistic_regression(
    *, l2: float = 1e-2, steps: int = 500, target: float = 1e-3, batch_size: int | None = None
) -> Workload:
    """Full-batch by default; target suboptimality 1e-3."""
    nnx = require_flax()
    x, y = cancer_arrays()
    minimum = scipy_minimum(x, y, l2)

    def objective(model: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        return logistic_objective(model.kernel[...][:, 0], model.bias[...][0], x, y, l2)

    workload = from_nnx(
        "logistic",
        lambda rngs: nnx.Linear(x.shape[1], 1, rngs=rngs),
        objective,
        (x, y),
        (x, y),
        evaluate=lambda model, x, y: objective(model, x, y) - minimum,
        metric="suboptimality",
        target=target,
        steps=steps,
        batch_size=batch_size,
        description=f"logistic regression (l2={l2:g}) on breast cancer, suboptimality",
    )
    workload.extra["minimum"] = minimum
    return workload
