"""GaLore beyond float32 parity with optax (``tests/test_family_parity.py``).

* float64: optax takes every SVD in float32 (its projectors are orthonormal to ~1e-7
  only); ours is float64 for float64 leaves. The float64 runs are checked step by step
  against a NumPy transcription of the algorithm (optax's projection side and state,
  Adam as ``optax.scale_by_adam``). Singular vectors are defined only up to sign, and
  the Adam moments outlive a projector refresh, so the sign convention is part of the
  trajectory: the transcription takes its SVD from the same solver (``jnp.linalg.svd``
  on the host arrays, outside the jitted run), everything else in NumPy.
* The projector is refreshed exactly every ``update_proj_gap`` steps and is orthonormal.
* Complex leaves (which optax cannot project: it casts them to float32) use ``P^H``:
  updates rotate with a phase of params and gradients, within a projector period.
* State shapes are optax's; ``scale`` is a hyperparameter in the state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from test_parity_optax import STEPS, make_data

import optim_fn
from optim_fn import contrib

D = contrib.GaLoreDimensionNumbers
OPTIONS_DIMS = {"matrix": D(1, 0), "vector": None, "cube": D((0, 2), 1), "scalar": None}
MASK = {"matrix": True, "vector": False, "cube": True, "scalar": False}


def svd(a: np.ndarray) -> tuple:
    return tuple(np.asarray(x) for x in jnp.linalg.svd(jnp.asarray(a), full_matrices=False))


def transcription(params, grads, *, lr, rank, gap, scale, b1, weight_decay, mask, dims):
    """GaLore + Adam + decoupled weight decay, one leaf at a time, in NumPy float64."""
    b2, eps = 0.999, 1e-8
    names = list(params)
    params = {k: np.array(v, np.float64) for k, v in params.items()}
    projector, mu, nu = {}, {}, {}
    updates_out, params_out = [], []
    for t in range(1, STEPS + 1):
        step_updates = {}
        for k in names:
            g = np.asarray(grads[k][t - 1], np.float64)
            d = dims.get(k) if dims is not None else (D() if g.ndim == 2 else None)
            if d is None:
                x, back = g, lambda u: u
            else:
                red = (d.reduction_axis,) if isinstance(d.reduction_axis, int) else d.reduction_axis
                out = (d.output_axis,) if isinstance(d.output_axis, int) else d.output_axis
                order = tuple(a % g.ndim for a in red) + tuple(a % g.ndim for a in out)
                m = int(np.prod([g.shape[a] for a in order[: len(red)]]))
                n = g.size // m
                g2 = g.transpose(order).reshape(m, n)
                r = min(rank, m, n)
                if (t - 1) % gap == 0:
                    u_, _, vh = svd(g2)
                    projector[k] = u_[:, :r] if m >= n else vh[:r, :].T
                p = projector[k]
                x = p.T @ g2 if m >= n else g2 @ p
                shape_t = tuple(g.shape[a] for a in order)
                inverse = np.argsort(order)

                def back(u, p=p, m=m, n=n, shape_t=shape_t, inverse=inverse):
                    full = p @ u if m >= n else u @ p.T
                    return scale * full.reshape(shape_t).transpose(inverse)

            mu[k] = b1 * mu.get(k, 0.0) + (1 - b1) * x
            nu[k] = b2 * nu.get(k, 0.0) + (1 - b2) * x * x
            adam = (mu[k] / (1 - b1**t)) / (np.sqrt(nu[k] / (1 - b2**t)) + eps)
            u = back(adam)
            if mask[k]:
                u = u + weight_decay * params[k]
            step_updates[k] = -lr * u
        params = {k: params[k] + step_updates[k] for k in names}
        updates_out.append(step_updates)
        params_out.append(params)
    return updates_out, params_out


CONFIGS = {
    "defaults": (
        dict(lr=1e-2, rank=128, gap=200, scale=1.0, b1=0.9, weight_decay=0.0, dims=None),
        lambda: contrib.galore(1e-2),
    ),
    "options": (
        dict(lr=1e-2, rank=2, gap=7, scale=0.5, b1=0.8, weight_decay=0.1, dims=OPTIONS_DIMS),
        lambda: contrib.galore(
            1e-2, 2, 7, 0.5, optim_fn.scale_by_adam(b1=0.8), 0.1, MASK, OPTIONS_DIMS
        ),
    ),
}


def run(transform, params, grads):
    def step(carry, grad):
        p, state = carry
        updates, state = transform.update(grad, state, p)
        p = optim_fn.apply_updates(p, updates)
        return (p, state), (updates, p)

    return jax.device_get(
        jax.jit(lambda p, g: jax.lax.scan(step, (p, transform.init(p)), g)[1])(params, grads)
    )


def max_relative_error(ours: dict, reference: list) -> float:
    worst = 0.0
    for t, ref in enumerate(reference):
        diff = max(np.max(np.abs(ours[k][t] - ref[k])) for k in ref)
        scale = max(np.max(np.abs(ref[k])) for k in ref)
        assert scale > 0
        worst = max(worst, diff / scale)
    return worst


@pytest.mark.parametrize("name", list(CONFIGS))
def test_float64_matches_a_numpy_transcription(name):
    options, make = CONFIGS[name]
    mask = MASK if options["weight_decay"] else dict.fromkeys(MASK, False)
    with jax.enable_x64(True):
        params, grads = make_data(np.float64)
        updates, trajectory = run(make(), params, grads)
        ref_updates, ref_params = transcription(params, grads, mask=mask, **options)
    for leaf in jax.tree.leaves((updates, trajectory)):
        assert leaf.dtype == np.float64
    assert max_relative_error(updates, ref_updates) <= 1e-10
    assert max_relative_error(trajectory, ref_params) <= 1e-10


def test_float64_agrees_with_optax_to_its_float32_svd():
    """The only float64 difference from optax is its float32 SVD: ~1e-7, not 1e-10."""
    with jax.enable_x64(True):
        params, grads = make_data(np.float64)
        ours = run(contrib.galore(1e-2, rank=2, update_proj_gap=7), params, grads)[0]
        reference = run(optax.contrib.galore(1e-2, rank=2, update_proj_gap=7), params, grads)[0]
    error = max_relative_error(ours, [jax.tree.map(lambda x, t=t: x[t], reference)
                                      for t in range(STEPS)])  # fmt: skip
    assert error <= 1e-4


def test_projector_is_refreshed_every_update_proj_gap_steps_and_orthonormal():
    rng = np.random.default_rng(3)
    params = {"w": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)}
    transform = contrib.scale_by_galore(rank=2, update_proj_gap=3)
    state = transform.init(params)
    assert state.projector["w"].shape == (6, 2)
    previous = None
    for step in range(1, 11):
        grad = {"w": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)}
        _, state = transform.update(grad, state)
        p = np.asarray(state.projector["w"])
        # A float32 SVD is orthonormal to a few ulps times the size: 1e-6 holds on the CPU,
        # cuSOLVER on an H100 gave 2e-6.
        atol = 1e-6 if jax.default_backend() == "cpu" else 1e-5
        np.testing.assert_allclose(p.T @ p, np.eye(2), atol=atol)
        if previous is not None:
            assert (not np.array_equal(p, previous)) == (step % 3 == 1), step
        previous = p


def test_complex_updates_rotate_with_the_phase_within_a_projector_period():
    # float32 products in float32: a GPU's default TF32 products round the two runs
    # differently (1.3e-3 relative on an H100), which is the precision setting.
    with jax.default_matmul_precision("highest"):
        _check_complex_updates_rotate_with_the_phase()


def _check_complex_updates_rotate_with_the_phase():
    rng = np.random.default_rng(5)

    def draw(shape):
        return rng.normal(size=shape) + 1j * rng.normal(size=shape)

    params = {"w": draw((5, 3)), "v": draw((4, 6)), "b": draw((3,))}
    grads = [{k: draw(v.shape) for k, v in params.items()} for _ in range(4)]
    phase = np.exp(0.9j)
    transform = contrib.galore(1e-2, rank=2)

    def updates(scale):
        p = jax.tree.map(lambda x: jnp.asarray(x * scale, jnp.complex64), params)
        state, out = transform.init(p), []
        for g in grads:
            g = jax.tree.map(lambda x: jnp.asarray(x * scale, jnp.complex64), g)
            u, state = transform.update(g, state, p)
            p = optim_fn.apply_updates(p, u)
            out.append(u)
        return out

    for u, v in zip(updates(1.0), updates(phase), strict=True):
        for k in params:
            assert u[k].dtype == jnp.complex64
            np.testing.assert_allclose(v[k], phase * u[k], atol=1e-5 * np.max(np.abs(u[k])))
    # P^H, not P^T: the rank-2 projection of a complex gradient, back in full space, is
    # the best rank-2 approximation (what P^T would break for complex P).
    g = jnp.asarray(grads[0]["w"], jnp.complex64)
    projection = contrib.scale_by_galore(rank=2, base_optimizer=optim_fn.identity())
    u, _ = projection.update({"w": g}, projection.init({"w": g}))
    left, s, right = np.linalg.svd(np.asarray(g, np.complex128), full_matrices=False)
    best = (left[:, :2] * s[:2]) @ right[:2]
    np.testing.assert_allclose(np.asarray(u["w"]), best, atol=1e-5)


def test_state_shapes_are_optaxs():
    params = {
        "tall": jnp.zeros((6, 4)),
        "wide": jnp.zeros((3, 7)),
        "vector": jnp.zeros(5),
        "cube": jnp.zeros((2, 3, 4)),
    }
    dims = {"tall": D(), "wide": D(), "vector": None, "cube": D((0, 2), 1)}
    optax_dims = {
        "tall": optax.contrib.GaLoreDimensionNumbers(),
        "wide": optax.contrib.GaLoreDimensionNumbers(),
        "vector": None,
        "cube": optax.contrib.GaLoreDimensionNumbers((0, 2), 1),
    }
    for ours, theirs in [
        (contrib.scale_by_galore(rank=2), optax.contrib.scale_by_galore(rank=2)),
        (
            contrib.scale_by_galore(rank=2, weight_dimension_numbers=dims),
            optax.contrib.scale_by_galore(rank=2, weight_dimension_numbers=optax_dims),
        ),
    ]:
        a, b = ours.init(params), theirs.init(params)
        shapes = lambda tree: jax.tree.map(jnp.shape, tree)  # noqa: E731
        assert shapes(a.projector) == shapes(b.projector)
        assert shapes(a.base_optimizer_state.mu) == shapes(b.base_optimizer_state.mu)


def test_scale_is_a_hyperparameter_in_the_state():
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    grads = {"w": jnp.arange(12.0).reshape(4, 3), "b": jnp.ones(3)}
    transform = contrib.scale_by_galore(rank=2, scale=0.5)
    state = transform.init(params)
    assert optim_fn.get_hyperparams(state)["scale"] == 0.5
    half, _ = transform.update(grads, state)
    full, _ = transform.update(grads, optim_fn.set_hyperparams(state, scale=1.0))
    np.testing.assert_allclose(half["w"], 0.5 * full["w"], rtol=1e-6)
    # As in optax, leaves that are not projected are not scaled.
    np.testing.assert_array_equal(half["b"], full["b"])
    scheduled = contrib.scale_by_galore(rank=2, scale=lambda count: 0.25 * (count + 1))
    state = scheduled.init(params)
    first, state = scheduled.update(grads, state)
    np.testing.assert_allclose(first["w"], 0.25 * full["w"], rtol=1e-6)
    assert optim_fn.get_hyperparams(state)["scale"] == 0.25


@pytest.mark.parametrize(
    "dims, pattern",
    [
        ({"w": D(), "b": D()}, "only arrays of rank >= 2"),
        ({"w": D(0, 0), "b": None}, "overlap"),
        ({"w": D(0, 1), "b": None, "c": None}, "one GaLoreDimensionNumbers"),
    ],
)
def test_bad_dimension_numbers_are_explained(dims, pattern):
    params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
    with pytest.raises(ValueError, match=pattern):
        contrib.galore(1e-2, weight_dimension_numbers=dims).init(params)
    cube = {"w": jnp.ones((2, 3, 4))}
    with pytest.raises(ValueError, match="cover every axis"):
        contrib.galore(1e-2, weight_dimension_numbers=D(0, 1)).init(cube)
