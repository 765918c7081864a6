"""Run an optimizer on a problem for N steps in one compiled loop, over seeds and grids.

::

    from optim_fn import adam
    from optim_fn.experiments import rosenbrock, run

    history = run(adam(1e-2), rosenbrock(), steps=2000)
    history.loss            # (2000,) loss at each step
    history.params          # (2001, 2) the path, start and end included

    sweep = run(adam(1e-2), rosenbrock(), 2000, seeds=[0, 1, 2],
                hyperparams={"learning_rate": jnp.logspace(-4, 0, 64)})
    sweep.final_loss        # (64, 3): one compile for all 192 runs

The steps run inside ``lax.scan``; every run of a sweep is one element of a ``vmap``.
Hyperparameters are data in the optimizer state (:func:`optim_fn.set_hyperparams`), so
a grid of learning rates is a batch of states, not a batch of programs. The steps are cut
into chunks, each a call of the same compiled program, so a progress bar can follow long
runs (:mod:`optim_fn.experiments.progress`). When the chunks cannot all have the same
length, the steps past the end of the run in the last chunk are skipped with a
``lax.cond`` whose predicate depends on the step number only, so under ``vmap`` it stays
a branch and the skip costs nothing.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core.base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    apply_updates,
)
from optim_fn.core.hyperparams import get_hyperparams, set_hyperparams
from optim_fn.experiments import batching as sampling
from optim_fn.experiments.problem import Problem
from optim_fn.experiments.progress import run_chunks
from optim_fn.tree._math import global_norm

MAX_CHUNKS = 20
FAST_COMPILE = {"xla_backend_optimization_level": 1}
"""The runner's default XLA options. Experiments are short, so compiling dominates:
LLVM's level-1 optimisation compiled the digits MLP's loop about 30% faster than XLA's
default and ran it as fast in our measurements (level 0 halves the compile time but
makes steps 2-4x slower). Pass ``compiler_options={}`` for XLA's defaults."""
_CACHE_SIZE = 16


class History(NamedTuple):
    """What a run recorded. Leading axes: ``(grid, seeds)``, each only when asked for.

    Attributes:
      loss: ``(..., steps)`` the loss on the batch each step used, at the params before
        the step (the full loss in batch mode ``"full"``).
      grad_norm: ``(..., steps)`` global L2 norm of each step's gradient.
      update_norm: ``(..., steps)`` global L2 norm of each step's update.
      hyperparams: ``{name: (..., steps)}`` every hyperparameter in the optimizer state
        (:func:`optim_fn.get_hyperparams`), the value each step used: what a schedule
        produced, the learning rate included.
      params: ``(..., steps + 1, 2)`` the path from the start to the final point, for
        2-d problems; None otherwise.
      eval_steps: ``(evals,)`` the steps at which ``train_loss`` was measured.
      train_loss: ``(..., evals)`` the full loss before those steps.
      final_params: the params after the last step.
      final_loss: ``(...)`` the full loss after the last step.
      metrics: ``{name: (...)}`` the problem's held-out metrics after the last step.
      seconds: ``{"compile": s, "run": s}`` wall time (compile is 0 on a cache hit).
    """

    loss: jax.Array
    grad_norm: jax.Array
    update_norm: jax.Array
    hyperparams: dict[str, jax.Array]
    params: jax.Array | None
    eval_steps: jax.Array
    train_loss: jax.Array
    final_params: Any
    final_loss: jax.Array
    metrics: dict[str, jax.Array]
    seconds: dict[str, float]


class _Carry(NamedTuple):
    params: Any
    opt_state: Any
    order: jax.Array  # the current epoch's order of the examples
    shuffle_seed: jax.Array


class _Record(NamedTuple):
    loss: jax.Array
    grad_norm: jax.Array
    update_norm: jax.Array
    hyperparams: dict[str, jax.Array]
    params: Any


class _Plan(NamedTuple):
    """The static shape of a run: what the compiled programs depend on."""

    steps: int
    batching: sampling.Batching
    eval_every: int
    blocks_per_chunk: int
    num_chunks: int
    track_params: bool

    @property
    def num_blocks(self) -> int:
        return math.ceil(self.steps / self.eval_every)

    @property
    def padded(self) -> bool:
        """Whether the last chunk runs past the end (its extra steps are skipped)."""
        return self.num_chunks * self.blocks_per_chunk * self.eval_every != self.steps

    @property
    def steps_per_chunk(self) -> list[int]:
        chunk = self.blocks_per_chunk * self.eval_every
        return [min(chunk, self.steps - i * chunk) for i in range(self.num_chunks)]


_PER_RUN_FIELDS = (
    "loss", "grad_norm", "update_norm", "hyperparams", "params", "train_loss",
    "final_params", "final_loss", "metrics",
)


