"""torch's call shapes on the torch face: accepted where they make sense, else explained.

* ``AdamW(params, lr=...)``, ``AdamW(model.parameters())``: optim_fn optimizers are
  built without the params; a TypeError shows the optax-style ``init``/``update`` use.
* ``StepLR(optimizer, step_size=3)``: a scheduler here is a schedule given to the
  optimizer as its ``lr``; a TypeError shows that spelling with the optimizer's own lr.
* Per-group lists (``OneCycleLR(max_lr=[0.1, 0.01])``, ``StepLR([0.1, 0.01], 30)``, ...)
  give a :class:`PerGroup`, one schedule per torch param group, which
  :func:`optim_fn.torch.param_groups` hands out group by group.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optax

# The keywords each optim_fn.torch optimizer was built with, by its update function, to
# spell the optimizer in a scheduler's message.
_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_SCHEDULER_NOTE = {
    "CyclicLR": "; torch's cycle_momentum is `momentum=s.momentum` (SGD) or "
    "`betas=(s.momentum, 0.999)` (Adam-like), s being the schedule",
    "OneCycleLR": "; torch's cycle_momentum is `momentum=s.momentum` (SGD) or "
    "`betas=(s.momentum, 0.999)` (Adam-like), s being the schedule",
}


class PerGroup(tuple):
    """One value per torch param group: what a scheduler gives for per-group lists.

    Give it to :func:`optim_fn.torch.param_groups` (as a default or in the groups), which
    passes the i-th entry to group i; index it (``s[0]``) for a single group's schedule.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"PerGroup({list(self)!r})"

    @property
    def momentum(self) -> PerGroup | None:
        """Each group's ``momentum`` schedule (CyclicLR/OneCycleLR's cycle_momentum)."""
        values = [getattr(schedule, "momentum", None) for schedule in self]
        return None if all(v is None for v in values) else PerGroup(values)

    def get_last_lr(self, state: Any) -> list[Any]:
        """torch's ``scheduler.get_last_lr()``: each group's next lr (see TorchSchedule)."""
        return [schedule.get_last_lr(state)[0] for schedule in self]


def holds_per_group(value: Any) -> bool:
    if isinstance(value, PerGroup):
        return True
    return isinstance(value, (tuple, list)) and any(isinstance(v, PerGroup) for v in value)


def for_group(name: str, value: Any, index: int, count: int) -> Any:
    """The entry of group ``index`` (of ``count``) where ``value`` is per-group."""
    if isinstance(value, PerGroup):
        if len(value) != count:
            raise ValueError(
                f"param_groups: `{name}` has one value per group for {len(value)} groups, "
                f"but there are {count} groups"
            )
        return value[index]
    if isinstance(value, (tuple, list)) and any(isinstance(v, PerGroup) for v in value):
        return type(value)(for_group(name, v, index, count) for v in value)
    return value


def step_count(state: Any) -> Any:
    """The number of updates ``state`` has seen (an int is taken as that number)."""
    if isinstance(state, (int, np.integer)) or getattr(state, "shape", None) == ():
        return state
    found = _find_count(state)
    if found is None:
        raise TypeError(
            "get_last_lr: give the optimizer state (or the number of updates so far); "
            f"no optimizer step count found in {type(state).__name__}"
        )
    return found


def _find_count(node: Any) -> Any:
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        if "count" in node._fields and "hyperparams" in node._fields:
            return node.count
        children = [getattr(node, f) for f in node._fields]
    elif isinstance(node, (tuple, list)):
        children = list(node)
    elif isinstance(node, Mapping):
        children = list(node.values())
    else:
        return None
    for child in children:
        found = _find_count(child)
        if found is not None:
            return found
    return None


# ------------------------------------------------------------------------ showing calls


def _show(value: Any) -> str:
    if value is None or isinstance(value, (bool, int, float, str, np.number)):
        return repr(value)
    if isinstance(value, (tuple, list)) and not isinstance(value, PerGroup):
        parts = ", ".join(_show(v) for v in value)
        return f"({parts},)" if isinstance(value, tuple) and len(value) == 1 else (
            f"({parts})" if isinstance(value, tuple) else f"[{parts}]"
        )
    if np.shape(value) == () and not callable(value):
        try:
            return repr(float(value))
        except (TypeError, ValueError):
            pass
    return "..."


