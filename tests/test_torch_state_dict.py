"""State-dict interchange: torch -> optim_fn (and back), then 10 more steps on each side.

Params are matched by name (``names=``), never by position; shapes and dtypes checked."""

from __future__ import annotations

import contextlib
import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.torch as oft

torch = pytest.importorskip("torch")

STEPS = 10
CONFIGS = [
    ("Adam", {"amsgrad": True, "weight_decay": 0.1}),
    ("AdamW", {}),
    ("SGD", {"momentum": 0.9, "dampening": 0.2}),
    ("RMSprop", {"centered": True, "momentum": 0.5}),
    ("Adagrad", {"lr_decay": 0.1}),
    ("Adadelta", {}),
    ("Adamax", {}),
    ("NAdam", {}),
    ("RAdam", {}),
    ("ASGD", {"t0": 5, "lambd": 0.1}),
    ("Rprop", {}),
]


def _data():
    rng = np.random.default_rng(0)
    params = {"b": rng.standard_normal(3), "w": rng.standard_normal((2, 3))}
    noise = {k: rng.standard_normal((2 * STEPS, *v.shape)) for k, v in params.items()}
    return params, noise


@contextlib.contextmanager
def _torch_precision(name):
    """ASGD keeps its ``eta``/``mu`` in the params' precision (float64 here, under x64);
    torch keeps them in its default dtype, so run torch with a float64 default for it."""
    if name != "ASGD":
        yield
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _torch_steps(opt, tensors, noise, steps):
    for step in steps:
        for k, p in tensors.items():
            p.grad = 0.5 * p.detach() + torch.tensor(noise[k][step])
        opt.step()


def _ours_steps(transform, state, x, noise, steps):
    update = jax.jit(transform.update)
    for step in steps:
        grads = jax.tree.map(lambda p, n, k=step: 0.5 * p + n[k], x, noise)
        updates, state = update(grads, state, x)
        x = optim_fn.apply_updates(x, updates)
    return state, x


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_torch_to_optim_fn_then_continue(name, kwargs):
    with _torch_precision(name):
        _torch_to_optim_fn_then_continue(name, kwargs)


def _torch_to_optim_fn_then_continue(name, kwargs):
    params, noise = _data()
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = getattr(torch.optim, name)(list(tensors.values()), lr=0.05, **kwargs)
    _torch_steps(opt, tensors, noise, range(STEPS))
    saved = copy.deepcopy(opt.state_dict())  # torch returns references to live state
    middle = {k: p.detach().numpy().copy() for k, p in tensors.items()}
    _torch_steps(opt, tensors, noise, range(STEPS, 2 * STEPS))
    with jax.enable_x64(True):
        # Built with a different lr: the saved group's lr must win.
        transform = getattr(oft, name)(lr=0.7, **kwargs)
        x = jax.tree.map(jnp.asarray, middle)
        state = oft.from_torch_state_dict(transform, x, saved, names=list(tensors))
        _, x = _ours_steps(transform, state, x, noise, range(STEPS, 2 * STEPS))
        for k, p in tensors.items():
            np.testing.assert_allclose(np.asarray(x[k]), p.detach().numpy(), rtol=1e-12,
                                       atol=1e-13)


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[n for n, _ in CONFIGS])
def test_optim_fn_to_torch_then_continue(name, kwargs):
    with _torch_precision(name):
        _optim_fn_to_torch_then_continue(name, kwargs)


def _optim_fn_to_torch_then_continue(name, kwargs):
    params, noise = _data()
    with jax.enable_x64(True):
        transform = getattr(oft, name)(lr=0.05, **kwargs)
        x = jax.tree.map(jnp.asarray, params)
        state, x = _ours_steps(transform, transform.init(x), x, noise, range(STEPS))
        middle = jax.tree.map(np.asarray, x)
        _, final = _ours_steps(transform, state, x, noise, range(STEPS, 2 * STEPS))
        tensors = {k: torch.tensor(v, requires_grad=True) for k, v in middle.items()}
        opt = getattr(torch.optim, name)(list(tensors.values()), lr=0.9, **kwargs)
        opt.load_state_dict(
            oft.to_torch_state_dict(state, x, opt.state_dict(), names=list(tensors))
        )
        _torch_steps(opt, tensors, noise, range(STEPS, 2 * STEPS))
        for k, p in tensors.items():
            np.testing.assert_allclose(p.detach().numpy(), np.asarray(final[k]), rtol=1e-12,
                                       atol=1e-13)


def test_several_groups_are_refused_with_the_fix():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=0.01)
    with pytest.raises(ValueError, match="param_groups"):
        oft.from_torch_state_dict(oft.SGD(), {"a": jnp.zeros(2)}, opt.state_dict())


# ------------------------------------------------------------- matching by name, checks


