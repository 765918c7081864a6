"""Converting optimizer state between ``torch.optim`` and optim_fn.torch, by parameter name.

The state fields of optim_fn.torch optimizers carry torch's names (``exp_avg``,
``exp_avg_sq``, ``max_exp_avg_sq``, ``momentum_buffer``, ``square_avg``, ``grad_avg``,
``acc_delta``, ``sum``, ``exp_inf``, ``ax``, ``prev``, ``step_size``, and the scalars
``mu_product``, ``eta``, ``mu``); ``count`` is torch's ``step``.

Parameters are matched by NAME, never by position: ``names`` gives the torch name of each
param of the torch optimizer's group, in the group's order (``model.named_parameters()``
when the optimizer was built from ``model.parameters()``), and each name is found among
the leaf paths of ``params`` (``"layer1.weight"`` is the leaf ``"layer1/weight"``). Every
moment's shape and dtype is checked against the optim_fn state of its leaf.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core.base import GradientTransformationExtraArgs
from optim_fn.core.hyperparams import get_hyperparams, set_hyperparams
from optim_fn.tree._paths import leaf_paths, path_string

_SCALARS = ("mu_product", "eta", "mu")
_CALL = {
    "from_torch_state_dict": "from_torch_state_dict(optimizer, params, "
    "torch_opt.state_dict(), names=[n for n, _ in model.named_parameters()])",
    "to_torch_state_dict": "to_torch_state_dict(state, params, torch_opt.state_dict(), "
    "names=[n for n, _ in model.named_parameters()])",
}


class _Match(NamedTuple):
    index: Any  # torch's key in ``state_dict["state"]``
    name: str  # the torch name, as given
    leaf: int  # position in ``jax.tree.leaves(params)``
    path: str  # the leaf's path
    tensor: Any  # the torch param when ``names`` gave (name, param) pairs, else None


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def _dtype_name(value: Any) -> str:
    if _is_torch(value) and hasattr(value, "dtype"):
        return str(value.dtype).removeprefix("torch.")
    return jnp.dtype(np.asarray(value).dtype).name


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # numpy has no bfloat16: exact via float32
            return np.asarray(value.float().numpy()).astype(jnp.bfloat16)
        return value.numpy()
    return np.asarray(value)


def _describe(match: _Match) -> str:
    return f"torch parameter {match.name!r} (index {match.index}, leaf {match.path!r})"


def _normalise(name: str) -> str:
    return name.replace(".", "/")


def _entries(names: Any, where: str) -> list[tuple[Any, str, Any]]:
    """``names`` as ``[(torch_index or None, name, param or None), ...]``."""
    if isinstance(names, Mapping):
        return [(index, name, None) for index, name in names.items()]
    if isinstance(names, str):
        raise TypeError(f"{where}: `names` must be a list of names, got the string {names!r}")
    entries = []
    for entry in names:
        if isinstance(entry, str):
            entries.append((None, entry, None))
        elif isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str):
            entries.append((None, entry[0], entry[1]))  # model.named_parameters()
        else:
            raise TypeError(
                f"{where}: each entry of `names` must be a torch parameter name or a "
                f"(name, param) pair as from model.named_parameters(), got {entry!r}"
            )
    return entries


def _match(where: str, params: Any, group: dict, names: Any) -> list[_Match]:
    """Pairs each param of torch's ``group`` with the leaf of ``params`` of the same name."""
    paths = [path_string(p) for p in leaf_paths(params)]
    torch_indices = list(group["params"])
    if names is None:
        if len(paths) == 1 and len(torch_indices) == 1:  # nothing to mis-assign
            return [_Match(torch_indices[0], paths[0], 0, paths[0], None)]
        raise TypeError(
            f"{where}: pass `names`, the torch parameter names in the order of the torch "
            f"optimizer's params: {_CALL[where]}. State is matched by name, never by "
            f"position (leaves of `params`: {paths})"
        )
    entries = _entries(names, where)
    if len(entries) != len(torch_indices):
        raise ValueError(
            f"{where}: `names` has {len(entries)} entries but the torch param group has "
            f"{len(torch_indices)} params"
        )
    if isinstance(names, Mapping):
        unknown = [index for index, _, _ in entries if index not in torch_indices]
        if unknown:
            raise ValueError(
                f"{where}: `names` maps torch indices {unknown} that the param group does "
                f"not have (its params: {torch_indices})"
            )
        order = {index: j for j, index in enumerate(torch_indices)}
        entries.sort(key=lambda entry: order[entry[0]])
    else:
        entries = [(index, name, p) for index, (_, name, p) in zip(torch_indices, entries,
                                                                   strict=True)]
    exact = {path: i for i, path in enumerate(paths)}
    loose: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        loose.setdefault(_normalise(path), []).append(i)
    matches, taken = [], {}
    for index, name, tensor in entries:
        leaf = exact.get(name)
        if leaf is None:
            candidates = loose.get(_normalise(name), [])
            if len(candidates) > 1:
                raise ValueError(
                    f"{where}: torch parameter {name!r} fits several leaves "
                    f"{[paths[i] for i in candidates]}; give the exact leaf path"
                )
            if not candidates:
                raise ValueError(
                    f"{where}: torch parameter {name!r} (index {index}) matches no leaf of "
                    f"`params` ({name!r} is looked up as {_normalise(name)!r}); leaves: "
                    f"{paths}. Give names that are the leaf paths with '.' or '/' "
                    "(or a dict {torch_index: leaf_path})"
                )
            leaf = candidates[0]
        if leaf in taken:
            raise ValueError(
                f"{where}: torch parameters {taken[leaf]!r} and {name!r} both name the leaf "
                f"{paths[leaf]!r}"
            )
        taken[leaf] = name
        matches.append(_Match(index, name, leaf, paths[leaf], tensor))
    missing = [path for i, path in enumerate(paths) if i not in taken]
    if missing:
        raise ValueError(
            f"{where}: leaves of `params` with no torch parameter in `names`: {missing}; "
            "pass only the params that the torch optimizer updates"
        )
    leaves = jax.tree.leaves(params)
    for match in matches:
        if match.tensor is not None:
            _check(where, match, "the param", match.tensor, leaves[match.leaf])
    return matches


