"""optim_fn.torch.clip_grad_norm_ / clip_grad_value_ against torch.nn.utils."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.torch as oft

torch = pytest.importorskip("torch")

SHAPES = {"a": (4, 3), "b": (5,), "c": (2, 2, 2)}


def _grads(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def _torch_clip(grads, max_norm, norm_type):
    params = {k: torch.zeros(v.shape, dtype=torch.from_numpy(v).dtype, requires_grad=True)
              for k, v in grads.items()}
    for k, p in params.items():
        p.grad = torch.tensor(grads[k])
    total = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm, norm_type)
    return {k: p.grad.numpy() for k, p in params.items()}, float(total)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-14), (np.float32, 1e-6)])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.5])
@pytest.mark.parametrize("ratio", [0.5, 1.0, 10.0])
def test_clip_grad_norm_matches_torch(dtype, rtol, norm_type, ratio):
    grads = _grads(dtype)
    _, total = _torch_clip(grads, 1e30, norm_type)
    max_norm = ratio * total  # below, at and above the norm: the 1e-6 term shows at 1.0
    expected, expected_total = _torch_clip(grads, max_norm, norm_type)
    with jax.enable_x64(dtype == np.float64):
        transform = oft.clip_grad_norm_(max_norm, norm_type)
        state = transform.init(grads)
        clipped, state = transform.update(jax.tree.map(jnp.asarray, grads), state)
        clipped = jax.tree.map(np.asarray, clipped)
        reported = float(state.total_norm)
    np.testing.assert_allclose(reported, expected_total, rtol=rtol)
    for k in SHAPES:
        assert clipped[k].dtype == dtype
        np.testing.assert_allclose(clipped[k], expected[k], rtol=rtol, atol=0)
    if ratio == 1.0:
        # At max_norm == norm torch still scales down, by 1/(1 + 1e-6/norm).
        assert np.all(np.abs(clipped["a"]) <= np.abs(grads["a"]))
        assert np.any(clipped["a"] != grads["a"])


def test_get_total_norm_matches_torch():
    grads = _grads(np.float64, seed=1)
    with jax.enable_x64(True):
        ours = float(oft.get_total_norm(jax.tree.map(jnp.asarray, grads), 3.0))
    theirs = float(torch.nn.utils.get_total_norm([torch.tensor(g) for g in grads.values()], 3.0))
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)


def test_nonfinite_norm_gives_nan_or_raises_as_torch():
    grads = {"a": jnp.array([1.0, jnp.inf]), "b": jnp.ones(2)}
    transform = oft.clip_grad_norm_(1.0)
    clipped, state = transform.update(grads, transform.init(grads))
    assert np.isinf(float(state.total_norm))
    assert np.isnan(np.asarray(clipped["a"])).any()  # inf * 0, as torch
    strict = oft.clip_grad_norm_(1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        jax.block_until_ready(strict.update(grads, strict.init(grads)))
    # Finite gradients go through the strict version.
    fine = {"a": jnp.ones(2), "b": jnp.ones(2)}
    out, _ = strict.update(fine, strict.init(fine))
    np.testing.assert_allclose(out["a"], 1 / (2 + 1e-6), rtol=1e-6)


def test_clip_grad_value_matches_torch():
    grads = _grads(np.float32, seed=2)
    params = [torch.zeros(v.shape, requires_grad=True) for v in grads.values()]
    for p, g in zip(params, grads.values(), strict=True):
        p.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_(params, 0.7)
    transform = oft.clip_grad_value_(0.7)
    clipped, _ = transform.update(grads, transform.init(grads))
    for p, k in zip(params, grads, strict=True):
        np.testing.assert_array_equal(np.asarray(clipped[k]), p.grad.numpy())
    assert np.max(np.abs(grads["a"])) > 0.7


def test_clip_in_a_chain_matches_torch_training_step():
    rng = np.random.default_rng(3)
    start = rng.standard_normal(6)
    noise = rng.standard_normal((20, 6)) * 5
    p = torch.tensor(start, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    for k in range(20):
        p.grad = 0.5 * p.detach() + torch.tensor(noise[k])
        torch.nn.utils.clip_grad_norm_([p], 1.0)
        opt.step()
    with jax.enable_x64(True):
        transform = optim_fn.chain(oft.clip_grad_norm_(1.0), oft.SGD(lr=0.1, momentum=0.9))
        x = jnp.asarray(start)
        state = transform.init(x)
        step = jax.jit(transform.update)
        for k in range(20):
            updates, state = step(0.5 * x + noise[k], state, x)
            x = optim_fn.apply_updates(x, updates)
        np.testing.assert_allclose(np.asarray(x), p.detach().numpy(), rtol=1e-13)


@pytest.mark.parametrize(
    "build", [lambda: oft.clip_grad_norm_("big"), lambda: oft.clip_grad_value_(None)]
)
def test_bad_arguments_name_the_argument(build):
    with pytest.raises(ValueError, match="`"):
        build()
