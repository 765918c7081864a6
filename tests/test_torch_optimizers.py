"""optim_fn.torch's optimizers step by step against torch.optim itself.

Each configuration runs 60 steps on a small tree (a 4x3 weight and a 5-vector bias) with
gradients that depend on the params (``g = 0.5 p + noise_k``), in torch and in optim_fn,
and compares the params after every step. At step 30 the learning rate is changed, in
torch through ``param_groups`` and here through ``optim_fn.set_hyperparams``. float64
(x64 on) must agree to 1e-12 and float32 to 1e-6, relative to ``1 + |p|``.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_catalogue import compile_options

import optim_fn
import optim_fn.torch as oft

torch = pytest.importorskip("torch")

STEPS = 60
SWITCH = 30
LR, LR_AFTER = 0.05, 0.02
SHAPES = {"b": (5,), "w": (4, 3), "x": (2, 3, 4)}
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-6, np.complex128: 1e-12, np.complex64: 1e-6}

CONFIGS = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"weight_decay": 0.1}),
    ("SGD", {"momentum": 0.8, "nesterov": True, "weight_decay": 0.1, "maximize": True}),
    ("SGD", {"momentum": 0.9, "dampening": 0.3, "weight_decay": 0.05, "foreach": False}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("Adam", {"amsgrad": True, "maximize": True, "weight_decay": 0.1}),
    ("Adam", {"betas": (0.8, 0.99), "eps": 1e-3, "fused": False, "capturable": False}),
    ("AdamW", {}),
    ("AdamW", {"amsgrad": True, "weight_decay": 0.2}),
    ("AdamW", {"maximize": True, "betas": (0.5, 0.9)}),
    ("Adagrad", {}),
    ("Adagrad", {"lr_decay": 0.1}),
    ("Adagrad", {"initial_accumulator_value": 0.5, "eps": 1e-3}),
    ("Adagrad", {"weight_decay": 0.1, "maximize": True, "lr_decay": 0.01}),
    ("RMSprop", {}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "weight_decay": 0.1}),
    ("RMSprop", {"alpha": 0.9, "maximize": True, "eps": 1e-3}),
    ("Adadelta", {}),
    ("Adadelta", {"weight_decay": 0.1, "rho": 0.5}),
    ("Adadelta", {"maximize": True, "eps": 1e-3, "differentiable": False}),
    ("Adamax", {}),
    ("Adamax", {"weight_decay": 0.1, "maximize": True, "betas": (0.8, 0.99)}),
    ("RAdam", {}),
    ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"eps": 1e-3, "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {}),
    ("NAdam", {"momentum_decay": 1e9}),
    ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("NAdam", {"weight_decay": 0.1, "betas": (0.8, 0.99)}),
    ("ASGD", {}),
    ("ASGD", {"lambd": 0.1, "t0": 10, "weight_decay": 0.1, "alpha": 0.5}),
    ("ASGD", {"lambd": 0.01, "maximize": True}),
    ("Rprop", {}),
    ("Rprop", {"etas": (0.3, 1.5), "step_sizes": (1e-3, 1.0), "maximize": True}),
    ("Rprop", {"step_sizes": (1e-3, 0.01)}),  # lr above the max: torch clamps at step 1
    ("Adafactor", {}),
    ("Adafactor", {"weight_decay": 0.1, "d": 1.5, "beta2_decay": -0.5}),
    ("Adafactor", {"eps": (1e-6, 1e-2), "maximize": True}),
]
# Rprop reads lr only at init: torch ignores later changes, and here lr is not state.
FIXED_LR = {"Rprop"}

COMPLEX_CONFIGS = [
    ("Adam", {}),
    ("Adam", {"amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {"amsgrad": True}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("RMSprop", {"centered": True, "momentum": 0.5}),
    ("Adagrad", {"lr_decay": 0.1, "initial_accumulator_value": 0.5}),
    ("Adadelta", {"weight_decay": 0.1}),
    ("Rprop", {}),
    ("Adamax", {}),
    ("RAdam", {"weight_decay": 0.1}),
    ("NAdam", {"decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("ASGD", {"lambd": 0.1, "t0": 10}),
]


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)

    def draw(shape):
        x = rng.standard_normal(shape)
        if np.issubdtype(dtype, np.complexfloating):
            x = x + 1j * rng.standard_normal(shape)
        return x.astype(dtype)

    params = {k: draw(s) for k, s in SHAPES.items()}
    noise = {k: draw((STEPS, *s)) for k, s in SHAPES.items()}
    return params, noise


@contextlib.contextmanager
def _torch_default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _torch_scalars_like(name, dtype):
    """torch's default dtype for a run that should match ours at ``dtype``.

    ASGD keeps eta and mu in the params' precision here; torch keeps them in its default
    dtype (float32 even for float64 params), so 64-bit runs compare with torch in float64.
    """
    wide = name == "ASGD" and np.finfo(dtype).bits == 64
    return _torch_default_dtype(torch.float64) if wide else contextlib.nullcontext()


def _torch_run(name, kwargs, params, noise, lr_changes=True):
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = getattr(torch.optim, name)(list(tensors.values()), lr=LR, **kwargs)
    trajectory = []
    for step in range(STEPS):
        if step == SWITCH and lr_changes:
            for group in opt.param_groups:
                group["lr"] = LR_AFTER
        for k, p in tensors.items():
            p.grad = 0.5 * p.detach() + torch.tensor(noise[k][step])
        opt.step()
        trajectory.append({k: p.detach().numpy().copy() for k, p in tensors.items()})
    return {k: np.stack([t[k] for t in trajectory]) for k in params}


def _compiled_per_signature(function):
    """``function`` jitted, compiled once per signature of its arguments.

    64-bit runs are compiled with XLA's cheaper CPU pipeline (test_catalogue's options:
    ~3x faster compiles), whose rounding differences are far below their 1e-12 tolerance;
    32-bit runs, whose 1e-6 is near float32 rounding, with the default pipeline, as users
    run them (the cheaper one moves SGD-5-f32 to 1.16e-6).
    """
    jitted, programs = jax.jit(function), {}

    def call(params, *args):
        leaves = jax.tree.leaves((params, *args))
        key = (jax.tree.structure((params, *args)), tuple(map(jax.typeof, leaves)))
        if key not in programs:
            wide = all(jnp.finfo(x.dtype).bits == 64 for x in jax.tree.leaves(params))
            programs[key] = jitted.lower(params, *args).compile(compile_options() if wide else None)
        return programs[key](params, *args)

    return call


@functools.cache
def _runner(name, frozen_kwargs):
    opt = getattr(oft, name)(lr=LR, **dict(frozen_kwargs))

    @_compiled_per_signature
    def run(params, state, noise):
        def step(carry, noise_k):
            params, state = carry
            grads = jax.tree.map(lambda p, n: 0.5 * p + n, params, noise_k)
            updates, state = opt.update(grads, state, params)
            params = optim_fn.apply_updates(params, updates)
            return (params, state), params

        (params, state), trajectory = jax.lax.scan(step, (params, state), noise)
        return params, state, trajectory

    return opt, run


def _ours_run(name, kwargs, params, noise, lr_changes=True):
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
    opt, run = _runner(name, frozen)
    params = jax.tree.map(jnp.asarray, params)
    state = opt.init(params)
    first = jax.tree.map(lambda n: n[:SWITCH], noise)
    rest = jax.tree.map(lambda n: n[SWITCH:], noise)
    params, state, head = run(params, state, first)
    if lr_changes:
        state = optim_fn.set_hyperparams(state, lr=LR_AFTER)
    params, state, tail = run(params, state, rest)
    return jax.tree.map(lambda a, b: np.concatenate([a, b]), head, tail), state


def relative_error(ours, reference):
    return max(
        float(np.max(np.abs(ours[k] - reference[k]) / (1 + np.abs(reference[k]))))
        for k in reference
    )


def _compare(name, kwargs, dtype):
    params, noise = _data(dtype)
    lr_changes = name not in FIXED_LR
    with _torch_scalars_like(name, dtype):
        reference = _torch_run(name, kwargs, params, noise, lr_changes)
    with jax.enable_x64(np.finfo(dtype).bits == 64):
        ours, _ = _ours_run(name, kwargs, params, noise, lr_changes)
    for k in SHAPES:
        assert ours[k].dtype == dtype
    # The runs must actually move, or agreement would be vacuous.
    assert np.max(np.abs(reference["w"][-1] - params["w"])) > 1e-3
    return relative_error(ours, reference)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "name,kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)]
)
def test_matches_torch_step_by_step(name, kwargs, dtype):
    error = _compare(name, kwargs, dtype)
    tolerance = TOLERANCE[dtype]
    if name == "NAdam" and dtype == np.float32:
        # NAdam's step coefficients (1-mu)/(1-P), mu'/(1-P mu') are float32 here and
        # Python doubles in torch: measured up to 1.04e-6 over 60 steps.
        tolerance = 2e-6
    if jax.default_backend() != "cpu" and dtype in (np.float32, np.complex64):
        # XLA:GPU contracts a*b+c into fused multiply-adds: one rounding fewer per step than
        # torch's CPU kernels, measured up to 1.2e-6 over 60 steps on an H100.
        tolerance = max(tolerance, 4e-6)
    assert error <= tolerance, (name, kwargs, error)


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64], ids=["c128", "c64"])
@pytest.mark.parametrize(
    "name,kwargs",
    COMPLEX_CONFIGS,
    ids=[f"{n}-{i}" for i, (n, _) in enumerate(COMPLEX_CONFIGS)],
)
def test_complex_params_match_torch(name, kwargs, dtype):
    error = _compare(name, kwargs, dtype)
    assert error <= TOLERANCE[dtype], (name, kwargs, error)


def test_hyperparams_are_state_data_under_torch_names():
    opt = oft.Adam(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)
    state = opt.init({"w": jnp.zeros(3)})
    values = optim_fn.get_hyperparams(state)
    assert set(values) == {"lr", "beta1", "beta2", "eps", "weight_decay"}
    np.testing.assert_allclose(float(values["beta2"]), 0.95, rtol=1e-7)
    state = optim_fn.set_hyperparams(state, lr=0.5)
    assert float(optim_fn.get_hyperparams(state)["lr"]) == 0.5


def test_scheduled_lr_matches_torch_lambda_lr():
    # A schedule of the step count is torch's LambdaLR stepped once per optimizer step.
    params, noise = _data(np.float64, seed=3)
    factor = lambda k: 1.0 / (1.0 + 0.1 * k)  # noqa: E731
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.SGD(list(tensors.values()), lr=LR, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    for step in range(STEPS):
        for k, p in tensors.items():
            p.grad = 0.5 * p.detach() + torch.tensor(noise[k][step])
        opt.step()
        scheduler.step()
    with jax.enable_x64(True):
        ours_opt = oft.SGD(lr=lambda count: LR * factor(count), momentum=0.9)
        p = jax.tree.map(jnp.asarray, params)
        state = ours_opt.init(p)
        step_fn = jax.jit(ours_opt.update)
        for step in range(STEPS):
            grads = jax.tree.map(lambda x, n, k=step: 0.5 * x + n[k], p, noise)
            updates, state = step_fn(grads, state, p)
            p = optim_fn.apply_updates(p, updates)
        error = relative_error(jax.tree.map(np.asarray, p), {
            k: t.detach().numpy() for k, t in tensors.items()
        })
    assert error <= 1e-12


def test_sgd_first_momentum_step_is_the_gradient():
    # torch's quirk: the buffer starts as g_1 itself, not dampened and not (1-d) g_1.
    opt = oft.SGD(lr=1.0, momentum=0.9, dampening=0.5)
    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    updates, state = opt.update({"w": jnp.array([2.0, -4.0])}, state, params)
    np.testing.assert_array_equal(updates["w"], [-2.0, 4.0])
    updates, _ = opt.update({"w": jnp.array([2.0, -4.0])}, state, params)
    np.testing.assert_allclose(updates["w"], [-(0.9 * 2 + 0.5 * 2), 0.9 * 4 + 0.5 * 4])


def test_no_momentum_buffer_without_momentum():
    state = oft.SGD(lr=0.1).init({"w": jnp.ones(2)})
    assert state.momentum_buffer is None
    state = oft.RMSprop().init({"w": jnp.ones(2)})
    assert state.grad_avg is None and state.momentum_buffer is None


def test_update_without_params_names_the_fix():
    opt = oft.Adam()
    state = opt.init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="needs the params"):
        opt.update({"w": jnp.ones(2)}, state)


def test_asgd_average_matches_torch():
    params, noise = _data(np.float64, seed=1)
    kwargs = {"lambd": 0.1, "t0": 10}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    with _torch_scalars_like("ASGD", np.float64):  # float64 eta and mu, as ours
        opt = torch.optim.ASGD(list(tensors.values()), lr=LR, **kwargs)
        for step in range(STEPS):
            for k, p in tensors.items():
                p.grad = 0.5 * p.detach() + torch.tensor(noise[k][step])
            opt.step()
    with jax.enable_x64(True):
        _, state = _ours_run("ASGD", kwargs, params, noise, lr_changes=False)
        for k, p in tensors.items():
            torch_state = opt.state[p]
            np.testing.assert_allclose(state.ax[k], torch_state["ax"].numpy(), rtol=1e-12)
            assert state.eta.dtype == jnp.float64 and state.mu.dtype == jnp.float64
            np.testing.assert_allclose(float(state.eta), float(torch_state["eta"]), rtol=1e-14)
            np.testing.assert_allclose(float(state.mu), float(torch_state["mu"]), rtol=1e-14)
        average = np.asarray(state.ax["w"])
    # The average differs from the last iterate once t > t0, or this checks nothing.
    assert np.max(np.abs(average - tensors["w"].detach().numpy())) > 1e-4


def test_nadam_mu_product_is_float32_as_torch():
    params, noise = _data(np.float64, seed=2)
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.NAdam(list(tensors.values()), lr=LR)
    for step in range(STEPS):
        for k, p in tensors.items():
            p.grad = 0.5 * p.detach() + torch.tensor(noise[k][step])
        opt.step()
    with jax.enable_x64(True):
        _, state = _ours_run("NAdam", {}, params, noise, lr_changes=False)
    assert state.mu_product.dtype == jnp.float32
    assert float(state.mu_product) == float(opt.state[tensors["w"]]["mu_product"])


def test_rprop_ignores_lr_after_init_like_torch():
    state = oft.Rprop(lr=0.1).init({"w": jnp.ones(2)})
    assert "lr" not in optim_fn.get_hyperparams(state)
    with pytest.raises(KeyError, match="lr"):
        optim_fn.set_hyperparams(state, lr=1.0)


def test_defaults_match_torch():
    import inspect

    names = [name for name in oft.__all__ if name[0].isupper()]
    assert len(names) == 15
    for name in names:
        ours = inspect.signature(getattr(oft, name)).parameters
        theirs = dict(inspect.signature(getattr(torch.optim, name)).parameters)
        theirs.pop("params")
        assert list(ours) == list(theirs), name
        for key, parameter in theirs.items():
            assert ours[key].default == parameter.default, (name, key)
            assert ours[key].kind == parameter.kind, (name, key)


INVALID = [
    ("SGD", {"lr": -0.1}),
    ("SGD", {"momentum": -0.5}),
    ("SGD", {"weight_decay": -1.0}),
    ("SGD", {"nesterov": True}),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    ("Adam", {"lr": -1e-3}),
    ("Adam", {"eps": -1.0}),
    ("Adam", {"betas": (1.0, 0.999)}),
    ("Adam", {"betas": (0.9, -0.1)}),
    ("Adam", {"weight_decay": -0.1}),
    ("AdamW", {"betas": (0.9, 1.5)}),
    ("AdamW", {"weight_decay": -0.1}),
    ("Adagrad", {"lr": -1.0}),
    ("Adagrad", {"lr_decay": -1.0}),
    ("Adagrad", {"weight_decay": -1.0}),
    ("Adagrad", {"initial_accumulator_value": -1.0}),
    ("Adagrad", {"eps": -1.0}),
    ("RMSprop", {"lr": -1.0}),
    ("RMSprop", {"eps": -1.0}),
    ("RMSprop", {"momentum": -1.0}),
    ("RMSprop", {"weight_decay": -1.0}),
    ("RMSprop", {"alpha": -1.0}),
    ("Adadelta", {"lr": -1.0}),
    ("Adadelta", {"rho": 1.5}),
    ("Adadelta", {"eps": -1.0}),
    ("Adadelta", {"weight_decay": -1.0}),
    ("Adamax", {"lr": -1.0}),
    ("Adamax", {"eps": -1.0}),
    ("Adamax", {"betas": (1.0, 0.999)}),
    ("Adamax", {"betas": (0.9, 1.0)}),
    ("Adamax", {"weight_decay": -1.0}),
    ("RAdam", {"lr": -1.0}),
    ("RAdam", {"eps": -1.0}),
    ("RAdam", {"betas": (-0.1, 0.999)}),
    ("RAdam", {"weight_decay": -1.0}),
    ("NAdam", {"lr": -1.0}),
    ("NAdam", {"eps": -1.0}),
    ("NAdam", {"betas": (0.9, 1.0)}),
    ("NAdam", {"weight_decay": -1.0}),
    ("NAdam", {"momentum_decay": -1.0}),
    ("ASGD", {"lr": -1.0}),
    ("ASGD", {"weight_decay": -1.0}),
    ("Rprop", {"lr": -1.0}),
    ("Rprop", {"etas": (1.5, 2.0)}),
    ("Rprop", {"etas": (0.5, 0.9)}),
    ("Adafactor", {"lr": -1.0}),
    ("Adafactor", {"beta2_decay": 0.5}),
    ("Adafactor", {"eps": (-1.0, 1e-3)}),
    ("Adafactor", {"eps": (None, -1.0)}),
    ("Adafactor", {"d": 0.5}),
    ("Adafactor", {"weight_decay": -1.0}),
]


@pytest.mark.parametrize("name,kwargs", INVALID)
def test_validation_errors_match_torch(name, kwargs):
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError) as ours:
        getattr(oft, name)(**kwargs)
    message = str(ours.value)
    assert str(theirs.value) in message
    assert message.startswith(f"{name}: ")
    assert "`" in message  # names the argument


# PyTorch's own optimizer test database (torch/testing/_internal/common_optimizers.py,
# optim_inputs_func, CPU configurations; lr-only and Tensor-lr entries are covered by the lr
# switch above, LBFGS / Muon / SparseAdam by their own test files), in float64.
OPTIM_DB_CONFIGS = [
    *[("Adadelta", c) for c in [{}, {"weight_decay": 0.1}, {"maximize": True},
                                {"weight_decay": 0.1, "maximize": True},
                                {"rho": 0.95, "weight_decay": 0.9}]],
    *[("Adafactor", c) for c in [{}, {"weight_decay": 0.1},
                                 {"weight_decay": 0.1, "maximize": True},
                                 {"beta2_decay": -1.0}, {"d": 1.5}]],
    *[("Adagrad", c) for c in [{}, {"weight_decay": 0.1},
                               {"weight_decay": 0.1, "maximize": True},
                               {"initial_accumulator_value": 0.1, "weight_decay": 0.1},
                               {"lr_decay": 0.5, "weight_decay": 0.1}]],
    *[(name, c) for name in ("Adam", "AdamW") for c in [
        {}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "maximize": True},
        {"weight_decay": 0.1, "amsgrad": True}]],
    *[("Adamax", c) for c in [{}, {"weight_decay": 0.1}, {"maximize": True},
                              {"weight_decay": 0.1, "maximize": True}]],
    *[("ASGD", c) for c in [{}, {"lambd": 0.1}, {"t0": 100}, {"maximize": True},
                            {"weight_decay": 0.1}, {"weight_decay": 0.1, "maximize": True}]],
    *[("NAdam", c) for c in [{}, {"momentum_decay": 0.006}, {"weight_decay": 0.1},
                             {"weight_decay": 0.1, "momentum_decay": 0.006},
                             {"weight_decay": 0.1, "momentum_decay": 0.006,
                              "decoupled_weight_decay": True},
                             {"weight_decay": 0.1, "maximize": True}]],
    *[("RAdam", c) for c in [{}, {"eps": 1e-6}, {"weight_decay": 0.1},
                             {"weight_decay": 0.1, "decoupled_weight_decay": True},
                             {"weight_decay": 0.1, "maximize": True}]],
    *[("RMSprop", c) for c in [{}, {"weight_decay": 0.1}, {"maximize": True},
                               {"weight_decay": 0.1, "centered": True},
                               {"weight_decay": 0.1, "centered": True, "momentum": 0.1},
                               {"weight_decay": 0.1, "centered": True, "momentum": 0.1,
                                "maximize": True}]],
    *[("Rprop", c) for c in [{}, {"etas": (0.5, 1.5)}, {"step_sizes": (2e-6, 100)},
                             {"maximize": True}]],
    *[("SGD", c) for c in [{}, {"weight_decay": 0.5}, {"momentum": 0.9},
                           {"weight_decay": 0.1, "maximize": True},
                           {"momentum": 0.9, "dampening": 0.5},
                           {"momentum": 0.9, "weight_decay": 0.1},
                           {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}]],
]


@pytest.mark.parametrize(
    "name,kwargs",
    OPTIM_DB_CONFIGS,
    ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIM_DB_CONFIGS)],
)
def test_pytorch_optim_db_configurations_match_torch(name, kwargs):
    error = _compare(name, kwargs, np.float64)
    assert error <= TOLERANCE[np.float64], (name, kwargs, error)
