"""The command line: ``python -m optim_fn compare`` (or ``optim-fn compare``).

``optim-fn compare`` compares the classic optimizers on Rosenbrock and on the digits MLP,
prints a table, and writes PNG plots and a JSON of the histories to ``optim_fn_output/``.
``optim-fn list`` shows every problem and optimizer with its formula and options. A bare
``optim-fn`` prints the help and runs nothing: a command that writes files into the
current folder should be asked for by name.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_OUTPUT = "optim_fn_output"

EXAMPLES = """\
examples:
  optim-fn compare
  optim-fn compare --problems rosenbrock quadratic:condition_number=100 --steps 500
  optim-fn compare --optimizers sgd adam:learning_rate=3e-3 adam:learning_rate=3e-2
  optim-fn compare --problems digits quadratic --optimizers modern
  optim-fn compare --problems digits --optimizers matrix --seeds 2
  optim-fn compare --problems linear --batch stochastic --seeds 5
  optim-fn compare --problems rosenbrock:start=-1.5/2 himmelblau:start=0/0
  optim-fn list
  optim-fn benchmark --workloads logistic digits_cnn --optimizers sgd adam --trials 4
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    from optim_fn import __version__
    from optim_fn.experiments.batching import BATCH_MODES
    from optim_fn.experiments.registry import (
        DEFAULT_OPTIMIZERS,
        DEFAULT_PROBLEMS,
        GROUPS,
        OPTIMIZERS,
        PROBLEMS,
    )

    parser = argparse.ArgumentParser(
        prog="optim-fn",
        description="See optimizers in action on test problems.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"optim_fn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{compare,list,benchmark}")

    compare = commands.add_parser(
        "compare",
        help="run optimizers on problems; print a table, write plots and histories",
        description="Run optimizers on problems; print a table and write PNG plots and a "
        "JSON of the histories. Choices take options as NAME:key=value,key=value.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument(
        "--problems", nargs="+", default=list(DEFAULT_PROBLEMS), metavar="NAME[:k=v,...]",
        help=f"problems to run (default: {' '.join(DEFAULT_PROBLEMS)}); "
        f"valid: {', '.join(PROBLEMS)}",
    )
    compare.add_argument(
        "--optimizers", nargs="+", default=list(DEFAULT_OPTIMIZERS), metavar="NAME[:k=v,...]",
        help=f"optimizers to compare (default: the classic eight); valid: "
        f"{', '.join(OPTIMIZERS)}; groups: {', '.join(GROUPS)} (see `optim-fn list`)",
    )
    compare.add_argument(
        "--steps", type=_positive, default=None,
        help="steps per run (default: each problem's own, e.g. 2000 for rosenbrock)",
    )
    compare.add_argument(
        "--batch", choices=BATCH_MODES, default=None,
        help="gradient: full batch, one example, or mini-batches (default: the problem's)",
    )
    compare.add_argument(
        "--batch-size", type=_positive, default=32, help="examples per mini-batch (default 32)"
    )
    compare.add_argument(
        "--seeds", type=_positive, default=1,
        help="runs per optimizer with different seeds, in one vmap (default 1)",
    )
    compare.add_argument("--seed", type=_non_negative, default=0, help="first seed (default 0)")
    compare.add_argument(
        "--sweep-points", type=_non_negative, default=9,
        help="learning rates in the sensitivity sweep, log-spaced from 1e-4 to 1 "
        "(default 9; 0 turns the sweep off)",
    )
    compare.add_argument(
        "--output", type=Path, default=Path(DEFAULT_OUTPUT),
        help=f"folder for the PNGs and histories.json (default: {DEFAULT_OUTPUT}/)",
    )
    compare.add_argument("--no-plots", action="store_true", help="write no PNGs")
    compare.add_argument(
        "--no-progress", action="store_true", help="never show progress bars"
    )
    compare.add_argument(
        "--optimize", action="store_true",
        help="compile the loops with XLA's full optimisation (slower to compile; the "
        "default, LLVM level 1, suits runs of seconds)",
    )
    compare.set_defaults(command_parser=compare)
    commands.add_parser("list", help="list the problems and optimizers with their options")
    from optim_fn.experiments.benchmark.command import add_parser as add_benchmark

    add_benchmark(commands, _positive)  # `optim-fn benchmark`: benchmark/command.py
    return parser


def _run_compare(args: argparse.Namespace, argv: Sequence[str]) -> int:
    parser = args.command_parser
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, and none is opened

    import numpy as np

    from optim_fn import __version__
    from optim_fn.experiments import compare as job
    from optim_fn.experiments.registry import ChoiceError, make_optimizers, make_problem
    from optim_fn.experiments.runner import FAST_COMPILE

    try:
        optimizers = make_optimizers(args.optimizers)
        problems = [make_problem(text) for text in args.problems]
        for problem in problems:
            for choice in optimizers:
                choice.build(problem.name)
    except ChoiceError as error:
        parser.error(str(error))
    labels = [choice.label for choice in optimizers]
    if len(set(labels)) != len(labels):
        parser.error(f"--optimizers: each optimizer may appear once, got {' '.join(labels)}")

    if args.sweep_points == 1:
        parser.error("--sweep-points: use 0 (no sweep) or at least 2 learning rates")
    seeds = list(range(args.seed, args.seed + args.seeds))
    rates = tuple(float(v) for v in np.logspace(-4, 0, args.sweep_points))
    began = time.perf_counter()
    print(
        f"optim_fn {__version__}: {len(optimizers)} optimizers x {len(problems)} problems, "
        f"{len(seeds)} seed(s)" + (f", sweeping {len(rates)} learning rates" if rates else "")
    )
    try:
        entries = job.compare(
            problems,
            optimizers,
            steps=args.steps,
            batch=args.batch,
            batch_size=args.batch_size,
            seeds=seeds,
            sweep_rates=rates,
            progress=False if args.no_progress else None,
            compiler_options={} if args.optimize else FAST_COMPILE,
            log=print,
        )
    except ValueError as error:  # e.g. a batch size larger than a problem's data
        print(f"optim-fn compare: error: {error}", file=sys.stderr)
        return 2
    print()
    print(job.format_table(entries))
    print()
    print(
        "steps to tol: first step with loss <= minimum + tolerance ("
        + ", ".join(f"{p.name} {p.tolerance:g}" for p in problems)
        + "); best lr: lowest final loss in the sweep"
    )

    args.output.mkdir(parents=True, exist_ok=True)
    meta = {
        "version": __version__,
        "command": " ".join(["optim-fn", *argv]),
        "steps": args.steps,
        "batch": args.batch,
        "batch_size": args.batch_size,
        "seeds": seeds,
        "sweep_learning_rates": list(rates),
    }
    written = [] if args.no_plots else job.write_plots(entries, args.output)
    written.append(job.write_json(entries, args.output, meta))
    print(f"wrote {len(written)} files to {args.output}/: " + ", ".join(p.name for p in written))
    print(f"total {time.perf_counter() - began:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``optim-fn`` and ``python -m optim_fn``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `optim-fn`: show what it can do, run nothing
        parser.print_help()
        return 0
    if args.command == "list":
        from optim_fn.experiments.registry import describe

        print(describe())
        return 0
    if args.command == "benchmark":
        from optim_fn.experiments.benchmark.command import run as run_benchmark

        return run_benchmark(args, argv)
    return _run_compare(args, argv)


if __name__ == "__main__":
    sys.exit(main())
