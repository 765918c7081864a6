"""What a workload is, and how to make one from a flax nnx or equinox model.

A workload is a model's loss as a pure function of a params pytree, the arrays it trains
and evaluates on, a metric and its target, and a step budget. The benchmark trains it with
``jax.grad`` of :attr:`Workload.loss` (no hand-written gradients) on mini-batches drawn
with replacement (the batch of step ``t`` comes from ``fold_in(key, t)``), so a run is
deterministic given its seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Batch = tuple[jax.Array, ...]

# The metrics a workload may report, with whether higher is better and the range of
# values a model can reach (a target outside it can never be met).
METRICS: dict[str, tuple[bool, float, float]] = {
    "accuracy": (True, 0.0, 1.0),
    "loss": (False, 0.0, float("inf")),
    "suboptimality": (False, 0.0, float("inf")),
}


def require_flax() -> Any:
    """Imports ``flax.nnx`` or names the extra that provides it."""
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover - flax is in the experiments extra
        raise ImportError(
            "the benchmark's workloads are flax nnx models and need flax, from the "
            "'experiments' extra: pip install 'optim-fn[experiments]'"
        ) from None
    return nnx


@dataclass(frozen=True)
class Workload:
    """A training problem with a target: what the benchmark times optimizers on.

    Attributes:
      name: the workload's name.
      init_params: ``key -> params``, a fresh model's parameters (any pytree of arrays).
      loss: ``(params, batch) -> scalar``, the mean training loss on a batch (a tuple of
        arrays, each indexed by example along axis 0).
      train_data: the training arrays (the batch is a row subset of each).
      eval_data: the held-out arrays handed to ``evaluate``.
      evaluate: ``(params, eval_data) -> scalar``, the metric the target applies to.
      metric: ``"accuracy"`` (higher is better), ``"loss"`` or ``"suboptimality"``.
      target: the metric value a run must reach (``>=`` for accuracy, ``<=`` otherwise).
      steps: the default step budget.
      batch_size: examples per step; ``None`` for the full batch.
      evals: how many times the metric is measured during a run (evenly spaced).
      description: one line for tables and ``--help``.
    """

    name: str
    init_params: Callable[[jax.Array], Any]
    loss: Callable[[Any, Batch], jax.Array]
    train_data: Batch
    eval_data: Batch
    evaluate: Callable[[Any, Batch], jax.Array]
    metric: str
    target: float
    steps: int
    batch_size: int | None = None
    evals: int = 20
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_target(self.name, self.metric, self.target)
        if self.steps < 1 or self.evals < 1:
            raise ValueError(
                f"workload {self.name!r}: steps and evals must be at least 1, got "
                f"steps={self.steps}, evals={self.evals}"
            )
        sizes = {int(np.shape(a)[0]) for a in self.train_data}
        if len(sizes) != 1:
            raise ValueError(
                f"workload {self.name!r}: train_data arrays must share their first axis "
                f"(examples), got lengths {sorted(sizes)}"
            )
        if self.batch_size is not None and not 1 <= self.batch_size <= sizes.pop():
            raise ValueError(
                f"workload {self.name!r}: batch_size must be between 1 and the number of "
                f"training examples, got {self.batch_size}"
            )

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][0]

    def reached(self, value: Any) -> Any:
        """Whether metric values reach the target (NaN never does)."""
        value = np.asarray(value)
        return value >= self.target if self.higher_is_better else value <= self.target

    def replace(self, **changes: Any) -> Workload:
        """A copy with some fields changed (and checked again)."""
        from dataclasses import replace

        return replace(self, **changes)


def check_target(name: str, metric: str, target: float) -> None:
    """Raises a clear error for an unknown metric or a target no model can reach."""
    if metric not in METRICS:
        raise ValueError(
            f"workload {name!r}: metric must be one of {', '.join(METRICS)}, got {metric!r}"
        )
    _, low, high = METRICS[metric]
    if not (np.isfinite(target) and low < target <= high):
        raise ValueError(
            f"workload {name!r}: the target {metric} {target!r} can never be reached; "
            f"a {metric} target must lie in ({low:g}, {high:g}]"
        )


def train_batch(workload: Workload, key: jax.Array) -> Batch:
    """The mini-batch a step draws (with replacement), or the full batch."""
    if workload.batch_size is None:
        return tuple(jnp.asarray(a) for a in workload.train_data)
    count = int(np.shape(workload.train_data[0])[0])
    rows = jax.random.randint(key, (workload.batch_size,), 0, count)
    return tuple(jnp.asarray(a)[rows] for a in workload.train_data)


def make_workload(
    name: str,
    init_params: Callable[[jax.Array], Any],
    loss: Callable[[Any, Batch], jax.Array],
    train_data: Sequence[Any],
    eval_data: Sequence[Any],
    *,
    target: float,
    steps: int,
    metric: str = "loss",
    evaluate: Callable[[Any, Batch], jax.Array] | None = None,
    batch_size: int | None = None,
    evals: int = 20,
    description: str = "",
) -> Workload:
    """A workload from a params pytree's init and loss (the general form).

    ``evaluate`` defaults to the loss on the whole ``eval_data``. Use :func:`from_nnx` or
    :func:`from_equinox` for a model object.
    """
    train = tuple(jnp.asarray(a) for a in train_data)
    held_out = tuple(jnp.asarray(a) for a in eval_data)
    return Workload(
        name=name,
        init_params=init_params,
        loss=loss,
        train_data=train,
        eval_data=held_out,
        evaluate=evaluate if evaluate is not None else loss,
        metric=metric,
        target=float(target),
        steps=int(steps),
        batch_size=batch_size,
        evals=int(evals),
        description=description,
    )


def from_nnx(
    name: str,
    make_model: Callable[[Any], Any],
    loss: Callable[..., jax.Array],
    train_data: Sequence[Any],
    eval_data: Sequence[Any],
    *,
    evaluate: Callable[..., jax.Array] | None = None,
    **options: Any,
) -> Workload:
    """A workload from a flax nnx model.

    Args:
      make_model: ``rngs -> module``, e.g. ``lambda rngs: MyNet(rngs=rngs)``; called with
        ``nnx.Rngs(key)`` for each run, so the seed decides the initialisation.
      loss: ``(model, *batch) -> scalar``, the mean loss of the model on a batch.
      evaluate: ``(model, *eval_data) -> scalar``; defaults to ``loss``.
      **options: :func:`make_workload`'s keywords (``target``, ``steps``, ``metric``...).

    The params are the model's ``nnx.Param`` state; other state (e.g. batch statistics)
    stays as first built.

    Example::

        from flax import nnx
        workload = from_nnx(
            "my_mlp", lambda rngs: nnx.Linear(4, 1, rngs=rngs),
            lambda model, x, y: jnp.mean((model(x)[:, 0] - y) ** 2),
            (x_train, y_train), (x_test, y_test), target=0.01, steps=500, batch_size=32)
    """
    nnx = require_flax()
    # shapes only: building the model eagerly would run (and compile) every initialiser
    graph, _, rest = nnx.split(nnx.eval_shape(lambda: make_model(nnx.Rngs(0))), nnx.Param, ...)
    if jax.tree.leaves(rest):  # state besides the params (e.g. batch statistics): real values
        graph, _, rest = nnx.split(make_model(nnx.Rngs(0)), nnx.Param, ...)

    def init_params(key: jax.Array) -> Any:
        return nnx.split(make_model(nnx.Rngs(key)), nnx.Param, ...)[1]

    def as_loss(function: Callable[..., jax.Array]) -> Callable[[Any, Batch], jax.Array]:
        def on_params(params: Any, batch: Batch) -> jax.Array:
            return function(nnx.merge(graph, params, rest), *batch)

        return on_params

    scored = as_loss(evaluate) if evaluate is not None else None
    return make_workload(
        name, init_params, as_loss(loss), train_data, eval_data, evaluate=scored, **options
    )


def from_equinox(
    name: str,
    make_model: Callable[[jax.Array], Any],
    loss: Callable[..., jax.Array],
    train_data: Sequence[Any],
    eval_data: Sequence[Any],
    *,
    evaluate: Callable[..., jax.Array] | None = None,
    **options: Any,
) -> Workload:
    """A workload from an equinox model: ``make_model(key)`` builds it, the arrays are its
    params (``eqx.partition(model, eqx.is_inexact_array)``); otherwise as :func:`from_nnx`.
    """
    import equinox as eqx

    _, static = eqx.partition(make_model(jax.random.key(0)), eqx.is_inexact_array)

    def init_params(key: jax.Array) -> Any:
        return eqx.partition(make_model(key), eqx.is_inexact_array)[0]

    def as_loss(function: Callable[..., jax.Array]) -> Callable[[Any, Batch], jax.Array]:
        def on_params(params: Any, batch: Batch) -> jax.Array:
            return function(eqx.combine(params, static), *batch)

        return on_params

    scored = as_loss(evaluate) if evaluate is not None else None
    return make_workload(
        name, init_params, as_loss(loss), train_data, eval_data, evaluate=scored, **options
    )


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of integer labels (natural log)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    return -jnp.mean(picked)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose highest logit is the label."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)
