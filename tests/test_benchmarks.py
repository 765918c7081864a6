"""The benchmark's --quick mode runs in CI, so the script cannot rot.

It checks that every implementation was measured and the report is complete; it asserts
nothing about speed (timings are reported as ratios in the README, not tested).
"""

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import run  # noqa: E402


def test_quick_benchmark_measures_every_implementation_and_writes_json(
    tmp_path, capsys, monkeypatch
):
    # Few leaves: the leaf count sets only the compile time of the 60-odd programs. The
    # quick trees are cut to their first 8 leaves, and the small-leaf tree, the
    # distinct-shape compile comparison and the compile curve get a few: the same code
    # runs, in a third of the time of the --quick defaults.
    quick_trees = run.trees.all_trees

    def first_leaves(quick, small_leaves=None):
        found = quick_trees(quick, small_leaves)
        return {name: dict(list(shapes.items())[:8]) for name, shapes in found.items()}

    monkeypatch.setattr(run.trees, "all_trees", first_leaves)
    argv = ["--quick", "--reps", "2", "--out", str(tmp_path),
            "--small-leaves", "6", "--distinct", "6", "--curve", "4"]
    assert run.main(argv) == 0
    result = json.loads((tmp_path / "quick.json").read_text())
    impls = {row["impl"] for row in result["steps"]}
    expected = {"optax", "optim_fn tree", "optim_fn flat"}
    if run.torch is not None:
        expected |= {"torch foreach", "torch fused"}
    assert impls == expected
    assert {row["tree"] for row in result["steps"]} == {
        "one_leaf", "resnet50_like", "small_leaves", "transformer_like"
    }
    assert {row["optimizer"] for row in result["steps"]} >= {"sgd_momentum", "adam", "adamw"}
    for row in result["steps"]:
        assert math.isfinite(row["step_ms"]) and row["step_ms"] > 0
    assert set(result["train_step"]) == {"optax tree", "optim_fn flat"}
    assert set(result["eager"]) == {"optax", "optim_fn"}
    assert result["bandwidth_gb_per_s"] > 0
    assert {row["impl"] for row in result["compile_curve"]} == expected & {
        "optax", "optim_fn tree", "optim_fn flat"
    }
    printed = capsys.readouterr().out
    assert "/optax" in printed and "Full train step" in printed
