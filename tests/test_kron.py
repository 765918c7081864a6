"""PSGD Kron against its authors' JAX code, step by step in float64.

Oracle: Evan Walters' ``psgd-jax`` 0.2.9 from PyPI (``psgd_jax.kron.kron``), run with
update probability 1 (or the same schedule) and the same draws: our key derivation is
psgd-jax's, so the same seed gives the same probes V and rebalancing draws. psgd-jax
fixes its seed (5318008, our default); the tests pick a seed whose draws rebalance the
factors within the run by patching ``jax.random.PRNGKey`` while the reference is traced.
``merge_small_dims`` (kron_torch's, not in psgd-jax) is checked as psgd-jax on the tree
reshaped to the merged shapes. The problem has a tall, a wide, a 3-d and a 1-d leaf and
gradients that depend on the params; errors are relative to the params' total movement.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_catalogue import compile_options

import optim_fn
import optim_fn.contrib as contrib
from optim_fn.contrib._kron import DEFAULT_SEED, merged_shape

STEPS = 30
LR = 0.05
SHAPES = {"tall": (6, 3), "wide": (3, 7), "cube": (2, 5, 3), "bias": (5,)}
# In float64 its draws rebalance the factors at steps 15 and 18 (checked below): the
# rebalancing scales are rounded to float32, as the reference, so it shows at 1e-7.
SEED = 111
FLOAT32_ERRORS: dict[str, float] = {}
# XLA's fastest compile (test_catalogue's options, as tests/test_family_parity.py): the
# runs are compile-bound; ours and the reference are compiled alike.


@pytest.fixture(scope="module")
def psgd():
    optax = pytest.importorskip("optax")
    # psgd-jax 0.2.9 imports optax._src.clipping, which optax 0.2.8 moved.
    sys.modules.setdefault("optax._src.clipping", optax.transforms._clipping)
    return pytest.importorskip("psgd_jax.kron")


def _problem(shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    noise = {k: 0.3 * rng.standard_normal((STEPS, *s)) for k, s in shapes.items()}
    return params, noise


def _run(make, params0, noise, dtype=np.float64, shapes=None):
    """The params after each step (float64 NumPy, in ``params0``'s shapes); the
    optimizer sees each leaf reshaped to ``shapes[k]`` if given."""
    shapes = shapes or {k: v.shape for k, v in params0.items()}
    with jax.enable_x64(dtype == np.float64):
        opt = make()
        params = {k: jnp.asarray(v.reshape(shapes[k]).astype(dtype)) for k, v in params0.items()}
        state = opt.init(params)
        step_fn = None
        trajectory = []
        for step in range(STEPS):
            p = {k: np.asarray(v, np.float64) for k, v in params.items()}
            grads = {
                k: jnp.asarray(
                    (0.5 * v + 0.1 * np.tanh(3 * v) + noise[k][step].reshape(v.shape)).astype(dtype)
                )
                for k, v in p.items()
            }
            if step_fn is None:
                step_fn = _compiled(opt.update, grads, state, params)
            updates, state = step_fn(grads, state, params)
            params = jax.tree.map(lambda x, u: x + u, params, updates)
            trajectory.append(
                {k: np.asarray(v, np.float64).reshape(params0[k].shape) for k, v in params.items()}
            )
    return trajectory


def _compiled(function, *example):
    return jax.jit(function).lower(*example).compile(compiler_options=compile_options())


def _relative_error(ours, reference, params0):
    movement = max(np.max(np.abs(reference[-1][k] - params0[k])) for k in params0)
    error = max(
        np.max(np.abs(o[k] - r[k])) for o, r in zip(ours, reference, strict=True) for k in params0
    )
    return error / movement


def _reference(psgd, monkeypatch, make, params0, noise, dtype=np.float64, shapes=None):
    original = jax.random.PRNGKey

    def with_our_seed(seed, *args, **kwargs):
        return original(SEED if seed == DEFAULT_SEED else seed, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(jax.random, "PRNGKey", with_our_seed)
        return _run(make, params0, noise, dtype, shapes)


def _balance_steps(seed, steps):
    """The steps at which psgd-jax's draws rebalance (when the preconditioner updates)."""
    found = []
    for count in range(steps):
        _, update_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), count))
        _, balance_key = jax.random.split(update_key)
        if jax.random.uniform(balance_key) < 0.01:
            found.append(count + 1)
    return found


