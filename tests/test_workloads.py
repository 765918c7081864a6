"""The benchmark's flax workloads: losses and gradients against independent computations,
tiny runs of each, making a workload from a user's own model, and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
from optim_fn.experiments.benchmark.train import train_runs
from optim_fn.experiments.workloads import (
    WORKLOADS,
    build_workloads,
    char_lm,
    digits_cnn,
    from_equinox,
    from_nnx,
    logistic_regression,
    make_workload,
    modular_addition,
)
from optim_fn.experiments.workloads.char_lm import encode, topics_text
from optim_fn.experiments.workloads.logistic import cancer_arrays

# XLA's level 0: compiles about twice as fast, and these runs are a dozen steps
QUICK = {"xla_backend_optimization_level": 0}
SMALL = {
    "logistic": logistic_regression,
    "digits_cnn": lambda: digits_cnn(channels=4),
    "modular_addition": lambda: modular_addition(modulus=11, width=16),
    "char_lm": lambda: char_lm(length=8, width=16, eval_windows=8),
}


def _sgd(learning_rate):
    return optim_fn.sgd(learning_rate)


def test_logistic_loss_and_gradient_match_numpy():
    workload = logistic_regression()
    params = jax.jit(workload.init_params)(jax.random.key(3))
    x, y = cancer_arrays()
    w = np.asarray(params["kernel"][...], np.float64)[:, 0]
    b = float(params["bias"][...][0])
    # NumPy in float64: f = mean(log(1 + exp(-s z))) + l2/2 |w|^2, df/dz = -s sigmoid(-s z)/n
    signs = 2.0 * y - 1.0
    z = x.astype(np.float64) @ w + b
    value = np.mean(np.logaddexp(0.0, -signs * z)) + 0.5 * 1e-2 * w @ w
    dz = -signs / (1.0 + np.exp(signs * z)) / len(y)
    grads = jax.jit(jax.grad(workload.loss))(params, workload.train_data)
    loss = jax.jit(workload.loss)(params, workload.train_data)
    np.testing.assert_allclose(loss, value, rtol=1e-5)
    np.testing.assert_allclose(grads["kernel"][...][:, 0], x.T @ dz + 1e-2 * w, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(grads["bias"][...][0], dz.sum(), rtol=1e-4, atol=1e-6)
    # the suboptimality is measured from SciPy's minimum, which no point beats
    gap = jax.jit(workload.evaluate)(params, workload.eval_data)
    np.testing.assert_allclose(gap, value - workload.extra["minimum"], rtol=1e-4)
    assert 0.0 < workload.extra["minimum"] < value


def _plain_cnn(params, images):
    """The digits CNN in plain jax.lax, from the flax params (NHWC, HWIO, SAME padding)."""

    def conv(x, layer, stride):
        out = jax.lax.conv_general_dilated(
            x, layer["kernel"][...], (stride, stride), "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return out + layer["bias"][...]

    hidden = jax.nn.relu(conv(images, params["conv1"], 1))
    hidden = jax.nn.relu(conv(hidden, params["conv2"], 2)).reshape(images.shape[0], -1)
    return hidden @ params["head"]["kernel"][...] + params["head"]["bias"][...]


def test_digits_cnn_matches_plain_jax():
    workload = SMALL["digits_cnn"]()
    params = jax.jit(workload.init_params)(jax.random.key(1))
    images, labels = (a[:50] for a in workload.train_data)

    def plain_loss(params):
        logits = _plain_cnn(params, images)
        log_probs = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
        return -jnp.mean(log_probs[jnp.arange(50), labels])

    loss, grads = jax.jit(jax.value_and_grad(workload.loss))(params, (images, labels))
    plain, plain_grads = jax.jit(jax.value_and_grad(plain_loss))(params)
    np.testing.assert_allclose(loss, plain, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(plain_grads), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_transformer_gradients_match_finite_differences():
    # float64: central differences with step 1e-5 are then exact to about 1e-9 relative.
    # char_lm uses the same transformer; its own part (the windows) is tested below.
    with jax.enable_x64(True):
        workload = SMALL["modular_addition"]()
        params = jax.tree.map(
            lambda p: p.astype(jnp.float64), jax.jit(workload.init_params)(jax.random.key(2))
        )
        batch = tuple(jnp.asarray(a)[:16] for a in workload.train_data)
        loss = jax.jit(workload.loss)
        grads = jax.jit(jax.grad(workload.loss))(params, batch)
        leaves, tree = jax.tree.flatten(params)
        flat_grads = jax.tree.leaves(grads)
        for index in (1, len(leaves) // 2, len(leaves) - 1):
            leaf = np.asarray(leaves[index])
            coordinate = np.unravel_index(np.argmax(np.abs(flat_grads[index])), leaf.shape)
            moved = []
            for sign in (1.0, -1.0):
                changed = leaf.copy()
                changed[coordinate] += sign * 1e-5
                shifted = [*leaves[:index], jnp.asarray(changed), *leaves[index + 1:]]
                moved.append(float(loss(jax.tree.unflatten(tree, shifted), batch)))
            difference = (moved[0] - moved[1]) / 2e-5
            np.testing.assert_allclose(flat_grads[index][coordinate], difference, rtol=1e-6)


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_tiny_run_of_every_workload_is_deterministic_and_learns(name):
    workload = SMALL[name]()
    scale = 12 / workload.steps
    curves = train_runs(
        workload.replace(evals=3), _sgd, {"learning_rate": np.array([1e-2, 1e-2, 0.0])},
        np.array([5, 5, 5]), budget_scale=scale, compiler_options=QUICK,
    )
    assert curves.metric.shape == (3, 3) and list(curves.steps) == [4, 8, 12]
    assert np.all(np.isfinite(curves.metric)), workload.name
    np.testing.assert_array_equal(curves.metric[0], curves.metric[1])  # same seed
    # learning rate 0 keeps the initial model: its training loss does not move
    assert curves.train_loss[2, 0] == pytest.approx(curves.train_loss[2, -1], rel=0.3)
    assert curves.train_loss[0, -1] < curves.train_loss[2, -1], workload.name


def test_char_lm_text_and_split():
    text = topics_text()
    codes, vocabulary = encode(text)
    assert len(text) > 400_000 and "".join(vocabulary[c] for c in codes[:500]) == text[:500]
    workload = SMALL["char_lm"]()
    (starts,), (eval_starts,) = workload.train_data, workload.eval_data
    held_out = len(codes) - int(len(codes) * 0.9)
    # training windows end inside the first 90%; validation windows fit the last 10%
    assert int(starts.max()) + 9 < len(codes) - held_out and len(eval_starts) == 8
    assert int(eval_starts.max()) + 9 <= held_out


def _regression_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    return x, (x @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)


def test_user_nnx_and_equinox_models_become_workloads():
    from flax import nnx

    x, y = _regression_data()
    nnx_workload = from_nnx(
        "mine", lambda rngs: nnx.Linear(3, 1, rngs=rngs),
        lambda model, x, y: jnp.mean((model(x)[:, 0] - y) ** 2),
        (x, y), (x, y), target=1e-2, steps=60, batch_size=16,
    )
    import equinox as eqx

    eqx_workload = from_equinox(
        "mine_eqx", lambda key: eqx.nn.Linear(3, 1, key=key),
        lambda model, x, y: jnp.mean((jax.vmap(model)(x)[:, 0] - y) ** 2),
        (x, y), (x, y), target=1e-2, steps=60,
    )
    for workload in (nnx_workload, eqx_workload):
        curves = train_runs(
            workload, _sgd, {"learning_rate": np.array([0.1])}, np.array([0]),
            compiler_options=QUICK,
        )
        assert curves.metric[0, -1] < 1e-2 < curves.metric[0, 0], workload.name


def test_bad_workloads_get_clear_messages():
    x, y = _regression_data()

    def loss(params, batch):
        return jnp.mean((batch[0] @ params - batch[1]) ** 2)

    def make(**options):
        return make_workload("mine", lambda key: jnp.zeros(3), loss, (x, y), (x, y), **options)

    with pytest.raises(ValueError, match="unknown workload 'nope'; valid: digits_cnn"):
        build_workloads(["digits_cnn", "nope"])
    with pytest.raises(ValueError, match=r"target accuracy 1.5 can never be reached.*\(0, 1\]"):
        make(metric="accuracy", target=1.5, steps=10)
    with pytest.raises(ValueError, match="target loss -1.0 can never be reached"):
        make(target=-1.0, steps=10)
    with pytest.raises(ValueError, match="metric must be one of accuracy, loss"):
        make(metric="f1", target=0.5, steps=10)
    with pytest.raises(ValueError, match="batch_size must be between 1 and the number"):
        make(target=0.1, steps=10, batch_size=65)
    with pytest.raises(ValueError, match="train_data arrays must share their first axis"):
        make_workload("mine", lambda key: jnp.zeros(3), loss, (x, y[:5]), (x, y),
                      target=0.1, steps=10)
    with pytest.raises(ValueError, match="train_fraction must lie in"):
        modular_addition(train_fraction=1.0)


def test_missing_flax_names_the_extra(monkeypatch):
    import sys

    from optim_fn.experiments.workloads import require_flax

    monkeypatch.setitem(sys.modules, "flax", None)  # `from flax import nnx` now fails
    with pytest.raises(ImportError, match=r"need flax, from the 'experiments' extra"):
        require_flax()
