"""torch's call shapes on optim_fn.torch: per-group scheduler lists, schedulers and
optimizers called the torch way, and the lr torch's ``param_groups`` shows."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.torch as oft
from optim_fn.torch import lr_scheduler as ours

torch = pytest.importorskip("torch")
sched = torch.optim.lr_scheduler

STEPS = 60
LRS = [0.1, 0.01]


def _two_groups(kind="sgd"):
    a = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    groups = [{"params": [a], "lr": LRS[0]}, {"params": [b], "lr": LRS[1]}]
    if kind == "adam":
        return torch.optim.Adam(groups, lr=0.5)
    return torch.optim.SGD(groups, lr=0.5, momentum=0.9)


def _torch_group_trace(make, kind="sgd"):
    """[group][step] of (lr, momentum or betas[0]) as torch's param_groups show them."""
    opt = _two_groups(kind)
    scheduler = make(opt)
    lrs, momenta = [[], []], [[], []]
    for _ in range(STEPS):
        for i, group in enumerate(opt.param_groups):
            lrs[i].append(group["lr"])
            momenta[i].append(group["betas"][0] if kind == "adam" else group["momentum"])
        opt.step()
        scheduler.step()
    return np.array(lrs), np.array(momenta)


def _ours_trace(schedule):
    with jax.enable_x64(True):
        return np.asarray(jax.vmap(schedule)(jnp.arange(STEPS)), dtype=np.float64)


PER_GROUP = {
    "OneCycleLR-max_lr": (
        lambda o: sched.OneCycleLR(o, max_lr=[0.5, 0.05], total_steps=STEPS),
        lambda: ours.OneCycleLR(max_lr=[0.5, 0.05], total_steps=STEPS),
        "sgd",
    ),
    "OneCycleLR-momenta": (
        lambda o: sched.OneCycleLR(o, [0.5, 0.05], total_steps=STEPS, base_momentum=[0.8, 0.7],
                                   max_momentum=[0.9, 0.95], three_phase=True),
        lambda: ours.OneCycleLR([0.5, 0.05], total_steps=STEPS, base_momentum=[0.8, 0.7],
                                max_momentum=[0.9, 0.95], three_phase=True),
        "adam",
    ),
    "CyclicLR": (
        lambda o: sched.CyclicLR(o, base_lr=[0.01, 0.001], max_lr=[0.1, 0.02], step_size_up=7,
                                 base_momentum=[0.8, 0.85]),
        lambda: ours.CyclicLR(base_lr=[0.01, 0.001], max_lr=[0.1, 0.02], step_size_up=7,
                              base_momentum=[0.8, 0.85]),
        "sgd",
    ),
    "LambdaLR": (
        lambda o: sched.LambdaLR(o, [lambda k: 0.97**k, lambda k: 1 / (1 + k)]),
        lambda: ours.LambdaLR(LRS, [lambda k: 0.97**k, lambda k: 1 / (1 + k)]),
        "sgd",
    ),
    "StepLR": (
        lambda o: sched.StepLR(o, step_size=7, gamma=0.5),
        lambda: ours.StepLR(LRS, step_size=7, gamma=0.5),
        "sgd",
    ),
    "SequentialLR": (
        lambda o: sched.SequentialLR(
            o, [sched.LinearLR(o, 0.1, 1.0, 10), sched.ExponentialLR(o, 0.95)], [10]
        ),
        lambda: ours.SequentialLR(
            [ours.LinearLR(LRS, 0.1, 1.0, 10), ours.ExponentialLR(LRS, 0.95)], [10]
        ),
        "sgd",
    ),
}


@pytest.mark.parametrize("case", list(PER_GROUP))
def test_per_group_lists_match_torch_group_by_group(case):
    make_torch, make_ours, kind = PER_GROUP[case]
    lrs, momenta = _torch_group_trace(make_torch, kind)
    schedule = make_ours()
    assert isinstance(schedule, ours.PerGroup) and len(schedule) == 2
    for i in range(2):
        np.testing.assert_allclose(_ours_trace(schedule[i]), lrs[i], rtol=1e-12, atol=1e-15)
        if schedule.momentum is not None:
            np.testing.assert_allclose(_ours_trace(schedule.momentum[i]), momenta[i],
                                       rtol=1e-12, atol=1e-15)