def _check(where: str, match: _Match, what: str, value: Any, expected: Any) -> None:
    """``value`` (torch's) must have the shape and dtype of ``expected`` (optim_fn's)."""
    got, want = tuple(value.shape), tuple(np.shape(expected))
    if got != want:
        raise ValueError(
            f"{where}: {_describe(match)}: {what} has shape {got} in torch, expected "
            f"{want} (the leaf's); check `names`"
        )
    got_dtype = _dtype_name(value)
    dtype = expected.dtype if hasattr(expected, "dtype") else jnp.asarray(expected).dtype
    want_dtype = jnp.dtype(dtype).name
    if got_dtype != want_dtype:
        raise ValueError(
            f"{where}: {_describe(match)}: {what} is {got_dtype} in torch, expected "
            f"{want_dtype} (the leaf's); give `params` in torch's dtype (float64 needs "
            "jax.config.update('jax_enable_x64', True))"
        )


def _to_torch(leaf: Any) -> Any:
    import torch

    if jnp.dtype(leaf.dtype) == jnp.bfloat16:  # numpy has no bfloat16: exact via float32
        return torch.tensor(np.asarray(leaf, np.float32)).to(torch.bfloat16)
    return torch.tensor(np.array(leaf))


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


def _single_group(where: str, state_dict: dict) -> dict:
    if len(state_dict["param_groups"]) != 1:
        raise ValueError(
            f"{where}: `state_dict` has several param groups; convert one group at a time "
            "(one optimizer per group, see optim_fn.torch.param_groups)"
        )
    return state_dict["param_groups"][0]


