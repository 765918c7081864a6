"""L-BFGS and line searches: the direction against a dense BFGS recursion in float64,
step-by-step agreement with optax, the Wolfe/Armijo conditions at the steps taken, and
the minimum scipy finds on Rosenbrock, Himmelblau and a logistic regression."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import optim_fn

# ----------------------------------------------------------------------------------------
# Problems.


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def himmelblau(x):
    return (x[0] ** 2 + x[1] - 11.0) ** 2 + (x[0] + x[1] ** 2 - 7.0) ** 2


_rng = np.random.default_rng(0)
FEATURES = _rng.standard_normal((200, 5))
LABELS = (FEATURES @ _rng.standard_normal(5) + 0.5 * _rng.standard_normal(200) > 0).astype(float)


def logistic_regression(params):
    """L2-regularised logistic loss on a dict of params (weights and bias)."""
    w, b = params["w"], params["b"]
    z = jnp.asarray(FEATURES, w.dtype) @ w + b
    y = jnp.asarray(LABELS, w.dtype)
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.01 * (jnp.sum(w**2) + b**2)


def scipy_minimum(fun, x0, method):
    """scipy's minimiser in float64, with the gradient from jax."""
    with jax.enable_x64(True):
        flat0, unravel = jax.flatten_util.ravel_pytree(jax.tree.map(np.float64, x0))
        value_and_grad = jax.jit(jax.value_and_grad(lambda z: fun(unravel(z))))

        def objective(z):
            value, grad = value_and_grad(jnp.asarray(z, jnp.float64))
            return float(value), np.asarray(grad, np.float64)

        options = {"gtol": 1e-10} if method == "BFGS" else {"gtol": 1e-12, "ftol": 1e-15}
        result = scipy.optimize.minimize(objective, np.asarray(flat0), jac=True, method=method,
                                         options=options)
        # "Precision loss" ends BFGS at a float64 minimum too; what matters is the gradient.
        assert np.abs(objective(result.x)[1]).max() < 1e-6, result.message
    return result.x


def run_lbfgs(fun, x0, steps, solver=None, dtype=jnp.float32):
    """``steps`` jitted iterations under ``lax.scan``, reusing the line search's values."""
    x0 = jax.tree.map(lambda v: jnp.asarray(v, dtype), x0)
    solver = solver or optim_fn.lbfgs()
    value_and_grad = optim_fn.value_and_grad_from_state(fun)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = solver.update(grad, state, params, value=value, grad=grad,
                                       value_fn=fun)
        return (optim_fn.apply_updates(params, updates), state), value

    (params, state), values = jax.jit(
        lambda p, s: jax.lax.scan(step, (p, s), None, length=steps)
    )(x0, solver.init(x0))
    return params, state, np.asarray(values)


PROBLEMS = [
    ("rosenbrock_2d", rosenbrock, np.array([-1.2, 1.0]), 100),
    ("rosenbrock_5d", rosenbrock, np.array([-1.2, 1.0, -1.2, 1.0, -1.2]), 100),
    ("himmelblau", himmelblau, np.array([1.0, 1.0]), 60),
    ("himmelblau_other_basin", himmelblau, np.array([-1.0, -1.0]), 60),
    ("logistic_regression", logistic_regression, {"w": np.zeros(5), "b": np.zeros(())}, 60),
]


