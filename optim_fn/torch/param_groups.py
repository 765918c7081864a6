"""torch's parameter groups: per-group hyperparameters, selected by parameter path.

``torch.optim.Adam([{"params": enc, "lr": 1e-4}, {"params": head}], lr=1e-3)`` is::

    optim_fn.torch.param_groups(
        optim_fn.torch.Adam,
        [{"params": "encoder/*", "lr": 1e-4}, {"params": "*"}],
        lr=1e-3,
    )

Each group names its params by glob patterns on the path (see
:func:`optim_fn.path_labels`; the first group whose pattern matches wins) and overrides
the keyword defaults. Each group is its own optimizer in an :func:`optim_fn.partition`,
so its hyperparameters are state data: ``set_hyperparams(state, **{"0.lr": 3e-5})``
(qualified names when groups share a name; ``lr=`` alone sets every group).

A per-group value (:class:`optim_fn.torch.porting.PerGroup`, what a scheduler gives for
torch's per-group lists, e.g. ``OneCycleLR([1e-3, 1e-2], total_steps=1000)``) gives group i
its i-th entry, as torch's scheduler does for ``optimizer.param_groups[i]``; also inside
a pair such as ``betas=(schedule.momentum, 0.999)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from optim_fn.core.base import GradientTransformationExtraArgs
from optim_fn.torch.porting import for_group
from optim_fn.transforms._partition import partition
from optim_fn.tree._paths import path_labels


def param_groups(
    optimizer: Callable[..., GradientTransformationExtraArgs],
    groups: Sequence[Mapping[str, Any]],
    **defaults: Any,
) -> GradientTransformationExtraArgs:
    """``optimizer`` with torch-style parameter groups (see the module docstring)."""
    transforms, patterns = {}, []
    for index, group in enumerate(groups):
        if "params" not in group:
            raise ValueError(
                f"param_groups: group {index} has no 'params' entry; give it a path pattern "
                "such as {'params': 'encoder/*', 'lr': 1e-4}"
            )
        selected = group["params"]
        for pattern in [selected] if isinstance(selected, str) else list(selected):
            patterns.append((pattern, index))
        options = {k: v for k, v in group.items() if k != "params"}
        transforms[index] = optimizer(**{
            k: for_group(k, v, index, len(groups)) for k, v in {**defaults, **options}.items()
        })
    return partition(transforms, path_labels(patterns))
