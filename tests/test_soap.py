"""SOAP against a NumPy float64 transcription of the authors' algorithm.

The reference below transcribes the authors' PyTorch optimizer (github.com/nikhilvyas/SOAP,
``soap.py``) step by step: the first call only builds the eigenbasis (``eigh`` of
``GG + 1e-30 I``, columns flipped to decreasing eigenvalues), Adam runs on the gradient
rotated into the basis, the step is ``p <- p - lr * sqrt(1-b2^t)/(1-b1^t) * D`` then
``p <- p - lr * wd * p``, and after each step the factors are updated (``lerp``) and,
every ``precondition_frequency`` steps, refreshed by one power-iteration step and QR,
with the first moment rotated out of the old basis and into the new one, and the second
moment re-ordered like the sorted columns. Its tensor products contract axis 0 and
rotate the axes, as theirs do; ours use ``moveaxis``.

Two conventions make the comparison well defined:

* Column signs of the eigenbases (eigh's and QR's) do not matter: flipping a column flips
  that coordinate of the rotated gradient and first moment, and the second moment, the
  rotated-back direction and the next power-iteration step are unchanged.
* A repeated eigenvalue leaves its eigenvectors arbitrary, and SOAP's numbers depend on
  them (Adam's per-coordinate scaling is not rotation-invariant). Kronecker factors are
  rank-deficient at the first call (``G G^T`` of one gradient: a vector's factor has
  rank 1, the longer axis of a non-square matrix a null space), so there the reference
  checks that our basis diagonalises the same factor with the same eigenvalues, and
  adopts it; every other factor's basis is the reference's own. The refreshes come when
  the factors have full rank, where QR's basis is unique up to signs.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
from optim_fn import contrib, flat

SHAPES = {"matrix": (6, 4), "wide": (3, 12), "cube": (2, 3, 8), "vector": (4,), "scalar": ()}
STEPS = 45


class Config(NamedTuple):
    name: str
    options: dict


CONFIGS = [
    Config("defaults", {"learning_rate": 1e-2}),
    # cube -> (6, 8); wide's 12 > 8 keeps the identity; the vector is preconditioned.
    Config(
        "merge_dims_1d",
        {"learning_rate": 1e-2, "merge_dims": True, "precondition_1d": True, "max_precond_dim": 8},
    ),
    Config(
        "options",
        {
            "learning_rate": 3e-2,
            "b1": 0.9,
            "b2": 0.99,
            "shampoo_beta": 0.9,
            "eps": 1e-6,
            "weight_decay": 0.1,
            "precondition_frequency": 4,
            "precondition_1d": True,
            "normalize_grads": True,
            "correct_bias": False,
        },
    ),
]
DEFAULTS = {
    "learning_rate": 3e-3,
    "b1": 0.95,
    "b2": 0.95,
    "shampoo_beta": -1.0,
    "eps": 1e-8,
    "weight_decay": 0.01,
    "precondition_frequency": 10,
    "max_precond_dim": 10000,
    "merge_dims": False,
    "precondition_1d": False,
    "normalize_grads": False,
    "correct_bias": True,
}


# ----------------------------------------------------------------------------------------
# The reference.


def authors_merge(shape: tuple, max_dim: int) -> tuple:
    """Their merge_dims (channels_first): grow a run of axes while the product fits."""
    out, run = [], 1
    for size in shape:
        if run * size > max_dim:
            out.append(run if run > 1 else size)
            run = size if run > 1 else 1
        else:
            run = run * size
    if run > 1 or not out:
        out.append(run)
    return tuple(out)


class AuthorsSoap:
    """The authors' SOAP on a dict of float64 NumPy params."""

    def __init__(self, options: dict, degenerate_tol: float = 1e-6, adopt_tol: float = 1e-9):
        self.o = {**DEFAULTS, **options}
        if self.o["shampoo_beta"] < 0:
            self.o["shampoo_beta"] = self.o["b2"]
        self.state: dict[str, dict] = {}
        self.degenerate_tol, self.adopt_tol = degenerate_tol, adopt_tol
        self.adopted: list[tuple[str, int]] = []

    # -- their tensor products: contract axis 0 with the basis, which rotates the axes.
    def _work(self, x):
        if self.o["merge_dims"] and x.ndim != 1:
            return x.reshape(authors_merge(x.shape, self.o["max_precond_dim"]))
        return x

    def _rotate(self, x, bases, basis_axis):
        shape = x.shape
        x = self._work(x)
        for q in bases:
            if q is None:
                x = np.moveaxis(x, 0, -1)
            else:
                x = np.tensordot(x, q, axes=([0], [basis_axis]))
        return x.reshape(shape)

    def project(self, x, st):
        return self._rotate(x, st["Q"], 0)

    def project_back(self, x, st):
        return self._rotate(x, st["Q"], 1)

    def _init_factors(self, g):
        if g.ndim == 1:
            keep = self.o["precondition_1d"] and g.shape[0] <= self.o["max_precond_dim"]
            return [np.zeros((g.shape[0],) * 2) if keep else None]
        return [
            np.zeros((n, n)) if n <= self.o["max_precond_dim"] else None
            for n in self._work(g).shape
        ]

    def _eigenbases(self, name, st, ours):
        bases = []
        for index, m in enumerate(st["GG"]):
            if m is None:
                bases.append(None)
                continue
            w, v = np.linalg.eigh(m + 1e-30 * np.eye(m.shape[0]))
            w, v = w[::-1], v[:, ::-1]
            scale = np.max(np.abs(w))
            if len(w) > 1 and np.min(np.abs(np.diff(w))) <= self.degenerate_tol * scale:
                mine = np.asarray(ours[name][index], np.float64)
                tol = self.adopt_tol * max(scale, 1.0)
                assert np.abs(mine.T @ mine - np.eye(len(w))).max() <= self.adopt_tol * 10
                assert np.abs(mine.T @ m @ mine - np.diag(w)).max() <= tol, (name, index)
                v = mine
                self.adopted.append((name, index))
            bases.append(v)
        return bases

    def _refresh(self, st):
        v = self._work(st["exp_avg_sq"])
        bases = []
        for index, (m, q) in enumerate(zip(st["GG"], st["Q"], strict=True)):
            if m is None:
                bases.append(None)
                continue
            order = np.argsort(np.diag(q.T @ m @ q))[::-1]
            v = np.take(v, order, axis=index)
            bases.append(np.linalg.qr(m @ q[:, order])[0])
        st["exp_avg_sq"] = v.reshape(st["exp_avg_sq"].shape)
        st["Q"] = bases

    def _update_preconditioner(self, name, st, g, ours):
        if st["Q"] is not None:
            st["exp_avg"] = self.project_back(st["exp_avg"], st)
        work = g if g.ndim == 1 else self._work(g)
        for index, m in enumerate(st["GG"]):
            if m is not None:
                others = [a for a in range(work.ndim) if a != index]
                outer = np.tensordot(work, work, axes=(others, others))
                st["GG"][index] = m + (1 - self.o["shampoo_beta"]) * (outer - m)  # lerp
        if st["Q"] is None:
            st["Q"] = self._eigenbases(name, st, ours)
        if st["step"] > 0 and st["step"] % self.o["precondition_frequency"] == 0:
            self._refresh(st)
        if st["step"] > 0:
            st["exp_avg"] = self.project(st["exp_avg"], st)

    def step(self, params: dict, grads: dict, ours_bases: dict | None = None) -> dict:
        """New params; ``ours_bases`` (our Q after the first call) for degenerate factors."""
        o, new = self.o, {}
        for name, p in params.items():
            g = np.asarray(grads[name], np.float64)
            st = self.state.get(name)
            if st is None:
                st = self.state[name] = {
                    "step": 0,
                    "exp_avg": np.zeros_like(g),
                    "exp_avg_sq": np.zeros_like(g),
                    "GG": self._init_factors(g),
                    "Q": None,
                }
                self._update_preconditioner(name, st, g, ours_bases)
                new[name] = p
                continue
            g_rotated = self.project(g, st)
            st["step"] += 1
            st["exp_avg"] = st["exp_avg"] * o["b1"] + (1 - o["b1"]) * g_rotated
            st["exp_avg_sq"] = st["exp_avg_sq"] * o["b2"] + (1 - o["b2"]) * g_rotated**2
            denom = np.sqrt(st["exp_avg_sq"]) + o["eps"]
            step_size = o["learning_rate"]
            if o["correct_bias"]:
                t = st["step"]
                step_size = step_size * (1 - o["b2"] ** t) ** 0.5 / (1 - o["b1"] ** t)
            direction = self.project_back(st["exp_avg"] / denom, st)
            if o["normalize_grads"]:
                direction = direction / (1e-30 + np.mean(direction**2) ** 0.5)
            p = p - step_size * direction
            if o["weight_decay"] > 0:
                p = p - o["learning_rate"] * o["weight_decay"] * p
            new[name] = p
            self._update_preconditioner(name, st, g, None)
        return new


