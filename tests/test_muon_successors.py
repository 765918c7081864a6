"""The Muon family against its authors' code, step by step in float64.

Oracles: ``torch.optim.Muon`` (torch 2.13) and Jordan et al.'s ``muon-optimizer`` (PyPI)
for the base Muon, with their bfloat16 cast made the identity so that both run in float64;
NumPy transcriptions written here, from the authors' algorithms, for Polar Express
(NoahAmsel/PolarExpress: ``optimal_composition`` and ``PolarExpress``), Gram
Newton-Schulz (Dao-AILab/gram-newton-schulz), NorMuon (zichongli5/NorMuon,
``normuon_update``) and AdaMuon (Chongjie-Si/AdaMuon, ``adamuon.py``); NumPy's SVD for
the exact polar factor. Params are in PyTorch's ``(out, in)`` layout; the problem has a
tall, a wide, a 3-d (a batch of two matrices) and a 1-d leaf, and gradients that depend
on the params. Errors are relative to the params' total movement over the run.
"""

from __future__ import annotations

from math import inf, sqrt

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.contrib as contrib
from optim_fn.contrib import MuonDimensionNumbers as Dims
from optim_fn.rules import orthogonalize as ortho

torch = pytest.importorskip("torch")

STEPS = 30
LR = 0.02
SHAPES = {"tall": (6, 3), "wide": (3, 7), "cube": (2, 5, 3), "bias": (5,)}
# PyTorch layout: a matrix's rows are its outputs; the cube's first axis is a batch axis.
TORCH_DIMS = {"tall": Dims(1, 0), "wide": Dims(1, 0), "cube": Dims(2, 1), "bias": None}
FLOAT32_ERRORS: dict[str, float] = {}


