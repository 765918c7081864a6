"""Problems built on data: linear and logistic regression, and an MLP on digits.

The regressions have two parameters, so their loss surface can be drawn and the paths
of full-batch, stochastic and mini-batch gradient descent compared on it. Their minima
are computed at construction in float64 with NumPy (least squares in closed form,
Newton's method for the regularised logistic loss), independently of JAX.

The MLP classifies the 8x8 handwritten digits that scikit-learn ships (1797 images, no
download): 1440 for training (divisible by the usual batch sizes, so that an epoch of
mini-batches covers every example exactly once) and 357 held out for test accuracy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.experiments.problem import Problem

Array = jax.Array


def _take_box(points: list[np.ndarray], margin: float) -> tuple:
    """Plot bounds that contain every point, with ``margin`` on each side."""
    stacked = np.stack(points)
    low, high = stacked.min(axis=0) - margin, stacked.max(axis=0) + margin
    return ((float(low[0]), float(high[0])), (float(low[1]), float(high[1])))


def linear_regression(
    num_examples: int = 256,
    slope: float = 2.0,
    intercept: float = -1.0,
    noise: float = 0.5,
    feature_mean: float = 1.5,
    start: tuple[float, float] = (-1.0, 2.0),
    seed: int = 0,
) -> Problem:
    """Least squares on a line: :math:`\\tfrac{1}{2N}\\sum_i (w x_i + b - y_i)^2`.

    Data: :math:`x_i \\sim \\mathcal N(\\text{feature\\_mean}, 1)`,
    :math:`y_i = \\text{slope}\\, x_i + \\text{intercept} + \\text{noise}\\,\\epsilon_i`.
    Params: the array :math:`(w, b)`. Because the features are not centred, :math:`w`
    and :math:`b` are coupled and the valley is tilted and elongated. The minimum is the
    least-squares fit (not exactly ``(slope, intercept)``, because of the noise).
    Gradient: :math:`\\frac1N \\sum_i r_i (x_i, 1)` with :math:`r_i = w x_i + b - y_i`.
    """
    if num_examples < 2:
        raise ValueError(f"linear_regression: `num_examples` must be >= 2, got {num_examples}")
    rng = np.random.default_rng(seed)
    x = rng.normal(feature_mean, 1.0, num_examples)
    y = slope * x + intercept + noise * rng.normal(size=num_examples)
    # The minimum is that of the float32 data the loss sees, not of the float64 draw.
    x, y = x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)
    design = np.stack([x, np.ones_like(x)], axis=1)
    best, *_ = np.linalg.lstsq(design, y, rcond=None)
    minimum = 0.5 * np.mean((design @ best - y) ** 2)
    data = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}

    def loss(params: Array, batch: dict) -> Array:
        residual = params[0] * batch["x"] + params[1] - batch["y"]
        return 0.5 * jnp.mean(residual**2)

    def value_and_grad(params: Array, batch: dict) -> tuple[Array, Array]:
        residual = params[0] * batch["x"] + params[1] - batch["y"]
        grad = jnp.stack([jnp.mean(residual * batch["x"]), jnp.mean(residual)])
        return 0.5 * jnp.mean(residual**2), grad

    start_point = jnp.asarray(start, jnp.float32)
    return Problem(
        name="linear",
        description=f"linear regression ({num_examples} points)",
        data=data,
        loss=loss,
        value_and_grad=value_and_grad,
        init=lambda seed: start_point,
        minimum=float(minimum),
        minimizers=(tuple(float(v) for v in best),),
        bounds=_take_box([best, np.asarray(start)], margin=1.5),
        tolerance=1e-3,
        default_steps=500,
        options={
            "num_examples": num_examples,
            "slope": slope,
            "intercept": intercept,
            "noise": noise,
            "feature_mean": feature_mean,
            "start": start,
            "seed": seed,
        },
    )


def _logistic_minimizer(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """The minimiser of the regularised logistic loss, by Newton's method in float64."""
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) / len(y) + l2 * w
        hessian = (x.T * (p * (1 - p))) @ x / len(y) + l2 * np.eye(len(w))
        step = np.linalg.solve(hessian, grad)
        w = w - step
        if np.max(np.abs(step)) < 1e-14:
            break
    return w