# ----------------------------------------------------------------------------------------
# Runs.


@functools.cache
def problem(steps: int = STEPS) -> tuple[dict, list]:
    rng = np.random.default_rng(42)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    grads = [
        {k: rng.normal(size=s) * 10 ** rng.uniform(-0.5, 0.5) for k, s in SHAPES.items()}
        for _ in range(steps)
    ]
    return params, grads


def run_ours(options: dict, dtype: Any, steps: int = STEPS, traces: list | None = None):
    """Our updates (float64 NumPy) and our bases after the first call."""
    params, grads = problem()
    transform = contrib.soap(**options)

    def traced_update(g, s, p):
        if traces is not None:
            traces.append(1)
        return transform.update(g, s, p)

    update = jax.jit(traced_update)
    p = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    state = transform.init(p)
    updates, first_bases = [], None
    for g in grads[:steps]:
        u, state = update({k: jnp.asarray(v, dtype) for k, v in g.items()}, state, p)
        p = optim_fn.apply_updates(p, u)
        updates.append({k: np.asarray(v, np.float64) for k, v in u.items()})
        if first_bases is None:
            first_bases = jax.tree.map(lambda x: np.asarray(x, np.float64), dict(state[0].Q))
    return updates, first_bases


def run_reference(options: dict, first_bases: dict, steps: int = STEPS, adopt_tol: float = 1e-9):
    params, grads = problem()
    reference = AuthorsSoap(options, adopt_tol=adopt_tol)
    p, updates = dict(params), []
    for index, g in enumerate(grads[:steps]):
        new = reference.step(p, g, first_bases if index == 0 else None)
        updates.append({k: new[k] - p[k] for k in p})
        p = new
    return updates, reference


