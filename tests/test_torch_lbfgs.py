"""optim_fn.torch.LBFGS against torch.optim.LBFGS (fixed step and strong Wolfe), step by step."""

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


def test_unknown_line_search_is_a_clear_error():
    with pytest.raises(ValueError, match="line_search_fn"):
        oft.LBFGS(line_search_fn="backtracking")


# Strong-Wolfe line search: three objectives, each in torch and in JAX, on the flat vector.
_rng = np.random.default_rng(1)
_A = _rng.normal(size=(6, 6))
_Q = _A @ _A.T + 0.1 * np.eye(6)  # ill-conditioned SPD quadratic
_c = _rng.normal(size=6)
_X = _rng.normal(size=(40, 5))
_y = (_X @ _rng.normal(size=5) + 0.5 * _rng.normal(size=40) > 0).astype(np.float64)

_OBJECTIVES = {
    "rosenbrock": (
        lambda x: jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2),
        lambda x: torch.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2),
        lambda rng: rng.uniform(-1.5, 1.5, 6),
    ),
    "quadratic": (
        lambda x: 0.5 * x @ jnp.asarray(_Q) @ x - jnp.asarray(_c) @ x,
        lambda x: 0.5 * x @ torch.tensor(_Q) @ x - torch.tensor(_c) @ x,
        lambda rng: rng.normal(size=6),
    ),
    "logistic": (  # weights and bias, mean log-loss plus a small ridge
        lambda x: jnp.mean(jnp.logaddexp(0.0, jnp.asarray(_X) @ x[:5] + x[5])
                           - jnp.asarray(_y) * (jnp.asarray(_X) @ x[:5] + x[5]))
        + 1e-3 * jnp.sum(x[:5] ** 2),
        lambda x: torch.mean(torch.logaddexp(torch.tensor(0.0, dtype=torch.float64),
                                             torch.tensor(_X) @ x[:5] + x[5])
                             - torch.tensor(_y) * (torch.tensor(_X) @ x[:5] + x[5]))
        + 1e-3 * torch.sum(x[:5] ** 2),
        lambda rng: rng.normal(size=6),
    ),
}

_WOLFE_SETTINGS = [
    ("rosenbrock", {}),
    ("rosenbrock", {"history_size": 3, "max_iter": 5}),
    ("rosenbrock", {"lr": 0.5, "max_iter": 8, "max_eval": 9}),
    ("rosenbrock", {"lr": 30.0, "max_iter": 4}),  # zoom: old high becomes new low
    ("quadratic", {"lr": 0.1}),  # first trials too short: extrapolation
    ("quadratic", {"lr": 3.0, "history_size": 2, "max_iter": 3}),  # too long: zoom
    ("quadratic", {"lr": 1e-4, "max_iter": 6, "max_eval": 4}),  # search runs out of evals
    ("logistic", {"lr": 0.3}),
    ("logistic", {"lr": 2.0, "history_size": 4, "max_iter": 4}),
    ("logistic", {"lr": 1e3, "history_size": 2}),  # zoom: trial pushed off the bracket's end
]


@pytest.mark.parametrize(("objective", "kwargs"), _WOLFE_SETTINGS)
def test_strong_wolfe_matches_torch_step_by_step(objective, kwargs):
    loss_jax, loss_torch, draw_start = _OBJECTIVES[objective]
    start = draw_start(np.random.default_rng(2))
    x_t = torch.tensor(start, requires_grad=True)
    opt = torch.optim.LBFGS([x_t], line_search_fn="strong_wolfe", **kwargs)

    def closure():
        opt.zero_grad()
        loss = loss_torch(x_t)
        loss.backward()
        return loss

    lr = kwargs.get("lr", 1.0)
    with jax.enable_x64(True):
        transform = oft.LBFGS(line_search_fn="strong_wolfe", **kwargs)
        x = {"w": jnp.asarray(start)}
        state = transform.init(x)
        searched = False
        for _ in range(5):
            evals_before, iters_before = state.func_evals, state.n_iter
            torch_loss = float(opt.step(closure).detach())
            updates, state = transform.update(None, state, x,
                                              loss_fn=lambda p: loss_jax(p["w"]))
            x = optim_fn.apply_updates(x, updates)
            np.testing.assert_allclose(float(state.loss), torch_loss, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(np.asarray(x["w"]), x_t.detach().numpy(), rtol=1e-10,
                                       atol=1e-12)
            torch_state = opt.state[x_t]
            assert state.n_iter == torch_state["n_iter"]
            assert state.func_evals == torch_state["func_evals"]
            # On a GPU XLA sums float64 dot products in another order than torch's CPU
            # kernels: the line search's step differs by up to 1.4e-10 there (H100).
            t_rtol = 1e-10 if jax.default_backend() == "cpu" else 1e-9
            np.testing.assert_allclose(float(state.t), float(torch_state["t"]), rtol=t_rtol)
            # The search must have moved off the first trial step or tried several steps
            # (more evaluations than iterations) somewhere, or this tests nothing.
            searched |= float(state.t) != lr
            searched |= state.func_evals - evals_before > state.n_iter - iters_before + 1
        assert searched
        assert float(loss_jax(x["w"])) < float(loss_jax(jnp.asarray(start)))


def test_cubic_interpolate_matches_torch():
    from torch.optim.lbfgs import _cubic_interpolate

    from optim_fn.torch.lbfgs_strong_wolfe import cubic_interpolate

    rng = np.random.default_rng(3)
    branches = set()
    for _ in range(300):
        x1, x2, f1, f2, g1, g2 = rng.normal(size=6)
        bounds = None if rng.random() < 0.5 else tuple(sorted(rng.normal(size=2) * 3))
        expected = float(_cubic_interpolate(
            torch.tensor(x1, dtype=torch.float64), f1, torch.tensor(g1, dtype=torch.float64),
            torch.tensor(x2, dtype=torch.float64), f2, torch.tensor(g2, dtype=torch.float64),
            bounds=bounds))
        got = cubic_interpolate(float(x1), float(f1), float(g1), float(x2), float(f2),
                                float(g2), bounds=bounds)
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)
        d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
        branches.add(bool(d1**2 - g1 * g2 >= 0))
    assert branches == {True, False}
