"""Hyperparameters by stable names, checked values and run-time multipliers (issue #13).

The naming scheme is in the docstring of :mod:`optim_fn.core.hyperparams`: bare names,
else the group label, else chain positions, else the whole path. Every test here failed
on the main before it (KeyError on the documented names, silently accepted values, {}
for params, retraces under flax nnx, unformattable nnx values).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim_fn
from optim_fn import contrib

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.linspace(0.5, 1.0, 4)}


def grads_at(params):
    return jax.tree.map(lambda p: jnp.sin(3.0 * p) + 0.1, params)


def names(optimizer):
    return set(optim_fn.get_hyperparams(optimizer.init(PARAMS)))


# ----------------------------------------------------------------------------------------
# The names.


def test_group_labels_qualify_a_shared_name():
    assert {"muon.learning_rate", "adam.learning_rate", "muon.eps", "adam.eps"} <= names(
        contrib.muon(1e-2)
    )
    groups = optim_fn.partition(
        {"fast": optim_fn.adam(1e-2), "slow": optim_fn.sgd(1e-3)}, {"w": "fast", "b": "slow"}
    )
    assert {"fast.learning_rate", "slow.learning_rate", "b1"} <= names(groups)


def test_chain_positions_qualify_blocks_of_one_chain():
    chained = optim_fn.chain(optim_fn.scale_by_adam(eps=1e-6), optim_fn.scale_by_rms(eps=1e-3))
    got = optim_fn.get_hyperparams(chained.init(PARAMS))
    assert float(got["0.eps"]) == pytest.approx(1e-6)
    assert float(got["1.eps"]) == pytest.approx(1e-3)
    state = optim_fn.set_hyperparams(chained.init(PARAMS), **{"1.eps": 0.5})
    assert float(optim_fn.get_hyperparams(state)["1.eps"]) == 0.5
    assert float(optim_fn.get_hyperparams(state)["0.eps"]) == pytest.approx(1e-6)


def test_torch_param_groups_names_are_the_documented_ones():
    # docs/torch.md and optim_fn/torch/param_groups.py show `"0.lr"`.
    import optim_fn.torch as oft

    opt = oft.param_groups(oft.Adam, [{"params": "w", "lr": 1e-4}, {"params": "*"}], lr=1e-3)
    state = opt.init(PARAMS)
    got = optim_fn.get_hyperparams(state)
    assert float(got["0.lr"]) == pytest.approx(1e-4) and float(got["1.lr"]) == pytest.approx(1e-3)
    state = optim_fn.set_hyperparams(state, **{"0.lr": 3e-5})
    assert float(optim_fn.get_hyperparams(state)["0.lr"]) == pytest.approx(3e-5)
    # the whole path (what get_hyperparams reported before) still sets the same block
    state = optim_fn.set_hyperparams(state, **{"inner_states.1.lr": 7e-3})
    assert float(optim_fn.get_hyperparams(state)["1.lr"]) == pytest.approx(7e-3)
    both = optim_fn.set_hyperparams(state, lr=0.25)
    assert {float(v) for k, v in optim_fn.get_hyperparams(both).items() if "lr" in k} == {0.25}


def test_a_bare_shared_name_sets_every_block_and_an_unknown_one_lists_the_names():
    state = contrib.muon(1e-2).init(PARAMS)
    state = optim_fn.set_hyperparams(state, learning_rate=0.125)
    got = optim_fn.get_hyperparams(state)
    assert float(got["muon.learning_rate"]) == float(got["adam.learning_rate"]) == 0.125
    with pytest.raises(KeyError, match="muon.learning_rate"):
        optim_fn.set_hyperparams(state, lr=1.0)


# ----------------------------------------------------------------------------------------
# Derived step sizes and schedule-free warm-up.


@pytest.mark.parametrize(
    "make", [contrib.prodigy, contrib.dadapt_adamw], ids=["prodigy", "dadapt_adamw"]
)
def test_d_adaptation_effective_learning_rate_is_d_times_lr(make):
    opt = make(learning_rate=0.5)
    state = opt.init(PARAMS)
    params = PARAMS
    for _ in range(3):
        updates, state = opt.update(grads_at(params), state, params)
        params = optax.apply_updates(params, updates)
    got = optim_fn.get_hyperparams(state)
    d = float(_find(state, "estim_lr"))
    assert float(got["effective_learning_rate"]) == pytest.approx(d * 0.5, rel=1e-6)
    assert float(got["learning_rate"]) == 0.5 and d != 1.0
    with pytest.raises(optim_fn.core.ReadOnlyHyperparameterError, match="derived"):
        optim_fn.set_hyperparams(state, effective_learning_rate=1.0)


def _find(state, field):
    for node in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, field)):
        if hasattr(node, field):
            return getattr(node, field)
    raise AssertionError(field)


def test_dog_effective_learning_rate_is_the_step_it_took():
    opt = contrib.dog()
    state = opt.init(PARAMS)
    grads = grads_at(PARAMS)
    updates, state = opt.update(grads, state, PARAMS)
    step = float(optim_fn.get_hyperparams(state)["effective_learning_rate"])
    np.testing.assert_allclose(updates["w"], -step * grads["w"], rtol=1e-6)


def test_schedule_free_adamw_reports_one_warmed_up_learning_rate():
    opt = contrib.schedule_free_adamw(1e-2, warmup_steps=4)
    state, params, seen = opt.init(PARAMS), PARAMS, []
    for _ in range(3):
        updates, state = opt.update(grads_at(params), state, params)
        params = optax.apply_updates(params, updates)
        got = optim_fn.get_hyperparams(state)
        assert [k for k in got if k.endswith("learning_rate")] == ["learning_rate"]
        seen.append(float(got["learning_rate"]))
    np.testing.assert_allclose(seen, [0.0, 2.5e-3, 5e-3], rtol=1e-6)  # the warm-up's steps
    constant = contrib.schedule_free_adamw(1e-2).init(PARAMS)
    constant = optim_fn.set_hyperparams(constant, learning_rate=3e-3)
    stored = [
        float(v) for v in jax.tree.leaves(constant)
        if np.shape(v) == () and np.isclose(float(v), 3e-3)
    ]
    assert len(stored) == 2  # the base optimizer's and the averaging's copy


# ----------------------------------------------------------------------------------------
# A run-time multiplier for a schedule.


def test_with_multiplier_scales_a_schedule_without_recompiling():
    schedule = optim_fn.linear_schedule(1.0, 0.5, transition_steps=10)
    opt = optim_fn.sgd(optim_fn.with_multiplier(schedule))
    traces = []

    @jax.jit
    def step(grads, state):
        traces.append(None)
        return opt.update(grads, state)

    grads = jax.tree.map(jnp.ones_like, PARAMS)
    state = opt.init(PARAMS)
    updates, state = step(grads, state)
    np.testing.assert_allclose(updates["b"], -1.0)
    state = optim_fn.set_hyperparams(state, learning_rate_multiplier=0.5)
    updates, state = step(grads, state)
    np.testing.assert_allclose(updates["b"], -0.5 * float(schedule(1)), rtol=1e-6)
    assert float(optim_fn.get_hyperparams(state)["learning_rate"]) == pytest.approx(
        0.5 * float(schedule(1))
    )
    assert len(traces) == 1
    with pytest.raises(optim_fn.core.ReadOnlyHyperparameterError, match="with_multiplier"):
        optim_fn.set_hyperparams(state, learning_rate=0.1)
    with pytest.raises(TypeError, match="with_multiplier: `schedule`"):
        optim_fn.with_multiplier(0.1)


# ----------------------------------------------------------------------------------------
# Values are checked as the constructor checks them; wrong inputs raise.


@pytest.mark.parametrize(
    "make, values, message",
    [
        (lambda: optim_fn.adam(1e-3), {"b1": 1.5}, r"`b1` must be in \[0, 1\)"),
        (lambda: optim_fn.adamw(1e-3), {"learning_rate": -1.0}, "`learning_rate` must be >= 0"),
        (lambda: optim_fn.adam(1e-3), {"learning_rate": "1e-3"}, "must be a real scalar"),
        (lambda: optim_fn.adam(1e-3), {"eps": float("nan")}, "`eps` must be finite"),
        (lambda: contrib.muon(1e-2), {"muon.learning_rate": -2.0}, "must be >= 0"),
    ],
    ids=["b1", "negative-lr", "string", "nan", "qualified"],
)
def test_set_hyperparams_checks_like_the_constructor(make, values, message):
    state = make().init(PARAMS)
    with pytest.raises(ValueError, match=message) as caught:
        optim_fn.set_hyperparams(state, **values)
    assert "set_hyperparams" in str(caught.value)


def test_a_schedule_given_to_set_hyperparams_says_how_to_scale_one():
    with pytest.raises(TypeError, match="with_multiplier"):
        optim_fn.set_hyperparams(
            optim_fn.adam(1e-3).init(PARAMS), learning_rate=optim_fn.constant_schedule(1e-3)
        )


def test_an_integer_hyperparameter_refuses_a_fraction():
    state = optim_fn.reduce_on_plateau(patience=4).init(PARAMS)
    assert int(optim_fn.get_hyperparams(state)["patience"]) == 4
    with pytest.raises(ValueError, match="'patience' is an integer"):
        optim_fn.set_hyperparams(state, patience=0.5)
    changed = optim_fn.set_hyperparams(state, patience=7)
    assert int(optim_fn.get_hyperparams(changed)["patience"]) == 7


@pytest.mark.parametrize(
    "state, message",
    [
        (PARAMS, "not an optimizer state"),
        (optax.adam(1e-3).init(PARAMS), "optax state keeps no hyperparameters"),
        ("adam", "expected the optimizer state"),
    ],
    ids=["params", "optax-state", "string"],
)
def test_get_and_set_hyperparams_refuse_what_is_not_a_state(state, message):
    with pytest.raises(TypeError, match=message):
        optim_fn.get_hyperparams(state)
    with pytest.raises(TypeError, match=message):
        optim_fn.set_hyperparams(state, learning_rate=1.0)


def test_a_state_without_hyperparameters_reads_as_empty():
    assert optim_fn.get_hyperparams(optim_fn.scale_by_sign().init(PARAMS)) == {}


# ----------------------------------------------------------------------------------------
# flax nnx.


def test_nnx_optimizer_hyperparameters_read_format_and_set_without_retrace():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optim_fn.adamw(1e-3), wrt=nnx.Param)
    traces = []

    @nnx.jit
    def step(model, opt, x):
        traces.append(None)
        grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
        opt.update(model, grads)

    x = jnp.ones((4, 3))
    step(model, opt, x)
    assert f"{optim_fn.get_hyperparams(opt)['learning_rate']:.3g}" == "0.001"
    opt.opt_state = optim_fn.set_hyperparams(opt.opt_state, learning_rate=1e-4)
    assert f"{optim_fn.get_hyperparams(opt.opt_state)['learning_rate']:.3g}" == "0.0001"
    before = np.asarray(model.kernel[...])
    step(model, opt, x)
    assert len(traces) == 1
    assert not np.allclose(before, np.asarray(model.kernel[...]))
    with pytest.raises(TypeError, match=r"opt.opt_state = optim_fn.set_hyperparams"):
        optim_fn.set_hyperparams(opt, learning_rate=1.0)


def test_schedule_free_eval_params_on_nnx_state_match_the_plain_tree():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, contrib.schedule_free_adamw(1e-2), wrt=nnx.Param)
    x = jnp.ones((4, 3))
    for _ in range(2):
        opt.update(model, nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model))
    params = nnx.state(model, nnx.Param)
    evaluated = contrib.schedule_free_eval_params(opt.opt_state, params)
    plain_params = jax.tree.map(np.asarray, nnx.to_pure_dict(params))
    plain_z = [np.asarray(z) for z in jax.tree.leaves(_find(opt.opt_state, "z"))]
    b1 = 0.9
    expected = [(y - (1 - b1) * z) / b1
                for y, z in zip(jax.tree.leaves(plain_params), plain_z, strict=True)]
    for got, want in zip(jax.tree.leaves(evaluated), expected, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    assert not np.allclose(jax.tree.leaves(evaluated)[0], jax.tree.leaves(plain_params)[0])


def test_schedule_free_warms_up_a_scheduled_learning_rate():
    # A schedule with warmup_steps raised in warmup_constant_schedule before.
    schedule = optim_fn.linear_schedule(1e-2, 5e-3, transition_steps=10)
    opt = contrib.schedule_free_sgd(schedule, warmup_steps=4)
    state, params, seen = opt.init(PARAMS), PARAMS, []
    for _ in range(6):
        updates, state = opt.update(grads_at(params), state, params)
        params = optax.apply_updates(params, updates)
        seen.append(float(optim_fn.get_hyperparams(state)["learning_rate"]))
    expected = [min(t / 4, 1.0) * float(schedule(t)) for t in range(6)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
