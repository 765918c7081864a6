"""The machinery behind :mod:`optim_fn.testing`'s checks: inputs, runs, comparisons.

A check runs a transform for a few steps, op by op (under :func:`jax.disable_jit`) and
as one jitted step that records the abstract signature of every trace, and compares
what came out. Everything here raises :class:`PropertyCheckError` with the property,
the step and the leaf path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeAlias

import chex
import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core.base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Params,
    Updates,
    apply_updates,
    with_extra_args,
)

TransformLike: TypeAlias = GradientTransformation | Callable[[], GradientTransformation]
ZeroGradUpdate: TypeAlias = str | Callable[[Params], Updates] | None

STRUCTURE = "structure and dtypes"
NO_RETRACE = "no retrace"
JIT_MATCHES_EAGER = "jit matches eager"
ZERO_GRAD_UPDATE = "zero gradient update"
HYPERPARAMS_ARE_DATA = "hyperparameters are data"


class PropertyCheckError(AssertionError):
    """A transform broke a property. ``property``, ``step`` and ``path`` say where."""

    def __init__(self, prop: str, detail: str, *, step: str | None = None, path: str | None = None):
        self.property = prop
        self.step = step
        self.path = path
        where = [w for w in (step, None if path is None else f"leaf {path}") if w is not None]
        location = f" at {', '.join(where)}" if where else ""
        super().__init__(f"property {prop!r} failed{location}: {detail}")


# ----------------------------------------------------------------------------------------
# Inputs.


def default_params(seed: int = 0) -> dict[str, jax.Array]:
    """A small float32 tree (a matrix, a vector and a scalar) for checks given no params."""
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(2,)), jnp.float32),
        "scale": jnp.asarray(rng.normal(), jnp.float32),
    }


def random_grads(params: Params, steps: int, seed: int = 0, scale: float = 1.0) -> list:
    """``steps`` gradient trees shaped like ``params`` (normal entries, params' dtypes)."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        dtype = jnp.asarray(leaf).dtype
        values = rng.normal(size=np.shape(leaf)) * scale
        if jnp.issubdtype(dtype, jnp.complexfloating):
            values = values + 1j * rng.normal(size=np.shape(leaf)) * scale
        return jnp.asarray(values, dtype)

    return [jax.tree.map(draw, params) for _ in range(steps)]


def strongly_typed(tree: Any) -> Any:
    # A weakly typed input leaf would become strongly typed after one step and retrace
    # for reasons that are the caller's, not the transform's.
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.asarray(x).dtype), tree)


def resolve_transform(transform: TransformLike) -> GradientTransformationExtraArgs:
    if not (hasattr(transform, "init") and hasattr(transform, "update")):
        if not callable(transform):
            raise TypeError(
                f"`transform` must be a gradient transformation (with `init` and `update`) "
                f"or a function of no arguments returning one, got {transform!r}"
            )
        try:
            transform = transform()
        except TypeError as error:
            raise TypeError(
                f"`transform` was called with no arguments to build the transformation and "
                f"failed ({error}); pass a built transform such as `optim_fn.adam(1e-3)` or "
                "a factory such as `lambda: optim_fn.adam(1e-3)`"
            ) from error
        if not (hasattr(transform, "init") and hasattr(transform, "update")):
            raise TypeError(
                f"the factory passed as `transform` returned {transform!r}, not a gradient "
                "transformation (an object with `init` and `update`)"
            )
    return with_extra_args(transform)


def prepare_inputs(params: Params, grads: Sequence[Updates] | None, steps: int | None, seed: int):
    params = default_params(seed) if params is None else params
    if grads is None:
        steps = 3 if steps is None else steps
        if steps < 1:
            raise ValueError(f"`steps` must be >= 1, got {steps}")
        grads = random_grads(params, steps, seed + 1)
    else:
        grads = list(grads)
        if not grads:
            raise ValueError("`grads` must hold at least one gradient tree, got none")
        if steps is not None and steps != len(grads):
            raise ValueError(
                f"`steps={steps}` but `grads` holds {len(grads)} gradient trees; "
                "pass one or the other"
            )
    return strongly_typed(params), [strongly_typed(g) for g in grads]


# ----------------------------------------------------------------------------------------
# Running a transform, eagerly or jitted, and recording what happened.


class Run(NamedTuple):
    init_state: OptState
    params: list  # the params passed at each step
    updates: list
    states: list


def leaf_name(prefix: str, path: tuple) -> str:
    return prefix + jax.tree_util.keystr(path)


def describe(leaf: Any) -> str:
    if hasattr(leaf, "dtype") and hasattr(leaf, "shape"):
        # str(), not jnp.dtype(): PRNG key arrays have an extended dtype such as key<fry>.
        return f"{getattr(leaf.dtype, 'name', leaf.dtype)}{list(leaf.shape)}"
    return f"a Python {type(leaf).__name__}, not an array"


