"""State-dict interchange: torch -> optim_fn (and back), then 10 more steps on each side."""

from __future__ import annotations

import contextlib
import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.torch as oft

torch = pytest.importorskip("torch")

STEPS = 10
CONFIGS = [
    ("Adam", {"amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {}),
    ("SGD", {"momentum": 0.9, "dampening": 0.2}),
    ("RMSprop", {"centered": True, "momentum": 0.5}),
    ("Adagrad", {"lr_decay": 0.1}),
    ("Adadelta", {}),
    ("Adamax", {}),
    ("NAdam", {}),
    ("RAdam", {}),
    ("ASGD", {"t0": 5, "lambd": 0.1}),
    ("Rprop", {}),
]


def _data():
    rng = np.random.default_rng(0)
    params = {"b": rng.standard_normal(3), "w": rng.standard_normal((2, 3))}
    noise = {k: rng.standard_normal((2 * STEPS, *v.shape)) for k, v in params.items()}
    return params, noise


@contextlib.contextmanager
def _torch_precision(name):
    """ASGD keeps its ``eta``/``mu`` in the params' precision (float64 here, under x64);
    torch keeps them in its default dtype, so run torch with a float64 default for it."""
    if name != "ASGD":
        yield
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _torch_steps(opt, tensors, noise, steps):
    for step in steps:
        for k, p in tensors.items():
            p.grad = 0.5 * p.detach() + torch.tensor(noise[k][step])
        opt.step()


def _ours_steps(transform, state, x, noise, steps):
    update = jax.jit(transform.update)
    for step in steps:
        grads = jax.tree.map(lambda p, n, k=step: 0.5 * p + n[k], x, noise)
        updates, state = update(grads, state, x)
        x = optim_fn.apply_updates(x, updates)
    return state, x


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_torch_to_optim_fn_then_continue(name, kwargs):
    with _torch_precision(name):
        _torch_to_optim_fn_then_continue(name, kwargs)


def _torch_to_optim_fn_then_continue(name, kwargs):
    params, noise = _data()
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = getattr(torch.optim, name)(list(tensors.values()), lr=0.05, **kwargs)
    _torch_steps(opt, tensors, noise, range(STEPS))
    saved = copy.deepcopy(opt.state_dict())  # torch returns references to live state
    middle = {k: p.detach().numpy().copy() for k, p in tensors.items()}
    _torch_steps(opt, tensors, noise, range(STEPS, 2 * STEPS))
    with jax.enable_x64(True):
        # Built with a different lr: the saved group's lr must win.
        transform = getattr(oft, name)(lr=0.7, **kwargs)
        x = jax.tree.map(jnp.asarray, middle)
        state = oft.from_torch_state_dict(transform, x, saved)
        _, x = _ours_steps(transform, state, x, noise, range(STEPS, 2 * STEPS))
        for k, p in tensors.items():
            np.testing.assert_allclose(np.asarray(x[k]), p.detach().numpy(), rtol=1e-12,
                                       atol=1e-13)


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_optim_fn_to_torch_then_continue(name, kwargs):
    with _torch_precision(name):
        _optim_fn_to_torch_then_continue(name, kwargs)


def _optim_fn_to_torch_then_continue(name, kwargs):
    params, noise = _data()
    with jax.enable_x64(True):
        transform = getattr(oft, name)(lr=0.05, **kwargs)
        x = jax.tree.map(jnp.asarray, params)
        state, x = _ours_steps(transform, transform.init(x), x, noise, range(STEPS))
        middle = jax.tree.map(np.asarray, x)
        _, final = _ours_steps(transform, state, x, noise, range(STEPS, 2 * STEPS))
        tensors = {k: torch.tensor(v, requires_grad=True) for k, v in middle.items()}
        opt = getattr(torch.optim, name)(list(tensors.values()), lr=0.9, **kwargs)
        opt.load_state_dict(oft.to_torch_state_dict(state, x, opt.state_dict()))
        _torch_steps(opt, tensors, noise, range(STEPS, 2 * STEPS))
        for k, p in tensors.items():
            np.testing.assert_allclose(p.detach().numpy(), np.asarray(final[k]), rtol=1e-12,
                                       atol=1e-13)


def test_several_groups_are_refused_with_the_fix():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=0.01)
    with pytest.raises(ValueError, match="param_groups"):
        oft.from_torch_state_dict(oft.SGD(), {"a": jnp.zeros(2)}, opt.state_dict())