def _problem(shapes=SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    noise = {k: 0.3 * rng.standard_normal((STEPS, *s)) for k, s in shapes.items()}
    return params, noise


def _grad(params, noise, step):
    # Depends on the params, so a wrong step changes every later gradient.
    return {k: 0.5 * p + 0.1 * np.tanh(3 * p) + noise[k][step] for k, p in params.items()}


def _run_ours(make, params0, noise, dtype=np.float64):
    """The params after each step (float64 NumPy), from optimizer ``make()``."""
    with jax.enable_x64(dtype == np.float64):
        opt = make()
        params = {k: jnp.asarray(v.astype(dtype)) for k, v in params0.items()}
        state = opt.init(params)
        step_fn = jax.jit(opt.update)
        trajectory = []
        for step in range(STEPS):
            numpy_params = {k: np.asarray(v, np.float64) for k, v in params.items()}
            grads = {k: jnp.asarray(v.astype(dtype))
                     for k, v in _grad(numpy_params, noise, step).items()}
            updates, state = step_fn(grads, state, params)
            params = optim_fn.apply_updates(params, updates)
            trajectory.append({k: np.asarray(v, np.float64) for k, v in params.items()})
    return trajectory


def _relative_error(ours, reference, params0, keys=None):
    keys = keys or list(params0)
    movement = max(np.max(np.abs(reference[-1][k] - params0[k])) for k in keys)
    error = max(np.max(np.abs(o[k] - r[k])) for o, r in zip(ours, reference, strict=True)
                for k in keys)
    return error / movement


def _check(name, make, reference, params0, noise, keys=None):
    ours = _run_ours(make, params0, noise)
    error = _relative_error(ours, reference, params0, keys)
    assert error < 1e-10, f"{name}: float64 error {error:.3g} relative to the movement"
    FLOAT32_ERRORS[name] = _relative_error(
        _run_ours(make, params0, noise, np.float32), reference, params0, keys)
    print(f"\n{name}: float64 {error:.2e}, float32 {FLOAT32_ERRORS[name]:.2e} "
          "(max |params - reference| / max movement)")


# --- NumPy transcriptions of the authors' code -------------------------------------------

def _optimal_quintic(lo, hi):
    """NoahAmsel/PolarExpress: the odd quintic closest to 1 on [lo, hi] (Remez)."""
    if 1 - 5e-6 <= lo / hi:
        return (15 / 8) / hi, (-10 / 8) / hi**3, (3 / 8) / hi**5
    q, r = (3 * lo + 1) / 4, (lo + 3) / 4
    error, previous = inf, None
    while previous is None or abs(previous - error) > 1e-15:
        previous = error
        system = np.array([[x, x**3, x**5, sign] for x, sign in
                           ((lo, 1), (q, -1), (r, 1), (hi, -1))])
        a, b, c, error = np.linalg.solve(system, np.ones(4))
        q, r = np.sqrt((-3 * b + np.array([-1, 1]) * sqrt(9 * b**2 - 20 * a * c)) / (10 * c))
    return float(a), float(b), float(c)


def _polar_express_coefficients(lo=1e-3, num_iters=10, safety_eps=1e-2, cushion=0.02):
    """NoahAmsel/PolarExpress's ``optimal_composition`` (their default arguments)."""
    hi, safety, rows = 1.0, 1 + safety_eps, []
    for index in range(num_iters):
        a, b, c = _optimal_quintic(max(lo, cushion * hi), hi)
        if cushion * hi > lo:
            p_lo, p_hi = (a * x + b * x**3 + c * x**5 for x in (lo, hi))
            a, b, c = (v * 2 / (p_lo + p_hi) for v in (a, b, c))
        if index < num_iters - 1:
            a, b, c = a / safety, b / safety**3, c / safety**5
        rows.append((a, b, c))
        lo = a * lo + b * lo**3 + c * lo**5
        hi = 2 - lo
    return rows


def _polynomial_iteration(g, rows, eps, safety=1.0):
    """Jordan et al.'s ``zeropower_via_newtonschulz5`` / Amsel et al.'s ``PolarExpress``
    on the last two axes, in float64."""
    x = np.array(g, np.float64)
    transposed = x.shape[-2] > x.shape[-1]
    if transposed:
        x = np.swapaxes(x, -1, -2)
    x = x / (np.linalg.norm(x, axis=(-2, -1), keepdims=True) * safety + eps)
    for a, b, c in rows:
        gram = x @ np.swapaxes(x, -1, -2)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return np.swapaxes(x, -1, -2) if transposed else x


def _gram_newton_schulz(g, rows, eps, restarts=(2,)):
    """Dao-AILab's ``GramNewtonSchulz`` (no kernels), one matrix at a time."""
    if g.ndim == 3:
        return np.stack([_gram_newton_schulz(m, rows, eps, restarts) for m in g])
    x = np.array(g, np.float64)
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = x / (np.linalg.norm(x) + eps)
    gram, q, eye = x @ x.T, None, np.eye(x.shape[0])
    for i, (a, b, c) in enumerate(rows):
        if i in restarts and i != 0:
            x = q @ x
            gram, q = x @ x.T, None
        z = b * gram + c * gram @ gram
        q = a * q + q @ z if (i != 0 and i not in restarts) else z + a * eye
        if i < len(rows) - 1 and i + 1 not in restarts:
            rz = a * gram + gram @ z
            gram = a * rz + z @ rz
    x = q @ x
    return x.T if transposed else x


def _momentum(grad, buf, beta, nesterov):
    buf[...] = beta * buf + (1 - beta) * grad  # torch's lerp_(grad, 1 - beta)
    return beta * buf + (1 - beta) * grad if nesterov else buf.copy()


def _adam(grad, state, step, betas, eps):
    """Jordan et al.'s ``adam_update`` (the auxiliary Adam of Muon and NorMuon)."""
    m, v = state
    m[...] = betas[0] * m + (1 - betas[0]) * grad
    v[...] = betas[1] * v + (1 - betas[1]) * grad**2
    return (m / (1 - betas[0] ** step)) / (np.sqrt(v / (1 - betas[1] ** step)) + eps)


def _reference(params0, noise, matrix_update, *, weight_decay, adam_betas, adam_eps,
               adam_weight_decay):
    """A loop of the authors' optimizer: ``matrix_update(key, grad, state, step)`` for the
    matrices, ``adam_update`` for the 1-d leaf, decoupled weight decay."""
    params = {k: v.copy() for k, v in params0.items()}
    state = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
    trajectory = []
    for step in range(STEPS):
        grads = _grad(params, noise, step)
        for k, p in params.items():
            if p.ndim == 1:
                update = _adam(grads[k], state[k], step + 1, adam_betas, adam_eps)
                p *= 1 - LR * adam_weight_decay
            else:
                update = matrix_update(k, grads[k], state[k], step + 1)
                p *= 1 - LR * weight_decay
            p -= LR * update
        trajectory.append({k: v.copy() for k, v in params.items()})
    return trajectory


def _muon_update(orthogonalize, nesterov):
    def update(key, grad, state, step):
        direction = orthogonalize(_momentum(grad, state[0], 0.95, nesterov))
        return direction * max(1, grad.shape[-2] / grad.shape[-1]) ** 0.5
    return update


def _normuon_update(key, grad, state, step, beta2=0.95):
    """zichongli5/NorMuon's ``normuon_update`` (``state[1]``: the first column)."""
    direction = _polynomial_iteration(
        _momentum(grad, state[0], 0.95, True), [ortho.NEWTON_SCHULZ_COEFFS] * 5, 1e-7)
    norm = np.linalg.norm(direction, axis=(-2, -1), keepdims=True)
    second = state[1][..., :1]
    second[...] = beta2 * second + (1 - beta2) * np.mean(direction**2, axis=-1, keepdims=True)
    state[1][..., :1] = second
    direction = direction / (np.sqrt(second) + 1e-10)
    direction *= norm / (np.linalg.norm(direction, axis=(-2, -1), keepdims=True) + 1e-10)
    return direction * max(1, grad.shape[-2] / grad.shape[-1]) ** 0.5


def _adamuon_update(key, grad, state, step, beta2=0.999, eps=1e-8):
    """Chongjie-Si/AdaMuon's step for one matrix (each slice of the cube on its own, as
    separate parameters would be)."""
    direction = _polynomial_iteration(
        _momentum(grad, state[0], 0.95, True), [ortho.NEWTON_SCHULZ_COEFFS] * 5, 1e-7)
    v = state[1]
    v[...] = beta2 * v + (1 - beta2) * direction**2
    direction = direction / (np.sqrt(v / (1 - beta2**step)) + eps)
    norms = np.linalg.norm(direction, axis=(-2, -1), keepdims=True)
    rows, cols = grad.shape[-2:]
    direction = direction * (min(rows, cols) ** 0.5 / (norms + eps))
    return direction * 0.2 * max(rows, cols) ** 0.5


# --- The tests ------------------------------------------------------------------------------

@pytest.fixture
def float64_torch(monkeypatch):
    """The oracles cast to bfloat16 for speed; in these tests the cast is a float64 copy
    (a copy: torch.optim.Muon then divides the result in place)."""
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self: self.clone())


