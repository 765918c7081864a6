"""Dion against a NumPy transcription of microsoft/dion.

``tests/reference_dion.py`` transcribes the reference's single-device Dion (commit
0a059a45) in float64. ``optim_fn.contrib.dion`` follows it for 30 steps of full-rank
gradients that depend on the params (each run computes them at its own params), on a
tree with a tall, a wide and a square matrix, a 3-d stack of two matrices (each slice a
matrix with its own ``Q``, named by ``dion_weight_dimension_numbers``; the reference
takes 2-d params only, so it gets the slices as two params) and a 1-d bias (AdamW or
Lion, as the reference's scalar groups): params and error-feedback buffers within 1e-10
relative in float64, for each QR variant (RCQR draws its sketches from our key and the
transcription from NumPy's: the orthonormal bases then differ by column signs, which
cancel in the update). The reference's ``Q`` is ours at ``init`` (it draws its own with
``torch.randn``). Our layout is ``(fan_in, fan_out)``: the reference gets transposes.
Then: each option changes the numbers, the seed fixes ``Q``, and the argument checks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_dion as ref

import optim_fn
from optim_fn.contrib import MuonDimensionNumbers, dion

STEPS = 30
TOLERANCE = 1e-10
SHAPES = {"tall": (8, 5), "wide": (5, 9), "square": (6, 6), "stack": (2, 4, 6), "bias": (6,)}
DIMS = {"tall": MuonDimensionNumbers(), "wide": MuonDimensionNumbers(),
        "square": MuonDimensionNumbers(), "stack": MuonDimensionNumbers(1, 2), "bias": None}
CONFIGS = {
    "rcqr": dict(rank_fraction=0.5, mu=0.95, weight_decay=0.01, learning_rate=0.02),
    # CQR after 10 steps of RCQR (and Householder QR for the square matrix's full rank),
    # two power iterations, Lion for the bias.
    "cqr_lion": dict(qr_method="cqr", cqr_warmup_steps=10, rank_fraction=0.75,
                     rank_multiple_of=2, mu=0.8, eps=1e-6, oversample=2.0, power_iters=2,
                     learning_rate=0.03, b1=0.8, b2=0.99, scalar_optimizer="lion",
                     scalar_learning_rate=0.005, scalar_weight_decay=0.0),
}


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.cache
def problem():
    rng = np.random.default_rng(5)
    start = {k: rng.normal(size=s) * 0.5 for k, s in SHAPES.items()}
    directions = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    return start, directions


def gradient(params: dict, step: int) -> dict:
    """Full rank (a fixed random matrix's part), depending on the params and the step."""
    _, directions = problem()
    return {
        k: np.tanh(2.0 * p) + 0.3 * np.cos(0.7 * step) * directions[k] + 0.1 * np.sin(3.0 * p)
        for k, p in params.items()
    }


def make(config: dict):
    return dion(**config, dion_weight_dimension_numbers=DIMS)


def dion_state(state):
    return state.inner_states["dion"][0]


def run_ours(config: dict, dtype=np.float64):
    opt = make(config)
    params = {k: jnp.asarray(v, dtype) for k, v in problem()[0].items()}
    state = opt.init(params)
    q_init = {k: np.asarray(v, np.float64) for k, v in dion_state(state).q.items()
              if v is not None}
    update = jax.jit(opt.update)
    trajectory = []
    for step in range(STEPS):
        grads = gradient({k: np.asarray(v, np.float64) for k, v in params.items()}, step)
        updates, state = update({k: jnp.asarray(g, dtype) for k, g in grads.items()}, state,
                                params)
        params = optim_fn.apply_updates(params, updates)
        buffers = dion_state(state).momentum
        trajectory.append(
            {k: np.asarray(v, np.float64) for k, v in params.items()}
            | {f"M_{k}": np.asarray(buffers[k], np.float64) for k in q_init}
        )
    return trajectory, q_init


def split_stack(tree: dict) -> dict:
    """The reference's params: each slice of the stack its own, all transposed."""
    out = {}
    for k, v in tree.items():
        if k == "stack":
            out.update({f"stack{i}": v[i].T for i in range(v.shape[0])})
        else:
            out[k] = v.T if v.ndim == 2 else v
    return out


def join_stack(tree: dict) -> dict:
    out = {k: (v.T if v.ndim == 2 else v) for k, v in tree.items() if not k.startswith("stack")}
    out["stack"] = np.stack([tree[f"stack{i}"].T for i in range(SHAPES["stack"][0])])
    return out


def run_transcription(config: dict, q_init: dict):
    c = {"rank_fraction": 1.0, "mu": 0.95, "weight_decay": 0.01, "b1": 0.9, "b2": 0.95,
         "eps": 1e-8, "qr_method": "rcqr", "oversample": 1.25, "cqr_warmup_steps": 150,
         "power_iters": 1, "scalar_optimizer": "adamw", **config}
    q = {k: v[0] for k, v in q_init.items() if k != "stack"}
    q.update({f"stack{i}": q_init["stack"][i] for i in range(SHAPES["stack"][0])})
    optimizer = ref.Dion(
        split_stack(problem()[0]), q, lr=c["learning_rate"], mu=c["mu"],
        weight_decay=c["weight_decay"], betas=(c["b1"], c["b2"]), epsilon=c["eps"],
        qr_method=c["qr_method"], oversample=c["oversample"],
        cqr_warmup_steps=c["cqr_warmup_steps"], power_iters=c["power_iters"],
        scalar_algorithm=c["scalar_optimizer"],
        scalar_lr=c.get("scalar_learning_rate", c["learning_rate"]),
        scalar_weight_decay=c.get("scalar_weight_decay", c["weight_decay"]),
    )
    params = problem()[0]
    trajectory = []
    for step in range(STEPS):
        params = join_stack(optimizer.step(split_stack(gradient(params, step))))
        buffers = join_stack({k: v for k, v in optimizer.momentum.items() if k in q})
        trajectory.append(params | {f"M_{k}": v for k, v in buffers.items()})
    return trajectory


def relative_error(ours: list[dict], theirs: list[dict]) -> float:
    return max(
        float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k])))
        for a, b in zip(ours, theirs, strict=True)
        for k in b
    )


