"""The optimizer family beyond optax parity: deliberate differences, dtypes, properties.

* Where optim_fn differs from optax on purpose, against an independent reference:
  Rprop (optax lags a step) against a NumPy transcription of iRprop- and against
  ``torch.optim.Rprop``; RAdam and ADOPT in float32 against float64 runs (optax loses
  1-3% and 7e-5 to float32 rounding there); SM3 on 0-d leaves (optax fails on them).
* Every optimizer passes the property checks of :mod:`optim_fn.testing` (structure and
  dtypes, no retrace, jit == eager, zero gradients, hyperparameters as data).
* Every optimizer runs on bfloat16 params, and on complex params (those that refuse them
  at ``init`` are checked for every catalogue row in ``tests/test_catalogue.py``).
  Complex support is checked twice: complex params on the real axis give the float32
  numbers, and rotating params and gradients by a phase rotates the updates by it (which
  ``g**2`` in place of ``|g|^2`` would break).
* Elementwise rules give tree mode's numbers on a FlatTree (the refusals of the rules that
  need each leaf: ``tests/test_catalogue.py``, every row with ``flat=False``).
* Bad construction arguments raise ValueError naming the argument.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from test_catalogue import compile_options

import optim_fn
import optim_fn.testing
from optim_fn import contrib, flat

SHAPES = {"matrix": (4, 3), "vector": (5,), "cube": (2, 3, 2), "scalar": ()}
# These programs run a few steps of ~40 optimizers; XLA's cheaper CPU pipeline and older
# elemental emitters (test_catalogue's options) cut their compile time ~3x.


def loss(params: Any) -> jax.Array:
    """A positive, non-quadratic loss (real even for complex params)."""
    total = 0.0
    for index, leaf in enumerate(jax.tree.leaves(params)):
        total = total + jnp.sum(0.5 * (index + 1) * jnp.abs(leaf) ** 2 + jnp.cos(jnp.abs(leaf)))
    return total + 10.0


def value_of(params: Any) -> dict:
    return {"value": loss(params)}


def obj_fn_of(params: Any) -> dict:
    del params
    return {"obj_fn": loss}


def per_example_copies() -> optax.GradientTransformationExtraArgs:
    """Turns each gradient g into the batch (g/4, g, 3g) of per-example gradients, so that
    the transforms that take per-example gradients (DP-SGD) run through the same checks;
    with the norms here some examples are clipped and some are not."""

    def update(updates, state, params=None, **extra_args):
        del params, extra_args

        def batch(g):
            weights = jnp.asarray([0.25, 1.0, 3.0], g.dtype).reshape((3,) + (1,) * g.ndim)
            return weights * g

        return jax.tree.map(batch, updates), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


class Entry(NamedTuple):
    name: str
    make: Callable[[], Any]
    extra_args: Callable[[Any], dict] | None = None
    # "equivariant": complex params supported and phase-equivariant; "refused": init
    # raises TypeError; "supported": runs on complex params (random, so not equivariant).
    complex_mode: str = "equivariant"
    zero_grad: str | None = "zero"
    complex_tolerance: float = 2e-5


FAMILY = [
    Entry("adabelief", lambda: optim_fn.adabelief(1e-2)),
    Entry("adafactor", lambda: optim_fn.adafactor(1e-2, min_dim_size_to_factor=2)),
    Entry("adamax", lambda: optim_fn.adamax(1e-2)),
    Entry("adamaxw", lambda: optim_fn.adamaxw(1e-2), zero_grad=None),
    Entry("adan", lambda: optim_fn.adan(1e-2)),
    Entry("amsgrad", lambda: optim_fn.amsgrad(1e-2)),
    Entry("fromage", lambda: optim_fn.fromage(1e-2), zero_grad=None),
    Entry("lamb", lambda: optim_fn.lamb(1e-2)),
    Entry("lars", lambda: optim_fn.lars(0.5)),
    Entry("lion", lambda: optim_fn.lion(1e-3), zero_grad=None),
    Entry("nadam", lambda: optim_fn.nadam(1e-2)),
    Entry("nadamw", lambda: optim_fn.nadamw(1e-2), zero_grad=None),
    Entry("noisy_sgd", lambda: optim_fn.noisy_sgd(1e-2), complex_mode="supported", zero_grad=None),
    Entry("novograd", lambda: optim_fn.novograd(1e-2)),
    Entry("optimistic_gradient_descent", lambda: optim_fn.optimistic_gradient_descent(1e-2)),
    Entry("optimistic_adam_v2", lambda: optim_fn.optimistic_adam_v2(1e-2)),
    Entry("polyak_sgd", lambda: optim_fn.polyak_sgd(), value_of),
    Entry("radam", lambda: optim_fn.radam(1e-2)),
    Entry("rprop", lambda: optim_fn.rprop(1e-2), complex_mode="refused"),
    Entry("sign_sgd", lambda: optim_fn.sign_sgd(1e-2)),
    Entry("signum", lambda: optim_fn.signum(1e-2)),
    Entry("sm3", lambda: optim_fn.sm3(1e-2)),
    # Yogi's moments start at 1e-6, a real number the phase does not rotate.
    # (And they make the first update non-zero for zero gradients.)
    Entry("yogi", lambda: optim_fn.yogi(1e-2), zero_grad=None, complex_tolerance=1e-3),
    Entry("acprop", lambda: contrib.acprop(1e-2)),
    Entry("ademamix", lambda: contrib.ademamix(1e-2)),
    Entry("adopt", lambda: contrib.adopt(1e-2)),
    Entry("cocob", lambda: contrib.cocob(), complex_mode="refused"),
    Entry("dadapt_adamw", lambda: contrib.dadapt_adamw()),
    # Initial distances well above float32 rounding of the params: with the defaults (1e-6)
    # the first steps measure ||p_t - p_0|| from a cancellation, in either dtype.
    Entry("dog", lambda: contrib.dog(init_step=("distance", 0.1))),
    Entry("dowg", lambda: contrib.dowg(init_estim_sq_dist=1e-2)),
    # Gaussian noise: not zero for zero gradients, not phase-equivariant. Small noise, so
    # that the bf16 run (whose normal draws differ from float32's) points the same way.
    Entry(
        "dpsgd",
        lambda: optim_fn.chain(per_example_copies(), contrib.dpsgd(1e-2, 1.0, 0.01, 0, 0.9)),
        complex_mode="supported",
        zero_grad=None,
    ),
    # p_1 = (1-c) x0 + c p_0 with x0 = p_0 rounds to within an ulp of p_0.
    # Adam's moments outlive a projector refresh (step 3 here), and an SVD fixes singular
    # vectors only up to a phase: complex runs are checked for phase equivariance within
    # one projector period in tests/test_galore.py.
    Entry(
        "galore",
        lambda: contrib.galore(1e-2, rank=2, update_proj_gap=2),
        complex_mode="supported",
    ),
    Entry("madgrad", lambda: contrib.madgrad(1e-2), zero_grad=None),
    Entry("mechanize", lambda: contrib.mechanize(optim_fn.adam(1.0), s_init=0.1)),
    Entry("momo", lambda: contrib.momo(), value_of),
    Entry("momo_adam", lambda: contrib.momo_adam(), value_of),
    Entry("muon", lambda: contrib.muon(1e-2)),
    Entry("prodigy", lambda: contrib.prodigy()),
    Entry(
        "sam",
        lambda: contrib.sam(
            optim_fn.sgd(1e-2), optim_fn.chain(contrib.normalize(), optim_fn.sgd(5e-2))
        ),
    ),
    # (y - (1-b1) z)/b1 with y = z rounds, so zero gradients move y by an ulp; updates are
    # differences of iterates, 1e-4 relative to themselves is an ulp of the params.
    Entry(
        "schedule_free_adamw",
        lambda: contrib.schedule_free_adamw(1e-2),
        zero_grad=None,
        complex_tolerance=2e-4,
    ),
    Entry(
        "schedule_free_sgd",
        lambda: contrib.schedule_free_sgd(1e-2),
        zero_grad=None,
        complex_tolerance=2e-4,
    ),
    Entry("simplified_ademamix", lambda: contrib.simplified_ademamix(1e-3)),
    # Its first update is zero (that call builds the eigenbasis); more steps in test_soap.
    Entry(
        "soap",
        lambda: contrib.soap(1e-2, weight_decay=0.0, precondition_frequency=2),
        complex_mode="refused",
    ),
    Entry(
        "sophia",
        lambda: contrib.sophia(1e-2, update_interval=2),
        obj_fn_of,
        complex_mode="refused",
        zero_grad=None,
    ),
]
BY_NAME = {entry.name: entry for entry in FAMILY}
IDS = [entry.name for entry in FAMILY]


def test_every_optax_name_is_here():
    core = {
        "adabelief", "adadelta", "adafactor", "adagrad", "adam", "adamax", "adamaxw",
        "adamw", "adan", "amsgrad", "fromage", "lamb", "lars", "lion", "nadam", "nadamw",
        "noisy_sgd", "novograd", "optimistic_gradient_descent", "optimistic_adam_v2",
        "polyak_sgd", "radam", "rmsprop", "rprop", "sgd", "sign_sgd", "signum", "sm3", "yogi",
    }  # fmt: skip
    contributed = {
        "muon", "schedule_free_adamw", "schedule_free_sgd", "schedule_free_eval_params",
        "prodigy", "dadapt_adamw", "adopt", "ademamix", "simplified_ademamix", "cocob", "dog",
        "dowg", "madgrad", "momo", "momo_adam", "sophia", "sam",
        "acprop", "galore",
        "mechanize", "dpsgd",
    }  # fmt: skip
    assert core <= set(optim_fn.__all__), core - set(optim_fn.__all__)
    assert contributed <= set(contrib.__all__), contributed - set(contrib.__all__)
    for name in core:
        assert getattr(optim_fn, name) is not getattr(optax, name, None)
        assert getattr(optim_fn, name).__doc__, name
    for name in contributed:
        assert getattr(contrib, name).__doc__, name
    tested = set(BY_NAME) | {"adadelta", "adagrad", "adam", "adamw", "rmsprop", "sgd"}
    assert (core | contributed) - {"schedule_free_eval_params"} <= tested


# ----------------------------------------------------------------------------------------
# Property checks of optim_fn.testing, for every optimizer.


@pytest.mark.parametrize("entry", FAMILY, ids=IDS)
def test_property_checks(entry: Entry):
    extra = entry.extra_args(optim_fn.testing.default_params()) if entry.extra_args else None
    optim_fn.testing.check_transform(
        entry.make, zero_grad_update=entry.zero_grad, extra_args=extra, steps=2
    )


# ----------------------------------------------------------------------------------------
# dtypes: bfloat16 and complex, all optimizers in one compiled program per check.


def draw(rng: np.random.Generator, shape: tuple, complex_: bool) -> np.ndarray:
    x = rng.normal(size=shape)
    return x + 1j * rng.normal(size=shape) if complex_ else x


@functools.cache
def data(complex_: bool, steps: int = 3) -> tuple[dict, list]:
    rng = np.random.default_rng(11)
    params = {k: draw(rng, s, complex_) for k, s in SHAPES.items()}
    grads = [{k: draw(rng, s, complex_) * 10 ** rng.uniform(-1, 1) for k, s in SHAPES.items()}
             for _ in range(steps)]  # fmt: skip
    return params, grads


_PROGRAMS: dict = {}


def run_family(entries: list, params: dict, grads: list) -> list:
    """Updates of every entry over the gradient sequence, in ONE jitted program.

    The params and gradients are the program's arguments, so one compilation per list
    of entries and dtype serves every data set of that dtype (the complex checks run the
    same program on three).
    """
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *grads)

    def run_one(entry, params, stacked):
        transform = entry.make()

        def step(carry, grad):
            p, state = carry
            extra = entry.extra_args(p) if entry.extra_args else {}
            updates, state = transform.update(grad, state, p, **extra)
            return (optim_fn.apply_updates(p, updates), state), updates

        return jax.lax.scan(step, (params, transform.init(params)), stacked)[1]

    signature = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), (params, stacked))
    key = (tuple(e.name for e in entries), str(signature))
    if key not in _PROGRAMS:
        program = jax.jit(lambda p, g: [run_one(e, p, g) for e in entries])
        _PROGRAMS[key] = program.lower(params, stacked).compile(compile_options())
    return jax.device_get(_PROGRAMS[key](params, stacked))


def as_vector(tree: Any) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x, np.complex128)) for x in jax.tree.leaves(tree)])


def bf16_rounded(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda x: jnp.asarray(jnp.asarray(x, jnp.bfloat16), dtype), tree)


@functools.cache
def real_runs(dtype: Any) -> list:
    """Every optimizer on real data (rounded to bf16 so all dtypes see the same numbers)."""
    params, grads = data(False)
    # Complex: the program of every row that takes complex params (the rotation check's),
    # of which the equivariant rows' runs are returned.
    entries = FAMILY if dtype != jnp.complex64 else COMPLEX_OK
    runs = run_family(entries, bf16_rounded(params, dtype), [bf16_rounded(g, dtype) for g in grads])
    if dtype == jnp.complex64:
        return [runs[COMPLEX_OK.index(e)] for e in EQUIVARIANT]
    return runs


def test_bfloat16_params_give_bfloat16_updates_close_to_float32():
    steps = len(data(False)[1])
    for entry, low, high in zip(
        FAMILY, real_runs(jnp.bfloat16), real_runs(jnp.float32), strict=True
    ):
        for leaf in jax.tree.leaves(low):
            assert leaf.dtype == jnp.bfloat16, entry.name
            assert np.all(np.isfinite(np.asarray(leaf, np.float32))), entry.name
        for step in range(steps):
            a = as_vector(jax.tree.map(lambda x, s=step: x[s], low)).real
            b = as_vector(jax.tree.map(lambda x, s=step: x[s], high)).real
            if not np.any(b):
                assert not np.any(a), entry.name
                continue
            cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            assert cosine > 0.95, (entry.name, step, cosine)


@pytest.fixture
def full_precision_matmuls():
    """float32 matmuls in float32: on GPUs jax's default is TF32 (10-bit mantissa), which
    muon's Newton-Schulz products follow for real inputs but not for complex ones."""
    with jax.default_matmul_precision("highest"):
        yield


