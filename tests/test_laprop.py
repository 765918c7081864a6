"""LaProp against the NumPy transcription of its paper and its authors' code.

``tests/reference_numpy.py::LaProp`` is written from Algorithm 1 of Ziyin, Wang & Ueda
(2020) with the learning rate inside the momentum as the authors' ``laprop.py`` has it
(and, with ``lr_in_momentum=False``, as the paper prints it). Here ``optim_fn.laprop``
follows it step by step for 60 steps of gradients that depend on the params (each run
computes them at its own params, so a wrong step also moves every later gradient), whose
scale varies over two orders of magnitude: within 1e-12 of the largest update of each
step in float64, and within ``FLOAT32_TOLERANCE`` when optim_fn runs in float32 (the
errors are printed with ``pytest -s``). Then: each option changes the numbers (an ignored
one would be seen), ``set_hyperparams(learning_rate=)`` reaches both blocks that read
the learning rate, the one deliberate difference from the authors' code (a step whose
learning rate is 0), the property checks of ``optim_fn.testing`` and argument checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_numpy as ref

import optim_fn

SHAPES = {"matrix": (4, 3), "vector": (5,), "cube": (2, 3, 2), "scalar": ()}
STEPS = 60
TOLERANCE = 1e-12
FLOAT32_TOLERANCE = 1e-5
MASK = {"matrix": True, "vector": False, "cube": True, "scalar": False}


def warmup_decay(count):
    """0 at the first step, up to 1.6e-2 at step 16, then ~1/t: NumPy ints and JAX arrays."""
    return 1e-2 * count / (5.0 + 0.02 * count * count)


def b1_schedule(count):
    return 0.5 + 0.4 * count / (count + 10.0)


def b2_schedule(count):
    return 0.9 + 0.099 * count / (count + 20.0)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.cache
def problem(complex_params: bool) -> tuple[dict, dict, dict, np.ndarray]:
    """Start params, the gradient's coefficients, and the per-step gradient scales."""
    rng = np.random.default_rng(11)

    def draw(shape):
        x = rng.normal(size=shape)
        return x + 1j * rng.normal(size=shape) if complex_params else x

    params = {k: draw(s) for k, s in SHAPES.items()}
    curvature = {k: 0.5 + rng.uniform(size=s) for k, s in SHAPES.items()}
    shift = {k: draw(s) for k, s in SHAPES.items()}
    scales = 10.0 ** rng.uniform(-1, 1, size=STEPS)
    return params, curvature, shift, scales


def gradient(params: dict, scale: Any, complex_params: bool, xp: Any) -> dict:
    """The gradient at ``params`` of a smooth, non-quadratic loss, times this step's scale
    (written once for NumPy and for JAX: ``xp`` is ``np`` or ``jnp``)."""
    _, curvature, shift, _ = problem(complex_params)

    def like(x, p):
        return xp.asarray(x).astype(p.dtype)

    return {
        k: scale * (like(curvature[k], p) * (p - like(shift[k], p)) + 0.5 * xp.sin(2 * p))
        for k, p in params.items()
    }


def run_ours(
    make: Callable[[], Any],
    dtype: Any,
    complex_params: bool = False,
    hook: Callable[[int, Any], Any] | None = None,
) -> tuple[list, list]:
    """``STEPS`` jitted steps of the optimizer at ``dtype``; the updates and params of each.

    ``hook(t, state) -> state`` runs before step ``t`` (1 at the first step)."""
    start, _, _, scales = problem(complex_params)
    params = {k: jnp.asarray(v, dtype) for k, v in start.items()}
    transform = make()
    state = transform.init(params)

    @jax.jit
    def step(params, state, scale):
        grads = gradient(params, scale.astype(jnp.finfo(dtype).dtype), complex_params, jnp)
        updates, state = transform.update(grads, state, params)
        return optim_fn.apply_updates(params, updates), state, updates

    updates_log, params_log = [], []
    for t in range(1, STEPS + 1):
        if hook is not None:
            state = hook(t, state)
        params, state, updates = step(params, state, jnp.asarray(scales[t - 1]))
        for leaf in jax.tree.leaves((params, updates)):
            assert leaf.dtype == dtype
        updates_log.append(jax.device_get(updates))
        params_log.append(jax.device_get(params))
    return updates_log, params_log


def run_reference(reference: ref.Reference, complex_params: bool = False) -> tuple[list, list]:
    start, _, _, scales = problem(complex_params)
    params = {k: np.array(v) for k, v in start.items()}
    reference.init(params)
    updates_log, params_log = [], []
    for t in range(STEPS):
        updates = reference.step(gradient(params, scales[t], complex_params, np), params)
        params = {k: params[k] + updates[k] for k in params}
        updates_log.append(updates)
        params_log.append(params)
    return updates_log, params_log


