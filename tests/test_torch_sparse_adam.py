"""optim_fn.torch.SparseAdam (BCOO gradients) against torch.optim.SparseAdam."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import sparse

import optim_fn
import optim_fn.torch as oft

torch = pytest.importorskip("torch")

STEPS = 30
ROWS, COLS = 10, 4


def _batches(seed):
    """Row ids (with a duplicate) and row gradients, as an embedding lookup gives."""
    rng = np.random.default_rng(seed)
    ids = [np.append(rng.choice(ROWS, 4, replace=False), rng.integers(ROWS)) for _ in range(STEPS)]
    values = [rng.standard_normal((5, COLS)) for _ in range(STEPS)]
    return ids, values


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize(
    "kwargs", [{}, {"betas": (0.8, 0.99), "eps": 1e-3, "maximize": True}]
)
def test_matches_torch_step_by_step(kwargs, dtype, rtol):
    ids, values = _batches(0)
    start = np.random.default_rng(1).standard_normal((ROWS, COLS)).astype(dtype)
    p = torch.tensor(start, requires_grad=True)
    opt = torch.optim.SparseAdam([p], lr=0.05, **kwargs)
    reference = []
    for k in range(STEPS):
        p.grad = torch.sparse_coo_tensor(
            torch.tensor(ids[k][None]), torch.tensor(values[k].astype(dtype)), (ROWS, COLS),
            check_invariants=True,
        )
        opt.step()
        reference.append(p.detach().numpy().copy())
    with jax.enable_x64(dtype == np.float64):
        transform = oft.SparseAdam(lr=0.05, **kwargs)
        x = {"table": jnp.asarray(start)}
        state = transform.init(x)
        step = jax.jit(transform.update)
        for k in range(STEPS):
            grad = sparse.BCOO(
                (jnp.asarray(values[k].astype(dtype)), jnp.asarray(ids[k][:, None])),
                shape=(ROWS, COLS),
            )
            before = np.asarray(x["table"])
            updates, state = step({"table": grad}, state, x)
            x = optim_fn.apply_updates(x, updates)
            after = np.asarray(x["table"])
            untouched = np.setdiff1d(np.arange(ROWS), ids[k])
            np.testing.assert_array_equal(after[untouched], before[untouched])
            np.testing.assert_allclose(after, reference[k], rtol=rtol, atol=rtol)


def test_dense_gradient_is_rejected_with_the_fix():
    transform = oft.SparseAdam()
    state = transform.init({"w": jnp.zeros(3)})
    with pytest.raises(ValueError, match="BCOO"):
        transform.update({"w": jnp.ones(3)}, state)


@pytest.mark.parametrize(
    "kwargs", [{"lr": 0.0}, {"eps": 0.0}, {"betas": (1.0, 0.999)}, {"betas": (0.9, -1.0)}]
)
def test_validation_matches_torch(kwargs):
    with pytest.raises(ValueError) as theirs:
        torch.optim.SparseAdam([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError) as ours:
        oft.SparseAdam(**kwargs)
    assert str(theirs.value) in str(ours.value)
