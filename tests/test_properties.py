"""Property tests: every optimizer and building block through ``optim_fn.testing``.

Each config runs on random pytrees (nested dicts, lists, tuples, NamedTuples, None,
0-d and empty arrays; float32, bfloat16 and float16 leaves) and random gradients, and
must pass every check of :func:`optim_fn.testing.check_transform`: structure and dtypes
kept, one trace, jit equal to eager, zero gradients giving the update the rule says,
hyperparameters settable without a retrace. The second half shows that each check
fails, with a message naming the property and leaf, on a transform broken on purpose.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, find, given, settings

import optim_fn
import optim_fn.testing as checks
from optim_fn.optimizers import classic as transforms

EXAMPLES = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MIXED = (jnp.float32, jnp.bfloat16, jnp.float16)
# 0-d, empty, vector, matrix. A fixed set keeps eager-op compilations few (speed).
SHAPES = [(), (0,), (3,), (2, 3)]
LR, WD = 0.1, 0.1


def matrices(params):
    """A mask function: decay leaves with at least two dimensions (not biases, scalars)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def decoupled_decay(scale, mask=None):
    """The update of pure weight decay, ``scale * p`` on the masked leaves, 0 elsewhere."""

    def expected(params):
        flags = jax.tree.map(lambda _: True, params) if mask is None else mask(params)
        return jax.tree.map(
            lambda keep, p: (scale * p if keep else jnp.zeros_like(p)).astype(p.dtype),
            flags,
            params,
        )

    return expected


def decaying(value):
    return lambda count: value * 0.9**count


# name, factory, the update zero gradients give from a fresh state ("zero", a function
# of the params, or None where it is not simple enough to state).
OPTIMIZERS = [
    ("sgd", lambda: optim_fn.sgd(LR), "zero"),
    ("sgd_momentum", lambda: optim_fn.sgd(LR, momentum=0.9), "zero"),
    (
        "sgd_nesterov_bf16_trace",
        lambda: optim_fn.sgd(LR, 0.9, nesterov=True, accumulator_dtype=jnp.bfloat16),
        "zero",
    ),
    ("sgd_scheduled", lambda: optim_fn.sgd(decaying(LR), momentum=decaying(0.9)), "zero"),
    ("adagrad", lambda: optim_fn.adagrad(LR), "zero"),
    ("adagrad_zero_start", lambda: optim_fn.adagrad(LR, 0.0, eps=0.0), "zero"),
    ("rmsprop", lambda: optim_fn.rmsprop(LR), "zero"),
    # Not with bias_correction: its variance at step 1 is 0 in exact arithmetic, so the
    # update is g / eps amplifying rounding noise, and jit and eager disagree by design.
    (
        "rmsprop_centered_nesterov",
        lambda: optim_fn.rmsprop(
            LR,
            centered=True,
            momentum=0.9,
            nesterov=True,
            eps_in_sqrt=False,
            initial_scale=0.1,
        ),
        "zero",
    ),
    ("adadelta", lambda: optim_fn.adadelta(), "zero"),
    # Zero gradients plus weight decay go through AdaDelta's scaling: no simple closed form.
    (
        "adadelta_masked_decay",
        lambda: optim_fn.adadelta(0.5, weight_decay=WD, weight_decay_mask=matrices),
        None,
    ),
    ("adam", lambda: optim_fn.adam(1e-3), "zero"),
    (
        "nadam_bf16_mu_eps_root",
        lambda: optim_fn.adam(1e-3, nesterov=True, mu_dtype=jnp.bfloat16, eps_root=1e-8),
        "zero",
    ),
    ("adam_scheduled", lambda: optim_fn.adam(decaying(1e-3), b1=decaying(0.9)), "zero"),
    ("adamw", lambda: optim_fn.adamw(1e-3, weight_decay=WD), decoupled_decay(-1e-3 * WD)),
    (
        "adamw_masked",
        lambda: optim_fn.adamw(1e-3, weight_decay=WD, mask=matrices),
        decoupled_decay(-1e-3 * WD, matrices),
    ),
]