def relative_error(ours: list, expected: list) -> float:
    """max over steps of max |ours - expected| / max |expected|; an all-zero expected step
    (a zero learning rate) must be all zero here too."""
    worst = 0.0
    for t, (got, want) in enumerate(zip(ours, expected, strict=True)):
        diff = max(np.max(np.abs(np.asarray(got[k], want[k].dtype) - want[k])) for k in want)
        scale = max(np.max(np.abs(want[k])) for k in want)
        if scale == 0:
            assert diff == 0, f"step {t + 1}: the reference does not move, ours moves by {diff}"
            continue
        worst = max(worst, diff / scale)
    return float(worst)


class Case(NamedTuple):
    name: str
    ours: Callable[[], Any]
    reference: Callable[[], ref.Reference]


OPTIONS = {"b1": 0.8, "b2": 0.95, "eps": 1e-6, "weight_decay": 0.1, "mask": MASK}
REFERENCE_OPTIONS = {"mu": 0.8, "nu": 0.95, "eps": 1e-6, "weight_decay": 0.1, "mask": MASK}

CASES = [
    Case("defaults", lambda: optim_fn.laprop(1e-3), lambda: ref.LaProp(1e-3)),
    Case(
        "options_and_lr_schedule",
        lambda: optim_fn.laprop(warmup_decay, **OPTIONS),
        lambda: ref.LaProp(warmup_decay, **REFERENCE_OPTIONS),
    ),
    Case(
        "decay_schedules",
        lambda: optim_fn.laprop(warmup_decay, b1=b1_schedule, b2=b2_schedule, weight_decay=0.05),
        lambda: ref.LaProp(warmup_decay, mu=b1_schedule, nu=b2_schedule, weight_decay=0.05),
    ),
    # The paper's line as printed: constant weights in the momentum, the schedule outside.
    Case(
        "paper_lr_outside_momentum",
        lambda: optim_fn.chain(
            optim_fn.scale_by_laprop(1.0, b1=0.8, b2=0.95, eps=1e-6),
            optim_fn.scale_by_learning_rate(warmup_decay),
        ),
        lambda: ref.LaProp(warmup_decay, mu=0.8, nu=0.95, eps=1e-6, lr_in_momentum=False),
    ),
]
FLOAT32_CASES = CASES[:3]


def check(case: Case, dtype: Any, complex_params: bool = False) -> tuple[float, float]:
    updates, params = run_ours(case.ours, dtype, complex_params)
    expected_updates, expected_params = run_reference(case.reference(), complex_params)
    return relative_error(updates, expected_updates), relative_error(params, expected_params)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_float64_matches_the_reference(case: Case):
    update_error, param_error = check(case, jnp.float64)
    print(f"\n{case.name}, float64: updates {update_error:.2e}, params {param_error:.2e}")
    assert update_error <= TOLERANCE, f"{case.name}: updates differ by {update_error:.3g}"
    assert param_error <= TOLERANCE, f"{case.name}: params differ by {param_error:.3g}"


@pytest.mark.parametrize("case", FLOAT32_CASES, ids=[c.name for c in FLOAT32_CASES])
def test_float32_against_the_float64_reference(case: Case):
    update_error, param_error = check(case, jnp.float32)
    print(f"\n{case.name}, float32 vs float64: updates {update_error:.2e}, params "
          f"{param_error:.2e}")
    assert update_error <= FLOAT32_TOLERANCE, f"{case.name}: updates off by {update_error:.3g}"
    assert param_error <= FLOAT32_TOLERANCE, f"{case.name}: params off by {param_error:.3g}"


def test_complex128_matches_the_reference():
    """One real second moment ``|g|^2`` per complex entry, as the reference has it."""
    case = CASES[1]
    update_error, param_error = check(case, jnp.complex128, complex_params=True)
    assert update_error <= TOLERANCE and param_error <= TOLERANCE, (update_error, param_error)


def test_set_hyperparams_reaches_both_learning_rates():
    """The learning rate is read twice (the momentum's weights, the step): both change."""
    names = optim_fn.get_hyperparams(optim_fn.laprop(1e-2).init({"x": jnp.zeros(2)}))
    assert [n for n in sorted(names) if "learning_rate" in n] == [
        "0.learning_rate", "2.learning_rate"
    ]

    def hook(t, state):
        return optim_fn.set_hyperparams(state, learning_rate=2e-3) if t == 31 else state

    updates, params = run_ours(lambda: optim_fn.laprop(1e-2, b1=0.8), jnp.float64, hook=hook)
    expected = run_reference(ref.LaProp(lambda c: 1e-2 if c < 30 else 2e-3, mu=0.8))
    assert relative_error(updates, expected[0]) <= TOLERANCE
    assert relative_error(params, expected[1]) <= TOLERANCE


