"""Scion against a NumPy transcription of its authors' code and against pytorch-optimizer.

``tests/reference_scion.py`` transcribes LIONS-EPFL/scion's ``scion.py`` (commit
f58a393e) in float64. ``optim_fn.contrib.scion`` follows it for 30 steps of gradients that
depend on the params (each run computes them at its own params), on a tree with a tall, a
wide, an embedding (column norm), a head (sign), an input layer (row norm), a 3-d
convolution kernel (``spectral_conv``) and a 1-d bias (``bias_rms``), constrained and
unconstrained, with each norm's options flipped: within 1e-10 relative in float64.
``pytorch_optimizer.SCION`` (4.1, with its Newton-Schulz run in float64 instead of
bfloat16) is a second oracle for the same runs. Our layout is flax's ``(fan_in,
fan_out)`` (``(*spatial, in, out)`` for kernels): the references get the transposes.
Then: each option changes the numbers, ``auto`` is the authors' choice by rank, and the
argument checks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_scion as ref

import optim_fn
from optim_fn.contrib import ScionNorm, scale_by_scion, scion

STEPS = 30
TOLERANCE = 1e-10
SHAPES = {
    "embed": (9, 4),
    "input": (6, 5),
    "tall": (8, 5),
    "wide": (5, 9),
    "conv": (3, 4, 6),
    "head": (7, 3),
    "bias": (6,),
}
BASE = {  # name -> (norm, options, scale)
    "embed": ("column", {}, 3.0),
    "input": ("row", {}, 1.5),
    "tall": ("spectral", {}, 2.0),
    "wide": ("spectral", {"max_scale": True}, 1.0),
    "conv": ("spectral_conv", {}, 1.0),
    "head": ("sign", {}, 5.0),
    "bias": ("bias_rms", {}, 0.5),
}
FLIPPED = {
    "embed": ("column", {"normalized": True}, 3.0),
    "input": ("row", {"normalized": False}, 1.5),
    "tall": ("spectral", {"normalized": False, "max_scale": True}, 2.0),
    "wide": ("spectral", {"normalized": False}, 1.0),
    "conv": ("spectral_conv", {}, 1.0),
    "head": ("sign", {"normalized": False}, 5.0),
    "bias": ("bias_rms", {}, 0.5),
}
CONFIGS = {
    "constrained": (BASE, 0.1, False, 0.05),
    "unconstrained_flipped": (FLIPPED, 0.5, True, 0.02),
}


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def start_params() -> dict:
    rng = np.random.default_rng(3)
    return {k: rng.normal(size=s) * 0.5 for k, s in SHAPES.items()}


def gradient(params: dict, step: int) -> dict:
    """A gradient that depends on the params and the step, in our layout."""
    def one(p):
        phase = np.arange(p.size).reshape(p.shape)
        return np.tanh(p) * (1.0 + 0.1 * step) + 0.3 * np.cos(3.0 * p + 0.7 * step + phase)

    return {k: one(p) for k, p in params.items()}


def to_torch_layout(x: np.ndarray) -> np.ndarray:
    """Ours -> the authors' (and back): ``(in, out)`` <-> ``(out, in)``, kernels reversed."""
    return np.ascontiguousarray(x.transpose(tuple(reversed(range(x.ndim)))))


def optimizer(groups: dict, momentum: float, unconstrained: bool, lr: float, **options):
    return scion(
        lr,
        norms={k: ScionNorm(norm, **opts) for k, (norm, opts, _) in groups.items()},
        scales={k: scale for k, (_, _, scale) in groups.items()},
        labels={k: k for k in groups},
        momentum=momentum,
        unconstrained=unconstrained,
        **options,
    )


@functools.cache
def jitted_update(opt):
    return jax.jit(opt.update)


@functools.cache
def compiled_optimizer(config: str):
    return optimizer(*CONFIGS[config])


def run_ours(config: str, dtype=np.float64, **options) -> list[dict]:
    """``config``'s optimizer with ``options``; stepped by ``config``'s compiled update
    (the options here are hyperparameters, kept in the state)."""
    opt = optimizer(*CONFIGS[config], **options)
    params = {k: jnp.asarray(v, dtype) for k, v in start_params().items()}
    state = opt.init(params)
    update = jitted_update(compiled_optimizer(config))
    trajectory = []
    for step in range(STEPS):
        grads = gradient({k: np.asarray(v, np.float64) for k, v in params.items()}, step)
        updates, state = update({k: jnp.asarray(g, dtype) for k, g in grads.items()}, state,
                                params)
        params = optim_fn.apply_updates(params, updates)
        trajectory.append({k: np.asarray(v, np.float64) for k, v in params.items()})
    return trajectory


