"""Tests of the command line: ``python -m optim_fn compare`` and ``optim-fn``."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.image
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from optim_fn.experiments import cli, plots, registry
from optim_fn.experiments.runner import History

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZERS = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw"]
PNGS = {
    "rosenbrock": ["loss", "paths", "step_size", "sensitivity"],
    "digits": ["loss", "step_size", "sensitivity"],
}


def _environment() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT),
        "MPLBACKEND": "Agg",
    }


def _module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "optim_fn", *args],
        cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=600,
    )


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default comparison, as a user runs it, with few steps."""
    folder = tmp_path_factory.mktemp("cli")
    result = _module("compare", "--steps", "20", "--output", "out", cwd=folder)
    return result, folder / "out"


def test_default_run_prints_the_table(default_run):
    result, _ = default_run
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("problem"))
    for column in ("final loss", "steps to tol", "test acc", "compile s", "run s"):
        assert column in lines[header]
    rows = [line.split() for line in lines[header + 2:] if line.strip()][:16]
    assert [(row[0], row[1]) for row in rows] == [
        (problem, name) for problem in ("rosenbrock", "digits") for name in OPTIMIZERS
    ]
    for row in rows:
        assert float(row[3]) > 0  # final loss
        assert row[5].endswith("%") == (row[0] == "digits")  # test accuracy where there is one
    assert "wrote 8 files" in result.stdout


def test_default_run_writes_valid_pngs(default_run):
    result, folder = default_run
    assert result.returncode == 0, result.stderr
    expected = {f"{problem}_{kind}.png" for problem, kinds in PNGS.items() for kind in kinds}
    assert {p.name for p in folder.glob("*.png")} == expected
    width, height = (round(v * plots.DPI) for v in plots.FIGSIZE)
    for name in expected:
        assert _png_size(folder / name) == (width, height)
        pixels = matplotlib.image.imread(folder / name)
        assert pixels.shape[:2] == (height, width)
        assert pixels[..., :3].std() > 0.05  # something was drawn