def select_run(history: History, index: Any) -> History:
    """The history of the runs at ``index`` of the leading axis (grid, or seeds).

    ``select_run(sweep, 3)`` is the fourth grid point with all its seeds; the step
    axis and the timings are shared and kept.
    """
    picked = {
        name: jax.tree.map(lambda x: x[index], getattr(history, name))
        for name in _PER_RUN_FIELDS
    }
    return history._replace(**picked)




def product_grid(**axes: Sequence[float]) -> dict[str, np.ndarray]:
    """Every combination of the given values, as flat arrays for ``run(hyperparams=...)``.

    ``product_grid(learning_rate=[1e-3, 1e-2], b1=[0.8, 0.9])`` gives 4 runs, in
    row-major order (the last name varies fastest): reshape results to ``(2, 2, ...)``.
    """
    names = list(axes)
    mesh = np.meshgrid(*(np.asarray(axes[n], np.float64) for n in names), indexing="ij")
    return {name: values.reshape(-1) for name, values in zip(names, mesh, strict=True)}


def _seed_list(seeds: int | Sequence[int]) -> tuple[np.ndarray, bool]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return np.asarray([seeds], np.int32), False
    array = np.asarray(seeds)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"`seeds` must be an int or a non-empty list of ints, got {seeds!r}"
        )
    return array.astype(np.int32), True


def _grid_values(hyperparams: Mapping[str, Any] | None) -> tuple[dict[str, np.ndarray], int]:
    """Scalars broadcast to the grid; 1-d arrays (all one length) are the grid."""
    values = {name: np.asarray(value, np.float64) for name, value in (hyperparams or {}).items()}
    lengths = {name: v.shape[0] for name, v in values.items() if v.ndim == 1}
    for name, value in values.items():
        if value.ndim > 1:
            raise ValueError(
                f"hyperparameter {name!r}: give a number or a 1-d array of values, got an "
                f"array of shape {value.shape} (use `product_grid` for combinations)"
            )
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"hyperparameter grids must have one length, got {lengths}; use "
            "`product_grid(...)` to combine axes of different lengths"
        )
    size = next(iter(lengths.values()), 0)
    return {n: np.broadcast_to(v, (max(size, 1),)) for n, v in values.items()}, size


def _make_plan(
    problem: Problem,
    steps: int,
    batching: sampling.Batching,
    eval_every: int | None,
    chunks: int | None,
) -> _Plan:
    if eval_every is None:
        eval_every = max(1, steps // 100) if batching.sampled else 1
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"`eval_every` must be a positive integer, got {eval_every!r}")
    num_blocks = math.ceil(steps / eval_every)
    if chunks is None:
        chunks = MAX_CHUNKS
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"`chunks` must be a positive integer, got {chunks!r}")
    chunks = min(chunks, num_blocks)
    # Chunks of equal size need no skipped steps; accept a divisor down to half the
    # requested count, else pad the last chunk.
    divisors = [c for c in range(chunks, (chunks + 1) // 2 - 1, -1) if num_blocks % c == 0]
    blocks_per_chunk = num_blocks // divisors[0] if divisors else math.ceil(num_blocks / chunks)
    num_chunks = math.ceil(num_blocks / blocks_per_chunk)
    return _Plan(steps, batching, eval_every, blocks_per_chunk, num_chunks, problem.is_2d)


def _build(optimizer: GradientTransformation, problem: Problem, plan: _Plan):
    """The per-run programs: the optimizer state at the start, and one chunk of steps."""
    batching = plan.batching
    passes_value = isinstance(optimizer, GradientTransformationExtraArgs)

    def start(params: Any, shuffle_seed: jax.Array, hyperparams: dict) -> _Carry:
        opt_state = optimizer.init(params)
        if hyperparams:
            opt_state = set_hyperparams(opt_state, **hyperparams)
        order = jnp.arange(batching.num_examples, dtype=jnp.int32)
        return _Carry(params, opt_state, order, shuffle_seed)

    def step(data: Any, carry: _Carry, t: jax.Array) -> tuple[_Carry, _Record]:
        params, opt_state, order, shuffle_seed = carry
        if batching.sampled:
            position = t % batching.steps_per_epoch
            epoch = t // batching.steps_per_epoch
            order = jax.lax.cond(
                position == 0,
                lambda: sampling.epoch_order(shuffle_seed, epoch, batching.num_examples),
                lambda: order,
            )
            batch = sampling.take(data, sampling.batch_indices(batching, order, t))
        else:
            batch = data
        loss, grads = problem.value_and_grad(params, batch)
        extra = {"value": loss} if passes_value else {}
        updates, opt_state = optimizer.update(grads, opt_state, params, **extra)
        new_params = apply_updates(params, updates)
        record = _Record(
            loss=loss,
            grad_norm=global_norm(grads),
            update_norm=global_norm(updates),
            hyperparams=_logged_hyperparams(opt_state),
            params=params if plan.track_params else None,
        )
        return _Carry(new_params, opt_state, order, shuffle_seed), record

    def chunk(carry: _Carry, chunk_index: jax.Array, data: Any):
        # The data is an argument, not a closed-over constant: XLA would otherwise embed
        # it in the program and spend seconds constant-folding through it.
        record_shape = jax.eval_shape(step, data, carry, jnp.zeros([], jnp.int32))[1]
        loss_dtype = record_shape.loss.dtype

        def skip(carry, t):
            del t
            return carry, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), record_shape)

        def block(carry, j):
            b = chunk_index * plan.blocks_per_chunk + j
            if batching.sampled and not plan.padded:
                train_loss = problem.loss(carry.params, data)
            elif batching.sampled:
                train_loss = jax.lax.cond(
                    b < plan.num_blocks,
                    lambda p: problem.loss(p, data),
                    lambda p: jnp.full([], jnp.nan, loss_dtype),
                    carry.params,
                )
            else:  # the recorded loss already is the full loss
                train_loss = jnp.zeros([], loss_dtype)

            def one_step(carry, i):
                t = b * plan.eval_every + i
                if not plan.padded:
                    return step(data, carry, t)
                return jax.lax.cond(t < plan.steps, partial(step, data), skip, carry, t)

            carry, records = jax.lax.scan(one_step, carry, jnp.arange(plan.eval_every))
            return carry, (records, train_loss)

        return jax.lax.scan(block, carry, jnp.arange(plan.blocks_per_chunk))

    return start, chunk


