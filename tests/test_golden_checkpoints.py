"""Golden checkpoints: every optimizer's state, saved by an older version, resumes bitwise.

``tests/golden/`` holds, for every row of ``tests/catalogue.py``, the optimizer state
after 3 steps of the standard problem, written by the code of the commit named in
``tests/golden/MANIFEST.json`` (flax.serialization bytes and an orbax checkpoint), with
the params and updates of that code's steps 4 and 5 (see ``tests/golden/make_golden.py``).
Here, with the current code, for each row and each format:

1. the stored state restores into the state the current code's ``init`` builds, and
   each leaf equals, bit for bit, the state of the current code's uninterrupted 3-step
   run (the same tree, dtypes, shapes and bits);
2. 2 steps continued from the restored state give bitwise the params, updates and state
   of the current code's uninterrupted 5-step run, and the params and updates the old
   code stored for its steps 4 and 5.

So a refactor that renames a state field, reorders a state tuple, changes a dtype or an
initial value, or changes one bit of a step fails here, naming the row and the leaf.
The coverage test makes every new optimizer get a row (and so golden files).

Bitwise across versions presumes the same XLA:CPU code generation: the files were made
on the CPU with the jax/jaxlib in MANIFEST.json. A jax upgrade that changes float
rounding shows up here too; the messages name the versions.
"""

from __future__ import annotations

import functools
import importlib
import json
import types
from pathlib import Path
from typing import Any, NamedTuple

import catalogue
import jax
import numpy as np
import pytest

import optim_fn
import optim_fn.contrib
import optim_fn.torch

serialization = pytest.importorskip("flax.serialization")
ocp = pytest.importorskip("orbax.checkpoint")

GOLDEN = Path(__file__).resolve().parent / "golden"
SAVE_AT, STEPS = 3, 5
CPU = jax.devices("cpu")[0]
MANIFEST = json.loads((GOLDEN / "MANIFEST.json").read_text())
MADE_WITH = "golden files made by {code_commit} with jax {jax}".format(
    code_commit=MANIFEST["code_commit"][:12], jax=MANIFEST["environment"]["jax"]
)
ROWS = [pytest.param(entry, id=entry.name) for entry in catalogue.CATALOGUE]

# Rows whose state changes structure as it runs (torch's LBFGS keeps its history in
# growing tuples, like torch): restored into the structure of the current code's state
# after 3 steps instead of into ``init``'s.
GROWING_STATE = {"torch.LBFGS"}


class Reference(NamedTuple):
    """The current code's uninterrupted run of one row, and the old code's stored one."""

    entry: catalogue.Entry
    step: Any  # (params, state) -> (params, state, updates), compiled once
    template: Any  # where a restored state goes: init's state (see GROWING_STATE)
    states: dict  # step -> state (3 and 5)
    params: dict  # step -> params (3, 4, 5)
    updates: dict  # step -> updates (4, 5)
    stored: dict  # the old code's npz


def _stored_tree(stored: dict, prefix: str, like: Any) -> Any:
    leaves, treedef = jax.tree.flatten(like)
    got = [stored[f"{prefix}/{i}"] for i in range(len(leaves))]
    assert f"{prefix}/{len(leaves)}" not in stored, f"{prefix}: more stored leaves than now"
    return jax.tree.unflatten(treedef, got)


@functools.cache
def reference(name: str) -> Reference:
    entry = catalogue.BY_NAME[name]
    with np.load(GOLDEN / "steps" / f"{name}.npz") as npz:
        stored = dict(npz)
    with jax.default_device(CPU):
        params0 = _stored_tree(stored, "params0", catalogue.initial_params(entry))
        optimizer = entry.make()
        params = catalogue.optimizer_params(entry, params0)
        template = optimizer.init(params)
        step = catalogue.make_step(entry, optimizer)
        states, all_params, all_updates = {}, {}, {}
        state = template
        for k in range(1, STEPS + 1):
            params, state, updates = step(params, state)
            all_params[k], all_updates[k], states[k] = params, updates, state
    if name in GROWING_STATE:
        template = states[SAVE_AT]
    else:
        assert jax.tree.structure(template) == jax.tree.structure(states[SAVE_AT]), (
            f"{name}: the state's tree changes between init and step {SAVE_AT}"
        )
    return Reference(entry, step, template, states, all_params, all_updates, stored)


def _bits(x: Any) -> np.ndarray:
    """The bits of each element, as unsigned integers of the element's width."""
    x = np.ascontiguousarray(jax.random.key_data(x) if catalogue.is_key(x) else x)
    width = x.dtype.itemsize
    return x.view(f"u{width}") if width in (1, 2, 4, 8) else x.view("u8")