BLOCKS = [
    ("scale_by_learning_rate", lambda: transforms.scale_by_learning_rate(LR), "zero"),
    (
        "scale_by_learning_rate_ascent_scheduled",
        lambda: transforms.scale_by_learning_rate(decaying(LR), flip_sign=False),
        "zero",
    ),
    ("trace", lambda: transforms.trace(0.9), "zero"),
    ("trace_nesterov_bf16", lambda: transforms.trace(0.9, True, jnp.bfloat16), "zero"),
    ("add_decayed_weights", lambda: transforms.add_decayed_weights(WD), decoupled_decay(WD)),
    (
        "add_decayed_weights_masked",
        lambda: transforms.add_decayed_weights(WD, mask=matrices),
        decoupled_decay(WD, matrices),
    ),
    ("scale_by_adam", lambda: transforms.scale_by_adam(), "zero"),
    ("scale_by_rms", lambda: transforms.scale_by_rms(), "zero"),
    (
        "scale_by_rms_torch_style",
        lambda: transforms.scale_by_rms(0.99, eps_in_sqrt=False, bias_correction=True),
        "zero",
    ),
    ("scale_by_stddev", lambda: transforms.scale_by_stddev(initial_scale=0.5), "zero"),
    ("scale_by_rss", lambda: transforms.scale_by_rss(), "zero"),
    ("scale_by_adadelta", lambda: transforms.scale_by_adadelta(), "zero"),
]

CONFIGS = OPTIMIZERS + BLOCKS


def public_functions(module):
    return {
        name
        for name, value in vars(module).items()
        if callable(value)
        and not name.startswith("_")
        and not name[0].isupper()
        and getattr(value, "__module__", None) == module.__name__
    }


def test_every_optimizer_and_block_has_a_config():
    """A new optimizer or building block fails here until it gets a config above."""
    module = optim_fn.optimizers.classic
    names = [name for name, _, _ in OPTIMIZERS + BLOCKS]
    missing = [f for f in public_functions(module) if not any(n.startswith(f) for n in names)]
    assert public_functions(module)
    assert not missing, f"add configs for {missing}"


@pytest.mark.parametrize(
    ("name", "factory", "zero_update"),
    [pytest.param(*config, id=config[0]) for config in CONFIGS],
)
@EXAMPLES
@given(checks.params_and_grads(steps=3, dtypes=MIXED, shapes=SHAPES))
def test_properties_on_random_trees(name, factory, zero_update, params_and_grads):
    params, grads = params_and_grads
    checks.check_transform(factory, params, grads, zero_grad_update=zero_update)


def test_masked_weight_decay_on_a_lone_array_left_out_by_the_mask():
    adam_without_decay = optim_fn.adamw(1e-3, weight_decay=WD, mask=lambda params: False)
    checks.check_transform(adam_without_decay, jnp.ones((3,), jnp.float32))


# ----------------------------------------------------------------------------------------
# The checks pass on optax transforms too (the protocol is optax's).


def test_optax_transforms_pass_the_checks():
    checks.check_transform(optax.adam(1e-3))
    checks.check_transform(optax.inject_hyperparams(optax.sgd)(0.1, momentum=0.9))
    # optax's adamw moves params under zero gradients: the expectation must be given.
    checks.check_transform(
        optax.adamw(1e-3, weight_decay=WD), zero_grad_update=decoupled_decay(-1e-3 * WD)
    )


# ----------------------------------------------------------------------------------------
# Transforms broken on purpose: every check can fail, and says where.


def bf16_params():
    return {"w": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.zeros((3,), jnp.bfloat16)}


class CountState(NamedTuple):
    count: jax.Array
    total: dict


def test_update_in_the_wrong_dtype_is_caught():
    def update(grads, state, params=None):
        return jax.tree.map(lambda g: g.astype(jnp.float32), grads), state

    broken = optax.GradientTransformation(lambda p: optax.EmptyState(), update)
    with pytest.raises(checks.PropertyCheckError) as caught:
        checks.check_transform(broken, bf16_params())
    assert caught.value.property == checks.STRUCTURE
    assert caught.value.path == "updates['b']"
    assert "dtype float32, but the gradient there is bfloat16" in str(caught.value)
    with pytest.raises(checks.PropertyCheckError, match="structure and dtypes"):
        checks.check_structure(broken, bf16_params())


def test_state_whose_dtype_drifts_is_caught():
    def init(params):
        return CountState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        # The sum promotes bf16 to float32 and is stored without casting back.
        total = jax.tree.map(lambda t, g: t + g.astype(jnp.float32), state.total, grads)
        return grads, CountState(state.count + 1, total)

    broken = optax.GradientTransformation(init, update)
    with pytest.raises(checks.PropertyCheckError) as caught:
        checks.check_structure(broken, bf16_params())
    assert caught.value.property == checks.STRUCTURE
    assert caught.value.step == "step 1 (eager)"
    assert caught.value.path == "state.total['b']"
    assert "float32[3], but init made it bfloat16[3]" in str(caught.value)