COMPLEX_OK = [e for e in FAMILY if e.complex_mode != "refused"]
EQUIVARIANT = [e for e in COMPLEX_OK if e.complex_mode == "equivariant"]


def test_complex_params_on_the_real_axis_give_the_float32_numbers(full_precision_matmuls):
    as_real = [real_runs(jnp.float32)[FAMILY.index(e)] for e in EQUIVARIANT]
    for entry, r, c in zip(EQUIVARIANT, as_real, real_runs(jnp.complex64), strict=True):
        for leaf in jax.tree.leaves(c):
            assert leaf.dtype == jnp.complex64, entry.name
        r, c = as_vector(r), as_vector(c)
        scale = np.max(np.abs(r))
        assert np.max(np.abs(c.imag)) <= 1e-6 * scale, entry.name
        assert np.max(np.abs(c.real - r.real)) <= entry.complex_tolerance * scale, entry.name


def test_complex_updates_rotate_with_the_params_and_gradients(full_precision_matmuls):
    """u(e^{ia} p, e^{ia} g) = e^{ia} u(p, g): what |g|^2 (not g^2) and z/|z| give."""
    params, grads = data(True)
    phase = np.exp(0.7j)
    cplx = functools.partial(jax.tree.map, lambda x: jnp.asarray(x, jnp.complex64))
    rotate = functools.partial(jax.tree.map, lambda x: jnp.asarray(x * phase, jnp.complex64))
    plain = run_family(COMPLEX_OK, cplx(params), [cplx(g) for g in grads])
    turned = run_family(COMPLEX_OK, rotate(params), [rotate(g) for g in grads])
    for entry, u in zip(COMPLEX_OK, plain, strict=True):
        assert np.all(np.isfinite(as_vector(u))), entry.name
    for entry in EQUIVARIANT:
        u = as_vector(plain[COMPLEX_OK.index(entry)])
        v = as_vector(turned[COMPLEX_OK.index(entry)])
        bound = entry.complex_tolerance * np.max(np.abs(u))
        assert np.max(np.abs(v - phase * u)) <= bound, entry.name


