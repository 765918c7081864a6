"""optim_fn.torch.param_groups against torch's per-group hyperparameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.torch as oft

torch = pytest.importorskip("torch")

STEPS = 25


def test_groups_match_torch_param_groups():
    rng = np.random.default_rng(0)
    params = {
        "encoder": {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)},
        "head": {"w": rng.standard_normal((2, 2))},
    }
    leaves, treedef = jax.tree.flatten(params)
    noise = [rng.standard_normal((STEPS, *leaf.shape)) for leaf in leaves]
    tensors = [torch.tensor(leaf, requires_grad=True) for leaf in leaves]
    # Flattened order: encoder/b, encoder/w, head/w.
    opt = torch.optim.AdamW(
        [{"params": tensors[:2], "lr": 0.01, "weight_decay": 0.0},
         {"params": tensors[2:], "amsgrad": True}],
        lr=0.05,
        weight_decay=0.1,
    )
    for step in range(STEPS):
        for p, n in zip(tensors, noise, strict=True):
            p.grad = 0.5 * p.detach() + torch.tensor(n[step])
        opt.step()
    with jax.enable_x64(True):
        transform = oft.param_groups(
            oft.AdamW,
            [{"params": "encoder/*", "lr": 0.01, "weight_decay": 0.0},
             {"params": "head/*", "amsgrad": True}],
            lr=0.05,
            weight_decay=0.1,
        )
        x = jax.tree.map(jnp.asarray, params)
        state = transform.init(x)
        step_fn = jax.jit(transform.update)
        for step in range(STEPS):
            grads = jax.tree.unflatten(
                treedef,
                [0.5 * leaf + n[step] for leaf, n in zip(jax.tree.leaves(x), noise, strict=True)],
            )
            updates, state = step_fn(grads, state, x)
            x = optim_fn.apply_updates(x, updates)
        for ours, theirs in zip(jax.tree.leaves(x), tensors, strict=True):
            np.testing.assert_allclose(np.asarray(ours), theirs.detach().numpy(), rtol=1e-12)
        # Per-group hyperparameters are state data with qualified names.
        values = optim_fn.get_hyperparams(state)
        assert {float(values[k]) for k in values if k.endswith("lr")} == {0.01, 0.05}


def test_group_without_params_names_the_fix():
    with pytest.raises(ValueError, match="'params'"):
        oft.param_groups(oft.SGD, [{"lr": 0.1}])
