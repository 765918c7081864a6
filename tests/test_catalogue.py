"""Every row of the optimizer catalogue (``tests/catalogue.py``) through the common checks.

Parametrised over :data:`catalogue.CATALOGUE` (test ids are the row names); each check is
generated for the rows its flags and fields make it apply to:

* ``test_property_checks`` (every row): :func:`optim_fn.testing.check_transform`
  (structure and dtypes, no retrace, jit == eager, hyperparameters as data) on the
  standard problem's params, seeded random gradients and the row's extra arguments. Not
  the zero-gradient check: most rows decay weights (``tests/test_properties.py`` and
  ``tests/test_family_reference.py`` check it, configuration by configuration).
* ``test_bfloat16_params`` (float32 rows): bfloat16 params run; the updates have the
  gradients' dtype (bfloat16), are finite and, unless the row draws noise or its updates
  are rounding noise, point the float32 run's way (cosine > 0.95 at each of 3 steps, as
  ``tests/test_family_reference.py``).
* ``test_flat_mode`` (``flat=True``): on ``optim_fn.flat.ravel(params)``, 20 steps give
  tree mode's updates and params within 1e-6 of each step's largest value.
  ``test_flat_mode_refused`` (``flat=False``): ``init`` refuses a FlatTree with a
  ValueError saying why (or the row is in ``FLAT_NOT_REFUSED``, with the reason).
* ``test_complex_params`` (``complex=True``): complex64 params off the real axis give
  finite complex64 updates; on the real axis they give the float32 numbers: imaginary
  parts <= 1e-6 and real parts within 2e-5 of each step's largest update, 3 steps (as
  ``tests/test_family_reference.py``). ``test_complex_params_refused`` (``complex=False``):
  ``init`` raises TypeError "<name> does not support complex params: <why>. Optimize ...".
* ``test_update_without_params_is_refused`` (``needs_params=True``): ``update`` without
  params raises a ValueError naming the optimizer.
* ``test_matches_optax`` (rows with an ``optax`` twin): 20 steps next to the twin, built
  from the very arguments ``make`` passes to the row's factory (or by the row's
  ``optax_make`` where that cannot be: wrappers, torch keywords, optim_fn types); updates
  and params within 1e-5 of each step's largest value (``tests/test_family_parity.py``'s
  float32 tolerance). A row whose ``optax_differs`` names a documented deliberate
  difference skips, saying which.

Where float32 rounding is amplified (updates that are differences of params, Polyak
ratios, line searches, Newton-Schulz iterations, rounding noise) and a flat, complex or
optax comparison fails its tolerance, both float32 runs are judged against a float64 run
(our tree-mode run; the twin's, for optax) as ``tests/test_family_parity.py`` judges its
``conditioned`` cases: the run under test within max(tolerance, 3 x the reference run's
own float32 error), errors relative to the run's largest value. Not for rows that draw
noise (the noise depends on the dtype).

Known library defects are listed below (``KNOWN_*``, reported): those rows' tests check
the behaviour they have now, then xfail, so that a fix fails the test until its entry is
removed.

Speed: the runs are jitted ``lax.scan`` loops, ``GROUP_SIZE`` rows of the catalogue to a
program (the grouping of ``tests/test_family_parity.py``), compiled with XLA's cheaper CPU
options; each program runs once per process.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from typing import Any

import catalogue
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import optax.transforms
import pytest
from catalogue import CATALOGUE, Entry
from jax.experimental import sparse

import optim_fn
import optim_fn.contrib
import optim_fn.flat
import optim_fn.testing
import optim_fn.torch

STEPS = 20  # the standard run, the flat run, the optax twin
SHORT = 3  # the bfloat16 and complex runs
PROPERTY_STEPS = 2  # as tests/test_family_reference.py
PARITY_TOLERANCE = 1e-5  # tests/test_family_parity.py, float32
FLAT_TOLERANCE = 1e-6  # tests/test_family_reference.py's flat-mode rtol
COMPLEX_TOLERANCE = 2e-5  # tests/test_family_reference.py's complex_tolerance
COMPLEX_IMAG = 1e-6
COSINE = 0.95
GROUP_SIZE = 4
# XLA's cheaper CPU pipeline (tests/test_family_parity.py) and its older elemental
# emitters: these programs compile 2-3x faster. Runs compared with each other are compiled
# with the same options.
FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
    "xla_cpu_parallel_codegen_split_count": 1,
}

FlatTree = optim_fn.flat.FlatTree
# What a refusal of flat mode says: a rule that needs leaves, partition's labels, or
# torch's Muon (matrices only).
FLAT_REFUSAL = (
    r"does not work in flat mode|a flat buffer holds leaves of several groups|"
    r"only supports 2D parameters"
)

# flat=False rows that run on a FlatTree instead of refusing it, and why that is right.
FLAT_NOT_REFUSED = {
    "noisy_sgd": "draws its noise leaf by leaf: on a FlatTree, buffer by buffer (valid "
    "noise, other numbers)",
    "torch.SparseAdam": "element-sparse BCOO gradients of a 1-d buffer are valid input; the "
    "row's gradients (rows of an embedding table) have no flat counterpart",
}

# ----------------------------------------------------------------------------------------
# Known defects of the library (reported; remove an entry when its test starts failing).

# complex=False rows that do not raise TypeError naming the optimizer at init: what they do.
KNOWN_COMPLEX_REFUSALS = {
    "torch.Adafactor": "raises ValueError, not TypeError (the optax face raises TypeError)",
    "torch.SparseAdam": "raises ValueError, not TypeError (the optax face raises TypeError)",
    "torch.Muon": "raises ValueError 'only supports 2D parameters ... size: (4, 2)' for "
    "complex 2-D params: the wrong reason",
    "torch.LBFGS": "accepts complex params at init; update then fails with "
    "TypeError: float() argument must be ... not 'complex'",
}
# needs_params rows whose ValueError names another optimizer than the row (a combinator);
# the blocks of an optimizer name it ("adamw: add_decayed_weights needs the params").
KNOWN_UNNAMED_NEEDS_PARAMS = {
    # combinators of optimizers: the error names the group's optimizer that needs them
    "partition": "names the group's optimizer (adamw)",
    "torch.param_groups": "names the group's optimizer (AdamW)",
}  # fmt: skip
# Property checks that fail on a row, and why.
KNOWN_PROPERTY_FAILURES: dict[str, str] = {}


def rows(applies: Callable[[Entry], bool]) -> list:
    return [pytest.param(e, id=e.name) for e in CATALOGUE if applies(e)]


def short_name(entry: Entry) -> str:
    return entry.name.rpartition(".")[2]


# ----------------------------------------------------------------------------------------
# Runs of the standard problem, several rows to a compiled program.


def unflat(tree: Any) -> Any:
    """FlatTrees (in updates, params, LookaheadParams) back to their trees."""
    return jax.tree.map(
        lambda x: x.unravel() if isinstance(x, FlatTree) else x,
        tree,
        is_leaf=lambda x: isinstance(x, FlatTree),
    )


def cast(params: Any, dtype: Any, factor: complex = 1.0) -> Any:
    return jax.tree.map(lambda x: (x * factor).astype(dtype), params)


def start(entry: Entry, mode: str) -> Any:
    """The params a run of ``mode`` starts from, as the row's ``update`` takes them."""
    params = catalogue.initial_params(entry)
    if mode == "bf16":
        params = cast(params, jnp.bfloat16)
    elif mode == "flat":
        params = optim_fn.flat.ravel(params)
    elif mode == "complex_real":
        params = cast(params, jnp.complex64)
    elif mode == "complex_off":
        params = cast(params, jnp.complex64, 1 + 0.5j)
    elif mode in ("standard64", "optax64"):
        params = cast(params, jnp.float64)
    return catalogue.optimizer_params(entry, params)