class _Linear(torch.nn.Module):
    """torch order weight (2, 3), bias (2,); jax.tree.leaves order of the dict: bias, weight."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 2, dtype=torch.float64)


class _TwoSameShape(torch.nn.Module):
    """Two (3, 3) layers registered "second" first: torch order second.weight,
    first.weight; jax.tree.leaves order of the dict: first/weight, second/weight."""

    def __init__(self):
        super().__init__()
        self.second = torch.nn.Linear(3, 3, bias=False, dtype=torch.float64)
        self.first = torch.nn.Linear(3, 3, bias=False, dtype=torch.float64)


def _as_tree(model):
    """{"layer": {"weight": ..., "bias": ...}} from torch's "layer.weight", ... names."""
    tree: dict = {}
    for name, p in model.named_parameters():
        *outer, last = name.split(".")
        node = tree
        for key in outer:
            node = node.setdefault(key, {})
        node[last] = p.detach().numpy().copy()
    return tree


def _named_noise(model, steps):
    rng = np.random.default_rng(1)
    return {n: rng.standard_normal((steps, *p.shape)) for n, p in model.named_parameters()}


def _torch_named_steps(opt, model, noise, steps):
    for step in steps:
        for n, p in model.named_parameters():
            p.grad = 0.5 * p.detach() + torch.tensor(noise[n][step])
        opt.step()


def _ours_named_steps(transform, state, x, noise, steps):
    update = jax.jit(transform.update)
    for step in steps:
        grads = jax.tree_util.tree_map_with_path(
            lambda path, p, k=step: 0.5 * p
            + noise[".".join(key.key for key in path)][k],
            x,
        )
        updates, state = update(grads, state, x)
        x = optim_fn.apply_updates(x, updates)
    return state, x


def _leaf(tree, name):
    for key in name.split("."):
        tree = tree[key]
    return tree


MODELS = {"weight_and_bias": _Linear, "two_same_shape_layers": _TwoSameShape}