def _dtype(x: Any) -> Any:
    return x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype  # keys: key<impl>


def assert_bitwise(got: Any, want: Any, what: str) -> None:
    """Same tree, and each leaf the same dtype, shape and bits (-0.0 is not 0.0)."""
    assert jax.tree.structure(got) == jax.tree.structure(want), (
        f"{what}: the tree differs\n  got  {jax.tree.structure(got)}\n"
        f"  want {jax.tree.structure(want)}\n({MADE_WITH})"
    )
    got_leaves = jax.tree_util.tree_flatten_with_path(got)[0]
    want_leaves = jax.tree_util.tree_flatten_with_path(want)[0]
    for (path, a), (_, b) in zip(got_leaves, want_leaves, strict=True):
        where = f"{what}, leaf {jax.tree_util.keystr(path)}"
        assert _dtype(a) == _dtype(b), f"{where}: dtype {_dtype(a)}, expected {_dtype(b)}"
        assert np.shape(a) == np.shape(b), f"{where}: shape {np.shape(a)}, expected {np.shape(b)}"
        a_bits, b_bits = _bits(a), _bits(b)
        if not np.array_equal(a_bits, b_bits):
            first = tuple(int(i) for i in np.argwhere(a_bits != b_bits)[0])
            values = [np.asarray(catalogue.keys_as_data(x))[first] for x in (a, b)]
            np.testing.assert_array_equal(
                a_bits, b_bits,
                err_msg=f"{where}: bits differ; first at {first}: "
                f"{values[0]!r} instead of {values[1]!r} ({MADE_WITH})",
            )


def restore_msgpack(ref: Reference) -> Any:
    data = (GOLDEN / "msgpack" / f"{ref.entry.name}.msgpack").read_bytes()
    target = catalogue.keys_as_data(ref.template)
    return catalogue.keys_like(ref.template, serialization.from_bytes(target, data))


def restore_orbax(ref: Reference, checkpointer: Any) -> Any:
    target = catalogue.without_empty(catalogue.keys_as_data(ref.template))
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    with jax.default_device(CPU):
        restored = checkpointer.restore(GOLDEN / "orbax" / ref.entry.name, abstract)
    # As host arrays, like msgpack's: orbax's are committed to a device, and a jitted step
    # compiles again for committed arguments (the same program; only slower).
    restored = jax.device_get(restored)
    return catalogue.keys_like(ref.template, catalogue.empty_like(ref.template, restored))


@pytest.fixture(scope="module")
def checkpointer():
    with ocp.StandardCheckpointer() as found:
        yield found


def check_resume(ref: Reference, restored: Any, fmt: str) -> None:
    name = ref.entry.name
    assert_bitwise(restored, ref.states[SAVE_AT], f"{name} ({fmt}): the restored state")
    params = _stored_tree(ref.stored, f"params{SAVE_AT}", ref.params[SAVE_AT])
    assert_bitwise(params, ref.params[SAVE_AT], f"{name}: the params after step {SAVE_AT}")
    state = restored
    with jax.default_device(CPU):
        for k in range(SAVE_AT + 1, STEPS + 1):
            params, state, updates = ref.step(params, state)
            what = f"{name} ({fmt}) resumed, step {k}"
            assert_bitwise(updates, ref.updates[k], f"{what}: updates vs the uninterrupted run")
            assert_bitwise(params, ref.params[k], f"{what}: params vs the uninterrupted run")
            stored_updates = _stored_tree(ref.stored, f"updates{k}", ref.updates[k])
            stored_params = _stored_tree(ref.stored, f"params{k}", ref.params[k])
            assert_bitwise(updates, stored_updates, f"{what}: updates vs the old code's")
            assert_bitwise(params, stored_params, f"{what}: params vs the old code's")
    assert_bitwise(state, ref.states[STEPS], f"{name} ({fmt}) resumed: the state at {STEPS}")


@pytest.mark.parametrize("entry", ROWS)
def test_msgpack_state_restores_and_resumes_bitwise(entry):
    ref = reference(entry.name)
    check_resume(ref, restore_msgpack(ref), "msgpack")


@pytest.mark.parametrize("entry", ROWS)
def test_orbax_state_restores_and_resumes_bitwise(entry, checkpointer):
    ref = reference(entry.name)
    check_resume(ref, restore_orbax(ref, checkpointer), "orbax")


