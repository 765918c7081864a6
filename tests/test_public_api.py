"""The public surface: every name defined (or exported) by a module before the layout by
concept still imports from that module path; the top-level namespace is curated; the
heavy subpackages load lazily; the layers import downwards only, with no cycles; no
module is long."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import optim_fn

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "optim_fn"
BEFORE = json.loads((ROOT / "tests" / "data" / "names_before_0.1_layout.json").read_text())
# Internal helper modules that went away (not named in any doc), with what replaced them.
REMOVED = {
    "optim_fn.torch.step_scalars": "the lifter's `scalars=`/`step_scalars=` (torch NAdam, ASGD)",
}


@pytest.mark.parametrize("module_name", sorted(set(BEFORE) - set(REMOVED)))
def test_every_old_module_path_and_name_still_imports(module_name):
    module = importlib.import_module(module_name)
    missing = [name for name in BEFORE[module_name] if not hasattr(module, name)]
    assert not missing, f"{module_name} lost {missing}"


def test_the_173_old_top_level_names_are_the_same_objects_as_their_new_homes():
    assert len(BEFORE["optim_fn"]) == 173
    # kept importable, but not advertised: internals of the lifter and the protocol
    internals = {
        "safe_increment": optim_fn.core.numerics.safe_increment,
        "broadcast_to_tree": optim_fn.tree.broadcast_to_tree,
        "with_extra_args": optim_fn.core.base.with_extra_args,
    }
    for name in BEFORE["optim_fn"]:
        value = getattr(optim_fn, name)
        if name in optim_fn.__all__:
            continue
        assert name in internals, name
        assert value is internals[name], name


def test_old_single_home_paths_are_the_new_modules_themselves():
    # so that monkeypatching an old path patches the code that runs
    import optim_fn.cli
    import optim_fn.experiments.cli
    import optim_fn.hyperparams

    assert optim_fn.cli is optim_fn.experiments.cli
    assert optim_fn.hyperparams is optim_fn.core.hyperparams


def test_all_is_curated():
    names = optim_fn.__all__
    assert len(names) == len(set(names))
    for internal in ("safe_increment", "broadcast_to_tree", "with_extra_args"):
        assert internal not in names
    for name in names:
        assert hasattr(optim_fn, name), name
    subpackages = {"contrib", "core", "experiments", "flat", "optimizers", "rules",
                   "schedules", "sharding", "testing", "torch", "transforms", "tree"}
    assert subpackages <= set(names)


def test_dir_lists_no_internal_modules():
    result = subprocess.run(
        [sys.executable, "-c", "import optim_fn; print(' '.join(dir(optim_fn)))"],
        capture_output=True, text=True, check=True,
    )
    listed = {name for name in result.stdout.split() if not name.startswith("_")}
    old_modules = {m.split(".")[1] for m in BEFORE if m.count(".") == 1}
    still_there = {"contrib", "experiments", "flat", "optimizers", "rules", "schedules",
                   "sharding", "testing", "torch", "transforms", "partition", "lbfgs",
                   "rule_transform"}  # functions that share an old module's name
    assert not (listed & (old_modules - still_there))
    assert listed <= set(optim_fn.__all__) | {"annotations"}, listed - set(optim_fn.__all__)


def test_old_module_paths_do_not_shadow_functions_of_the_same_name():
    import optim_fn.lbfgs  # noqa: F401 - the old module path
    from optim_fn.partition import path_mask  # noqa: F401

    assert callable(optim_fn.partition) and callable(optim_fn.lbfgs)
    assert optim_fn.partition is optim_fn.transforms.partition


def test_subpackages_are_bound_and_heavy_ones_load_lazily():
    code = (
        "import sys, optim_fn\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'sklearn', 'tqdm', 'hypothesis',\n"
        "         'optim_fn.torch', 'optim_fn.experiments', 'optim_fn.testing')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert optim_fn.contrib.muon and optim_fn.tree.global_norm and optim_fn.flat.ravel\n"
        "assert optim_fn.torch.Adam and 'optim_fn.torch' in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ------------------------------------------------------------------------ architecture

# Each layer may import from the layers listed for it (and itself), nothing else.
LAYERS = {
    "tree": {"core.numerics"},
    "flat": set(),
    "core": {"tree", "flat"},
    "rules": {"core"},
    "transforms": {"core", "tree", "flat", "rules"},
    "schedules": {"core"},
    "sharding": {"core"},
    "projections": {"core", "tree"},
    "optimizers": {"core", "tree", "flat", "rules", "transforms", "schedules"},
    "contrib": {"core", "tree", "flat", "rules", "transforms", "optimizers", "schedules"},
    "torch": {"core", "tree", "flat", "rules", "transforms", "optimizers", "contrib",
              "schedules"},
    "testing": {"core", "tree", "flat"},
    "experiments": {"core", "tree", "flat", "rules", "transforms", "optimizers", "contrib",
                    "schedules", "torch"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """optim_fn modules imported at module level (imports inside functions are lazy)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optim_fn"):
            found.add(node.module)
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists() or (
                    PACKAGE.parent / candidate.replace(".", "/")
                ).is_dir():
                    found.add(candidate)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("optim_fn")}
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_layers_import_downwards_only():
    wrong = []
    for module, path in MODULES.items():
        layer = _layer(module)
        if layer is None:
            continue
        allowed = LAYERS[layer] | {layer}
        for imported in _top_level_imports(path):
            target = _layer(imported)
            if target is None or target == layer:
                continue
            short = ".".join(imported.split(".")[1:3])
            if target not in allowed and short not in allowed:
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = {m: {i for i in _top_level_imports(p) if i in MODULES and i != m}
             for m, p in MODULES.items()}
    # a package's __init__ importing its own submodules is not a cycle of ideas
    for module in graph:
        graph[module] = {i for i in graph[module] if not module.startswith(i + ".")}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_module_is_long():
    # "no module over ~500 lines": a little over is fine, a second idea is not
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 530}
    assert not long, long