def logistic_regression(
    num_examples: int = 256,
    dim: int = 2,
    separation: float = 1.0,
    l2: float = 1e-2,
    seed: int = 0,
) -> Problem:
    """L2-regularised logistic regression without intercept.

    .. math::
        f(w) = \\frac1N \\sum_i \\left[\\log(1 + e^{z_i}) - y_i z_i\\right]
               + \\frac{\\lambda}{2}\\lVert w\\rVert^2, \\qquad z_i = w^\\top x_i

    Data: two Gaussian classes (:math:`y \\in \\{0, 1\\}`) with means :math:`\\pm`
    ``separation`` along the diagonal and unit covariance. ``l2`` (:math:`\\lambda > 0`)
    makes the minimiser unique and finite even for separable data. Params: ``w`` of
    shape ``(dim,)``, starting at ``(-2, 2, 0, ...)``; 2-d (plottable) when ``dim=2``.
    Gradient: :math:`\\frac1N \\sum_i (\\sigma(z_i) - y_i) x_i + \\lambda w`.
    """
    if dim < 1:
        raise ValueError(f"logistic_regression: `dim` must be >= 1, got {dim}")
    if not l2 > 0:
        raise ValueError(
            f"logistic_regression: `l2` must be > 0 (it makes the minimum finite), got {l2!r}"
        )
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, num_examples)
    direction = np.ones(dim) / np.sqrt(dim)
    x = rng.normal(size=(num_examples, dim)) + np.outer(2 * labels - 1, separation * direction)
    x = x.astype(np.float32).astype(np.float64)  # the data the float32 loss sees
    best = _logistic_minimizer(x, labels.astype(float), l2)
    z = x @ best
    minimum = np.mean(np.logaddexp(0, z) - labels * z) + 0.5 * l2 * best @ best
    data = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(labels, jnp.float32)}

    def loss(params: Array, batch: dict) -> Array:
        z = batch["x"] @ params
        data_loss = jnp.mean(jnp.logaddexp(0.0, z) - batch["y"] * z)
        return data_loss + 0.5 * l2 * jnp.sum(params**2)

    def value_and_grad(params: Array, batch: dict) -> tuple[Array, Array]:
        z = batch["x"] @ params
        error = jax.nn.sigmoid(z) - batch["y"]
        grad = batch["x"].T @ error / z.shape[0] + l2 * params
        return loss(params, batch), grad

    start = np.zeros(dim)
    start[0] = -2.0
    if dim > 1:
        start[1] = 2.0
    start_point = jnp.asarray(start, jnp.float32)
    return Problem(
        name="logistic",
        description=f"logistic regression ({num_examples} points, {dim}-d)",
        data=data,
        loss=loss,
        value_and_grad=value_and_grad,
        init=lambda seed: start_point,
        minimum=float(minimum),
        minimizers=(tuple(float(v) for v in best),) if dim == 2 else (),
        bounds=_take_box([best, start], margin=1.0) if dim == 2 else None,
        tolerance=1e-4,
        default_steps=500,
        options={
            "num_examples": num_examples,
            "dim": dim,
            "separation": separation,
            "l2": l2,
            "seed": seed,
        },
    )


def load_digits_split(num_train: int = 1440, seed: int = 0) -> tuple:
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1], split into train and test.

    Returns ``(x_train, y_train, x_test, y_test)`` as NumPy arrays (float32 images of 64
    pixels, int32 labels). The split is a fixed permutation drawn from ``seed``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    if not 0 < num_train < len(labels):
        raise ValueError(
            f"digits: `num_train` must be between 1 and {len(labels) - 1}, got {num_train}"
        )
    order = np.random.default_rng(seed).permutation(len(labels))
    train, test = order[:num_train], order[num_train:]
    return images[train], labels[train], images[test], labels[test]


