"""Converting optimizer state between ``torch.optim`` and optim_fn.torch.

The state fields of optim_fn.torch optimizers carry torch's names (``exp_avg``,
``exp_avg_sq``, ``max_exp_avg_sq``, ``momentum_buffer``, ``square_avg``, ``grad_avg``,
``acc_delta``, ``sum``, ``exp_inf``, ``ax``, ``prev``, ``step_size``, and the scalars
``mu_product``, ``eta``, ``mu``); ``count`` is torch's ``step``. Parameters are matched by
position: the i-th leaf of ``params`` (``jax.tree.leaves`` order) is torch's i-th param
of its single param group.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core.base import GradientTransformationExtraArgs
from optim_fn.core.hyperparams import get_hyperparams, set_hyperparams

_SCALARS = ("mu_product", "eta", "mu")


def _to_numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _group_hyperparams(group: dict, present: dict) -> dict:
    values = {}
    for key, value in group.items():
        if key == "betas":
            values["beta1"], values["beta2"] = (float(_to_numpy(b)) for b in value)
        elif key == "eps" and isinstance(value, tuple):
            values["eps2"] = value[1]
        elif key in present and isinstance(value, (int, float)) and not isinstance(value, bool):
            values[key] = float(value)
    return {k: v for k, v in values.items() if k in present}


def from_torch_state_dict(
    optimizer: GradientTransformationExtraArgs, params: Any, state_dict: dict
) -> Any:
    """optim_fn state equivalent to a torch optimizer's ``state_dict()``.

    ``optimizer`` must be built with the same flags (amsgrad, momentum != 0, centered...)
    as the torch one; its hyperparameters are overwritten by the saved group's values.
    """
    if len(state_dict["param_groups"]) != 1:
        raise ValueError(
            "from_torch_state_dict: `state_dict` has several param groups; convert one "
            "group at a time (one optimizer per group, see optim_fn.torch.param_groups)"
        )
    state = optimizer.init(params)
    group = state_dict["param_groups"][0]
    leaves, treedef = jax.tree.flatten(params)
    if len(group["params"]) != len(leaves):
        raise ValueError(
            f"from_torch_state_dict: `params` has {len(leaves)} leaves but the torch group "
            f"has {len(group['params'])} params"
        )
    per_param = [state_dict["state"].get(i, {}) for i in group["params"]]
    first = next((s for s in per_param if s), {})
    fields = {}
    for field in state._fields:
        current = getattr(state, field)
        if field == "count":
            # SGD keeps no step; any count >= 1 marks its buffer as started.
            step = int(_to_numpy(first.get("step", 1 if first else 0)))
            fields[field] = jnp.asarray(step, jnp.int32)
        elif field in _SCALARS and field in first:
            # In the field's own dtype: NAdam's mu_product is float32, ASGD's eta/mu
            # follow the params' precision.
            fields[field] = jnp.asarray(_to_numpy(first[field]), current.dtype)
        elif field != "hyperparams" and current is not None and field in first:
            old = treedef.flatten_up_to(current)
            fields[field] = jax.tree.unflatten(
                treedef,
                [jnp.asarray(_to_numpy(s[field]), o.dtype) for s, o in zip(per_param, old,
                                                                          strict=True)],
            )
    state = state._replace(**fields)
    return set_hyperparams(state, **_group_hyperparams(group, get_hyperparams(state)))


def to_torch_state_dict(state: Any, params: Any, template: dict) -> dict:
    """A torch ``state_dict`` for ``state``, using a torch optimizer's own ``state_dict()``
    as ``template`` (for its group settings); load it with ``optimizer.load_state_dict``.
    """
    import torch

    group = dict(template["param_groups"][0])
    values = get_hyperparams(state)
    for key in list(group):
        if key == "betas":
            group[key] = (float(values["beta1"]), float(values["beta2"]))
        elif key in values and key != "params":
            group[key] = float(values[key])
    leaves, treedef = jax.tree.flatten(params)
    per_param: list[dict] = [{} for _ in leaves]
    step = torch.tensor(float(state.count))
    for field in state._fields:
        value = getattr(state, field)
        if field in ("count", "hyperparams") or value is None:
            continue
        if field in _SCALARS:
            dtype = torch.float64 if value.dtype == jnp.float64 else torch.float32
            for entry in per_param:
                entry[field] = torch.tensor(float(value), dtype=dtype)
            continue
        for entry, leaf in zip(per_param, treedef.flatten_up_to(value), strict=True):
            entry[field] = torch.tensor(np.array(leaf))
    for entry in per_param:
        entry["step"] = step.clone()
    return {"state": dict(enumerate(per_param)), "param_groups": [group]}