def _call(name: str, positional: list[Any], keywords: Mapping[str, Any]) -> str:
    parts = [_show(v) for v in positional] + [f"{k}={_show(v)}" for k, v in keywords.items()]
    return f"{name}({', '.join(parts)})"


def _keywords(function: Callable, args: tuple, kwargs: dict, skip: int) -> dict:
    """``args`` (minus the first ``skip`` parameters) and ``kwargs`` by parameter name."""
    names = list(inspect.signature(function).parameters)[skip:]
    return {**dict(zip(names, args, strict=False)), **kwargs}


# ------------------------------------------------------------------------- optimizers


def _looks_like_params(value: Any) -> bool:
    """torch's first positional argument, ``params``, rather than an lr."""
    if value is None or isinstance(value, (str, bool, int, float, complex, np.number)):
        return False
    if hasattr(value, "named_parameters"):  # a torch module
        return True
    if callable(value):  # a schedule
        return False
    shape = getattr(value, "shape", None)
    return shape is None or tuple(shape) != ()


def _params_message(name: str, function: Callable, args: tuple, kwargs: dict) -> str:
    keywords = _keywords(function, args[1:], kwargs, 0)
    call = _call(f"optim_fn.torch.{name}", [], keywords)
    message = (
        f"{name}(params, ...): optim_fn optimizers are built without the params (an "
        f"optax-style (init, update) pair); drop `params`: `opt = {call}`, then "
        "`state = opt.init(params)` and, for each optimizer.step(), `updates, state = "
        "opt.update(grads, state, params)` and `params = optim_fn.apply_updates(params, "
        "updates)`"
    )
    first = args[0]
    if isinstance(first, (list, tuple)) and any(isinstance(g, Mapping) for g in first):
        message += (
            f". torch's per-group dicts are `optim_fn.torch.param_groups(optim_fn.torch."
            f"{name}, [{{'params': 'encoder/*', 'lr': 1e-4}}, {{'params': '*'}}], ...)`, "
            "each group selecting params by path pattern"
        )
    return message


def _per_group_message(name: str, argument: str) -> str:
    return (
        f"{name}: `{argument}` holds one schedule per param group (from per-group lists "
        "such as OneCycleLR(max_lr=[...])); give it to optim_fn.torch.param_groups, which "
        f"hands group i its i-th entry: `optim_fn.torch.param_groups(optim_fn.torch.{name}, "
        f"[{{'params': 'encoder/*'}}, {{'params': '*'}}], {argument}=...)`"
    )


def torch_optimizer(function: Callable) -> Callable:
    """Refuses torch's ``(params, ...)`` and per-group values, with the optim_fn spelling."""
    name = function.__name__

    @functools.wraps(function)
    def build(*args: Any, **kwargs: Any) -> Any:
        keywords = _keywords(function, args, kwargs, 0)
        for key, value in keywords.items():
            if holds_per_group(value):
                raise TypeError(_per_group_message(name, key))
        if args and ("lr" in kwargs or _looks_like_params(args[0])):
            raise TypeError(_params_message(name, function, args, kwargs))
        transform = function(*args, **kwargs)
        try:
            _BUILT[transform.update] = (name, keywords, function)
        except TypeError:  # an update that cannot be weakly referenced: no spelling
            pass
        return transform

    return build


# ------------------------------------------------------------------------- schedulers


def _is_optimizer(value: Any) -> bool:
    if isinstance(value, optax.GradientTransformation):
        return True
    return hasattr(value, "param_groups") and hasattr(value, "step")  # torch.optim's


def _optimizer_spelling(optimizer: Any) -> tuple[str, Any, dict]:
    """(name, initial lr or None, other keywords) of ``optimizer``."""
    if hasattr(optimizer, "param_groups"):  # torch.optim
        lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        lr = lrs[0] if len(set(lrs)) == 1 else lrs
        return type(optimizer).__name__, lr, {}
    try:
        name, keywords, function = _BUILT[optimizer.update]
    except (KeyError, TypeError):
        return "<Optimizer>", None, {}
    lr = keywords.get("lr", inspect.signature(function).parameters["lr"].default)
    if callable(lr):
        lr = None
    return name, lr, {k: v for k, v in keywords.items() if k != "lr"}