def run_transcription(groups, momentum, unconstrained, lr) -> list[dict]:
    torch_groups = {k: (n, dict(o), s) for k, (n, o, s) in groups.items()}
    optimizer_ = ref.Scion({k: to_torch_layout(v) for k, v in start_params().items()},
                           torch_groups, lr, momentum, unconstrained)
    params = start_params()
    trajectory = []
    for step in range(STEPS):
        grads = gradient(params, step)
        new = optimizer_.step({k: to_torch_layout(g) for k, g in grads.items()})
        params = {k: to_torch_layout(v) for k, v in new.items()}  # its own inverse
        trajectory.append(dict(params))
    return trajectory


def run_pytorch_optimizer(groups, momentum, unconstrained, lr) -> list[dict]:
    import pytorch_optimizer.optimizer.scion as scion_module  # the test extra's
    import torch
    kinds = {"spectral": "SPECTRAL", "spectral_conv": "SPECTRALCONV", "column": "COL",
             "row": "ROW", "sign": "SIGN", "bias_rms": "BIAS"}
    # Their option names: Spectral(normalize, max_scale), Sign(normalize), Col/Row(normalized).
    renames = {"spectral": {"normalized": "normalize"}, "sign": {"normalized": "normalize"}}
    tensors = {k: torch.tensor(to_torch_layout(v)) for k, v in start_params().items()}
    param_groups = [
        {
            "params": [tensors[k]],
            "norm_type": getattr(scion_module.LMONorm, kinds[norm]),
            "norm_kwargs": {renames.get(norm, {}).get(o, o): v for o, v in opts.items()},
            "scale": scale,
        }
        for k, (norm, opts, scale) in groups.items()
    ]
    float64_ns = functools.partial(scion_module.zero_power_via_newton_schulz_5,
                                   dtype=torch.float64)
    original = scion_module.zero_power_via_newton_schulz_5
    scion_module.zero_power_via_newton_schulz_5 = float64_ns
    try:
        opt = scion_module.SCION(param_groups, lr=lr, momentum=momentum,
                                 constraint=not unconstrained, foreach=False)
        params = start_params()
        trajectory = []
        for step in range(STEPS):
            grads = gradient(params, step)
            for k, t in tensors.items():
                t.grad = torch.tensor(to_torch_layout(grads[k]))
            opt.step()
            params = {k: to_torch_layout(t.detach().numpy().copy()) for k, t in tensors.items()}
            trajectory.append(params)
    finally:
        scion_module.zero_power_via_newton_schulz_5 = original
    return trajectory


def relative_error(ours: list[dict], theirs: list[dict]) -> float:
    return max(
        float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k])))
        for a, b in zip(ours, theirs, strict=True)
        for k in b
    )


@functools.cache
def transcription(config: str) -> list[dict]:
    return run_transcription(*CONFIGS[config])


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_matches_the_authors_code(config):
    ours = run_ours(config)
    error = relative_error(ours, transcription(config))
    print(f"scion {config}: float64 relative error vs the transcription {error:.2e}")
    assert error < TOLERANCE
    # The params moved far from the start: the comparison is not of two idle runs.
    assert relative_error(ours, [start_params()] * STEPS) > 0.1


def test_matches_pytorch_optimizer():
    # pytorch-optimizer divides by max(||X||, eps) before Newton-Schulz: ns_eps=0 here.
    # The unconstrained run with every option flipped (their option names differ).
    config = "unconstrained_flipped"
    ours = run_ours(config, ns_eps=0.0)
    error = relative_error(ours, run_pytorch_optimizer(*CONFIGS[config]))
    print(f"scion {config}: float64 relative error vs pytorch_optimizer.SCION {error:.2e}")
    assert error < TOLERANCE


def test_float32_error_against_the_float64_reference():
    ours = run_ours("constrained", dtype=np.float32)
    error = relative_error(ours, transcription("constrained"))
    print(f"scion: float32 relative error vs the float64 transcription {error:.2e}")
    assert error < 1e-4


