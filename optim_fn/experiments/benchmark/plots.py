"""The benchmark's PNGs: performance profiles, and metric curves with seed bands."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from optim_fn.experiments.benchmark import scoring

DPI = 90


def _save(figure: Any, path: Path) -> None:
    """Writes ``figure`` as a 256-colour PNG: eight optimizers' seed bands saved in RGBA
    take 150-250 KB a plot, a third of that with a palette, and look the same."""
    import io

    from PIL import Image  # a dependency of matplotlib

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True
        )


def write_plots(report: Mapping[str, Any], folder: Path) -> list[Path]:
    """``profiles.png`` and one ``curves_<workload>.png`` (against steps and seconds)."""
    import matplotlib.pyplot as plt

    written = []
    summary = report["summary"]
    taus = np.linspace(1.0, scoring.R_MAX, 200)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axis, unit in zip(axes, ("steps", "seconds"), strict=True):
        profile = scoring.performance_profile(np.array(summary[f"{unit}_ratios"]), taus)
        for name, row in zip(summary["optimizers"], profile, strict=True):
            score = summary[f"{unit}_score"][name]
            axis.step(taus, row, where="post", label=f"{name} ({score:.2f})")
        axis.set(xlabel="tau (time / fastest time)", ylabel="fraction of workloads",
                 title=f"performance profile, {unit} to target", ylim=(-0.02, 1.02))
        axis.legend(fontsize="small")
    written.append(folder / "profiles.png")
    _save(figure, written[-1])
    plt.close(figure)

    for workload, entry in report["results"].items():
        info = report["workloads"][workload]
        figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        for name, row in entry.items():
            steps = np.array(row["eval_steps"], np.float64)
            metric = np.array(row["seed_metric"], np.float64)
            low, middle, high = np.nanpercentile(metric, [0, 50, 100], axis=0)
            for axis, x in zip(axes, (steps, steps * row["seconds_per_step"]), strict=True):
                (line,) = axis.plot(x, middle, label=name)
                axis.fill_between(x, low, high, color=line.get_color(), alpha=0.25)
        for axis, unit in zip(axes, ("steps", "seconds"), strict=True):
            axis.axhline(info["target"], color="black", linestyle=":", label="target")
            if info["metric"] != "accuracy":
                axis.set_yscale("log")
            axis.set(xlabel=unit, ylabel=info["metric"], title=f"{workload}: median, seed range")
        axes[0].legend(fontsize="small")
        written.append(folder / f"curves_{workload}.png")
        _save(figure, written[-1])
        plt.close(figure)
    return written