def _difference(a: list, b: list) -> float:
    return max(
        float(np.max(np.abs(x[k] - y[k])) / max(np.max(np.abs(y[k])), 1e-300))
        for x, y in zip(a, b, strict=True)
        for k in y
    )


def test_each_option_changes_the_numbers():
    """Each option, changed alone, moves the updates: none is ignored on the way."""
    baseline = run_ours(lambda: optim_fn.laprop(warmup_decay, **OPTIONS), jnp.float64)[0]
    variants = {
        "b1": {**OPTIONS, "b1": 0.7},
        "b2": {**OPTIONS, "b2": 0.9},
        "eps": {**OPTIONS, "eps": 1e-3},
        "weight_decay": {**OPTIONS, "weight_decay": 0.2},
        "mask": {**OPTIONS, "mask": None},
    }
    for name, options in variants.items():
        changed = run_ours(lambda o=options: optim_fn.laprop(warmup_decay, **o), jnp.float64)[0]
        assert _difference(changed, baseline) > 1e-6, f"changing {name} changed nothing"
    constant = run_ours(lambda: optim_fn.laprop(1e-2, **OPTIONS), jnp.float64)[0]
    assert _difference(constant, baseline) > 1e-6, "the learning rate schedule changed nothing"
    # The learning rate inside the momentum (the authors') against outside it (the paper).
    options = {k: v for k, v in OPTIONS.items() if k not in ("weight_decay", "mask")}
    outside = run_ours(
        lambda: optim_fn.chain(
            optim_fn.scale_by_laprop(1.0, **options),
            optim_fn.add_decayed_weights(OPTIONS["weight_decay"], OPTIONS["mask"]),
            optim_fn.scale_by_learning_rate(warmup_decay),
        ),
        jnp.float64,
    )[0]
    assert _difference(outside, baseline) > 1e-6, "the learning rate in the momentum is ignored"
    # A constant learning rate: its value does not weight anything, inside or outside.
    inside = run_ours(lambda: optim_fn.laprop(1e-2, b1=0.8), jnp.float64)[0]
    outside = run_ours(
        lambda: optim_fn.chain(
            optim_fn.scale_by_laprop(1.0, b1=0.8), optim_fn.add_decayed_weights(0.0),
            optim_fn.scale_by_learning_rate(1e-2),
        ),
        jnp.float64,
    )[0]
    assert _difference(inside, outside) <= 1e-13


def test_a_zero_learning_rate_is_no_step_where_the_authors_move_by_the_momentum():
    """The one deliberate difference: at a step whose learning rate is exactly 0 after
    nonzero ones, the authors' code divides by 1 instead of 0 and moves the params by
    ``m_t``; here (the limit of a vanishing learning rate) they do not move."""

    def schedule(count):
        return 0.0 if count == 10 else 1e-2

    def jax_schedule(count):
        return jnp.where(count == 10, 0.0, 1e-2)

    updates, _ = run_ours(lambda: optim_fn.laprop(jax_schedule), jnp.float64)
    reference = ref.LaProp(schedule)
    expected, _ = run_reference(reference)
    assert relative_error(updates[:10], expected[:10]) <= TOLERANCE
    assert all(np.all(u == 0) for u in updates[10].values())
    assert all(np.any(u != 0) for u in expected[10].values())


def test_property_checks():
    testing = pytest.importorskip("optim_fn.testing")
    testing.check_transform(lambda: optim_fn.laprop(warmup_decay, b1=0.8, b2=0.95))
    testing.check_transform(lambda: optim_fn.scale_by_laprop(1e-2, eps=1e-6))

    def decayed(params):
        return jax.tree.map(lambda p: -1e-2 * 0.1 * p, params)

    testing.check_transform(
        lambda: optim_fn.laprop(1e-2, weight_decay=0.1), zero_grad_update=decayed
    )


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: optim_fn.laprop(-1e-3), "^laprop: `learning_rate`"),
        (lambda: optim_fn.laprop(1e-3, b1=1.0), "b1"),
        (lambda: optim_fn.laprop(1e-3, b2=-0.1), "b2"),
        (lambda: optim_fn.laprop(1e-3, eps=-1.0), "eps"),
        (lambda: optim_fn.laprop(1e-3, weight_decay=-0.1), "weight_decay"),
        (lambda: optim_fn.scale_by_laprop("fast"), "learning_rate"),
    ],
)
def test_bad_arguments_fail_at_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()
