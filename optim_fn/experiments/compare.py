"""The comparison behind ``python -m optim_fn compare``: run, tabulate, plot, save.

For each problem, each optimizer runs once per seed at its learning rate and, in the
same compiled program, over a grid of learning rates (the sensitivity sweep): the grid
is a ``vmap`` over optimizer states, so it costs run time, not compile time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optim_fn.experiments.problem import Problem
from optim_fn.experiments.registry import OptimizerChoice
from optim_fn.experiments.runner import FAST_COMPILE, History, run, select_run

DEFAULT_SWEEP = tuple(float(v) for v in np.logspace(-4, 0, 9))
"""Learning rates of the sensitivity sweep: 1e-4 to 1, half a decade apart."""


@dataclass
class Entry:
    """One optimizer on one problem.

    ``history`` has a leading seed axis; ``sweep_final_loss`` is ``(rates, seeds)``.
    """

    problem: Problem
    choice: OptimizerChoice
    keywords: dict[str, Any]
    history: History
    sweep_rates: tuple[float, ...]
    sweep_final_loss: np.ndarray | None
    seconds: dict[str, float]

    @property
    def label(self) -> str:
        return self.choice.label


def _threshold(problem: Problem) -> float:
    return (problem.minimum or 0.0) + problem.tolerance


def steps_to_tolerance(history: History, problem: Problem) -> list[int | None]:
    """Per seed, the first step whose full loss is within tolerance (None: never)."""
    losses = np.asarray(history.train_loss, np.float64).reshape(-1, len(history.eval_steps))
    finals = np.asarray(history.final_loss, np.float64).reshape(-1)
    steps = history.loss.shape[-1]
    found: list[int | None] = []
    for curve, final in zip(losses, finals, strict=True):
        hits = np.flatnonzero(curve <= _threshold(problem))
        if hits.size:
            found.append(int(history.eval_steps[hits[0]]))
        else:
            found.append(steps if final <= _threshold(problem) else None)
    return found


def compare(
    problems: Sequence[Problem],
    optimizers: Sequence[OptimizerChoice],
    *,
    steps: int | None = None,
    batch: str | None = None,
    batch_size: int = 32,
    seeds: Sequence[int] = (0,),
    sweep_rates: Sequence[float] | None = DEFAULT_SWEEP,
    progress: bool | None = None,
    compiler_options: dict[str, Any] | None = FAST_COMPILE,
    log: Callable[[str], None] = lambda line: None,
) -> list[Entry]:
    """Runs every optimizer on every problem; returns one :class:`Entry` per pair.

    ``compiler_options`` go to :func:`~optim_fn.experiments.runner.run` (``{}`` for
    XLA's defaults: the command line's ``--optimize``).
    """
    entries = []
    rates = tuple(sweep_rates or ())
    for problem in problems:
        for choice in optimizers:
            optimizer, keywords = choice.build(problem.name)
            grid = None
            if rates:
                chosen = float(keywords["learning_rate"])
                grid = {"learning_rate": np.asarray(rates + (chosen,), np.float64)}
            history = run(
                optimizer,
                problem,
                steps or problem.default_steps,
                batch=batch,
                batch_size=batch_size,
                seeds=list(seeds),
                hyperparams=grid,
                progress=progress,
                compiler_options=compiler_options,
            )
            sweep = None
            if rates:
                sweep = np.asarray(history.final_loss[:-1], np.float64)
                history = select_run(history, -1)
            entries.append(
                Entry(problem, choice, keywords, history, rates, sweep, dict(history.seconds))
            )
            log(
                f"  {problem.name:<11} {choice.label:<24} compile "
                f"{history.seconds['compile']:5.2f} s, run {history.seconds['run']:5.2f} s"
            )
    return entries


def _fmt(value: float | None, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "diverged"
    return format(value, spec)


def best_rate(entry: Entry) -> float | None:
    """The sweep's learning rate with the lowest mean final loss (None without sweep)."""
    if entry.sweep_final_loss is None:
        return None
    finals = entry.sweep_final_loss.reshape(len(entry.sweep_rates), -1)
    # A rate where any seed diverged does not count as best.
    means = np.where(np.all(np.isfinite(finals), axis=1), finals.mean(axis=1), np.inf)
    if not np.any(np.isfinite(means)):
        return None
    return float(entry.sweep_rates[int(np.argmin(means))])


