"""The benchmark job: tune each optimizer on each workload, rerun the best, score.

AlgoPerf's external-tuning rules in small (Dahl et al. 2023, "Benchmarking Neural Network
Training Algorithms"):

1. per optimizer and workload, ``trials`` hyperparameter points from the optimizer's
   search space (:func:`~optim_fn.experiments.benchmark.search.sample`, Halton), all
   trained with seed 0 in one ``vmap``;
2. the best trial is the one reaching the target in the fewest steps (none reaching it:
   the best final metric);
3. it is rerun with ``seeds`` fresh seeds (1, 2, ...); the workload's steps and seconds
   to the target are the medians over those seeds (``inf`` when half or more miss it);
4. performance profiles and scores over the workloads
   (:mod:`~optim_fn.experiments.benchmark.scoring`), once on steps and once on seconds.

Trials and reruns share one compiled program per optimizer and workload: the smaller of
the two batches is padded to the larger one's width (copies, dropped from the results).
Seconds are steps times the measured seconds per step of the rerun program (its wall
time, compilation excluded, divided by its steps and by the runs ``vmap``-ed together,
padding included: each run's share of the program).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from optim_fn.experiments.benchmark import scoring
from optim_fn.experiments.benchmark.search import sample
from optim_fn.experiments.benchmark.spaces import Tunable
from optim_fn.experiments.benchmark.train import RunProgram
from optim_fn.experiments.workloads import Workload


def _final(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """The last metric of each run, NaN mapped to the worst value."""
    last = np.asarray(values)[:, -1]
    return np.nan_to_num(last, nan=-np.inf if higher_is_better else np.inf)


def best_trial(steps_to_target: np.ndarray, finals: np.ndarray, higher_is_better: bool) -> int:
    """The fastest trial to the target; if none reached it, the best final metric."""
    steps_to_target = np.asarray(steps_to_target, np.float64)
    if np.isfinite(steps_to_target).any():
        return int(np.argmin(steps_to_target))
    return int(np.argmax(finals) if higher_is_better else np.argmin(finals))


def tune_and_rerun(
    workload: Workload,
    tunable: Tunable,
    *,
    trials: int,
    seeds: int,
    budget_scale: float = 1.0,
    sampler_seed: int = 0,
) -> dict[str, Any]:
    """One optimizer on one workload: every trial, the best one's reruns, their times."""
    space = sample(tunable.space, trials, seed=sampler_seed)
    program = RunProgram(
        workload, tunable.factory, list(space), budget_scale=budget_scale,
        width=max(trials, seeds),
    )
    tuning = program(space, np.zeros(trials, np.uint32))
    higher = workload.higher_is_better
    trial_steps = [
        scoring.time_to_target(tuning.steps, row, workload.target, higher)
        for row in tuning.metric
    ]
    finals = _final(tuning.metric, higher)
    best = best_trial(np.array(trial_steps), finals, higher)
    chosen = {name: np.full(seeds, values[best]) for name, values in space.items()}
    reruns = program(chosen, np.arange(1, seeds + 1, dtype=np.uint32))
    seed_steps = np.array(
        [scoring.time_to_target(reruns.steps, row, workload.target, higher)
         for row in reruns.metric]
    )
    return {
        "trials": [
            {
                "hyperparams": {name: float(values[i]) for name, values in space.items()},
                "steps_to_target": trial_steps[i],
                "final_metric": float(tuning.metric[i, -1]),
                "metric": tuning.metric[i].tolist(),
            }
            for i in range(trials)
        ],
        "best_trial": best,
        "best_hyperparams": {name: float(values[best]) for name, values in space.items()},
        "eval_steps": reruns.steps.tolist(),
        "seed_metric": reruns.metric.tolist(),
        "seed_train_loss": reruns.train_loss.tolist(),
        "seed_steps_to_target": seed_steps.tolist(),
        "steps_to_target": float(np.median(seed_steps)),
        "seconds_per_step": reruns.seconds_per_step,
        "seconds_to_target": float(np.median(seed_steps)) * reruns.seconds_per_step,
        "compile_seconds": program.compile_seconds,
        "compiles": program.compiles,
        "final_metric_mean": float(np.mean(reruns.metric[:, -1])),
        "final_metric_std": float(np.std(reruns.metric[:, -1])),
    }


def run_benchmark(
    workloads: Sequence[Workload],
    optimizers: Mapping[str, Tunable],
    *,
    trials: int = 4,
    seeds: int = 2,
    budget_scale: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every optimizer on every workload, then the profiles and scores (JSON-ready)."""
    if trials < 1 or seeds < 1:
        raise ValueError(f"trials and seeds must be at least 1, got {trials} and {seeds}")
    if not budget_scale > 0:
        raise ValueError(f"budget_scale must be positive, got {budget_scale!r}")
    results: dict[str, dict[str, Any]] = {}
    for workload in workloads:
        results[workload.name] = {}
        for name, tunable in optimizers.items():
            if progress is not None:
                progress(f"{workload.name} / {name}")
            results[workload.name][name] = tune_and_rerun(
                workload, tunable, trials=trials, seeds=seeds, budget_scale=budget_scale
            )
    names = list(optimizers)
    summary: dict[str, Any] = {"optimizers": names, "workloads": [w.name for w in workloads]}
    for unit in ("steps", "seconds"):
        times = np.array(
            [[results[w.name][n][f"{unit}_to_target"] for w in workloads] for n in names]
        )
        ratios = scoring.performance_ratios(times)
        summary[f"{unit}_ratios"] = ratios.tolist()
        summary[f"{unit}_score"] = dict(zip(names, scoring.score(ratios).tolist(), strict=True))
    return {
        "workloads": {
            w.name: {
                "description": w.description, "metric": w.metric, "target": w.target,
                "higher_is_better": w.higher_is_better,
            }
            for w in workloads
        },
        "results": results,
        "summary": summary,
        "settings": {"trials": trials, "seeds": seeds, "budget_scale": budget_scale},
    }


def format_table(report: Mapping[str, Any]) -> str:
    """Per workload: each optimizer's best hyperparameters, steps/seconds to target, final
    metric; then the scores."""
    lines = []
    for workload, entry in report["results"].items():
        info = report["workloads"][workload]
        lines.append(f"{workload}: {info['description']} (target {info['target']:g})")
        lines.append(
            f"  {'optimizer':<10} {'steps':>7} {'seconds':>8} {'final':>16}  best hyperparameters"
        )
        for name, row in entry.items():
            params = ", ".join(f"{k}={v:.3g}" for k, v in row["best_hyperparams"].items())
            final = f"{row['final_metric_mean']:.4g}+-{row['final_metric_std']:.2g}"
            lines.append(
                f"  {name:<10} {row['steps_to_target']:>7g} {row['seconds_to_target']:>8.3g} "
                f"{final:>16}  {params}"
            )
    summary = report["summary"]
    lines.append("score (AlgoPerf: area under the performance profile, 1 = fastest everywhere)")
    lines.append(f"  {'optimizer':<10} {'steps':>6} {'seconds':>8}")
    order = sorted(summary["optimizers"], key=lambda n: -summary["seconds_score"][n])
    for name in order:
        lines.append(
            f"  {name:<10} {summary['steps_score'][name]:>6.3f} "
            f"{summary['seconds_score'][name]:>8.3f}"
        )
    return "\n".join(lines)
