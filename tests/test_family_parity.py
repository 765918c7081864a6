"""Step-by-step differential tests of the optimizer family against optax.

For each configuration both libraries run 100 steps on the same random gradients (a
matrix, a vector, a 3-d array and a scalar; the gradient scale of each step is
10**uniform(-2, 2), four orders of magnitude; a few entries are exactly zero for the
first steps), as ``lax.scan`` loops jitted twelve configurations to a program. At every
step the UPDATES and the params after ``apply_updates`` are compared::

    max over leaves |ours - optax|  /  max over leaves |optax|   <= 1e-5 (float32)
                                                                  <= 1e-10 (float64)

Where float32 arithmetic is ill-conditioned (MoMo's Polyak ratios, schedule-free's
``y_{t+1} - y_t``) or optax's float32 arithmetic loses digits (RAdam's ``rho_t``, ADOPT's
``1 - b2``), a case is marked ``conditioned``: both float32 runs are judged against optax's
float64 run, ours within max(1e-5, 3x optax's own float32 error); its float64 run pins the
formula at 1e-10. Rprop, where optim_fn deliberately differs (optax lags a step), is
checked against a NumPy transcription of the paper and torch in
``tests/test_family_reference.py``.

``test_detects_a_flipped_option`` shows that each option changes the numbers by far more
than the tolerance, so an option that optim_fn ignored would fail the parity test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from test_catalogue import compile_options
from test_parity_optax import STEPS, make_data

import optim_fn
from optim_fn import contrib

TOLERANCE = {np.float32: 1e-5, np.float64: 1e-10}
# For optax code paths that compute in float32 even in a float64 run (an int32 count
# under a square root, optax's schedules, Adafactor's decay).
LOOSE_F64 = {np.float32: 1e-5, np.float64: 1e-6}
F32 = (np.float32,)
BOTH = (np.float32, np.float64)

MASK_TREE = {"matrix": True, "vector": False, "cube": True, "scalar": False}


def mask_fn(params: Any) -> Any:
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def inverse_time(count: jax.Array) -> jax.Array:
    return 0.1 / (1.0 + 0.05 * count)


# The cube is orthogonalized over axes (0, 2) with axis 1 as a batch axis; the vector and
# the scalar go to AdamW.
MUON_DIMS = {
    "matrix": contrib.MuonDimensionNumbers(0, 1),
    "vector": None,
    "cube": contrib.MuonDimensionNumbers(0, 2),
    "scalar": None,
}
OPTAX_MUON_DIMS = {
    "matrix": optax.contrib.MuonDimensionNumbers(0, 1),
    "vector": None,
    "cube": optax.contrib.MuonDimensionNumbers(0, 2),
    "scalar": None,
}

# GaLore: the matrix projected as 3 x 4 (right side), the cube as (2*2) x 3 (left side).
GALORE_DIMS = {
    "matrix": contrib.GaLoreDimensionNumbers(1, 0),
    "vector": None,
    "cube": contrib.GaLoreDimensionNumbers((0, 2), 1),
    "scalar": None,
}
OPTAX_GALORE_DIMS = {
    "matrix": optax.contrib.GaLoreDimensionNumbers(1, 0),
    "vector": None,
    "cube": optax.contrib.GaLoreDimensionNumbers((0, 2), 1),
    "scalar": None,
}


def galore_dims_fn(params: Any) -> dict:
    """The matrix as itself, the cube as 2 x (3*2): a function of the params."""
    del params
    return {
        "matrix": contrib.GaLoreDimensionNumbers(),
        "vector": None,
        "cube": contrib.GaLoreDimensionNumbers(0, (1, 2)),
        "scalar": None,
    }


def optax_galore_dims_fn(params: Any) -> dict:
    del params
    return {
        "matrix": optax.contrib.GaLoreDimensionNumbers(),
        "vector": None,
        "cube": optax.contrib.GaLoreDimensionNumbers(0, (1, 2)),
        "scalar": None,
    }


WARMUP_COSINE = optax.warmup_cosine_decay_schedule(1e-4, 1e-2, 10, 100, 1e-4)


def loss(params: Any) -> jax.Array:
    """A positive, non-quadratic loss of the params (for Polyak steps, MoMo, Sophia)."""
    total = 0.0
    for index, leaf in enumerate(jax.tree.leaves(params)):
        total = total + jnp.sum(0.5 * (index + 1) * leaf**2 + jnp.cos(leaf))
    return total + 10.0


def with_value(params: Any) -> dict:
    return {"value": loss(params)}


def with_grad_fn(params: Any) -> dict:
    del params
    return {"grad_fn": lambda p, i: jax.grad(loss)(p)}


def with_obj_fn(params: Any) -> dict:
    del params
    return {"obj_fn": loss}


class Case(NamedTuple):
    name: str
    ours: Callable[[], Any]
    optax: Callable[[], Any]
    dtypes: tuple = F32
    extra_args: Callable[[Any], dict] | None = None
    # optax fails on 0-d leaves for some optimizers (SM3 indexes an empty list).
    drop_scalar: bool = False
    tolerance: dict | None = None
    # Ill-conditioned in float32 (Polyak-type ratios, schedule-free's y_{t+1} - y_t, or an
    # optax float32 precision loss): both float32 runs are judged against optax's
    # float64 run, ours to within max(1e-5, 3 x optax's own float32 error), errors
    # relative to the largest value of the whole run.
    conditioned: bool = False


def trajectories(cases: tuple, dtype: type) -> list:
    """Runs every case, ours and optax's, for ``STEPS`` steps in ONE jitted program.

    Returns, per case, ``((our_updates, our_params), (optax_updates, optax_params))``,
    each a tree of arrays stacked over steps. One program per group of cases keeps the
    compile time of the suite low (tracing dominates it).
    """
    params, grads = make_data(dtype)

    def run_one(transform, apply_updates, params, grads, extra_args):
        def step(carry, grad):
            params, state = carry
            extra = extra_args(params) if extra_args else {}
            updates, state = transform.update(grad, state, params, **extra)
            params = apply_updates(params, updates)
            return (params, state), (updates, params)

        return jax.lax.scan(step, (params, transform.init(params)), grads)[1]

    def without_scalar(tree):
        return {k: v for k, v in tree.items() if k != "scalar"}

    def run_all(params, grads):
        results = []
        for case in cases:
            p, g = (
                (without_scalar(params), without_scalar(grads))
                if case.drop_scalar
                else (
                    params,
                    grads,
                )
            )
            results.append(
                (
                    run_one(case.ours(), optim_fn.apply_updates, p, g, case.extra_args),
                    run_one(case.optax(), optax.apply_updates, p, g, case.extra_args),
                )
            )
        return results

    compiled = jax.jit(run_all).lower(params, grads).compile(compiler_options=compile_options())
    return jax.device_get(compiled(params, grads))


def relative_error(ours: Any, reference: Any, per_step: bool = True) -> float:
    """max over steps of max |ours - reference| / max |reference| (maxima over the tree).

    A step where the reference update is exactly zero (ADOPT's first step) must be
    exactly zero in ours too; most steps must be non-zero, or the check is vacuous. With
    ``per_step=False`` the scale is the largest reference value over all steps, for runs
    whose early updates are rounding noise around zero (schedule-free during warmup).
    """
    ours_leaves, ref_leaves = jax.tree.leaves(ours), jax.tree.leaves(reference)
    assert len(ours_leaves) == len(ref_leaves)
    diff, scale = np.zeros(STEPS), np.zeros(STEPS)
    for a, b in zip(ours_leaves, ref_leaves, strict=True):
        assert a.shape == b.shape
        a = np.asarray(a, np.float64).reshape(STEPS, -1)
        b = np.asarray(b, np.float64).reshape(STEPS, -1)
        diff = np.maximum(diff, np.abs(a - b).max(axis=1))
        scale = np.maximum(scale, np.abs(b).max(axis=1))
    assert np.sum(scale > 0) >= STEPS - 2, "the reference is mostly zero: a vacuous check"
    assert np.all(diff[scale == 0] == 0), "ours is non-zero where the reference is zero"
    if not per_step:
        return float(np.max(diff) / np.max(scale))
    return float(np.max(diff[scale > 0] / scale[scale > 0]))


def check_run(case: Case, run: Any, dtype: type) -> None:
    for leaf in jax.tree.leaves(run):
        assert leaf.dtype == dtype, f"{case.name}: a {leaf.dtype} leaf in a {dtype} run"
        assert np.all(np.isfinite(leaf)), f"{case.name}: non-finite values"


def errors(run: Any, reference: Any, per_step: bool = True) -> dict[str, float]:
    (updates, params), (ref_updates, ref_params) = run, reference
    return {
        "updates": relative_error(updates, ref_updates, per_step),
        "params": relative_error(params, ref_params, per_step),
    }


GROUP_SIZE = 12
# XLA's CPU backend spends most of this suite's time optimizing 100-step loops that run
# in milliseconds; its cheaper pipeline and older elemental emitters (test_catalogue's
# options) compile them ~3x faster. Ours and optax's run in one program: same options.
_GROUP_CACHE: dict = {}


def cached_run(all_cases: list, case: Case, dtype: type) -> tuple:
    """``(ours, optax's)`` trajectories of ``case``, run with its group in one program."""
    members = [c for c in all_cases if dtype in c.dtypes]
    index = members.index(case)
    start = index - index % GROUP_SIZE
    group = tuple(members[start : start + GROUP_SIZE])
    key = (tuple(c.name for c in group), dtype)
    if key not in _GROUP_CACHE:
        try:
            with jax.enable_x64(dtype == np.float64):
                _GROUP_CACHE[key] = trajectories(group, dtype)
        except Exception as error:  # noqa: BLE001 - re-raised per case, naming the group
            _GROUP_CACHE[key] = error
    found = _GROUP_CACHE[key]
    if isinstance(found, Exception):
        raise AssertionError(f"the group {key[0]} failed: {found!r}") from found
    ours, reference = found[index - start]
    check_run(case, ours, dtype)
    return ours, reference


CASES = [
    # --- Adam's relatives
    Case("adamax", lambda: optim_fn.adamax(1e-2), lambda: optax.adamax(1e-2)),
    Case(
        "adamax_options",
        lambda: optim_fn.adamax(1e-2, b1=0.5, b2=0.9, eps=1e-3),
        lambda: optax.adamax(1e-2, b1=0.5, b2=0.9, eps=1e-3),
    ),
    Case(
        "adamaxw_mask",
        lambda: optim_fn.adamaxw(1e-2, weight_decay=0.1, mask=mask_fn),
        lambda: optax.adamaxw(1e-2, weight_decay=0.1, mask=mask_fn),
    ),
    Case("amsgrad", lambda: optim_fn.amsgrad(1e-2), lambda: optax.amsgrad(1e-2)),
    Case(
        "amsgrad_no_bias_correction",
        lambda: optim_fn.amsgrad(
            1e-2, eps_root=1e-4, bias_correction_mu=False, bias_correction_nu=False
        ),
        lambda: optax.amsgrad(
            1e-2, eps_root=1e-4, bias_correction_mu=False, bias_correction_nu=False
        ),
    ),
    Case("nadam", lambda: optim_fn.nadam(1e-2), lambda: optax.nadam(1e-2)),
    Case(
        "nadamw_schedule",
        lambda: optim_fn.nadamw(WARMUP_COSINE, weight_decay=0.1, mask=MASK_TREE),
        lambda: optax.nadamw(WARMUP_COSINE, weight_decay=0.1, mask=MASK_TREE),
    ),
    # optax's float32 rho_t loses 1-3% to cancellation (see test_family_reference.py).
    Case("radam", lambda: optim_fn.radam(1e-2), lambda: optax.radam(1e-2), conditioned=True),
    Case(
        "radam_nesterov_threshold",
        lambda: optim_fn.radam(1e-2, b2=0.99, threshold=6.0, nesterov=True),
        lambda: optax.radam(1e-2, b2=0.99, threshold=6.0, nesterov=True),
        conditioned=True,
    ),
    Case("adabelief", lambda: optim_fn.adabelief(1e-2), lambda: optax.adabelief(1e-2)),
    Case(
        "adabelief_nesterov_eps",
        lambda: optim_fn.adabelief(1e-2, eps=1e-6, eps_root=1e-8, nesterov=True),
        lambda: optax.adabelief(1e-2, eps=1e-6, eps_root=1e-8, nesterov=True),
    ),
    Case("yogi", lambda: optim_fn.yogi(1e-2), lambda: optax.yogi(1e-2)),
    Case(
        "scale_by_yogi_options",
        lambda: optim_fn.scale_by_yogi(0.5, 0.9, 1e-4, 1e-6, 0.1),
        lambda: optax.scale_by_yogi(0.5, 0.9, 1e-4, 1e-6, 0.1),
    ),
    Case("adan", lambda: optim_fn.adan(1e-2), lambda: optax.adan(1e-2)),
    Case(
        "adan_weight_decay",
        lambda: optim_fn.adan(1e-2, 0.9, 0.8, 0.95, 1e-6, 0.0, 0.1, mask_fn),
        lambda: optax.adan(1e-2, 0.9, 0.8, 0.95, 1e-6, 0.0, 0.1, mask_fn),
    ),
    # --- sign methods (Rprop differs on purpose: test_family_reference.py)
    Case("sign_sgd", lambda: optim_fn.sign_sgd(1e-2), lambda: optax.sign_sgd(1e-2)),
    Case("signum", lambda: optim_fn.signum(1e-2, 0.8), lambda: optax.signum(1e-2, 0.8)),
    Case("lion", lambda: optim_fn.lion(1e-3), lambda: optax.lion(1e-3)),
    Case(
        "lion_mask_b",
        lambda: optim_fn.lion(1e-3, 0.5, 0.9, weight_decay=0.1, mask=MASK_TREE),
        lambda: optax.lion(1e-3, 0.5, 0.9, weight_decay=0.1, mask=MASK_TREE),
    ),
    Case(
        "scale_by_lion_smooth",
        lambda: optim_fn.scale_by_lion(mode="smooth", smooth_beta=3.0),
        lambda: optax.scale_by_lion(mode="smooth", smooth_beta=3.0),
    ),
    Case(
        "scale_by_lion_refined",
        lambda: optim_fn.scale_by_lion(mode="refined"),
        lambda: optax.scale_by_lion(mode="refined"),
    ),
    # --- layer-wise
    Case("lamb", lambda: optim_fn.lamb(1e-2), lambda: optax.lamb(1e-2)),
    Case(
        "lamb_weight_decay",
        lambda: optim_fn.lamb(1e-2, 0.8, 0.99, 1e-4, 1e-6, 0.1, mask_fn),
        lambda: optax.lamb(1e-2, 0.8, 0.99, 1e-4, 1e-6, 0.1, mask_fn),
    ),
    Case("lars", lambda: optim_fn.lars(1.0), lambda: optax.lars(1.0)),
    Case(
        "lars_masks_nesterov",
        lambda: optim_fn.lars(0.5, 0.1, MASK_TREE, 0.01, 1e-6, mask_fn, 0.8, True),
        lambda: optax.lars(0.5, 0.1, MASK_TREE, 0.01, 1e-6, mask_fn, 0.8, True),
    ),
    Case("fromage", lambda: optim_fn.fromage(1e-2), lambda: optax.fromage(1e-2)),
    Case(
        "fromage_schedule",
        lambda: optim_fn.fromage(inverse_time, 1e-3),
        lambda: optax.fromage(inverse_time, 1e-3),
    ),
    Case("novograd", lambda: optim_fn.novograd(1e-2), lambda: optax.novograd(1e-2)),
    Case(
        "novograd_options",
        lambda: optim_fn.novograd(1e-2, 0.8, 0.5, 1e-3, 1e-6, 0.1),
        lambda: optax.novograd(1e-2, 0.8, 0.5, 1e-3, 1e-6, 0.1),
    ),
    # --- factored
    # optax computes Adafactor's decay 1 - t^-0.8 in float32 even for float64 params.
    Case(
        "adafactor",
        lambda: optim_fn.adafactor(1e-2),
        lambda: optax.adafactor(1e-2),
        tolerance=LOOSE_F64,
    ),
    Case(
        "adafactor_factored",
        lambda: optim_fn.adafactor(1e-2, min_dim_size_to_factor=2),
        lambda: optax.adafactor(1e-2, min_dim_size_to_factor=2),
        tolerance=LOOSE_F64,
    ),
    Case(
        "adafactor_all_options",
        lambda: optim_fn.adafactor(
            None, 2, 0.5, -3, False, 0.5, 0.9, jnp.float32, 1e-3, 1e-20, True, mask_fn
        ),
        lambda: optax.adafactor(
            None, 2, 0.5, -3, False, 0.5, 0.9, jnp.float32, 1e-3, 1e-20, True, mask_fn
        ),
        tolerance=LOOSE_F64,
    ),
    Case(
        "adafactor_unfactored",
        lambda: optim_fn.adafactor(1e-2, factored=False, clipping_threshold=None),
        lambda: optax.adafactor(1e-2, factored=False, clipping_threshold=None),
        tolerance=LOOSE_F64,
    ),
    Case("sm3", lambda: optim_fn.sm3(1e-2), lambda: optax.sm3(1e-2), drop_scalar=True),
    Case(
        "scale_by_sm3_decay",
        lambda: optim_fn.scale_by_sm3(0.5, 0.9, 1e-6),
        lambda: optax.scale_by_sm3(0.5, 0.9, 1e-6),
        drop_scalar=True,
    ),
    # --- noise, Polyak, optimism
    Case(
        "noisy_sgd",
        lambda: optim_fn.noisy_sgd(1e-2, key=3),
        lambda: optax.noisy_sgd(1e-2, key=3),
    ),
    Case(
        "noisy_sgd_options",
        lambda: optim_fn.noisy_sgd(1e-2, 0.1, 0.3, jax.random.key(5)),
        lambda: optax.noisy_sgd(1e-2, 0.1, 0.3, jax.random.key(5)),
    ),
    Case(
        "polyak_sgd",
        lambda: optim_fn.polyak_sgd(),
        lambda: optax.polyak_sgd(),
        extra_args=with_value,
    ),
    Case(
        "polyak_sgd_options",
        lambda: optim_fn.polyak_sgd(0.5, 0.3, 40.0, 1e-3, "sps+"),
        lambda: optax.polyak_sgd(0.5, 0.3, 40.0, 1e-3, "sps+"),
        extra_args=with_value,
    ),
    Case(
        "optimistic_gradient_descent",
        lambda: optim_fn.optimistic_gradient_descent(1e-2, 0.7, 0.3),
        lambda: optax.optimistic_gradient_descent(1e-2, 0.7, 0.3),
    ),
    Case(
        "optimistic_adam_v2",
        lambda: optim_fn.optimistic_adam_v2(1e-2, alpha=0.5, beta=2.0, nesterov=False),
        lambda: optax.optimistic_adam_v2(1e-2, alpha=0.5, beta=2.0, nesterov=False),
    ),
    # --- contrib
    Case("adopt", lambda: contrib.adopt(1e-2), lambda: optax.contrib.adopt(1e-2), conditioned=True),
    Case(
        "adopt_nesterov_no_clipping",
        lambda: contrib.adopt(1e-2, 0.8, 0.99, 1e-4, nesterov=True, use_clipping=False),
        lambda: optax.contrib.adopt(1e-2, 0.8, 0.99, 1e-4, nesterov=True, use_clipping=False),
    ),
    Case("acprop", lambda: contrib.acprop(1e-2), lambda: optax.contrib.acprop(1e-2), dtypes=BOTH),
    Case(
        "acprop_options",
        lambda: contrib.acprop(inverse_time, 0.8, 0.99, 1e-6, 1e-8, 0.1, mask_fn),
        lambda: optax.contrib.acprop(inverse_time, 0.8, 0.99, 1e-6, 1e-8, 0.1, mask_fn),
    ),
    Case("ademamix", lambda: contrib.ademamix(1e-2), lambda: optax.contrib.ademamix(1e-2)),
    Case(
        "ademamix_schedules",
        lambda: contrib.ademamix(
            1e-2, b3=lambda c: 0.999 - 0.5 / (c + 2.0), alpha=inverse_time, weight_decay=0.1
        ),
        lambda: optax.contrib.ademamix(
            1e-2, b3=lambda c: 0.999 - 0.5 / (c + 2.0), alpha=inverse_time, weight_decay=0.1
        ),
    ),
    Case(
        "simplified_ademamix",
        lambda: contrib.simplified_ademamix(1e-3, alpha=2.0, weight_decay=0.1, mask=mask_fn),
        lambda: optax.contrib.simplified_ademamix(1e-3, alpha=2.0, weight_decay=0.1, mask=mask_fn),
    ),
    Case("cocob", lambda: contrib.cocob(), lambda: optax.contrib.cocob()),
    Case(
        "cocob_options",
        lambda: contrib.cocob(0.5, 10.0, 1e-4, 0.1, mask_fn),
        lambda: optax.contrib.cocob(0.5, 10.0, 1e-4, 0.1, mask_fn),
    ),
    Case("dog", lambda: contrib.dog(), lambda: optax.contrib.dog()),
    Case(
        "dog_learning_rate_init",
        lambda: contrib.dog(0.5, ("learning_rate", 1e-3), 1e-6, 0.1),
        lambda: optax.contrib.dog(0.5, ("learning_rate", 1e-3), 1e-6, 0.1),
    ),
    Case(
        "dog_distance_init",
        lambda: contrib.dog(init_step=("distance", 0.1)),
        lambda: optax.contrib.dog(init_step=("distance", 0.1)),
    ),
    Case("dowg", lambda: contrib.dowg(), lambda: optax.contrib.dowg()),
    Case(
        "dowg_options",
        lambda: contrib.dowg(0.5, 1e-2, 1e-3, 0.1, mask_fn),
        lambda: optax.contrib.dowg(0.5, 1e-2, 1e-3, 0.1, mask_fn),
    ),
    # optax takes the square root of an int32 count, in float32 even in float64 runs.
    Case(
        "madgrad",
        lambda: contrib.madgrad(1e-2),
        lambda: optax.contrib.madgrad(1e-2),
        tolerance=LOOSE_F64,
    ),
    Case(
        "madgrad_options",
        lambda: contrib.madgrad(inverse_time, 0.5, 0.1, 1e-4),
        lambda: optax.contrib.madgrad(inverse_time, 0.5, 0.1, 1e-4),
        tolerance=LOOSE_F64,
    ),
    Case(
        "momo",
        lambda: contrib.momo(),
        lambda: optax.contrib.momo(),
        extra_args=with_value,
        conditioned=True,
    ),
    Case(
        "momo_options",
        lambda: contrib.momo(0.5, 0.8, 5.0, 0.1, True),
        lambda: optax.contrib.momo(0.5, 0.8, 5.0, 0.1, True),
        extra_args=with_value,
        conditioned=True,
    ),
    Case(
        "momo_adam",
        lambda: contrib.momo_adam(),
        lambda: optax.contrib.momo_adam(),
        extra_args=with_value,
        conditioned=True,
    ),
    Case(
        "momo_adam_options",
        lambda: contrib.momo_adam(0.1, 0.8, 0.99, 1e-6, 5.0, 0.1, True),
        lambda: optax.contrib.momo_adam(0.1, 0.8, 0.99, 1e-6, 5.0, 0.1, True),
        extra_args=with_value,
        conditioned=True,
    ),
    Case("prodigy", lambda: contrib.prodigy(), lambda: optax.contrib.prodigy()),
    Case(
        "prodigy_options",
        lambda: contrib.prodigy(0.5, (0.8, 0.99), 0.9, 1e-6, 1e-4, 0.5, 0.1, True),
        lambda: optax.contrib.prodigy(0.5, (0.8, 0.99), 0.9, 1e-6, 1e-4, 0.5, 0.1, True),
    ),
    Case("dadapt_adamw", lambda: contrib.dadapt_adamw(), lambda: optax.contrib.dadapt_adamw()),
    Case(
        "dadapt_adamw_options",
        lambda: contrib.dadapt_adamw(inverse_time, (0.8, 0.99), 1e-6, 1e-4, 0.1),
        lambda: optax.contrib.dadapt_adamw(inverse_time, (0.8, 0.99), 1e-6, 1e-4, 0.1),
    ),
    Case(
        "schedule_free_sgd",
        lambda: contrib.schedule_free_sgd(1e-2),
        lambda: optax.contrib.schedule_free_sgd(1e-2),
        conditioned=True,
    ),
    Case(
        "schedule_free_sgd_warmup",
        lambda: contrib.schedule_free_sgd(1e-2, 10, 0.8, 0.1, 1.0),
        lambda: optax.contrib.schedule_free_sgd(1e-2, 10, 0.8, 0.1, 1.0),
        conditioned=True,
        tolerance=LOOSE_F64,
    ),
    Case(
        "schedule_free_adamw",
        lambda: contrib.schedule_free_adamw(1e-2, weight_decay=0.1),
        lambda: optax.contrib.schedule_free_adamw(1e-2, weight_decay=0.1),
        conditioned=True,
    ),
    Case(
        "schedule_free_adamw_warmup",
        lambda: contrib.schedule_free_adamw(1e-2, 10, 0.8, 0.99, 1e-6, 0.1, 1.0),
        lambda: optax.contrib.schedule_free_adamw(1e-2, 10, 0.8, 0.99, 1e-6, 0.1, 1.0),
        conditioned=True,
        tolerance=LOOSE_F64,
    ),
    Case(
        "sophia",
        lambda: contrib.sophia(1e-2, update_interval=3),
        lambda: optax.contrib.sophia(1e-2, update_interval=3),
        extra_args=with_obj_fn,
    ),
    Case(
        "sophia_options",
        lambda: contrib.sophia(1e-2, 0.9, 0.9, 1e-6, 0.1, mask_fn, 0.1, 0.05, 2),
        lambda: optax.contrib.sophia(1e-2, 0.9, 0.9, 1e-6, 0.1, mask_fn, 0.1, 0.05, 2),
        extra_args=with_obj_fn,
    ),
    Case(
        "sam",
        lambda: contrib.sam(
            optim_fn.sgd(1e-2), optim_fn.chain(contrib.normalize(), optim_fn.sgd(5e-2))
        ),
        lambda: optax.contrib.sam(
            optax.sgd(1e-2), optax.chain(optax.contrib.normalize(), optax.sgd(5e-2))
        ),
    ),
    Case(
        "sam_sync3_no_reset",
        lambda: contrib.sam(
            optim_fn.adam(1e-2),
            optim_fn.chain(contrib.normalize(), optim_fn.sgd(5e-2, 0.5)),
            3,
            False,
        ),
        lambda: optax.contrib.sam(
            optax.adam(1e-2),
            optax.chain(optax.contrib.normalize(), optax.sgd(5e-2, 0.5)),
            3,
            False,
        ),
    ),
    Case(
        "sam_opaque",
        lambda: contrib.sam(
            optim_fn.sgd(1e-2),
            optim_fn.chain(contrib.normalize(), optim_fn.sgd(5e-2)),
            3,
            opaque_mode=True,
        ),
        lambda: optax.contrib.sam(
            optax.sgd(1e-2),
            optax.chain(optax.contrib.normalize(), optax.sgd(5e-2)),
            3,
            opaque_mode=True,
        ),
        extra_args=with_grad_fn,
    ),
    # GaLore in float32 (optax takes every SVD in float32; ours is float64 for float64
    # leaves, checked against a NumPy transcription in tests/test_galore.py).
    Case("galore", lambda: contrib.galore(1e-2), lambda: optax.contrib.galore(1e-2)),
    Case(
        "galore_options",
        lambda: contrib.galore(
            1e-2, 2, 7, 0.5, optim_fn.scale_by_adam(b1=0.8), 0.1, mask_fn, GALORE_DIMS
        ),
        lambda: optax.contrib.galore(
            1e-2, 2, 7, 0.5, optax.scale_by_adam(b1=0.8), 0.1, mask_fn, OPTAX_GALORE_DIMS
        ),
    ),
    Case(
        "galore_rank1_every_step",
        lambda: contrib.galore(
            inverse_time,
            rank=1,
            update_proj_gap=1,
            base_optimizer=optim_fn.scale_by_rms(),
            weight_dimension_numbers=galore_dims_fn,
        ),
        lambda: optax.contrib.galore(
            inverse_time,
            rank=1,
            update_proj_gap=1,
            base_optimizer=optax.scale_by_rms(),
            weight_dimension_numbers=optax_galore_dims_fn,
        ),
    ),
    Case("muon", lambda: contrib.muon(1e-2), lambda: optax.contrib.muon(1e-2)),
    Case(
        "muon_options",
        lambda: contrib.muon(
            1e-2,
            "dion",
            5,
            0.9,
            1e-7,
            0.1,
            None,
            nesterov=False,
            adaptive=True,
            preconditioning="aol",
            adam_b1=0.8,
            adam_weight_decay=0.1,
            adam_learning_rate=1e-3,
        ),
        lambda: optax.contrib.muon(
            1e-2,
            "dion",
            5,
            0.9,
            1e-7,
            0.1,
            None,
            nesterov=False,
            adaptive=True,
            preconditioning="aol",
            adam_b1=0.8,
            adam_weight_decay=0.1,
            adam_learning_rate=1e-3,
        ),
    ),
    Case(
        "muon_dimension_numbers",
        lambda: contrib.muon(
            1e-2,
            preconditioning="spectral",
            muon_weight_dimension_numbers=MUON_DIMS,
            consistent_rms=0.2,
        ),
        lambda: optax.contrib.muon(
            1e-2,
            preconditioning="spectral",
            muon_weight_dimension_numbers=OPTAX_MUON_DIMS,
            consistent_rms=0.2,
        ),
    ),
    Case(
        "muon_schatten_cube",
        lambda: contrib.muon(
            1e-2, preconditioning="schatten", muon_weight_dimension_numbers=MUON_DIMS
        ),
        lambda: optax.contrib.muon(
            1e-2, preconditioning="schatten", muon_weight_dimension_numbers=OPTAX_MUON_DIMS
        ),
    ),
    # Mechanic's update x_{t+1} - x_t is a difference of O(1) params that moves by ~S_t,
    # which starts at s_init = 1e-6: float32 rounding of the params is ~6% of it.
    Case(
        "mechanize",
        lambda: contrib.mechanize(optim_fn.adam(1.0)),
        lambda: optax.contrib.mechanize(optax.adam(1.0)),
        conditioned=True,
    ),
    Case(
        "mechanize_sgd_options",
        lambda: contrib.mechanize(optim_fn.sgd(1e-2, 0.9), 0.1, 1e-6, 0.1, 3),
        lambda: optax.contrib.mechanize(optax.sgd(1e-2, 0.9), 0.1, 1e-6, 0.1, 3),
        dtypes=BOTH,
    ),
]


# float64 runs pin the formulas to 1e-10; one per optimizer (its defaults) and every
# case whose float32 check is judged against float64.
FLOAT64_CASES = {
    "adamax", "amsgrad", "nadam", "nadamw_schedule", "adabelief", "yogi", "adan",
    "sign_sgd", "signum", "lion", "lamb", "lars", "fromage", "novograd", "adafactor",
    "adafactor_factored", "sm3", "noisy_sgd", "polyak_sgd", "optimistic_gradient_descent",
    "optimistic_adam_v2", "ademamix", "simplified_ademamix", "cocob", "dog", "dowg",
    "madgrad", "prodigy", "dadapt_adamw", "sophia", "sam", "muon", "muon_dimension_numbers",
}  # fmt: skip
CASES = [c._replace(dtypes=BOTH) if c.name in FLOAT64_CASES or c.conditioned else c for c in CASES]
assert FLOAT64_CASES <= {c.name for c in CASES}


PARITY_PARAMS = [
    pytest.param(case, dtype, id=f"{case.name}-{'f32' if dtype == np.float32 else 'f64'}")
    for dtype in (np.float32, np.float64)
    for case in CASES
    if dtype in case.dtypes
]


@pytest.mark.parametrize("case, dtype", PARITY_PARAMS)
def test_matches_optax_step_by_step(case: Case, dtype: type):
    ours, reference = cached_run(CASES, case, dtype)
    tolerance = (case.tolerance or TOLERANCE)[dtype]
    if case.conditioned and dtype == np.float32:
        _, truth = cached_run(CASES, case, np.float64)
        optax_own = errors(reference, truth, per_step=False)
        found = errors(ours, truth, per_step=False)
        for key in ("updates", "params"):
            bound = max(tolerance, 3 * optax_own[key])
            assert found[key] <= bound, f"{case.name} {key}: {found} (optax's: {optax_own})"
        return
    found = errors(ours, reference)
    assert found["updates"] <= tolerance, f"{case.name} updates: {found}"
    assert found["params"] <= tolerance, f"{case.name} params: {found}"


# optim_fn with an option, optax with that option flipped: each must move the updates
# by far more than the tolerance, or the parity test could not see it ignored.
MUTANTS = [
    Case(
        "amsgrad_bias_correction",
        lambda: optim_fn.amsgrad(1e-2, bias_correction_nu=False),
        lambda: optax.amsgrad(1e-2),
    ),
    Case(
        "adabelief_nesterov",
        lambda: optim_fn.adabelief(1e-2, nesterov=True),
        lambda: optax.adabelief(1e-2),
    ),
    Case(
        "lion_mode", lambda: optim_fn.scale_by_lion(mode="refined"), lambda: optax.scale_by_lion()
    ),
    Case(
        "lars_nesterov",
        lambda: optim_fn.lars(0.5, nesterov=True),
        lambda: optax.lars(0.5),
    ),
    Case(
        "adafactor_momentum",
        lambda: optim_fn.adafactor(1e-2, momentum=0.9),
        lambda: optax.adafactor(1e-2),
    ),
    Case(
        "adafactor_parameter_scale",
        lambda: optim_fn.adafactor(1e-2, multiply_by_parameter_scale=False),
        lambda: optax.adafactor(1e-2),
    ),
    Case(
        "polyak_variant",
        lambda: optim_fn.polyak_sgd(0.5, 0.3, 1e3, 1e-3, "sps+"),
        lambda: optax.polyak_sgd(0.5, 0.3, 1e3, 1e-3, "sps"),
        extra_args=with_value,
    ),
    Case(
        "noisy_sgd_key",
        lambda: optim_fn.noisy_sgd(1e-2, key=4),
        lambda: optax.noisy_sgd(1e-2, key=3),
    ),
    Case(
        "adopt_clipping",
        lambda: contrib.adopt(1e-2, use_clipping=False),
        lambda: optax.contrib.adopt(1e-2),
    ),
    Case(
        "momo_adapt_lower_bound",
        lambda: contrib.momo(0.5, adapt_lower_bound=True, lower_bound=5.0),
        lambda: optax.contrib.momo(0.5, lower_bound=5.0),
        extra_args=with_value,
    ),
    Case(
        "prodigy_safeguard_warmup",
        lambda: contrib.prodigy(safeguard_warmup=True),
        lambda: optax.contrib.prodigy(),
    ),
    Case(
        "schedule_free_weight_lr_power",
        lambda: contrib.schedule_free_sgd(1e-2, 10, weight_lr_power=1.0),
        lambda: optax.contrib.schedule_free_sgd(1e-2, 10),
    ),
    Case(
        "sam_reset_state",
        lambda: contrib.sam(
            optim_fn.sgd(1e-2), optim_fn.chain(contrib.normalize(), optim_fn.sgd(5e-2, 0.5)), 3
        ),
        lambda: optax.contrib.sam(
            optax.sgd(1e-2), optax.chain(optax.contrib.normalize(), optax.sgd(5e-2, 0.5)), 3, False
        ),
    ),
    Case(
        "acprop_mask",
        lambda: contrib.acprop(1e-2, weight_decay=0.5, mask=MASK_TREE),
        lambda: optax.contrib.acprop(1e-2, weight_decay=0.5),
    ),
    Case(
        "galore_rank",
        lambda: contrib.galore(1e-2, rank=1, update_proj_gap=7),
        lambda: optax.contrib.galore(1e-2, rank=2, update_proj_gap=7),
    ),
    Case(
        "galore_update_proj_gap",
        lambda: contrib.galore(1e-2, rank=2, update_proj_gap=5),
        lambda: optax.contrib.galore(1e-2, rank=2, update_proj_gap=7),
    ),
    Case(
        "galore_scale",
        lambda: contrib.galore(1e-2, scale=0.5),
        lambda: optax.contrib.galore(1e-2),
    ),
    Case(
        "galore_dimension_numbers",
        lambda: contrib.galore(1e-2, rank=2, weight_dimension_numbers=GALORE_DIMS),
        lambda: optax.contrib.galore(1e-2, rank=2),
    ),
    Case(
        "muon_nesterov",
        lambda: contrib.muon(1e-2, nesterov=False),
        lambda: optax.contrib.muon(1e-2),
    ),
    Case(
        "mechanize_weight_decay",
        lambda: contrib.mechanize(optim_fn.sgd(1e-2, 0.9), weight_decay=0.5, s_init=0.1),
        lambda: optax.contrib.mechanize(optax.sgd(1e-2, 0.9), s_init=0.1),
    ),
    Case(
        "mechanize_eps",
        lambda: contrib.mechanize(optim_fn.sgd(1e-2, 0.9), eps=0.1, s_init=0.1),
        lambda: optax.contrib.mechanize(optax.sgd(1e-2, 0.9), s_init=0.1),
    ),
    Case(
        "mechanize_s_init",
        lambda: contrib.mechanize(optim_fn.sgd(1e-2, 0.9), s_init=0.1),
        lambda: optax.contrib.mechanize(optax.sgd(1e-2, 0.9), s_init=0.01),
    ),
    Case(
        "mechanize_num_betas",
        lambda: contrib.mechanize(optim_fn.sgd(1e-2, 0.9), s_init=0.1, num_betas=2),
        lambda: optax.contrib.mechanize(optax.sgd(1e-2, 0.9), s_init=0.1),
    ),
]


@pytest.mark.parametrize("case", MUTANTS, ids=[c.name for c in MUTANTS])
def test_detects_a_flipped_option(case: Case):
    found = errors(*cached_run(MUTANTS, case, np.float32))
    assert found["updates"] > 1e3 * TOLERANCE[np.float32], (case.name, found)
