"""``optim-fn benchmark``: the parser's options and the job behind them."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ALL_WORKLOADS = ("logistic", "digits_cnn", "modular_addition", "char_lm")
# The default run takes a few minutes: modular addition (1000 steps of 512, about 70%
# of the full run's compute) is asked for by name.
DEFAULT_WORKLOADS = ("logistic", "digits_cnn", "char_lm")
DEFAULT_OUTPUT = "optim_fn_benchmark"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def add_parser(commands: Any, positive: Any) -> None:
    """Adds the ``benchmark`` subcommand to ``commands`` (argparse subparsers)."""
    from optim_fn.experiments.benchmark.spaces import DEFAULT_OPTIMIZERS, OPTIMIZERS

    parser = commands.add_parser(
        "benchmark",
        help="tune optimizers on flax workloads, time them to targets, score them (AlgoPerf)",
        description="AlgoPerf's rules in small: per optimizer and workload, quasi-random "
        "trials from the optimizer's search space, the best rerun over seeds, steps and "
        "seconds to the target, performance profiles and scores. Prints a table, writes "
        "PNGs and results.json (every trial).",
    )
    parser.add_argument(
        "--workloads", nargs="+", default=list(DEFAULT_WORKLOADS), metavar="NAME",
        help=f"workloads (default: {' '.join(DEFAULT_WORKLOADS)}); valid: "
        f"{', '.join(ALL_WORKLOADS)}",
    )
    parser.add_argument(
        "--optimizers", nargs="+", default=list(DEFAULT_OPTIMIZERS), metavar="NAME",
        help=f"optimizers (default: {' '.join(DEFAULT_OPTIMIZERS)}); valid: "
        f"{', '.join(OPTIMIZERS)}",
    )
    parser.add_argument("--trials", type=positive, default=3, help="tuning trials (default 3)")
    parser.add_argument(  # as many seeds as trials: the two share one program's width
        "--seeds", type=positive, default=3, help="reruns of the best trial (default 3)"
    )
    parser.add_argument(
        "--budget-scale", type=_positive_float, default=1.0,
        help="multiply every workload's step budget (e.g. 0.05 for a quick look)",
    )
    parser.add_argument(
        "--target", action="append", default=[], metavar="WORKLOAD=VALUE",
        help="override a workload's target (repeatable)",
    )
    parser.add_argument(
        "--output", type=Path, default=Path(DEFAULT_OUTPUT),
        help=f"folder for the PNGs and results.json (default: {DEFAULT_OUTPUT}/)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write no PNGs")
    parser.add_argument("--no-progress", action="store_true", help="never show progress bars")
    parser.set_defaults(command_parser=parser)


def _targets(texts: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, float]:
    targets = {}
    for text in texts:
        name, _, value = text.partition("=")
        try:
            targets[name] = float(value)
        except ValueError:
            parser.error(f"--target: expected WORKLOAD=VALUE, got {text!r}")
    return targets


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Runs the benchmark the parsed ``args`` describe; returns the exit code."""
    parser = args.command_parser
    import matplotlib

    matplotlib.use("Agg")
    from tqdm import tqdm

    from optim_fn import __version__
    from optim_fn.experiments.benchmark.job import format_table, run_benchmark
    from optim_fn.experiments.benchmark.plots import write_plots
    from optim_fn.experiments.benchmark.spaces import tunables
    from optim_fn.experiments.workloads import WORKLOADS, build_workloads

    targets = _targets(args.target, parser)
    load_at_start = _load_average()
    try:
        optimizers = tunables(args.optimizers)
        unknown = [name for name in [*args.workloads, *targets] if name not in WORKLOADS]
        if unknown:
            raise ValueError(
                f"unknown workload {', '.join(map(repr, unknown))}; valid: {', '.join(WORKLOADS)}"
            )
        workloads = build_workloads(args.workloads)
        workloads = [
            w.replace(target=targets[w.name]) if w.name in targets else w for w in workloads
        ]
    except ValueError as error:
        parser.error(str(error))
    began = time.perf_counter()
    print(
        f"optim_fn {__version__} benchmark: {len(optimizers)} optimizers x {len(workloads)} "
        f"workloads, {args.trials} trials, {args.seeds} seeds, budget x{args.budget_scale:g}"
    )
    bar = tqdm(
        total=len(optimizers) * len(workloads), unit="run", dynamic_ncols=True,
        disable=True if args.no_progress else None,
    )

    started = []

    def advance(label: str) -> None:  # called as each optimizer-workload pair starts
        if started:
            bar.update(1)
        started.append(label)
        bar.set_description(label)

    with bar:
        report = run_benchmark(
            workloads, optimizers, trials=args.trials, seeds=args.seeds,
            budget_scale=args.budget_scale, progress=advance,
        )
        bar.update(1)
    print()
    print(format_table(report))
    report["settings"].update(
        version=__version__,
        command=" ".join(["optim-fn", *argv]),
        machine=machine(load_at_start),
    )
    args.output.mkdir(parents=True, exist_ok=True)
    written = [] if args.no_plots else write_plots(report, args.output)
    path = args.output / "results.json"
    path.write_text(json.dumps(report, indent=1, default=_jsonable))
    written.append(path)
    print(f"wrote {len(written)} files to {args.output}/: " + ", ".join(p.name for p in written))
    print(f"total {time.perf_counter() - began:.1f} s")
    return 0


def _load_average() -> float | None:
    """The 1-minute load average (``None`` where the OS has none)."""
    import os

    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return None


def machine(load_at_start: float | None) -> dict[str, Any]:
    """What the timings ran on: platform, CPUs (all, and those this process may use),
    library versions, JAX's backend, the 1-minute load average at the start and now."""
    import os
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import jax

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "jax": jax.__version__,
        "optax": installed("optax"),
        "flax": installed("flax"),
        "backend": jax.default_backend(),
        "devices": [str(device) for device in jax.devices()],
        "load_average_start": load_at_start,
        "load_average_end": _load_average(),
    }


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
