"""optim_fn.torch.Muon against torch.optim.Muon, to bfloat16 precision.

torch runs Newton-Schulz in bfloat16, so the two agree to a few percent of the step, not
to float precision. The tolerance (5% of the total movement over 20 steps) still catches
every real difference: the doc's momentum form instead of the EMA, the other lr
adjustment, or a missing weight decay each change the trajectory by 20-100%.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.torch as oft

torch = pytest.importorskip("torch")

STEPS = 20


def _run(kwargs, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = {"a": rng.standard_normal((4, 3)).astype(dtype),
              "b": rng.standard_normal((3, 6)).astype(dtype)}
    noise = {k: rng.standard_normal((STEPS, *v.shape)).astype(dtype) for k, v in params.items()}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = torch.optim.Muon(list(tensors.values()), lr=0.02, **kwargs)
    reference = []
    for step in range(STEPS):
        for k, p in tensors.items():
            p.grad = 0.5 * p.detach() + torch.tensor(noise[k][step])
        opt.step()
        reference.append({k: p.detach().numpy().copy() for k, p in tensors.items()})
    with jax.enable_x64(dtype == np.float64):
        transform = oft.Muon(lr=0.02, **kwargs)
        x = jax.tree.map(jnp.asarray, params)
        state = transform.init(x)
        step_fn = jax.jit(transform.update)
        errors = []
        for step in range(STEPS):
            grads = jax.tree.map(lambda p, n, k=step: 0.5 * p + n[k], x, noise)
            updates, state = step_fn(grads, state, x)
            x = optim_fn.apply_updates(x, updates)
            errors.append(max(float(np.max(np.abs(np.asarray(x[k]) - reference[step][k])))
                              for k in params))
    movement = max(float(np.max(np.abs(reference[-1][k] - params[k]))) for k in params)
    return max(errors), movement


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"nesterov": False, "adjust_lr_fn": "match_rms_adamw"},
     {"weight_decay": 0.0, "momentum": 0.9, "ns_steps": 3}],
)
def test_matches_torch_to_bfloat16_precision(kwargs, dtype):
    error, movement = _run(kwargs, dtype)
    assert movement > 0.1
    assert error <= 0.05 * movement, (error, movement)


def test_rejects_non_matrix_params_like_torch():
    with pytest.raises(ValueError) as theirs:
        torch.optim.Muon([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="only supports 2D parameters") as ours:
        oft.Muon().init({"w": jnp.zeros(3)})
    assert str(theirs.value).split(":")[0] in str(ours.value)


@pytest.mark.parametrize(
    "kwargs", [{"lr": -1.0}, {"weight_decay": -1.0}, {"momentum": -1.0}, {"adjust_lr_fn": "x"}]
)
def test_validation_matches_torch(kwargs):
    with pytest.raises(ValueError) as theirs:
        torch.optim.Muon([torch.zeros(2, 2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError) as ours:
        oft.Muon(**kwargs)
    assert str(theirs.value) in str(ours.value)
    assert "`" in str(ours.value)
