"""Every optimizer-side public name of optax 0.2.8 exists in optim_fn with a compatible
signature, or is listed in docs/differences.md ("Not provided") with the reason.

Namespaces: ``optax``, ``optax.transforms``, ``optax.schedules``, ``optax.contrib``,
``optax.tree``, ``optax.projections``, ``optax.second_order``, ``optax.microbatching``
(those that exist in the installed optax). ``optax.X.name`` is looked for in the matching
optim_fn namespace (``optim_fn.X``), then at optim_fn's top level. Losses are out of
scope and listed as such.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re
import types

import optax
import pytest

import optim_fn

NAMESPACES = (
    "optax",
    "optax.transforms",
    "optax.schedules",
    "optax.contrib",
    "optax.tree",
    "optax.projections",
    "optax.second_order",
    "optax.microbatching",
)
DIFFERENCES = pathlib.Path(__file__).resolve().parents[1] / "docs" / "differences.md"
# Present (with a compatible signature) and documented exceptions, as of optax 0.2.8.
EXPECTED_COUNTS = {"present": 295, "documented": 98}


def _optax_names() -> list[str]:
    names = []
    for namespace in NAMESPACES:
        try:
            module = importlib.import_module(namespace)
        except ImportError:
            continue
        for name in sorted(dir(module)):
            if name.startswith("_") or isinstance(getattr(module, name), types.ModuleType):
                continue
            names.append(f"{namespace}.{name}")
    return names


def _optax_object(qualified: str):
    namespace, name = qualified.rsplit(".", 1)
    return getattr(importlib.import_module(namespace), name)


def _ours(qualified: str):
    namespace, name = qualified.rsplit(".", 1)
    places = []
    if namespace != "optax":
        sub = getattr(optim_fn, namespace.split(".", 1)[1], None)
        if sub is not None:
            places.append(sub)
    places.append(optim_fn)
    for place in places:
        if name in getattr(place, "__all__", ()) or (
            hasattr(place, name) and not name.startswith("_")
            and not isinstance(getattr(place, name), types.ModuleType)
        ):
            return getattr(place, name)
    return None


def _simple(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def signature_problems(theirs, ours) -> list[str]:
    """Why ``ours`` cannot stand in for ``theirs`` (empty when it can)."""
    if not inspect.isfunction(theirs):
        return []  # classes (states, NamedTuples, protocols) and constants: presence only
    if not callable(ours):
        return ["not callable"]
    try:
        want = inspect.signature(theirs).parameters
        have = inspect.signature(ours).parameters
    except (TypeError, ValueError):
        return []
    kinds = {p.kind for p in have.values()}
    var_kw = inspect.Parameter.VAR_KEYWORD in kinds
    problems = []
    positional = inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
    their_positional = [n for n, p in want.items() if p.kind in positional]
    our_positional = [n for n, p in have.items() if p.kind in positional]
    if our_positional[: len(their_positional)] != their_positional:
        problems.append(f"positional parameters {their_positional} != ours {our_positional}")
    for name, param in want.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            if param.kind not in kinds:
                problems.append(f"no {param.kind.description} parameter")
            continue
        if name not in have:
            if not var_kw:
                problems.append(f"no parameter `{name}`")
            continue
        mine = have[name]
        if param.kind == inspect.Parameter.KEYWORD_ONLY and mine.kind not in (
            inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
        ):
            problems.append(f"`{name}` cannot be passed by keyword")
        if param.default is not inspect.Parameter.empty:
            if mine.default is inspect.Parameter.empty:
                problems.append(f"`{name}` has no default (optax: {param.default!r})")
            elif _simple(param.default) and _simple(mine.default) and (
                param.default != mine.default or type(param.default) is not type(mine.default)
                and not isinstance(param.default, (int, float))
            ):
                problems.append(f"`{name}` defaults to {mine.default!r} (optax: {param.default!r})")
    for name, mine in have.items():
        if name not in want and mine.default is inspect.Parameter.empty and mine.kind not in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD
        ):
            problems.append(f"extra required parameter `{name}`")
    return problems


def documented_exceptions() -> dict[str, str]:
    """The table under "## Not provided" in docs/differences.md: name -> reason."""
    text = DIFFERENCES.read_text()
    section = text.split("## Not provided", 1)[1].split("\n#", 1)[0]
    table = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*`([\w.]+)`\s*\|\s*(.+?)\s*\|\s*$", line)
        if match:
            assert match.group(1) not in table, f"listed twice: {match.group(1)}"
            table[match.group(1)] = match.group(2)
    return table


def classify() -> tuple[list[str], dict[str, str], list[str], list[str]]:
    """(present, documented, undocumented problems, stale table rows)."""
    exceptions = documented_exceptions()
    present, documented, problems = [], {}, []
    for qualified in _optax_names():
        ours = _ours(qualified)
        issues = ["missing"] if ours is None else signature_problems(
            _optax_object(qualified), ours
        )
        if not issues:
            present.append(qualified)
        elif qualified in exceptions:
            documented[qualified] = exceptions[qualified]
        else:
            problems.append(f"{qualified}: {'; '.join(issues)}")
    stale = sorted(set(exceptions) - set(documented))
    return present, documented, problems, stale


def test_every_optax_name_is_present_or_documented():
    _, _, problems, _ = classify()
    assert not problems, (
        "optax names missing from optim_fn (or with an incompatible signature) and not "
        "listed under 'Not provided' in docs/differences.md:\n" + "\n".join(problems)
    )


def test_no_stale_exceptions():
    _, _, _, stale = classify()
    assert not stale, (
        "listed under 'Not provided' in docs/differences.md but present and compatible "
        f"(or not an optax name): {stale}"
    )


def test_every_exception_has_a_reason():
    for name, reason in documented_exceptions().items():
        assert len(reason) > 10, (name, reason)


def test_coverage_counts():
    present, documented, problems, _ = classify()
    total = len(present) + len(documented) + len(problems)
    message = (
        f"optax {optax.__version__}: {len(present)} present, {len(documented)} documented "
        f"exceptions, {total} names"
    )
    print(message)
    assert not problems, message
    assert {"present": len(present), "documented": len(documented)} == EXPECTED_COUNTS, message


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "l2_loss"])
def test_losses_are_out_of_scope(name):
    assert "loss functions are out of scope" in documented_exceptions()[f"optax.{name}"]
