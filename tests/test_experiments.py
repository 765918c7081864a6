"""Tests of optim_fn.experiments: problems, batch modes, the runner, plots, the registry."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import pytest

import optim_fn
from optim_fn.experiments import batching as sampling
from optim_fn.experiments import (
    beale,
    digits_mlp,
    global_norm,
    himmelblau,
    linear_regression,
    logistic_regression,
    make_batching,
    plots,
    product_grid,
    quadratic,
    rastrigin,
    registry,
    rosenbrock,
    run,
    saddle,
)
from optim_fn.experiments.runner import select_run

matplotlib.use("Agg")  # before anything imports pyplot: no display in tests

FUNCTIONS = [
    rosenbrock(),
    beale(),
    himmelblau(),
    saddle(),
    quadratic(condition_number=50.0, angle=0.5),
    rastrigin(),
]
REGRESSIONS = [linear_regression(), logistic_regression()]
TWO_D = FUNCTIONS + REGRESSIONS


@pytest.fixture(autouse=True)
def full_precision_matmuls():
    """float32 matmuls in float32. On GPUs jax's default is TF32 (10-bit mantissa): the MLP's
    hand-written backprop, a vmapped sweep and a separate run then round differently
    (4.7e-4 relative on an H100), which is the precision setting, not the code."""
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def digits():
    return digits_mlp(hidden=8)


def _assert_trees_close(actual, expected, rtol, atol=0.0):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


def _random_points(problem, count, seed):
    (x0, x1), (y0, y1) = problem.bounds
    rng = np.random.default_rng(seed)
    return rng.uniform([x0, y0], [x1, y1], size=(count, 2)).astype(np.float32)


def _random_batches(problem, seed):
    rng = np.random.default_rng(seed)
    n = problem.num_examples
    indices = [rng.integers(0, n, size) for size in (1, 2, min(n, 7))]
    return [problem.data] + [sampling.take(problem.data, jnp.asarray(i)) for i in indices]


# ---------------------------------------------------------------------------------------
# Problems: hand-derived gradients, known minima.


@pytest.mark.parametrize("problem", TWO_D, ids=lambda p: p.name)
def test_gradient_matches_jax_grad(problem):
    value_and_grad = jax.jit(problem.value_and_grad)
    reference = jax.jit(jax.value_and_grad(problem.loss))
    for point in _random_points(problem, 5, seed=1):
        for batch in _random_batches(problem, seed=2):
            value, grad = value_and_grad(jnp.asarray(point), batch)
            expected_value, expected_grad = reference(jnp.asarray(point), batch)
            np.testing.assert_allclose(value, expected_value, rtol=1e-6)
            scale = float(jnp.max(jnp.abs(expected_grad)))
            np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-5 * scale)


def test_mlp_backprop_matches_jax_grad(digits):
    reference = jax.jit(jax.value_and_grad(digits.loss))
    value_and_grad = jax.jit(digits.value_and_grad)
    for seed in (0, 1):
        params = digits.init(seed)
        for batch in _random_batches(digits, seed):
            value, grad = value_and_grad(params, batch)
            expected_value, expected_grad = reference(params, batch)
            np.testing.assert_allclose(value, expected_value, rtol=1e-6)
            assert jax.tree.structure(grad) == jax.tree.structure(params)
            _assert_trees_close(grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_logistic_gradient_in_higher_dimension():
    problem = logistic_regression(dim=5, num_examples=64)
    assert not problem.is_2d
    params = jnp.asarray(np.random.default_rng(0).normal(size=5), jnp.float32)
    value, grad = problem.value_and_grad(params, problem.data)
    expected_value, expected_grad = jax.value_and_grad(problem.loss)(params, problem.data)
    np.testing.assert_allclose(value, expected_value, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("problem", FUNCTIONS, ids=lambda p: p.name)
def test_known_minimum_of_test_functions(problem):
    assert problem.minimizers
    for point in problem.minimizers:
        params = jnp.asarray(point, jnp.float32)
        value, grad = problem.value_and_grad(params, problem.data)
        assert abs(float(value) - problem.minimum) < 1e-5
        assert float(jnp.max(jnp.abs(grad))) < 1e-3
    # Nothing on a fine grid over the plotted region is below the stated minimum.
    x, y, z = plots.loss_grid(problem, resolution=301)
    assert np.nanmin(z) >= problem.minimum - 1e-6
    assert np.nanmin(z) < problem.minimum + 0.05 * (np.nanmax(z) - problem.minimum)


def test_himmelblau_has_four_minima():
    minimizers = himmelblau().minimizers
    assert len(minimizers) == 4
    x, y = np.asarray(minimizers, np.float64).T
    np.testing.assert_allclose((x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2, 0.0, atol=1e-20)


def test_saddle_point_is_a_saddle():
    problem = saddle()
    loss = jax.jit(problem.full_loss)
    origin = float(loss(jnp.zeros(2)))
    assert origin == pytest.approx(0.25)
    _, grad = problem.value_and_grad(jnp.zeros(2), problem.data)
    assert float(jnp.max(jnp.abs(grad))) == 0.0
    assert float(loss(jnp.asarray([0.1, 0.0]))) > origin > float(loss(jnp.asarray([0.0, 0.1])))


@pytest.mark.parametrize("kappa", [1.0, 10.0, 1000.0])
def test_quadratic_condition_number(kappa):
    problem = quadratic(condition_number=kappa, angle=0.3)
    hessian = jax.hessian(problem.full_loss)(jnp.asarray([0.5, -0.2]))
    eigenvalues = np.linalg.eigvalsh(np.asarray(hessian, np.float64))
    # float32 rounding of the rotation perturbs the small eigenvalue by ~kappa * 1e-8.
    np.testing.assert_allclose(eigenvalues, [1.0, kappa], rtol=1e-4)


def test_quadratic_rejects_condition_below_one():
    with pytest.raises(ValueError, match="condition_number"):
        quadratic(condition_number=0.5)


def test_linear_regression_minimum_is_least_squares():
    problem = linear_regression(num_examples=300, seed=3)
    x = np.asarray(problem.data["x"], np.float64)
    y = np.asarray(problem.data["y"], np.float64)
    # Independent closed form: slope = cov(x, y) / var(x), intercept = mean(y) - slope mean(x).
    slope = np.mean((x - x.mean()) * (y - y.mean())) / np.var(x)
    intercept = y.mean() - slope * x.mean()
    np.testing.assert_allclose(problem.minimizers[0], (slope, intercept), rtol=1e-6)
    expected = 0.5 * np.mean((slope * x + intercept - y) ** 2)
    assert problem.minimum == pytest.approx(expected, rel=1e-9)
    value = problem.full_loss(jnp.asarray(problem.minimizers[0], jnp.float32))
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_logistic_regression_minimum_is_stationary_and_lowest():
    problem = logistic_regression(l2=0.05, seed=1)
    x = np.asarray(problem.data["x"], np.float64)
    y = np.asarray(problem.data["y"], np.float64)
    best = np.asarray(problem.minimizers[0])

    def loss(w):
        z = x @ w
        return np.mean(np.logaddexp(0, z) - y * z) + 0.025 * w @ w

    gradient = x.T @ (1 / (1 + np.exp(-(x @ best))) - y) / len(y) + 0.05 * best
    assert np.max(np.abs(gradient)) < 1e-10
    assert problem.minimum == pytest.approx(loss(best), rel=1e-12)
    for step in np.random.default_rng(0).normal(size=(20, 2)) * 0.1:
        assert loss(best + step) > problem.minimum


def test_logistic_regression_rejects_no_regularisation():
    with pytest.raises(ValueError, match="l2"):
        logistic_regression(l2=0.0)


def test_digits_problem(digits):
    assert digits.num_examples == 1440 and digits.minimum is None and not digits.is_2d
    first, second = digits.init(0), digits.init(1)
    assert not np.allclose(first["layer0"]["w"], second["layer0"]["w"])
    _assert_trees_close(digits.init(0), first, rtol=0)
    metrics = digits.evaluate(first)
    assert 0.0 <= float(metrics["test_accuracy"]) <= 0.3  # untrained: near chance (0.1)
    assert float(metrics["test_loss"]) > 1.0


# ---------------------------------------------------------------------------------------
# Batch modes.


def _mean_epoch_gradient(problem, batching, seed, epoch, params):
    grad = jax.jit(problem.grad)
    batches = sampling.epoch_batches(batching, problem.data, seed, epoch)
    return batches, np.mean([np.asarray(grad(params, b)) for b in batches], axis=0)


@pytest.mark.parametrize("mode,batch_size", [("stochastic", 1), ("minibatch", 32)])
def test_epoch_of_sampled_gradients_averages_to_full_gradient(mode, batch_size):
    problem = linear_regression(num_examples=256)
    batching = make_batching(mode, problem.num_examples, batch_size)
    params = jnp.asarray([0.3, -0.7])
    full = np.asarray(problem.grad(params, problem.data))
    orders = []
    for seed, epoch in [(0, 0), (0, 1), (1, 0)]:
        batches, mean = _mean_epoch_gradient(problem, batching, seed, epoch, params)
        assert len(batches) == 256 // batch_size
        assert all(b["x"].shape == (batch_size,) for b in batches)
        visited = np.concatenate([np.asarray(b["x"]) for b in batches])
        np.testing.assert_array_equal(np.sort(visited), np.sort(np.asarray(problem.data["x"])))
        np.testing.assert_allclose(mean, full, rtol=1e-5, atol=1e-6)
        orders.append(visited)
    assert not np.array_equal(orders[0], orders[1])  # a new shuffle each epoch
    assert not np.array_equal(orders[0], orders[2])  # and each seed


def test_minibatch_leaves_out_the_remainder_of_an_epoch():
    batching = make_batching("minibatch", 100, 30)
    assert batching.steps_per_epoch == 3
    batches = sampling.epoch_batches(batching, jnp.arange(100), seed=4, epoch=0)
    seen = np.concatenate([np.asarray(b) for b in batches])
    assert len(seen) == 90 and len(set(seen.tolist())) == 90


def test_full_batch_is_the_data():
    problem = rosenbrock()
    batching = make_batching("full", problem.num_examples)
    assert batching.batch_size == problem.num_examples and not batching.sampled
    (batch,) = sampling.epoch_batches(batching, problem.data, seed=0, epoch=0)
    np.testing.assert_array_equal(batch, problem.data)


def test_sampled_gradient_is_unbiased_over_seeds():
    # Expectation over the shuffle at one step: every example equally likely.
    problem = rosenbrock()
    batching = make_batching("stochastic", problem.num_examples)
    picks = [
        int(sampling.batch_indices(batching, sampling.epoch_order(seed, 0, 2), 0)[0])
        for seed in range(400)
    ]
    assert 150 < sum(picks) < 250  # Binomial(400, 1/2): 6 standard deviations


def test_batching_errors():
    with pytest.raises(ValueError, match="valid modes: full, stochastic, minibatch"):
        make_batching("mini", 10)
    with pytest.raises(ValueError, match="larger than the problem's 10 examples"):
        make_batching("minibatch", 10, 11)
    with pytest.raises(ValueError, match="positive integer"):
        make_batching("minibatch", 10, 0)


# ---------------------------------------------------------------------------------------
# The runner against a hand-written Python loop.


def test_runner_matches_python_loop_full_batch():
    problem, optimizer, steps = rosenbrock(), optim_fn.adam(3e-2), 300
    history = run(optimizer, problem, steps)

    @jax.jit
    def step(params, state):
        loss, grads = problem.value_and_grad(params, problem.data)
        updates, state = optimizer.update(grads, state, params)
        record = (loss, global_norm(grads), global_norm(updates))
        return optim_fn.apply_updates(params, updates), state, record

    params, state = problem.init(0), optimizer.init(problem.init(0))
    path, records, rates = [params], [], []
    for _ in range(steps):
        params, state, record = step(params, state)
        path.append(params)
        records.append(record)
        rates.append(optim_fn.get_hyperparams(state)["learning_rate"])
    loss, grad_norm, update_norm = (np.asarray(r) for r in zip(*records, strict=True))

    # The scan and the loop are different XLA programs, so roundings may differ in the
    # last bit; the gradient of Rosenbrock cancels large terms, hence atol on its scale.
    np.testing.assert_allclose(history.loss, loss, rtol=1e-5)
    np.testing.assert_allclose(history.train_loss, loss, rtol=1e-5)
    np.testing.assert_allclose(history.grad_norm, grad_norm, rtol=1e-5,
                               atol=1e-5 * grad_norm.max())
    np.testing.assert_allclose(history.update_norm, update_norm, rtol=1e-5)
    np.testing.assert_allclose(history.params, np.stack(path), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(history.hyperparams["learning_rate"], np.asarray(rates))
    np.testing.assert_array_equal(history.hyperparams["learning_rate"], np.float32(3e-2))
    assert history.hyperparams.keys() == optim_fn.get_hyperparams(state).keys()
    np.testing.assert_allclose(history.final_loss, problem.full_loss(params), rtol=1e-5)


def test_runner_matches_python_loop_minibatch(digits):
    optimizer, steps, seed = optim_fn.sgd(0.1, momentum=0.9), 100, 3
    history = run(optimizer, digits, steps, batch="minibatch", batch_size=32, seeds=seed,
                  eval_every=10)
    batching = make_batching("minibatch", digits.num_examples, 32)

    @jax.jit
    def step(params, state, batch):
        loss, grads = digits.value_and_grad(params, batch)
        updates, state = optimizer.update(grads, state, params)
        return optim_fn.apply_updates(params, updates), state, loss

    full_loss = jax.jit(digits.full_loss)
    params = digits.init(seed)
    state = optimizer.init(params)
    losses, train_losses = [], []
    batches = [b for epoch in range(3) for b in sampling.epoch_batches(
        batching, digits.data, seed, epoch)]
    for t in range(steps):
        if t % 10 == 0:
            train_losses.append(full_loss(params))
        params, state, loss = step(params, state, batches[t])
        losses.append(loss)

    np.testing.assert_allclose(history.loss, np.asarray(losses), rtol=1e-5)
    np.testing.assert_array_equal(history.eval_steps, np.arange(0, steps, 10))
    np.testing.assert_allclose(history.train_loss, np.asarray(train_losses), rtol=1e-5)
    _assert_trees_close(history.final_params, params, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(history.metrics["test_accuracy"],
                               digits.evaluate(params)["test_accuracy"], atol=1 / 357 + 1e-6)


def test_history_is_consistent_with_itself():
    problem = linear_regression()
    history = run(optim_fn.sgd(0.05, momentum=0.5), problem, 50, batch="minibatch",
                  batch_size=16, eval_every=5)
    path = np.asarray(history.params, np.float64)
    assert path.shape == (51, 2)
    np.testing.assert_array_equal(path[0], problem.options["start"])
    np.testing.assert_allclose(path[-1], history.final_params, rtol=1e-6)
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    np.testing.assert_allclose(history.update_norm, steps, rtol=1e-4, atol=1e-7)
    full = jax.vmap(problem.full_loss)(jnp.asarray(path[history.eval_steps], jnp.float32))
    np.testing.assert_allclose(history.train_loss, full, rtol=1e-5)
    np.testing.assert_allclose(history.final_loss, problem.full_loss(path[-1]), rtol=1e-5)
    assert set(history.hyperparams) == {"momentum", "learning_rate"}
    assert history.seconds["compile"] >= 0 and history.seconds["run"] > 0


def test_schedule_values_are_recorded_from_the_state():
    def schedule(count):
        return 0.1 * 0.5 ** (count // 10)

    history = run(optim_fn.sgd(schedule), quadratic(), 35)
    expected = 0.1 * 0.5 ** (np.arange(35) // 10)
    np.testing.assert_allclose(history.hyperparams["learning_rate"], expected, rtol=1e-6)


def test_chunking_and_padding_do_not_change_the_numbers():
    problem, optimizer = linear_regression(), optim_fn.adam(0.05)
    options = {"batch": "stochastic", "seeds": [0, 1], "eval_every": 10}
    whole = run(optimizer, problem, 97, chunks=1, **options)
    chunked = run(optimizer, problem, 97, chunks=20, **options)  # last chunk padded
    np.testing.assert_allclose(chunked.loss, whole.loss, rtol=1e-6)
    np.testing.assert_allclose(chunked.params, whole.params, rtol=1e-6)
    np.testing.assert_allclose(chunked.train_loss, whole.train_loss, rtol=1e-6)
    np.testing.assert_allclose(chunked.final_loss, whole.final_loss, rtol=1e-6)
    assert whole.train_loss.shape == (2, 10)


# ---------------------------------------------------------------------------------------
# Sweeps: vmap over seeds and hyperparameter grids.


def test_sweep_equals_separate_runs():
    problem = linear_regression()
    rates, seeds = [1e-3, 1e-2, 1e-1], [0, 1]
    sweep = run(optim_fn.adam(0.5), problem, 60, batch="stochastic", seeds=seeds,
                hyperparams={"learning_rate": rates})
    assert sweep.loss.shape == (3, 2, 60) and sweep.final_loss.shape == (3, 2)
    for i, rate in enumerate(rates):
        np.testing.assert_allclose(sweep.hyperparams["learning_rate"][i], rate, rtol=1e-6)
        # A separate program, with the rate given to the constructor.
        alone = run(optim_fn.adam(rate), problem, 60, batch="stochastic", seeds=seeds)
        np.testing.assert_allclose(sweep.loss[i], alone.loss, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(sweep.params[i], alone.params, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(sweep.final_loss[i], alone.final_loss, rtol=1e-5)


def test_mlp_sweep_equals_separate_runs(digits):
    optimizer = optim_fn.adam(1e-3)
    grid = product_grid(learning_rate=[1e-3, 1e-2], b1=[0.8, 0.9])
    sweep = run(optimizer, digits, 30, batch="minibatch", seeds=[5, 6], hyperparams=grid)
    assert sweep.final_loss.shape == (4, 2)
    for i in range(4):
        for j, seed in enumerate([5, 6]):
            point = {name: values[i] for name, values in grid.items()}
            alone = run(optimizer, digits, 30, batch="minibatch", seeds=seed, hyperparams=point)
            np.testing.assert_allclose(sweep.loss[i, j], alone.loss, rtol=1e-5)
            _assert_trees_close(select_run(select_run(sweep, i), j).final_params,
                                alone.final_params, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(sweep.hyperparams["b1"][i, j], point["b1"], rtol=1e-6)


def test_sweep_of_64_learning_rates_is_one_compile():
    base = rosenbrock()
    traces = []

    def counted(params, batch):
        traces.append(1)
        return base.value_and_grad(params, batch)

    problem = dataclasses.replace(base, value_and_grad=counted)
    optimizer = optim_fn.adam(1e-2)
    run(optimizer, problem, 100)
    single = len(traces)
    assert single > 0
    traces.clear()
    sweep = run(optimizer, problem, 100, hyperparams={"learning_rate": np.logspace(-4, 0, 64)})
    assert len(traces) == single  # one trace, as for a single run: one compiled program
    traces.clear()
    again = run(optimizer, problem, 100, hyperparams={"learning_rate": np.logspace(-3, 1, 64)})
    assert traces == [] and again.seconds["compile"] == 0.0  # new values, same program
    assert sweep.final_loss.shape == (64,)
    assert np.isfinite(sweep.final_loss[:20]).all()


def test_runner_drives_optax_transforms():
    problem = rosenbrock()
    ours = run(optim_fn.adam(1e-2), problem, 200)
    theirs = run(optax.adam(1e-2), problem, 200)
    np.testing.assert_allclose(theirs.loss, ours.loss, rtol=1e-5)
    assert theirs.hyperparams == {}
    injected = run(optax.inject_hyperparams(optax.adam)(learning_rate=1e-2), problem, 200,
                   hyperparams={"learning_rate": [1e-2, 1e-3]})
    np.testing.assert_allclose(injected.loss[0], ours.loss, rtol=1e-5)
    np.testing.assert_allclose(injected.hyperparams["learning_rate"][1], 1e-3, rtol=1e-6)


def test_run_errors_name_the_argument():
    problem, optimizer = quadratic(), optim_fn.adam(1e-2)
    with pytest.raises(ValueError, match="`steps` must be a positive integer"):
        run(optimizer, problem, 0)
    with pytest.raises(ValueError, match="valid modes"):
        run(optimizer, problem, 5, batch="online")
    with pytest.raises(ValueError, match=r"no hyperparameter named 'lr'.*'learning_rate'"):
        run(optimizer, problem, 5, hyperparams={"lr": [1e-3]})
    with pytest.raises(ValueError, match="one length"):
        run(optimizer, problem, 5, hyperparams={"learning_rate": [1e-3, 1e-2], "b1": [0.9]})
    with pytest.raises(ValueError, match="`seeds`"):
        run(optimizer, problem, 5, seeds=[])
    with pytest.raises(ValueError, match="`eval_every`"):
        run(optimizer, problem, 5, eval_every=0)


def test_product_grid_is_row_major():
    grid = product_grid(learning_rate=[1, 2], b1=[0.1, 0.2, 0.3])
    np.testing.assert_array_equal(grid["learning_rate"], [1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(grid["b1"], [0.1, 0.2, 0.3] * 2)


# ---------------------------------------------------------------------------------------
# Plots and the registry.


@pytest.fixture(scope="module")
def two_runs():
    problem = quadratic()
    return problem, {
        "sgd": run(optim_fn.sgd(0.05), problem, 40, seeds=[0, 1]),
        "adam": run(optim_fn.adam(0.1), problem, 40, seeds=[0, 1]),
    }


def _axes():
    from matplotlib.figure import Figure

    return Figure(figsize=plots.FIGSIZE).add_subplot()


def test_plots_draw_one_line_per_run(two_runs):
    problem, histories = two_runs
    ax = plots.plot_paths(problem, histories, _axes())
    labelled = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert labelled[:2] == ["sgd", "adam"]
    sgd_path = ax.get_lines()[0].get_xydata()
    np.testing.assert_allclose(sgd_path, np.asarray(histories["sgd"].params[0]), rtol=1e-6)
    ax = plots.plot_losses(histories, problem, _axes())
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 3  # 2 curves + tolerance
    ax = plots.plot_series(histories, "learning_rate", _axes())
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), 0.1, rtol=1e-6)
    ax = plots.plot_series(histories, "momentum", _axes())  # neither has one: no line
    assert ax.get_lines() == []
    ax = plots.plot_series(histories, "step_size", _axes())
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), 0.05, rtol=1e-5)


def test_sensitivity_marks_diverged_runs():
    ax = plots.plot_sensitivity(
        [1e-3, 1e-2, 1e-1],
        {"a": [1.0, 0.1, np.nan], "b": [[2.0, 2.0], [np.inf, 1.0], [0.5, 0.5]]},
        _axes(), minimum=0.0,
    )
    assert sorted((t.get_position(), t.get_text()) for t in ax.texts) == [
        ((1, 1), "x"), ((2, 0), "x")]
    image = ax.images[0].get_array()
    assert image.shape == (2, 3)
    assert image[0, 1] == pytest.approx(-1.0) and image[1, 2] == pytest.approx(math.log10(0.5))


def test_paths_need_a_2d_problem(digits):
    with pytest.raises(ValueError, match="not a 2-d problem"):
        plots.loss_grid(digits)


def test_registry_parses_choices():
    choice = registry.make_optimizer("adam:learning_rate=3e-3, b1=0.95,nesterov=true")
    assert choice.keywords == {"learning_rate": 3e-3, "b1": 0.95, "nesterov": True}
    optimizer, keywords = choice.build("rosenbrock")
    assert keywords["learning_rate"] == 3e-3
    assert isinstance(optimizer, optim_fn.GradientTransformationExtraArgs)
    _, defaults = registry.make_optimizer("momentum").build("digits")
    assert defaults == {"learning_rate": 3e-2, "momentum": 0.9}
    assert registry.make_problem("quadratic:condition_number=100").options[
        "condition_number"] == 100
    for text, message in [
        ("adamm", "valid optimizers: sgd, momentum, nesterov, adagrad, rmsprop, adadelta"),
        ("adam:lr=1", "valid options: learning_rate, b1"),
        ("adam:learning_rate", "must be written key=value"),
        ("adam:learning_rate=fast", "is not a value"),
    ]:
        with pytest.raises(registry.ChoiceError, match=message):
            registry.make_optimizer(text)
    with pytest.raises(registry.ChoiceError, match="valid problems: rosenbrock, beale"):
        registry.make_problem("banana")
    with pytest.raises(registry.ChoiceError, match="must be >= 1"):
        registry.make_problem("quadratic:condition_number=0.5")
    with pytest.raises(registry.ChoiceError, match="`momentum` must be in"):
        registry.make_optimizer("momentum:momentum=2").build("rosenbrock")



# ---------------------------------------------------------------------------------------
# Every preset of the registry, on every problem.


@pytest.fixture(scope="module")
def every_problem():
    return {name: registry.make_problem(name) for name in registry.PROBLEMS}


def _ten_steps_everywhere(choice, problems):
    """10 full-batch steps of ``choice`` on every problem, at its rate and a tenth of it
    (set in the state as the command line's sweep does), in ONE compiled program: the
    runner would compile one per problem, three times slower for 31 presets."""
    built = {name: choice.build(name) for name in problems}

    def everywhere(rates, datas):
        results = {}
        for name, problem in problems.items():
            optimizer, data = built[name][0], datas[name]

            def one_run(rate, problem=problem, optimizer=optimizer, data=data):
                params = problem.init(0)
                state = optim_fn.set_hyperparams(optimizer.init(params), learning_rate=rate)

                def step(carry, _):
                    params, state = carry
                    loss, grads = problem.value_and_grad(params, data)
                    updates, state = optimizer.update(grads, state, params, value=loss)
                    return (optim_fn.apply_updates(params, updates), state), loss

                (params, state), losses = jax.lax.scan(step, (params, state), None, 10)
                return losses, problem.loss(params, data), optim_fn.get_hyperparams(state)

            results[name] = jax.vmap(one_run)(rates[name])
        return results

    rates = {
        name: jnp.asarray([kw["learning_rate"], kw["learning_rate"] / 10], jnp.float32)
        for name, (_, kw) in built.items()
    }
    datas = {name: problem.data for name, problem in problems.items()}  # not constants
    return rates, jax.jit(everywhere)(rates, datas)


@pytest.mark.parametrize("name", list(registry.OPTIMIZERS))
def test_every_preset_runs_on_every_problem(name, every_problem):
    """Finite losses, and the swept rate reaches every block's learning_rate."""
    rates, results = _ten_steps_everywhere(registry.make_optimizer(name), every_problem)
    assert set(results) == set(registry.PROBLEMS)
    for problem_name, (losses, final_loss, hyperparams) in results.items():
        where = f"{name} on {problem_name}"
        assert losses.shape == (2, 10), where
        assert np.all(np.isfinite(np.asarray(losses))), where
        assert np.all(np.isfinite(np.asarray(final_loss))), where
        recorded = [
            np.asarray(values) for key, values in hyperparams.items()
            if key.rsplit(".", 1)[-1] == "learning_rate"
        ]
        assert recorded, f"{where}: no learning_rate in the state"
        for values in recorded:
            np.testing.assert_allclose(values, rates[problem_name], rtol=1e-6, err_msg=where)
        # The learning-rate panel finds it too (it missed Muon's qualified names).
        shown = plots.find_hyperparam(hyperparams, "learning_rate")
        assert shown is not None, f"{where}: the learning-rate panel finds no learning rate"
        if "effective_learning_rate" in hyperparams:
            # Prodigy, D-Adaptation, DoG: the panel shows the step size they derive.
            assert shown == "effective_learning_rate", where
            assert np.all(np.asarray(hyperparams[shown]) > 0), where
            continue
        np.testing.assert_allclose(hyperparams[shown], rates[problem_name], rtol=1e-6,
                                   err_msg=where)


@pytest.mark.parametrize("name", ["muon", "rprop", "soap"])
def test_presets_sweep_through_the_runner(name, every_problem):
    """The runner takes the bare name ``learning_rate`` where blocks share it (muon's two
    branches) and reaches rprop's initial step; SOAP's two-run vmap returns (three hang
    on the CPU, which is why it is in no group)."""
    choice = registry.make_optimizer(name)
    for problem_name in ("rosenbrock", "digits"):
        optimizer, keywords = choice.build(problem_name)
        rates = np.array([keywords["learning_rate"], keywords["learning_rate"] / 10])
        history = run(optimizer, every_problem[problem_name], 5,
                      hyperparams={"learning_rate": rates}, chunks=1, progress=False)
        assert np.all(np.isfinite(np.asarray(history.final_loss)))
        assert history.loss.shape == (2, 5)
        assert not np.allclose(history.loss[0, -1], history.loss[1, -1])  # the rates differ
        # The learning-rate panel draws this run (Muon was missing from it).
        ax = plots.plot_series({name: history}, "learning_rate", _axes())
        assert [line.get_label() for line in ax.get_lines()] == [name]
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), np.median(rates), rtol=1e-6)