def structure_mismatch(tree: Any, name: str, reference: Any, reference_name: str) -> str | None:
    """Why ``tree`` does not have the structure of ``reference``, or None if it does."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    ref_leaves, ref_treedef = jax.tree_util.tree_flatten_with_path(reference)
    if treedef == ref_treedef:
        return None
    paths = {jax.tree_util.keystr(p) for p, _ in leaves}
    ref_paths = {jax.tree_util.keystr(p) for p, _ in ref_leaves}
    extra, missing = sorted(paths - ref_paths)[:5], sorted(ref_paths - paths)[:5]
    detail = []
    if extra:
        detail.append(f"leaves in {name} but not in {reference_name}: {', '.join(extra)}")
    if missing:
        detail.append(f"leaves in {reference_name} but not in {name}: {', '.join(missing)}")
    if not detail:
        detail.append(f"same leaf paths, different containers: {treedef} vs {ref_treedef}")
    return "; ".join(detail)


def check_updates(grads: Updates, updates: Updates, step: str) -> None:
    mismatch = structure_mismatch(updates, "the updates", grads, "the gradients")
    if mismatch is not None:
        raise PropertyCheckError(STRUCTURE, mismatch, step=step)
    pairs = zip(
        jax.tree_util.tree_flatten_with_path(updates)[0], jax.tree.leaves(grads), strict=True
    )
    for (path, update), grad in pairs:
        if not (hasattr(update, "dtype") and hasattr(update, "shape")):
            detail = f"{describe(update)}; return an array with the gradient's shape and dtype"
        elif tuple(update.shape) != tuple(np.shape(grad)):
            detail = f"shape {list(update.shape)}, but the gradient there is {describe(grad)}"
        elif update.dtype != grad.dtype:
            detail = (
                f"dtype {update.dtype}, but the gradient there is "
                f"{grad.dtype}; cast the update to the gradient's dtype"
            )
        else:
            continue
        raise PropertyCheckError(STRUCTURE, detail, step=step, path=leaf_name("updates", path))


def check_state(state: OptState, init_state: OptState, step: str) -> None:
    mismatch = structure_mismatch(state, "the new state", init_state, "the state from init")
    if mismatch is not None:
        raise PropertyCheckError(STRUCTURE, mismatch, step=step)
    pairs = zip(
        jax.tree_util.tree_flatten_with_path(state)[0], jax.tree.leaves(init_state), strict=True
    )
    for (path, leaf), initial in pairs:
        if describe(leaf) != describe(initial):
            raise PropertyCheckError(
                STRUCTURE,
                f"{describe(leaf)}, but init made it {describe(initial)}; keep each state "
                "leaf's shape and dtype (cast new values to the old leaf's dtype)",
                step=step,
                path=leaf_name("state", path),
            )


def run_steps(update: Callable, transform, params, grads_seq, mode: str) -> Run:
    state = init_state = transform.init(params)
    seen_params, all_updates, states = [], [], []
    for index, grads in enumerate(grads_seq, start=1):
        seen_params.append(params)
        updates, state = update(grads, state, params)
        check_updates(grads, updates, f"step {index} ({mode})")
        all_updates.append(updates)
        states.append(state)
        params = apply_updates(params, updates)
    return Run(init_state, seen_params, all_updates, states)


def eager_update(transform, extra_args: dict) -> Callable:
    def update(grads, state, params):
        # disable_jit also un-jits any jax.jit inside the transform (optim_fn compiles
        # an update called outside a trace), so this is op-by-op evaluation.
        with jax.disable_jit():
            return transform.update(grads, state, params, **extra_args)

    return update


class TracedStep:
    """The jitted update; a Python side effect records the input avals of every trace."""

    def __init__(self, transform, extra_args: dict):
        self.calls = 0
        self.traces: list[tuple[int, dict[str, Any]]] = []

        def step(grads, state, params):
            self.traces.append((self.calls, signature(grads=grads, state=state, params=params)))
            return transform.update(grads, state, params, **extra_args)

        self._jitted = jax.jit(step)

    def __call__(self, grads, state, params):
        self.calls += 1
        return self._jitted(grads, state, params)


def signature(**trees: Any) -> dict[str, Any]:
    """What a trace depends on: each tree's structure and each traced leaf's aval."""
    avals: dict[str, Any] = {}
    for name, tree in trees.items():
        leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
        avals[name] = treedef
        for path, leaf in leaves:
            aval = leaf.aval
            weak = " (weak type)" if aval.weak_type else ""
            avals[leaf_name(name, path)] = f"{aval.dtype.name}{list(aval.shape)}{weak}"
    return avals


def assert_traced_once(traced: TracedStep, fix: str) -> None:
    if len(traced.traces) <= 1:
        return
    (_, first), (call, again) = traced.traces[0], traced.traces[1]
    changed = [
        f"{key}: {first.get(key, 'absent')} -> {again.get(key, 'absent')}"
        for key in list(first) + [k for k in again if k not in first]
        if first.get(key) != again.get(key)
    ]
    paths = [c.split(":")[0] for c in changed]
    raise PropertyCheckError(
        NO_RETRACE,
        f"the jitted step was traced {len(traced.traces)} times in {traced.calls} calls; "
        f"its inputs changed between call 1 and call {call}: {'; '.join(changed[:5])}. {fix}",
        step=f"call {call}",
        path=paths[0] if paths else None,
    )


RETRACE_FIX = (
    "Make `update` return a state with exactly the shapes, dtypes and weak types of the "
    "state `init` returns (create scalars with an explicit dtype, e.g. "
    "`jnp.zeros([], jnp.int32)`, not `jnp.asarray(0)`)."
)


# ----------------------------------------------------------------------------------------
# Comparing values.


def ulps_rtol(dtype: Any) -> float:
    """16 units in the last place of ``dtype``; exact for integers."""
    if not jnp.issubdtype(dtype, jnp.inexact):
        return 0.0
    return 16 * float(jnp.finfo(dtype).eps)


def jit_eager_rtol(dtype: Any) -> float:
    """Half the digits of ``dtype`` (3.5e-4 for float32); exact for integers.

    Op-by-op JAX and XLA legitimately round differently: ``x ** n`` with a concrete
    integer ``n`` is repeated multiplication eagerly and ``pow`` under jit, and
    bias corrections such as Adam's ``1 - b2^t`` amplify that ulp by ``1 / (1 - b2^t)``
    (measured: 1e-5 relative for ``b2=0.999``, 1e-4 for ``b2=0.9999`` in float32).
    A trace-time bug (a Python value frozen into the program) is off by far more.
    """
    if not jnp.issubdtype(dtype, jnp.inexact):
        return 0.0
    return float(np.sqrt(jnp.finfo(dtype).eps))


def _key_data_if_key(leaf: Any) -> Any:
    """PRNG key arrays (e.g. noisy_sgd's state) are compared by their key data."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return jax.random.key_data(leaf)
    return leaf


def assert_leaf_close(
    actual, expected, rtol, atol, prop, step, path, allow_nan=True, default_rtol=ulps_rtol
):
    actual, expected = (_key_data_if_key(x) for x in (actual, expected))
    actual_np, expected_np = np.asarray(actual), np.asarray(expected)
    if actual_np.shape != expected_np.shape:
        raise PropertyCheckError(
            prop, f"shape {actual_np.shape}, expected {expected_np.shape}", step=step, path=path
        )
    dtype = expected_np.dtype
    rtol = default_rtol(dtype) if rtol is None else rtol
    wide = np.complex128 if np.iscomplexobj(expected_np) else np.float64
    actual_np, expected_np = actual_np.astype(wide), expected_np.astype(wide)
    finite = np.isfinite(expected_np)
    scale = float(np.max(np.abs(expected_np[finite]))) if finite.any() else 0.0
    # Relative to the leaf's largest entry, so entries that cancel to ~0 are not
    # held to a tolerance relative to themselves.
    leaf_atol = rtol * scale if atol is None else atol
    if not allow_nan and np.isnan(actual_np).any() and not np.isnan(expected_np).any():
        raise PropertyCheckError(
            prop, "got NaN where finite values were expected", step=step, path=path
        )
    try:
        chex.assert_trees_all_close(actual_np, expected_np, rtol=rtol, atol=leaf_atol)
    except AssertionError as error:
        raise PropertyCheckError(
            prop,
            f"values differ beyond rtol={rtol:.3g}, atol={leaf_atol:.3g}: {error}",
            step=step,
            path=path,
        ) from None


def assert_trees_close(
    actual, expected, name, rtol, atol, prop, step, allow_nan=True, default_rtol=ulps_rtol
):
    mismatch = structure_mismatch(actual, name, expected, "the reference")
    if mismatch is not None:
        raise PropertyCheckError(prop, mismatch, step=step)
    pairs = zip(
        jax.tree_util.tree_flatten_with_path(actual)[0], jax.tree.leaves(expected), strict=True
    )
    for (path, leaf), reference in pairs:
        if (
            hasattr(leaf, "dtype")
            and hasattr(reference, "dtype")
            and (leaf.dtype != reference.dtype)
        ):
            raise PropertyCheckError(
                prop,
                f"dtype {leaf.dtype}, the reference has "
                f"{reference.dtype}",
                step=step,
                path=leaf_name(name, path),
            )
        assert_leaf_close(
            leaf, reference, rtol, atol, prop, step, leaf_name(name, path), allow_nan, default_rtol
        )
