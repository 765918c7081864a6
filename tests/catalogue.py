"""The optimizer catalogue: ONE table of every optimizer optim_fn exports, for the tests.

Each :class:`Entry` row names one public optimizer (or stateful wrapper) and builds it
with a fixed, representative configuration (non-default options where that is cheap).
The golden-checkpoint tests (``tests/test_golden_checkpoints.py``) and the per-row
property, bf16, flat-mode, complex, needs-params and optax-parity checks
(``tests/test_catalogue.py``) are parametrised from :data:`CATALOGUE`; the option sweeps
of the older parity, fuzz and sharding files keep their own tables. The coverage test in
``tests/test_golden_checkpoints.py`` checks that it
covers every optimizer in ``optim_fn.__all__``, ``optim_fn.contrib.__all__`` and
``optim_fn.torch.__all__``.

Names are reached only through stable public paths (``optim_fn.X``,
``optim_fn.contrib.X``, ``optim_fn.torch.X``, ``optim_fn.flat``), never through the
modules that implement them, so the table survives moving those modules.

Row names: ``"adam"`` is ``optim_fn.adam``, ``"contrib.muon"`` is
``optim_fn.contrib.muon``, ``"torch.Adam"`` is ``optim_fn.torch.Adam``.

Flags (measured, not guessed: ``python tests/golden/derive_flags.py`` runs every row
through the probes below and prints each flag that disagrees with this table):

* ``whole_leaf``: the numbers depend on how the tree is cut into leaves: the rule reads
  whole leaves (their shape, norms or other entries: trust ratios, factored moments,
  orthogonalisation, projections) or draws its noise per leaf (noisy_sgd, dpsgd). Probe:
  the matrix and the cube each split into two blocks change the updates by > 1e-4.
* ``whole_tree``: the update of a leaf depends on the other leaves (global norms, dot
  products, the loss value). Probe: changing one entry of one leaf changes (any bit of)
  the update of another leaf. A rule with neither flag is elementwise.
* ``flat``: works in default flat mode (``optim_fn.flat.ravel(params)``, no groups):
  init and 3 jitted updates on the FlatTree run and move the params as tree mode does,
  to 1e-5 of the params' scale (whole-tree reductions round differently; that is all).
  False where the row refuses a FlatTree, or runs on one but computes other numbers.
* ``complex``: accepts complex params (complex64 init and 3 jitted updates run and give
  finite complex64 updates).
* ``needs_params``: ``update`` needs ``params`` (fails without them).

Other fields: ``optax`` / ``torch`` (the twin's dotted name, or None), ``extra_args``
(``params -> dict`` of the extra keyword arguments ``update`` needs), ``kind``
(``"optimizer"`` or ``"wrapper"``: built around an inner optimizer), and the hooks of
rows that need another problem: ``shapes`` / ``dtype`` (the params), ``wrap_params``
(e.g. ``LookaheadParams``), ``grads`` (params -> the gradients ``update`` takes: per
example, sparse, ...), ``jit`` (False: ``update`` runs eagerly, as torch's LBFGS).
For ``tests/test_catalogue.py`` (declared, not measured): ``optax_make`` (builds the optax
twin where ``make``'s arguments cannot be passed to it verbatim: an inner optimizer,
torch's keywords, optim_fn types), ``optax_differs`` (why the numbers differ from the
twin's on purpose, citing docs/differences.md or docs/torch.md: the parity check skips),
``noise`` (the updates draw random noise, whose stream depends on the dtype and the
leaves), ``rounding_noise`` (why some step's update on the standard problem is rounding
noise: runs that round differently are not compared by value).

The standard problem: :func:`initial_params` (three leaves: a 3x4 matrix, a 4-vector
and a 2x3x2 cube; matrices matter for whole-leaf rules) and the gradient of the smooth,
positive, separable :func:`loss` at the current params (:func:`loss_grads`).

How to add an optimizer: a rule (``optim_fn/rules``), an alias (``optim_fn/optimizers``
or ``optim_fn/contrib``, exported) and one row here, appended at the end: a
representative configuration (non-default options), its twins, its flags as
``python tests/golden/derive_flags.py <name>`` measures them, and the hooks its problem
needs; then ``PYTHONPATH=$PWD python tests/golden/make_golden.py <name>`` writes its
golden checkpoint. With no other change the row gets: the coverage check and the
golden-checkpoint round trip (``tests/test_golden_checkpoints.py``), and from
``tests/test_catalogue.py`` the property checks of ``optim_fn.testing``, a bfloat16 run,
flat mode (tree mode's numbers, or a refusal), complex params (the float32 numbers on the
real axis, or a TypeError naming it), the error without params (``needs_params``) and,
with an ``optax`` twin, 20 steps of parity (the twin gets ``make``'s arguments; give
``optax_make`` where it cannot take them, ``optax_differs`` for a documented
difference). A row whose gradients are not shaped like its params (a new ``grads`` hook)
also needs an entry in ``GRADIENT_VIEWS`` there: its property check says so.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import optax.transforms
from jax.experimental import sparse

import optim_fn
import optim_fn.contrib
import optim_fn.flat
import optim_fn.torch

SHAPES = {"w": (3, 4), "b": (4,), "cube": (2, 3, 2)}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One optimizer of the catalogue (see the module docstring for the fields)."""

    name: str
    make: Callable[[], Any]
    optax: str | None
    torch: str | None
    whole_leaf: bool
    whole_tree: bool
    flat: bool
    complex: bool
    needs_params: bool
    extra_args: Callable[[Any], dict] | None = None
    kind: str = "optimizer"
    shapes: dict = dataclasses.field(default_factory=lambda: dict(SHAPES))
    dtype: str = "float32"
    wrap_params: Callable[[Any], Any] | None = None
    grads: Callable[[Any], Any] | None = None
    jit: bool = True
    optax_make: Callable[[], Any] | None = None
    optax_differs: str | None = None
    noise: bool = False
    rounding_noise: str | None = None

    @property
    def elementwise(self) -> bool:
        return not (self.whole_leaf or self.whole_tree)

    def __repr__(self) -> str:  # short ids in pytest's output
        return f"Entry({self.name})"