def steps_of(mode: str) -> int:
    return SHORT if mode in ("bf16", "complex") else STEPS


def runner(entry: Entry, mode: str) -> Callable[[], tuple]:
    """A function running the row in ``mode``: ``(updates, params, grads)`` per step.

    Modes: "standard" (the row's params), "bf16", "flat", "complex" (complex64 params
    on the real axis and off it, batched: a leading axis of 2), "standard64" (float64,
    under x64); "optax" and "optax64" run the optax twin from the standard params, in
    float32 and float64.
    """
    twin = mode.startswith("optax")
    optimizer = optax_twin(entry) if twin else entry.make()
    apply = optax.apply_updates if twin else optim_fn.apply_updates

    def step(carry, _):
        params, state = carry
        grads = catalogue.grads_for(entry, params)
        extra = catalogue.extra_args_for(entry, params)
        updates, state = optimizer.update(grads, state, params, **extra)
        if twin:  # optax's LookaheadParams is another class than ours
            updates = jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(updates))
        params = apply(params, updates)
        return (params, state), (unflat(updates), unflat(params), unflat(grads))

    def trajectory(params):
        return jax.lax.scan(step, (params, optimizer.init(params)), None, steps_of(mode))[1]

    def run():
        if mode == "complex":  # on and off the real axis, one batch (one compilation)
            both = [start(entry, "complex_real"), start(entry, "complex_off")]
            return jax.vmap(trajectory)(jax.tree.map(lambda *xs: jnp.stack(xs), *both))
        params = start(entry, mode)
        if entry.jit:
            return trajectory(params)
        carry, outs = (params, optimizer.init(params)), []  # eager: torch's control flow
        for _ in range(steps_of(mode)):
            carry, out = step(carry, None)
            outs.append(out)
        return jax.tree.map(lambda *xs: np.stack(xs), *outs)

    return run


