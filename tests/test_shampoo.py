"""Shampoo against a NumPy float64 transcription of facebookresearch's Distributed Shampoo.

``tests/reference_shampoo.py`` transcribes ``distributed_shampoo`` (facebookresearch/
optimizers at commit f606606, not on PyPI) keeping the reference's structure. Here
``optim_fn.contrib.shampoo`` follows it step by step for ``STEPS`` steps of gradients that
depend on the params (each run computes them at its own params) on a tree with a tall, a
wide, a 3-d and a 1-d leaf, for configurations that together cover every option, with
several preconditioner refreshes each: within ``TOLERANCE`` of the largest update of each
step in float64, with one compile across the steps; the float32 error of one of them
is printed (``pytest -s``) and bounded. Then: each option changes the reference's
numbers by far more than the tolerance (so an option ignored by optim_fn would fail its
parity check), the merging and blocking against the reference's, a scalar and size-1
axes, the layout of the state, and argument checks.
"""

from __future__ import annotations

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_shampoo as ref

import optim_fn
from optim_fn import contrib

# With max_preconditioner_dim=5: the tall leaf is cut into two 5x4 blocks, the wide one
# into 3x5 and 3x2, the cube stays a 3x4x5 block (order 3: inverse 6th roots) and the
# vector is cut into 5 and 2.
SHAPES = {"a_tall": (10, 4), "b_wide": (3, 7), "c_cube": (3, 4, 5), "d_vector": (7,)}
STEPS = 32
TOLERANCE = 1e-10
FLOAT32_TOLERANCE = 1e-4

# Each: optim_fn's keywords, and the reference's. Together they cover every option:
# adam_grafting: EMA factors (b2 < 1) with bias correction, b3 != b1, decoupled weight
# decay, Nesterov momentum; eigenvalue_corrected: RMSprop grafting, L2 weight decay, no
# gradient filter (b1 = 0); coupled_newton: SGD grafting, whole leaves (no merging, no
# blocking), dampened momentum, no bias correction; adagrad_grafting: the cube merged
# into 12x5. Exponent overrides and ignored basis changes in the last three. Refreshes
# start once the 1-d factors have full rank.
CONFIGS = {
    # The reference's defaults but for the block size and eps: with eps=1e-12 the
    # factors of the 1-d blocks, of rank t < 5 at step t, make the reference's own numbers
    # move by 1e-9 of the update when the gradient moves by 1e-15.
    "defaults": (
        {"max_preconditioner_dim": 5, "eps": 1e-6},
        {"max_preconditioner_dim": 5, "epsilon": 1e-6},
    ),
    "adam_grafting": (
        {
            "max_preconditioner_dim": 5,
            "b2": 0.99,
            "b3": 0.8,
            "eps": 1e-10,
            "grafting": "adam",
            "precondition_frequency": 4,
            "start_preconditioning_step": 6,
            "weight_decay": 0.05,
            "momentum": 0.5,
            "nesterov": True,
        },
        {
            "max_preconditioner_dim": 5,
            "betas": (0.9, 0.99),
            "beta3": 0.8,
            "epsilon": 1e-10,
            "grafting": "adam",
            "precondition_frequency": 4,
            "start_preconditioning_step": 6,
            "weight_decay": 0.05,
            "classic_momentum": (0.5, 0.0, True),
        },
    ),
    "eigenvalue_corrected": (
        {
            "max_preconditioner_dim": 5,
            "b1": 0.0,
            "b2": 0.95,
            "eps": 1e-8,
            "preconditioner": "eigenvalue_corrected",
            "grafting": "rmsprop",
            "grafting_b2": 0.9,
            "precondition_frequency": 3,
            "start_preconditioning_step": 6,
            "weight_decay": 0.05,
            "weight_decay_type": "l2",
            "ignored_basis_change_dims": {2: [1]},
            "inverse_exponent_override": {3: 0.4},
        },
        {
            "max_preconditioner_dim": 5,
            "betas": (0.0, 0.95),
            "epsilon": 1e-8,
            "preconditioner": "eigenvalue_corrected",
            "grafting": "rmsprop",
            "grafting_beta2": 0.9,
            "precondition_frequency": 3,
            "start_preconditioning_step": 6,
            "weight_decay": 0.05,
            "weight_decay_type": "l2",
            "ignored_basis_change_dims": {2: [1]},
            "inverse_exponent_override": {3: 0.4},
        },
    ),
    "coupled_newton": (
        {
            "max_preconditioner_dim": math.inf,
            "merge_small_dims": False,
            "b2": 0.9,
            "eps": 1e-6,
            "root_inverse": "coupled_newton",
            "grafting": "sgd",
            "precondition_frequency": 5,
            "start_preconditioning_step": 10,
            "use_bias_correction": False,
            "inverse_exponent_override": {3: 0.25},
            "momentum": 0.6,
            "dampening": 0.3,
            "learning_rate": 3e-2,
        },
        {
            "max_preconditioner_dim": math.inf,
            "target_parameter_dimensionality": math.inf,
            "betas": (0.9, 0.9),
            "epsilon": 1e-6,
            "root_inverse": ("newton", 100, 1e-6),
            "grafting": "sgd",
            "precondition_frequency": 5,
            "start_preconditioning_step": 10,
            "use_bias_correction": False,
            "inverse_exponent_override": {3: 0.25},
            "classic_momentum": (0.6, 0.3, False),
            "lr": 3e-2,
        },
    ),
    # max_preconditioner_dim=12 merges the cube into 12x5.
    "adagrad_grafting": (
        {
            "max_preconditioner_dim": 12,
            "eps": 1e-8,
            "grafting": "adagrad",
            "precondition_frequency": 2,
            "start_preconditioning_step": 8,
            "inverse_exponent_override": {2: {0: 0.0}, 1: 0.3},
        },
        {
            "max_preconditioner_dim": 12,
            "epsilon": 1e-8,
            "grafting": "adagrad",
            "precondition_frequency": 2,
            "start_preconditioning_step": 8,
            "inverse_exponent_override": {2: {0: 0.0}, 1: 0.3},
        },
    ),
}


