"""Paths with readable names for every container type, and labels from path patterns.

A path is the leaf's keys joined by ``/``: dict keys, attribute names of NamedTuples
and dataclasses, list/tuple indices (``"encoder/layers/0/kernel"``). The ``value`` key of
flax nnx's ``Variable`` / ``VariableState`` boxes is left out: ``nnx.Optimizer`` passes
the boxes to ``init`` and bare arrays to ``update``, and both give ``"kernel"``. Patterns are
shell-style globs matched against the whole path (``*`` also matches ``/``), or
compiled regular expressions (``re.compile(...)``, matched with ``search``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import jax

Params = Any

Pattern = str | re.Pattern


def _is_leaf_node(node: Any) -> bool:
    return jax.tree_util.treedef_is_leaf(jax.tree.structure(node)) and node is not None


def _key_name(key: Any, child: Any, by_identity: dict[int, Any] | None) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.FlattenedIndexKey) and by_identity is not None:
        # A Mapping registered without key paths: find the child's key by identity.
        if id(child) in by_identity:
            return str(by_identity[id(child)])
    return str(getattr(key, "key", key))


def _children(node: Any) -> list[tuple[str, Any]]:
    """One level of ``node``'s children as ``(name, child)``, in jax's flattening order."""
    with_paths, _ = jax.tree_util.tree_flatten_with_path(
        node, is_leaf=lambda x: x is not node
    )
    by_identity = None
    if isinstance(node, Mapping):
        values = list(node.values())
        if len({id(v) for v in values}) == len(values):
            by_identity = {id(v): k for k, v in node.items()}
    return [
        (_key_name(path[0], child, by_identity), child) for path, child in with_paths
    ]


def _is_value_box(node: Any, children: list[tuple[str, Any]]) -> bool:
    """A flax nnx ``Variable`` / ``VariableState``: a box around one array, ``value``."""
    return (
        len(children) == 1
        and children[0][0] == "value"
        and type(node).__module__.startswith("flax.")
    )


def _walk(tree: Any, include_none: bool) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []

    def walk(node: Any, prefix: tuple[str, ...]) -> None:
        if node is None:
            if include_none:
                paths.append(prefix)
            return
        if _is_leaf_node(node):
            paths.append(prefix)
            return
        children = _children(node)
        if _is_value_box(node, children):
            walk(children[0][1], prefix)
            return
        for name, child in children:
            walk(child, prefix + (name,))

    walk(tree, ())
    return paths


def leaf_paths(tree: Any) -> list[tuple[str, ...]]:
    """The name path of every leaf of ``tree``, in the order of ``jax.tree.leaves(tree)``.

    A flax nnx ``Variable`` adds no name: ``{"kernel": nnx.Param(w)}`` and
    ``{"kernel": w}`` both give ``("kernel",)``.
    """
    return _walk(tree, include_none=False)


def _pattern_text(pattern: Pattern) -> str:
    return pattern if isinstance(pattern, str) else pattern.pattern


def _check_all_match(where: str, patterns: Sequence[Pattern], tree: Any) -> None:
    """Raises if a pattern matches no path of ``tree`` (a typo such as ``"*biases"``).

    Paths of ``None`` placeholders count: inside a :func:`partition` group or a
    :func:`masked`, the leaves of the other groups are ``None`` but still named.
    """
    if not patterns:
        return
    paths = [path_string(p) for p in _walk(tree, include_none=True)]
    if not paths:
        return
    unmatched = [p for p in patterns if not any(_matches(p, text) for text in paths)]
    if unmatched:
        shown = ", ".join(repr(p) for p in paths[:12])
        more = f" and {len(paths) - 12} more" if len(paths) > 12 else ""
        raise ValueError(
            f"{where}: the pattern(s) {[_pattern_text(p) for p in unmatched]} match no "
            f"parameter path; the paths are {shown}{more}. Patterns are shell-style "
            "globs on the whole path ('*' also matches '/'), e.g. '*bias', 'encoder/*'."
        )


def path_string(path: Sequence[str]) -> str:
    """``("encoder", "0", "kernel")`` -> ``"encoder/0/kernel"`` (what patterns match)."""
    return "/".join(path)


def _matches(pattern: Pattern, path: str) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.search(path) is not None
    return fnmatch.fnmatchcase(path, pattern)


def _check_patterns(where: str, patterns: Sequence[Any]) -> None:
    for pattern in patterns:
        if not isinstance(pattern, (str, re.Pattern)):
            raise TypeError(
                f"{where}: a pattern must be a glob string such as '*bias' or a compiled "
                f"regular expression, got {pattern!r}"
            )


def broadcast_to_tree(labels: Any, tree: Any, what: str = "labels") -> Any:
    """``labels`` spread to one label per leaf of ``tree``, with ``tree``'s exact structure.

    ``labels`` has ``tree``'s structure or a prefix of it. If the container types differ
    (a dict of labels for FrozenDict params, a dict for a NamedTuple or dataclass), the
    leaves are matched by their name paths: each leaf takes the label of the longest
    label path that is a prefix of its own. Raises ValueError naming the parameter paths
    left without a label and the label paths that match no parameter.
    """
    try:
        return jax.tree.map(lambda label, sub: jax.tree.map(lambda _: label, sub), labels, tree)
    except (ValueError, TypeError):
        pass
    if _is_leaf_node(labels):
        return jax.tree.map(lambda _: labels, tree)
    label_leaves = jax.tree.leaves(labels)
    label_paths = leaf_paths(labels)
    by_path = dict(zip(label_paths, label_leaves, strict=True))
    used: set[tuple[str, ...]] = set()
    resolved, missing = [], []
    for path in leaf_paths(tree):
        match = next(
            (path[:n] for n in range(len(path), -1, -1) if path[:n] in by_path), None
        )
        if match is None:
            missing.append(path_string(path))
            resolved.append(None)
        else:
            used.add(match)
            resolved.append(by_path[match])
    unused = [path_string(p) for p in label_paths if p not in used]
    if missing or unused:
        detail = []
        if missing:
            detail.append(f"parameters without a label: {missing[:8]}")
        if unused:
            detail.append(f"label paths matching no parameter: {unused[:8]}")
        raise ValueError(
            f"{what} do not fit the params ({'; '.join(detail)}). Give {what} the params' "
            "keys (or a prefix of them), or a function of the params, or use "
            "optim_fn.path_labels / optim_fn.path_mask."
        )
    return jax.tree.unflatten(jax.tree.structure(tree), resolved)


def path_labels(
    patterns: Mapping[Pattern, Hashable] | Sequence[tuple[Pattern, Hashable]],
    default: Hashable | None = None,
) -> Callable[[Params], Any]:
    """A labelling function: each leaf gets the label of the first pattern its path matches.

    ``patterns`` maps glob patterns (or compiled regexes) to labels, checked in order;
    leaves matching none get ``default``. With ``default=None`` an unmatched leaf is an
    error that lists it, and so is a pattern that matches no path (a typo). Pass the
    result as ``param_labels`` to :func:`partition`.
    """
    pairs = list(patterns.items() if isinstance(patterns, Mapping) else patterns)
    _check_patterns("path_labels", [p for p, _ in pairs])

    def label_fn(params: Params) -> Any:
        _check_all_match("path_labels", [p for p, _ in pairs], params)
        labels, unmatched = [], []
        for path in leaf_paths(params):
            text = path_string(path)
            label = next((lab for pat, lab in pairs if _matches(pat, text)), default)
            if label is None:
                unmatched.append(text)
            labels.append(label)
        if unmatched:
            raise ValueError(
                f"path_labels: no pattern matches the parameters {unmatched[:8]}; patterns "
                f"are {[_pattern_text(p) for p, _ in pairs]}. Add a "
                "pattern for them or pass `default=`"
            )
        return jax.tree.unflatten(jax.tree.structure(params), labels)

    return label_fn


def path_mask(*patterns: Pattern, exclude: Sequence[Pattern] = ()) -> Callable[[Params], Any]:
    """A mask function: True where the path matches a pattern and no ``exclude`` pattern.

    With no positional patterns every leaf is included, so
    ``path_mask(exclude=("*bias", "*scale"))`` selects everything but biases and scales.
    A pattern that matches no path (a typo such as ``"*biases"``) is an error that
    lists the paths. Use it as ``mask=`` of :func:`optim_fn.masked`, :func:`optim_fn.adamw`,
    :func:`optim_fn.add_decayed_weights` or :func:`freeze`.
    """
    if isinstance(exclude, (str, re.Pattern)):
        exclude = (exclude,)
    _check_patterns("path_mask", list(patterns) + list(exclude))

    def mask_fn(params: Params) -> Any:
        _check_all_match("path_mask", list(patterns) + list(exclude), params)
        flags = []
        for path in leaf_paths(params):
            text = path_string(path)
            included = not patterns or any(_matches(p, text) for p in patterns)
            flags.append(included and not any(_matches(p, text) for p in exclude))
        return jax.tree.unflatten(jax.tree.structure(params), flags)

    return mask_fn
