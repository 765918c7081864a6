"""ASGD's ``eta`` and ``mu`` follow the params' precision (the hyperparameters' dtype).

torch picks the dtype of these scalars from ``torch.get_default_dtype()``: float32 by
default, even for float64 params, and float64 after ``torch.set_default_dtype(float64)``.
optim_fn picks it from the params (``optim_fn.hyperparams.storage_dtype``), so a float64
run under x64 is compared with torch's float64-default run. With float32 ``eta``/``mu``
the two were 8e-9 apart (relative, params over 80 steps) and 2e-16 with float64 ones;
torch's default-dtype run is now the one 8e-9 away.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.torch as oft

torch = pytest.importorskip("torch")

STEPS, SWITCH = 80, 40
LR, LR_AFTER = 0.05, 0.03
# t0 = 20 so that mu < 1 (real averaging) for the last 60 steps.
KWARGS = {"lambd": 0.3, "alpha": 0.6, "t0": 20, "weight_decay": 0.2}
SHAPES = {"b": (5,), "w": (4, 3)}


@contextlib.contextmanager
def _torch_default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _data(dtype):
    rng = np.random.default_rng(11)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    noise = {k: rng.standard_normal((STEPS, *s)).astype(dtype) for k, s in SHAPES.items()}
    return params, noise


def _torch_run(params, noise):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.ASGD(list(tensors.values()), lr=LR, foreach=False, **KWARGS)
    trajectory = []
    for step in range(STEPS):
        if step == SWITCH:
            opt.param_groups[0]["lr"] = LR_AFTER
        for k, p in tensors.items():
            p.grad = 0.5 * p.detach() + torch.tensor(noise[k][step])
        opt.step()
        trajectory.append({k: p.detach().numpy().copy() for k, p in tensors.items()})
    return trajectory, {k: opt.state[p] for k, p in tensors.items()}


def _ours_run(params, noise):
    opt = oft.ASGD(lr=LR, **KWARGS)
    x = jax.tree.map(jnp.asarray, params)
    state = opt.init(x)
    update = jax.jit(opt.update)
    trajectory = []
    for step in range(STEPS):
        if step == SWITCH:
            state = optim_fn.set_hyperparams(state, lr=LR_AFTER)
        grads = jax.tree.map(lambda p, n, k=step: 0.5 * p + n[k], x, noise)
        updates, state = update(grads, state, x)
        x = optim_fn.apply_updates(x, updates)
        trajectory.append(jax.tree.map(np.asarray, x))
    return trajectory, state


def _relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / (1 + np.abs(b))))


def test_asgd_float64_eta_mu_match_torch_float64_to_1e13():
    params, noise = _data(np.float64)
    with _torch_default_dtype(torch.float64):
        reference, torch_state = _torch_run(params, noise)
    with jax.enable_x64(True):
        ours, state = _ours_run(params, noise)
        assert state.eta.dtype == jnp.float64 and state.mu.dtype == jnp.float64
        assert set(optim_fn.get_hyperparams(state)) == {
            "lr", "lambd", "alpha", "t0", "weight_decay"
        }
        step_error = max(
            _relative(o[k], r[k]) for o, r in zip(ours, reference, strict=True) for k in SHAPES
        )
        for k in SHAPES:
            assert _relative(state.ax[k], torch_state[k]["ax"].numpy()) <= 1e-13
        ts = torch_state["w"]
        assert ts["eta"].dtype == torch.float64
        np.testing.assert_allclose(float(state.eta), float(ts["eta"]), rtol=1e-14)
        np.testing.assert_allclose(float(state.mu), float(ts["mu"]), rtol=1e-14)
    # Measured 2.2e-16; float32 eta/mu gave 8.0e-9.
    assert step_error <= 1e-13, step_error
    # Averaging was on (mu < 1), so the average is checked, not a copy of the params.
    assert float(ts["mu"]) < 0.1
    assert np.max(np.abs(np.asarray(state.ax["w"]) - reference[-1]["w"])) > 1e-3


def test_asgd_float32_params_keep_float32_eta_mu():
    params, noise = _data(np.float32)
    reference, _ = _torch_run(params, noise)  # torch's default dtype: float32 scalars
    with jax.enable_x64(True):
        ours, state = _ours_run(params, noise)
    assert state.eta.dtype == jnp.float32 and state.mu.dtype == jnp.float32
    for k in SHAPES:
        assert ours[-1][k].dtype == np.float32
    error = max(_relative(o[k], r[k]) for o, r in zip(ours, reference, strict=True)
                for k in SHAPES)
    assert error <= 1e-6, error


def test_asgd_mixed_params_use_the_widest_dtype():
    with jax.enable_x64(True):
        opt = oft.ASGD(lr=LR, **KWARGS)
        params = {"a": jnp.ones(2, jnp.float32), "b": jnp.ones(3, jnp.float64)}
        state = opt.init(params)
        assert state.eta.dtype == jnp.float64 and state.mu.dtype == jnp.float64
        _, state = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
        assert state.eta.dtype == jnp.float64 and state.mu.dtype == jnp.float64