def test_muon_matches_torch_optim_muon(float64_torch):
    params0, noise = _problem()
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params0.items()}
    matrices = [tensors["tall"], tensors["wide"]]
    others = [tensors["cube"], tensors["bias"]]
    opt_muon = torch.optim.Muon(matrices, lr=LR, weight_decay=0.1, nesterov=False)
    opt_adam = torch.optim.AdamW(others, lr=LR, weight_decay=0.01, eps=0.0)
    reference = []
    for step in range(STEPS):
        grads = _grad({k: t.detach().numpy() for k, t in tensors.items()}, noise, step)
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k])
        opt_muon.step()
        opt_adam.step()
        reference.append({k: t.detach().numpy().copy() for k, t in tensors.items()})
    # torch's momentum is our bias-corrected one times (1 - beta^t): the same direction.
    dims = {**TORCH_DIMS, "cube": None}
    _check("muon vs torch.optim.Muon",
           lambda: contrib.muon(LR, eps=0.0, weight_decay=0.1, adam_weight_decay=0.01,
                                nesterov=False, muon_weight_dimension_numbers=dims),
           reference, params0, noise)


def test_muon_matches_muon_optimizer(float64_torch):
    muon = pytest.importorskip("muon")
    # The 4-d kernel follows the documented policy: its spatial axes join the input axis.
    shapes = {"tall": (6, 3), "wide": (3, 7), "cube": (2, 5, 3), "conv": (4, 2, 3, 3)}
    params0, noise = _problem(shapes, seed=1)
    tensors = {k: torch.tensor(v) for k, v in params0.items()}
    buffers = {k: torch.zeros_like(t) for k, t in tensors.items()}
    reference = []
    for step in range(STEPS):
        grads = _grad({k: t.numpy() for k, t in tensors.items()}, noise, step)
        for k, t in tensors.items():
            # SingleDeviceMuon.step, reshaping the update of a 4-d kernel back (0.1.0
            # adds its 2-d view to the 4-d param, which fails).
            update = muon.muon_update(torch.tensor(grads[k]), buffers[k], beta=0.95)
            t.mul_(1 - LR * 0.1)
            t.add_(update.reshape(t.shape), alpha=-LR)
        reference.append({k: t.numpy().copy() for k, t in tensors.items()})
    # (muon_update scales a 4-d kernel by its (h, w) aspect: 1 for this 3x3 kernel, as
    # ours from its 4 x 18 matrix.)
    dims = {**TORCH_DIMS, "conv": Dims((1, 2, 3), 0)}
    del dims["bias"]
    _check("muon vs muon-optimizer",
           lambda: contrib.muon(LR, eps=1e-7, weight_decay=0.1, bias_correction=False,
                                muon_weight_dimension_numbers=dims),
           reference, params0, noise)