def mlp_init(seed: int, sizes: tuple[int, ...]) -> dict:
    """LeCun-normal weights (variance 1/fan-in) and zero biases, one dict per layer.

    Drawn with NumPy from ``seed`` on the host, so that starting a run compiles nothing.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        weights = rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in)
        params[f"layer{index}"] = {
            "w": jnp.asarray(weights, jnp.float32),
            "b": jnp.zeros((fan_out,), jnp.float32),
        }
    return params


def mlp_logits(params: dict, images: Array) -> Array:
    """``tanh`` hidden layers, linear output: the class scores."""
    layers = [params[f"layer{i}"] for i in range(len(params))]
    activation = images
    for layer in layers[:-1]:
        activation = jnp.tanh(activation @ layer["w"] + layer["b"])
    return activation @ layers[-1]["w"] + layers[-1]["b"]


def _cross_entropy(logits: Array, labels: Array) -> Array:
    picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)


def _mlp_value_and_grad(params: dict, batch: dict) -> tuple[Array, dict]:
    """Cross-entropy and its gradient by hand-written backpropagation."""
    layers = [params[f"layer{i}"] for i in range(len(params))]
    activations = [batch["x"]]
    for layer in layers[:-1]:
        activations.append(jnp.tanh(activations[-1] @ layer["w"] + layer["b"]))
    logits = activations[-1] @ layers[-1]["w"] + layers[-1]["b"]
    value = _cross_entropy(logits, batch["y"])

    count = logits.shape[0]
    delta = (jax.nn.softmax(logits) - jax.nn.one_hot(batch["y"], logits.shape[1])) / count
    grads = {}
    for index in reversed(range(len(layers))):
        grads[f"layer{index}"] = {
            "w": activations[index].T @ delta,
            "b": jnp.sum(delta, axis=0),
        }
        if index > 0:
            delta = (delta @ layers[index]["w"].T) * (1 - activations[index] ** 2)
    return value, {name: grads[name] for name in sorted(grads)}


def digits_mlp(hidden: int = 32, num_train: int = 1440, seed: int = 0) -> Problem:
    """A one-hidden-layer MLP (64 -> ``hidden`` tanh -> 10) on scikit-learn's digits.

    Loss: mean softmax cross-entropy over the 1440 training images; the gradient is
    hand-written backpropagation. Params:
    ``{"layer0": {"w", "b"}, "layer1": {"w", "b"}}``, LeCun-normal initialisation drawn
    from the run's seed (:func:`mlp_init`). ``evaluate`` reports the test accuracy and
    test loss on the 357 held-out images. The minimum is not known (``None``):
    convergence is a training loss below ``tolerance``.
    """
    if hidden < 1:
        raise ValueError(f"digits_mlp: `hidden` must be >= 1, got {hidden}")
    x_train, y_train, x_test, y_test = load_digits_split(num_train, seed)
    data = {"x": jnp.asarray(x_train), "y": jnp.asarray(y_train)}
    test = {"x": jnp.asarray(x_test), "y": jnp.asarray(y_test)}
    sizes = (x_train.shape[1], hidden, 10)

    def loss(params: dict, batch: dict) -> Array:
        return _cross_entropy(mlp_logits(params, batch["x"]), batch["y"])

    def evaluate(params: dict) -> dict[str, Array]:
        logits = mlp_logits(params, test["x"])
        accuracy = jnp.mean((jnp.argmax(logits, axis=1) == test["y"]).astype(jnp.float32))
        return {"test_accuracy": accuracy, "test_loss": _cross_entropy(logits, test["y"])}

    return Problem(
        name="digits",
        description=f"digits MLP (64-{hidden}-10, {num_train} train / {len(y_test)} test)",
        data=data,
        loss=loss,
        value_and_grad=_mlp_value_and_grad,
        init=lambda seed: mlp_init(seed, sizes),
        minimum=None,
        tolerance=0.1,
        default_steps=600,
        default_batch="minibatch",
        evaluate=evaluate,
        options={"hidden": hidden, "num_train": num_train, "seed": seed},
    )
