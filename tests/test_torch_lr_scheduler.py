"""optim_fn.torch.lr_scheduler against torch.optim.lr_scheduler, 200 steps each.

The lr used by optimizer step k in torch is ``param_groups[0]["lr"]`` after k calls of
``scheduler.step()``; ours is ``schedule(k)``. float64 (x64 on) must agree to 1e-12.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.torch as oft
from optim_fn.torch import lr_scheduler as ours

torch = pytest.importorskip("torch")
sched = torch.optim.lr_scheduler

STEPS = 200
BASE = 0.1


def _optimizer(kind="sgd"):
    p = torch.zeros(2, requires_grad=True)
    if kind == "adam":
        return torch.optim.Adam([p], lr=BASE)
    return torch.optim.SGD([p], lr=BASE, momentum=0.9)


def _torch_trace(make, kind="sgd", key="lr"):
    opt = _optimizer(kind)
    scheduler = make(opt)
    values = []
    for _ in range(STEPS):
        group = opt.param_groups[0]
        values.append(group["betas"][0] if key == "betas" else group[key])
        opt.step()
        scheduler.step()
    return np.array(values, dtype=np.float64)


def _ours_trace(schedule):
    with jax.enable_x64(True):
        return np.asarray(jax.vmap(schedule)(jnp.arange(STEPS)), dtype=np.float64)


CASES = {
    "LambdaLR": (
        lambda o: sched.LambdaLR(o, lambda k: 1 / (1 + 0.05 * k)),
        ours.LambdaLR(BASE, lambda k: 1 / (1 + 0.05 * k)),
    ),
    "MultiplicativeLR": (
        lambda o: sched.MultiplicativeLR(o, lambda k: 0.99),
        ours.MultiplicativeLR(BASE, lambda k: 0.99 + 0.0 * k),
    ),
    "StepLR": (lambda o: sched.StepLR(o, 30, 0.5), ours.StepLR(BASE, 30, 0.5)),
    "MultiStepLR": (
        lambda o: sched.MultiStepLR(o, [10, 50, 50, 120], 0.3),
        ours.MultiStepLR(BASE, [10, 50, 50, 120], 0.3),
    ),
    "ConstantLR": (lambda o: sched.ConstantLR(o, 0.25, 17), ours.ConstantLR(BASE, 0.25, 17)),
    "LinearLR": (
        lambda o: sched.LinearLR(o, 0.1, 0.9, 50),
        ours.LinearLR(BASE, 0.1, 0.9, 50),
    ),
    "ExponentialLR": (lambda o: sched.ExponentialLR(o, 0.98), ours.ExponentialLR(BASE, 0.98)),
    "PolynomialLR": (
        lambda o: sched.PolynomialLR(o, 150, 2.0),
        ours.PolynomialLR(BASE, 150, 2.0),
    ),
    "CosineAnnealingLR": (
        lambda o: sched.CosineAnnealingLR(o, 45, 0.01),
        ours.CosineAnnealingLR(BASE, 45, 0.01),
    ),
    "CosineAnnealingWarmRestarts": (
        lambda o: sched.CosineAnnealingWarmRestarts(o, 10, 1, 0.001),
        ours.CosineAnnealingWarmRestarts(BASE, 10, 1, 0.001),
    ),
    "CosineAnnealingWarmRestarts-mult": (
        lambda o: sched.CosineAnnealingWarmRestarts(o, 5, 2, 0.001),
        ours.CosineAnnealingWarmRestarts(BASE, 5, 2, 0.001),
    ),
    "CyclicLR": (
        lambda o: sched.CyclicLR(o, 0.01, 0.1, 15, 25),
        ours.CyclicLR(0.01, 0.1, 15, 25),
    ),
    "CyclicLR-triangular2": (
        lambda o: sched.CyclicLR(o, 0.01, 0.1, 20, mode="triangular2"),
        ours.CyclicLR(0.01, 0.1, 20, mode="triangular2"),
    ),
    "CyclicLR-exp_range": (
        lambda o: sched.CyclicLR(o, 0.01, 0.1, 20, mode="exp_range", gamma=0.99),
        ours.CyclicLR(0.01, 0.1, 20, mode="exp_range", gamma=0.99),
    ),
    "OneCycleLR": (
        lambda o: sched.OneCycleLR(o, 0.5, total_steps=STEPS),
        ours.OneCycleLR(0.5, total_steps=STEPS),
    ),
    "OneCycleLR-3phase-linear": (
        lambda o: sched.OneCycleLR(
            o, 0.5, epochs=10, steps_per_epoch=20, three_phase=True, anneal_strategy="linear"
        ),
        ours.OneCycleLR(
            0.5, epochs=10, steps_per_epoch=20, three_phase=True, anneal_strategy="linear"
        ),
    ),
    "SequentialLR": (
        lambda o: sched.SequentialLR(
            o, [sched.LinearLR(o, 0.1, 1.0, 20), sched.ExponentialLR(o, 0.97)], [20]
        ),
        ours.SequentialLR(
            [ours.LinearLR(BASE, 0.1, 1.0, 20), ours.ExponentialLR(BASE, 0.97)], [20]
        ),
    ),
    "SequentialLR-3": (
        lambda o: sched.SequentialLR(
            o,
            [sched.ConstantLR(o, 0.5, 10), sched.ExponentialLR(o, 0.97),
             sched.CosineAnnealingLR(o, 40)],
            [30, 90],
        ),
        ours.SequentialLR(
            [ours.ConstantLR(BASE, 0.5, 10), ours.ExponentialLR(BASE, 0.97),
             ours.CosineAnnealingLR(BASE, 40)],
            [30, 90],
        ),
    ),
    "ChainedScheduler": (
        lambda o: sched.ChainedScheduler(
            [sched.ConstantLR(o, 0.5, 40), sched.ExponentialLR(o, 0.99),
             sched.StepLR(o, 50, 0.5)]
        ),
        ours.ChainedScheduler(
            [ours.ConstantLR(BASE, 0.5, 40), ours.ExponentialLR(BASE, 0.99),
             ours.StepLR(BASE, 50, 0.5)]
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_schedule_matches_torch(name):
    make, schedule = CASES[name]
    expected = _torch_trace(make)
    got = _ours_trace(schedule)
    # Non-constant, or the comparison would prove little.
    assert np.ptp(expected) > 1e-3
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "name,kind,key",
    [("CyclicLR", "sgd", "momentum"), ("CyclicLR", "adam", "betas"),
     ("OneCycleLR", "sgd", "momentum"), ("OneCycleLR", "adam", "betas")],
)
def test_cycled_momentum_matches_torch(name, kind, key):
    make, schedule = CASES[name]
    expected = _torch_trace(make, kind, key)
    got = _ours_trace(schedule.momentum)
    assert np.ptp(expected) > 1e-3
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_schedule_drives_an_optimizer_like_torch():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((60, 3))
    p = torch.tensor(rng.standard_normal(3), requires_grad=True)
    start = p.detach().numpy().copy()
    opt = torch.optim.Adam([p], lr=0.5)
    scheduler = sched.OneCycleLR(opt, 0.5, total_steps=60)
    for k in range(60):
        p.grad = 0.5 * p.detach() + torch.tensor(noise[k])
        opt.step()
        scheduler.step() if k < 59 else None
    schedule = ours.OneCycleLR(0.5, total_steps=60)
    with jax.enable_x64(True):
        transform = oft.Adam(lr=schedule, betas=(schedule.momentum, 0.999))
        x = jnp.asarray(start)
        state = transform.init(x)
        step = jax.jit(transform.update)
        for k in range(60):
            updates, state = step(0.5 * x + noise[k], state, x)
            x = optim_fn.apply_updates(x, updates)
        np.testing.assert_allclose(np.asarray(x), p.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_reduce_lr_on_plateau_matches_torch():
    # Flat then improving then flat metrics: triggers patience, cooldown and min_lr.
    metrics = [1.0] * 12 + [0.5 - 0.01 * k for k in range(10)] + [0.4] * 40
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((len(metrics), 4))
    kwargs = {"factor": 0.5, "patience": 2, "cooldown": 1, "min_lr": 0.01, "threshold": 1e-3}
    p = torch.tensor(rng.standard_normal(4), requires_grad=True)
    start = p.detach().numpy().copy()
    opt = torch.optim.SGD([p], lr=0.2, momentum=0.9)
    scheduler = sched.ReduceLROnPlateau(opt, **kwargs)
    torch_lrs, torch_params = [], []
    for k, metric in enumerate(metrics):
        p.grad = 0.5 * p.detach() + torch.tensor(noise[k])
        opt.step()
        scheduler.step(metric)
        torch_lrs.append(opt.param_groups[0]["lr"])
        torch_params.append(p.detach().numpy().copy())
    with jax.enable_x64(True):
        transform = ours.ReduceLROnPlateau(oft.SGD(lr=0.2, momentum=0.9), **kwargs)
        x = jnp.asarray(start)
        state = transform.init(x)
        step = jax.jit(transform.update)
        lrs, xs = [], []
        for k, metric in enumerate(metrics):
            updates, state = step(0.5 * x + noise[k], state, x, metric=metric)
            x = optim_fn.apply_updates(x, updates)
            lrs.append(float(state.lr))
            xs.append(np.asarray(x))
    assert len(set(torch_lrs)) >= 4 and min(torch_lrs) == 0.01
    np.testing.assert_allclose(lrs, torch_lrs, rtol=1e-15)
    np.testing.assert_allclose(np.stack(xs), np.stack(torch_params), rtol=1e-12, atol=1e-14)


def test_reduce_lr_on_plateau_requires_the_metric():
    transform = ours.ReduceLROnPlateau(oft.SGD(lr=0.1))
    state = transform.init(jnp.ones(2))
    with pytest.raises(ValueError, match="metric"):
        transform.update(jnp.ones(2), state, jnp.ones(2))


@pytest.mark.parametrize(
    "build",
    [
        lambda: ours.ConstantLR(BASE, factor=1.5),
        lambda: ours.LinearLR(BASE, start_factor=0.0),
        lambda: ours.LinearLR(BASE, end_factor=2.0),
        lambda: ours.CosineAnnealingWarmRestarts(BASE, T_0=0),
        lambda: ours.CosineAnnealingWarmRestarts(BASE, T_0=5, T_mult=0),
        lambda: ours.OneCycleLR(0.1),
        lambda: ours.OneCycleLR(0.1, total_steps=10, pct_start=1.5),
        lambda: ours.OneCycleLR(0.1, total_steps=10, anneal_strategy="exp"),
        lambda: ours.CyclicLR(0.1, 1.0, mode="sine"),
        lambda: ours.SequentialLR([ours.StepLR(BASE, 2)], [3]),
        lambda: ours.ChainedScheduler([ours.LambdaLR(BASE, lambda k: 1.0)]),
        lambda: ours.ReduceLROnPlateau(oft.SGD(), factor=1.0),
        lambda: ours.ReduceLROnPlateau(oft.SGD(), mode="up"),
    ],
)
def test_invalid_arguments_raise_value_error(build):
    with pytest.raises(ValueError, match="`"):
        build()


def test_period_of_cosine_annealing_is_two_t_max():
    # torch's CosineAnnealingLR is not clamped after T_max: it rises again.
    values = _ours_trace(ours.CosineAnnealingLR(BASE, 10))
    assert math.isclose(values[10], 0.0, abs_tol=1e-15)
    assert math.isclose(values[20], BASE, rel_tol=1e-12)
