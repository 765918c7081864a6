"""PSGD Kron against kron_torch 0.3.3 (its authors' PyTorch code), step by step in float64.

Oracle: tests/reference_kron_torch.py, our NumPy transcription of ``kron_torch/kron.py``
(the PyPI package needs triton). It is fed our draws: the probes V and the rebalancing
draw that ``optim_fn.contrib.kron`` makes from its seed (its module docstring: per step
``fold_in(key, step - 1)``, split as psgd-jax, one key per leaf), recomputed here with
``jax.random``. The problem is tests/test_kron.py's (a tall, a wide, a 3-d and a 1-d
leaf, gradients that depend on the params, 30 steps); errors are relative to the
params' total movement.

Ours is configured to kron_torch's semantics: ``merge_small_dims=True`` where kron_torch
merges, ``weight_decay_mask`` on the leaves of 2 or more axes, and a schedule for the
update probability shifted by one step (kron_torch evaluates it at the steps done, 0
first; ours, as psgd-jax, at the step being taken). Two differences cannot be configured
away; the transcription has an option for each, and the tests measure both:

* kron_torch preconditions the probed momentum :math:`h = \\hat m +
  \\sqrt{\\epsilon_{32}}\\,\\mathrm{mean}|\\hat m|\\,V` at the steps that update the
  preconditioner (``_calc_A_and_conjB`` adds the probe term in place to the debiased
  momentum, which is the tensor it fits on when ``momentum_into_precond_update``);
  ours and psgd-jax precondition :math:`\\hat m` (``precondition_probed_momentum=False``);
* kron_torch's rebalancing scales are in the factors' dtype, ours (psgd-jax's) are rounded
  to float32, so each rebalancing moves the float64 preconditioner by about float32's
  epsilon (``balance_scales_float32=True``).

Both show above 1e-10 (asserted, so the comparisons below would catch them). The
transcription was checked once, outside the suite, against kron_torch 0.3.3's own
``kron.py`` run eagerly with torch 2.13 in float64 (its triangular solve in float64, and
in float32 as kron_torch has it) on these four leaf shapes and several options.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from reference_kron_torch import KronTorch, precond_update_prob_schedule
from test_kron import LR, SEED, SHAPES, STEPS, _compiled, _problem, _relative_error, _run

import optim_fn.contrib as contrib
from optim_fn.contrib._kron import merged_shape

# No rebalancing draw in its first 30 steps (checked below).
SEED_WITHOUT_BALANCE = 0
DECAY_MASK = {"bias": False, "cube": True, "tall": True, "wide": True}


@functools.cache
def _our_draws(seed, merge):
    """Per step (1 first): the rebalancing draw and each leaf's probe V (``jax.tree.leaves``
    order, the merged shapes), as ``optim_fn.contrib._kron`` makes them, in float64."""
    uniforms, probes = _draws_program()(np.int64(seed))
    return np.asarray(uniforms), [np.asarray(p) for p in probes[merge]]


@functools.cache
def _draws_program():
    """One compiled program for every seed: both leaf shapes (unmerged and merged)."""
    names = sorted(SHAPES)

    def one_step(seed, count):
        step_key = jax.random.fold_in(jax.random.PRNGKey(seed), count - 1)
        _, update_key = jax.random.split(step_key)
        rest, balance_key = jax.random.split(update_key)
        _, probe_key = jax.random.split(rest)
        leaf_keys = jax.random.split(probe_key, len(names))
        probes = {
            merge: [
                jax.random.normal(leaf_keys[i], merged_shape(SHAPES[k], merge), jnp.float64)
                for i, k in enumerate(names)
            ]
            for merge in (False, True)
        }
        return jax.random.uniform(balance_key, dtype=jnp.float64), probes

    def all_steps(seed):
        return jax.vmap(one_step, in_axes=(None, 0))(seed, jnp.arange(1, STEPS + 1))

    with jax.enable_x64(True):
        program = _compiled(all_steps, jnp.int64(0))

    def run(seed):
        with jax.enable_x64(True):
            return program(jnp.int64(seed))

    return run


def _reference_run(options, params0, noise, seed, merge):
    """kron_torch's params after each step, on test_kron's gradients, with our draws."""
    names = sorted(params0)
    uniforms, probes = _our_draws(seed, merge)
    reference = KronTorch([params0[k].shape for k in names], lr=LR, merge_dims=merge, **options)
    params = [params0[k] for k in names]
    trajectory = []
    for step in range(STEPS):
        # test_kron's gradients
        grads = [
            0.5 * p + 0.1 * np.tanh(3 * p) + noise[k][step]
            for k, p in zip(names, params, strict=True)
        ]

        def random_normal(index, shape, step=step):
            assert shape == probes[index].shape[1:]
            return probes[index][step]

        params = reference.step(params, grads, random_normal, lambda step=step: uniforms[step])
        trajectory.append(dict(zip(names, params, strict=True)))
    return trajectory, uniforms, reference.update_steps


def test_kron_matches_kron_torch_merged_with_rebalancing():
    """Update every step, the cube merged to (10, 3), triangular factors up to 6 (the
    merged cube's 10 and the wide leaf's 7 diagonal), momentum, weight decay on the
    matrices, the fit on the raw gradient, rebalancings (at steps 15 and 18)."""
    params0, noise = _problem()
    options = dict(b1=0.9, weight_decay=0.1, preconditioner_update_probability=1.0,
                   max_size_triangular=6, momentum_into_precond_update=False)
    ours = _run(lambda: contrib.kron(
        LR, b1=0.9, weight_decay=0.1, weight_decay_mask=DECAY_MASK, precond_update_prob=1.0,
        max_size_triangular=6, momentum_into_precond_update=False, merge_small_dims=True,
        seed=SEED), params0, noise)
    as_ours, uniforms, _ = _reference_run(
        {**options, "balance_scales_float32": True}, params0, noise, SEED, merge=True
    )
    assert np.any(uniforms < 0.01), "the run should rebalance"
    error = _relative_error(ours, as_ours, params0)
    assert error < 1e-10, f"float64 error {error:.3g} relative to the movement"
    faithful, _, _ = _reference_run(options, params0, noise, SEED, merge=True)
    balance_error = _relative_error(ours, faithful, params0)
    assert balance_error > 1e-10, "kron_torch's float64 rebalancing scales should show"
    print(f"\nmerged: {error:.2e}; with kron_torch's float64 rebalancing scales "
          f"{balance_error:.2e}")


def test_kron_matches_kron_torch_3d_factors_and_update_schedule():
    """The cube's three factors unmerged, the largest axis of each leaf diagonal, momentum
    into the fit, and an update schedule (every 2nd step, then every 5th): kron_torch's
    counter."""
    params0, noise = _problem()
    theirs_schedule = precond_update_prob_schedule(0.9, 0.2, 0.15, 4)
    ours_schedule = contrib.precond_update_prob_schedule(0.9, 0.2, 0.15, 4)
    common = dict(b1=0.8, weight_decay=0.1, memory_save_mode="one_diag", min_ndim_triangular=1,
                  precond_lr=0.3, precond_init_scale=2.0)
    ours = _run(lambda: contrib.kron(
        LR, **common, weight_decay_mask=DECAY_MASK, seed=SEED_WITHOUT_BALANCE,
        precond_update_prob=lambda n: ours_schedule(n - 1)), params0, noise)
    options = {**common, "preconditioner_update_probability": theirs_schedule}
    as_ours, uniforms, updates = _reference_run(
        {**options, "precondition_probed_momentum": False}, params0, noise,
        SEED_WITHOUT_BALANCE, merge=False,
    )
    assert np.all(uniforms >= 0.01), "this seed should not rebalance"
    assert {2, 5} <= set(np.diff(updates)), f"updates at {updates}: both cadences expected"
    error = _relative_error(ours, as_ours, params0)
    assert error < 1e-10, f"float64 error {error:.3g} relative to the movement"
    faithful, _, _ = _reference_run(options, params0, noise, SEED_WITHOUT_BALANCE, merge=False)
    probed_error = _relative_error(ours, faithful, params0)
    assert probed_error > 1e-10, "kron_torch's probed momentum should show"
    print(f"\nschedule: {error:.2e}; preconditioning kron_torch's probed momentum "
          f"{probed_error:.2e}")


def test_kron_matches_kron_torch_without_momentum_every_third_step():
    """No momentum, the fit on the gradient, a triangular factor for the bias, the
    preconditioner updated every 3rd step (probability 0.4), no weight decay, no
    rebalancing: kron_torch's numbers with no option of the transcription changed."""
    params0, noise = _problem()
    options = dict(b1=0.0, momentum_into_precond_update=False, min_ndim_triangular=1,
                   precond_lr=0.2)
    ours = _run(lambda: contrib.kron(
        LR, **options, precond_update_prob=0.4, merge_small_dims=True,
        seed=SEED_WITHOUT_BALANCE), params0, noise)
    theirs, uniforms, updates = _reference_run(
        {**options, "preconditioner_update_probability": 0.4}, params0, noise,
        SEED_WITHOUT_BALANCE, merge=True,
    )
    assert np.all(uniforms >= 0.01) and updates == list(range(3, STEPS + 1, 3)), updates
    error = _relative_error(ours, theirs, params0)
    assert error < 1e-10, f"float64 error {error:.3g} relative to the movement"
    print(f"\nno momentum: {error:.2e}")