# ----------------------------------------------------------------------------------------
# Flat mode (rules that need each leaf refuse it: tests/test_catalogue.py checks that for
# every catalogue row with flat=False).


def test_elementwise_rules_give_tree_numbers_in_flat_mode():
    names = ["adan", "lion", "amsgrad", "adopt", "rprop", "yogi", "madgrad", "dog", "prodigy"]
    names += ["mechanize"]
    params, grads = data(False)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    grads = [jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g) for g in grads]
    for name in names:
        transform = BY_NAME[name].make()
        packed = flat.ravel(params)
        tree_state, flat_state = transform.init(params), transform.init(packed)
        p, q = params, packed
        for g in grads:
            u, tree_state = transform.update(g, tree_state, p)
            v, flat_state = transform.update(flat.ravel(g, layout=packed.layout), flat_state, q)
            p, q = optim_fn.apply_updates(p, u), optim_fn.apply_updates(q, v)
            np.testing.assert_allclose(
                as_vector(v.unravel()).real, as_vector(u).real, rtol=1e-6, atol=1e-7, err_msg=name
            )


# ----------------------------------------------------------------------------------------
# Rprop: the published algorithm, not optax's one-step lag.


def rprop_reference(params, grads, lr, eta_minus, eta_plus, min_step, max_step):
    """iRprop- (Igel & Hüsken 2000), transcribed per coordinate in NumPy float64."""
    p = params.astype(np.float64).copy()
    step = np.full_like(p, lr)
    prev = np.zeros_like(p)
    updates = []
    for g in grads:
        g = g.astype(np.float64).copy()
        new_step = step.copy()
        for i in np.ndindex(p.shape):
            if g[i] * prev[i] > 0:
                new_step[i] = min(step[i] * eta_plus, max_step)
            elif g[i] * prev[i] < 0:
                new_step[i] = max(step[i] * eta_minus, min_step)
                g[i] = 0.0
        u = -new_step * np.sign(g)
        updates.append(u)
        p, step, prev = p + u, new_step, g
    return np.array(updates)


