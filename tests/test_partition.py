"""Parameter groups and freezing: labels from trees, functions and path patterns, on every
container type users have (dicts, FrozenDict-like Mappings, NamedTuples, dataclasses)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim_fn
from optim_fn.partition import leaf_paths

# ----------------------------------------------------------------------------------------
# Container types.


class FrozenMap(Mapping):
    """An immutable Mapping registered with key paths, like flax's FrozenDict."""

    def __init__(self, items):
        self._items = dict(items)

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


jax.tree_util.register_pytree_with_keys(
    FrozenMap,
    lambda m: ([(jax.tree_util.DictKey(k), m[k]) for k in sorted(m)], tuple(sorted(m))),
    lambda keys, values: FrozenMap(zip(keys, values, strict=True)),
)


class KeylessMap(FrozenMap):
    """A Mapping registered without key paths, children in reverse key order."""


jax.tree_util.register_pytree_node(
    KeylessMap,
    lambda m: ([m[k] for k in sorted(m, reverse=True)], tuple(sorted(m, reverse=True))),
    lambda keys, values: KeylessMap(zip(keys, values, strict=True)),
)


class Dense(NamedTuple):
    kernel: Any
    bias: Any


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Block:
    dense: Dense
    norm: dict


def leaf(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def model_dict():
    return {
        "encoder": {
            "dense": {"kernel": leaf(0, (4, 3)), "bias": leaf(1, (3,))},
            "norm": {"scale": leaf(2, (3,))},
        },
        "head": {"kernel": leaf(3, (3, 2)), "bias": leaf(4, (2,))},
    }


def model_mixed():
    """The same leaves as model_dict, in a FrozenMap of a dataclass of a NamedTuple, etc."""
    d = model_dict()
    return FrozenMap(
        {
            "encoder": Block(
                Dense(d["encoder"]["dense"]["kernel"], d["encoder"]["dense"]["bias"]),
                {"scale": d["encoder"]["norm"]["scale"]},
            ),
            "head": KeylessMap(d["head"]),
        }
    )


def grads_for(params, seed):
    leaves, treedef = jax.tree.flatten(params)
    return jax.tree.unflatten(
        treedef, [leaf(seed * 100 + i, x.shape) for i, x in enumerate(leaves)]
    )


DECAYED = {
    ("encoder", "dense", "kernel"): True,
    ("encoder", "dense", "bias"): False,
    ("encoder", "norm", "scale"): False,
    ("head", "kernel"): True,
    ("head", "bias"): False,
}


def test_leaf_paths_name_every_container_type():
    mixed, plain = leaf_paths(model_mixed()), leaf_paths(model_dict())
    assert sorted(mixed) == sorted(plain) == sorted(DECAYED)
    # In jax's leaf order: NamedTuple fields in declaration order, the keyless Mapping
    # in its own (reversed) flattening order.
    assert mixed[:2] == [("encoder", "dense", "kernel"), ("encoder", "dense", "bias")]
    assert mixed[3:] == [("head", "kernel"), ("head", "bias")]


@pytest.mark.parametrize("make_params", [model_dict, model_mixed], ids=["dict", "mixed"])
def test_weight_decay_lands_exactly_on_the_labelled_leaves(make_params):
    params = make_params()
    lr, wd = 0.1, 0.5
    opt = optim_fn.adamw(lr, weight_decay=wd, mask=optim_fn.path_mask(exclude=("*bias", "*scale")))
    state = opt.init(params)
    # Zero gradients: Adam's part of the update is exactly 0, so each update is exactly
    # -lr * wd * p on decayed leaves and 0 elsewhere.
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, state = jax.jit(opt.update)(zero, state, params)
    paths = leaf_paths(params)
    for path, p, u in zip(paths, jax.tree.leaves(params), jax.tree.leaves(updates), strict=True):
        expected = -np.float32(lr) * (np.float32(wd) * np.asarray(p)) if DECAYED[path] else 0
        np.testing.assert_array_equal(np.asarray(u), expected, err_msg=str(path))


def test_masked_weight_decay_matches_optax_with_an_explicit_mask():
    params = model_dict()
    mask = {
        "encoder": {"dense": {"kernel": True, "bias": False}, "norm": {"scale": False}},
        "head": {"kernel": True, "bias": False},
    }
    no_decay = optim_fn.path_mask(exclude=("*bias", "*scale"))
    ours = optim_fn.adamw(1e-2, weight_decay=0.3, mask=no_decay)
    reference = optax.adamw(1e-2, weight_decay=0.3, mask=mask)
    ours_state, ref_state = ours.init(params), reference.init(params)
    ours_step, ref_step = jax.jit(ours.update), jax.jit(reference.update)
    ours_params = ref_params = params
    for i in range(10):
        grads = grads_for(params, i)
        u, ours_state = ours_step(grads, ours_state, ours_params)
        ours_params = optim_fn.apply_updates(ours_params, u)
        u, ref_state = ref_step(grads, ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, u)
    for a, b in zip(jax.tree.leaves(ours_params), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def bits(x):
    x = np.asarray(x)
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint16)


@pytest.mark.parametrize("how", ["selective_transform", "freeze_last_in_chain"])
@pytest.mark.parametrize("make_params", [model_dict, model_mixed], ids=["dict", "mixed"])
def test_frozen_leaves_are_bitwise_unchanged_after_10_steps(how, make_params):
    params = make_params()
    # Values where "p + 0.0" would change bits: -0.0 becomes +0.0.
    special = jnp.array([-0.0, 0.0, 1e30, -1e-30, float("nan"), 1.0, -2.5, 3.0], jnp.float32)
    params = jax.tree.map(lambda p: special[: p.size].reshape(p.shape) if p.size <= 8 else p,
                          params)
    frozen = optim_fn.path_mask("encoder/*")
    inner = optim_fn.chain(optim_fn.clip_by_global_norm(1e6), optim_fn.adam(0.1))
    if how == "selective_transform":
        opt = optim_fn.selective_transform(inner, freeze_mask=frozen)
    else:
        opt = optim_fn.chain(inner, optim_fn.freeze(frozen))
    state = opt.init(params)
    step = jax.jit(opt.update)
    current = params
    for i in range(10):
        updates, state = step(grads_for(params, i), state, current)
        current = optim_fn.apply_updates(current, updates)
    paths = leaf_paths(params)
    for path, before, after in zip(
        paths, jax.tree.leaves(params), jax.tree.leaves(current), strict=True
    ):
        if path[0] == "encoder":
            np.testing.assert_array_equal(bits(after), bits(before), err_msg=str(path))
        else:
            assert not np.array_equal(bits(after), bits(before)), path
    assert type(current) is type(params)


def test_selective_transform_keeps_no_state_for_frozen_leaves():
    params = model_dict()
    opt = optim_fn.selective_transform(optim_fn.adam(0.1), freeze_mask={"encoder": True,
                                                                         "head": False})
    state = opt.init(params)
    adam_state = state.inner_states["train"][0]
    assert len(jax.tree.leaves(adam_state.mu)) == 2  # head kernel and bias only
    assert adam_state.mu["encoder"]["dense"]["kernel"] is None


def test_partition_groups_equal_separate_runs_bitwise():
    params = model_dict()
    labels = optim_fn.path_labels({"encoder/*": "enc"}, default="head")
    opt = optim_fn.partition(
        {"enc": optim_fn.adam(1e-2), "head": optim_fn.sgd(0.1, momentum=0.9)}, labels
    )
    enc_alone, head_alone = optim_fn.adam(1e-2), optim_fn.sgd(0.1, momentum=0.9)
    state = opt.init(params)
    enc_state, head_state = enc_alone.init(params["encoder"]), head_alone.init(params["head"])
    step = jax.jit(opt.update)
    for i in range(5):
        grads = grads_for(params, i)
        updates, state = step(grads, state, params)
        enc_updates, enc_state = enc_alone.update(grads["encoder"], enc_state)
        head_updates, head_state = head_alone.update(grads["head"], head_state)
        for a, b in zip(jax.tree.leaves(updates["encoder"]), jax.tree.leaves(enc_updates),
                        strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(updates["head"]), jax.tree.leaves(head_updates),
                        strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    hyper = optim_fn.get_hyperparams(state)
    assert float(hyper["enc.learning_rate"]) == pytest.approx(1e-2)
    assert float(hyper["momentum"]) == pytest.approx(0.9)


def test_partition_matches_optax_partition():
    params = model_dict()

    def label_fn(tree):
        return {"encoder": "slow", "head": {"kernel": "fast", "bias": "slow"}}

    transforms = {"slow": (optim_fn.adam(1e-3), optax.adam(1e-3)),
                  "fast": (optim_fn.rmsprop(1e-2), optax.rmsprop(1e-2))}
    ours = optim_fn.partition({k: v[0] for k, v in transforms.items()}, label_fn)
    reference = optax.partition({k: v[1] for k, v in transforms.items()}, label_fn)
    ours_state, ref_state = ours.init(params), reference.init(params)
    for i in range(10):
        grads = grads_for(params, i)
        ours_updates, ours_state = ours.update(grads, ours_state, params)
        ref_updates, ref_state = reference.update(grads, ref_state, params)
        for a, b in zip(jax.tree.leaves(ours_updates), jax.tree.leaves(ref_updates),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("make_params", [model_dict, model_mixed], ids=["dict", "mixed"])
def test_plain_dict_labels_and_masks_fit_any_container(make_params):
    params = make_params()
    labels = {"encoder": {"dense": "a", "norm": "b"}, "head": {"kernel": "a", "bias": "b"}}
    opt = optim_fn.partition({"a": optim_fn.sgd(1.0), "b": optim_fn.set_to_zero()}, labels)
    ones = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(ones, opt.init(params), params)
    assert type(updates) is type(params)
    expected = {("encoder", "dense", "kernel"): -1.0, ("encoder", "dense", "bias"): -1.0,
                ("encoder", "norm", "scale"): 0.0, ("head", "kernel"): -1.0,
                ("head", "bias"): 0.0}
    for path, u in zip(leaf_paths(params), jax.tree.leaves(updates),
                       strict=True):
        np.testing.assert_array_equal(np.asarray(u), expected[path])

    mask = {"encoder": False, "head": {"kernel": True, "bias": False}}
    opt = optim_fn.masked(optim_fn.sgd(1.0), mask)
    updates, _ = opt.update(ones, opt.init(params))
    for path, u in zip(leaf_paths(params), jax.tree.leaves(updates),
                       strict=True):
        np.testing.assert_array_equal(np.asarray(u), -1.0 if path == ("head", "kernel") else 1.0)


def test_regex_patterns_and_first_match_wins():
    params = model_dict()
    labels = optim_fn.path_labels(
        [(re.compile(r"kernel$"), "k"), ("encoder/*", "enc"), ("*", "rest")]
    )(params)
    assert labels["encoder"]["dense"]["kernel"] == "k"
    assert labels["encoder"]["dense"]["bias"] == "enc"
    assert labels["head"]["bias"] == "rest"


@pytest.mark.parametrize(
    "make, pattern",
    [
        (
            lambda: optim_fn.partition({"a": optim_fn.sgd(1.0)}, {"encoder": "a", "head": "b"}),
            r"labels \['b'\] have no transform",
        ),
        (
            lambda: optim_fn.partition({"a": optim_fn.sgd(1.0)},
                                       optim_fn.path_labels({"encoder/*": "a"})),
            r"no pattern matches the parameters \['head/kernel', 'head/bias'\]",
        ),
        (
            lambda: optim_fn.masked(optim_fn.sgd(1.0), {"encoder": True, "haed": False}),
            r"haed",
        ),
        (lambda: optim_fn.partition({"a": optim_fn.sgd}, "a"), r"not a gradient transformation"),
        (lambda: optim_fn.path_mask(3), r"glob string"),
    ],
)
def test_bad_labels_raise_with_the_paths(make, pattern):
    params = model_mixed()
    with pytest.raises((ValueError, TypeError), match=pattern):
        make().init(params)


def test_mask_compatible_extra_args_splits_trees_shaped_like_the_updates():
    seen = {}

    def recorder(name):
        def init(params):
            return optim_fn.EmptyState()

        def update(updates, state, params=None, *, weights=None, **extra):
            seen[name] = weights
            return updates, state

        return optim_fn.GradientTransformationExtraArgs(init, update)

    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    opt = optim_fn.partition({"x": recorder("x"), "y": recorder("y")}, {"a": "x", "b": "y"},
                             mask_compatible_extra_args=True)
    opt.update(params, opt.init(params), weights={"a": jnp.zeros(2), "b": jnp.ones(3)})
    assert seen["x"]["b"] is None and seen["x"]["a"].shape == (2,)
    assert seen["y"]["a"] is None and seen["y"]["b"].shape == (3,)


def test_partition_on_a_flat_tree_gives_the_tree_mode_numbers():
    from optim_fn import flat

    params = model_dict()
    label_fn = optim_fn.path_labels({"encoder/*": "enc"}, default="head")
    transforms = {"enc": optim_fn.adam(1e-2), "head": optim_fn.sgd(0.1, momentum=0.9)}
    tree_opt = optim_fn.partition(transforms, label_fn)
    flat_opt = optim_fn.partition(transforms, label_fn)
    flat_params = flat.ravel(params, groups=label_fn(params))
    tree_state, flat_state = tree_opt.init(params), flat_opt.init(flat_params)
    for i in range(3):
        grads = grads_for(params, i)
        tree_updates, tree_state = tree_opt.update(grads, tree_state, params)
        flat_grads = flat.ravel(grads, layout=flat_params.layout)
        flat_updates, flat_state = flat_opt.update(flat_grads, flat_state, flat_params)
        for a, b in zip(jax.tree.leaves(flat_updates.unravel()), jax.tree.leaves(tree_updates),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="holds leaves of several groups"):
        flat_opt.init(flat.ravel(params))
