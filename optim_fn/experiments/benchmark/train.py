"""Training runs of a workload, ``vmap``-ed over trials or seeds in one compiled program.

A run starts from ``workload.init_params(fold_in(key(seed), 0))``; step ``t`` draws its
batch with ``fold_in(fold_in(key(seed), 1), t)``, takes ``jax.grad`` of the loss and
applies the optimizer's update. Every ``steps // evals`` steps the metric is measured.
Runs that share a program (one optimizer, one workload, several hyperparameter values
or seeds) are one ``vmap``: the hyperparameters are traced arrays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.experiments.runner import FAST_COMPILE
from optim_fn.experiments.workloads import Workload, train_batch


@dataclass(frozen=True)
class Curves:
    """The metric of ``runs`` training runs at the evaluation steps.

    ``metric`` and ``train_loss`` are ``(runs, evals)``; ``steps`` is ``(evals,)``;
    ``seconds_per_step`` is the compiled program's wall time divided by its steps and by
    the number of runs ``vmap``-ed together (compilation excluded).
    """

    steps: np.ndarray
    metric: np.ndarray
    train_loss: np.ndarray
    seconds_per_step: float
    compile_seconds: float


def schedule(workload: Workload, budget_scale: float = 1.0) -> tuple[int, int]:
    """``(steps, eval_every)``: the scaled budget, a whole number of evaluation chunks."""
    steps = max(1, int(round(workload.steps * budget_scale)))
    every = max(1, steps // workload.evals)
    return (steps // every) * every, every


class RunProgram:
    """One compiled program: ``runs`` training runs of one optimizer on one workload.

    Call it with ``hyperparams`` (name -> ``(runs,)`` values) and ``seeds`` (``(runs,)``);
    run ``i`` uses ``hyperparams[k][i]`` and ``seeds[i]``. It compiles on the first call
    of each size and is reused for later calls of that size. ``width``: every call with
    at most ``width`` runs is padded to ``width`` (copies of run 0, dropped from the
    result), so tuning trials and seed reruns of different counts share one compiled
    program; :attr:`compiles` counts the programs compiled.
    """

    def __init__(
        self,
        workload: Workload,
        make_optimizer: Callable[..., Any],
        names: list[str],
        *,
        budget_scale: float = 1.0,
        compiler_options: Mapping[str, Any] | None = None,
        width: int | None = None,
    ) -> None:
        self.workload, self.names, self.width = workload, list(names), width
        self.steps, self.every = schedule(workload, budget_scale)
        self.compile_seconds = 0.0
        self.compiler_options = dict(FAST_COMPILE if compiler_options is None else compiler_options)
        every, chunks = self.every, self.steps // self.every

        def one_run(values: jax.Array, seed: jax.Array) -> tuple[jax.Array, jax.Array]:
            tuned = {name: values[i] for i, name in enumerate(self.names)}
            optimizer = make_optimizer(**tuned)
            key = jax.random.key(seed)
            params = workload.init_params(jax.random.fold_in(key, 0))
            batch_key = jax.random.fold_in(key, 1)
            state = optimizer.init(params)

            def step(carry, t):
                params, state = carry
                batch = train_batch(workload, jax.random.fold_in(batch_key, t))
                loss, grads = jax.value_and_grad(workload.loss)(params, batch)
                updates, state = optimizer.update(grads, state, params)
                params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), params, updates)
                return (params, state), loss

            def chunk(carry, index):
                carry, losses = jax.lax.scan(step, carry, index * every + jnp.arange(every))
                metric = workload.evaluate(carry[0], workload.eval_data)
                return carry, (metric, jnp.mean(losses))

            _, (metric, loss) = jax.lax.scan(chunk, (params, state), jnp.arange(chunks))
            return metric, loss

        self._jitted = jax.jit(jax.vmap(one_run))
        self._compiled: dict[int, Any] = {}

    @property
    def compiles(self) -> int:
        """How many programs (one per padded batch size) have been compiled."""
        return len(self._compiled)

    def __call__(self, hyperparams: Mapping[str, np.ndarray], seeds: np.ndarray) -> Curves:
        seeds = jnp.asarray(seeds, jnp.uint32)
        wanted = int(seeds.shape[0])
        columns = [jnp.asarray(hyperparams[name], jnp.float32) for name in self.names]
        values = jnp.stack(columns, -1) if columns else jnp.zeros((wanted, 0), jnp.float32)
        runs = max(wanted, self.width or 0)
        if runs > wanted:  # pad with copies of run 0; a copy costs compute, not a compile
            seeds = jnp.concatenate([seeds, jnp.repeat(seeds[:1], runs - wanted)])
            values = jnp.concatenate([values, jnp.repeat(values[:1], runs - wanted, 0)])
        if runs not in self._compiled:
            began = time.perf_counter()
            self._compiled[runs] = self._jitted.lower(values, seeds).compile(self.compiler_options)
            self.compile_seconds += time.perf_counter() - began
        began = time.perf_counter()
        metric, loss = jax.block_until_ready(self._compiled[runs](values, seeds))
        elapsed = time.perf_counter() - began
        return Curves(
            steps=self.every * np.arange(1, self.steps // self.every + 1),
            metric=np.asarray(metric, np.float64)[:wanted],
            train_loss=np.asarray(loss, np.float64)[:wanted],
            seconds_per_step=elapsed / self.steps / runs,
            compile_seconds=self.compile_seconds,
        )


def train_runs(
    workload: Workload,
    make_optimizer: Callable[..., Any],
    hyperparams: Mapping[str, np.ndarray],
    seeds: np.ndarray,
    *,
    budget_scale: float = 1.0,
    compiler_options: Mapping[str, Any] | None = None,
) -> Curves:
    """Trains ``len(seeds)`` runs once (a fresh :class:`RunProgram`; ``compiler_options``:
    XLA's, default the runner's :data:`~optim_fn.experiments.runner.FAST_COMPILE`)."""
    program = RunProgram(
        workload, make_optimizer, list(hyperparams), budget_scale=budget_scale,
        compiler_options=compiler_options,
    )
    return program(hyperparams, seeds)