# ----------------------------------------------------------------------------------------
# The standard problem.


def initial_params(entry: Entry) -> dict:
    """The row's start params: a fixed, deterministic tree of ``entry.shapes``."""
    params = {}
    for index, (key, shape) in enumerate(entry.shapes.items()):
        size = int(np.prod(shape))
        grid = np.arange(size, dtype=np.float64)
        values = 1.5 * np.sin(0.9 * grid + index) + 0.25 * np.cos(2.3 * grid)
        if np.issubdtype(np.dtype(entry.dtype), np.complexfloating):
            values = values + 1j * np.cos(0.7 * grid - index)
        params[key] = jnp.asarray(values.reshape(shape), entry.dtype)
    return params


def loss(params: Any) -> jax.Array:
    """sum over leaves i of (i + 1)/2 |x|^2 + cos(Re x), plus 10: positive and smooth.

    Separable, so its gradient is elementwise and an elementwise rule stays elementwise.
    A FlatTree is unravelled first (flat mode computes the same loss as tree mode).
    """
    if isinstance(params, optim_fn.flat.FlatTree):
        params = params.unravel()
    total = 0.0
    for index, leaf in enumerate(jax.tree.leaves(params)):
        square = jnp.real(leaf * jnp.conj(leaf))
        total = total + jnp.sum(0.5 * (index + 1) * square + jnp.cos(jnp.real(leaf)))
    return total + 10.0


def loss_grads(params: Any) -> Any:
    """The gradient of :func:`loss`: what ``update`` gets unless the row says otherwise."""
    return jax.grad(loss)(params)


def grads_for(entry: Entry, params: Any) -> Any:
    return (entry.grads or loss_grads)(params)


def extra_args_for(entry: Entry, params: Any) -> dict:
    return entry.extra_args(params) if entry.extra_args else {}


def optimizer_params(entry: Entry, params: Any) -> Any:
    """The params as the row's ``update`` takes them (wrapped for lookahead)."""
    return entry.wrap_params(params) if entry.wrap_params else params


def make_step(entry: Entry, optimizer: Any) -> Callable:
    """One step of the standard problem: ``(params, state) -> (params, state, updates)``.

    ``params`` as :func:`optimizer_params` gives them; the gradients (and the extra
    arguments) are computed at ``params`` inside the step. Jitted unless ``entry.jit`` is
    False.
    """

    def step(params: Any, state: Any) -> tuple:
        grads = grads_for(entry, params)
        updates, state = optimizer.update(
            grads, state, params, **extra_args_for(entry, params)
        )
        return optim_fn.apply_updates(params, updates), state, updates

    return jax.jit(step) if entry.jit else step


def is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def keys_as_data(state: Any) -> Any:
    """The state with each typed PRNG key as its raw ``key_data`` (uint32).

    flax.serialization and orbax store arrays of numbers only; a typed key (noisy_sgd's,
    dpsgd's, Sophia's) is saved as its data and rebuilt by :func:`keys_like`.
    """
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, state)


def keys_like(template: Any, restored: Any) -> Any:
    """Undoes :func:`keys_as_data`: wraps the data where ``template`` holds a typed key."""

    def back(t, r):
        if is_key(t):
            return jax.random.wrap_key_data(r, impl=jax.random.key_impl(t))
        return r

    return jax.tree.map(back, template, restored)


def without_empty(tree: Any) -> Any:
    """``tree`` with each zero-size array as None: orbax refuses to save zero-size arrays
    (GaLore keeps ``(0, 0)`` projectors for the leaves it does not project)."""
    return jax.tree.map(lambda x: None if np.size(x) == 0 else x, tree)


def empty_like(template: Any, restored: Any) -> Any:
    """Undoes :func:`without_empty`: the zero-size leaves of ``template``, rebuilt."""
    leaves, treedef = jax.tree.flatten(template)
    got = jax.tree.leaves(restored)
    it = iter(got)
    out = [np.zeros(np.shape(t), np.asarray(t).dtype) if np.size(t) == 0 else next(it)
           for t in leaves]
    assert next(it, None) is None, "more restored leaves than the template has"
    return jax.tree.unflatten(treedef, out)


# ----------------------------------------------------------------------------------------
# Extra arguments and gradient hooks.


def with_value(params: Any) -> dict:
    return {"value": loss(params)}