def _finish(problem: Problem, params: Any):
    metrics = problem.evaluate(params) if problem.evaluate is not None else {}
    return problem.full_loss(params), metrics


_programs: OrderedDict = OrderedDict()
_finishers: OrderedDict = OrderedDict()


def _remember(cache: OrderedDict, key: Any, value: Any) -> None:
    cache[key] = value
    if len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)


def _compiled(optimizer, problem, plan, params, shuffle_seeds, hyperparams, options):
    """AOT-compiled start and chunk programs, cached per optimizer, problem and shapes.

    Returns ``(start, chunk, finish, compile_seconds)``. The final evaluation depends on
    the problem only, so it is compiled once per problem, not per optimizer.
    """
    shapes = jax.tree.map(lambda x: (x.shape, x.dtype), (params, hyperparams))
    key = (optimizer, id(problem), plan, str(shapes), str(sorted(options.items())))
    seconds = 0.0
    if key in _programs:
        _programs.move_to_end(key)
        start, chunk = _programs[key][1]
    else:
        began = time.perf_counter()
        start_one, chunk_one = _build(optimizer, problem, plan)
        start_batch = jax.jit(jax.vmap(start_one))
        start = start_batch.lower(params, shuffle_seeds, hyperparams).compile()
        carry_shape = jax.eval_shape(start_batch, params, shuffle_seeds, hyperparams)
        chunk_batch = jax.jit(jax.vmap(chunk_one, in_axes=(0, None, None)))
        lowered = chunk_batch.lower(carry_shape, jnp.zeros([], jnp.int32), problem.data)
        chunk = lowered.compile(compiler_options=options) if options else lowered.compile()
        # The entry keeps `problem` alive, so no other problem can reuse its id.
        _remember(_programs, key, (problem, (start, chunk)))
        seconds += time.perf_counter() - began
    finish_key = (id(problem), str(shapes[0]))
    if finish_key not in _finishers:
        began = time.perf_counter()
        finish_batch = jax.jit(jax.vmap(partial(_finish, problem)))
        _remember(_finishers, finish_key, (problem, finish_batch.lower(params).compile()))
        seconds += time.perf_counter() - began
    return start, chunk, _finishers[finish_key][1], seconds


def _logged_hyperparams(state: Any) -> dict:
    """What get_hyperparams reads; nothing for an optax optimizer, which keeps none."""
    try:
        return get_hyperparams(state)
    except TypeError:
        return {}


def _check_names(optimizer, problem, hyperparams):
    if not hyperparams:
        return
    state = jax.eval_shape(optimizer.init, problem.init(0))
    valid = sorted(_logged_hyperparams(state))
    # A bare name sets every block that has it (set_hyperparams), also when blocks share
    # it and get_hyperparams qualifies it (muon's "learning_rate" in its two branches).
    bare = {name.rsplit(".", 1)[-1] for name in valid}
    unknown = sorted(set(hyperparams) - set(valid) - bare)
    if unknown:
        raise ValueError(
            f"run: no hyperparameter named {', '.join(map(repr, unknown))} in this "
            f"optimizer's state; valid names: {valid}"
        )