def summary_rows(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """One dict per entry: the numbers the table shows (means over seeds)."""
    rows = []
    for entry in entries:
        finals = np.asarray(entry.history.final_loss, np.float64).reshape(-1)
        reached = steps_to_tolerance(entry.history, entry.problem)
        hits = [s for s in reached if s is not None]
        accuracy = entry.history.metrics.get("test_accuracy")
        rows.append({
            "problem": entry.problem.name,
            "optimizer": entry.label,
            "learning_rate": float(entry.keywords["learning_rate"]),
            "final_loss": float(np.mean(finals)) if np.all(np.isfinite(finals)) else math.inf,
            "steps_to_tolerance": int(np.median(hits)) if len(hits) == len(reached) else None,
            "reached": f"{len(hits)}/{len(reached)}",
            "test_accuracy": None if accuracy is None else float(np.mean(accuracy)),
            "best_learning_rate": best_rate(entry),
            "compile_seconds": entry.seconds["compile"],
            "run_seconds": entry.seconds["run"],
        })
    return rows


def format_table(entries: Sequence[Entry]) -> str:
    """The comparison as a fixed-width text table, one block per problem."""
    header = (
        f"{'problem':<11} {'optimizer':<24} {'lr':>8} {'final loss':>11} "
        f"{'steps to tol':>12} {'test acc':>8} {'best lr':>8} {'compile s':>9} {'run s':>7}"
    )
    lines = [header, "-" * len(header)]
    previous = None
    for row, entry in zip(summary_rows(entries), entries, strict=True):
        if previous is not None and row["problem"] != previous:
            lines.append("")
        previous = row["problem"]
        steps = row["steps_to_tolerance"]
        reached = f">{entry.history.loss.shape[-1]}" if steps is None else str(steps)
        accuracy = row["test_accuracy"]
        lines.append(
            f"{row['problem']:<11} {row['optimizer']:<24} {_fmt(row['learning_rate'], '.0e'):>8} "
            f"{_fmt(row['final_loss'], '.3e'):>11} {reached:>12} "
            f"{'-' if accuracy is None else f'{accuracy:.1%}':>8} "
            f"{_fmt(row['best_learning_rate'], '.0e'):>8} "
            f"{row['compile_seconds']:>9.2f} {row['run_seconds']:>7.2f}"
        )
    return "\n".join(lines)


def _json_number(value: Any) -> float | None:
    number = float(value)
    return float(f"{number:.7g}") if math.isfinite(number) else None


def _json_array(values: Any) -> Any:
    array = np.asarray(values, np.float64)
    if array.ndim == 0:
        return _json_number(array)
    return [_json_array(v) for v in array]


def histories_json(entries: Sequence[Entry], meta: dict[str, Any]) -> dict[str, Any]:
    """Every history as plain JSON (non-finite values become null)."""
    problems: dict[str, Any] = {}
    for entry, row in zip(entries, summary_rows(entries), strict=True):
        problem = entry.problem
        block = problems.setdefault(problem.name, {
            "description": problem.description,
            "minimum": problem.minimum,
            "tolerance": problem.tolerance,
            "options": {k: list(v) if isinstance(v, tuple) else v
                        for k, v in problem.options.items()},
            "runs": {},
        })
        history = entry.history
        record = {
            "optimizer": entry.choice.name,
            "keywords": entry.keywords,
            "summary": {k: _json_number(v) if isinstance(v, float) else v
                        for k, v in row.items()},
            "steps_to_tolerance": steps_to_tolerance(history, problem),
            "final_loss": _json_array(history.final_loss),
            "metrics": {k: _json_array(v) for k, v in history.metrics.items()},
            "eval_steps": [int(s) for s in np.asarray(history.eval_steps)],
            "train_loss": _json_array(history.train_loss),
            "loss": _json_array(history.loss),
            "grad_norm": _json_array(history.grad_norm),
            "update_norm": _json_array(history.update_norm),
            "hyperparams": {k: _json_array(v) for k, v in history.hyperparams.items()},
            "seconds": entry.seconds,
        }
        if history.params is not None:
            record["params"] = _json_array(history.params)
        if entry.sweep_final_loss is not None:
            record["sweep"] = {
                "learning_rate": list(entry.sweep_rates),
                "final_loss": _json_array(entry.sweep_final_loss),
            }
        block["runs"][entry.label] = record
    return {"meta": meta, "problems": problems}


def write_json(entries: Sequence[Entry], folder: Path, meta: dict[str, Any]) -> Path:
    path = Path(folder) / "histories.json"
    path.write_text(json.dumps(histories_json(entries, meta), indent=1, allow_nan=False))
    return path


def write_plots(entries: Sequence[Entry], folder: Path) -> list[Path]:
    """The PNGs of every problem: loss, paths (2-d), step sizes, sensitivity."""
    from matplotlib.figure import Figure

    from optim_fn.experiments import plots

    written = []
    by_problem: dict[str, list[Entry]] = {}
    for entry in entries:
        by_problem.setdefault(entry.problem.name, []).append(entry)

    def save(figure: Figure, name: str) -> None:
        path = Path(folder) / name
        figure.savefig(path, dpi=plots.DPI)
        written.append(path)

    for name, group in by_problem.items():
        problem = group[0].problem
        histories = {entry.label: entry.history for entry in group}
        size = plots.figure_size(len(histories))  # wider when the legend needs columns

        figure = Figure(figsize=size, layout="constrained")
        plots.plot_losses(histories, problem, figure.add_subplot())
        save(figure, f"{name}_loss.png")

        if problem.is_2d:
            figure = Figure(figsize=size, layout="constrained")
            plots.plot_paths(problem, histories, figure.add_subplot())
            save(figure, f"{name}_paths.png")

        figure = Figure(figsize=size, layout="constrained")
        top, bottom = figure.subplots(2, 1, sharex=True)
        plots.plot_series(histories, "learning_rate", top,
                          title=f"{problem.description}: learning rate read from the state")
        top.set_xlabel("")  # shared with the panel below
        plots.plot_series(histories, "step_size", bottom,
                          title="effective step |update| / |gradient|")
        if top.get_legend() is not None:
            top.get_legend().remove()  # the same lines as the bottom panel's
        # One legend for both panels, right of them (one panel is too short for 30
        # names), from the bottom panel, where every optimizer has a line.
        plots.figure_legend_outside(figure, bottom)
        save(figure, f"{name}_step_size.png")

        sweeps = {e.label: e.sweep_final_loss for e in group if e.sweep_final_loss is not None}
        if sweeps:
            figure = Figure(figsize=plots.FIGSIZE, layout="constrained")
            plots.plot_sensitivity(
                group[0].sweep_rates, sweeps, figure.add_subplot(),
                minimum=problem.minimum,
                title=f"{problem.description}: final loss after "
                f"{group[0].history.loss.shape[-1]} steps",
            )
            save(figure, f"{name}_sensitivity.png")
    return written