def with_value_grad_fn(params: Any) -> dict:
    """optax's L-BFGS protocol: the value and gradient at params, and the function."""
    return {"value": loss(params), "grad": loss_grads(params), "value_fn": loss}


def with_obj_fn(params: Any) -> dict:
    del params
    return {"obj_fn": loss}


def with_loss_fn(params: Any) -> dict:
    del params
    return {"loss_fn": loss}


def per_example_grads(params: Any) -> Any:
    """Two examples' gradients (batch on axis 0), as dpsgd takes them."""
    g = loss_grads(params)
    return jax.tree.map(lambda x: jnp.stack([x, 0.5 * x + 0.25]), g)


def sparse_row_grads(params: Any) -> Any:
    """Row-sparse BCOO gradients (rows 0, 2, 2, 5; one duplicate), as an embedding's."""
    rows = jnp.asarray([0, 2, 2, 5], jnp.int32)

    def rows_of(g):
        return sparse.BCOO((g[rows], rows[:, None]), shape=g.shape)

    return jax.tree.map(rows_of, loss_grads(params))


def lookahead_grads(params: Any) -> Any:
    return loss_grads(params.fast)


def conj_grads(params: Any) -> Any:
    """split_real_and_imaginary takes the conjugate of jax.grad (its docstring)."""
    return jax.tree.map(jnp.conj, loss_grads(params))


def is_matrix(params: Any) -> Any:
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def label_by_ndim(params: Any) -> Any:
    return jax.tree.map(lambda p: "matrix" if p.ndim >= 2 else "other", params)


