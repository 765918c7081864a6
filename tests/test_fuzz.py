"""Fuzzing every optimizer family over random pytrees, dtypes and hyperparameters.

tests/test_properties.py fuzzes optim_fn.optimizers (sgd ... adamw) and the building
blocks with fixed hyperparameters; this file covers the other families with random
hyperparameters, rank-5 leaves, and the errors for invalid inputs:

* no crash; finite updates and state on finite inputs;
* updates have the gradients' structure, shapes and dtypes; state keeps its own;
* the jitted update equals the op-by-op one (optim_fn.testing.check_jit_matches_eager);
* a gradient tree that does not match the params, or integer params, raise the
  documented error (never a silent NaN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optim_fn
import optim_fn.testing as checks

EXAMPLES = settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MIXED = (jnp.float32, jnp.bfloat16, jnp.float16)
# 0-d, empty, vector, matrix and a rank-5 leaf; few distinct shapes keep compiles few.
SHAPES = [(), (0,), (3,), (2, 3), (1, 2, 1, 2, 1)]

# Each factory takes a dict of drawn hyperparameters.
FAMILIES = {
    "adabelief": lambda h: optim_fn.adabelief(h["lr"], h["b1"], h["b2"]),
    "adamax": lambda h: optim_fn.adamax(h["lr"], h["b1"], h["b2"], h["eps"]),
    "adamaxw": lambda h: optim_fn.adamaxw(h["lr"], h["b1"], h["b2"], weight_decay=h["wd"]),
    "adan": lambda h: optim_fn.adan(h["lr"], weight_decay=h["wd"]),
    "amsgrad": lambda h: optim_fn.amsgrad(h["lr"], h["b1"], h["b2"], h["eps"]),
    "nadam": lambda h: optim_fn.nadam(h["lr"], h["b1"], h["b2"], h["eps"]),
    "nadamw": lambda h: optim_fn.nadamw(h["lr"], h["b1"], h["b2"], weight_decay=h["wd"]),
    "radam": lambda h: optim_fn.radam(h["lr"], h["b1"], h["b2"], h["eps"]),
    "yogi": lambda h: optim_fn.yogi(h["lr"], h["b1"], h["b2"]),
    "lion": lambda h: optim_fn.lion(h["lr"], h["b1"], h["b2"], weight_decay=h["wd"]),
    "lamb": lambda h: optim_fn.lamb(h["lr"], h["b1"], h["b2"], weight_decay=h["wd"]),
    "lars": lambda h: optim_fn.lars(h["lr"], weight_decay=h["wd"]),
    "novograd": lambda h: optim_fn.novograd(h["lr"], h["b1"]),
    "fromage": lambda h: optim_fn.fromage(h["lr"]),
    "adafactor": lambda h: optim_fn.adafactor(h["lr"], min_dim_size_to_factor=2),
    "sm3": lambda h: optim_fn.sm3(h["lr"], h["b1"]),
    "signum": lambda h: optim_fn.signum(h["lr"], h["b1"]),
    "sign_sgd": lambda h: optim_fn.sign_sgd(h["lr"]),
    "rprop": lambda h: optim_fn.rprop(h["lr"]),
    "clip_then_adamw": lambda h: optim_fn.chain(
        optim_fn.clip_by_global_norm(h["clip"]), optim_fn.adamw(h["lr"], weight_decay=h["wd"])
    ),
}

HYPERPARAMS = st.fixed_dictionaries(
    {
        "lr": st.sampled_from([1e-4, 1e-2, 1.0]),
        "b1": st.sampled_from([0.0, 0.5, 0.9, 0.99]),
        "b2": st.sampled_from([0.9, 0.99, 0.999, 0.9999]),
        "eps": st.sampled_from([1e-8, 1e-6, 1e-3]),
        "wd": st.sampled_from([0.0, 1e-4, 0.1]),
        "clip": st.sampled_from([1e-3, 1.0, 100.0]),
    }
)


def assert_finite(tree, what):
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact):
            finite = jnp.all(jnp.isfinite(jnp.asarray(leaf).astype(jnp.float32)))
            assert bool(finite), f"{what}{jax.tree_util.keystr(path)} is not finite"


@pytest.mark.parametrize("name", list(FAMILIES))
@EXAMPLES
@given(
    params_and_grads=checks.params_and_grads(steps=3, dtypes=MIXED, shapes=SHAPES, bound=3.0),
    hyperparams=HYPERPARAMS,
)
def test_random_trees_and_hyperparameters(name, params_and_grads, hyperparams):
    params, grads = params_and_grads
    optimizer = FAMILIES[name](hyperparams)
    checks.check_structure(optimizer, params, grads)
    checks.check_jit_matches_eager(optimizer, params, grads)
    state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    for g in grads:
        updates, state = update(g, state, params)
        assert_finite(updates, "updates")
        assert_finite(state, "state")
        params = optim_fn.apply_updates(params, updates)
    assert_finite(params, "params")


INVALID = ["nadamw", "lion", "adafactor", "clip_then_adamw", "radam"]


@pytest.mark.parametrize("name", INVALID)
@settings(max_examples=3, deadline=None, derandomize=True)
@given(
    params=checks.pytrees(dtypes=(jnp.float32,), shapes=[(2,), (2, 3)], allow_none=False).filter(
        lambda tree: len(jax.tree.leaves(tree)) > 0
    )
)
def test_mismatched_gradients_raise_the_documented_error(name, params):
    optimizer = FAMILIES[name]({"lr": 0.1, "b1": 0.9, "b2": 0.99, "eps": 1e-8, "wd": 0.1,
                                "clip": 1.0})
    state = optimizer.init(params)
    # An extra leaf in the gradients: the tree no longer matches the optimizer state.
    wrong = {"extra": jnp.ones(2), "grads": params}
    with pytest.raises((ValueError, TypeError)):
        optimizer.update(wrong, state, params)
    # A gradient of the wrong shape.
    bad_shape = jax.tree.map(lambda p: jnp.ones(p.shape + (2,), p.dtype), params)
    with pytest.raises(ValueError, match="shape"):
        jax.jit(optimizer.update)(bad_shape, state, params)


@pytest.mark.parametrize("name", INVALID)
def test_integer_params_are_refused(name):
    optimizer = FAMILIES[name]({"lr": 0.1, "b1": 0.9, "b2": 0.99, "eps": 1e-8, "wd": 0.1,
                                "clip": 1.0})
    with pytest.raises(TypeError, match=r"\['steps'\] \(int32\)"):
        optimizer.init({"w": jnp.ones(3), "steps": jnp.asarray(np.arange(3), jnp.int32)})