def worst_errors(ours: list, expected: list) -> dict:
    """Per leaf, the largest over steps of max|ours - expected| / max|expected|."""
    worst = dict.fromkeys(SHAPES, 0.0)
    for step, (u, r) in enumerate(zip(ours, expected, strict=True)):
        for k in SHAPES:
            scale = np.max(np.abs(r[k]))
            error = np.max(np.abs(u[k] - r[k]))
            if scale == 0:
                assert error == 0, (k, step)
                continue
            worst[k] = max(worst[k], error / scale)
    return worst


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_matches_the_authors_algorithm_in_float64(config):
    traces: list = []
    with jax.enable_x64(True):
        ours, bases = run_ours(config.options, jnp.float64, traces=traces)
    expected, reference = run_reference(config.options, bases)
    worst = worst_errors(ours, expected)
    assert max(worst.values()) <= 1e-8, worst
    # The first update is zero (that call only builds the basis), later ones are not.
    assert all(not np.any(u) for u in expected[0].values())
    assert all(np.all(np.abs(u) > 0) for u in expected[1].values())
    # Refreshes happened inside one compiled step.
    assert len(traces) == 1
    # Only factors of rank-deficient first statistics took our basis.
    assert ("cube", 0) not in reference.adopted and ("matrix", 1) not in reference.adopted
    assert ("matrix", 0) in reference.adopted  # 6x6 factor of rank 4


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_float32_is_close_to_the_float64_reference(config):
    ours, bases = run_ours(config.options, jnp.float32)
    expected, _ = run_reference(config.options, bases, adopt_tol=1e-5)
    worst = worst_errors(ours, expected)
    assert max(worst.values()) <= 1e-4, worst


# ----------------------------------------------------------------------------------------
# Every option matters: flipping one is caught by the reference comparison.

FLIPS = {
    "learning_rate": 2e-2,
    "b1": 0.9,
    "b2": 0.99,
    "shampoo_beta": 0.5,
    "eps": 1e-2,
    "weight_decay": 0.5,
    "precondition_frequency": 7,
    "max_precond_dim": 7,
    "merge_dims": True,
    "precondition_1d": True,
    "normalize_grads": True,
    "correct_bias": False,
}
FLIP_STEPS = 25