def _scheduler_message(
    function: Callable, takes_lr: bool, optimizer: Any, args: tuple, kwargs: dict
) -> str:
    name = function.__name__
    optimizer_name, lr, others = _optimizer_spelling(optimizer)
    keywords = _keywords(function, args, kwargs, 1 if takes_lr else 0)
    positional = [lr if lr is not None else "<initial lr>"] if takes_lr else []
    schedule = _call(f"optim_fn.torch.lr_scheduler.{name}", positional, keywords)
    if takes_lr and lr is None:
        schedule = schedule.replace("'<initial lr>'", "<initial lr>")
    spelled = _call(f"optim_fn.torch.{optimizer_name}", [], others)
    spelled = spelled.replace("(", f"(lr={schedule}" + (", " if others else ""), 1)
    role = (
        "its first argument is the optimizer's initial lr where torch's is the optimizer"
        if takes_lr
        else "it takes no optimizer"
    )
    message = (
        f"{name}(optimizer, ...): in optim_fn a scheduler is a schedule, a function of the "
        f"step count given to the optimizer as its `lr` ({role}); build the optimizer "
        f"with it: `{spelled}`"
    )
    if isinstance(lr, list):
        message += (
            "; one lr per torch param group: give the schedule to optim_fn.torch."
            "param_groups as its `lr`"
        )
    return message + _SCHEDULER_NOTE.get(name, "")


def torch_scheduler(takes_lr: bool) -> Callable[[Callable], Callable]:
    """Refuses torch's ``Scheduler(optimizer, ...)`` with the optim_fn spelling.

    ``takes_lr``: the schedule's first argument replaces torch's optimizer (its initial
    lr); otherwise the optimizer is simply dropped (CyclicLR, OneCycleLR, SequentialLR).
    """

    def wrap(function: Callable) -> Callable:
        @functools.wraps(function)
        def build(*args: Any, **kwargs: Any) -> Any:
            if _is_optimizer(kwargs.get("optimizer")):
                kwargs = dict(kwargs)
                optimizer = kwargs.pop("optimizer")
            elif args and _is_optimizer(args[0]):
                optimizer, args = args[0], args[1:]
            else:
                return function(*args, **kwargs)
            raise TypeError(_scheduler_message(function, takes_lr, optimizer, args, kwargs))

        return build

    return wrap


def per_group(*names: str) -> Callable[[Callable], Callable]:
    """Arguments ``names`` may be torch's per-group lists: one schedule per group."""

    def wrap(function: Callable) -> Callable:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def build(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return function(*args, **kwargs)  # torch's own error for a wrong call
            lists = {
                n: v for n, v in bound.arguments.items()
                if n in names and isinstance(v, (list, tuple))
            }
            if not lists:
                return function(*args, **kwargs)
            sizes = {n: len(v) for n, v in lists.items()}
            if len(set(sizes.values())) != 1 or 0 in sizes.values():
                raise ValueError(
                    f"{function.__name__}: per-group lists must have one entry per param "
                    f"group, the same number for each; got lengths {sizes}"
                )
            count = next(iter(sizes.values()))
            return PerGroup(
                function(**{**bound.arguments, **{n: v[i] for n, v in lists.items()}})
                for i in range(count)
            )

        return build

    return wrap


def per_group_members(function: Callable, schedulers: Any, *rest: Any) -> Any:
    """``function(schedulers, *rest)`` group by group when a member is a PerGroup."""
    sizes = {len(s) for s in schedulers if isinstance(s, PerGroup)}
    if not sizes:
        return None
    if len(sizes) != 1:
        raise ValueError(
            f"{function.__name__}: the per-group schedulers have different numbers of "
            f"groups {sorted(sizes)}"
        )
    count = sizes.pop()
    return PerGroup(
        function([s[i] if isinstance(s, PerGroup) else s for s in schedulers], *rest)
        for i in range(count)
    )