@functools.cache
def problem(shapes: tuple = tuple(SHAPES.items())) -> tuple[dict, dict, dict, list[dict]]:
    rng = np.random.default_rng(14)
    params = {k: rng.normal(size=s) for k, s in shapes}
    curvature = {k: 0.5 + rng.uniform(size=s) for k, s in shapes}
    shift = {k: rng.normal(size=s) for k, s in shapes}
    noise = [{k: rng.normal(size=s) for k, s in shapes} for _ in range(STEPS)]
    return params, curvature, shift, noise


def gradient(params: dict, step: int, shapes: tuple = tuple(SHAPES.items())) -> dict:
    """The gradient at ``params`` of a smooth, non-quadratic loss, plus this step's noise
    (NumPy, float64). The noise keeps the factors well conditioned: gradients that barely
    turn make factors whose small eigenvalues (and so the reference's own numbers) move
    by 1e-10 of the update when the gradient moves by 1e-15."""
    _, curvature, shift, noise = problem(shapes)
    return {
        k: curvature[k] * np.asarray(p, np.float64)
        + np.sin(2 * np.asarray(p, np.float64) + shift[k])
        + noise[step][k]
        for k, p in params.items()
    }


def run_reference(options: dict, shapes: tuple = tuple(SHAPES.items())) -> list[dict]:
    params = dict(problem(shapes)[0])
    names = sorted(params)
    optimizer = ref.DistributedShampoo([params[k] for k in names], **options)
    updates = []
    for step in range(STEPS):
        grads = gradient(params, step, shapes)
        new = optimizer.step([params[k] for k in names], [grads[k] for k in names])
        updates.append({k: n - params[k] for k, n in zip(names, new, strict=True)})
        params = dict(zip(names, new, strict=True))
    return updates


def run_ours(
    options: dict, dtype, traces: list | None = None, shapes: tuple = tuple(SHAPES.items())
) -> list[dict]:
    optimizer = contrib.shampoo(**options)
    params = {k: jnp.asarray(v, dtype) for k, v in problem(shapes)[0].items()}
    state = optimizer.init(params)

    def step(grads, state, params):
        if traces is not None:
            traces.append(1)
        return optimizer.update(grads, state, params)

    step = jax.jit(step)
    updates = []
    for step_index in range(STEPS):
        grads = {k: jnp.asarray(g, dtype) for k, g in gradient(params, step_index, shapes).items()}
        u, state = step(grads, state, params)
        updates.append({k: np.asarray(v, np.float64) for k, v in u.items()})
        params = jax.tree.map(lambda p, d: p + d, params, u)
    return updates