CONFIGS = {
    # Triangular factors (the tall matrix, the wide one's 3 rows and the merged cube's 3
    # columns), diagonal ones for axes above 6 and the bias; the cube merged into a (10, 3)
    # matrix (psgd-jax sees it so shaped); no momentum.
    "merged": (
        dict(max_size_triangular=6, merge_small_dims=True, b1=0.0, precond_update_prob=1.0),
        dict(max_size_triangular=6, b1=0.0, preconditioner_update_probability=1.0),
    ),
    # Momentum; one diagonal axis per tensor (the cube keeps two triangular factors), a
    # triangular factor for the bias, the fit on the raw gradient, weight decay on some
    # leaves, and a fast-decaying update schedule (updates every 2nd, then 5th step).
    "one_diag": (
        dict(memory_save_mode="one_diag", min_ndim_triangular=1, b1=0.8,
             momentum_into_precond_update=False, precond_lr=0.3, precond_init_scale=2.0,
             weight_decay=0.1, weight_decay_mask={"tall": True, "wide": False, "cube": True,
                                                  "bias": False},
             precond_update_prob=contrib.precond_update_prob_schedule(0.9, 0.2, 0.15, 4)),
        dict(memory_save_mode="one_diag", min_ndim_triangular=1, b1=0.8,
             momentum_into_precond_update=False, preconditioner_lr=0.3,
             preconditioner_init_scale=2.0, weight_decay=0.1,
             weight_decay_mask={"tall": True, "wide": False, "cube": True, "bias": False},
             preconditioner_update_probability="schedule"),
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_kron_matches_psgd_jax_in_float64(psgd, monkeypatch, name):
    ours_options, reference_options = CONFIGS[name]
    if reference_options.get("preconditioner_update_probability") == "schedule":
        reference_options = {
            **reference_options,
            "preconditioner_update_probability": psgd.precond_update_prob_schedule(
                0.9, 0.2, 0.15, 4
            ),
        }
    params0, noise = _problem()
    merge = ours_options.get("merge_small_dims", False)
    shapes = {k: merged_shape(v.shape, merge) for k, v in params0.items()}

    def ours():
        return contrib.kron(LR, seed=SEED, **ours_options)

    def reference():
        return psgd.kron(LR, **reference_options)

    ours_run = _run(ours, params0, noise)
    reference_run = _reference(psgd, monkeypatch, reference, params0, noise, shapes=shapes)
    error = _relative_error(ours_run, reference_run, params0)
    assert error < 1e-10, f"{name}: float64 error {error:.3g} relative to the movement"
    if name == "merged":
        with jax.enable_x64(True):  # the preconditioner updates at every step here
            assert _balance_steps(SEED, STEPS), "the run should include a rebalancing"
        ours32 = _run(ours, params0, noise, np.float32)
        reference32 = _reference(
            psgd, monkeypatch, reference, params0, noise, np.float32, shapes
        )
        FLOAT32_ERRORS[name] = _relative_error(ours32, reference_run, params0)
        FLOAT32_ERRORS[name + " vs psgd-jax float32"] = _relative_error(
            ours32, reference32, params0
        )
        # Same draws in float32 on both sides: only rounding separates the runs.
        assert FLOAT32_ERRORS[name + " vs psgd-jax float32"] < 1e-5
        print(f"\n{name}: float64 {error:.2e}; float32 against psgd-jax's float64 "
              f"{FLOAT32_ERRORS[name]:.2e} (its probes V differ from float64's), against "
              f"psgd-jax's float32 {FLOAT32_ERRORS[name + ' vs psgd-jax float32']:.2e}")


def test_update_probability_schedule_is_the_authors(psgd):
    steps = jnp.arange(0, 6000, 7)
    for arguments in [(), (0.9, 0.2, 0.15, 4), (1.0, 0.05, 0.01, 0)]:
        ours = contrib.precond_update_prob_schedule(*arguments)(steps)
        theirs = psgd.precond_update_prob_schedule(*arguments)(steps)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    default = contrib.precond_update_prob_schedule()
    assert float(default(500)) == 1.0 and float(default(6000)) == pytest.approx(0.03)


def _factor_shapes(**options):
    params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
    state = contrib.scale_by_kron(**options).init(params)
    return {k: [f.shape for f in factors] for k, factors in state.factors.items()}


def test_static_options_choose_the_factors():
    """Which axes get a triangular or a diagonal factor, and the initial scale."""
    default = {"bias": [(5,)], "cube": [(2, 2), (5, 5), (3, 3)], "tall": [(6, 6), (3, 3)],
               "wide": [(3, 3), (7, 7)]}
    assert _factor_shapes() == default
    assert _factor_shapes(max_size_triangular=5) == {
        **default, "tall": [(6,), (3, 3)], "wide": [(3, 3), (7,)]}
    assert _factor_shapes(min_ndim_triangular=3) == {
        **default, "tall": [(6,), (3,)], "wide": [(3,), (7,)]}
    assert _factor_shapes(min_ndim_triangular=1)["bias"] == [(5, 5)]
    assert _factor_shapes(memory_save_mode="one_diag") == {
        **default, "cube": [(2, 2), (5,), (3, 3)], "tall": [(6,), (3, 3)],
        "wide": [(3, 3), (7,)]}
    assert _factor_shapes(memory_save_mode="all_diag") == {
        k: [(n,) for n in s] for k, s in SHAPES.items()}
    assert _factor_shapes(merge_small_dims=True)["cube"] == [(10, 10), (3, 3)]
    cube = contrib.scale_by_kron(precond_init_scale=8.0).init({"c": jnp.zeros((2, 5, 3))})
    np.testing.assert_allclose(cube.factors["c"][1], 2.0 * np.eye(5))
    bf16 = {"w": jnp.zeros((3, 2), jnp.bfloat16)}
    state = contrib.scale_by_kron().init(bf16)
    assert state.mu["w"].dtype == jnp.bfloat16 and state.factors["w"][0].dtype == jnp.float32
    state = contrib.scale_by_kron(mu_dtype=np.dtype("float32"), precond_dtype="bfloat16").init(bf16)
    assert state.mu["w"].dtype == jnp.float32 and state.factors["w"][0].dtype == jnp.bfloat16


def test_options_in_the_state_change_the_numbers_and_the_seed_fixes_them():
    """One compiled step; the hyperparameters and the key are data in the state."""
    params = {k: jnp.asarray(np.random.default_rng(1).standard_normal(s), jnp.float32)
              for k, s in {"w": (4, 3), "b": (5,)}.items()}
    opt = contrib.kron(LR, precond_update_prob=1.0, weight_decay=0.1, seed=3)
    state = opt.init(params)
    step = _compiled(opt.update, params, state, params)

    def run(state, steps=3):
        p = params
        for _ in range(steps):
            grads = jax.tree.map(lambda x: 0.5 * x + jnp.tanh(3 * x), p)
            updates, state = step(grads, state, p)
            p = jax.tree.map(jnp.add, p, updates)
        return p

    base = run(state)
    # The same seed, as an integer or a key, and a fresh state: the same numbers.
    again = contrib.kron(LR, precond_update_prob=1.0, weight_decay=0.1,
                         seed=jax.random.key(3)).init(params)
    np.testing.assert_array_equal(np.asarray(again[0].key), np.asarray(state[0].key))
    jax.tree.map(np.testing.assert_array_equal, run(again), base)
    assert np.array_equal(np.asarray(opt.init(params)[0].key), np.asarray(jax.random.PRNGKey(3)))
    changed = {
        "b1": optim_fn.set_hyperparams(state, b1=0.5),
        "precond_lr": optim_fn.set_hyperparams(state, precond_lr=0.5),
        "precond_update_prob": optim_fn.set_hyperparams(state, precond_update_prob=0.4),
        "weight_decay": optim_fn.set_hyperparams(state, weight_decay=0.0),
        "seed": (state[0]._replace(key=jax.random.PRNGKey(4)), *state[1:]),
    }
    for name, other in changed.items():
        moved = run(other)
        assert any(not np.allclose(moved[k], base[k], rtol=1e-6, atol=0) for k in base), name
    assert int(contrib.scale_by_kron().init(params).key[1]) == DEFAULT_SEED


def test_momentum_into_precond_update_changes_the_numbers():
    params = {"b": jnp.asarray(np.random.default_rng(2).standard_normal(6), jnp.float32)}
    results = []
    for flag in (True, False):
        opt = contrib.scale_by_kron(momentum_into_precond_update=flag, precond_update_prob=1.0)
        state = opt.init(params)
        step = _compiled(opt.update, params, state)
        for index in range(3):
            updates, state = step({"b": params["b"] * (index + 1.0) + 0.3}, state)
        results.append(np.asarray(updates["b"]))
    assert not np.allclose(results[0], results[1], rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(memory_save_mode="diag"), "memory_save_mode"),
        (dict(precond_update_prob=0.0), "precond_update_prob"),
        (dict(precond_update_prob=1.5), "precond_update_prob"),
        (dict(max_size_triangular=2.5), "max_size_triangular"),
        (dict(min_ndim_triangular=-1), "min_ndim_triangular"),
        (dict(merge_small_dims=1), "merge_small_dims"),
        (dict(precond_init_scale=0.0), "precond_init_scale"),
        (dict(seed="seven"), "seed"),
        (dict(b1=1.0), "b1"),
        (dict(mu_dtype=jnp.int32), "mu_dtype"),
    ],
)
def test_bad_arguments_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        contrib.kron(LR, **options)


def test_complex_params_are_refused():
    with pytest.raises(TypeError, match="complex"):
        contrib.kron(LR).init({"w": jnp.ones((2, 2), jnp.complex64)})
