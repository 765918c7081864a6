"""Old import paths keep working after the package was laid out by concept.

Until 0.1 every module sat at the top of ``optim_fn/``. Each old module path now names
a module built on first import whose attributes are looked up in the new modules, so
``from optim_fn.rule_transform import rule_transform`` and
``import optim_fn.hyperparams as hp`` work as before. ``tests/test_public_api.py`` checks
every name that was importable. New code should use the new paths (``docs/architecture.md``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

# old module path -> the modules that hold its names now, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "optim_fn.accumulation": ("optim_fn.transforms._accumulation",),
    "optim_fn.adam_family": ("optim_fn.optimizers.adam_variants",),
    "optim_fn.adaptive": ("optim_fn.optimizers.adam_variants",),
    "optim_fn.averaging": ("optim_fn.transforms._averaging",),
    "optim_fn.base": ("optim_fn.core.base",),
    "optim_fn.cli": ("optim_fn.experiments.cli",),
    "optim_fn.clipping": ("optim_fn.transforms._clipping",),
    "optim_fn.combine": ("optim_fn.transforms._combine",),
    "optim_fn.conditional": ("optim_fn.transforms._conditional",),
    "optim_fn.factored": ("optim_fn.optimizers.factored",),
    "optim_fn.flat_sharded": ("optim_fn.flat._sharded",),
    "optim_fn.hyperparams": ("optim_fn.core.hyperparams",),
    "optim_fn.inject": ("optim_fn.transforms._inject",),
    "optim_fn.layerwise": ("optim_fn.optimizers.layerwise",),
    "optim_fn.lbfgs": ("optim_fn.optimizers.lbfgs",),
    "optim_fn.leafwise": ("optim_fn.core.lift", "optim_fn.core.numerics"),
    "optim_fn.linesearch": ("optim_fn.transforms._linesearch", "optim_fn.tree._math"),
    "optim_fn.linesearch_zoom": ("optim_fn.transforms._linesearch_zoom",),
    "optim_fn.noise": ("optim_fn.optimizers.noisy_sgd",),
    "optim_fn.nonfinite": ("optim_fn.transforms._nonfinite", "optim_fn.tree._math"),
    "optim_fn.optimistic": ("optim_fn.optimizers.optimistic",),
    "optim_fn.partition": ("optim_fn.transforms._partition", "optim_fn.tree._paths"),
    "optim_fn.plateau": ("optim_fn.transforms._plateau",),
    "optim_fn.polyak": ("optim_fn.optimizers.polyak", "optim_fn.tree._math"),
    "optim_fn.rule_transform": ("optim_fn.core.lift", "optim_fn.core.numerics"),
    "optim_fn.rules.adaptive": ("optim_fn.rules.adam_variants", "optim_fn.core.numerics"),
    "optim_fn.scaling": ("optim_fn.transforms._scaling",),
    "optim_fn.sign_methods": ("optim_fn.optimizers.signs",),
    "optim_fn.tree_utils": ("optim_fn.tree._structure",),
    "optim_fn.validation": ("optim_fn.core.validation",),
    "optim_fn.wrappers": ("optim_fn.transforms",),
}

# modules that still exist under their old path, but lost names to other modules
STILL_THERE: dict[str, tuple[str, ...]] = {
    "optim_fn": ("optim_fn.core", "optim_fn.tree", "optim_fn.core.numerics"),
    "optim_fn.transforms": ("optim_fn.optimizers.classic", "optim_fn.core"),
    "optim_fn.optimizers": ("optim_fn.transforms",),
    "optim_fn.flat": ("optim_fn.flat._ravel",),
    "optim_fn.sharding": ("optim_fn.sharding._state", "optim_fn.core.base"),
    "optim_fn.rules": ("optim_fn.core.numerics",),
    "optim_fn.experiments": ("optim_fn.tree._math",),
    "optim_fn.rules.layerwise": ("optim_fn.rules.factored", "optim_fn.core.numerics"),
}


def _look_up(where: str, homes: tuple[str, ...], name: str) -> Any:
    for home in homes:
        module = importlib.import_module(home)
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {where!r} has no attribute {name!r}")


def fallback(module_name: str):
    """A module ``__getattr__`` that finds names the module held before the layout."""
    homes = STILL_THERE[module_name]

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _look_up(module_name, homes, name)

    return __getattr__


def top_level_attribute(name: str) -> Any:
    """``optim_fn.<name>``: an old module path (``optim_fn.hyperparams``) or an old name."""
    full = f"optim_fn.{name}"
    if full in MOVED:
        return importlib.import_module(full)
    return _look_up("optim_fn", STILL_THERE["optim_fn"], name)


class _MovedModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = _look_up(self.__name__, MOVED[self.__name__], name)
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        names: set[str] = set()
        for home in MOVED[self.__name__]:
            names |= {n for n in dir(importlib.import_module(home)) if not n.startswith("_")}
        return sorted(names)


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        homes = MOVED[spec.name]
        if len(homes) == 1:
            # The very module, so that monkeypatching the old path patches the new one.
            return importlib.import_module(homes[0])
        module = _MovedModule(spec.name, f"Moved: see {', '.join(homes)}.")
        module.__all__ = []  # `from old import *` imports nothing implicitly
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, _Loader())
        return None


class _Package(types.ModuleType):
    """``optim_fn`` itself: importing an old module path such as ``optim_fn.partition``
    must not replace the function ``optim_fn.partition`` by that module, which Python
    does to a package when one of its submodules is first imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            isinstance(value, types.ModuleType)
            and f"{self.__name__}.{name}" in MOVED
            and name in self.__dict__
            and not isinstance(self.__dict__[name], types.ModuleType)
        ):
            return
        super().__setattr__(name, value)


def protect(package_name: str) -> None:
    sys.modules[package_name].__class__ = _Package


if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
    sys.meta_path.append(_Finder())