@functools.cache
def base_run():
    options = {"learning_rate": 1e-2}
    with jax.enable_x64(True):
        ours, bases = run_ours(options, jnp.float64, steps=FLIP_STEPS)
    return run_reference(options, bases, steps=FLIP_STEPS)[0]


@pytest.mark.parametrize("option", sorted(FLIPS))
def test_detects_a_flipped_option(option):
    options = {"learning_rate": 1e-2, option: FLIPS[option]}
    with jax.enable_x64(True):
        ours, _ = run_ours(options, jnp.float64, steps=FLIP_STEPS)
    worst = worst_errors(ours, base_run())
    assert max(worst.values()) > 1e-3, (option, worst)


# ----------------------------------------------------------------------------------------
# Construction, dtypes, modes.


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"b1": 1.0}, "b1"),
        ({"b2": -0.1}, "b2"),
        ({"shampoo_beta": 1.0}, "shampoo_beta"),
        ({"eps": -1e-8}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"precondition_frequency": 0}, "precondition_frequency"),
        ({"precondition_frequency": 2.5}, "precondition_frequency"),
        ({"max_precond_dim": 0}, "max_precond_dim"),
        ({"merge_dims": "yes"}, "merge_dims"),
        ({"precondition_1d": 1}, "precondition_1d"),
        ({"normalize_grads": None}, "normalize_grads"),
        ({"correct_bias": "no"}, "correct_bias"),
    ],
)
def test_bad_arguments_are_named(options, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        contrib.soap(**options)


def test_state_layout_and_low_precision_state():
    params = {"w": jnp.ones((3, 20), jnp.bfloat16), "b": jnp.ones(4, jnp.bfloat16)}
    state = contrib.scale_by_soap(max_precond_dim=8).init(params)
    assert isinstance(state, contrib.SoapState)
    assert [f.shape for f in state.GG["w"]] == [(3, 3), (0, 0)]  # 20 > 8: identity
    assert [f.shape for f in state.GG["b"]] == [(0, 0)]  # vectors: Adam by default
    for leaf in jax.tree.leaves(state[1:5]):
        assert leaf.dtype == jnp.float32


def test_refuses_flat_mode_and_complex_params():
    with pytest.raises(ValueError, match="does not work in flat mode"):
        contrib.soap().init(flat.ravel({"w": jnp.ones((3, 2))}))
    with pytest.raises(TypeError, match="does not support complex params"):
        contrib.soap().init({"w": jnp.ones((3, 2), jnp.complex64)})


def test_beats_adam_on_an_ill_conditioned_quadratic():
    """An extra, not the main check: on f(W) = tr((W-W*)^T A (W-W*) B)/2 with rotated,
    ill-conditioned A and B (Kronecker-structured curvature, SOAP's best case), SOAP gets
    further than Adam at the same learning rate."""
    rng = np.random.default_rng(0)

    def spd(n, condition):
        q = np.linalg.qr(rng.normal(size=(n, n)))[0]
        return (q * np.geomspace(1.0, condition, n)) @ q.T

    a, b = jnp.asarray(spd(8, 1e3), jnp.float32), jnp.asarray(spd(6, 1e2), jnp.float32)
    target = jnp.asarray(rng.normal(size=(8, 6)), jnp.float32)

    def loss(w):
        d = w - target
        return 0.5 * jnp.sum(d * (a @ d @ b))

    def final_loss(transform, steps=300):
        def body(carry, _):
            w, state = carry
            u, state = transform.update(jax.grad(loss)(w), state, w)
            return (w + u, state), None

        w = jnp.zeros_like(target)
        (w, _), _ = jax.lax.scan(body, (w, transform.init(w)), None, length=steps)
        return float(loss(w))

    with jax.default_matmul_precision("highest"):
        start = float(loss(jnp.zeros_like(target)))
        soap_loss = final_loss(contrib.soap(1e-2, weight_decay=0.0))
        adam_loss = final_loss(optim_fn.adam(1e-2))
    assert soap_loss < 0.1 * adam_loss < 0.1 * start, (soap_loss, adam_loss, start)