# --------------------------------------------------------------------- checked once


def _checks_made(monkeypatch, build) -> list[tuple]:
    from optim_fn.core import validation

    made = []
    original = validation._already_checked

    def spy(rule, name, value, *options):
        seen = original(rule, name, value, *options)
        if not seen:
            made.append((rule, name, id(value)))
        return seen

    monkeypatch.setattr(validation, "_already_checked", spy)
    build()
    return made


@pytest.mark.parametrize(
    "build",
    [
        lambda: optim_fn.nadamw(1e-3),
        lambda: optim_fn.adamw(1e-3, weight_decay=0.1),
        lambda: optim_fn.lamb(1e-3),
        lambda: optim_fn.chain(optim_fn.clip_by_global_norm(1.0), optim_fn.adam(1e-3)),
    ],
)
def test_each_argument_is_checked_once_per_construction(monkeypatch, build):
    made = _checks_made(monkeypatch, build)
    assert ("non_negative", "learning_rate") in [(rule, name) for rule, name, _ in made]
    repeated = sorted({check for check in made if made.count(check) > 1})
    assert not repeated, f"checked more than once: {repeated}"


def test_outside_a_construction_every_check_runs_and_errors_name_the_outer_call():
    from optim_fn.core import validation

    validation.check_learning_rate("here", 1.0)
    with pytest.raises(ValueError, match="here: `learning_rate` must be >= 0"):
        validation.check_learning_rate("here", -1.0)
    with pytest.raises(ValueError, match="^nadamw: `learning_rate` must be >= 0"):
        optim_fn.nadamw(-1.0)
    with pytest.raises(ValueError, match="^scale_by_adam: `b1` must be in"):
        optim_fn.nadamw(1e-3, b1=1.5)