def test_rprop_preset_is_rprop():
    """The preset's rescaled form (initial step 1, bounds / rate, times the rate) gives
    optim_fn.rprop's numbers, bounds reached included."""
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
    for rate, bounds in [(0.03, {}), (0.5, {"min_step_size": 0.2, "max_step_size": 0.6})]:
        preset, reference = registry.rprop(rate, **bounds), optim_fn.rprop(rate, **bounds)
        state_a, state_b = preset.init(params), reference.init(params)
        for _ in range(30):
            # Few distinct signs, so steps both grow and shrink and hit the bounds.
            grads = {"w": jnp.asarray(rng.choice([-1.0, 1.0], size=(3, 4)) * rng.random((3, 4)),
                                      jnp.float32)}
            update_a, state_a = preset.update(grads, state_a, params)
            update_b, state_b = reference.update(grads, state_b, params)
            np.testing.assert_allclose(update_a["w"], update_b["w"], rtol=1e-6)
    assert optim_fn.get_hyperparams(preset.init(params))["learning_rate"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="`learning_rate` must be > 0"):
        registry.rprop(0.0)


def test_registry_groups_expand_as_documented():
    names = lambda texts: [c.name for c in registry.make_optimizers(texts)]  # noqa: E731
    classic = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw"]
    assert list(registry.DEFAULT_OPTIMIZERS) == classic == names(["classic"])
    modern = names(["modern"])
    assert modern == list(registry.MODERN_OPTIMIZERS) and len(modern) == 22
    for required in ("lion", "lamb", "adabelief", "nadam", "radam", "amsgrad", "yogi",
                     "adamax", "adan", "novograd", "signum", "rprop", "adafactor", "muon",
                     "schedule_free_adamw", "prodigy", "adopt", "ademamix", "madgrad", "dog",
                     "cocob", "galore"):
        assert required in modern
    assert not set(modern) & set(classic)
    matrix = ["adamw", "muon", "normuon", "adamuon", "kron", "dion", "scion"]
    assert names(["matrix"]) == list(registry.MATRIX_OPTIMIZERS) == matrix
    assert names(["all"]) == classic + modern + matrix[2:]
    # SOAP and Shampoo hang in a vmap of a few runs on digits (the CPU): by name only.
    assert set(registry.OPTIMIZERS) - set(names(["all"])) == {"soap", "shampoo"}
    assert names(["shampoo:learning_rate=1e-3"]) == ["shampoo"]
    assert names(["adam", " Modern "])[:2] == ["adam", "lion"]
    assert names(["soap:learning_rate=1e-2"]) == ["soap"]
    for name in ("prodigy", "dog", "cocob"):  # parameter-free: their own rate, 1
        assert registry.OPTIMIZERS[name].learning_rates == {"*": 1}
    for preset in registry.OPTIMIZERS.values():
        assert preset.summary and "\n" not in preset.summary and "*" in preset.learning_rates
    with pytest.raises(registry.ChoiceError, match="'modern' is a group .* take no options"):
        registry.make_optimizers(["modern:learning_rate=1e-3"])
    with pytest.raises(
        registry.ChoiceError,
        match=r"unknown optimizer 'adamx'; valid optimizers: sgd, .*, lion, .*, galore, "
        r"normuon, .*, scion; groups: classic, modern, matrix, all$",
    ):
        registry.make_optimizers(["adam", "adamx"])