def applies(entry: Entry, mode: str) -> bool:
    if mode == "bf16":
        return entry.dtype == "float32"
    if mode == "flat":
        return entry.flat
    if mode == "complex":
        return entry.complex
    if mode == "optax":
        return entry.optax is not None and entry.optax_differs is None
    return mode == "standard"


_RUNS: dict = {}


def run(entry: Entry, mode: str) -> tuple:
    """``(updates, params, grads)`` of the row's ``mode`` run, stacked over steps.

    A jitted row runs with its neighbours (``GROUP_SIZE`` rows of the catalogue to which
    ``mode`` applies) in one program; if that program fails, each row of the group runs
    alone, so that only the broken row's tests fail.
    """
    key = (entry.name, mode)
    if key not in _RUNS:
        if entry.jit and applies(entry, mode):
            members = [e for e in CATALOGUE if e.jit and applies(e, mode)]
            index = members.index(entry)
            group = members[index - index % GROUP_SIZE :][:GROUP_SIZE]
            results = outcome(lambda: compiled([runner(e, mode) for e in group]))
            if isinstance(results, Exception):
                results = [outcome(lambda e=e: compiled([runner(e, mode)])[0]) for e in group]
            _RUNS.update({(e.name, mode): r for e, r in zip(group, results, strict=True)})
        elif entry.jit:  # the float64 twins: run alone, where a comparison needs them
            _RUNS[key] = outcome(lambda: compiled([runner(entry, mode)])[0])
        else:
            _RUNS[key] = outcome(runner(entry, mode))
    found = _RUNS[key]
    if isinstance(found, Exception):
        raise found
    return found


def compiled(functions: list) -> list:
    program = jax.jit(lambda: [f() for f in functions]).lower()
    return jax.device_get(program.compile(compile_options())())


@functools.cache
def compile_options() -> dict:
    """FAST_COMPILE without the options this jaxlib does not know."""
    options = dict(FAST_COMPILE)
    for name in FAST_COMPILE:
        try:
            jax.jit(lambda: jnp.zeros(2)).lower().compile({name: FAST_COMPILE[name]})
        except Exception:  # noqa: BLE001 - "No such compile option"
            del options[name]
    return options


