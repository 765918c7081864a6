"""Path patterns under flax nnx: ``init`` and ``update`` see the same paths.

``nnx.Optimizer`` calls ``init`` on a State of ``nnx.Param`` boxes (``kernel/value``)
and ``update`` on a State of bare arrays (``kernel``). Masks, partitions, freezing and
decay masks written as path patterns must label both the same way, and give the same
numbers as the explicit boolean mask / label tree on a plain dict of the same params.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
from optim_fn.tree import leaf_paths, path_string

pytest.importorskip("flax")
from flax import nnx  # noqa: E402

X = jnp.asarray(np.random.default_rng(0).standard_normal((8, 3)), jnp.float32)
Y = jnp.asarray(np.random.default_rng(1).standard_normal((8, 2)), jnp.float32)
STEPS = 4


class Net(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(3, 4, rngs=rngs)
        self.norm = nnx.LayerNorm(4, rngs=rngs)
        self.l2 = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(jnp.tanh(self.norm(self.l1(x))))


def by_path(fn):
    """An explicit tree for the plain-dict params: ``fn(path_string) -> label``."""

    def make(params):
        return jax.tree.unflatten(
            jax.tree.structure(params), [fn(path_string(p)) for p in leaf_paths(params)]
        )

    return make


NO_DECAY = by_path(lambda p: not (p.endswith("bias") or p.endswith("scale")))
KERNELS = by_path(lambda p: p.endswith("kernel"))
GROUPS = by_path(lambda p: "a" if p.endswith("kernel") else "b")
BIASES = by_path(lambda p: p.endswith("bias"))

# name: (optimizer with path patterns, optimizer with an explicit tree for the dict)
CASES = {
    "adamw_decay_mask": (
        lambda: optim_fn.adamw(1e-2, weight_decay=0.5,
                               mask=optim_fn.path_mask(exclude=("*bias", "*scale"))),
        lambda p: optim_fn.adamw(1e-2, weight_decay=0.5, mask=NO_DECAY(p)),
    ),
    "masked": (
        lambda: optim_fn.masked(optim_fn.sgd(0.1, momentum=0.9), optim_fn.path_mask("*kernel")),
        lambda p: optim_fn.masked(optim_fn.sgd(0.1, momentum=0.9), KERNELS(p)),
    ),
    "partition": (
        lambda: optim_fn.partition(
            {"a": optim_fn.adam(1e-2), "b": optim_fn.sgd(0.1, momentum=0.9)},
            optim_fn.path_labels({"*kernel": "a"}, default="b"),
        ),
        lambda p: optim_fn.partition(
            {"a": optim_fn.adam(1e-2), "b": optim_fn.sgd(0.1, momentum=0.9)}, GROUPS(p)
        ),
    ),
    "selective_transform": (
        lambda: optim_fn.selective_transform(optim_fn.adam(1e-2),
                                             freeze_mask=optim_fn.path_mask("*bias")),
        lambda p: optim_fn.selective_transform(optim_fn.adam(1e-2), freeze_mask=BIASES(p)),
    ),
    "freeze_in_chain": (
        lambda: optim_fn.chain(optim_fn.adam(1e-2), optim_fn.freeze(optim_fn.path_mask("*bias"))),
        lambda p: optim_fn.chain(optim_fn.adam(1e-2), optim_fn.freeze(BIASES(p))),
    ),
}


def pure(state):
    to_pure_dict = getattr(nnx, "to_pure_dict", None)
    return to_pure_dict(state) if to_pure_dict else state.to_pure_dict()


def test_leaf_paths_ignore_the_nnx_variable_box():
    model = Net(nnx.Rngs(0))
    boxed = nnx.state(model, nnx.Param)
    bare = jax.tree.map(jnp.asarray, pure(boxed))
    expected = ["l1/bias", "l1/kernel", "l2/bias", "l2/kernel", "norm/bias", "norm/scale"]
    assert sorted(path_string(p) for p in leaf_paths(boxed)) == expected
    assert sorted(path_string(p) for p in leaf_paths(bare)) == expected
    # The Variables themselves (what nnx.Optimizer's init passes) name no "value".
    variables = nnx.split(model, nnx.Param, ...)[1]
    assert all("value" not in p for p in leaf_paths(variables))


@pytest.mark.parametrize("name", list(CASES))
def test_path_patterns_under_nnx_optimizer_match_an_explicit_mask(name):
    with_patterns, with_explicit = CASES[name]
    model = Net(nnx.Rngs(0))
    initial = jax.tree.map(jnp.array, pure(nnx.state(model, nnx.Param)))
    optimizer = nnx.Optimizer(model, with_patterns(), wrt=nnx.Param)

    explicit = with_explicit(initial)
    params = initial
    state = explicit.init(params)

    for _ in range(STEPS):
        grads = nnx.grad(lambda m: jnp.mean((m(X) - Y) ** 2))(model)
        optimizer.update(model, grads)
        updates, state = explicit.update(pure(grads), state, params)
        params = optim_fn.apply_updates(params, updates)
        ours = pure(nnx.state(model, nnx.Param))
        for path, a, b in zip(leaf_paths(params), jax.tree.leaves(ours),
                              jax.tree.leaves(params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7,
                                       err_msg=path_string(path))
    # Something did move, and frozen biases did not.
    final = pure(nnx.state(model, nnx.Param))
    assert not np.allclose(final["l2"]["kernel"], initial["l2"]["kernel"])
    if name in ("selective_transform", "freeze_in_chain"):
        np.testing.assert_array_equal(final["l1"]["bias"], initial["l1"]["bias"])


@pytest.mark.parametrize(
    "make",
    [
        lambda: optim_fn.masked(optim_fn.sgd(0.1), optim_fn.path_mask("*biases")),
        lambda: optim_fn.adamw(1e-3, mask=optim_fn.path_mask(exclude=("*biases",))),
        lambda: optim_fn.selective_transform(optim_fn.adam(1e-3),
                                             freeze_mask=optim_fn.path_mask("*biases")),
        lambda: optim_fn.partition({"a": optim_fn.sgd(0.1), "b": optim_fn.adam(1e-3)},
                                   optim_fn.path_labels({"*biases": "a"}, default="b")),
    ],
    ids=["masked", "adamw", "selective_transform", "partition"],
)
@pytest.mark.parametrize("where", ["dict", "nnx"])
def test_a_pattern_matching_no_leaf_is_an_error_naming_it_and_the_paths(make, where):
    model = Net(nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"\*biases.*match no parameter path.*l1/kernel"):
        if where == "nnx":
            nnx.Optimizer(model, make(), wrt=nnx.Param)
        else:
            make().init(pure(nnx.state(model, nnx.Param)))


def test_a_pattern_naming_leaves_of_another_group_is_not_an_error():
    # Inside partition group "a" (the kernels) the biases are None placeholders; the
    # decay mask's "*bias" still names them and is accepted.
    params = {"w": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
    opt = optim_fn.partition(
        {"a": optim_fn.adamw(1e-2, mask=optim_fn.path_mask(exclude=("*bias",))),
         "b": optim_fn.sgd(0.1)},
        optim_fn.path_labels({"*kernel": "a"}, default="b"),
    )
    state = opt.init(params)
    updates, _ = opt.update(jax.tree.map(jnp.ones_like, params), state, params)
    np.testing.assert_allclose(updates["w"]["bias"], -0.1)
