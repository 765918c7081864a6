"""Stands in for ``optax._src.alias`` so optax's own alias tests run on optim_fn.

optax's ``alias_test.py`` looks its optimizers up as ``alias.<name>`` at call time; this
module has the same names, bound to optim_fn's implementations. Only names optim_fn
provides are here: a test that asks for another one (L-BFGS belongs to
``optim_fn.lbfgs`` and its own suite) fails its lookup with AttributeError, which
``tests/test_optax_alias_suite.py`` turns into a skip.
"""

from __future__ import annotations

import inspect
import types

import optim_fn
import optim_fn.contrib
import optim_fn.schedules
import optim_fn.transforms

NAMES = (
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "amsgrad",
    "fromage",
    "lamb",
    "lars",
    "lion",
    "nadam",
    "nadamw",
    "noisy_sgd",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
    "sign_sgd",
    "signum",
    "sm3",
    "yogi",
)

globals().update({name: getattr(optim_fn, name) for name in NAMES})


# ----------------------------------------------------------------------------------------
# optax's other test files (tests/test_optax_suite.py): each optax module such a file
# imports is replaced, in that file's namespace only, by a Namespace that answers each
# name with optim_fn's namesake and falls back to optax's for what optim_fn does not
# provide (optax's base types, test helpers, private helpers).

_ROOT = (optim_fn, optim_fn.transforms, optim_fn.schedules)
SOURCES = {
    "contrib": (optim_fn.contrib, optim_fn),
    "schedules": (optim_fn.schedules, optim_fn),
    "optimizers": _ROOT,
}
# optax modules kept as they are: numerics, test helpers, tree utilities (optim_fn.tree
# names its helpers differently; optax.tree's are the suite's tools, not its subject).
KEPT = {"test_utils", "numerics", "utils", "alias_test", "tree", "_schedule_test"}


class Namespace:
    """optax module ``optax_module`` with its names resolved to optim_fn's first."""

    def __init__(self, optax_module: types.ModuleType, sources: tuple) -> None:
        self._optax = optax_module
        self._sources = sources

    def __getattr__(self, name: str):
        if not name.startswith("_"):
            for source in self._sources:
                if hasattr(source, name):
                    return getattr(source, name)
        return getattr(self._optax, name)


class _Inspect:
    """``inspect`` whose ``signature`` evaluates string annotations.

    optim_fn's modules use ``from __future__ import annotations``; optax's tests compare
    a ``learning_rate`` annotation with ``base.ScalarOrSchedule`` to decide whether an
    optimizer takes a schedule, and would skip every optim_fn optimizer on the string.
    """

    def __getattr__(self, name: str):
        return getattr(inspect, name)

    @staticmethod
    def signature(function, **kwargs):
        try:
            return inspect.signature(function, eval_str=True, **kwargs)
        except (NameError, TypeError, SyntaxError):
            return inspect.signature(function, **kwargs)


def point_at_optim_fn(test_module: types.ModuleType) -> dict[str, Namespace]:
    """Replaces the optax modules bound in ``test_module`` by Namespaces; returns them."""
    replaced = {}
    if getattr(test_module, "inspect", None) is inspect:
        test_module.inspect = _Inspect()
    for global_name, value in list(vars(test_module).items()):
        if not isinstance(value, types.ModuleType):
            continue
        module_name = value.__name__
        if not module_name.startswith("optax") or global_name in KEPT:
            continue
        short = module_name.rsplit(".", 1)[-1]
        if short in KEPT:
            continue
        if module_name == "optax":
            continue  # `import optax.tree`: only optax.tree is used, kept as optax's
        kind = next((k for k in ("contrib", "schedules") if k in module_name), "optimizers")
        replaced[global_name] = Namespace(value, SOURCES[kind])
        setattr(test_module, global_name, replaced[global_name])
    return replaced
