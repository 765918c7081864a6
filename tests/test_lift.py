"""The one lifter, ``optim_fn.core.lift.rule_transform``: elementwise, whole-leaf (batched
by shape) and whole-tree rules, with one behaviour for state, hyperparameters and checks."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.contrib
from optim_fn.core.lift import rule_transform


class NormState(NamedTuple):
    count: jax.Array
    scale: Any
    hyperparams: optim_fn.Hyperparams


def _norm_rule(grad, scale, *, decay, one_minus_decay):
    """Whole leaf: divide by a running average of the leaf's norm (one scalar per leaf)."""
    scale = decay * scale + one_minus_decay * jnp.linalg.norm(grad)
    return grad / scale, scale


def _norm_transform(batch: bool):
    return rule_transform(
        _norm_rule,
        NormState,
        slots=("scale",),
        init_slots=lambda param: (jnp.ones([], param.dtype),),
        hyperparams={"decay": 0.5},
        decays=("decay",),
        name="norm_transform",
        batch_by_shape=batch,
    )


def _tree(count: int, rng: np.random.Generator, dtype=np.float64) -> dict:
    tree = {f"m{i:02d}": rng.normal(size=(6, 4)).astype(dtype) for i in range(count)}
    tree["tall"] = rng.normal(size=(9, 3)).astype(dtype)
    tree["vector"] = rng.normal(size=(5,)).astype(dtype)
    return tree


def _run(transform, params, steps=4):
    state = transform.init(params)
    step = jax.jit(transform.update)
    history = []
    for k in range(steps):
        grads = jax.tree.map(lambda p, k=k: jnp.sin(p * (k + 1)), params)
        updates, state = step(grads, state, params)
        history.append(updates)
    return history, state


def test_whole_leaf_batched_equals_per_leaf_and_a_numpy_loop():
    jax.config.update("jax_enable_x64", True)
    try:
        rng = np.random.default_rng(0)
        params = _tree(5, rng)
        batched, state_b = _run(_norm_transform(True), params)
        single, state_s = _run(_norm_transform(False), params)
        scale = {k: 1.0 for k in params}
        for k_step, (ub, us) in enumerate(zip(batched, single, strict=True)):
            for key, p in params.items():
                g = np.sin(p * (k_step + 1))
                scale[key] = 0.5 * scale[key] + 0.5 * np.linalg.norm(g)
                np.testing.assert_allclose(ub[key], g / scale[key], rtol=1e-14)
                np.testing.assert_allclose(us[key], g / scale[key], rtol=1e-14)
        assert int(state_b.count) == 4
        assert jax.tree.structure(state_b) == jax.tree.structure(state_s)
    finally:
        jax.config.update("jax_enable_x64", False)


def _count_primitive(transform, params, primitive: str) -> int:
    """How many times ``primitive`` runs in one update (sub-jaxprs counted per call)."""
    state = transform.init(params)
    closed = jax.make_jaxpr(transform.update)(params, state, params)

    def count(jaxpr) -> int:
        total = 0
        for eqn in jaxpr.eqns:
            total += eqn.primitive.name == primitive
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else [value]:
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        total += count(inner)
        return total

    return count(closed.jaxpr)


@pytest.mark.parametrize("batch", [True, False])
def test_batched_program_does_not_grow_with_same_shape_leaves(batch):
    rng = np.random.default_rng(1)
    small, large = _tree(2, rng, np.float32), _tree(12, rng, np.float32)
    # The Frobenius norm is one `sqrt` per call of the rule.
    counts = [_count_primitive(_norm_transform(batch), t, "sqrt") for t in (small, large)]
    if batch:
        assert counts[0] == counts[1] == 3  # one call per shape: (6, 4), (9, 3), (5,)
    else:
        assert counts[1] - counts[0] == 10  # one call per leaf


def test_muon_batches_its_matrices_and_keeps_the_numbers():
    jax.config.update("jax_enable_x64", True)
    try:
        rng = np.random.default_rng(2)
        params = _tree(4, rng)
        del params["vector"]
        muon = optim_fn.contrib.scale_by_muon(ns_steps=3, batch_by_shape=True)
        more = {k: v for k, v in _tree(8, rng).items() if v.ndim == 2}
        dots = _count_primitive(muon, params, "dot_general")
        dots_more = _count_primitive(muon, {**params, **more}, "dot_general")
        assert dots == dots_more > 0  # one chain of Newton-Schulz matmuls per shape
        ours, _ = _run(muon, params)
        for k_step, updates in enumerate(ours):
            for key, p in params.items():
                # each leaf alone, the same transform: batching must not change a number
                alone_muon = optim_fn.contrib.scale_by_muon(ns_steps=3, batch_by_shape=False)
                alone, _ = _run(alone_muon, {key: p}, k_step + 1)
                np.testing.assert_allclose(updates[key], alone[-1][key], rtol=1e-12, atol=1e-14)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_leaf_keywords_split_batches():
    """Two same-shape leaves with different dimension numbers are not batched together."""
    rng = np.random.default_rng(3)
    params = {"a": rng.normal(size=(2, 4, 6)), "b": rng.normal(size=(2, 4, 6))}
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    dims = {
        "a": optim_fn.contrib.MuonDimensionNumbers(reduction_axis=1, output_axis=2),
        "b": optim_fn.contrib.MuonDimensionNumbers(reduction_axis=[2], output_axis=[0]),
    }
    muon = optim_fn.contrib.scale_by_muon(weight_dimension_numbers=dims, batch_by_shape=True)
    updates, _ = _run(muon, params, steps=1)
    for key in params:
        alone = optim_fn.contrib.scale_by_muon(weight_dimension_numbers={key: dims[key]})
        expected, _ = _run(alone, {key: params[key]}, steps=1)
        np.testing.assert_allclose(updates[0][key], expected[0][key], rtol=2e-6, atol=1e-7)
    assert not np.allclose(updates[0]["a"], updates[0]["b"])