def test_per_group_one_cycle_trains_as_torch_through_param_groups():
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal(2), "b": rng.standard_normal(3)}
    noise = {k: rng.standard_normal((STEPS, *v.shape)) for k, v in params.items()}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.Adam([{"params": [tensors["a"]]}, {"params": [tensors["b"]]}], lr=0.5)
    scheduler = sched.OneCycleLR(opt, max_lr=[0.2, 0.02], total_steps=STEPS)
    for step in range(STEPS):
        for k, p in tensors.items():
            p.grad = 0.5 * p.detach() + torch.tensor(noise[k][step])
        opt.step()
        scheduler.step()
    with jax.enable_x64(True):
        cycle = ours.OneCycleLR(max_lr=[0.2, 0.02], total_steps=STEPS)
        transform = oft.param_groups(
            oft.Adam, [{"params": "a"}, {"params": "b"}], lr=cycle, betas=(cycle.momentum, 0.999)
        )
        x = jax.tree.map(jnp.asarray, params)
        state = transform.init(x)
        update = jax.jit(transform.update)
        for step in range(STEPS):
            grads = jax.tree.map(lambda p, n, k=step: 0.5 * p + n[k], x, noise)
            updates, state = update(grads, state, x)
            x = optim_fn.apply_updates(x, updates)
        for k, p in tensors.items():
            np.testing.assert_allclose(np.asarray(x[k]), p.detach().numpy(), rtol=1e-12)
        # torch's scheduler.get_last_lr(): one lr per group, the next step's.
        np.testing.assert_allclose(
            [float(v) for v in cycle.get_last_lr(state)[:1]], scheduler.get_last_lr()[:1],
            rtol=1e-12,
        )


def test_per_group_values_outside_param_groups_are_refused_with_the_spelling():
    cycle = ours.OneCycleLR(max_lr=LRS, total_steps=STEPS)
    with pytest.raises(TypeError, match=r"optim_fn\.torch\.param_groups\(optim_fn\.torch\.SGD"):
        oft.SGD(lr=cycle, momentum=0.9)
    with pytest.raises(TypeError, match="`betas` holds one schedule per param group"):
        oft.Adam(betas=(cycle.momentum, 0.999))
    with pytest.raises(ValueError, match="one value per group for 2 groups, but there are 3"):
        oft.param_groups(oft.SGD, [{"params": "a"}, {"params": "b"}, {"params": "*"}], lr=cycle)
    with pytest.raises(ValueError, match="one entry per param group"):
        ours.CyclicLR(base_lr=[0.1, 0.2], max_lr=[0.5, 0.6, 0.7])


def _spelling(message: str) -> str:
    return re.search(r"`(optim_fn\.torch\.[^`]*)`", message).group(1)


SCHEDULERS_THE_TORCH_WAY = {
    "StepLR-optim_fn": (
        lambda: ours.StepLR(oft.AdamW(lr=1e-3, weight_decay=0.05), step_size=3),
        "optim_fn.torch.AdamW(lr=optim_fn.torch.lr_scheduler.StepLR(0.001, step_size=3), "
        "weight_decay=0.05)",
    ),
    "StepLR-default-lr-positional": (
        lambda: ours.StepLR(oft.SGD(momentum=0.9), 3, 0.5),
        "optim_fn.torch.SGD(lr=optim_fn.torch.lr_scheduler.StepLR(0.001, step_size=3, "
        "gamma=0.5), momentum=0.9)",
    ),
    "StepLR-torch": (
        lambda: ours.StepLR(torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=3e-4),
                            step_size=3),
        "optim_fn.torch.AdamW(lr=optim_fn.torch.lr_scheduler.StepLR(0.0003, step_size=3))",
    ),
    "OneCycleLR": (
        lambda: ours.OneCycleLR(oft.SGD(lr=0.1, momentum=0.9), 0.5, total_steps=100),
        "optim_fn.torch.SGD(lr=optim_fn.torch.lr_scheduler.OneCycleLR(max_lr=0.5, "
        "total_steps=100), momentum=0.9)",
    ),
    "CosineAnnealingLR": (
        lambda: ours.CosineAnnealingLR(oft.Adam(lr=0.01), T_max=50),
        "optim_fn.torch.Adam(lr=optim_fn.torch.lr_scheduler.CosineAnnealingLR(0.01, T_max=50))",
    ),
}


@pytest.mark.parametrize("case", list(SCHEDULERS_THE_TORCH_WAY))
def test_scheduler_given_an_optimizer_shows_the_optim_fn_spelling(case):
    call, spelled = SCHEDULERS_THE_TORCH_WAY[case]
    with pytest.raises(TypeError, match="in optim_fn a scheduler is a schedule") as raised:
        call()
    message = str(raised.value)
    assert _spelling(message) == spelled
    # The spelling shown is working code.
    transform = eval(spelled, {"optim_fn": optim_fn})
    state = transform.init({"w": jnp.ones(3)})
    transform.update({"w": jnp.ones(3)}, state, {"w": jnp.ones(3)})


def test_sequential_and_chained_given_an_optimizer_say_to_drop_it():
    opt = oft.SGD(lr=0.1)
    parts = [ours.StepLR(0.1, 3), ours.ExponentialLR(0.1, 0.9)]
    with pytest.raises(TypeError, match=r"it takes no optimizer.*SequentialLR\(schedulers="):
        ours.SequentialLR(opt, parts, [5])
    with pytest.raises(TypeError, match=r"it takes no optimizer.*ChainedScheduler\("):
        ours.ChainedScheduler(parts, optimizer=opt)