def test_ranks_follow_the_reference():
    state = jax.eval_shape(make(CONFIGS["cqr_lion"]).init,
                           {k: jnp.zeros(s) for k, s in SHAPES.items()})
    shapes = {k: v.shape for k, v in dion_state(state).q.items() if v is not None}
    # rank 0.75 min(d_in, d_out) rounded up to an even number; Q has B's columns.
    assert shapes == {"tall": (1, 5, 4), "wide": (1, 5, 4), "square": (1, 6, 6),
                      "stack": (2, 4, 4)}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_matches_the_reference(config):
    ours, q_init = run_ours(CONFIGS[config])
    error = relative_error(ours, run_transcription(CONFIGS[config], q_init))
    print(f"dion {config}: float64 relative error vs the transcription {error:.2e}")
    assert error < TOLERANCE
    start = problem()[0]
    assert relative_error(ours[-1:], [start]) > 0.05  # the params moved: not two idle runs


def test_float32_error_against_the_float64_reference():
    ours, q_init = run_ours(CONFIGS["rcqr"], dtype=np.float32)
    error = relative_error(ours, run_transcription(CONFIGS["rcqr"], q_init))
    print(f"dion: float32 relative error vs the float64 transcription {error:.2e}")
    assert error < 1e-3


@functools.cache
def jitted_update(opt):
    return jax.jit(opt.update)


def two_steps(opt, params, stepper=None):
    """Two steps from ``opt``'s initial state, by ``stepper``'s update (default ``opt``):
    a hyperparameter lives in the state, so another optimizer's compiled update shows
    whether the value ``opt`` stored is used."""
    state = opt.init(params)
    update = jitted_update(stepper or opt)
    for step in range(2):
        grads = jax.tree.map(
            lambda p, s=step: jnp.cos(3.0 * p + s) + 0.5 * jnp.sin(
                jnp.arange(p.size, dtype=p.dtype).reshape(p.shape) ** 1.5 + s), params)
        updates, state = update(grads, state, params)
        params = optim_fn.apply_updates(params, updates)
    return params, state


