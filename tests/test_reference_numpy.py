"""optim_fn against independent NumPy transcriptions of the papers' formulas, in float64.

optax is one implementation of these rules; agreeing with it (tests/test_parity_optax.py)
cannot reveal a mistake both share. Here each seed optimizer is checked, option by option
(nesterov, centered, eps placement, bias correction, momentum, initial values, weight
decay, masks, schedules), against the per-step loops of ``tests/reference_numpy.py``,
written from the update rules as published, over 100 steps of random float64 gradients
whose scale varies over four orders of magnitude. The bound is 1e-12 relative to the
largest update of each step.

Complex params get one real second moment per complex entry, ``|g|^2`` (not ``g^2``,
which is complex, nor per real and imaginary part); adam and rmsprop, and the other
adaptive rules, are checked on complex128 params too. Finally, ``apply_updates`` keeps
bf16 params bf16, with a single rounding of ``p + u``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import reference_numpy as ref

import optim_fn

SHAPES = {"matrix": (4, 3), "vector": (5,), "cube": (2, 3, 2), "scalar": ()}
STEPS = 100
TOLERANCE = 1e-12

MASK_TREE = {"matrix": True, "vector": False, "cube": True, "scalar": False}
MASK_BY_NDIM = {k: len(s) >= 2 for k, s in SHAPES.items()}


def mask_fn(params: Any) -> Any:
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def inverse_time(count):
    """A schedule both NumPy (int) and JAX (int32 array) can evaluate."""
    return 0.1 / (1.0 + 0.05 * count)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.cache
def make_data(complex_params: bool) -> tuple[dict, list[dict]]:
    """Params and ``STEPS`` gradients (float64 or complex128), per-step scale 10**U(-2, 2)."""
    rng = np.random.default_rng(7)

    def draw(shape):
        x = rng.normal(size=shape)
        return x + 1j * rng.normal(size=shape) if complex_params else x

    params = {k: draw(s) for k, s in SHAPES.items()}
    scale = 10.0 ** rng.uniform(-2, 2, size=STEPS)
    grads = [{k: draw(s) * scale[t] for k, s in SHAPES.items()} for t in range(STEPS)]
    for t in range(5):  # exact zeros: adagrad's s_t = 0 branch, 0/eps elsewhere
        grads[t]["vector"][:2] = 0.0
    return params, grads


def run_optim_fn(transform, params: dict, grads: list[dict]) -> tuple[Any, Any, Any]:
    """100 jitted steps of ``transform``; per-step updates and params, and the final state."""
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *grads)

    @jax.jit
    def run(params, grads):
        def step(carry, grad):
            params, state = carry
            updates, state = transform.update(grad, state, params)
            params = optim_fn.apply_updates(params, updates)
            return (params, state), (updates, params)

        (_, state), (updates, params) = jax.lax.scan(
            step, (params, transform.init(params)), grads
        )
        return updates, params, state

    return jax.device_get(run(params, stacked))


def relative_error(ours: Any, reference: list[dict]) -> float:
    """max over steps of max |ours - reference| / max |reference| (maxima over the tree)."""
    worst = 0.0
    for t, expected in enumerate(reference):
        diff = max(np.max(np.abs(ours[k][t] - expected[k])) for k in expected)
        scale = max(np.max(np.abs(expected[k])) for k in expected)
        assert scale > 0, f"step {t}: the reference update is all zero, a vacuous check"
        worst = max(worst, diff / scale)
    return float(worst)


class Case(NamedTuple):
    name: str
    ours: Callable[[], Any]
    reference: Callable[[], ref.Reference]


CASES = [
    Case("sgd", lambda: optim_fn.sgd(0.1), lambda: ref.SGD(0.1)),
    Case("sgd_momentum", lambda: optim_fn.sgd(0.1, 0.9), lambda: ref.SGD(0.1, 0.9)),
    Case(
        "sgd_nesterov",
        lambda: optim_fn.sgd(0.05, 0.95, nesterov=True),
        lambda: ref.SGD(0.05, 0.95, nesterov=True),
    ),
    Case(
        "sgd_schedule",
        lambda: optim_fn.sgd(inverse_time, 0.9),
        lambda: ref.SGD(inverse_time, 0.9),
    ),
    Case("adagrad", lambda: optim_fn.adagrad(0.1), lambda: ref.Adagrad(0.1)),
    Case(
        "adagrad_zero_start",
        lambda: optim_fn.adagrad(0.5, initial_accumulator_value=0.0, eps=1e-3),
        lambda: ref.Adagrad(0.5, initial_accumulator_value=0.0, eps=1e-3),
    ),
    Case("rmsprop", lambda: optim_fn.rmsprop(1e-2), lambda: ref.RMSprop(1e-2)),
    Case(
        "rmsprop_centered",
        lambda: optim_fn.rmsprop(1e-2, decay=0.95, eps=1e-4, centered=True),
        lambda: ref.RMSprop(1e-2, decay=0.95, eps=1e-4, centered=True),
    ),
    Case(
        "rmsprop_momentum",
        lambda: optim_fn.rmsprop(1e-2, momentum=0.9),
        lambda: ref.RMSprop(1e-2, momentum=0.9),
    ),
    Case(
        "rmsprop_nesterov",
        lambda: optim_fn.rmsprop(1e-2, momentum=0.9, nesterov=True),
        lambda: ref.RMSprop(1e-2, momentum=0.9, nesterov=True),
    ),
    Case(
        "rmsprop_eps_outside_sqrt",
        lambda: optim_fn.rmsprop(1e-2, eps=1e-4, eps_in_sqrt=False),
        lambda: ref.RMSprop(1e-2, eps=1e-4, eps_in_sqrt=False),
    ),
    Case(
        "rmsprop_bias_correction",
        lambda: optim_fn.rmsprop(1e-2, decay=0.99, bias_correction=True),
        lambda: ref.RMSprop(1e-2, decay=0.99, bias_correction=True),
    ),
    Case(
        "rmsprop_initial_scale",
        lambda: optim_fn.rmsprop(1e-2, initial_scale=1.0),
        lambda: ref.RMSprop(1e-2, initial_scale=1.0),
    ),
    # initial_scale > 0: with v_0 = 0, centered + bias correction has v^ - m^2 = 0 at t=1.
    Case(
        "rmsprop_centered_all_options",
        lambda: optim_fn.rmsprop(
            1e-2, 0.95, 1e-4, 0.5, False, True, 0.8, True, bias_correction=True
        ),
        lambda: ref.RMSprop(1e-2, 0.95, 1e-4, 0.5, False, True, 0.8, True, bias_correction=True),
    ),
    Case(
        "rmsprop_schedule",
        lambda: optim_fn.rmsprop(inverse_time, momentum=0.9),
        lambda: ref.RMSprop(inverse_time, momentum=0.9),
    ),
    Case("adadelta", lambda: optim_fn.adadelta(), lambda: ref.Adadelta()),
    Case(
        "adadelta_rho_eps_lr",
        lambda: optim_fn.adadelta(0.5, rho=0.95, eps=1e-4),
        lambda: ref.Adadelta(0.5, rho=0.95, eps=1e-4),
    ),
    Case(
        "adadelta_weight_decay",
        lambda: optim_fn.adadelta(weight_decay=0.1),
        lambda: ref.Adadelta(weight_decay=0.1),
    ),
    Case(
        "adadelta_weight_decay_mask",
        lambda: optim_fn.adadelta(weight_decay=0.1, weight_decay_mask=MASK_TREE),
        lambda: ref.Adadelta(weight_decay=0.1, mask=MASK_TREE),
    ),
    Case("adam", lambda: optim_fn.adam(1e-3), lambda: ref.Adam(1e-3)),
    Case(
        "adam_betas_eps",
        lambda: optim_fn.adam(1e-2, b1=0.5, b2=0.99, eps=1e-3),
        lambda: ref.Adam(1e-2, b1=0.5, b2=0.99, eps=1e-3),
    ),
    Case(
        "adam_nesterov",
        lambda: optim_fn.adam(1e-3, nesterov=True),
        lambda: ref.Adam(1e-3, nesterov=True),
    ),
    Case(
        "adam_eps_root",
        lambda: optim_fn.adam(1e-3, eps_root=1e-4),
        lambda: ref.Adam(1e-3, eps_root=1e-4),
    ),
    Case(
        "adam_schedule",
        lambda: optim_fn.adam(inverse_time),
        lambda: ref.Adam(inverse_time),
    ),
    Case(
        "adamw",
        lambda: optim_fn.adamw(1e-2, weight_decay=0.1),
        lambda: ref.Adam(1e-2, weight_decay=0.1),
    ),
    Case(
        "adamw_mask_tree",
        lambda: optim_fn.adamw(1e-2, weight_decay=0.1, mask=MASK_TREE),
        lambda: ref.Adam(1e-2, weight_decay=0.1, mask=MASK_TREE),
    ),
    Case(
        "adamw_mask_callable",
        lambda: optim_fn.adamw(1e-2, weight_decay=0.1, mask=mask_fn),
        lambda: ref.Adam(1e-2, weight_decay=0.1, mask=MASK_BY_NDIM),
    ),
    Case(
        "adamw_nesterov_eps_root_schedules",
        lambda: optim_fn.adamw(
            inverse_time, eps_root=1e-4, weight_decay=inverse_time, nesterov=True
        ),
        lambda: ref.Adam(inverse_time, eps_root=1e-4, weight_decay=inverse_time, nesterov=True),
    ),
]

# The rules with a second moment, on complex128 params.
COMPLEX_CASES = [
    c
    for c in CASES
    if c.name
    in {
        "adam",
        "adam_nesterov",
        "adamw_mask_tree",
        "rmsprop",
        "rmsprop_centered",
        "rmsprop_nesterov",
        "rmsprop_eps_outside_sqrt",
        "rmsprop_centered_all_options",
        "adagrad_zero_start",
        "adadelta_weight_decay",
        "sgd_nesterov",
    }
]


def check_case(case: Case, complex_params: bool) -> float:
    params, grads = make_data(complex_params)
    updates, new_params, _ = run_optim_fn(case.ours(), params, grads)
    expected_updates, expected_params = ref.run(case.reference(), params, grads)
    dtype = np.complex128 if complex_params else np.float64
    for leaf in jax.tree.leaves((updates, new_params)):
        assert leaf.dtype == dtype
    error = relative_error(updates, expected_updates)
    assert error <= TOLERANCE, f"{case.name}: updates differ by {error:.3g} (relative)"
    param_error = relative_error(new_params, expected_params)
    assert param_error <= TOLERANCE, f"{case.name}: params differ by {param_error:.3g}"
    return error


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_matches_numpy_reference(case: Case):
    check_case(case, complex_params=False)


@pytest.mark.parametrize("case", COMPLEX_CASES, ids=[c.name for c in COMPLEX_CASES])
def test_matches_numpy_reference_complex(case: Case):
    check_case(case, complex_params=True)


def test_complex_second_moment_is_abs_squared():
    """The stored second moment is the real ``|g|^2`` average, not an average of ``g^2``."""
    params, grads = make_data(complex_params=True)
    _, _, state = run_optim_fn(optim_fn.scale_by_adam(), params, grads)
    reference = ref.Adam(1.0)
    ref.run(reference, params, grads)
    for k in SHAPES:
        nu = np.asarray(state.nu[k])
        np.testing.assert_array_equal(nu.imag, 0.0)
        np.testing.assert_allclose(nu.real, reference.v[k], rtol=1e-13)
        assert np.all(nu.real >= 0)


def test_complex_gradients_differ_from_stacked_real_parts():
    """Treating a complex entry as two reals would give a different step; check we do not."""
    params, grads = make_data(complex_params=True)
    updates, _, _ = run_optim_fn(optim_fn.adam(1e-3), params, grads)
    split_params = {k: np.stack([v.real, v.imag]) for k, v in params.items()}
    split_grads = [{k: np.stack([v.real, v.imag]) for k, v in g.items()} for g in grads]
    split_updates, _, _ = run_optim_fn(optim_fn.adam(1e-3), split_params, split_grads)
    as_complex = {k: v[:, 0] + 1j * v[:, 1] for k, v in split_updates.items()}
    gap = max(np.max(np.abs(updates[k] - as_complex[k])) for k in SHAPES)
    assert gap > 1e-5, "complex Adam should not equal Adam on (real, imag) pairs"


def test_apply_updates_keeps_bf16_params_bf16():
    bf16 = jnp.bfloat16
    params, grads = make_data(complex_params=False)
    params = {k: jnp.asarray(v, bf16) for k, v in params.items()}
    f32_updates = {k: jnp.asarray(g * 1e-3, jnp.float32) for k, g in grads[10].items()}

    new_params = optim_fn.apply_updates(params, f32_updates)
    for k in SHAPES:
        assert new_params[k].dtype == bf16
        # The float32 sum p + u (exact here), rounded to bf16: what optax.apply_updates gives.
        exact = np.asarray(params[k], np.float64) + np.asarray(f32_updates[k], np.float64)
        expected = exact.astype(np.float32).astype(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(np.asarray(new_params[k]), expected)

    # A whole optimizer on bf16 params: updates and params stay bf16, and the params move.
    transform = optim_fn.adam(1e-2)
    state = transform.init(params)
    grad = {k: jnp.asarray(g, bf16) for k, g in grads[0].items()}
    updates, state = transform.update(grad, state, params)
    moved = optim_fn.apply_updates(params, updates)
    for k in SHAPES:
        assert updates[k].dtype == bf16
        assert moved[k].dtype == bf16
    assert any(np.any(np.asarray(moved[k]) != np.asarray(params[k])) for k in SHAPES)