def test_update_that_drops_a_leaf_is_caught():
    def update(grads, state, params=None):
        return {"w": grads["w"]}, state

    broken = optax.GradientTransformation(lambda p: optax.EmptyState(), update)
    missing = r"leaves in the gradients but not in the updates: \['b'\], \['scale'\]"
    with pytest.raises(checks.PropertyCheckError, match=missing):
        checks.check_transform(broken)


def test_retrace_from_a_weakly_typed_count_is_caught():
    def init(params):
        return CountState(jnp.asarray(0), {})  # weakly typed: the retrace bug

    def update(grads, state, params=None):
        return grads, CountState(state.count + jnp.ones([], jnp.int32), {})

    broken = optax.GradientTransformation(init, update)
    # Shapes and dtypes are kept, so only the trace counter sees it.
    checks.check_structure(broken)
    with pytest.raises(checks.PropertyCheckError) as caught:
        checks.check_no_retrace(broken)
    assert caught.value.property == checks.NO_RETRACE
    assert caught.value.path == "state.count"
    assert "int32[] (weak type) -> int32[]" in str(caught.value)
    with pytest.raises(checks.PropertyCheckError, match="no retrace"):
        checks.check_transform(broken)


def test_state_that_grows_retraces_and_changes_structure():
    def init(params):
        return CountState(jnp.zeros([0], jnp.float32), {})

    def update(grads, state, params=None):
        history = jnp.concatenate([state.count, jnp.ones([1], jnp.float32)])
        return grads, CountState(history, {})

    broken = optax.GradientTransformation(init, update)
    with pytest.raises(checks.PropertyCheckError, match=r"state\.count"):
        checks.check_no_retrace(broken)
    with pytest.raises(checks.PropertyCheckError, match=r"float32\[1\], but init made it"):
        checks.check_structure(broken)


def test_trace_time_python_state_makes_jit_differ_from_eager():
    calls = []

    def update(grads, state, params=None):
        calls.append(None)  # runs at every eager call, once under jit (then frozen)
        return jax.tree.map(lambda g: g * len(calls), grads), state

    broken = optax.GradientTransformation(lambda p: optax.EmptyState(), update)
    with pytest.raises(checks.PropertyCheckError) as caught:
        checks.check_jit_matches_eager(broken)
    assert caught.value.property == checks.JIT_MATCHES_EAGER
    assert caught.value.step == "step 1"
    assert caught.value.path.startswith("updates[")


def rsqrt_without_eps(grad, nu, *, decay, one_minus_decay):
    """RMS scaling with eps forgotten: 0 * rsqrt(0) is NaN for a zero gradient."""
    nu = one_minus_decay * grad * grad + decay * nu
    return grad * jax.lax.rsqrt(nu), nu


def test_nan_for_zero_gradients_is_caught():
    broken = optim_fn.rule_transform(
        rsqrt_without_eps,
        transforms.ScaleByRmsState,
        slots=[optim_fn.Slot("nu")],
        hyperparams={"decay": 0.9},
        decays=("decay",),
        name="rms_without_eps",
    )
    with pytest.raises(checks.PropertyCheckError) as caught:
        checks.check_zero_grad_update(broken)
    assert caught.value.property == checks.ZERO_GRAD_UPDATE
    assert caught.value.step == "step 1 of zero gradients"
    assert "nonzero or NaN" in str(caught.value)
    # The other properties hold: the check that fails is the one that should.
    checks.check_transform(broken, zero_grad_update=None)


def test_weight_decay_without_expectation_fails_and_with_a_wrong_one_too():
    with pytest.raises(checks.PropertyCheckError, match="pass `zero_grad_update=`"):
        checks.check_transform(transforms.add_decayed_weights(WD))
    with pytest.raises(checks.PropertyCheckError, match="zero gradient update"):
        checks.check_transform(
            transforms.add_decayed_weights(WD), zero_grad_update=decoupled_decay(2 * WD)
        )


class PlainHyperparamsState(NamedTuple):
    hyperparams: dict


def test_python_float_hyperparameters_retrace_when_set():
    def init(params):
        return PlainHyperparamsState({"learning_rate": 0.1})  # a Python float, not an array

    def update(grads, state, params=None):
        lr = state.hyperparams["learning_rate"]
        return jax.tree.map(lambda g: -lr * g, grads), state

    broken = optax.GradientTransformation(init, update)
    with pytest.raises(checks.PropertyCheckError) as caught:
        checks.check_hyperparams_are_data(broken)
    assert caught.value.property == checks.NO_RETRACE
    assert "learning_rate" in caught.value.path
    assert "(weak type) -> float32[]" in str(caught.value)