def outcome(function: Callable[[], Any]) -> Any:
    """What ``function`` returns, or the exception it raises (raised by the row's test)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return jax.device_get(function())
    except Exception as error:  # noqa: BLE001
        return error


def leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def step_errors(ours: Any, reference: Any, scale_of: Any = None) -> np.ndarray:
    """Per step: max over leaves |ours - reference| / max over leaves |scale_of|.

    ``scale_of`` defaults to ``reference``. A step where the scale is exactly zero
    (MultiSteps accumulating, ADOPT's first update) must be exactly equal: its error is
    then 0, else inf.
    """
    ours, reference = leaves(ours), leaves(reference)
    scales = reference if scale_of is None else leaves(scale_of)
    assert len(ours) == len(reference), (len(ours), len(reference))
    steps = reference[0].shape[0]
    diff, scale = np.zeros(steps), np.zeros(steps)
    for a, b in zip(ours, reference, strict=True):
        assert a.shape == b.shape, (a.shape, b.shape)
        a = np.asarray(a, np.complex128).reshape(steps, -1)
        b = np.asarray(b, np.complex128).reshape(steps, -1)
        diff = np.maximum(diff, np.abs(a - b).max(axis=1, initial=0.0))
    for s in scales:
        s = np.asarray(s, np.complex128).reshape(steps, -1)
        scale = np.maximum(scale, np.abs(s).max(axis=1, initial=0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, diff / scale, np.where(diff > 0, np.inf, 0.0))


def run_error(ours: Any, reference: Any) -> float:
    """max over steps and leaves |ours - reference|, over the largest |reference| of the
    run (tests/test_family_parity.py's measure for conditioned cases)."""
    diff = max(
        float(np.max(np.abs(a.astype(np.complex128) - b), initial=0.0))
        for a, b in zip(leaves(ours), leaves(reference), strict=True)
    )
    scale = max(float(np.max(np.abs(b), initial=0.0)) for b in leaves(reference))
    return diff / scale


def float64_judged(ours: Any, reference: Any, truth: Any, tolerance: float) -> tuple:
    """Our error and the reference's, against a float64 run; ours must be within
    max(tolerance, 3 x the reference's own), as tests/test_family_parity.py judges."""
    found, own = run_error(ours, truth), run_error(reference, truth)
    return found <= max(tolerance, 3 * own), found, own


def at_step(tree: Any, step: int) -> np.ndarray:
    """The tree's values at ``step``, one vector."""
    return np.concatenate([np.ravel(x[step]) for x in leaves(tree)])


# ----------------------------------------------------------------------------------------
# (a) The property checks of optim_fn.testing.


def per_example(grads: Any) -> Any:
    """What catalogue.per_example_grads makes of a gradient: two examples of it."""
    return jax.tree.map(lambda x: jnp.stack([x, 0.5 * x + 0.25]), grads)


def sparse_rows(grads: Any) -> Any:
    """What catalogue.sparse_row_grads makes of a gradient: its rows 0, 2, 2, 5."""
    rows = jnp.asarray([0, 2, 2, 5], jnp.int32)
    return jax.tree.map(lambda g: sparse.BCOO((g[rows], rows[:, None]), shape=g.shape), grads)


def fast_part(grads: Any) -> Any:
    """catalogue.lookahead_grads: the gradient of the fast params only."""
    return grads.fast


# The property checks give ``update`` gradients shaped like the params and compare the
# updates with them. A row whose ``grads`` hook gives ``update`` something else gets the
# hook's conversion put in front of its optimizer (None: shaped like the params already).
GRADIENT_VIEWS = {
    catalogue.per_example_grads: per_example,
    catalogue.sparse_row_grads: sparse_rows,
    catalogue.lookahead_grads: fast_part,
    catalogue.conj_grads: None,
}


def with_view(view: Callable[[Any], Any], optimizer: Any) -> Any:
    def update(grads, state, params=None, **extra):
        return optimizer.update(view(grads), state, params, **extra)

    return optax.GradientTransformationExtraArgs(optimizer.init, update)


@pytest.mark.parametrize("entry", rows(lambda e: True))
def test_property_checks(entry: Entry):
    if not entry.jit:
        pytest.skip("update runs eagerly (jit=False): torch's Python control flow, growing state")
    if entry.grads is not None and entry.grads not in GRADIENT_VIEWS:
        pytest.fail(f"{entry.name}: add its `grads` hook to GRADIENT_VIEWS")
    view = GRADIENT_VIEWS.get(entry.grads)
    make = entry.make if view is None else (lambda: with_view(view, entry.make()))
    params = start(entry, "standard")
    options = {"extra_args": catalogue.extra_args_for(entry, params), "steps": PROPERTY_STEPS}
    checks = optim_fn.testing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if entry.rounding_noise:
            try:
                checks.check_transform(make, params, zero_grad_update=None, **options)
            except checks.PropertyCheckError as error:
                if error.property != checks.JIT_MATCHES_EAGER:
                    raise
                # jit and eager round differently, and the row amplifies rounding: the
                # other properties, alone.
                checks.check_structure(make, params, **options)
                checks.check_no_retrace(make, params, **options)
                checks.check_hyperparams_are_data(make, params, extra_args=options["extra_args"])
            return
        if entry.name in KNOWN_PROPERTY_FAILURES:
            with pytest.raises(checks.PropertyCheckError, match=checks.HYPERPARAMS_ARE_DATA):
                checks.check_transform(make, params, zero_grad_update=None, **options)
            pytest.xfail(KNOWN_PROPERTY_FAILURES[entry.name])
        checks.check_transform(make, params, zero_grad_update=None, **options)


# ----------------------------------------------------------------------------------------
# (b) bfloat16 params.


@pytest.mark.parametrize("entry", rows(lambda e: applies(e, "bf16")))
def test_bfloat16_params(entry: Entry):
    updates, _, grads = run(entry, "bf16")
    # The gradients (all bfloat16: per example, sparse, of the fast params) ...
    assert {x.dtype for x in leaves(grads) if jnp.issubdtype(x.dtype, jnp.inexact)} == {
        jnp.dtype(jnp.bfloat16)
    }
    # ... and the updates, in the gradients' dtype and finite.
    for path, update in jax.tree_util.tree_flatten_with_path(updates)[0]:
        where = f"updates{jax.tree_util.keystr(path)}"
        assert update.dtype == jnp.bfloat16, (where, update.dtype)
        assert np.isfinite(np.asarray(update, np.float32)).all(), f"{where} not finite"
    if entry.noise or entry.rounding_noise:
        return  # other noise / other rounding noise than the float32 run's
    reference = run(entry, "standard")[0]
    for step in range(SHORT):
        a = at_step(updates, step).astype(np.float64)
        b = at_step(reference, step).astype(np.float64)
        if not np.any(b):
            assert not np.any(a), f"step {step + 1}: float32 gives 0, bfloat16 does not"
            continue
        cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        assert cosine > COSINE, f"step {step + 1}: cosine {cosine:.3f} with the float32 updates"


# ----------------------------------------------------------------------------------------
# (c) Flat mode.


@pytest.mark.parametrize("entry", rows(lambda e: e.flat))
def test_flat_mode(entry: Entry):
    tree_updates, tree_params, _ = run(entry, "standard")
    flat_updates, flat_params, _ = run(entry, "flat")
    pairs = {"updates": (flat_updates, tree_updates), "params": (flat_params, tree_params)}
    errors = {what: step_errors(*pair) for what, pair in pairs.items()}
    if all(np.all(e <= FLAT_TOLERANCE) for e in errors.values()):
        return
    # Rounding amplified over the steps: flat mode must be as accurate as tree mode.
    assert not entry.noise, f"relative errors per step: {errors}"
    with jax.enable_x64(True):
        truth = dict(zip(("updates", "params"), run(entry, "standard64")[:2], strict=False))
    for what, (flat, tree) in pairs.items():
        ok, found, own = float64_judged(flat, tree, truth[what], FLAT_TOLERANCE)
        assert ok, (
            f"{what}: relative errors per step {errors[what]}; against the float64 run "
            f"{found:.2e}, tree mode's own float32 error {own:.2e}"
        )


@pytest.mark.parametrize("entry", rows(lambda e: not e.flat))
def test_flat_mode_refused(entry: Entry):
    optimizer = entry.make()
    try:
        optimizer.init(start(entry, "flat"))
    except ValueError as error:
        assert re.search(FLAT_REFUSAL, str(error)), error
        return
    if entry.name in FLAT_NOT_REFUSED:
        pytest.skip(FLAT_NOT_REFUSED[entry.name])
    pytest.fail(f"{entry.name} (flat=False) accepts a FlatTree at init")


# ----------------------------------------------------------------------------------------
# (d) Complex params.


@pytest.mark.parametrize("entry", rows(lambda e: e.complex))
def test_complex_params(entry: Entry):
    batch = run(entry, "complex")[0]
    on_axis, updates = (jax.tree.map(lambda x, i=i: x[i], batch) for i in range(2))
    for path, update in jax.tree_util.tree_flatten_with_path(updates)[0]:
        where = f"updates{jax.tree_util.keystr(path)}"
        assert update.dtype == jnp.complex64, (where, update.dtype)
        assert np.isfinite(update).all(), f"{where} not finite"
    if entry.dtype != "float32" or entry.noise:
        return  # complex already / other noise than the float32 run's
    reference = jax.tree.map(lambda x: x[:SHORT], run(entry, "standard")[0])
    real = jax.tree.map(lambda x: x.real, on_axis)
    for step in range(SHORT):
        scale = np.max(np.abs(at_step(reference, step)))
        imaginary = np.max(np.abs(at_step(on_axis, step).imag))
        assert imaginary <= COMPLEX_IMAG * scale, f"step {step + 1}: imaginary parts {imaginary}"
    errors = step_errors(real, reference)
    if np.all(errors <= COMPLEX_TOLERANCE):
        return
    # Rounding amplified (updates that are differences of params, rounding noise): the
    # complex run must be as accurate as the float32 one.
    with jax.enable_x64(True):
        truth = jax.tree.map(lambda x: x[:SHORT], run(entry, "standard64")[0])
    ok, found, own = float64_judged(real, reference, truth, COMPLEX_TOLERANCE)
    assert ok, (
        f"real parts: errors per step {errors}; against the float64 run {found:.2e}, the "
        f"float32 run's own error {own:.2e}"
    )


COMPLEX_REFUSAL = r"does not support complex params: .+\. Optimize"


@pytest.mark.parametrize("entry", rows(lambda e: not e.complex))
def test_complex_params_refused(entry: Entry):
    optimizer = entry.make()
    params = start(entry, "complex_off")
    if entry.name in KNOWN_COMPLEX_REFUSALS:  # what it does now: another error
        with pytest.raises((TypeError, ValueError)) as caught:
            state = optimizer.init(params)
            grads = catalogue.grads_for(entry, params)
            optimizer.update(grads, state, params, **catalogue.extra_args_for(entry, params))
        assert not re.search(COMPLEX_REFUSAL, str(caught.value)), (
            "fixed: remove the row from KNOWN_COMPLEX_REFUSALS"
        )
        pytest.xfail(KNOWN_COMPLEX_REFUSALS[entry.name])
    with pytest.raises(TypeError, match=COMPLEX_REFUSAL) as caught:
        optimizer.init(params)
    assert short_name(entry) in str(caught.value)


# ----------------------------------------------------------------------------------------
# (e) Params needed.


@pytest.mark.parametrize("entry", rows(lambda e: e.needs_params))
def test_update_without_params_is_refused(entry: Entry):
    optimizer = entry.make()
    params = start(entry, "standard")
    state = optimizer.init(params)
    grads = catalogue.grads_for(entry, params)
    extra = catalogue.extra_args_for(entry, params)
    with pytest.raises(ValueError, match="params") as caught:
        optimizer.update(grads, state, None, **extra)
    named = short_name(entry) in str(caught.value)
    if entry.name in KNOWN_UNNAMED_NEEDS_PARAMS:
        assert not named, "fixed: remove the row from KNOWN_UNNAMED_NEEDS_PARAMS"
        pytest.xfail(f"the error {KNOWN_UNNAMED_NEEDS_PARAMS[entry.name]}: {caught.value}")
    assert named, f"the error does not name {short_name(entry)}: {caught.value}"


# ----------------------------------------------------------------------------------------
# (f) The optax twin, step by step.


def resolve(dotted: str) -> Any:
    module, *attributes = dotted.split(".")
    assert module == "optax", dotted
    found: Any = optax
    for attribute in attributes:
        found = getattr(found, attribute)
    return found


def is_ours(value: Any) -> bool:
    """Whether ``value`` is (or holds) an optimizer or another optim_fn object, which
    cannot be handed to the optax twin as it is."""
    if hasattr(value, "init") and hasattr(value, "update"):
        return True
    if type(value).__module__.startswith("optim_fn"):
        return True
    if isinstance(value, (list, tuple)):
        return any(is_ours(v) for v in value)
    if isinstance(value, dict):
        return any(is_ours(v) for v in value.values())
    return False


def recorded_call(entry: Entry) -> tuple | None:
    """The arguments ``entry.make`` passes to the row's public factory, if ``make`` is
    that one call with no optim_fn objects among them (else None)."""
    module, _, attribute = entry.name.rpartition(".")
    namespace = {"": optim_fn, "contrib": optim_fn.contrib, "torch": optim_fn.torch}[module]
    factory = getattr(namespace, attribute)
    calls = []

    def recorder(*args, **kwargs):
        result = factory(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    setattr(namespace, attribute, recorder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            built = entry.make()
    finally:
        setattr(namespace, attribute, factory)
    if len(calls) != 1 or calls[0][2] is not built or is_ours(calls[0][:2]):
        return None
    return calls[0][:2]


def optax_twin(entry: Entry) -> Any:
    """The row's optax twin, with the row's configuration."""
    if entry.optax_make is not None:
        return entry.optax_make()
    call = recorded_call(entry)
    if call is None:
        raise AssertionError(
            f"{entry.name}: `make` cannot be passed to {entry.optax} verbatim (it wraps an "
            "optimizer, or passes optim_fn objects): give the row an `optax_make`"
        )
    args, kwargs = call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return resolve(entry.optax)(*args, **kwargs)


@pytest.mark.parametrize("entry", rows(lambda e: e.optax is not None))
def test_matches_optax(entry: Entry):
    if entry.optax_differs is not None:
        pytest.skip(entry.optax_differs)
    ours, twin = run(entry, "standard")[:2], run(entry, "optax")[:2]
    moving = np.any([np.any(x != 0, axis=tuple(range(1, x.ndim))) for x in leaves(twin[0])], 0)
    assert np.sum(moving) >= STEPS // 2, "the twin's updates are mostly zero: a vacuous check"
    errors = {
        what: step_errors(a, b)
        for what, a, b in zip(("updates", "params"), ours, twin, strict=True)
    }
    if all(np.all(e <= PARITY_TOLERANCE) for e in errors.values()):
        return
    # Rounding amplified: judge both float32 runs against the twin's float64 run.
    assert not entry.noise, f"relative errors per step {errors}"
    with jax.enable_x64(True):
        truth = run(entry, "optax64")[:2]
    for what, a, b, t in zip(("updates", "params"), ours, twin, truth, strict=True):
        ok, found, own = float64_judged(a, b, t, PARITY_TOLERANCE)
        assert ok, (
            f"{what}: errors per step {errors[what]}; against the twin's float64 run "
            f"{found:.2e}, the twin's own float32 error {own:.2e}"
        )
