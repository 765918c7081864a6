"""The benchmark: the Halton sampler, the AlgoPerf scoring against hand-computed cases,
trial selection, and ``optim-fn benchmark`` run in-process on a tiny budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optim_fn.experiments import cli
from optim_fn.experiments.benchmark import scoring
from optim_fn.experiments.benchmark.job import best_trial
from optim_fn.experiments.benchmark.search import Range, halton, radical_inverse, sample
from optim_fn.experiments.benchmark.spaces import OPTIMIZERS, tunables


def test_halton_points_by_hand():
    # base 2: 1/2, 1/4, 3/4, 1/8; base 3: 1/3, 2/3, 1/9, 4/9 (digits mirrored)
    np.testing.assert_allclose(
        halton(4, 2), [[1 / 2, 1 / 3], [1 / 4, 2 / 3], [3 / 4, 1 / 9], [1 / 8, 4 / 9]]
    )
    assert radical_inverse(6, 2) == 3 / 8  # 6 = 110b -> 0.011b
    assert radical_inverse(5, 5) == 1 / 25  # 5 = 10 in base 5 -> 0.01


def test_sample_maps_into_each_scale():
    space = {
        "learning_rate": Range(1e-3, 1e-1, "log"),
        "one_minus_b1": Range(0.01, 0.1, "one_minus_log"),
        "decay": Range(0.0, 1.0, "linear"),
        "extra": Range(1.0, 5.0, "linear"),
    }
    trials = sample(space, 2)
    # first point (1/2, 1/3, 1/5, 1/7): the log midpoint of 1e-3..1e-1 is 1e-2;
    # 1 - 10^(-2 + 1/3); 0.2; 1 + 4/7
    np.testing.assert_allclose(trials["learning_rate"], [1e-2, 10 ** (-3 + 2 * 0.25)])
    np.testing.assert_allclose(trials["one_minus_b1"][0], 1 - 10 ** (-2 + 1 / 3))
    np.testing.assert_allclose(trials["decay"], [1 / 5, 2 / 5])
    np.testing.assert_allclose(trials["extra"][0], 1 + 4 / 7)
    shifted = sample(space, 8, seed=3)
    again = sample(space, 8, seed=3)
    for name, bounds in space.items():
        np.testing.assert_array_equal(shifted[name], again[name])
        values = shifted[name] if bounds.scale != "one_minus_log" else 1 - shifted[name]
        assert np.all((values >= bounds.low) & (values <= bounds.high)), name
    assert not np.allclose(shifted["learning_rate"], sample(space, 8)["learning_rate"])


def test_empty_or_bad_search_spaces_are_refused():
    with pytest.raises(ValueError, match=r"'adam.learning_rate': the range \[0.1, 0.01\] is empty"):
        sample({"adam.learning_rate": Range(0.1, 0.01)}, 4)
    with pytest.raises(ValueError, match="is empty; give low < high"):
        Range(0.5, 0.5, "linear").check("momentum")
    with pytest.raises(ValueError, match="a log range needs low > 0"):
        Range(0.0, 1.0, "log").check("weight_decay")
    with pytest.raises(ValueError, match="scale must be one of linear, log"):
        Range(0.1, 1.0, "cubic").check("x")
    with pytest.raises(ValueError, match="number of trials must be at least 1"):
        sample({"x": Range(0.1, 1.0)}, 0)
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'; valid: sgd, momentum"):
        tunables(["adam", "adamm"])
    for name, tunable in OPTIMIZERS.items():  # the shipped spaces are all valid
        for key, bounds in tunable.space.items():
            bounds.check(f"{name}.{key}")


def test_time_to_target_by_hand():
    steps = np.array([10, 20, 30])
    assert scoring.time_to_target(steps, [0.5, 0.8, 0.9], 0.8, True) == 20
    assert scoring.time_to_target(steps, [3.0, 2.0, 1.0], 1.5, False) == 30
    assert scoring.time_to_target(steps, [np.nan, 0.1, 0.1], 0.5, False) == 20
    assert scoring.time_to_target(steps, [0.5, np.nan, np.nan], 0.9, True) == np.inf


def test_profiles_and_scores_by_hand():
    times = np.array([[10.0, np.inf, 5.0, np.inf], [20.0, 30.0, np.inf, np.inf]])
    ratios = scoring.performance_ratios(times)
    # the last workload nobody solved: inf for everyone
    np.testing.assert_array_equal(ratios, [[1, np.inf, 1, np.inf], [2, 1, np.inf, np.inf]])
    profile = scoring.performance_profile(ratios, np.array([1.0, 1.5, 2.0, 3.0]))
    np.testing.assert_allclose(profile, [[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]])
    # (4 - r) / 3 averaged: (1 + 0 + 1 + 0) / 4 and (2/3 + 1 + 0 + 0) / 4
    np.testing.assert_allclose(scoring.score(ratios), [0.5, 5 / 12])
    # the closed form is the area under the step profile on [1, r_max], over r_max - 1
    taus = np.linspace(1.0, 4.0, 30001)
    area = scoring.performance_profile(ratios, taus)[:, :-1].sum(axis=1) * (taus[1] - taus[0])
    np.testing.assert_allclose(scoring.score(ratios), area / 3.0, atol=1e-4)
    np.testing.assert_allclose(scoring.score([[5.0, 1.0]], r_max=4.0), [0.5])  # beyond r_max
    with pytest.raises(ValueError, match="positive or inf"):
        scoring.performance_ratios(np.array([[0.0, 1.0]]))


def test_best_trial_is_fastest_then_best_final():
    assert best_trial(np.array([np.inf, 30.0, 20.0]), np.array([0.9, 0.5, 0.1]), True) == 2
    assert best_trial(np.array([np.inf, np.inf]), np.array([0.3, 0.6]), True) == 1
    assert best_trial(np.array([np.inf, np.inf]), np.array([0.3, 0.6]), False) == 0


def _benchmark(tmp_path, *options):
    return cli.main(["benchmark", "--output", str(tmp_path), "--no-progress", *options])


def test_benchmark_command_tiny_run(tmp_path, capsys):
    code = _benchmark(
        tmp_path, "--workloads", "logistic", "--optimizers", "sgd", "adam", "--trials", "3",
        "--seeds", "2", "--budget-scale", "0.2", "--target", "logistic=0.05",
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "logistic: logistic regression" in out and "score (AlgoPerf" in out
    report = json.loads((tmp_path / "results.json").read_text())
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["curves_logistic.png",
                                                            "profiles.png"]
    entry = report["results"]["logistic"]
    assert [len(entry[name]["trials"]) for name in ("sgd", "adam")] == [3, 3]
    for name in ("sgd", "adam"):
        row = entry[name]
        steps = np.array(row["eval_steps"])
        assert len(steps) == 20 and steps[-1] == 100  # 500 steps x 0.2, 20 evaluations
        seed_steps = [scoring.time_to_target(steps, m, 0.05, False) for m in row["seed_metric"]]
        assert row["seed_steps_to_target"] == seed_steps
        assert row["steps_to_target"] == np.median(seed_steps)
        # 3 trials and 2 seeds: the reruns are padded to 3 runs, one program compiled
        assert len(row["seed_metric"]) == 2 and row["compiles"] == 1
        best = row["trials"][row["best_trial"]]
        assert best["hyperparams"] == row["best_hyperparams"]
        assert best["steps_to_target"] == min(t["steps_to_target"] for t in row["trials"])
    summary = report["summary"]
    times = [[entry[n]["steps_to_target"]] for n in ("sgd", "adam")]
    expected = scoring.score(scoring.performance_ratios(np.array(times)))
    np.testing.assert_allclose([summary["steps_score"][n] for n in ("sgd", "adam")], expected)
    assert max(expected) == 1.0  # someone reaches a suboptimality of 0.05 in 100 steps
    machine = report["settings"]["machine"]
    assert machine["backend"] == "cpu" and machine["cpu_count"] >= len(machine["usable_cpus"])
    assert {"jax", "optax", "flax", "load_average_start", "load_average_end"} <= set(machine)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--workloads", "imagenet"], "unknown workload 'imagenet'; valid: digits_cnn"),
        (["--optimizers", "adamm"], "unknown optimizer 'adamm'; valid: sgd"),
        (["--target", "digits_cnn=1.5"], "target accuracy 1.5 can never be reached"),
        (["--target", "logistic=x"], "expected WORKLOAD=VALUE, got 'logistic=x'"),
        (["--budget-scale", "0"], "must be positive"),
    ],
)
def test_benchmark_command_bad_input(tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as exit_info:
        _benchmark(tmp_path, *options)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_muon_takes_only_the_hidden_matrices():
    from optim_fn.contrib import MuonDimensionNumbers
    from optim_fn.experiments.benchmark.spaces import hidden_matrices

    params = {
        "embed": {"embedding": np.zeros((5, 4))},
        "up": {"kernel": np.zeros((4, 8)), "bias": np.zeros(8)},
        "unembed": {"kernel": np.zeros((4, 5))},
        "conv": {"kernel": np.zeros((3, 3, 1, 4))},
    }
    dims = hidden_matrices(params)
    assert dims["up"]["kernel"] == MuonDimensionNumbers(0, 1)
    assert [dims["embed"]["embedding"], dims["up"]["bias"], dims["unembed"]["kernel"],
            dims["conv"]["kernel"]] == [None, None, None, None]


def test_muon_takes_the_cnns_hidden_convolution():
    # digits_cnn: conv1 reads the image (1 channel, AdamW), conv2 (16 -> 32) is a hidden
    # convolution (Muon, (h, w, in) folded into one input axis), the head stays on AdamW
    import jax

    from optim_fn.contrib import MuonDimensionNumbers
    from optim_fn.experiments.benchmark.spaces import hidden_matrices
    from optim_fn.experiments.workloads import build_workloads

    (workload,) = build_workloads(["digits_cnn"])
    params = jax.eval_shape(workload.init_params, jax.random.key(0))  # shapes only
    leaves, _ = jax.tree_util.tree_flatten_with_path(
        hidden_matrices(params), is_leaf=lambda x: x is None or isinstance(x, MuonDimensionNumbers)
    )
    dims = {jax.tree_util.keystr(path): value for path, value in leaves}
    muon = [name for name, value in dims.items() if value is not None]
    assert len(muon) == 1 and "conv2" in muon[0] and "kernel" in muon[0]
    assert dims[muon[0]] == MuonDimensionNumbers((0, 1, 2), 3)
    assert len(dims) == 6  # conv1, conv2 and head: kernel and bias each
    # one step of the benchmark's Muon: conv2's update, as a (3*3*16, 32) matrix, is
    # orthogonalized (its singular values nearly equal); conv1's (AdamW) is not
    optimizer = OPTIMIZERS["muon"].factory(learning_rate=0.02, weight_decay=0.0)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
    grads = jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    spread = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(updates)[0]:
        if leaf.ndim == 4:
            values = np.linalg.svd(np.asarray(leaf).reshape(-1, leaf.shape[-1]), compute_uv=False)
            spread["conv2" in jax.tree_util.keystr(path)] = values.max() / values.min()
    assert spread[True] < 2.0 < spread[False]