@pytest.mark.parametrize("entry", ROWS)
def test_the_problem_is_unchanged(entry):
    """The stored gradients are those of the current problem (else the catalogue's loss,
    params or gradient hook changed, not the optimizer)."""
    ref = reference(entry.name)
    with jax.default_device(CPU):  # eagerly, as make_golden.py computed them
        grads = {
            k: catalogue.grads_for(entry, ref.params[k - 1])
            for k in range(SAVE_AT + 1, STEPS + 1)
        }
    for k, found in grads.items():
        stored = _stored_tree(ref.stored, f"grads{k}", found)
        assert_bitwise(found, stored, f"{entry.name}: the gradient of step {k}")
    start = catalogue.initial_params(entry)
    stored = _stored_tree(ref.stored, "params0", start)
    for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(stored), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{entry.name}: the start params"


# ----------------------------------------------------------------------------------------
# The catalogue covers every optimizer, and every row has its golden files.

# Exported names that are not optimizers, so have no row. Every other name in the three
# __all__ lists must be a catalogue row; a new optimizer without one fails the test below.
NOT_OPTIMIZERS = {
    "": (
        # types, protocols and hyperparameter access
        "GradientTransformation GradientTransformationExtraArgs ScalarOrSchedule Schedule "
        "Hyperparams Slot LookaheadParams ShouldSkipUpdateFunction BacktrackingLinesearchInfo "
        "ZoomLinesearchInfo get_hyperparams set_hyperparams with_multiplier "
        # state classes (checked through the rows that hold them)
        "AdaptiveGradClipState AddDecayedWeightsState AddNoiseState ApplyIfFiniteState "
        "ClipByBlockRmsState ClipByGlobalNormState ClipState ConditionallyMaskState "
        "ConditionallyTransformState EmaParamsState EmaState EmptyState FactoredState "
        "InjectHyperparamsState LookaheadState MaskedState MultiStepsState NonFiniteState "
        "PartitionState ReduceLROnPlateauState ScaleByAdadeltaState ScaleByAdamState "
        "ScaleByAdamaxState ScaleByAdanState ScaleByAmsgradState "
        "ScaleByBacktrackingLinesearchState ScaleByBeliefState ScaleByLBFGSState "
        "ScaleByLapropState "
        "ScaleByLearningRateState ScaleByLionState ScaleByNovogradState "
        "ScaleByOptimisticGradientState ScaleByParamBlockNormState ScaleByParamBlockRmsState "
        "ScaleByPolyakState ScaleByRAdamState ScaleByRmsState ScaleByRpropState ScaleByRssState "
        "ScaleBySM3State ScaleBySignState ScaleByStddevState ScaleByTrustRatioState "
        "ScaleByYogiState ScaleByZoomLinesearchState ScaleState TraceState "
        # building blocks (scale_by_* and other single transforms the optimizers chain)
        "scale_by_adadelta scale_by_adam scale_by_adamax scale_by_adan scale_by_amsgrad "
        "scale_by_backtracking_linesearch scale_by_belief scale_by_factored_rms scale_by_laprop "
        "scale_by_lbfgs "
        "scale_by_learning_rate scale_by_lion scale_by_novograd scale_by_optimistic_gradient "
        "scale_by_param_block_norm scale_by_param_block_rms scale_by_polyak scale_by_radam "
        "scale_by_rms scale_by_rprop scale_by_rss scale_by_sign scale_by_sm3 scale_by_stddev "
        "scale_by_trust_ratio scale_by_yogi scale_by_zoom_linesearch add_decayed_weights "
        "add_noise ema scale trace identity set_to_zero freeze rule_transform "
        # clipping transforms and norms
        "adaptive_grad_clip clip clip_by_block_rms clip_by_global_norm global_norm "
        "per_example_global_norm_clip per_example_layer_norm_clip unitwise_norm "
        # combinators and helpers (rows use them to build optimizers)
        "chain apply_updates path_labels "
        "path_mask skip_large_updates skip_not_finite value_and_grad_from_state "
        # schedules
        "constant_schedule cosine_decay_schedule cosine_onecycle_schedule exponential_decay "
        "join_schedules linear_onecycle_schedule linear_schedule piecewise_constant_schedule "
        "piecewise_interpolate_schedule polynomial_schedule sgdr_schedule "
        "warmup_constant_schedule warmup_cosine_decay_schedule warmup_exponential_decay_schedule "
        # sharding utilities
        "partition_state per_device_bytes state_shardings "
        # optax's small transforms, their states and target-network helpers
        "ApplyEvery NonNegativeParamsState ScaleByScheduleState ZeroNansState apply_every "
        "centralize incremental_update keep_params_nonnegative named_chain "
        "normalize_by_update_norm periodic_update scale_by_schedule zero_nans"
    ).split(),
    "contrib": (
        # state classes and dimension-number types
        "COCOBState DAdaptAdamWState DifferentiallyPrivateAggregateState DoGState DoWGState "
        "GaLoreState HutchinsonState MadgradState MechanicState MomoAdamState MomoState "
        "MuonState NormalizeState ProdigyState ReduceLROnPlateauState SAMState "
        "ScaleByAdemamixState ScaleByAdoptState ScaleByShapeState "
        "ScaleBySimplifiedAdEMAMixState ScheduleFreeState SoapState SophiaState "
        "SplitRealAndImaginaryState GaLoreDimensionNumbers MuonDimensionNumbers "
        # building blocks
        "scale_by_acprop scale_by_ademamix scale_by_adopt scale_by_cocob scale_by_dog "
        "scale_by_dowg scale_by_galore scale_by_madgrad scale_by_muon scale_by_shape "
        "scale_by_simplified_ademamix scale_by_soap scale_by_sophia "
        "ShampooState scale_by_shampoo "
        "NorMuonState AdaMuonState scale_by_normuon scale_by_adamuon "
        "QKClipSpec QKClipState qk_clip "
        "ScionNorm ScionState scale_by_scion "
        "DionState scale_by_dion "
        "KronState scale_by_kron precond_update_prob_schedule "
        "differentially_private_aggregate hutchinson_estimator_diag_hessian normalize "
        # functions of arrays or states
        "orthogonalize_via_newton_schulz schedule_free_eval_params"
    ).split(),
    "torch": (
        # torch.nn.utils' clipping, state_dict conversion (lr_scheduler: a module)
        "clip_grad_norm_ clip_grad_value_ get_total_norm from_torch_state_dict "
        "to_torch_state_dict"
    ).split(),
}
NAMESPACES = {"": optim_fn, "contrib": optim_fn.contrib, "torch": optim_fn.torch}