class TreeState(NamedTuple):
    count: jax.Array
    total: Any
    hyperparams: optim_fn.Hyperparams


def _tree_rule(grads, total, *, params, count, beta, one_minus_beta):
    """Whole tree: a running average of the global gradient norm scales every leaf."""
    total = beta * total + one_minus_beta * optim_fn.tree.tree_norm(grads)
    scale = total * count / (1 + optim_fn.tree.tree_norm(params))
    return jax.tree.map(lambda g: g / scale, grads), total


def test_whole_tree_rule_against_numpy_and_hyperparams_as_data():
    transform = rule_transform(
        _tree_rule,
        TreeState,
        slots=("total",),
        init_state=lambda params: (jnp.zeros([], jnp.float32),),
        hyperparams={"beta": 0.9},
        decays=("beta",),
        uses_params=True,
        name="tree_rule",
    )
    rng = np.random.default_rng(4)
    params = jax.tree.map(jnp.asarray, _tree(2, rng, np.float32))
    state = transform.init(params)
    traces = []

    @jax.jit
    def step(grads, state):
        traces.append(1)
        return transform.update(grads, state, params)

    total = 0.0
    leaves = {k: np.asarray(v, np.float64) for k, v in params.items()}
    params_norm = np.sqrt(sum(np.sum(v**2) for v in leaves.values()))
    for k_step, beta in enumerate([0.9, 0.9, 0.5]):
        state = optim_fn.set_hyperparams(state, beta=beta)
        grads = jax.tree.map(lambda p, k=k_step: jnp.cos(p + k), params)
        updates, state = step(grads, state)
        g = {k: np.cos(v + k_step) for k, v in leaves.items()}
        total = beta * total + (1 - beta) * np.sqrt(sum(np.sum(x**2) for x in g.values()))
        scale = total * (k_step + 1) / (1 + params_norm)
        for key in g:
            np.testing.assert_allclose(updates[key], g[key] / scale, rtol=2e-6)
    assert len(traces) == 1
    assert float(optim_fn.get_hyperparams(state)["beta"]) == 0.5
    with pytest.raises(ValueError, match="tree_rule needs the params"):
        transform.update(grads, state)


def test_whole_leaf_rules_take_an_empty_tree_without_params():
    """Elementwise and whole-leaf lifting behave alike (they used to differ here)."""
    for transform in (optim_fn.lamb(1e-3), optim_fn.adamw(1e-3)):
        state = transform.init({})
        updates, _ = transform.update({}, state)
        assert updates == {}


def test_whole_leaf_rules_refuse_flat_buffers_and_mismatched_trees():
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    with pytest.raises(ValueError, match="does not work in flat mode"):
        optim_fn.lamb(1e-3).init(optim_fn.flat.ravel(params))
    state = optim_fn.lamb(1e-3).init(params)
    with pytest.raises(ValueError, match="do not match"):
        optim_fn.lamb(1e-3).update({"w": jnp.ones((3, 4))}, state, params)


class EveryThirdState(NamedTuple):
    count: jax.Array
    hits: jax.Array
    hyperparams: optim_fn.Hyperparams


def test_previous_count_is_the_count_before_the_update_even_where_count_saturates():
    """``previous_count=True``: a rule acting every k steps from the first (GaLore's SVD,
    Sophia's Hessian) keeps its period at the int32 maximum, where ``count - 1`` would not."""

    def every_third(updates, hits, *, previous_count):
        return updates, hits + (previous_count % 3 == 0)

    transform = rule_transform(
        every_third,
        EveryThirdState,
        slots=("hits",),
        init_state=lambda params: (jnp.zeros([], jnp.int32),),
        previous_count=True,
        name="every_third",
    )
    params = {"w": jnp.ones(2)}
    state = transform.init(params)
    seen = []
    for _ in range(4):
        _, state = transform.update(params, state)
        seen.append(int(state.hits))
    assert seen == [1, 1, 1, 2]
    top = np.iinfo(np.int32).max  # top % 3 == 1, (top - 1) % 3 == 0
    state = state._replace(count=jnp.asarray(top, jnp.int32), hits=jnp.zeros([], jnp.int32))
    _, state = transform.update(params, state)
    assert int(state.count) == top and int(state.hits) == 0