OPTIMIZERS = [name for name in oft.__all__ if name[0].isupper()]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_given_params_says_to_drop_them(name):
    params = {"w": jnp.ones((2, 2))}
    with pytest.raises(TypeError, match=r"drop `params`.*opt.init\(params\).*opt.update\("):
        getattr(oft, name)(params, lr=0.5)


@pytest.mark.parametrize(
    "call,spelled",
    [
        (lambda: oft.AdamW(torch.nn.Linear(2, 2).parameters()), "optim_fn.torch.AdamW()"),
        (lambda: oft.AdamW([torch.zeros(2)], 1e-3, (0.9, 0.99)),
         "optim_fn.torch.AdamW(lr=0.001, betas=(0.9, 0.99))"),
        (lambda: oft.AdamW(torch.nn.Linear(2, 2), lr=1e-3), "optim_fn.torch.AdamW(lr=0.001)"),
        (lambda: oft.SGD([jnp.zeros(2)], lr=0.1, momentum=0.9),
         "optim_fn.torch.SGD(lr=0.1, momentum=0.9)"),
        (lambda: oft.Adam(jnp.zeros(3)), "optim_fn.torch.Adam()"),
    ],
    ids=["parameters", "positional", "module", "list", "array"],
)
def test_params_first_in_every_torch_shape_is_refused_with_the_spelling(call, spelled):
    with pytest.raises(TypeError, match="optim_fn optimizers are built without the params") as e:
        call()
    assert f"opt = {spelled}`" in str(e.value)
    eval(spelled, {"optim_fn": optim_fn})  # working code


def test_torch_param_group_dicts_point_to_param_groups():
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match=r"optim_fn\.torch\.param_groups\(optim_fn\.torch\.SGD"):
        oft.SGD([{"params": [p], "lr": 0.1}], lr=0.01)


def test_an_lr_first_positional_is_still_an_lr():
    for lr in (0.1, 1, jnp.float32(0.1), np.float64(0.1), ours.StepLR(0.1, 3)):
        oft.SGD(lr).init({"w": jnp.ones(2)})


def test_get_last_lr_is_what_torch_param_groups_show_after_scheduler_step():
    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    scheduler = sched.StepLR(opt, step_size=3, gamma=0.5)
    used, shown, last = [], [], []
    for _ in range(10):
        p.grad = torch.ones(2)
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
        shown.append(opt.param_groups[0]["lr"])
        last.append(scheduler.get_last_lr()[0])
    with jax.enable_x64(True):
        schedule = ours.StepLR(0.1, step_size=3, gamma=0.5)
        # In a chain behind clipping (inactive here), as a porting user writes it.
        transform = optim_fn.chain(oft.clip_grad_norm_(100.0), oft.SGD(lr=schedule, momentum=0.9))
        x = {"w": jnp.zeros(2)}
        state = transform.init(x)
        assert float(schedule.get_last_lr(state)[0]) == opt.defaults["lr"]  # before any step
        ours_used, ours_shown = [], []
        for _ in range(10):
            updates, state = transform.update({"w": jnp.ones(2)}, state, x)
            x = optim_fn.apply_updates(x, updates)
            ours_used.append(float(optim_fn.get_hyperparams(state)["lr"]))
            ours_shown.append(float(schedule.get_last_lr(state)[0]))
        np.testing.assert_allclose(ours_shown, shown, rtol=1e-15)
        np.testing.assert_allclose(ours_shown, last, rtol=1e-15)
        # get_hyperparams reports the lr the latest update used (torch's before step()).
        np.testing.assert_allclose(ours_used, used, rtol=1e-15)
        assert float(schedule.get_last_lr(10)[0]) == shown[-1]
        np.testing.assert_allclose(x["w"], p.detach().numpy(), rtol=1e-6)


def test_get_last_lr_per_group_is_torch_get_last_lr():
    opt = _two_groups()
    scheduler = sched.OneCycleLR(opt, max_lr=[0.5, 0.05], total_steps=STEPS)
    cycle = ours.OneCycleLR(max_lr=[0.5, 0.05], total_steps=STEPS)
    with jax.enable_x64(True):
        transform = oft.param_groups(oft.SGD, [{"params": "a"}, {"params": "b"}], lr=cycle,
                                     momentum=cycle.momentum)
        x = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
        state = transform.init(x)
        for _ in range(7):
            opt.step()
            scheduler.step()
            _, state = transform.update(jax.tree.map(jnp.ones_like, x), state, x)
        np.testing.assert_allclose([float(v) for v in cycle.get_last_lr(state)],
                                   scheduler.get_last_lr(), rtol=1e-12)
