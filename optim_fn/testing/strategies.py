"""Hypothesis strategies for random param trees and matching gradients.

hypothesis is a test dependency, imported when a strategy is built: without it these
functions raise an ImportError that says how to install it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core.base import Params, Updates

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy


class Pair(NamedTuple):
    """The NamedTuple node that :func:`pytrees` puts in random trees."""

    first: Any
    second: Any


_KEYS = ("w", "b", "kernel", "bias", "scale")


def _hypothesis():
    try:
        import hypothesis.extra.numpy as hnp
        import hypothesis.strategies as st
    except ImportError as error:
        raise ImportError(
            "optim_fn.testing's strategies (pytrees, gradients, params_and_grads) need "
            'hypothesis, a test dependency: `pip install "optim-fn[test]"` or `pip install '
            "hypothesis`. The check_* functions work without it."
        ) from error
    return st, hnp


def _arrays(st, hnp, dtype: Any, shape: Any, bound: float):
    """Arrays of ``dtype`` with finite, normal entries in [-bound, bound] (and zeros)."""
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        drawn = np.dtype(dtype)
        elements = st.complex_numbers(
            max_magnitude=bound,
            allow_nan=False,
            allow_infinity=False,
            allow_subnormal=False,
            width=8 * drawn.itemsize,
        )
    else:
        # hypothesis draws no bfloat16: draw float32 and round.
        drawn = np.dtype(np.float32) if dtype == jnp.bfloat16 else np.dtype(dtype)
        elements = st.floats(
            -bound,
            bound,
            allow_nan=False,
            allow_infinity=False,
            allow_subnormal=False,
            width=8 * drawn.itemsize,
        )
    return hnp.arrays(drawn, shape, elements=elements).map(lambda a: jnp.asarray(a, dtype))


def _dtypes(dtypes: Sequence[Any]) -> list:
    resolved = [jnp.dtype(d) for d in dtypes]
    bad = [d.name for d in resolved if not jnp.issubdtype(d, jnp.inexact)]
    if not resolved or bad:
        raise ValueError(f"`dtypes` must be float or complex dtypes, got {list(dtypes)}")
    return resolved


def pytrees(
    *,
    dtypes: Sequence[Any] = (jnp.float32,),
    max_leaves: int = 5,
    max_dims: int = 2,
    max_side: int = 3,
    bound: float = 10.0,
    allow_none: bool = True,
    shapes: Sequence[tuple[int, ...]] | None = None,
) -> SearchStrategy[Params]:
    """A hypothesis strategy for small random param trees.

    Nested dicts, lists, tuples and :class:`Pair` NamedTuples whose leaves are jax
    arrays of one of ``dtypes`` (0-d, empty and up to ``max_dims`` x ``max_side``) with
    entries in ``[-bound, bound]``, or ``None`` (an empty subtree) if ``allow_none``.
    ``shapes`` restricts leaf shapes to a fixed list: fewer distinct shapes mean fewer
    compilations of eager ops, which keeps a long property run fast.
    A tree may be a bare array, or hold no array at all (``[]``, ``{'w': None}``), but
    is never a bare ``None``.
    """
    st, hnp = _hypothesis()
    resolved = _dtypes(dtypes)
    if shapes is None:
        shape = hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side)
    else:
        shape = st.sampled_from([tuple(s) for s in shapes])
    leaf = st.sampled_from(resolved).flatmap(lambda d: _arrays(st, hnp, d, shape, bound))
    base = st.one_of(st.none(), leaf) if allow_none else leaf

    def nodes(children):
        small_lists = st.lists(children, max_size=3)
        return st.one_of(
            st.dictionaries(st.sampled_from(_KEYS), children, max_size=3),
            small_lists,
            small_lists.map(tuple),
            st.builds(Pair, children, children),
        )

    # A bare None is a valid (empty) tree, but the checks read `params=None` as "use
    # default_params()", so the root is never None.
    return st.recursive(base, nodes, max_leaves=max_leaves).filter(lambda t: t is not None)


def gradients(params: Params, *, bound: float = 10.0) -> SearchStrategy[Updates]:
    """A hypothesis strategy for gradient trees matching ``params`` (structure, shapes,
    dtypes; ``None`` where ``params`` has ``None``) with entries in ``[-bound, bound]``."""
    st, hnp = _hypothesis()
    leaves, treedef = jax.tree.flatten(params)
    per_leaf = [_arrays(st, hnp, jnp.asarray(leaf).dtype, np.shape(leaf), bound) for leaf in leaves]
    return st.tuples(*per_leaf).map(lambda drawn: jax.tree.unflatten(treedef, list(drawn)))


def params_and_grads(
    *, steps: int = 3, bound: float = 10.0, **pytree_options: Any
) -> SearchStrategy[tuple[Params, list[Updates]]]:
    """A hypothesis strategy for ``(params, [grads_1, ..., grads_steps])``.

    ``pytree_options`` go to :func:`pytrees` (``dtypes``, ``max_leaves``, ...).
    """
    st, _ = _hypothesis()
    return pytrees(bound=bound, **pytree_options).flatmap(
        lambda params: st.tuples(
            st.just(params),
            st.lists(gradients(params, bound=bound), min_size=steps, max_size=steps),
        )
    )