def deprecated(factory: Callable, *args: Any, **kwargs: Any) -> Any:
    """Builds a deprecated (still exported) optimizer without its DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return factory(*args, **kwargs)


def every_other_step(step: jax.Array) -> jax.Array:
    return step % 2 == 0


def inverse_time(count: jax.Array) -> jax.Array:
    return 1e-2 / (1.0 + 0.05 * count)


# Muon on the matrix and on the cube (orthogonalised over axes 0 and 2), AdamW elsewhere.
MUON_DIMS = {
    "w": optim_fn.contrib.MuonDimensionNumbers(0, 1),
    "b": None,
    "cube": optim_fn.contrib.MuonDimensionNumbers(0, 2),
}

# The same, for optax's twin.
OPTAX_MUON_DIMS = {
    "w": optax.contrib.MuonDimensionNumbers(0, 1),
    "b": None,
    "cube": optax.contrib.MuonDimensionNumbers(0, 2),
}

TORCH_SHAPES_2D = {"w": (3, 4), "v": (4, 2)}  # torch's Muon takes matrices only
SPARSE_SHAPES = {"table": (6, 3)}  # an embedding table for SparseAdam


# ----------------------------------------------------------------------------------------
# The table. Flags: see the module docstring; derive_flags.py re-measures them.

CATALOGUE: tuple[Entry, ...] = (
    # --- optim_fn: the classics
    Entry("sgd", lambda: optim_fn.sgd(5e-2, momentum=0.9, nesterov=True),
          "optax.sgd", "torch.optim.SGD",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("adam", lambda: optim_fn.adam(1e-2, b1=0.8, eps_root=1e-8, nesterov=True),
          "optax.adam", "torch.optim.Adam",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("adamw", lambda: optim_fn.adamw(inverse_time, weight_decay=0.1, mask=is_matrix),
          "optax.adamw", "torch.optim.AdamW",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("adagrad", lambda: optim_fn.adagrad(5e-2, initial_accumulator_value=0.2),
          "optax.adagrad", "torch.optim.Adagrad",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("rmsprop",
          lambda: optim_fn.rmsprop(1e-2, centered=True, momentum=0.9, bias_correction=True),
          "optax.rmsprop", "torch.optim.RMSprop",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          optax_differs="centered with bias_correction: at step 1 optax's v - m^2 rounds "
          "around 0 (NaN or noise), optim_fn clamps it at 0 (docs/differences.md)",
          rounding_noise="centered with bias_correction: at step 1, v - m^2 is 0 in exact "
          "arithmetic, so the update is g / sqrt(eps) times rounding noise"),
    Entry("adadelta", lambda: optim_fn.adadelta(0.5, rho=0.8, weight_decay=0.1),
          "optax.adadelta", "torch.optim.Adadelta",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    # --- Adam's relatives
    Entry("adabelief", lambda: optim_fn.adabelief(1e-2, nesterov=True),
          "optax.adabelief", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("adamax", lambda: optim_fn.adamax(1e-2, b1=0.8),
          "optax.adamax", "torch.optim.Adamax",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("adamaxw", lambda: optim_fn.adamaxw(1e-2, weight_decay=0.1, mask=is_matrix),
          "optax.adamaxw", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("adan", lambda: optim_fn.adan(1e-2, weight_decay=0.1),
          "optax.adan", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("amsgrad", lambda: optim_fn.amsgrad(1e-2, b2=0.99),
          "optax.amsgrad", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("nadam", lambda: optim_fn.nadam(1e-2, b1=0.8),
          "optax.nadam", "torch.optim.NAdam",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("nadamw", lambda: optim_fn.nadamw(1e-2, weight_decay=0.1),
          "optax.nadamw", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("radam", lambda: optim_fn.radam(1e-2, b2=0.99, threshold=2.0),
          "optax.radam", "torch.optim.RAdam",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("yogi", lambda: optim_fn.yogi(1e-2, b1=0.8),
          "optax.yogi", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    # --- sign methods
    Entry("lion", lambda: optim_fn.lion(1e-3, weight_decay=0.1, mask=is_matrix),
          "optax.lion", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("rprop", lambda: optim_fn.rprop(1e-2, eta_minus=0.3, eta_plus=1.5),
          "optax.rprop", "torch.optim.Rprop",
          whole_leaf=False, whole_tree=False, flat=True, complex=False, needs_params=False,
          optax_differs="optax's Rprop lags a step; optim_fn is iRprop- as published "
          "(docs/differences.md; tests/test_family_reference.py checks it)"),
    Entry("sign_sgd", lambda: optim_fn.sign_sgd(1e-2),
          "optax.sign_sgd", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("signum", lambda: optim_fn.signum(1e-2, beta=0.8),
          "optax.signum", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    # --- layer-wise (trust ratios, per-leaf norms)
    Entry("fromage", lambda: optim_fn.fromage(1e-2, min_norm=1e-3),
          "optax.fromage", None,
          whole_leaf=True, whole_tree=False, flat=False, complex=True, needs_params=True),
    Entry("lamb", lambda: optim_fn.lamb(1e-2, weight_decay=0.1, mask=is_matrix),
          "optax.lamb", None,
          whole_leaf=True, whole_tree=False, flat=False, complex=True, needs_params=True),
    Entry("lars", lambda: optim_fn.lars(0.5, weight_decay=0.1, momentum=0.8, nesterov=True),
          "optax.lars", None,
          whole_leaf=True, whole_tree=False, flat=False, complex=True, needs_params=True),
    Entry("novograd", lambda: optim_fn.novograd(1e-2, b2=0.5, weight_decay=0.1),
          "optax.novograd", None,
          whole_leaf=True, whole_tree=False, flat=False, complex=True, needs_params=True),
    # --- factored second moments
    Entry("adafactor",
          lambda: optim_fn.adafactor(1e-2, min_dim_size_to_factor=2, momentum=0.9,
                                     weight_decay_rate=0.01),
          "optax.adafactor", None,
          whole_leaf=True, whole_tree=False, flat=False, complex=True, needs_params=True),
    Entry("sm3", lambda: optim_fn.sm3(1e-2, momentum=0.8),
          "optax.sm3", None,
          whole_leaf=True, whole_tree=False, flat=False, complex=True, needs_params=False),
    # --- noise, Polyak steps, optimism, L-BFGS
    # Its noise is drawn leaf by leaf, so flat mode and split leaves draw other noise.
    Entry("noisy_sgd", lambda: optim_fn.noisy_sgd(1e-2, eta=0.1, key=3),
          "optax.noisy_sgd", None,
          whole_leaf=True, whole_tree=False, flat=False, complex=True, needs_params=False,
          noise=True),
    Entry("polyak_sgd", lambda: optim_fn.polyak_sgd(10.0, 0.3, 1.0, 1e-3, "sps+"),
          "optax.polyak_sgd", None,
          whole_leaf=False, whole_tree=True, flat=True, complex=True, needs_params=False,
          extra_args=with_value),
    Entry("optimistic_gradient_descent",
          lambda: optim_fn.optimistic_gradient_descent(1e-2, alpha=0.7, beta=0.3),
          "optax.optimistic_gradient_descent", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("optimistic_adam", lambda: deprecated(optim_fn.optimistic_adam, 1e-2, optimism=0.5),
          "optax.optimistic_adam", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("optimistic_adam_v2",
          lambda: optim_fn.optimistic_adam_v2(1e-2, alpha=0.5, beta=2.0, nesterov=False),
          "optax.optimistic_adam_v2", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("lbfgs", lambda: optim_fn.lbfgs(memory_size=3),
          "optax.lbfgs", None,
          whole_leaf=False, whole_tree=True, flat=True, complex=True, needs_params=True,
          extra_args=with_value_grad_fn),
    # --- optim_fn: wrappers, each around an inner optimizer
    Entry("lookahead", lambda: optim_fn.lookahead(optim_fn.adam(1e-2), 2, 0.5),
          "optax.lookahead", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          kind="wrapper", wrap_params=lambda p: optim_fn.LookaheadParams.init_synced(p),
          grads=lookahead_grads,
          optax_make=lambda: optax.lookahead(optax.adam(1e-2), 2, 0.5)),
    Entry("MultiSteps", lambda: optim_fn.MultiSteps(optim_fn.adam(1e-2), every_k_schedule=2),
          "optax.MultiSteps", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          kind="wrapper",
          optax_make=lambda: optax.MultiSteps(optax.adam(1e-2), every_k_schedule=2)),
    Entry("apply_if_finite", lambda: optim_fn.apply_if_finite(optim_fn.adam(1e-2), 2),
          "optax.apply_if_finite", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          kind="wrapper",
          optax_make=lambda: optax.apply_if_finite(optax.adam(1e-2), 2)),
    Entry("ema_params", lambda: optim_fn.ema_params(optim_fn.adam(1e-2), decay=0.9),
          None, None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          kind="wrapper"),
    Entry("inject_hyperparams",
          lambda: optim_fn.inject_hyperparams(optim_fn.adam)(learning_rate=1e-2, b1=0.8),
          "optax.inject_hyperparams", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          kind="wrapper",
          optax_make=lambda: optax.inject_hyperparams(optax.adam)(learning_rate=1e-2, b1=0.8)),
    Entry("nonfinite_policy",
          lambda: optim_fn.nonfinite_policy(optim_fn.adam(1e-2), "skip"),
          None, None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          kind="wrapper"),
    Entry("conditionally_mask",
          lambda: optim_fn.conditionally_mask(optim_fn.sgd(1e-2, 0.9), every_other_step),
          "optax.transforms.conditionally_mask", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          kind="wrapper",
          optax_make=lambda: optax.transforms.conditionally_mask(optax.sgd(1e-2, 0.9),
                                                                     every_other_step)),
    Entry("conditionally_transform",
          lambda: optim_fn.conditionally_transform(optim_fn.adam(1e-2), every_other_step),
          "optax.transforms.conditionally_transform", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          kind="wrapper",
          optax_make=lambda: optax.transforms.conditionally_transform(optax.adam(1e-2),
                                                                          every_other_step)),
    # It reads `value` only through comparisons: a small change of one leaf moves nothing.
    Entry("reduce_on_plateau",
          lambda: optim_fn.chain(optim_fn.adam(1e-2),
                                 optim_fn.reduce_on_plateau(0.5, patience=1, rtol=0.1)),
          "optax.contrib.reduce_on_plateau", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          extra_args=with_value, kind="wrapper",
          optax_make=lambda: optax.chain(
              optax.adam(1e-2), optax.contrib.reduce_on_plateau(0.5, patience=1, rtol=0.1))),
    Entry("masked", lambda: optim_fn.masked(optim_fn.adam(1e-2), is_matrix),
          "optax.masked", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          kind="wrapper",
          optax_make=lambda: optax.masked(optax.adam(1e-2), is_matrix)),
    # multi_transform, partition, selective_transform and torch.param_groups work in flat
    # mode only with ravel(groups=...) following their labels; plain ravel is refused.
    Entry("multi_transform",
          lambda: optim_fn.multi_transform(
              {"matrix": optim_fn.adam(1e-2), "other": optim_fn.sgd(1e-2, 0.9)}, label_by_ndim),
          "optax.multi_transform", None,
          whole_leaf=False, whole_tree=False, flat=False, complex=True, needs_params=False,
          kind="wrapper",
          optax_make=lambda: optax.multi_transform(
              {"matrix": optax.adam(1e-2), "other": optax.sgd(1e-2, 0.9)}, label_by_ndim)),
    Entry("partition",
          lambda: optim_fn.partition(
              {"matrix": optim_fn.adamw(1e-2, weight_decay=0.1), "other": optim_fn.sgd(1e-2)},
              label_by_ndim),
          "optax.partition", None,
          whole_leaf=False, whole_tree=False, flat=False, complex=True, needs_params=True,
          kind="wrapper",
          optax_make=lambda: optax.partition(
              {"matrix": optax.adamw(1e-2, weight_decay=0.1), "other": optax.sgd(1e-2)},
              label_by_ndim)),
    Entry("selective_transform",
          lambda: optim_fn.selective_transform(optim_fn.adam(1e-2), freeze_mask=is_matrix),
          "optax.transforms.selective_transform", None,
          whole_leaf=False, whole_tree=False, flat=False, complex=True, needs_params=False,
          kind="wrapper",
          optax_make=lambda: optax.transforms.selective_transform(  # a static mask only
              optax.adam(1e-2), freeze_mask={"w": True, "b": False, "cube": True})),
    # --- optim_fn.contrib
    Entry("contrib.acprop",
          lambda: optim_fn.contrib.acprop(inverse_time, weight_decay=0.1, mask=is_matrix),
          "optax.contrib.acprop", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("contrib.ademamix",
          lambda: optim_fn.contrib.ademamix(1e-2, b3=0.99, alpha=2.0, weight_decay=0.1),
          "optax.contrib.ademamix", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("contrib.simplified_ademamix",
          lambda: optim_fn.contrib.simplified_ademamix(1e-3, alpha=2.0, weight_decay=0.1),
          "optax.contrib.simplified_ademamix", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("contrib.adopt", lambda: optim_fn.contrib.adopt(1e-2, b2=0.99, nesterov=True),
          "optax.contrib.adopt", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False),
    Entry("contrib.cocob", lambda: optim_fn.contrib.cocob(0.5, alpha=10.0, weight_decay=0.1),
          "optax.contrib.cocob", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=False, needs_params=True),
    Entry("contrib.dadapt_adamw",
          lambda: optim_fn.contrib.dadapt_adamw(1.0, betas=(0.8, 0.99), estim_lr0=1e-2,
                                                        weight_decay=0.1),
          "optax.contrib.dadapt_adamw", None,
          whole_leaf=False, whole_tree=True, flat=True, complex=True, needs_params=True),
    Entry("contrib.dog",
          lambda: optim_fn.contrib.dog(init_step=("distance", 0.1), weight_decay=0.1),
          "optax.contrib.dog", None,
          whole_leaf=False, whole_tree=True, flat=True, complex=True, needs_params=True),
    Entry("contrib.dowg", lambda: optim_fn.contrib.dowg(0.5, weight_decay=0.1),
          "optax.contrib.dowg", None,
          whole_leaf=False, whole_tree=True, flat=True, complex=True, needs_params=True),
    # Per-example clipping by the global norm; its noise is drawn leaf by leaf.
    Entry("contrib.dpsgd",
          lambda: optim_fn.contrib.dpsgd(0.1, 1.0, 0.5, 3, momentum=0.9, nesterov=True),
          "optax.contrib.dpsgd", None,
          whole_leaf=True, whole_tree=True, flat=False, complex=True, needs_params=False,
          grads=per_example_grads,
          noise=True),
    Entry("contrib.galore",
          lambda: optim_fn.contrib.galore(1e-2, rank=2, update_proj_gap=3, weight_decay=0.1),
          "optax.contrib.galore", None,
          whole_leaf=True, whole_tree=False, flat=False, complex=True, needs_params=True),
    Entry("contrib.madgrad", lambda: optim_fn.contrib.madgrad(1e-2, weight_decay=0.1),
          "optax.contrib.madgrad", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("contrib.mechanize",
          lambda: optim_fn.contrib.mechanize(optim_fn.adam(1.0), s_init=0.1, num_betas=2),
          "optax.contrib.mechanize", None,
          whole_leaf=False, whole_tree=True, flat=True, complex=True, needs_params=True,
          kind="wrapper",
          optax_make=lambda: optax.contrib.mechanize(optax.adam(1.0), s_init=0.1, num_betas=2)),
    Entry("contrib.momo", lambda: optim_fn.contrib.momo(0.5, beta=0.8, weight_decay=0.1),
          "optax.contrib.momo", None,
          whole_leaf=False, whole_tree=True, flat=True, complex=True, needs_params=True,
          extra_args=with_value),
    Entry("contrib.momo_adam",
          lambda: optim_fn.contrib.momo_adam(1.0, b1=0.8, lower_bound=30.0,
                                                    weight_decay=0.1),
          "optax.contrib.momo_adam", None,
          whole_leaf=False, whole_tree=True, flat=True, complex=True, needs_params=True,
          extra_args=with_value),
    Entry("contrib.muon",
          lambda: optim_fn.contrib.muon(1e-2, weight_decay=0.1, adam_weight_decay=0.01,
                                        muon_weight_dimension_numbers=MUON_DIMS),
          "optax.contrib.muon", "torch.optim.Muon",
          whole_leaf=True, whole_tree=False, flat=False, complex=True, needs_params=True,
          optax_make=lambda: optax.contrib.muon(
              1e-2, weight_decay=0.1, adam_weight_decay=0.01,
              muon_weight_dimension_numbers=OPTAX_MUON_DIMS)),
    Entry("contrib.prodigy",
          lambda: optim_fn.contrib.prodigy(0.5, betas=(0.8, 0.99), estim_lr0=1e-3,
                                                   estim_lr_coef=100.0, weight_decay=0.1),
          "optax.contrib.prodigy", None,
          whole_leaf=False, whole_tree=True, flat=True, complex=True, needs_params=True),
    Entry("contrib.sam",
          lambda: optim_fn.contrib.sam(
              optim_fn.adam(1e-2),
              optim_fn.chain(optim_fn.contrib.normalize(), optim_fn.sgd(5e-2)),
              sync_period=2, reset_state=False),
          "optax.contrib.sam", None,
          whole_leaf=False, whole_tree=True, flat=True, complex=True, needs_params=True,
          kind="wrapper",
          optax_make=lambda: optax.contrib.sam(
              optax.adam(1e-2), optax.chain(optax.contrib.normalize(), optax.sgd(5e-2)),
              sync_period=2, reset_state=False)),
    Entry("contrib.schedule_free",
          lambda: optim_fn.contrib.schedule_free(optim_fn.sgd(1.0, 0.5), 1e-2, b1=0.8),
          "optax.contrib.schedule_free", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          kind="wrapper",
          optax_make=lambda: optax.contrib.schedule_free(optax.sgd(1.0, 0.5), 1e-2, b1=0.8)),
    Entry("contrib.schedule_free_adamw",
          lambda: optim_fn.contrib.schedule_free_adamw(1e-2, warmup_steps=2, weight_decay=0.1),
          "optax.contrib.schedule_free_adamw", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("contrib.schedule_free_sgd",
          lambda: optim_fn.contrib.schedule_free_sgd(1e-2, warmup_steps=2, weight_decay=0.1),
          "optax.contrib.schedule_free_sgd", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("contrib.soap",
          lambda: optim_fn.contrib.soap(1e-2, precondition_frequency=2, weight_decay=0.1),
          None, None,
          whole_leaf=True, whole_tree=False, flat=False, complex=False, needs_params=True,
          rounding_noise="its first Adam step (step 2) sees a gradient nearly diagonal in the "
          "eigenbases of step 1's, and normalises the off-diagonal rounding noise to +-1"),
    Entry("contrib.sophia",
          lambda: optim_fn.contrib.sophia(1e-2, weight_decay=0.1, update_interval=2),
          "optax.contrib.sophia", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=False, needs_params=True,
          extra_args=with_obj_fn),
    Entry("contrib.split_real_and_imaginary",
          lambda: optim_fn.contrib.split_real_and_imaginary(optim_fn.adam(1e-2)),
          "optax.contrib.split_real_and_imaginary", None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          kind="wrapper", dtype="complex64", grads=conj_grads,
          optax_make=lambda: optax.contrib.split_real_and_imaginary(optax.adam(1e-2))),
    # --- optim_fn.torch: torch.optim's names, keywords and numbers
    Entry("torch.SGD",
          lambda: optim_fn.torch.SGD(lr=5e-2, momentum=0.9, nesterov=True, weight_decay=0.01),
          "optax.sgd", "torch.optim.SGD",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          optax_make=lambda: optax.chain(optax.add_decayed_weights(0.01),
                                         optax.sgd(5e-2, momentum=0.9, nesterov=True))),
    Entry("torch.Adam",
          lambda: optim_fn.torch.Adam(lr=1e-2, amsgrad=True, weight_decay=0.1),
          "optax.adam", "torch.optim.Adam",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          optax_differs="torch's AMSGrad takes the max of the raw second moment, optax's "
          "of the bias-corrected one (docs/torch.md; tests/test_torch_optimizers.py)"),
    Entry("torch.AdamW", lambda: optim_fn.torch.AdamW(lr=1e-2, betas=(0.8, 0.99)),
          "optax.adamw", "torch.optim.AdamW",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          optax_make=lambda: optax.adamw(1e-2, b1=0.8, b2=0.99, eps=1e-8, weight_decay=1e-2)),
    Entry("torch.Adagrad",
          lambda: optim_fn.torch.Adagrad(lr=5e-2, lr_decay=0.01, initial_accumulator_value=0.1),
          "optax.adagrad", "torch.optim.Adagrad",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          optax_make=lambda: optax.chain(
              optax.scale_by_rss(initial_accumulator_value=0.1, eps=1e-10),
              optax.scale_by_learning_rate(lambda count: 5e-2 / (1.0 + 0.01 * count)))),
    Entry("torch.Adadelta",
          lambda: optim_fn.torch.Adadelta(lr=1.0, rho=0.8, weight_decay=0.01),
          "optax.adadelta", "torch.optim.Adadelta",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          optax_make=lambda: optax.adadelta(1.0, rho=0.8, eps=1e-6, weight_decay=0.01)),
    Entry("torch.RMSprop",
          lambda: optim_fn.torch.RMSprop(lr=1e-2, centered=True, momentum=0.5),
          "optax.rmsprop", "torch.optim.RMSprop",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          optax_make=lambda: optax.rmsprop(1e-2, decay=0.99, eps=1e-8, eps_in_sqrt=False,
                                           centered=True, momentum=0.5)),
    Entry("torch.Adamax", lambda: optim_fn.torch.Adamax(lr=1e-2, weight_decay=0.01),
          "optax.adamax", "torch.optim.Adamax",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          optax_make=lambda: optax.chain(optax.add_decayed_weights(0.01), optax.adamax(1e-2))),
    Entry("torch.NAdam",
          lambda: optim_fn.torch.NAdam(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
          "optax.nadam", "torch.optim.NAdam",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          optax_differs="torch's momentum-decay schedule, which optax's nadam has not "
          "(docs/torch.md; tests/test_torch_optimizers.py)"),
    Entry("torch.RAdam", lambda: optim_fn.torch.RAdam(lr=1e-2, weight_decay=0.1),
          "optax.radam", "torch.optim.RAdam",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True,
          optax_make=lambda: optax.chain(optax.add_decayed_weights(0.1),
                                         optax.radam(1e-2, threshold=5.0))),
    Entry("torch.ASGD", lambda: optim_fn.torch.ASGD(lr=1e-2, lambd=0.1, t0=2),
          None, "torch.optim.ASGD",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    Entry("torch.Rprop", lambda: optim_fn.torch.Rprop(lr=1e-2, etas=(0.3, 1.5)),
          "optax.rprop", "torch.optim.Rprop",
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=False,
          optax_differs="optax's Rprop lags a step (docs/differences.md); checked "
          "against torch in tests/test_torch_optimizers.py"),
    # Factors each leaf's last two axes: refuses a FlatTree (it used to run on one and
    # factor the buffer instead).
    Entry("torch.Adafactor", lambda: optim_fn.torch.Adafactor(lr=1e-2, weight_decay=0.01),
          "optax.adafactor", "torch.optim.Adafactor",
          whole_leaf=True, whole_tree=False, flat=False, complex=False, needs_params=True,
          optax_differs="torch's Adafactor (last two axes factored, eps clamped, relative "
          "step) is not optax's (docs/torch.md; tests/test_torch_optimizers.py)"),
    Entry("torch.Muon", lambda: optim_fn.torch.Muon(lr=2e-2, weight_decay=0.1),
          "optax.contrib.muon", "torch.optim.Muon",
          whole_leaf=True, whole_tree=False, flat=False, complex=False, needs_params=True,
          shapes=TORCH_SHAPES_2D,
          optax_differs="torch's Muon (bfloat16 Newton-Schulz, its lr adjustment) is not "
          "optax's (docs/torch.md; tests/test_torch_muon.py)"),
    # Sparse (BCOO) gradients only: on a FlatTree the rows are those of the buffer.
    Entry("torch.SparseAdam", lambda: optim_fn.torch.SparseAdam(lr=5e-2, betas=(0.8, 0.99)),
          None, "torch.optim.SparseAdam",
          whole_leaf=False, whole_tree=False, flat=False, complex=False, needs_params=False,
          shapes=SPARSE_SHAPES, grads=sparse_row_grads),
    # torch's control flow in Python: update runs eagerly, its state grows (tuples of the
    # history, Python numbers) as torch's does.
    Entry("torch.LBFGS",
          lambda: optim_fn.torch.LBFGS(lr=0.5, max_iter=3, history_size=4),
          "optax.lbfgs", "torch.optim.LBFGS",
          whole_leaf=False, whole_tree=True, flat=True, complex=False, needs_params=True,
          extra_args=with_loss_fn, jit=False,
          optax_differs="torch's LBFGS (a closure step of max_iter iterations) is not "
          "optax's (docs/torch.md; tests/test_torch_lbfgs.py)"),
    Entry("torch.param_groups",
          lambda: optim_fn.torch.param_groups(
              optim_fn.torch.AdamW,
              [{"params": "w*", "lr": 5e-3, "weight_decay": 0.0},
               {"params": "*", "amsgrad": True}],
              lr=1e-2, weight_decay=0.1),
          None, "torch.optim.AdamW",
          whole_leaf=False, whole_tree=False, flat=False, complex=True, needs_params=True,
          kind="wrapper"),
    # --- LaProp (no optax or torch.optim twin; tests/test_laprop.py checks it)
    Entry("laprop",
          lambda: optim_fn.laprop(inverse_time, b1=0.8, b2=0.99, weight_decay=0.1,
                                  mask=is_matrix),
          None, None,
          whole_leaf=False, whole_tree=False, flat=True, complex=True, needs_params=True),
    # --- Shampoo (facebookresearch's Distributed Shampoo; tests/test_shampoo.py checks it
    # against a NumPy transcription)
    Entry("contrib.shampoo",
          lambda: optim_fn.contrib.shampoo(1e-2, b2=0.99, max_preconditioner_dim=3,
                                           precondition_frequency=2, grafting="adam",
                                           weight_decay=0.01),
          None, None,
          whole_leaf=True, whole_tree=False, flat=False, complex=False, needs_params=True),
    # --- NorMuon and AdaMuon (no optax or torch.optim twin; tests/test_muon_successors.py
    # checks them against NumPy transcriptions of the authors' code)
    Entry("contrib.normuon",
          lambda: optim_fn.contrib.normuon(1e-2, b2=0.9, weight_decay=0.1,
                                           orthogonalizer="polar_express",
                                           muon_weight_dimension_numbers=MUON_DIMS),
          None, None,
          whole_leaf=True, whole_tree=False, flat=False, complex=False, needs_params=True),
    Entry("contrib.adamuon",
          lambda: optim_fn.contrib.adamuon(1e-2, b2=0.99, weight_decay=0.1,
                                           orthogonalizer="gram_newton_schulz",
                                           split_sizes={"w": 2, "b": None, "cube": None},
                                           muon_weight_dimension_numbers=MUON_DIMS),
          None, None,
          whole_leaf=True, whole_tree=False, flat=False, complex=False, needs_params=True),
    # --- Scion (the authors' LIONS-EPFL/scion; tests/test_scion.py checks it against a
    # NumPy transcription and pytorch_optimizer.SCION)
    Entry("contrib.scion",
          lambda: optim_fn.contrib.scion(
              1e-2, norms={"hidden": "spectral", "bias": "bias_rms", "conv": "spectral_conv"},
              scales={"hidden": 2.0, "bias": 1.0, "conv": 3.0},
              labels={"w": "hidden", "b": "bias", "cube": "conv"}, momentum=0.5),
          None, None,
          whole_leaf=True, whole_tree=False, flat=False, complex=False, needs_params=True),
    # --- PSGD Kron (psgd-jax's numbers; tests/test_kron.py checks it step by step). Its
    # probe vectors are drawn in the params' dtype, per leaf (noise).
    Entry("contrib.kron",
          lambda: optim_fn.contrib.kron(1e-2, precond_update_prob=0.5, weight_decay=0.01,
                                        memory_save_mode="one_diag", merge_small_dims=True),
          None, None,
          whole_leaf=True, whole_tree=False, flat=False, complex=False, needs_params=True,
          noise=True),
    # --- Dion (microsoft/dion; tests/test_dion.py checks it against a NumPy transcription)
    Entry("contrib.dion",
          lambda: optim_fn.contrib.dion(1e-2, rank_fraction=0.5, mu=0.9, weight_decay=0.05,
                                        qr_method="cqr", cqr_warmup_steps=1,
                                        dion_weight_dimension_numbers=MUON_DIMS, seed=3),
          None, None,
          whole_leaf=True, whole_tree=False, flat=False, complex=False, needs_params=True),
)

BY_NAME: dict[str, Entry] = {entry.name: entry for entry in CATALOGUE}
assert len(BY_NAME) == len(CATALOGUE), "duplicate row names"


def public_object(name: str) -> Any:
    """The object a row name (or a coverage name like ``"contrib.muon"``) stands for."""
    module, _, attribute = name.rpartition(".")
    namespace = {"": optim_fn, "contrib": optim_fn.contrib, "torch": optim_fn.torch}[module]
    return getattr(namespace, attribute)
