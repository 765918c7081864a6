"""Bad input fails at once, with a message that names the argument (or tree path) and the fix."""

import jax.numpy as jnp
import optax
import pytest

import optim_fn

PARAMS = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
GRADS = {"w": jnp.full((3, 2), 0.5), "b": jnp.ones(2)}


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: optim_fn.sgd(-0.1), r"`learning_rate` must be >= 0, got -0.1"),
        (lambda: optim_fn.adam(-1e-3), r"`learning_rate` must be >= 0"),
        (lambda: optim_fn.adam(1e-3, b1=1.0), r"`b1` must be in \[0, 1\), got 1.0"),
        (lambda: optim_fn.adam(1e-3, b1=-0.1), r"`b1` must be in \[0, 1\)"),
        (lambda: optim_fn.adamw(1e-3, b2=1.5), r"`b2` must be in \[0, 1\), got 1.5"),
        (lambda: optim_fn.adam(1e-3, eps=-1e-8), r"`eps` must be >= 0, got -1e-08"),
        (lambda: optim_fn.adam(1e-3, eps_root=-1.0), r"`eps_root` must be >= 0"),
        (lambda: optim_fn.rmsprop(1e-3, decay=1.0), r"`decay` must be in \[0, 1\)"),
        (lambda: optim_fn.rmsprop(1e-3, eps=-1.0), r"`eps` must be >= 0"),
        (lambda: optim_fn.adagrad(1e-3, eps=-1.0), r"`eps` must be >= 0"),
        (
            lambda: optim_fn.adagrad(1e-3, initial_accumulator_value=-0.1),
            r"`initial_accumulator_value` must be >= 0",
        ),
        (lambda: optim_fn.adadelta(rho=1.2), r"`rho` must be in \[0, 1\)"),
        (lambda: optim_fn.adamw(1e-3, weight_decay=-1.0), r"`weight_decay` must be >= 0"),
        (lambda: optim_fn.sgd(0.1, momentum=1.5), r"`momentum` must be in \[0, 1\]"),
        (lambda: optim_fn.sgd(0.1, nesterov=True), r"`nesterov=True` needs momentum"),
        (lambda: optim_fn.rmsprop(0.1, nesterov=True), r"`nesterov=True` needs momentum"),
        (lambda: optim_fn.adam(float("nan")), r"`learning_rate` must be finite"),
        (lambda: optim_fn.adam("0.001"), r"`learning_rate` must be a real scalar"),
        (lambda: optim_fn.adam(jnp.ones(3)), r"`learning_rate` must be a real scalar"),
        (lambda: optim_fn.adam(1e-3, mu_dtype=jnp.int32), r"`mu_dtype` must be None or a float"),
        (lambda: optim_fn.scale_by_learning_rate(None), r"`learning_rate` must be a number"),
    ],
)
def test_invalid_hyperparameters_raise_value_error_naming_the_argument(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_valid_edge_values_are_accepted():
    optim_fn.adam(0.0, b1=0.0, b2=0.0, eps=0.0)
    optim_fn.sgd(0.1, momentum=1.0)
    optim_fn.adam(lambda count: 1e-3 / (1 + count))  # schedules are checked when called


def test_integer_params_are_rejected_with_their_paths():
    params = {"w": jnp.ones(3), "steps": jnp.arange(3), "nested": [jnp.zeros(2, jnp.int8)]}
    with pytest.raises(TypeError) as error:
        optim_fn.adam(1e-3).init(params)
    message = str(error.value)
    assert "['steps'] (int32)" in message
    assert "['nested'][0] (int8)" in message
    assert "['w']" not in message
    assert "astype" in message


def test_gradient_tree_missing_a_leaf_names_the_path():
    optimizer = optim_fn.adam(1e-3)
    state = optimizer.init(PARAMS)
    with pytest.raises(ValueError, match=r"missing from grads: \['b'\]"):
        optimizer.update({"w": GRADS["w"]}, state)


def test_gradient_tree_with_an_extra_leaf_names_the_path():
    optimizer = optim_fn.sgd(0.1, momentum=0.9)
    state = optimizer.init(PARAMS)
    grads = {**GRADS, "extra": jnp.ones(4)}
    with pytest.raises(ValueError, match=r"in grads but not in the trace: \['extra'\]"):
        optimizer.update(grads, state)


def test_gradient_leaf_of_the_wrong_shape_names_the_path_and_both_shapes():
    optimizer = optim_fn.rmsprop(1e-3)
    state = optimizer.init(PARAMS)
    grads = {"w": GRADS["w"], "b": jnp.ones(5)}
    with pytest.raises(ValueError, match=r"grads leaf \['b'\] has shape \(5,\) .* \(2,\)"):
        optimizer.update(grads, state)


def test_mismatch_is_caught_under_jit_too():
    import jax

    optimizer = optim_fn.adam(1e-3)
    state = optimizer.init(PARAMS)
    with pytest.raises(ValueError, match=r"missing from grads"):
        jax.jit(optimizer.update)({"w": GRADS["w"]}, state)


@pytest.mark.parametrize(
    "make",
    [
        lambda: optim_fn.adamw(1e-3),
        lambda: optim_fn.add_decayed_weights(1e-2),
        lambda: optim_fn.adadelta(weight_decay=0.1),
    ],
)
def test_missing_params_where_needed_says_how_to_pass_them(make):
    optimizer = make()
    state = optimizer.init(PARAMS)
    expected = r"needs the params: call `update\(grads, state, params\)`"
    with pytest.raises(ValueError, match=expected):
        optimizer.update(GRADS, state)


def test_chain_rejects_an_uncalled_factory():
    with pytest.raises(TypeError, match=r"argument 1 .* not a gradient transformation"):
        optim_fn.chain(optim_fn.adam(1e-3), optax.clip)


def test_chain_rejects_a_state_of_another_optimizer():
    optimizer = optim_fn.chain(optim_fn.adam(1e-3), optax.clip(1.0))
    with pytest.raises(ValueError, match=r"a tuple of 2 states"):
        optimizer.update(GRADS, (optimizer.init(PARAMS)[0],))


def test_masked_rejects_a_mask_of_another_structure():
    optimizer = optim_fn.adamw(1e-3, mask={"w": True, "c": False})
    with pytest.raises(ValueError, match=r"mask must have the structure of the params"):
        optimizer.init(PARAMS)


@pytest.mark.parametrize(
    "make",
    [
        lambda params: optim_fn.adamw(params, 1e-3),
        lambda params: optim_fn.sgd(params),
        lambda params: optim_fn.contrib.muon(params),
    ],
    ids=["adamw", "sgd", "contrib.muon"],
)
@pytest.mark.parametrize(
    "params",
    [[jnp.ones(3), jnp.ones((2, 2))], {"w": jnp.ones(3)}, jnp.ones(3)],
    ids=["list-of-arrays", "dict", "array"],
)
def test_params_where_a_hyperparameter_belongs_show_the_init_update_pattern(make, params):
    # The torch habit `Adam(params, lr)`: a NumPy "inhomogeneous shape" error before.
    with pytest.raises(ValueError, match=r"params\? .*opt.init\(params\).*opt.update"):
        make(params)
