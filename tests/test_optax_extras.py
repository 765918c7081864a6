"""optax's small transforms, target-network helpers, projections and tree utilities,
checked step by step against optax 0.2.8 (float64, 25 steps of params-dependent
gradients; each side follows its own trajectory) and on their edge cases.

The transforms: scale_by_schedule, zero_nans, centralize, normalize_by_update_norm,
apply_every, named_chain, keep_params_nonnegative; the helpers incremental_update and
periodic_update; optim_fn.projections; optim_fn.tree's optax.tree names.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.projections
import optax.tree
import pytest

import optim_fn
import optim_fn.projections
import optim_fn.tree

STEPS = 25
TOLERANCE = 1e-12


@contextlib.contextmanager
def float64():
    with jax.enable_x64(True):
        yield


def _params(dtype=jnp.float64):
    key = jax.random.PRNGKey(0)
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w": jax.random.normal(k1, (3, 4), dtype),
        "b": jax.random.normal(k2, (4,), dtype),
        "k": jax.random.normal(k3, (2, 3, 2), dtype),
    }


def _loss(params):
    return sum(jnp.sum(jnp.sin(3.0 * p) * p**2 + 0.1 * p**4) for p in jax.tree.leaves(params))


_grad = jax.grad(_loss)


def _close(ours, theirs, what):
    ours_leaves, theirs_leaves = jax.tree.leaves(ours), jax.tree.leaves(theirs)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs), what
    for a, b in zip(ours_leaves, theirs_leaves, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=TOLERANCE,
                                   atol=TOLERANCE, err_msg=what)


def run_parity(ours, theirs, *, grads=None, steps=STEPS, lr=0.05, state_check=None):
    """Each step: gradient at each side's own params, updates compared, params moved."""
    grads = grads or (lambda params, step: _grad(params))
    params_o = params_t = _params()
    state_o, state_t = ours.init(params_o), theirs.init(params_t)
    update_o = jax.jit(ours.update)
    update_t = jax.jit(theirs.update)
    for step in range(steps):
        u_o, state_o = update_o(grads(params_o, step), state_o, params_o)
        u_t, state_t = update_t(grads(params_t, step), state_t, params_t)
        _close(u_o, u_t, f"updates at step {step}")
        if state_check is not None:
            state_check(state_o, state_t, step)
        params_o = jax.tree.map(lambda p, u: p + lr * u, params_o, u_o)
        params_t = jax.tree.map(lambda p, u: p + lr * u, params_t, u_t)
    _close(params_o, params_t, "final params")
    return params_o


def test_scale_by_schedule_matches_optax():
    with float64():
        schedule = optim_fn.exponential_decay(-0.3, transition_steps=3, decay_rate=0.9)
        run_parity(
            optim_fn.scale_by_schedule(schedule),
            optax.scale_by_schedule(schedule),
            state_check=lambda so, st, step: _close(so.count, st.count, "count"),
            lr=1.0,
        )


def test_zero_nans_matches_optax():
    def grads(params, step):
        g = _grad(params)
        if step % 3 == 1:  # NaNs in some leaves at some steps; also an inf, which stays
            g["w"] = g["w"].at[0, step % 4].set(jnp.nan)
            g["k"] = g["k"].at[1, 1, 0].set(jnp.inf if step % 2 else jnp.nan)
        return g

    def state_check(so, st, step):
        _close(so.found_nan, st.found_nan, f"found_nan at step {step}")

    with float64():
        run_parity(
            optim_fn.chain(optim_fn.zero_nans(), optim_fn.clip(1.0)),
            optax.chain(optax.zero_nans(), optax.clip(1.0)),
            grads=grads,
            state_check=lambda so, st, step: state_check(so[0], st[0], step),
        )


def test_centralize_matches_optax():
    with float64():
        run_parity(
            optim_fn.chain(optim_fn.centralize(), optim_fn.scale(-1.0)),
            optax.chain(optax.centralize(), optax.scale(-1.0)),
        )


def test_centralize_leaves_vectors_and_zero_means_matrices():
    g = {"m": jnp.arange(6.0).reshape(2, 3), "v": jnp.arange(3.0)}
    u, _ = optim_fn.centralize().update(g, optim_fn.centralize().init(g))
    np.testing.assert_allclose(u["m"].mean(axis=1), 0.0, atol=1e-7)
    np.testing.assert_array_equal(u["v"], g["v"])


def test_normalize_by_update_norm_matches_optax():
    with float64():
        run_parity(
            optim_fn.normalize_by_update_norm(scale_factor=-0.5),
            optax.normalize_by_update_norm(scale_factor=-0.5),
        )


def test_normalize_by_update_norm_of_zero_is_zero():
    g = {"a": jnp.zeros(3)}
    tx = optim_fn.normalize_by_update_norm()
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(u["a"], 0.0)