def _qualified(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def test_catalogue_covers_every_optimizer():
    rows = {entry.name for entry in catalogue.CATALOGUE}
    row_objects = [catalogue.public_object(name) for name in rows]
    missing, stale = [], []
    for prefix, module in NAMESPACES.items():
        excluded = set(NOT_OPTIMIZERS[prefix])
        stale += [_qualified(prefix, n) for n in excluded - set(module.__all__)]
        for name in module.__all__:
            qualified = _qualified(prefix, name)
            if qualified in rows or name in excluded:
                continue
            if isinstance(getattr(module, name), types.ModuleType):
                continue  # a subpackage (optim_fn.flat, optim_fn.torch.lr_scheduler, ...)
            # The same object exported twice (contrib.reduce_on_plateau is the top-level
            # one) is covered by the row of either name.
            if any(getattr(module, name) is obj for obj in row_objects):
                continue
            missing.append(qualified)
        assert not (excluded & {n for n in module.__all__ if _qualified(prefix, n) in rows})
    assert not missing, f"optimizers without a catalogue row (add rows to catalogue.py): {missing}"
    assert not stale, f"NOT_OPTIMIZERS names that are not exported any more: {stale}"


def _resolve(dotted: str) -> Any:
    """``"optax.contrib.muon"`` -> the object (the longest importable module, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


def test_every_row_names_a_public_optimizer_and_real_twins():
    pytest.importorskip("optax")
    for entry in catalogue.CATALOGUE:
        assert callable(catalogue.public_object(entry.name)), entry.name
        if entry.optax:
            assert entry.optax.startswith("optax."), entry.name
            assert callable(_resolve(entry.optax)), f"{entry.name}: no {entry.optax}"
        assert entry.torch is None or entry.torch.startswith("torch.optim."), entry.name
        assert entry.kind in ("optimizer", "wrapper"), entry.name


def test_torch_twins_exist():
    torch = pytest.importorskip("torch")
    for entry in catalogue.CATALOGUE:
        if entry.torch:
            assert hasattr(torch.optim, entry.torch.removeprefix("torch.optim.")), entry.name


def test_every_row_has_golden_files_and_no_file_is_stale():
    names = {entry.name for entry in catalogue.CATALOGUE}
    found = {
        "msgpack": {p.name.removesuffix(".msgpack") for p in (GOLDEN / "msgpack").iterdir()},
        "orbax": {p.name for p in (GOLDEN / "orbax").iterdir()},
        "steps": {p.name.removesuffix(".npz") for p in (GOLDEN / "steps").iterdir()},
        "MANIFEST.json": set(MANIFEST["rows"]),
    }
    for where, present in found.items():
        assert names - present == set(), f"rows without golden {where}: {names - present}"
        assert present - names == set(), f"golden {where} of no row: {present - names}"
