"""Writes and executes notebooks/07_benchmark.ipynb from benchmarks/results/benchmark/.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/make_benchmark_notebook.py

The notebook reads the committed results.json of `optim-fn benchmark` (it does not rerun
the benchmark), so it executes in seconds in the test suite.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent

CELLS = [
    ("markdown", """# The optimizer benchmark: AlgoPerf's rules in small

`optim-fn benchmark` tunes each optimizer on four flax workloads with quasi-random
trials, reruns the best trial over seeds, times it to each workload's target and scores
it by the area under its performance profile (see `docs/benchmarks.md`). This notebook
reads the committed run in `benchmarks/results/benchmark/results.json`."""),
    ("code", """import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from optim_fn.experiments.benchmark.job import format_table
from optim_fn.experiments.benchmark import scoring

root = Path.cwd() if (Path.cwd() / "benchmarks").exists() else Path.cwd().parent
report = json.loads((root / "benchmarks/results/benchmark/results.json").read_text())
print(report["settings"]["command"])
print(format_table(report))"""),
    ("markdown", """## Performance profiles

For each optimizer, the fraction of workloads on which it reaches the target within a
factor `tau` of the fastest optimizer; the score is the area under the curve on
`[1, 4]`, divided by 3."""),
    ("code", """summary = report["summary"]
taus = np.linspace(1, scoring.R_MAX, 200)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), constrained_layout=True)
for axis, unit in zip(axes, ["steps", "seconds"]):
    profile = scoring.performance_profile(np.array(summary[f"{unit}_ratios"]), taus)
    for name, row in zip(summary["optimizers"], profile):
        axis.step(taus, row, where="post", label=f"{name} ({summary[f'{unit}_score'][name]:.2f})")
    axis.set(xlabel="tau", ylabel="fraction of workloads", title=f"{unit} to target")
    axis.legend(fontsize="small")
plt.show()"""),
    ("markdown", """## Curves of the best trials

Median over the rerun seeds, with the seeds' range as a band; the dotted line is the
target."""),
    ("code", """names = list(report["results"])
fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.3), constrained_layout=True)
for axis, workload in zip(np.atleast_1d(axes), names):
    info = report["workloads"][workload]
    for name, row in report["results"][workload].items():
        metric = np.array(row["seed_metric"])
        line, = axis.plot(row["eval_steps"], np.median(metric, 0), label=name)
        axis.fill_between(row["eval_steps"], metric.min(0), metric.max(0),
                          color=line.get_color(), alpha=0.25)
    axis.axhline(info["target"], color="black", linestyle=":")
    if info["metric"] != "accuracy":
        axis.set_yscale("log")
    axis.set(title=workload, xlabel="steps", ylabel=info["metric"])
np.atleast_1d(axes)[0].legend(fontsize="small")
plt.show()"""),
]


def main() -> None:
    notebook = nbformat.v4.new_notebook()
    for kind, source in CELLS:
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        notebook.cells.append(make(source))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    path = ROOT / "notebooks" / "07_benchmark.ipynb"
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(notebook, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