def one_step(opt, params, steps=2, stepper=None):
    """``steps`` steps from ``opt``'s initial state by ``stepper``'s compiled update."""
    state = opt.init(params)
    update = jitted_update(stepper or opt)
    for step in range(steps):
        grads = jax.tree.map(lambda p, s=step: jnp.cos(3.0 * p + s) + 0.2 * p, params)
        updates, state = update(grads, state, params)
        params = optim_fn.apply_updates(params, updates)
    return params


def differ(a, b) -> bool:
    return any(
        float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y))) > 1e-12
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


OPTION_CASES = {  # name -> (norm for the leaf, leaf shape, base keywords, changed keywords)
    "unconstrained": ("spectral", (4, 3), {}, {"unconstrained": True}),
    "momentum": ("spectral", (4, 3), {}, {"momentum": 0.7}),
    "scales": ("spectral", (4, 3), {}, {"scales": 2.0}),
    "ns_steps": ("spectral", (4, 3), {}, {"ns_steps": 3}),
    "ns_eps": ("spectral", (4, 3), {}, {"ns_eps": 1e-3}),
    "orthogonalizer": ("spectral", (4, 3), {}, {"orthogonalizer": "svd"}),
    "spectral.normalized": ("spectral", (4, 3), {}, {"norms": ScionNorm("spectral", False)}),
    "spectral.max_scale": ("spectral", (4, 3), {}, {"norms": ScionNorm("spectral", None, True)}),
    "column.normalized": ("column", (4, 3), {}, {"norms": ScionNorm("column", True)}),
    "row.normalized": ("row", (4, 3), {}, {"norms": ScionNorm("row", False)}),
    "sign.normalized": ("sign", (4, 3), {}, {"norms": ScionNorm("sign", False)}),
    "eps": ("bias_rms", (5,), {}, {"eps": 1e-2}),
}


# Hyperparameters kept in the state: stepped by the base optimizer's compiled update.
IN_STATE = {"momentum", "scales", "ns_eps", "eps"}


@functools.cache
def base_run(norm: str, shape: tuple):
    params = {"w": jnp.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)}
    opt = scion(0.1, norms=norm, momentum=0.3)
    return params, opt, one_step(opt, params)


@pytest.mark.parametrize("option", sorted(OPTION_CASES))
def test_each_option_changes_the_numbers(option):
    norm, shape, base, changed = OPTION_CASES[option]
    params, base_opt, reference = base_run(norm, shape)
    stepper = base_opt if option in IN_STATE else None
    changed_opt = scion(0.1, **{"norms": norm, "momentum": 0.3, **base, **changed})
    assert differ(one_step(changed_opt, params, stepper=stepper), reference), option


def test_auto_is_the_authors_choice_by_rank():
    params = {k: jnp.asarray(v) for k, v in start_params().items() if k in ("tall", "conv", "bias")}
    explicit = {"tall": "spectral", "conv": "spectral_conv", "bias": "bias_rms"}
    by_label = scion(0.1, norms=explicit, labels=optim_fn.path_labels({k: k for k in explicit}))
    auto = one_step(scion(0.1, "auto"), params, steps=1)
    assert not differ(auto, one_step(by_label, params, steps=1))


def test_three_d_spectral_is_a_stack_of_matrices():
    stack = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 6)))
    block = scale_by_scion("spectral", momentum=1.0)
    direction, _ = block.update({"w": stack}, block.init({"w": stack}))
    for i in range(3):
        expected = ref.lmo(np.asarray(stack[i]).T, "spectral").T
        np.testing.assert_allclose(direction["w"][i], expected, rtol=1e-12, atol=1e-14)


def test_argument_checks():
    with pytest.raises(ValueError, match="labels"):
        scion(0.1, norms={"a": "spectral"})
    with pytest.raises(ValueError, match="unknown norm"):
        scion(0.1, norms="spectrall")
    with pytest.raises(ValueError, match="missing"):
        scion(0.1, norms={"a": "spectral", "b": "sign"}, scales={"a": 1.0}, labels={})
    with pytest.raises(ValueError, match="momentum"):
        scion(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="does not apply to the leaf"):
        scion(0.1, norms="sign").init({"bias": jnp.ones(3)})
    with pytest.raises(ValueError, match="max_scale"):
        scion(0.1, norms=ScionNorm("sign", max_scale=True))