@pytest.mark.parametrize("name, fun, x0, steps", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_reaches_scipys_minimum(name, fun, x0, steps):
    ours, state, values = run_lbfgs(fun, x0, steps)
    ours_flat = np.asarray(jax.flatten_util.ravel_pytree(ours)[0], np.float64)
    for method in ("L-BFGS-B", "BFGS"):
        reference = scipy_minimum(fun, x0, method)
        error = np.abs(ours_flat - reference).max()
        assert error <= 1e-5, f"{name} vs scipy {method}: max |x - x*| = {error:.2e}"
    # The line search keeps the loss non-increasing.
    assert np.all(np.diff(values) <= 1e-6 * np.abs(values[:-1]) + 1e-12)


def test_has_aux_works_under_jit():
    def loss_with_aux(params):
        loss = logistic_regression(params)
        z = jnp.asarray(FEATURES, jnp.float32) @ params["w"] + params["b"]
        accuracy = jnp.mean((z > 0) == (jnp.asarray(LABELS) > 0.5))
        return loss, {"accuracy": accuracy, "loss_again": loss}

    solver = optim_fn.lbfgs(has_aux=True)
    params = {"w": jnp.zeros(5), "b": jnp.zeros(())}
    state = solver.init(params)
    value_and_grad = optim_fn.value_and_grad_from_state(loss_with_aux, has_aux=True)

    @jax.jit
    def step(params, state):
        (loss, aux), grad = value_and_grad(params, state=state)
        updates, state = solver.update(grad, state, params, value=loss, grad=grad,
                                       value_fn=loss_with_aux)
        return optim_fn.apply_updates(params, updates), state, loss, aux

    for _ in range(40):
        new_params, state, loss, aux = step(params, state)
        # aux belongs to the params the loss was reported for.
        expected_loss, expected_aux = loss_with_aux(params)
        np.testing.assert_allclose(aux["loss_again"], loss, rtol=1e-6)
        np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
        assert float(aux["accuracy"]) == float(expected_aux["accuracy"])
        params = new_params
    reference = scipy_minimum(logistic_regression, {"w": np.zeros(5), "b": np.zeros(())},
                              "L-BFGS-B")
    ours = np.asarray(jax.flatten_util.ravel_pytree(params)[0])
    assert np.abs(ours - reference).max() <= 1e-5
    assert 0.5 < float(aux["accuracy"]) <= 1.0


def test_has_aux_mismatch_is_a_clear_error():
    solver = optim_fn.lbfgs()
    params = jnp.ones(2)

    def loss(x):
        return jnp.sum(x**2), x

    with pytest.raises(TypeError, match="has_aux=True"):
        solver.update(params, solver.init(params), params, value=2.0, grad=params,
                      value_fn=loss)
    with pytest.raises(ValueError, match="value_fn= "):
        solver.update(params, solver.init(params), params)


# ----------------------------------------------------------------------------------------
# The L-BFGS direction.


def dense_direction(grad, pairs, gamma):
    """H g with H from the BFGS inverse update in dense float64 (N&W eq. 7.19)."""
    n = grad.size
    h = gamma * np.eye(n)
    for s, y in pairs:
        rho = 1.0 / (y @ s)
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return h @ grad


def test_scale_by_lbfgs_equals_the_dense_bfgs_recursion():
    rng = np.random.default_rng(1)
    n, memory = 7, 3
    m = rng.standard_normal((n, n))
    a = m @ m.T + n * np.eye(n)  # SPD: every pair has <s, y> > 0
    b = rng.standard_normal(n)

    def as_tree(v):
        return {"x": jnp.asarray(v[:3], jnp.float32), "y": jnp.asarray(v[3:].reshape(2, 2),
                                                                        jnp.float32)}

    opt = optim_fn.scale_by_lbfgs(memory_size=memory)
    reference = optax.scale_by_lbfgs(memory_size=memory)
    step, ref_step = jax.jit(opt.update), jax.jit(reference.update)
    w = rng.standard_normal(n)
    state, ref_state = opt.init(as_tree(w)), reference.init(as_tree(w))
    history = []
    for k in range(8):
        w32 = np.asarray(jax.flatten_util.ravel_pytree(as_tree(w))[0], np.float64)
        g = a @ w32 - b
        g32 = np.asarray(jax.flatten_util.ravel_pytree(as_tree(g))[0], np.float64)
        direction, state = step(as_tree(g32), state, as_tree(w32))
        ref_direction, ref_state = ref_step(as_tree(g32), ref_state, as_tree(w32))
        history.append((w32, g32))
        pairs = [
            (history[i + 1][0] - history[i][0], history[i + 1][1] - history[i][1])
            for i in range(max(0, k - memory), k)
        ]
        if k == 0:
            gamma = min(1.0, 1.0 / np.linalg.norm(g32))
        else:
            s, y = pairs[-1]
            gamma = (s @ y) / (y @ y)
        expected = dense_direction(g32, pairs, gamma)
        ours = np.asarray(jax.flatten_util.ravel_pytree(direction)[0], np.float64)
        theirs = np.asarray(jax.flatten_util.ravel_pytree(ref_direction)[0], np.float64)
        scale = np.abs(expected).max()
        assert np.abs(ours - expected).max() <= 1e-5 * scale, k
        assert np.abs(ours - theirs).max() <= 1e-6 * scale, k
        w = w32 - 0.3 * ours  # any step; the pairs come from the path taken


def test_pairs_with_negative_curvature_are_left_out():
    opt = optim_fn.scale_by_lbfgs(memory_size=4, scale_init_precond=False)
    state = opt.init(jnp.zeros(2))
    _, state = opt.update(jnp.array([1.0, 0.0]), state, jnp.array([0.0, 0.0]))
    # s = (1, 0), y = (-1, 0): <s, y> < 0, the pair is dropped, so H = I.
    direction, state = opt.update(jnp.array([0.0, 2.0]), state, jnp.array([1.0, 0.0]))
    np.testing.assert_array_equal(np.asarray(direction), [0.0, 2.0])
    assert float(jnp.sum(state.weights_memory)) == 0.0


def test_lbfgs_trajectory_matches_optax_in_float64():
    with jax.enable_x64(True):
        x0 = jnp.array([-1.2, 1.0, -0.5, 0.8], jnp.float64)
        paths = []
        for module in (optim_fn, optax):
            solver = module.lbfgs()
            value_and_grad = module.value_and_grad_from_state(rosenbrock)

            def step(carry, _, solver=solver, value_and_grad=value_and_grad):
                x, state = carry
                value, grad = value_and_grad(x, state=state)
                updates, state = solver.update(grad, state, x, value=value, grad=grad,
                                               value_fn=rosenbrock)
                x = optax.apply_updates(x, updates)
                return (x, state), x

            _, path = jax.jit(lambda x, s, step=step: jax.lax.scan(step, (x, s), None,
                                                                   length=60))(
                x0, solver.init(x0))
            paths.append(np.asarray(path))
    assert np.abs(paths[0] - paths[1]).max() <= 1e-10
    np.testing.assert_allclose(paths[0][-1], np.ones(4), atol=1e-10)


# ----------------------------------------------------------------------------------------
# Line searches.


def directional(fun, x, direction):
    value, grad = jax.value_and_grad(fun)(x)
    return float(value), float(jnp.vdot(grad, direction))


@pytest.mark.parametrize("start", [[-1.2, 1.0], [0.5, 2.0], [2.0, -1.0], [-0.3, 0.1]])
def test_zoom_step_satisfies_the_strong_wolfe_conditions(start):
    c1, c2 = 1e-4, 0.9
    search = optim_fn.scale_by_zoom_linesearch(max_linesearch_steps=30, approx_dec_rtol=None,
                                               initial_guess_strategy="one")
    x = jnp.asarray(start, jnp.float32)
    value, grad = jax.value_and_grad(rosenbrock)(x)
    direction = -grad  # steepest descent: badly scaled, so the search must zoom
    updates, state = search.update(direction, search.init(x), x, value=value, grad=grad,
                                   value_fn=rosenbrock)
    eta = float(state.learning_rate)
    assert eta > 0
    new_value, new_slope = directional(rosenbrock, x + eta * direction, direction)
    slope = float(jnp.vdot(grad, direction))
    assert new_value <= float(value) + c1 * eta * slope
    assert abs(new_slope) <= c2 * abs(slope)
    assert float(state.info.decrease_error) == 0 and float(state.info.curvature_error) == 0
    # The state keeps the value and gradient at the accepted point.
    expected_value, expected_grad = jax.value_and_grad(rosenbrock)(x + updates)
    np.testing.assert_allclose(state.value, expected_value, rtol=1e-5)
    np.testing.assert_allclose(state.grad, expected_grad, rtol=1e-4, atol=1e-4)
    # scipy's strong Wolfe search (same c1, c2) accepts our step too, and finds one.
    scipy_eta = scipy.optimize.line_search(
        lambda z: float(rosenbrock(jnp.asarray(z))),
        lambda z: np.asarray(jax.grad(rosenbrock)(jnp.asarray(z)), np.float64),
        np.asarray(x, np.float64), np.asarray(direction, np.float64), c1=c1, c2=c2,
    )[0]
    assert scipy_eta is not None


def test_backtracking_steps_satisfy_armijo_and_match_optax():
    def quadratic(x):
        return 0.5 * jnp.sum(jnp.arange(1.0, 5.0) * x**2)

    ours = optim_fn.chain(optim_fn.sgd(1.0),
                          optim_fn.scale_by_backtracking_linesearch(max_backtracking_steps=30))
    reference = optax.chain(optax.sgd(1.0),
                            optax.scale_by_backtracking_linesearch(max_backtracking_steps=30))
    x = ref_x = jnp.array([1.0, -2.0, 0.5, 3.0])
    state, ref_state = ours.init(x), reference.init(x)
    step, ref_step = jax.jit(ours.update, static_argnames="value_fn"), jax.jit(
        reference.update, static_argnames="value_fn")
    for _ in range(15):
        value, grad = jax.value_and_grad(quadratic)(x)
        updates, state = step(grad, state, x, value=value, grad=grad, value_fn=quadratic)
        eta = float(state[1].learning_rate)
        assert float(quadratic(x + updates)) <= float(value) - 1e-4 * eta * float(grad @ grad)
        x = optim_fn.apply_updates(x, updates)
        ref_value, ref_grad = jax.value_and_grad(quadratic)(ref_x)
        ref_updates, ref_state = ref_step(ref_grad, ref_state, ref_x, value=ref_value,
                                          grad=ref_grad, value_fn=quadratic)
        ref_x = optax.apply_updates(ref_x, ref_updates)
        assert eta == float(ref_state[1].learning_rate)
        np.testing.assert_allclose(x, ref_x, rtol=1e-6, atol=1e-7)
    assert float(quadratic(x)) < 0.01 * float(quadratic(jnp.array([1.0, -2.0, 0.5, 3.0])))


def test_line_search_passes_batch_arguments_to_the_loss():
    def loss(x, batch):
        return jnp.sum((x - batch) ** 2)

    search = optim_fn.scale_by_backtracking_linesearch(max_backtracking_steps=20)
    x, batch = jnp.zeros(3), jnp.array([1.0, 2.0, 3.0])
    value, grad = jax.value_and_grad(loss)(x, batch)
    updates, _ = search.update(-grad, search.init(x), x, value=value, grad=grad,
                               value_fn=loss, batch=batch)
    assert float(loss(x + updates, batch)) < float(value)
    with pytest.raises(TypeError, match=r"\['epoch'\] are not parameters of `value_fn`"):
        search.update(-grad, search.init(x), x, value=value, grad=grad, value_fn=loss,
                      batch=batch, epoch=3)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: optim_fn.scale_by_lbfgs(memory_size=0), r"`memory_size` must be an int >= 1"),
        (lambda: optim_fn.scale_by_zoom_linesearch(0), r"`max_linesearch_steps` must be"),
        (lambda: optim_fn.scale_by_zoom_linesearch(10, initial_guess_strategy="two"),
         r"'one' or 'keep'"),
        (lambda: optim_fn.scale_by_zoom_linesearch(10, slope_rtol=0.95),
         r"0 < slope_rtol < curv_rtol < 1"),
        (lambda: optim_fn.scale_by_backtracking_linesearch(10, decrease_factor=1.5),
         r"`decrease_factor` must be in \(0, 1\)"),
        (lambda: optim_fn.lbfgs(linesearch=None, has_aux=True), r"has_aux"),
    ],
)
def test_bad_arguments_raise(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize(
    "search",
    [
        optim_fn.scale_by_backtracking_linesearch(max_backtracking_steps=5),
        optim_fn.scale_by_zoom_linesearch(max_linesearch_steps=5),
    ],
    ids=["backtracking", "zoom"],
)
def test_a_search_that_finds_nothing_takes_no_step_and_recovers(search):
    def nowhere(x):  # finite only at the current point
        return jnp.where(jnp.all(x == 0), 0.0, jnp.inf) + jnp.sum(x)

    def slope(x):
        return jnp.sum(x)

    x = jnp.zeros(2)
    direction = -jnp.ones(2)
    state = search.init(x)
    updates, state = search.update(direction, state, x, value=0.0, grad=jnp.ones(2),
                                   value_fn=nowhere)
    np.testing.assert_array_equal(np.asarray(updates), 0.0)
    assert float(state.learning_rate) == 0.0
    # The next search starts from a positive step again, not from 0 forever.
    updates, state = search.update(direction, state, x, value=0.0, grad=jnp.ones(2),
                                   value_fn=slope)
    assert float(state.learning_rate) > 0 and float(slope(x + updates)) < 0


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda verbose: optim_fn.scale_by_backtracking_linesearch(5, verbose=verbose),
         "no step met the sufficient decrease in 6 trials"),
        (lambda verbose: optim_fn.scale_by_zoom_linesearch(5, verbose=verbose),
         "no step met the strong Wolfe conditions"),
    ],
    ids=["backtracking", "zoom"],
)
def test_verbose_reports_a_failed_search_under_jit(make, words, capfd):
    def nowhere(x):  # finite only at the current point: every trial fails
        return jnp.where(jnp.all(x == 0), 0.0, jnp.inf) + jnp.sum(x)

    x, direction, grad = jnp.zeros(2), -jnp.ones(2), jnp.ones(2)
    for verbose in (False, True):
        search = make(verbose)
        update = jax.jit(functools.partial(search.update, value_fn=nowhere))
        jax.block_until_ready(update(direction, search.init(x), x, value=0.0, grad=grad))
        printed = capfd.readouterr().out
        assert (words in printed) == verbose, printed
    # A search that succeeds prints nothing, verbose or not.
    def bowl(x):
        return jnp.sum((x - 1.0) ** 2)

    search = make(True)
    update = jax.jit(functools.partial(search.update, value_fn=bowl))
    _, state = update(2 * grad, search.init(x), x, value=bowl(x), grad=-2 * grad)
    assert 0 < float(state.learning_rate) <= 1
    assert capfd.readouterr().out == ""
