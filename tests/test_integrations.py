"""optim_fn inside flax (nnx.Optimizer, linen TrainState) and equinox training loops.

Each loop is run twice, once with an optim_fn optimizer and once with the optax one of
the same name, and the params must agree at every step: the integration passes the
params, gradients and state through unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim_fn

flax = pytest.importorskip("flax")
eqx = pytest.importorskip("equinox")
from flax import linen as nn  # noqa: E402
from flax import nnx  # noqa: E402
from flax.training import train_state  # noqa: E402

STEPS = 5
X = jnp.asarray(np.random.default_rng(0).standard_normal((16, 4)), jnp.float32)
Y = jnp.asarray(np.random.default_rng(1).standard_normal((16, 2)), jnp.float32)
PAIRS = {
    "adamw": (
        lambda: optim_fn.adamw(1e-2, weight_decay=0.1),
        lambda: optax.adamw(1e-2, weight_decay=0.1),
    ),
    "sgd": (lambda: optim_fn.sgd(1e-2, momentum=0.9), lambda: optax.sgd(1e-2, momentum=0.9)),
}


def assert_trees_close(a, b, rtol=2e-6, atol=1e-7):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", list(PAIRS))
def test_flax_nnx_optimizer(name):
    def train(tx):
        model = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

        @nnx.jit
        def step(model, optimizer):
            loss_fn = lambda m: jnp.mean((m(X) - Y) ** 2)  # noqa: E731
            loss, grads = nnx.value_and_grad(loss_fn)(model)
            optimizer.update(model, grads)
            return loss

        history = []
        for _ in range(STEPS):
            step(model, optimizer)
            history.append(jax.tree.map(jnp.copy, nnx.state(model, nnx.Param)))
        return history, float(jnp.mean((model(X) - Y) ** 2))

    ours, loss_ours = train(PAIRS[name][0]())
    theirs, loss_theirs = train(PAIRS[name][1]())
    for a, b in zip(ours, theirs, strict=True):
        assert_trees_close(a, b)
    first_loss = float(jnp.mean((nnx.Linear(4, 2, rngs=nnx.Rngs(0))(X) - Y) ** 2))
    assert loss_ours < first_loss


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(nn.tanh(nn.Dense(8)(x)))


@pytest.mark.parametrize("name", list(PAIRS))
def test_flax_linen_train_state(name):
    model = MLP()
    params = model.init(jax.random.key(0), X)["params"]

    @jax.jit
    def step(state):
        def loss_fn(p):
            return jnp.mean((state.apply_fn({"params": p}, X) - Y) ** 2)

        grads = jax.grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads)

    states = [
        train_state.TrainState.create(apply_fn=model.apply, params=params, tx=make())
        for make in PAIRS[name]
    ]
    for _ in range(STEPS):
        states = [step(s) for s in states]
        assert_trees_close(states[0].params, states[1].params)
    assert int(states[0].step) == STEPS
    # The optim_fn state lives in the TrainState and its hyperparameters can be read.
    assert "learning_rate" in optim_fn.get_hyperparams(states[0].opt_state)


@pytest.mark.parametrize("name", list(PAIRS))
def test_equinox_filter_and_apply_updates(name):
    def train(tx):
        model = eqx.nn.MLP(4, 2, width_size=8, depth=1, key=jax.random.key(0))
        state = tx.init(eqx.filter(model, eqx.is_inexact_array))

        @eqx.filter_jit
        def step(model, state):
            loss_fn = lambda m: jnp.mean((jax.vmap(m)(X) - Y) ** 2)  # noqa: E731
            grads = eqx.filter_grad(loss_fn)(model)
            updates, state = tx.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
            return eqx.apply_updates(model, updates), state

        history = []
        for _ in range(STEPS):
            model, state = step(model, state)
            history.append(eqx.filter(model, eqx.is_inexact_array))
        return history

    ours = train(PAIRS[name][0]())
    theirs = train(PAIRS[name][1]())
    for a, b in zip(ours, theirs, strict=True):
        assert_trees_close(a, b)