def test_polar_express_coefficients_are_the_authors():
    ours = np.asarray(ortho.POLAR_EXPRESS_COEFFS)
    np.testing.assert_allclose(ours, _polar_express_coefficients(), rtol=1e-12)


@pytest.mark.parametrize("orthogonalizer", ["polar_express", "gram_newton_schulz"])
def test_orthogonalizer_matches_transcription(orthogonalizer):
    params0, noise = _problem(seed=2)
    if orthogonalizer == "polar_express":
        rows = _polar_express_coefficients()[:5]
        orth = lambda g: _polynomial_iteration(g, rows, 1e-7, safety=1.01)  # noqa: E731
    else:
        orth = lambda g: _gram_newton_schulz(g, [ortho.NEWTON_SCHULZ_COEFFS] * 5, 1e-7)  # noqa: E731
    reference = _reference(params0, noise, _muon_update(orth, nesterov=False),
                           weight_decay=0.1, adam_betas=(0.9, 0.999), adam_eps=1e-7,
                           adam_weight_decay=0.0)
    _check(f"muon orthogonalizer={orthogonalizer}",
           lambda: contrib.muon(LR, eps=1e-7, weight_decay=0.1, nesterov=False,
                                bias_correction=False, orthogonalizer=orthogonalizer,
                                muon_weight_dimension_numbers=TORCH_DIMS),
           reference, params0, noise)


def test_normuon_matches_transcription():
    params0, noise = _problem(seed=3)
    reference = _reference(params0, noise, _normuon_update, weight_decay=0.1,
                           adam_betas=(0.9, 0.95), adam_eps=1e-10, adam_weight_decay=0.0)
    _check("normuon", lambda: contrib.normuon(LR, weight_decay=0.1,
                                              muon_weight_dimension_numbers=TORCH_DIMS),
           reference, params0, noise)


def test_adamuon_matches_transcription():
    params0, noise = _problem(seed=4)
    reference = _reference(params0, noise, _adamuon_update, weight_decay=0.01,
                           adam_betas=(0.9, 0.95), adam_eps=1e-10, adam_weight_decay=0.0)
    _check("adamuon", lambda: contrib.adamuon(LR, muon_weight_dimension_numbers=TORCH_DIMS),
           reference, params0, noise)


def test_svd_orthogonalizer_is_numpys_polar_factor():
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        for shape, dims in (((6, 3), Dims(0, 1)), ((3, 7), Dims(0, 1)),
                            ((2, 5, 3), Dims(1, 2))):
            x = rng.standard_normal(shape)
            ours = ortho.orthogonalize(jnp.asarray(x), jnp.zeros(3), 0, dims, method="svd")
            u, _, vh = np.linalg.svd(x, full_matrices=False)
            np.testing.assert_allclose(np.asarray(ours), u @ vh, rtol=0, atol=1e-12)
            # Five Newton-Schulz steps only approximate it (singular values in ~[0.7, 1.2]).
            approx = ortho.orthogonalize(jnp.asarray(x), jnp.asarray(ortho.NEWTON_SCHULZ_COEFFS),
                                         5, dims)
            assert np.max(np.abs(np.asarray(approx) - u @ vh)) > 1e-3


def _split_leaves(split):
    """The wide matrix with its 7 outputs split 3 + 4, as one leaf or as two leaves."""
    params0, noise = _problem({"wide": (7, 5), "bias": (5,)}, seed=6)
    if not split:
        return params0, noise
    return ({"top": params0["wide"][:3], "bottom": params0["wide"][3:], "bias": params0["bias"]},
            {"top": noise["wide"][:, :3], "bottom": noise["wide"][:, 3:], "bias": noise["bias"]})


