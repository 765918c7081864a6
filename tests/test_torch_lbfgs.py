"""optim_fn.torch.LBFGS against torch.optim.LBFGS (no line search), step by step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.torch as oft

torch = pytest.importorskip("torch")


def _loss_jax(p):
    x = jnp.concatenate([p["a"], p["b"].ravel()])
    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2) + 0.1 * jnp.sum(x**4)


def _loss_torch(a, b):
    x = torch.cat([a, b.reshape(-1)])
    return torch.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2) + 0.1 * torch.sum(x**4)


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": 0.1}, {"lr": 0.05, "history_size": 3, "max_iter": 7},
     {"lr": 0.2, "max_iter": 4, "max_eval": 3, "tolerance_change": 1e-6}],
)
def test_matches_torch_over_several_steps(kwargs):
    rng = np.random.default_rng(0)
    start = {"a": rng.uniform(-0.5, 0.5, 3), "b": rng.uniform(-0.5, 0.5, (2, 2))}
    a = torch.tensor(start["a"], requires_grad=True)
    b = torch.tensor(start["b"], requires_grad=True)
    opt = torch.optim.LBFGS([a, b], **kwargs)

    def closure():
        opt.zero_grad()
        loss = _loss_torch(a, b)
        loss.backward()
        return loss

    with jax.enable_x64(True):
        transform = oft.LBFGS(**kwargs)
        x = jax.tree.map(jnp.asarray, start)
        state = transform.init(x)
        moved = False
        for _ in range(6):
            torch_loss = float(opt.step(closure).detach())
            updates, state = transform.update(None, state, x, loss_fn=_loss_jax)
            x = optim_fn.apply_updates(x, updates)
            np.testing.assert_allclose(float(state.loss), torch_loss, rtol=1e-12)
            np.testing.assert_allclose(np.asarray(x["a"]), a.detach().numpy(), rtol=1e-10,
                                       atol=1e-12)
            np.testing.assert_allclose(np.asarray(x["b"]), b.detach().numpy(), rtol=1e-10,
                                       atol=1e-12)
            torch_state = opt.state[opt.param_groups[0]["params"][0]]
            assert state.n_iter == torch_state["n_iter"]
            assert state.func_evals == torch_state["func_evals"]
            moved |= bool(np.max(np.abs(np.asarray(x["a"]) - start["a"])) > 1e-2)
        assert moved


def test_needs_the_loss_function():
    transform = oft.LBFGS()
    x = {"a": jnp.ones(2)}
    with pytest.raises(ValueError, match="loss_fn"):
        transform.update(None, transform.init(x), x)


def test_strong_wolfe_not_yet_is_a_clear_error():
    with pytest.raises(ValueError, match="line_search_fn"):
        oft.LBFGS(line_search_fn="strong_wolfe")