def differ(a, b) -> bool:
    return any(
        not np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


SMALL = (8, 5)
# A rank of 40: the sketch has 128 rows at oversample 1.25 and 256 at 4.
LARGE = (60, 50)
VECTOR = None  # the scalar optimizer's options: a tree of one vector
OPTIONS = {  # name -> (matrix shape, changed keywords)
    "rank_fraction": (SMALL, {"rank_fraction": 0.5}),
    "rank_multiple_of": (SMALL, {"rank_fraction": 0.3, "rank_multiple_of": 2}),
    "mu": (SMALL, {"mu": 0.5}),
    "weight_decay": (SMALL, {"weight_decay": 0.3}),
    "eps": (SMALL, {"eps": 1e-1}),
    "power_iters": (SMALL, {"power_iters": 2}),
    "qr_method": (SMALL, {"qr_method": "qr"}),
    "cqr": (SMALL, {"qr_method": "cqr", "cqr_warmup_steps": 0}),
    "cqr_warmup_steps": (SMALL, {"qr_method": "cqr", "cqr_warmup_steps": 1}),
    "oversample": (LARGE, {"oversample": 4.0}),
    "seed": (SMALL, {"seed": 1}),
    "scalar_optimizer": (VECTOR, {"scalar_optimizer": "lion"}),
    "scalar_learning_rate": (VECTOR, {"scalar_learning_rate": 0.5}),
    "scalar_weight_decay": (VECTOR, {"scalar_weight_decay": 0.5}),
    "b1": (VECTOR, {"b1": 0.5}),
    "b2": (VECTOR, {"b2": 0.5}),
}
BASE = {"learning_rate": 0.1, "rank_fraction": 0.8}
# Hyperparameters kept in the state (and the seed, used at init only): run with the base
# optimizer's compiled update.
IN_STATE = {"mu", "eps", "weight_decay", "seed", "scalar_learning_rate",
            "scalar_weight_decay", "b1", "b2"}


@functools.cache
def base_run(shape: tuple, **keywords):
    if shape is None:
        params = {"b": jnp.linspace(0.5, 1.0, 3)}
    else:
        params = {"w": jnp.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape)}
    opt = dion(**{**BASE, **keywords})
    return params, opt, two_steps(opt, params)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_option_changes_the_numbers(option):
    shape, changed = OPTIONS[option]
    base = {"qr_method": "cqr"} if option == "cqr_warmup_steps" else {}
    params, base_opt, (reference, reference_state) = base_run(shape, **base)
    stepper = base_opt if option in IN_STATE else None
    ours, state = two_steps(dion(**{**BASE, **base, **changed}), params, stepper)
    assert differ((ours, state), (reference, reference_state)), option
    if option in ("qr_method", "cqr", "oversample", "cqr_warmup_steps"):
        # The orthonormal bases differ by column signs only: Q's signs, not the step.
        np.testing.assert_allclose(ours["w"], reference["w"], rtol=1e-12, atol=1e-12)
        assert differ(state, reference_state)


def test_batched_leaves_keep_their_own_q_and_key():
    rng = np.random.default_rng(1)
    params = {k: jnp.asarray(rng.normal(size=(8, 5))) for k in "abc"}
    batched, batched_state = two_steps(dion(0.1, rank_fraction=0.5, batch_by_shape=True),
                                       params)
    one_by_one, state = two_steps(dion(0.1, rank_fraction=0.5, batch_by_shape=False), params)
    for k in params:
        np.testing.assert_allclose(batched[k], one_by_one[k], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dion_state(batched_state).q[k], dion_state(state).q[k],
                                   rtol=1e-12, atol=1e-14)
    assert differ(dion_state(state).q["a"], dion_state(state).q["b"])


def test_q_is_drawn_from_the_seed():
    params = {"w": jnp.zeros((8, 5))}
    first = dion_state(dion(0.1, seed=3).init(params)).q["w"]
    again = dion_state(dion(0.1, seed=3).init(params)).q["w"]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[0].T @ first[0], np.eye(5))  # randn, not orthonormalised


def test_argument_checks():
    with pytest.raises(ValueError, match="rank_fraction"):
        dion(0.1, rank_fraction=0.0)
    with pytest.raises(ValueError, match="qr_method"):
        dion(0.1, qr_method="householder")
    with pytest.raises(ValueError, match="scalar_optimizer"):
        dion(0.1, scalar_optimizer="sgd")
    with pytest.raises(ValueError, match="power_iters"):
        dion(0.1, power_iters=0)
    with pytest.raises(ValueError, match="mu"):
        dion(0.1, mu=1.5)