def worst_error(ours: list[dict], reference: list[dict]) -> float:
    """The largest error of any step, relative to that step's largest update."""
    worst = 0.0
    for mine, theirs in zip(ours, reference, strict=True):
        scale = max(np.max(np.abs(v)) for v in theirs.values())
        error = max(np.max(np.abs(mine[k] - theirs[k])) for k in theirs)
        worst = max(worst, error / scale)
    return worst


@functools.cache
def reference_run(name: str) -> list[dict]:
    return run_reference(CONFIGS[name][1])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_distributed_shampoo_in_float64(name):
    traces: list = []
    with jax.enable_x64(True):
        ours = run_ours(CONFIGS[name][0], jnp.float64, traces=traces)
    error = worst_error(ours, reference_run(name))
    print(f"\nshampoo {name}: float64 error {error:.2e}")
    assert error < TOLERANCE, error
    assert len(traces) == 1  # one compiled program across refresh and non-refresh steps


# float32 (each run is one more compile): the root inverse with Adam grafting, 8.5e-6
# (measured on the others: eigenvalue_corrected 9.5e-7, coupled_newton 6.2e-7,
# adagrad_grafting 9.0e-7; without grafting, defaults, 6.6e-4: eps=1e-6 is below float32's
# resolution of the factors' largest eigenvalues).
@pytest.mark.parametrize("name", ["adam_grafting"])
def test_float32_error_against_the_float64_reference(name):
    error = worst_error(run_ours(CONFIGS[name][0], jnp.float32), reference_run(name))
    print(f"\nshampoo {name}: float32 error {error:.2e}")
    assert error < FLOAT32_TOLERANCE, error


# Each option, as the reference's keyword change from the configuration named: the
# reference's numbers move by far more than the parity tolerance, so optim_fn, which
# matches the reference with the option, cannot be ignoring it.
OPTION_CHANGES = [
    ("defaults", "max_preconditioner_dim", 1024),
    ("adagrad_grafting", "target_parameter_dimensionality", math.inf),
    ("adagrad_grafting", "inverse_exponent_override", {2: {0: 0.0}}),
    ("adagrad_grafting", "inverse_exponent_override", {1: 0.3}),
    ("eigenvalue_corrected", "ignored_basis_change_dims", None),
    ("eigenvalue_corrected", "inverse_exponent_override", None),
    ("coupled_newton", "inverse_exponent_override", None),
    ("defaults", "betas", (0.5, 1.0)),
    ("defaults", "betas", (0.9, 0.99)),
    ("defaults", "epsilon", 1e-3),
    ("defaults", "precondition_frequency", 2),
    ("adam_grafting", "beta3", -1.0),
    ("adam_grafting", "grafting", None),
    ("adam_grafting", "grafting", "rmsprop"),
    ("adam_grafting", "start_preconditioning_step", 8),
    ("adam_grafting", "weight_decay", 0.0),
    ("adam_grafting", "classic_momentum", None),
    ("adam_grafting", "classic_momentum", (0.5, 0.0, False)),
    ("eigenvalue_corrected", "preconditioner", "root_inverse"),
    ("eigenvalue_corrected", "weight_decay_type", "decoupled"),
    ("eigenvalue_corrected", "grafting_beta2", 0.99),
    ("eigenvalue_corrected", "grafting_epsilon", 1e-2),
    ("coupled_newton", "root_inverse", ("newton", 2, 1e-6)),
    ("coupled_newton", "target_parameter_dimensionality", 1),
    ("coupled_newton", "use_bias_correction", True),
    ("coupled_newton", "grafting", "adagrad"),
    ("coupled_newton", "classic_momentum", (0.6, 0.0, False)),
]


@pytest.mark.parametrize(("name", "key", "value"), OPTION_CHANGES)
def test_each_option_changes_the_numbers(name, key, value):
    changed = run_reference({**CONFIGS[name][1], key: value})
    assert worst_error(changed, reference_run(name)) > 1e3 * TOLERANCE


@pytest.mark.parametrize("merge", [True, False])
def test_layout_is_the_references(merge):
    """Merging (size-1 axes dropped, neighbours merged from the last) and blocking."""
    from optim_fn.rules.shampoo import block_slices, merged_dims

    target = 1 if merge else math.inf
    for shape in [(), (1,), (1, 4, 1), (7,), (3, 4, 5), (2, 3, 8), (10, 4), (1, 1), (6, 1, 2)]:
        for max_dim in [1, 3, 5, 8, 12, 1024, math.inf]:
            merged = merged_dims(shape, max_dim, merge)
            assert merged == ref.merge_small_dims(shape, max_dim, target), (shape, max_dim)
            theirs = ref.multi_dim_split_indices(merged, max_dim)
            flat = np.arange(int(np.prod(merged))).reshape(merged)
            ours = [flat[index] for index in block_slices(merged, max_dim)]
            assert len(ours) == len(theirs)
            for mine, their in zip(ours, theirs, strict=True):
                np.testing.assert_array_equal(mine, their)