def from_torch_state_dict(
    optimizer: GradientTransformationExtraArgs,
    params: Any,
    state_dict: dict,
    *,
    names: Any = None,
) -> Any:
    """optim_fn state equivalent to a torch optimizer's ``state_dict()``.

    ``names``: the torch name of each param of the torch optimizer's group, in the group's
    order: ``[n for n, _ in model.named_parameters()]``, or ``model.named_parameters()``
    itself (the params' shapes and dtypes are then checked too), or a dict
    ``{torch_index: name}``. A name is the leaf path of ``params`` with ``.`` or ``/``.
    Required unless ``params`` has a single leaf. Raises ValueError naming the parameter
    when a name matches no leaf or a moment's shape or dtype differs from its leaf's.

    ``optimizer`` must be built with the same flags (amsgrad, momentum != 0, centered...)
    as the torch one; its hyperparameters are overwritten by the saved group's values.
    """
    where = "from_torch_state_dict"
    group = _single_group(where, state_dict)
    matches = _match(where, params, group, names)
    state = optimizer.init(params)
    treedef = jax.tree.structure(params)
    per_param = [state_dict["state"].get(m.index) or {} for m in matches]
    steps = {int(_to_numpy(s["step"])) for s in per_param if "step" in s}
    if len(steps) > 1:
        raise ValueError(
            f"{where}: the torch params have different `step` counts {sorted(steps)}; "
            "optim_fn keeps one count for all params"
        )
    first = next((s for s in per_param if s), {})
    fields = {}
    for field in state._fields:
        current = getattr(state, field)
        if field == "count":
            # SGD keeps no step; any count >= 1 marks its buffer as started.
            step = steps.pop() if steps else (1 if first else 0)
            fields[field] = jnp.asarray(step, jnp.int32)
        elif field in _SCALARS and field in first:
            # In the field's own dtype: NAdam's mu_product is float32, ASGD's eta/mu
            # follow the params' precision.
            fields[field] = jnp.asarray(_to_numpy(first[field]), current.dtype)
        elif field != "hyperparams" and current is not None:
            new = list(treedef.flatten_up_to(current))
            for match, saved in zip(matches, per_param, strict=True):
                value = saved.get(field)
                if value is None:  # no state for this param in torch: keep the initial one
                    continue
                _check(where, match, f"`{field}`", value, new[match.leaf])
                new[match.leaf] = jnp.asarray(_to_numpy(value), new[match.leaf].dtype)
            fields[field] = jax.tree.unflatten(treedef, new)
    state = state._replace(**fields)
    return set_hyperparams(state, **_group_hyperparams(group, get_hyperparams(state)))


def to_torch_state_dict(state: Any, params: Any, template: dict, *, names: Any = None) -> dict:
    """A torch ``state_dict`` for ``state``, using a torch optimizer's own ``state_dict()``
    as ``template`` (for its group settings and param indices); load it with
    ``optimizer.load_state_dict``. ``names`` as in :func:`from_torch_state_dict`; where
    ``template`` already holds state (or ``names`` holds the torch params), its shapes and
    dtypes are checked against ours.
    """
    import torch

    where = "to_torch_state_dict"
    group = dict(_single_group(where, template))
    matches = _match(where, params, group, names)
    values = get_hyperparams(state)
    for key in list(group):
        if key == "betas":
            group[key] = (float(values["beta1"]), float(values["beta2"]))
        elif key in values and key != "params":
            group[key] = float(values[key])
    treedef = jax.tree.structure(params)
    per_param: dict[Any, dict] = {m.index: {} for m in matches}
    step = torch.tensor(float(state.count))
    for field in state._fields:
        value = getattr(state, field)
        if field in ("count", "hyperparams") or value is None:
            continue
        if field in _SCALARS:
            dtype = torch.float64 if value.dtype == jnp.float64 else torch.float32
            for entry in per_param.values():
                entry[field] = torch.tensor(float(value), dtype=dtype)
            continue
        leaves = treedef.flatten_up_to(value)
        for match in matches:
            leaf = leaves[match.leaf]
            existing = (template["state"].get(match.index) or {}).get(field)
            if existing is not None:
                _check(where, match, f"`{field}`", existing, leaf)
            per_param[match.index][field] = _to_torch(leaf)
    for entry in per_param.values():
        entry["step"] = step.clone()
    return {"state": per_param, "param_groups": [group]}