def run(
    optimizer: GradientTransformation,
    problem: Problem,
    steps: int,
    *,
    batch: str | None = None,
    batch_size: int = 32,
    seeds: int | Sequence[int] = 0,
    hyperparams: Mapping[str, Any] | None = None,
    eval_every: int | None = None,
    chunks: int | None = None,
    progress: bool | None = None,
    compiler_options: Mapping[str, Any] | None = FAST_COMPILE,
) -> History:
    """Runs ``optimizer`` on ``problem`` for ``steps`` steps; returns the :class:`History`.

    Args:
      optimizer: any ``(init, update)`` pair (optim_fn or optax).
      problem: a :class:`~optim_fn.experiments.problem.Problem`.
      steps: the number of updates.
      batch: ``"full"``, ``"stochastic"`` or ``"minibatch"``; default: the problem's.
      batch_size: examples per step in ``"minibatch"`` mode.
      seeds: an int (one run), or a list of ints (a leading seed axis). A seed draws the
        initial weights of the data problems and the order of the examples.
      hyperparams: values to set in the optimizer state before the first step
        (:func:`optim_fn.set_hyperparams`); a 1-d array of values makes a leading grid
        axis (all arrays must share its length; see :func:`product_grid`).
      eval_every: measure the full loss every this many steps (``train_loss``); default
        every step in batch mode ``"full"`` (free: it is the loss), else ``steps // 100``.
      chunks: split the run into at most this many calls of the compiled chunk (default
        20), which is how often the progress bar moves.
      progress: show a tqdm bar: ``True``, ``False``, or ``None`` for "on a terminal,
        once the run has lasted a second".
      compiler_options: XLA options for compiling the loop; default
        :data:`FAST_COMPILE`, ``{}`` for XLA's defaults (slower to compile).

    Every run of a grid and seed list is one element of a ``vmap`` of one compiled
    program: a sweep of 64 learning rates compiles once.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"`steps` must be a positive integer, got {steps!r}")
    steps = int(steps)
    batching = sampling.make_batching(
        batch or problem.default_batch, problem.num_examples, batch_size
    )
    plan = _make_plan(problem, steps, batching, eval_every, chunks)
    seed_array, has_seed_axis = _seed_list(seeds)
    grid, grid_size = _grid_values(hyperparams)
    _check_names(optimizer, problem, grid)

    num_grid = max(grid_size, 1)
    run_seeds = np.tile(seed_array, num_grid)
    initial = [problem.init(int(seed)) for seed in seed_array]
    params = jax.tree.map(
        lambda *leaves: jnp.asarray(np.stack([np.asarray(x) for x in leaves] * num_grid)),
        *initial,
    )
    shuffle_seeds = jnp.asarray(run_seeds.astype(np.uint32))
    flat_grid = {
        name: jnp.asarray(np.repeat(values, len(seed_array))) for name, values in grid.items()
    }
    start, chunk, finish, compile_seconds = _compiled(
        optimizer, problem, plan, params, shuffle_seeds, flat_grid, dict(compiler_options or {})
    )

    began = time.perf_counter()
    carry = start(params, shuffle_seeds, flat_grid)
    carry, outputs = run_chunks(
        lambda c, i: chunk(c, jnp.asarray(i, jnp.int32), problem.data),
        carry,
        plan.steps_per_chunk,
        progress=progress,
        description=problem.name,
    )
    final_loss, metrics = finish(carry.params)
    jax.block_until_ready((final_loss, metrics))
    run_seconds = time.perf_counter() - began

    records = jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=1), *outputs)
    steps_records, train_loss = records
    per_step = jax.tree.map(
        lambda x: x.reshape((x.shape[0], -1) + x.shape[3:])[:, :steps], steps_records
    )
    eval_steps = jnp.arange(plan.num_blocks) * plan.eval_every
    if batching.sampled:
        train_loss = train_loss[:, : plan.num_blocks]
    else:
        train_loss = per_step.loss[:, :: plan.eval_every]
    path = None
    if plan.track_params:
        path = jnp.concatenate([per_step.params, carry.params[:, None]], axis=1)

    runs = (grid_size,) if grid_size else ()
    runs += (len(seed_array),) if has_seed_axis else ()

    def shaped(x):
        return None if x is None else x.reshape(runs + x.shape[1:])

    return History(
        loss=shaped(per_step.loss),
        grad_norm=shaped(per_step.grad_norm),
        update_norm=shaped(per_step.update_norm),
        hyperparams={k: shaped(v) for k, v in per_step.hyperparams.items()},
        params=shaped(path),
        eval_steps=eval_steps,
        train_loss=shaped(train_loss),
        final_params=jax.tree.map(shaped, carry.params),
        final_loss=shaped(final_loss),
        metrics={k: shaped(v) for k, v in metrics.items()},
        seconds={"compile": compile_seconds, "run": run_seconds},
    )