@pytest.mark.parametrize("model_name", list(MODELS))
def test_torch_to_optim_fn_matches_params_by_name(model_name):
    torch.manual_seed(0)
    model = MODELS[model_name]()
    noise = _named_noise(model, 2 * STEPS)
    opt = torch.optim.Adam(model.parameters(), lr=0.05, amsgrad=True)
    _torch_named_steps(opt, model, noise, range(STEPS))
    saved = copy.deepcopy(opt.state_dict())
    middle = _as_tree(model)
    _torch_named_steps(opt, model, noise, range(STEPS, 2 * STEPS))
    with jax.enable_x64(True):
        transform = oft.Adam(lr=0.05, amsgrad=True)
        x = jax.tree.map(jnp.asarray, middle)
        # The torch order is not the jax.tree.leaves order: by position, the moments
        # would land on the wrong leaves (or, for the same-shape layers, be swapped).
        torch_order = [n for n, _ in model.named_parameters()]
        leaf_order = ["/".join(k.key for k in path)
                      for path, _ in jax.tree_util.tree_flatten_with_path(x)[0]]
        assert [n.replace(".", "/") for n in torch_order] != leaf_order
        state = oft.from_torch_state_dict(transform, x, saved, names=model.named_parameters())
        for i, name in enumerate(torch_order):
            np.testing.assert_array_equal(np.asarray(_leaf(state.exp_avg, name)),
                                          saved["state"][i]["exp_avg"].numpy())
        _, x = _ours_named_steps(transform, state, x, noise, range(STEPS, 2 * STEPS))
        for name, p in model.named_parameters():
            np.testing.assert_allclose(np.asarray(_leaf(x, name)), p.detach().numpy(),
                                       rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_optim_fn_to_torch_matches_params_by_name(model_name):
    torch.manual_seed(0)
    model = MODELS[model_name]()
    noise = _named_noise(model, 2 * STEPS)
    with jax.enable_x64(True):
        transform = oft.Adam(lr=0.05, amsgrad=True)
        x = jax.tree.map(jnp.asarray, _as_tree(model))
        state, x = _ours_named_steps(transform, transform.init(x), x, noise, range(STEPS))
        _, final = _ours_named_steps(transform, state, x, noise, range(STEPS, 2 * STEPS))
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(torch.tensor(np.asarray(_leaf(x, name))))
        opt = torch.optim.Adam(model.parameters(), lr=0.9, amsgrad=True)
        names = [n for n, _ in model.named_parameters()]
        opt.load_state_dict(oft.to_torch_state_dict(state, x, opt.state_dict(), names=names))
        _torch_named_steps(opt, model, noise, range(STEPS, 2 * STEPS))
        for name, p in model.named_parameters():
            np.testing.assert_allclose(p.detach().numpy(), np.asarray(_leaf(final, name)),
                                       rtol=1e-12, atol=1e-13)


def _saved_linear():
    model = torch.nn.Linear(3, 2, dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.weight.grad, model.bias.grad = torch.ones(2, 3, dtype=torch.float64), torch.ones(
        2, dtype=torch.float64)
    opt.step()
    params = {"weight": model.weight.detach().numpy().copy(),
              "bias": model.bias.detach().numpy().copy()}
    return model, opt, params


def test_several_leaves_without_names_are_refused_with_the_new_call():
    _, opt, params = _saved_linear()
    with jax.enable_x64(True):
        x = jax.tree.map(jnp.asarray, params)
        with pytest.raises(TypeError, match=r"names=\[n for n, _ in model.named_parameters"):
            oft.from_torch_state_dict(oft.Adam(lr=0.05), x, opt.state_dict())
        state = oft.Adam(lr=0.05).init(x)
        with pytest.raises(TypeError, match="never by\\s+position"):
            oft.to_torch_state_dict(state, x, opt.state_dict())


def test_a_single_leaf_needs_no_names():
    p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.05)
    p.grad = torch.arange(4.0, dtype=torch.float64)
    opt.step()
    with jax.enable_x64(True):
        state = oft.from_torch_state_dict(oft.Adam(), {"w": jnp.zeros(4)}, opt.state_dict())
        np.testing.assert_array_equal(np.asarray(state.exp_avg["w"]),
                                      opt.state[p]["exp_avg"].numpy())


@pytest.mark.parametrize(
    "names,error,match",
    [
        (["bias", "weight"], ValueError, r"'bias'.*exp_avg.*\(2, 3\).*expected \(2,\)"),
        (["weight", "bias", "extra"], ValueError, "3 entries but the torch param group has 2"),
        (["weight", "b"], ValueError, r"'b' \(index 1\) matches no leaf.*\['bias', 'weight'\]"),
        (["weight", "weight"], ValueError, "both name the leaf 'weight'"),
        ({0: "weight", 7: "bias"}, ValueError, r"indices \[7\]"),
        ("weight", TypeError, "list of names"),
    ],
    ids=["swapped", "too_many", "unknown", "duplicate", "bad_index", "a_string"],
)
def test_bad_names_raise_naming_the_parameter(names, error, match):
    _, opt, params = _saved_linear()
    with jax.enable_x64(True):
        x = jax.tree.map(jnp.asarray, params)
        with pytest.raises(error, match=match):
            oft.from_torch_state_dict(oft.Adam(), x, opt.state_dict(), names=names)


def test_names_as_a_dict_of_torch_indices_and_as_leaf_paths():
    model, opt, params = _saved_linear()
    with jax.enable_x64(True):
        x = jax.tree.map(jnp.asarray, params)
        by_list = oft.from_torch_state_dict(oft.Adam(), x, opt.state_dict(),
                                            names=["weight", "bias"])
        by_dict = oft.from_torch_state_dict(oft.Adam(), x, opt.state_dict(),
                                            names={1: "bias", 0: "weight"})
        for a, b in zip(jax.tree.leaves(by_list), jax.tree.leaves(by_dict), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(by_list.exp_avg["weight"]),
                                      opt.state[model.weight]["exp_avg"].numpy())


def test_a_leaf_the_torch_optimizer_does_not_have_is_refused():
    _, opt, params = _saved_linear()
    with jax.enable_x64(True):
        x = jax.tree.map(jnp.asarray, {**params, "frozen": np.zeros(2)})
        with pytest.raises(ValueError, match=r"no torch parameter in `names`: \['frozen'\]"):
            oft.from_torch_state_dict(oft.Adam(), x, opt.state_dict(),
                                      names=["weight", "bias"])


def test_param_shapes_and_dtypes_are_checked():
    model, opt, params = _saved_linear()
    with jax.enable_x64(True):
        transposed = {"weight": jnp.asarray(params["weight"].T), "bias": params["bias"]}
        with pytest.raises(ValueError, match=r"'weight'.*the param has shape \(2, 3\) in "
                                             r"torch, expected \(3, 2\)"):
            oft.from_torch_state_dict(oft.Adam(), transposed, opt.state_dict(),
                                      names=model.named_parameters())
        single = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
        with pytest.raises(ValueError, match=r"'weight'.*float64 in torch, expected float32"):
            oft.from_torch_state_dict(oft.Adam(), single, opt.state_dict(),
                                      names=["weight", "bias"])


def test_to_torch_checks_shapes_against_the_template_state():
    _, opt, params = _saved_linear()
    with jax.enable_x64(True):
        x = jax.tree.map(jnp.asarray, params)
        state = oft.Adam().init(x)
        with pytest.raises(ValueError, match=r"'bias'.*\(2, 3\) in torch, expected \(2,\)"):
            oft.to_torch_state_dict(state, x, opt.state_dict(), names=["bias", "weight"])