def test_default_run_writes_the_histories(default_run):
    result, folder = default_run
    assert result.returncode == 0, result.stderr
    text = (folder / "histories.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    data = json.loads(text)
    assert data["meta"]["command"].startswith("optim-fn compare --steps 20")
    assert set(data["problems"]) == {"rosenbrock", "digits"}
    for name, problem in data["problems"].items():
        assert list(problem["runs"]) == OPTIMIZERS
        for run in problem["runs"].values():
            assert np.shape(run["loss"]) == (1, 20)  # one seed, 20 steps
            assert np.shape(run["grad_norm"]) == np.shape(run["update_norm"]) == (1, 20)
            assert np.shape(run["hyperparams"]["learning_rate"]) == (1, 20)
            assert run["hyperparams"]["learning_rate"][0][0] == pytest.approx(
                run["keywords"]["learning_rate"], rel=1e-6)
            assert len(run["sweep"]["learning_rate"]) == 9
            assert np.shape(run["sweep"]["final_loss"]) == (9, 1)
            if name == "rosenbrock":
                assert np.shape(run["params"]) == (1, 21, 2)
                assert run["params"][0][0] == [-1.2, 1.0]
            else:
                assert "params" not in run and 0 <= run["metrics"]["test_accuracy"][0] <= 1


def test_small_run_with_options(tmp_path, capsys):
    code = cli.main([
        "compare", "--problems", "linear", "--optimizers", "sgd", "adam:learning_rate=0.1",
        "--steps", "30", "--batch", "stochastic", "--seeds", "2", "--sweep-points", "0",
        "--no-plots", "--no-progress", "--output", str(tmp_path),
    ])
    out = capsys.readouterr().out
    assert code == 0
    assert "linear      sgd" in out and "linear      adam:learning_rate=0.1" in out
    assert list(tmp_path.iterdir()) == [tmp_path / "histories.json"]
    runs = json.loads((tmp_path / "histories.json").read_text())["problems"]["linear"]["runs"]
    assert np.shape(runs["adam:learning_rate=0.1"]["loss"]) == (2, 30)
    assert runs["adam:learning_rate=0.1"]["keywords"]["learning_rate"] == 0.1
    assert "sweep" not in runs["sgd"]


def test_a_2d_problem_starts_where_the_command_line_says(tmp_path):
    code = cli.main([
        "compare", "--problems", "rosenbrock:start=-1.5/2", "--optimizers", "sgd",
        "--steps", "5", "--sweep-points", "0", "--no-plots", "--no-progress",
        "--output", str(tmp_path),
    ])
    assert code == 0
    run = json.loads((tmp_path / "histories.json").read_text())["problems"]["rosenbrock"]
    assert run["runs"]["sgd"]["params"][0][0] == [-1.5, 2.0]


@pytest.mark.parametrize("args,message", [
    (["--optimizers", "adamx"], "valid optimizers: " + ", ".join(OPTIMIZERS) + ", lion, "),
    (["--optimizers", "adamx"], ", dion, scion; groups: classic, modern, matrix, all\n"),
    (["--optimizers", "modern:b1=0.8"], "'modern' is a group of optimizers (lion, lamb"),
    (["--optimizers", "sgd", "classic"], "each optimizer may appear once"),
    (["--problems", "banana"], "valid problems: rosenbrock, beale, himmelblau"),
    (["--optimizers", "adam:learning_rate"], "must be written key=value"),
    (["--optimizers", "adam:lr=3e-3"], "valid options: learning_rate, b1, b2"),
    (["--optimizers", "adam:learning_rate=-1"], "`learning_rate` must be >= 0"),
    (["--problems", "quadratic:condition_number=x"], "is not a value"),
    (["--problems", "rosenbrock:start=1/x"], "is not a value"),
    (["--problems", "rosenbrock:start=1/true"], "is not a point; write numbers as x/y"),
    (["--problems", "rosenbrock:start=1/2/3"], "`start` must be a point (x, y)"),
    (["--optimizers", "adam", "adam"], "each optimizer may appear once"),
    (["--steps", "0"], "must be at least 1"),
    (["--steps", "many"], "'many' is not an integer"),
    (["--batch", "online"], "invalid choice: 'online'"),
    (["--sweep-points", "1"], "use 0 (no sweep) or at least 2"),
])
def test_bad_options_exit_nonzero_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_batch_larger_than_the_data_is_reported(tmp_path, capsys):
    code = cli.main([
        "compare", "--problems", "linear", "--optimizers", "sgd", "--batch", "minibatch",
        "--batch-size", "1000", "--output", str(tmp_path),
    ])
    assert code == 2
    assert "larger than the problem's 256 examples" in capsys.readouterr().err


def test_bad_option_from_the_shell(tmp_path):
    result = _module("compare", "--optimizers", "adamx", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown optimizer 'adamx'; valid optimizers: sgd" in result.stderr
    assert not (tmp_path / "optim_fn_output").exists()


def test_bare_command_prints_the_help_and_runs_nothing(monkeypatch, tmp_path, capsys):
    """A bare ``optim-fn`` used to run a 28 s comparison writing 8 files into the current
    folder; it prints the help (exit 0) and writes nothing, as ``python -m optim_fn``."""
    def refuse(args, argv):
        raise AssertionError("a bare optim-fn must not run the comparison")

    monkeypatch.setattr(cli, "_run_compare", refuse)
    monkeypatch.chdir(tmp_path)
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: optim-fn") and "{compare,list," in out and "examples:" in out
    result = _module(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == out
    assert list(tmp_path.iterdir()) == []


def test_compare_defaults(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "_run_compare", lambda args, argv: seen.update(vars(args)) or 0)
    assert cli.main(["compare"]) == 0
    assert seen["command"] == "compare"
    assert seen["problems"] == list(registry.DEFAULT_PROBLEMS) == ["rosenbrock", "digits"]
    assert seen["optimizers"] == OPTIMIZERS
    assert str(seen["output"]) == "optim_fn_output"


def test_list_shows_problems_and_optimizers(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in [*registry.PROBLEMS, *OPTIMIZERS]:
        assert f"\n  {name} " in out
    assert "condition_number=10.0" in out
    for name, preset in registry.OPTIMIZERS.items():  # the modern ones too, with summaries
        assert f"\n  {name:<19} {preset.summary}\n" in out
    assert "clip_value_fn=_quartic_root" in out  # a function default by name, no address
    assert "\n  modern              lion lamb " in out
    assert "\n  all                 " + " ".join(OPTIMIZERS) + " lion " in out


def test_list_prints_plain_text_formulas(capsys):
    """No Sphinx or LaTeX markup (``:math:``, ``\\frac``, backticks) reaches the terminal,
    and every problem and every preset has a formula line under its name."""
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line in lines:
        assert ":math:" not in line and "`" not in line, line
        assert not re.search(r"\\[A-Za-z]+", line), line  # \frac, \sqrt, \tfrac, ...
    from optim_fn.experiments import listing

    assert set(listing.OPTIMIZER_FORMULAS) == set(registry.OPTIMIZERS)
    assert set(listing.PROBLEM_FORMULAS) == set(registry.PROBLEMS)
    for name, width in [*((n, 11) for n in registry.PROBLEMS),
                        *((n, 19) for n in registry.OPTIMIZERS)]:
        row = lines.index(next(line for line in lines if line.startswith(f"  {name:<{width}} ")))
        formula = lines[row + 1].strip()
        assert formula.startswith("formula: ") and len(formula) > len("formula: ") + 8, name
        assert "no plain-text formula" not in formula, name
        if name in registry.OPTIMIZERS:
            assert "<-" in formula, f"{name}: an update rule says what it assigns"


def _fake_histories(count: int, steps: int = 20) -> dict:
    rng = np.random.default_rng(0)
    histories = {}
    for i in range(count):
        loss = np.exp(-np.linspace(0, 1 + i / 10, steps)) + 1e-3
        norm = rng.uniform(0.5, 1.5, steps)
        histories[f"optimizer_number_{i}"] = History(
            loss=loss, grad_norm=norm, update_norm=norm * 1e-2 * (i + 1),
            hyperparams={"learning_rate": np.full(steps, 1e-2 * (i + 1))}, params=None,
            eval_steps=np.arange(steps), train_loss=loss, final_params=None,
            final_loss=loss[-1], metrics={}, seconds={"compile": 0.0, "run": 0.0},
        )
    return histories


def test_30_series_have_distinct_colour_and_line_style():
    """With 22 optimizers the plots reused 10 colours, all solid."""
    ax = Figure(figsize=plots.FIGSIZE).add_subplot()
    plots.plot_losses(_fake_histories(30), None, ax)
    drawn = {(mcolors.to_hex(line.get_color()), line.get_linestyle()) for line in ax.get_lines()}
    assert len(ax.get_lines()) == len(drawn) == 30
    styles = plots.series_styles(45)
    combos = [(mcolors.to_hex(s["color"]), str(s["linestyle"])) for s in styles]
    assert len(set(combos)) == len(combos)
    assert [s["linestyle"] for s in styles[:8]] == ["-"] * 8  # few series: solid as before


def _assert_outside(legend, axes: list, figure: Figure) -> None:
    box = legend.get_window_extent()
    for ax in axes:
        assert not box.overlaps(ax.get_window_extent()), (box, ax.get_window_extent())
    assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1)


@pytest.mark.parametrize("draw", ["losses", "series", "two_panels"])
def test_legend_of_30_series_sits_outside_the_axes(draw):
    """The legend used to sit inside the axes, over the curves."""
    histories = _fake_histories(30)
    figure = Figure(figsize=plots.figure_size(len(histories)), layout="constrained")
    FigureCanvasAgg(figure)
    if draw == "two_panels":  # the command line's step-size figure
        top, bottom = figure.subplots(2, 1, sharex=True)
        plots.plot_series(histories, "learning_rate", top)
        plots.plot_series(histories, "step_size", bottom)
        top.get_legend().remove()
        plots.figure_legend_outside(figure, bottom)
        axes, legend = [top, bottom], figure.legends[0]
    else:
        ax = figure.add_subplot()
        if draw == "losses":
            plots.plot_losses(histories, None, ax)
        else:
            plots.plot_series(histories, "learning_rate", ax)
        axes, legend = [ax], ax.get_legend()
    figure.canvas.draw()
    assert len(legend.get_texts()) == 30
    _assert_outside(legend, axes, figure)
    for ax in axes:  # the axes keep most of the figure's width
        assert ax.get_window_extent().width > 0.45 * figure.bbox.width


@pytest.mark.parametrize("texts,expected", [
    (["modern"], list(registry.MODERN_OPTIMIZERS)),
    (["all"], OPTIMIZERS + list(registry.MODERN_OPTIMIZERS)
     + ["normuon", "adamuon", "kron", "dion", "scion"]),
    (["matrix"], ["adamw", "muon", "normuon", "adamuon", "kron", "dion", "scion"]),
    (["sgd", "modern"], ["sgd", *registry.MODERN_OPTIMIZERS]),
    (["classic"], OPTIMIZERS),
])
def test_groups_expand_on_the_command_line(texts, expected, monkeypatch, tmp_path):
    from optim_fn.experiments import compare as job

    seen = {}

    def fake_compare(problems, optimizers, **options):
        seen["labels"] = [choice.label for choice in optimizers]
        raise ValueError("stop here")  # reported by the command line as an error

    monkeypatch.setattr(job, "compare", fake_compare)
    code = cli.main(["compare", "--optimizers", *texts, "--output", str(tmp_path)])
    assert code == 2 and seen["labels"] == expected


def test_console_script_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["optim-fn"] == "optim_fn.experiments.cli:main"
    script = shutil.which("optim-fn", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("optim-fn is not installed in this environment (pip install -e .)")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("optim_fn ")