def test_a_scalar_and_unit_axes_follow_the_reference():
    """A scalar becomes a 1-vector with a 1x1 factor; axes of size 1 are dropped."""
    shapes = (("scalar", ()), ("unit_axes", (1, 4, 1)))
    options = {"max_preconditioner_dim": 5, "eps": 1e-6}
    reference = run_reference({"max_preconditioner_dim": 5, "epsilon": 1e-6}, shapes)
    with jax.enable_x64(True):
        ours = run_ours(options, jnp.float64, shapes=shapes)
    assert worst_error(ours, reference) < TOLERANCE


def test_state_layout_and_hyperparameters():
    optimizer = contrib.scale_by_shampoo(
        max_preconditioner_dim=5, grafting="adam", preconditioner="eigenvalue_corrected"
    )
    params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
    state = optimizer.init(params)
    # Per group of equal-shape blocks, per axis: the stacked factors.
    shapes = jax.tree.map(jnp.shape, state.factors)
    assert shapes["a_tall"] == (((2, 5, 5), (2, 4, 4)),)  # two 5x4 blocks
    assert shapes["b_wide"] == (((1, 3, 3), (1, 5, 5)), ((1, 3, 3), (1, 2, 2)))
    assert shapes["c_cube"] == (((1, 3, 3), (1, 4, 4), (1, 5, 5)),)
    assert shapes["d_vector"] == (((1, 5, 5),), ((1, 2, 2),))
    np.testing.assert_array_equal(state.preconditioners["a_tall"][0][1][1], np.eye(4))
    assert state.corrected_eigenvalues["c_cube"].shape == (3, 4, 5)
    assert state.grafting_state["b_wide"].shape == (3, 7)
    assert state.momentum_buffer["b_wide"].shape == (0,)  # no momentum: no buffer
    hyperparams = optim_fn.get_hyperparams(state)
    assert float(hyperparams["b2"]) == 1.0
    assert float(hyperparams["grafting_b2"]) == pytest.approx(0.999)
    assert float(hyperparams["b3"]) == pytest.approx(0.9)  # b3=-1 means b1


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"grafting": "lion"}, "`grafting` must be one of"),
        ({"preconditioner": "kl"}, "`preconditioner` must be one of"),
        ({"root_inverse": "svd"}, "`root_inverse` must be one of"),
        ({"weight_decay_type": "corrected"}, "`weight_decay_type` must be one of"),
        ({"precondition_frequency": 4, "start_preconditioning_step": 2}, "must be >= `precon"),
        ({"max_preconditioner_dim": 0}, "`max_preconditioner_dim` must be an integer >= 1"),
        ({"max_preconditioner_dim": 2.5}, "or math.inf"),
        ({"b3": 1.5}, "`b3` must be in [0, 1), or -1"),
        ({"b2": 1.5}, "`b2` must be in [0, 1]"),
        ({"b1": 1.0}, "`b1` must be in [0, 1)"),
        ({"eps": -1.0}, "`eps` must be >= 0"),
        ({"nesterov": 1}, "`nesterov` must be True or False"),
        ({"inverse_exponent_override": {2: {2: 0.5}}}, "names axis 2, not in [0, 1]"),
        ({"inverse_exponent_override": {-1: 0.5}}, "are tensor orders"),
        ({"inverse_exponent_override": {2: -0.5}}, "must be a number >= 0"),
        (
            {"inverse_exponent_override": {2: 0.3}, "root_inverse": "coupled_newton"},
            "inverse roots of integer order",
        ),
        (
            {"preconditioner": "eigenvalue_corrected", "inverse_exponent_override": {2: {0: 1}}},
            "maps an order to one exponent",
        ),
        ({"ignored_basis_change_dims": {2: [0]}}, "is for preconditioner='eigenvalue_corrected'"),
    ],
)
def test_bad_arguments_are_named(keywords, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        contrib.shampoo(**keywords)


def test_complex_params_are_refused_at_init():
    with pytest.raises(TypeError, match="shampoo does not support complex params"):
        contrib.shampoo().init({"w": jnp.ones((2, 2), jnp.complex64)})
