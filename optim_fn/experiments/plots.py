"""Plots of runs: paths over contours, loss curves, step sizes, sensitivity heat maps.

Every function draws on a matplotlib ``Axes`` (a new figure's when ``ax`` is None) and
returns it. A run is given as a :class:`~optim_fn.experiments.runner.History`; with a
seed axis, curves show the median over seeds and a band from the lowest to the highest.
Each series gets a colour and a line style (:func:`series_styles`: no two alike, however
many series) in the order of the mapping, so the same label keeps its look in every plot
drawn from the same mapping; legends sit outside the axes, right of them, so they never
cover a curve.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.colors as mcolors
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from optim_fn.experiments.problem import Problem
from optim_fn.experiments.runner import History

FIGSIZE = (8.0, 5.0)
DPI = 100
"""Figures from the command line are ``FIGSIZE * DPI`` = 800 x 500 pixels."""


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")  # room for the legend
    return ax


LEGEND_ROWS = 15
"""Entries per legend column: 15 lines of 8-point text fit the height of a figure."""

_LINE_STYLES = ("-", "--", ":", "-.")


def series_styles(count: int) -> list[dict[str, Any]]:
    """``{"color", "linestyle"}`` for each of ``count`` series, no two the same.

    The ten Tableau colours come first as solid lines, then again dashed, dotted and
    dash-dotted (40 series); beyond that each further round of ten gets a dash pattern
    of its own. Eight optimizers look as they always did: solid, one colour each.
    """
    palette = list(mcolors.TABLEAU_COLORS.values())
    styles = []
    for i in range(count):
        round_ = i // len(palette)
        linestyle = (
            _LINE_STYLES[round_] if round_ < len(_LINE_STYLES) else (0, (round_, 2.0))
        )
        styles.append({"color": palette[i % len(palette)], "linestyle": linestyle})
    return styles


def legend_columns(count: int) -> int:
    """Columns a legend of ``count`` entries needs (at most :data:`LEGEND_ROWS` rows)."""
    return max(1, math.ceil(count / LEGEND_ROWS))


def figure_size(count: int) -> tuple[float, float]:
    """:data:`FIGSIZE`, 2 inches wider per extra legend column for ``count`` series."""
    return FIGSIZE[0] + 2.0 * (legend_columns(count) - 1), FIGSIZE[1]


def legend_outside(ax: Axes) -> None:
    """The legend of ``ax`` right of the axes, top-aligned, in as many columns as needed.

    A figure with ``layout="constrained"`` (as the command line's) makes room for it.
    """
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0, fontsize=8, ncols=legend_columns(len(handles)))


def figure_legend_outside(figure: Figure, ax: Axes) -> None:
    """The legend of ``ax`` moved to the right of the whole figure (for stacked panels).

    Needs ``layout="constrained"``, which reserves the space (``loc="outside ..."``).
    """
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        figure.legend(handles, labels, loc="outside right upper", fontsize=8,
                      ncols=legend_columns(len(handles)))


def _by_seed(values: Any) -> np.ndarray:
    """``(seeds, steps)`` from ``(steps,)`` or ``(seeds, steps)``."""
    array = np.asarray(values, np.float64)
    return array[None] if array.ndim == 1 else array.reshape(-1, array.shape[-1])


def _curve(ax: Axes, x: np.ndarray, values: Any, label: str, style: dict[str, Any]) -> None:
    runs = _by_seed(values)
    with np.errstate(all="ignore"):
        median = np.nanmedian(runs, axis=0) if len(runs) > 1 else runs[0]
    ax.plot(x, median, label=label, linewidth=1.5, **style)
    if len(runs) > 1:
        ax.fill_between(x, np.nanmin(runs, axis=0), np.nanmax(runs, axis=0),
                        color=style["color"], alpha=0.2, linewidth=0)


def loss_grid(problem: Problem, resolution: int = 200) -> tuple[np.ndarray, ...]:
    """``(x, y, loss)`` of a 2-d problem's full loss on a grid over its bounds."""
    if not problem.is_2d:
        raise ValueError(f"{problem.name} is not a 2-d problem; it has no loss surface to draw")
    (x0, x1), (y0, y1) = problem.bounds
    x, y = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    points = jnp.asarray(np.stack([x.ravel(), y.ravel()], axis=1), jnp.float32)
    values = jax.jit(jax.vmap(problem.loss, in_axes=(0, None)))(points, problem.data)
    return x, y, np.asarray(values, np.float64).reshape(x.shape)


def _first_path(path: History | Any) -> np.ndarray:
    """The ``(steps + 1, 2)`` points of a path, or of the first run of a history."""
    points = np.asarray(path.params if isinstance(path, History) else path, np.float64)
    if points.ndim < 2 or points.shape[-1] != 2:
        raise ValueError(
            f"a path must be points of shape (steps + 1, 2), got shape {points.shape}; "
            "paths are recorded for 2-d problems only"
        )
    return points.reshape(-1, points.shape[-2], 2)[0]


def plot_paths(
    problem: Problem,
    paths: Mapping[str, Any],
    ax: Axes | None = None,
    *,
    levels: int = 30,
    markers: bool = True,
) -> Axes:
    """Trajectories over the contour plot of a 2-d problem's loss.

    ``paths`` maps a label to a :class:`History` (its first seed's path is drawn) or to
    an array of points ``(steps + 1, 2)``. Contour levels are log-spaced above the
    minimum, so both the floor of a valley and its walls show. A star marks each
    minimiser and a circle the start.
    """
    ax = _axes(ax)
    x, y, z = loss_grid(problem)
    floor = problem.minimum if problem.minimum is not None else float(np.nanmin(z))
    gap = np.clip(z - floor, 1e-12, None)
    low = max(float(np.nanmin(gap)), float(np.nanmax(gap)) * 1e-6)
    bounds = np.geomspace(low, float(np.nanmax(gap)), levels)
    ax.contourf(x, y, gap, levels=bounds, norm=mcolors.LogNorm(), cmap="Greys_r", alpha=0.7)
    ax.contour(x, y, gap, levels=bounds, norm=mcolors.LogNorm(), colors="white",
               linewidths=0.3, alpha=0.6)
    starts = []
    for label, style in zip(paths, series_styles(len(paths)), strict=True):
        points = _first_path(paths[label])
        ax.plot(points[:, 0], points[:, 1], label=label, linewidth=1.3, **style)
        if markers:
            ax.plot(points[-1, 0], points[-1, 1], "o", color=style["color"], markersize=5)
        starts.append(points[0])
    for start in np.unique(np.asarray(starts).reshape(-1, 2), axis=0):
        ax.plot(*start, "o", color="black", markerfacecolor="white", markersize=7)
    for point in problem.minimizers:
        ax.plot(*point, "*", color="gold", markeredgecolor="black", markersize=13)
    (x0, x1), (y0, y1) = problem.bounds
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{problem.description}: paths")
    legend_outside(ax)
    return ax


def plot_losses(
    histories: Mapping[str, History],
    problem: Problem | None = None,
    ax: Axes | None = None,
    *,
    per_step: bool = False,
) -> Axes:
    """Loss curves on a log scale: ``loss - minimum`` when the minimum is known.

    Draws each history's ``train_loss`` (the full loss) against ``eval_steps``; with
    ``per_step=True`` the loss of every step's batch instead (noisy in sampled modes).
    """
    ax = _axes(ax)
    minimum = problem.minimum if problem is not None and problem.minimum is not None else None
    for label, style in zip(histories, series_styles(len(histories)), strict=True):
        history = histories[label]
        if per_step:
            x = np.arange(np.shape(history.loss)[-1])
            values = np.asarray(history.loss, np.float64)
        else:
            x = np.asarray(history.eval_steps)
            values = np.asarray(history.train_loss, np.float64)
        if minimum is not None:
            values = values - minimum
        _curve(ax, x, np.where(values > 0, values, np.nan), label, style)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss - minimum" if minimum is not None else "loss")
    if problem is not None:
        ax.set_title(f"{problem.description}: loss")
    if problem is not None and problem.minimum is not None:
        ax.axhline(problem.tolerance, color="grey", linestyle=":", linewidth=1)
    ax.grid(True, which="major", alpha=0.3)
    legend_outside(ax)
    return ax


def find_hyperparam(hyperparams: Mapping[str, Any], field: str) -> str | None:
    """The key of ``hyperparams`` (a :attr:`History.hyperparams`) that holds ``field``.

    For ``"learning_rate"``, the step size an optimizer derives (``effective_learning_rate``:
    Prodigy, D-Adaptation, DoG) when it reports one. Else ``field`` itself when present;
    otherwise the qualified names whose last component is ``field``
    (``"muon.learning_rate"``: components split at ``.``, ``/`` or ``:``), the shortest
    first, then the first in the mapping's order (Muon's branches both hold its learning
    rate, unless ``adam_learning_rate`` differs). None when no block has it.
    """
    if field == "learning_rate" and "effective_learning_rate" in hyperparams:
        return "effective_learning_rate"
    if field in hyperparams:
        return field
    qualified = [
        (len(_components(name)), order, name)
        for order, name in enumerate(hyperparams)
        if _components(name)[-1] == field
    ]
    return min(qualified)[2] if qualified else None


def _components(name: str) -> list[str]:
    return re.split(r"[./:]", name)


def plot_series(
    histories: Mapping[str, History],
    field: str,
    ax: Axes | None = None,
    *,
    log: bool = True,
    title: str | None = None,
) -> Axes:
    """One recorded series per history against the step.

    ``field`` is ``"grad_norm"``, ``"update_norm"``, ``"loss"``, ``"step_size"`` (the
    effective step ``update_norm / grad_norm``: how far a unit gradient moves the
    params) or the name of a hyperparameter (``"learning_rate"``, ``"momentum"``, ...),
    found by :func:`find_hyperparam` also where the state qualifies it (Muon's two
    branches each have a ``learning_rate``).
    """
    ax = _axes(ax)
    for label, style in zip(histories, series_styles(len(histories)), strict=True):
        history = histories[label]
        if field == "step_size":
            with np.errstate(all="ignore"):
                values = np.asarray(history.update_norm, np.float64) / np.asarray(
                    history.grad_norm, np.float64
                )
        elif field in ("grad_norm", "update_norm", "loss"):
            values = np.asarray(getattr(history, field), np.float64)
        elif (name := find_hyperparam(history.hyperparams, field)) is not None:
            values = np.asarray(history.hyperparams[name], np.float64)
        else:
            continue  # this optimizer has no such hyperparameter
        _curve(ax, np.arange(values.shape[-1]), values, label, style)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(field.replace("_", " "))
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    legend_outside(ax)
    return ax


def plot_sensitivity(
    learning_rates: Sequence[float],
    final_losses: Mapping[str, Any],
    ax: Axes | None = None,
    *,
    minimum: float | None = None,
    title: str = "final loss by learning rate",
) -> Axes:
    """A heat map of the final loss, one row per optimizer, one column per learning rate.

    ``final_losses`` maps a label to the final losses over ``learning_rates`` (a seed
    axis, if any, is averaged). Colour is :math:`\\log_{10}` of ``loss - minimum``;
    runs that diverged (non-finite loss) are hatched and marked "x".
    """
    ax = _axes(ax)
    labels = list(final_losses)
    table = np.stack([
        np.asarray(final_losses[k], np.float64).reshape(len(learning_rates), -1).mean(axis=1)
        for k in labels
    ])
    if minimum is not None:
        table = table - minimum
    with np.errstate(all="ignore"):
        shown = np.log10(np.where(np.isfinite(table) & (table > 0), table, np.nan))
    finite = shown[np.isfinite(shown)]
    image = ax.imshow(
        np.ma.masked_invalid(shown),
        aspect="auto",
        cmap="viridis_r",
        vmin=float(finite.min()) if finite.size else None,
        vmax=float(finite.max()) if finite.size else None,
    )
    for row, col in zip(*np.nonzero(~np.isfinite(table)), strict=True):
        ax.text(col, row, "x", ha="center", va="center", color="crimson", fontsize=10)
    ax.set_facecolor("#f2d7d5")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xticks(range(len(learning_rates)), [f"{lr:.0e}" for lr in learning_rates],
                  rotation=45, fontsize=8)
    ax.set_xlabel("learning rate")
    ax.set_title(title)
    colorbar = ax.figure.colorbar(image, ax=ax)
    colorbar.set_label("log10(final loss - minimum)" if minimum is not None
                       else "log10(final loss)")
    return ax