@pytest.mark.parametrize("k", [1, 3])
def test_apply_every_matches_optax(k):
    def state_check(so, st, step):
        _close(so[1].count, st[1].count, "count")
        _close(so[1].grad_acc, st[1].grad_acc, f"grad_acc at step {step}")

    with float64():
        run_parity(
            optim_fn.chain(optim_fn.sgd(0.02, momentum=0.5), optim_fn.apply_every(k)),
            optax.chain(optax.sgd(0.02, momentum=0.5), optax.apply_every(k)),
            state_check=state_check,
            lr=1.0,
        )


def test_apply_every_refuses_a_non_positive_period():
    with pytest.raises(ValueError, match="`k`"):
        optim_fn.apply_every(0)


def test_named_chain_matches_optax():
    def state_check(so, st, step):
        assert set(so) == set(st) == {"clip", "adam"}
        _close(so["adam"][0].mu, st["adam"][0].mu, f"mu at step {step}")
        _close(so["adam"][0].nu, st["adam"][0].nu, f"nu at step {step}")

    with float64():
        run_parity(
            optim_fn.named_chain(
                ("clip", optim_fn.clip_by_global_norm(1.0)), ("adam", optim_fn.adam(0.1))
            ),
            optax.named_chain(("clip", optax.clip_by_global_norm(1.0)), ("adam", optax.adam(0.1))),
            state_check=state_check,
            lr=1.0,
        )


def test_named_chain_refuses_repeated_names_and_bare_transforms():
    with pytest.raises(ValueError, match="distinct"):
        optim_fn.named_chain(("a", optim_fn.identity()), ("a", optim_fn.identity()))
    with pytest.raises(TypeError, match="pair"):
        optim_fn.named_chain(optim_fn.identity())


def test_keep_params_nonnegative_matches_optax():
    def grads(params, step):
        return jax.tree.map(lambda g: 3.0 * g + 0.5 * np.sin(step), _grad(params))

    with float64():
        final = run_parity(
            optim_fn.chain(optim_fn.sgd(0.5), optim_fn.keep_params_nonnegative()),
            optax.chain(optax.sgd(0.5), optax.keep_params_nonnegative()),
            grads=grads,
            lr=1.0,
        )
        assert all(bool(jnp.all(p >= 0)) for p in jax.tree.leaves(final))


def test_keep_params_nonnegative_needs_params():
    tx = optim_fn.keep_params_nonnegative()
    with pytest.raises(ValueError, match="params"):
        tx.update({"a": jnp.ones(2)}, tx.init({"a": jnp.ones(2)}))


def test_target_network_helpers_match_optax():
    """An online network trained with adam; two targets: Polyak-averaged at rate 0.1
    (incremental_update) and copied every 4 steps (periodic_update)."""
    with float64():
        opt = optim_fn.adam(0.05)
        online = _params()
        state = opt.init(online)
        ours = {"polyak": online, "periodic": online}
        theirs = dict(ours)
        for step in range(STEPS):
            updates, state = opt.update(_grad(online), state, online)
            online = optim_fn.apply_updates(online, updates)
            ours = {
                "polyak": optim_fn.incremental_update(online, ours["polyak"], 0.1),
                "periodic": optim_fn.periodic_update(online, ours["periodic"], step, 4),
            }
            theirs = {
                "polyak": optax.incremental_update(online, theirs["polyak"], 0.1),
                "periodic": optax.periodic_update(online, theirs["periodic"], step, 4),
            }
            _close(ours, theirs, f"targets at step {step}")
        periodic = jax.jit(optim_fn.periodic_update)(online, ours["periodic"], jnp.int32(8), 4)
        _close(periodic, online, "periodic_update under jit")


def _tree(seed, dtype=jnp.float64, positive=False):
    params = _params(dtype)
    params = jax.tree.map(lambda p: p * (1.0 + seed) + 0.3 * seed, params)
    return jax.tree.map(jnp.abs, params) if positive else params


PROJECTIONS = {
    "projection_non_negative": lambda f, t: f(t),
    "projection_box": lambda f, t: f(t, optim_fn.tree.tree_full_like(t, -0.5), _tree(4)),
    # optax 0.2.8's hypercube fails on a tree of several leaves with a scalar scale
    # (tree-maps over the scalar): compared on one leaf, and ours on trees below.
    "projection_hypercube": lambda f, t: f(t["w"], 0.8),
    "projection_linf_ball": lambda f, t: f(t, 0.6),
    "projection_l2_ball": lambda f, t: f(t, 1.5),
    "projection_l2_ball_inside": lambda f, t: f(t, 1e3),
    "projection_l2_sphere": lambda f, t: f(t, 2.0),
    "projection_hyperplane": lambda f, t: f(t, _tree(5), 0.7),
    "projection_halfspace": lambda f, t: f(t, _tree(5), 0.7),
    "projection_halfspace_inside": lambda f, t: f(t, _tree(5), 1e4),
    "projection_vector": lambda f, t: f(t, _tree(5)),
    "projection_simplex": lambda f, t: f(t, 1.0),
    "projection_simplex_scaled": lambda f, t: f(t, 3.5),
    "projection_l1_sphere": lambda f, t: f(t, 2.0),
    "projection_l1_ball": lambda f, t: f(t, 2.0),
    "projection_l1_ball_inside": lambda f, t: f(t, 1e3),
}