def rprop_grads(steps: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Gradients with persistent signs for some coordinates (steps grow to the cap) and
    alternating signs for others (steps shrink to the floor), four decades of scale."""
    rng = np.random.default_rng(3)
    params = rng.normal(size=(4, 5))
    signs = np.where(rng.uniform(size=(steps, 4, 5)) < 0.5, -1.0, 1.0)
    signs[:, 0] = 1.0  # always the same sign: eta_plus until max_step_size
    signs[:, 1] = (-1.0) ** np.arange(steps)[:, None]  # flips every step: down to min
    grads = signs * 10 ** rng.uniform(-2, 2, size=(steps, 4, 5))
    grads[3:6, 2] = 0.0
    return params, grads


@pytest.mark.parametrize(
    "options", [(0.1, 0.5, 1.2, 1e-6, 50.0), (0.05, 0.3, 1.5, 1e-3, 0.2)], ids=["defaults", "caps"]
)
def test_rprop_matches_the_published_algorithm(options):
    lr, eta_minus, eta_plus, min_step, max_step = options
    params, grads = rprop_grads()
    expected = rprop_reference(params, grads, *options)
    with jax.enable_x64(True):
        transform = optim_fn.rprop(lr, eta_minus, eta_plus, min_step, max_step)
        p = jnp.asarray(params)
        state = transform.init(p)
        ours = []
        for g in grads:
            u, state = transform.update(jnp.asarray(g), state, p)
            p = p + u
            ours.append(np.asarray(u))
    ours = np.array(ours)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=0)
    # The caps are reached, so they are tested.
    steps = np.abs(expected[:, :2])
    assert np.isclose(steps[:, 0].max(), max_step) and np.isclose(
        steps[1:, 1][steps[1:, 1] > 0].min(), min_step
    )


def test_rprop_first_step_is_the_learning_rate_where_optax_lags():
    params, grads = rprop_grads(3)
    ours = optim_fn.rprop(0.1)
    theirs = optax.rprop(0.1)
    u, _ = ours.update(
        jnp.asarray(grads[0], jnp.float32), ours.init(jnp.asarray(params, jnp.float32))
    )
    v, _ = theirs.update(
        jnp.asarray(grads[0], jnp.float32), theirs.init(jnp.asarray(params, jnp.float32))
    )
    np.testing.assert_array_equal(np.asarray(u), -0.1 * np.sign(grads[0]).astype(np.float32))
    assert not np.any(np.asarray(v)), "optax's first Rprop update is zero (its one-step lag)"


def test_rprop_matches_torch():
    torch = pytest.importorskip("torch")
    params, grads = rprop_grads()
    weight = torch.tensor(params, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Rprop([weight], lr=0.1, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0))
    with jax.enable_x64(True):
        transform = optim_fn.rprop(0.1)
        p = jnp.asarray(params)
        state = transform.init(p)
        for g in grads:
            weight.grad = torch.tensor(g, dtype=torch.float64)
            reference.step()
            u, state = transform.update(jnp.asarray(g), state, p)
            p = p + u
            np.testing.assert_allclose(
                np.asarray(p), weight.detach().numpy(), rtol=1e-12, atol=1e-14
            )


# ----------------------------------------------------------------------------------------
# float32 accuracy where optax's float32 arithmetic loses digits.


def float32_errors(make_ours, make_optax, steps: int = 100) -> tuple[float, float]:
    """Max relative update error, vs optax's float64 run, of ours and optax's float32 runs."""
    rng = np.random.default_rng(5)
    params = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=5)}
    grads = [jax.tree.map(lambda x: rng.normal(size=x.shape) * 10 ** rng.uniform(-2, 2), params)
             for _ in range(steps)]  # fmt: skip

    def run(transform, dtype):
        p = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
        stacked = jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs), dtype), *grads)

        def step(state, g):
            u, state = transform.update(g, state, p)
            return state, as_flat(u)

        return np.asarray(jax.jit(lambda: jax.lax.scan(step, transform.init(p), stacked)[1])())

    with jax.enable_x64(True):
        truth = run(make_optax(), jnp.float64)
    ours, theirs = run(make_ours(), jnp.float32), run(make_optax(), jnp.float32)

    def error(x):
        scale = np.abs(truth).max(axis=1)
        moving = scale > 0  # ADOPT's first update is exactly 0 in every run
        assert np.all(np.abs(x[~moving]) == 0)
        return float(np.max(np.abs(x - truth).max(axis=1)[moving] / scale[moving]))

    return error(ours), error(theirs)


def as_flat(tree: Any) -> jax.Array:
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def test_radam_float32_is_accurate_where_optax_cancels():
    ours, theirs = float32_errors(lambda: optim_fn.radam(1e-2), lambda: optax.radam(1e-2))
    assert ours <= 2e-5, ours
    assert theirs > 1e-3, theirs  # rho_t computed as a difference of two ~2000s


def test_adopt_float32_is_accurate_where_optax_rounds_one_minus_b2():
    ours, theirs = float32_errors(lambda: contrib.adopt(1e-2), lambda: optax.contrib.adopt(1e-2))
    assert ours <= 5e-6, ours
    assert theirs > 2e-5, theirs  # 1 - float32(0.9999) is 1.7e-3 off 1e-4


# ----------------------------------------------------------------------------------------
# SM3 on scalars, which optax cannot run.


def test_sm3_runs_on_scalars_as_on_one_element_vectors():
    rng = np.random.default_rng(2)
    grads = rng.normal(size=(20,)) * 10 ** rng.uniform(-2, 2, size=20)
    results = []
    for shape in [(), (1,)]:
        transform = optim_fn.sm3(0.1)
        p = jnp.full(shape, 0.5, jnp.float32)
        state = transform.init(p)
        out = []
        for g in grads:
            u, state = transform.update(jnp.full(shape, g, jnp.float32), state, p)
            p = p + u
            out.append(float(jnp.ravel(u)[0]))
        results.append(out)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
    # And a NumPy transcription of SM3-II on one coordinate (b2 = 1: a plain sum).
    acc, momentum, expected = 0.0, 0.0, []
    for g in grads.astype(np.float32):
        acc = g * g + acc
        momentum = 0.1 * (g / np.sqrt(acc + 1e-8)) + 0.9 * momentum
        expected.append(-0.1 * momentum)
    np.testing.assert_allclose(results[0], expected, rtol=1e-5)


# ----------------------------------------------------------------------------------------
# Helpers and APIs around the optimizers.


def test_schedule_free_eval_params_match_optax_and_work_through_a_chain():
    rng = np.random.default_rng(4)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
    ours, theirs = (
        contrib.schedule_free_adamw(1e-2, warmup_steps=5),
        optax.contrib.schedule_free_adamw(1e-2, warmup_steps=5),
    )
    s, t = ours.init(params), theirs.init(params)
    p = q = params
    for _ in range(20):
        g = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
        u, s = ours.update(g, s, p)
        v, t = theirs.update(g, t, q)
        p, q = optim_fn.apply_updates(p, u), optax.apply_updates(q, v)
    mine = contrib.schedule_free_eval_params(s, p)
    reference = optax.contrib.schedule_free_eval_params(t, q)
    np.testing.assert_allclose(mine["w"], reference["w"], rtol=2e-5, atol=1e-6)
    chained = optim_fn.chain(optim_fn.clip_by_global_norm(10.0), contrib.schedule_free_sgd(1e-2))
    state = chained.init(params)
    evaluated = contrib.schedule_free_eval_params(state, params)
    np.testing.assert_allclose(evaluated["w"], params["w"], rtol=1e-6)
    with pytest.raises(ValueError, match="needs the state of optim_fn.contrib.schedule_free"):
        contrib.schedule_free_eval_params(optim_fn.adam(1e-3).init(params), params)


def test_hyperparameters_are_state_data_readable_and_settable():
    params = {"w": jnp.ones((3, 2))}
    grads = {"w": jnp.full((3, 2), 0.5)}
    state = contrib.prodigy(betas=(0.8, 0.99)).init(params)
    hyperparams = optim_fn.get_hyperparams(state)
    assert {"learning_rate", "beta1", "beta2", "beta3", "eps", "weight_decay"} <= set(hyperparams)
    np.testing.assert_allclose(hyperparams["beta3"], 0.99**0.5, rtol=1e-7)
    transform = optim_fn.lion(1e-2)
    state = transform.init(params)
    u1, _ = transform.update(grads, state, params)
    u2, _ = transform.update(grads, optim_fn.set_hyperparams(state, learning_rate=2e-2), params)
    np.testing.assert_allclose(u2["w"], 2 * u1["w"], rtol=1e-6)


def test_step_sizes_are_logged_in_the_state():
    params = {"w": jnp.ones((3, 2))}
    grads = {"w": jnp.full((3, 2), 0.5)}
    transform = contrib.dog(init_step=("learning_rate", 0.3))
    _, state = transform.update(grads, transform.init(params), params)
    assert float(state[1].learning_rate) == pytest.approx(0.3)
    transform = optim_fn.polyak_sgd(max_learning_rate=10.0)
    _, state = transform.update(grads, transform.init(params), params, value=jnp.array(3.0))
    assert float(state[1].step_size) == pytest.approx(3.0 / 1.5)  # gap / ||g||^2


def test_optimistic_adam_is_deprecated_and_is_v2_with_alpha_and_beta_the_learning_rate():
    params = {"w": jnp.ones((3, 2))}
    with pytest.warns(DeprecationWarning, match="use `optimistic_adam_v2` instead"):
        old = optim_fn.optimistic_adam(0.1, 0.2)
    new = optim_fn.optimistic_adam_v2(1.0, alpha=0.1, beta=0.2)
    s, t = old.init(params), new.init(params)
    for k in range(3):
        g = {"w": jnp.full((3, 2), float(k) - 0.5)}
        u, s = old.update(g, s, params)
        v, t = new.update(g, t, params)
        np.testing.assert_allclose(u["w"], v["w"], rtol=1e-6)


def test_update_without_required_extra_arguments_says_what_to_pass():
    params = {"w": jnp.ones(2)}
    grads = {"w": jnp.ones(2)}
    # polyak_sgd raises TypeError, as optax does (optax's own tests expect it).
    with pytest.raises(TypeError, match="value=loss"):
        optim_fn.polyak_sgd().update(grads, optim_fn.polyak_sgd().init(params), params)
    for transform, pattern in [
        (contrib.momo(), "value=loss"),
        (contrib.sophia(1e-2), "obj_fn="),
        (contrib.sam(optim_fn.sgd(1.0), optim_fn.sgd(1.0), opaque_mode=True), "grad_fn="),
    ]:
        with pytest.raises(ValueError, match=pattern):
            transform.update(grads, transform.init(params), params)
    with pytest.raises(ValueError, match="needs the params"):
        optim_fn.lamb(1e-2).update(grads, optim_fn.lamb(1e-2).init(params))


@pytest.mark.parametrize(
    "build, pattern",
    [
        (lambda: optim_fn.radam(-1.0), "`learning_rate` must be >= 0"),
        (lambda: optim_fn.adan(1e-2, b3=1.5), r"`b3` must be in \[0, 1\)"),
        (lambda: optim_fn.scale_by_lion(mode="soft"), "`mode` must be 'hard'"),
        (lambda: optim_fn.rprop(lambda c: 0.1), "initial step size, a number"),
        (lambda: optim_fn.rprop(0.1, eta_plus=0.5), "`eta_plus` must be >= 1"),
        (lambda: optim_fn.polyak_sgd(variant="sps-"), "`variant` must be 'sps' or 'sps\\+'"),
        (lambda: optim_fn.adafactor(min_dim_size_to_factor=0), "`min_dim_size_to_factor`"),
        (lambda: optim_fn.lamb(1e-2, weight_decay=-1.0), "`weight_decay` must be >= 0"),
        (lambda: contrib.dog(init_step=("guess", 1.0)), "the kind in `init_step`"),
        (lambda: contrib.prodigy(betas=0.9), "`betas` must be a pair"),
        (lambda: contrib.muon(1e-2, ns_coeffs="fast"), "unknown `ns_coeffs` preset"),
        (lambda: contrib.muon(1e-2, ns_coeffs=((1.0, 2.0, 3.0),)), "not enough for"),
        (lambda: contrib.sam(optim_fn.sgd(1.0), optim_fn.sgd(1.0), 0), "`sync_period`"),
        (lambda: contrib.sophia(1e-2, update_interval=0), "`update_interval`"),
        (lambda: contrib.adopt(1e-2, b2=1.0), r"`b2` must be in \[0, 1\)"),
        (lambda: contrib.mechanize(optim_fn.adam(1.0), num_betas=0), "`num_betas` must be"),
        (lambda: contrib.mechanize(optim_fn.adam(1.0), s_init=-1.0), "`s_init` must be >= 0"),
        (lambda: contrib.dpsgd(0.1, -1.0, 1.0, 0), "`l2_norm_clip` must be >= 0"),
        (lambda: contrib.dpsgd(0.1, 1.0, 1.0, 0, nesterov=True), "`nesterov=True` needs"),
        (lambda: contrib.acprop(1e-2, eps_root=-1.0), "`eps_root` must be >= 0"),
        (lambda: contrib.scale_by_acprop(b1=1.0), r"`b1` must be in \[0, 1\)"),
        (lambda: contrib.galore(1e-2, rank=0), "`rank` must be an integer >= 1"),
        (lambda: contrib.galore(1e-2, update_proj_gap=2.5), "`update_proj_gap` must be"),
        (lambda: contrib.galore(1e-2, weight_decay=-0.1), "`weight_decay` must be >= 0"),
        (lambda: contrib.scale_by_galore(scale="big"), "`scale` must be a real scalar"),
        (lambda: contrib.scale_by_galore(base_optimizer=1.0), "`base_optimizer` must be"),
        (lambda: contrib.galore(1e-2, weight_dimension_numbers=[0, 1]), "`weight_dimension"),
    ],
)
def test_bad_arguments_are_named(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()


def test_muon_rejects_overlapping_axes_and_orthogonalizes():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32)
    with pytest.raises(ValueError, match="overlap"):
        contrib.orthogonalize_via_newton_schulz(
            x,
            jnp.asarray((3.4445, -4.775, 2.0315)),
            5,
            "frobenius",
            1e-8,
            contrib.MuonDimensionNumbers(0, 0),
        )
    # Many steps of the cubic iteration (a, b, c) = (1.5, -0.5, 0) converge to U V^T.
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        polar = contrib.orthogonalize_via_newton_schulz(x64, jnp.asarray((1.5, -0.5, 0.0)), 60)
        u, _, vt = np.linalg.svd(np.asarray(x64), full_matrices=False)
        np.testing.assert_allclose(np.asarray(polar), u @ vt, atol=1e-10)


def test_no_warnings_from_building_the_family():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for entry in FAMILY:
            entry.make()