# ----------------------------------------------------------------------------------------
# The harness itself: bad arguments, strategies, hypothesis missing.


def test_bad_arguments_name_the_argument():
    with pytest.raises(TypeError, match="lambda: optim_fn.adam"):
        checks.check_transform(optim_fn.adam)  # the factory needs a learning rate
    with pytest.raises(TypeError, match="`transform` must be a gradient transformation"):
        checks.check_transform(3)
    with pytest.raises(ValueError, match="`zero_grad_update` must be"):
        checks.check_transform(optim_fn.sgd(LR), zero_grad_update="zeros")
    grads = checks.random_grads(checks.default_params(), 2)
    with pytest.raises(ValueError, match="`steps=3` but `grads` holds 2"):
        checks.check_transform(optim_fn.sgd(LR), grads=grads, steps=3)
    with pytest.raises(ValueError, match="steps` >= 2"):
        checks.check_no_retrace(optim_fn.sgd(LR), steps=1)
    with pytest.raises(ValueError, match="`dtypes` must be float"):
        checks.pytrees(dtypes=(jnp.int32,))


def has_leaf(tree, predicate):
    return any(predicate(leaf) for leaf in jax.tree.leaves(tree))


def has_node(tree, kind):
    return any(
        isinstance(node, kind)
        for node in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, kind))
    )


@pytest.mark.parametrize(
    "feature",
    [
        lambda t: has_leaf(t, lambda x: x.ndim == 0),
        lambda t: has_leaf(t, lambda x: x.size == 0),
        lambda t: has_leaf(t, lambda x: x.dtype == jnp.bfloat16),
        lambda t: has_node(t, dict) and has_node(t, list) and has_node(t, tuple),
        lambda t: has_node(t, checks.Pair),
        lambda t: (
            None in jax.tree.leaves(t, is_leaf=lambda x: x is None) and bool(jax.tree.leaves(t))
        ),
        lambda t: isinstance(t, dict) and any(isinstance(v, (list, dict)) for v in t.values()),
    ],
    ids=["0-d", "empty", "bf16", "dict_list_tuple", "namedtuple", "none", "nested"],
)
def test_random_pytrees_hold_every_advertised_feature(feature):
    found = find(
        checks.pytrees(dtypes=MIXED, max_leaves=8),
        feature,
        settings=settings(max_examples=2000, database=None, derandomize=True),
    )
    assert feature(found)


@EXAMPLES
@given(checks.params_and_grads(steps=2, dtypes=MIXED, bound=3.0))
def test_random_gradients_match_their_params(params_and_grads):
    params, grads = params_and_grads
    assert len(grads) == 2
    for tree in (params, *grads):
        for leaf in jax.tree.leaves(tree):
            assert leaf.dtype in [jnp.dtype(d) for d in MIXED]
            assert leaf.ndim <= 2 and all(side <= 3 for side in leaf.shape)
            values = np.asarray(leaf, np.float64)
            assert np.all(np.isfinite(values)) and np.all(np.abs(values) <= 3.0)
    for grad in grads:
        assert jax.tree.structure(grad) == jax.tree.structure(params)
        for g, p in zip(jax.tree.leaves(grad), jax.tree.leaves(params), strict=True):
            assert (g.shape, g.dtype) == (p.shape, p.dtype)


def test_strategies_explain_a_missing_hypothesis(monkeypatch):
    for module in ("hypothesis", "hypothesis.strategies", "hypothesis.extra.numpy"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"pip install \"optim-fn\[test\]\""):
        checks.pytrees()
    with pytest.raises(ImportError, match="need hypothesis"):
        checks.gradients({"w": jnp.zeros(2)})
    # The checks themselves need no hypothesis.
    checks.check_transform(optim_fn.sgd(LR))


def test_default_inputs_are_deterministic_and_shaped_like_params():
    first, second = checks.random_grads(checks.default_params(), 2, seed=3)
    again = checks.random_grads(checks.default_params(), 2, seed=3)[0]
    assert jax.tree.structure(first) == jax.tree.structure(checks.default_params())
    chex_equal = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), first, again)
    assert all(jax.tree.leaves(chex_equal))
    assert not jnp.array_equal(first["w"], second["w"])


@EXAMPLES
@given(st.data())
def test_complex_leaves_pass_the_adam_family(data):
    params, grads = data.draw(
        checks.params_and_grads(steps=2, dtypes=(jnp.complex64, jnp.float32), shapes=SHAPES)
    )
    for factory in (lambda: optim_fn.adam(1e-3), lambda: optim_fn.rmsprop(LR, centered=True)):
        checks.check_transform(factory, params, grads)