@pytest.mark.parametrize("case", sorted(PROJECTIONS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_matches_optax(case, seed):
    name = case.replace("_inside", "").replace("_scaled", "")
    with float64():
        tree = _tree(seed)
        ours = PROJECTIONS[case](getattr(optim_fn.projections, name), tree)
        theirs = PROJECTIONS[case](getattr(optax.projections, name), tree)
        _close(ours, theirs, case)


def test_box_and_hypercube_take_scalar_or_tree_bounds():
    with float64():
        tree = _tree(1)
        expected = jax.tree.map(lambda x: jnp.clip(x, 0.0, 0.8), tree)
        _close(optim_fn.projections.projection_hypercube(tree, 0.8), expected, "scalar")
        scale = optim_fn.tree.tree_full_like(tree, 0.8)
        _close(optim_fn.projections.projection_hypercube(tree, scale), expected, "tree")
        _close(optim_fn.projections.projection_box(tree, 0.0, 0.8), expected, "box")


def test_tree_where_takes_a_tree_of_conditions():
    x, y = _tree(0), _tree(3)
    chosen = optim_fn.tree.where(jax.tree.map(lambda a: a > 0, x), x, y)
    _close(chosen, jax.tree.map(lambda a, b: jnp.where(a > 0, a, b), x, y), "where")


def test_projections_land_in_their_sets():
    with float64():
        tree = _tree(1)
        simplex = optim_fn.projections.projection_simplex(tree, 2.0)
        leaves = jnp.concatenate([x.ravel() for x in jax.tree.leaves(simplex)])
        assert bool(jnp.all(leaves >= 0))
        np.testing.assert_allclose(jnp.sum(leaves), 2.0, rtol=1e-12)
        ball = optim_fn.projections.projection_l1_ball(tree, 2.0)
        np.testing.assert_allclose(optim_fn.tree.norm(ball, ord=1), 2.0, rtol=1e-12)
        l2 = optim_fn.projections.projection_l2_ball(tree, 0.5)
        np.testing.assert_allclose(optim_fn.tree.norm(l2), 0.5, rtol=1e-12)


TREE_FUNCTIONS = {
    "add": lambda f, x, y: f(x, y, x),
    "sub": lambda f, x, y: f(x, y),
    "mul": lambda f, x, y: f(x, y),
    "div": lambda f, x, y: f(x, y),
    "scale": lambda f, x, y: f(0.3, x),
    "add_scale": lambda f, x, y: f(x, 0.3, y),
    "zeros_like": lambda f, x, y: f(x),
    "ones_like": lambda f, x, y: f(x, dtype=jnp.float32),
    "cast": lambda f, x, y: f(x, jnp.float32),
    "conj": lambda f, x, y: f(x),
    "real": lambda f, x, y: f(x),
    "where": lambda f, x, y: f(jnp.sum(x["w"]) > 0, x, y),
    "clip": lambda f, x, y: f(x, -0.2, 0.5),
    "sum": lambda f, x, y: f(x),
    "max": lambda f, x, y: f(x),
    "min": lambda f, x, y: f(x),
    "vdot": lambda f, x, y: f(x, y),
    "norm": lambda f, x, y: f(x),
    "norm_squared": lambda f, x, y: f(x, squared=True),
    "norm_l1": lambda f, x, y: f(x, ord=1),
    "norm_inf": lambda f, x, y: f(x, ord=jnp.inf),
    "size": lambda f, x, y: f(x),
}


@pytest.mark.parametrize("case", sorted(TREE_FUNCTIONS))
def test_tree_function_matches_optax(case):
    name = case.split("_")[0] if case.startswith("norm") else case
    with float64():
        x, y = _tree(0), _tree(3, positive=True)
        ours = TREE_FUNCTIONS[case](getattr(optim_fn.tree, name), x, y)
        theirs = TREE_FUNCTIONS[case](getattr(optax.tree, name), x, y)
        _close(ours, theirs, case)
        assert jax.tree.map(jnp.dtype if case != "size" else type, ours) == jax.tree.map(
            jnp.dtype if case != "size" else type, theirs
        ) or case in {"sum", "vdot", "norm", "norm_squared", "norm_l1", "norm_inf"}