@pytest.mark.parametrize("name", ["muon", "normuon", "adamuon"])
def test_split_sizes_orthogonalize_blocks_as_separate_params(name):
    alias = getattr(contrib, name)
    dims = {"wide": Dims(1, 0), "bias": None}
    dims_apart = {"top": Dims(1, 0), "bottom": Dims(1, 0), "bias": None}
    blocked = _run_ours(lambda: alias(LR, muon_weight_dimension_numbers=dims,
                                      split_sizes={"wide": (3, 4), "bias": None}),
                        *_split_leaves(False))
    separate = _run_ours(lambda: alias(LR, muon_weight_dimension_numbers=dims_apart),
                         *_split_leaves(True))
    for b, s in zip(blocked, separate, strict=True):
        np.testing.assert_allclose(b["wide"], np.concatenate([s["top"], s["bottom"]]),
                                   rtol=0, atol=1e-12)
    # (test_each_option_changes_the_numbers: splitting changes the numbers.)


# Static options (each builds its own program) and hyperparameters (state data: run by
# the default's compiled update, which shows that the value reaches the state and is used).
STATIC_OPTIONS = [
    ("muon", {"orthogonalizer": "polar_express"}),
    ("muon", {"orthogonalizer": "svd"}),
    ("muon", {"bias_correction": False}),
    ("muon", {"split_sizes": 1}),
    ("normuon", {"nesterov": False}),
    ("normuon", {"orthogonalizer": "polar_express"}),
    ("adamuon", {"rms_scale": 0.3}),
    ("adamuon", {"nesterov": False}),
]
HYPERPARAMETERS = [
    ("normuon", {"b2": 0.5}),
    ("normuon", {"eps": 1e-2}),
    ("normuon", {"ns_eps": 1.0}),
    ("adamuon", {"b2": 0.9}),
    ("adamuon", {"eps": 1e-1}),
    ("adamuon", {"ns_eps": 1.0}),
]


def test_each_option_changes_the_numbers():
    params0, noise = _problem({"cube": SHAPES["cube"]}, seed=7)
    with jax.enable_x64(True):
        # Two steps with different gradients (with one, every momentum form is that
        # gradient, up to a factor).
        grads = [{k: jnp.asarray(v) for k, v in _grad(params0, noise, step).items()}
                 for step in (0, 1)]
        params = {k: jnp.asarray(v) for k, v in params0.items()}
        dims = {"cube": TORCH_DIMS["cube"]}

        def make(name, options):
            return getattr(contrib, name)(LR, muon_weight_dimension_numbers=dims,
                                          **options)

        def second_update(opt, state=None, step=None):
            step = step or jax.jit(opt.update)
            state = opt.init(params) if state is None else state
            _, state = step(grads[0], state, params)
            return step(grads[1], state, params)[0]["cube"]

        defaults = {name: make(name, {}) for name in ("muon", "normuon", "adamuon")}
        steps = {name: jax.jit(opt.update) for name, opt in defaults.items()}
        bases = {name: second_update(opt, step=steps[name]) for name, opt in defaults.items()}
        for name, options in STATIC_OPTIONS + HYPERPARAMETERS:
            if (name, options) in HYPERPARAMETERS:
                state = make(name, options).init(params)
                changed = second_update(defaults[name], state, steps[name])
            else:
                changed = second_update(make(name, options))
            difference = float(jnp.max(jnp.abs(bases[name] - changed)))
            assert difference > 1e-6, f"{name}({options}) did not change the update"
        # Gram Newton-Schulz is the same polynomial, rounded otherwise: some bits differ.
        gram = second_update(make("muon", {"orthogonalizer": "gram_newton_schulz"}))
        assert bool(jnp.any(bases["muon"] != gram))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: contrib.muon(0.1, orthogonalizer="qr"), "orthogonalizer"),
        (lambda: contrib.normuon(0.1, orthogonalizer="Polar"), "orthogonalizer"),
        (lambda: contrib.adamuon(0.1, ns_steps=0), "ns_steps"),
        (lambda: contrib.muon(0.1, orthogonalizer="svd", preconditioning="aol"),
         "preconditioning"),
        (lambda: contrib.normuon(0.1, b2=1.5), "b2"),
    ],
)
def test_bad_options_are_refused_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_split_sizes_are_refused_at_init():
    params = {"w": jnp.zeros((5, 6))}
    for alias in (contrib.muon, contrib.normuon, contrib.adamuon):
        with pytest.raises(ValueError, match="split_sizes"):
            alias(0.1, split_sizes=4).init(params)
        with pytest.raises(ValueError, match="split_sizes"):
            alias(0.1, split_sizes=(2, 2)).init(params)

