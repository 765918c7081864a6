"""optax's own test files beyond ``alias_test.py``, run on optim_fn.

The files ship with optax (0.2.8); nothing of them is copied here. Each file in
``FILES`` is imported and every optax module it names (``transform``, ``combine``,
``_linesearch``, ``_masking``, ``schedules``, ``contrib``, ...) is replaced, in that
file's namespace only, by a ``tests/optax_adapter.Namespace`` that answers each name with
optim_fn's namesake and falls back to optax's where optim_fn has none (optax's base types,
``test_utils``, ``numerics``, ``optax.tree``). Its test classes are subclassed so that
pytest collects them.

Skipped, each with its reason in ``SKIPS`` (the reasons show with ``pytest -rs``):
tests of optax's private layout or of a deliberate difference listed in
docs/differences.md, and the tests optax itself skips. By default (about a fifth of the
cost) a test parametrised over many numbered cases runs every ``stride``-th case
(``SAMPLE`` of each) and the ``SLOW`` tests are left out; ``OPTIM_FN_OPTAX_SUITE=full``
runs everything.

Counts (optax 0.2.8; 26 files, 1125 tests; two busy CPU cores, ``-n 2``):

* default: 270 passed, 855 skipped (749 by the sampling, 30 ``SLOW``, 76 in ``SKIPS`` or
  optax's own), 67 CPU-seconds (75 s wall);
* ``OPTIM_FN_OPTAX_SUITE=full``: 1038 passed, 87 skipped, 0 failed, 280 CPU-seconds. The
  87: 75 in ``SKIPS`` (2 of them a known optim_fn bug outside this suite's scope, named
  there), 12 optax's own (an optimizer whose ``learning_rate`` annotation is not
  ``ScalarOrSchedule``, complex params for schedule-free, a scipy TODO, reduce_on_plateau
  under inject_hyperparams).
"""

from __future__ import annotations

import collections
import importlib
import os
import re
import unittest

import optax_adapter

FULL = os.environ.get("OPTIM_FN_OPTAX_SUITE") == "full"

FILES = (
    "optax._src.transform_test",
    "optax._src.combine_test",
    "optax._src.lookahead_test",
    "optax._src.linesearch_test",
    "optax.transforms._accumulation_test",
    "optax.transforms._adding_test",
    "optax.transforms._clipping_test",
    "optax.transforms._combining_test",
    "optax.transforms._conditionality_test",
    "optax.transforms._constraining_test",
    "optax.transforms._freezing_test",
    "optax.transforms._layouts_test",
    "optax.transforms._masking_test",
    "optax.transforms._monitoring_test",
    "optax.schedules._inject_test",
    "optax.schedules._join_test",
    "optax.schedules._schedule_test",
    "optax.contrib._common_test",
    "optax.contrib._complex_valued_test",
    "optax.contrib._galore_test",
    "optax.contrib._mechanic_test",
    "optax.contrib._muon_test",
    "optax.contrib._privacy_test",
    "optax.contrib._reduce_on_plateau_test",
    "optax.contrib._sam_test",
    "optax.contrib._schedule_free_test",
)

# Every test skipped, and why: (optax file, regex on "Class.test_method") -> reason.
# "differences.md: X" names the row of docs/differences.md that lists the difference.
AT_CONSTRUCTION = (
    "passes an argument optim_fn refuses when the transform is built (ValueError naming "
    "it; differences.md: argument errors)"
)
NOT_INIT_STATE = (
    "calls `update` with a state that `init` did not make ({}, None or 0): optim_fn's "
    "transforms keep their hyperparameters in the state (differences.md: states of the "
    "family)"
)
OPTAX_MESSAGE = (
    "asserts the wording of optax's (or jax's) error message; optim_fn raises the same "
    "exception type with a message naming the argument and the fix (differences.md: "
    "error messages)"
)
SKIPS: dict[tuple[str, str], str] = {
    ("transform_test", r"TransformTest\.test_lion_invalid_mode_raises$"): AT_CONSTRUCTION,
    ("transform_test", r"TransformTest\.test_scale$"): NOT_INIT_STATE,
    ("combine_test", r"ExtraArgsTest\.test_extra_args$"): (
        "integer params ({'a': 1, 'b': 2}): optim_fn refuses them at init (differences.md: "
        "integer params)"
    ),
    ("_combining_test", r"ExtraArgsTest\.test_extra_args$"): (
        "integer params ({'a': 1, 'b': 2}): optim_fn refuses them at init (differences.md: "
        "integer params)"
    ),
    ("linesearch_test", r".*LinesearchTest\.test_dtype_stability"): (
        "gives every keyword the value 1e-5, so increase_factor < 1 (and, for zoom, "
        "slope_rtol == curv_rtol): " + AT_CONSTRUCTION + "; the same dtype mix with valid "
        "values runs in tests/test_optax_behaviours.py"
    ),
    ("linesearch_test", r".*test_(zoom_)?linesearch_raises_on_unused_extra_args$"): OPTAX_MESSAGE,
    ("_adding_test", r"AddingTest\.test_none_argument$"): NOT_INIT_STATE,
    ("_clipping_test", r"ClippingTest\.test_(clip|clip_by_block_rms|clip_by_global_norm"
     r"|adaptive_grad_clip\w*)$"): NOT_INIT_STATE,
    ("_freezing_test", r".*\.test_\w*bad_structure\w*$"): OPTAX_MESSAGE,
    ("_inject_test", r"InjectHyperparamsTest\.test_hyperparam_default_dtype_(bf16|f32)$"): (
        "expects bf16 hyperparameters (bf16 params, or a bf16 array given); optim_fn "
        "stores float hyperparameters in float32 at least (differences.md: hyperparameters)"
    ),
    ("_inject_test", r"StatefulTest\.test_inject_stateful_hyperparams$"): (
        "an optax.StatefulSchedule (a schedule with its own state): not supported by "
        "optim_fn.inject_hyperparams (differences.md: inject_hyperparams)"
    ),
    ("_masking_test", r"MaskedTest\.test_masked_state_structure$"): (
        "masked-out leaves are None in optim_fn's inner state, optax's MaskedNode() "
        "(differences.md: masked)"
    ),
    ("_masking_test", r"MaskedTest\.test_tree_map_params$"): (
        "its last subtest finds masked-out leaves by optax's MaskedNode (differences.md: "
        "masked); tree_map_params over a masked state is checked in "
        "tests/test_optax_behaviours.py"
    ),
    ("_muon_test", r"MuonTest\.test_dim_nums_combinations_\w+$"): (
        "reads muon's state by position (state[0]['muon'][0][0][1]), optax's private "
        "layout; optim_fn's muon state is laid out differently"
    ),
    # Tests of optax's private helpers: they would run optax's code, not optim_fn's.
    ("linesearch_test", r".*\.test_extract_fns_kwargs$"): (
        "tests optax's private helper _linesearch._extract_fns_kwargs"
    ),
    ("_muon_test", r"MuonTest\.test_reshape_inverse\w*$"): (
        "tests optax's private helper _muon._compute_muon_reshape"
    ),
    ("_masking_test", r"MaskedTest\.test_mask_compatible_callable_pytree$"): (
        "its first subtest tests optax's private helper _masking._mask_callable; a "
        "callable tree of bools as a mask is checked in tests/test_optax_behaviours.py"
    ),
    ("_reduce_on_plateau_test", r"ReduceLROnPlateauTest\.test_learning_rate_(is_not_reduced"
     r"|not_reduced_after_end_scale_is_reached|not_reduced_during_cooldown)\d*$"): (
        "builds a ReduceLROnPlateauState with optax's fields only; optim_fn's also holds "
        "the hyperparameters (differences.md: states of the family)"
    ),
    ("_schedule_test", r"(ExponentialTest\.test_nonvalid_\w+|PolynomialTest\."
     r"test_zero_steps_schedule)$"): (
        "optax turns a non-positive transition_steps or decay_rate into a constant schedule "
        "(logging a warning); " + AT_CONSTRUCTION
    ),
}


# By default a parametrised test with many numbered cases runs every `stride`-th of them
# (about SAMPLE of each, a prime stride so that products of options are not all cut the
# same way), and the slowest single tests are left out.
SAMPLE = 4
SLOW = {
    # (optax file, regex on "Class.test_method"): seconds (one core, two busy)
    ("_accumulation_test", r"AccumulationTest\.test_multi_steps_mixed_precision\d$"): 15,
    ("_sam_test", r"SAMTest\.test_optimization[1-3]$"): 9,
    ("_muon_test", r"MuonTest\.test_newton_schulz$"): 9,
    ("_muon_test", r"MuonTest\.test_(aol_numerical_difference|callable_weight_dim_nums_\w+"
     r"|reshape_\w+_(aol|frobenius))$"): 6,
    ("_privacy_test", r"DifferentiallyPrivateAggregateTest\.test_(clipping_norm[1-4]"
     r"|noise_multiplier[1-3])$"): 4,
    ("_galore_test", r"GaLoreTest\.test_(converges_on_simple_quadratic_2d"
     r"|projector_orthonormality_after_update)$"): 4,
    # one orthogonalisation mode of each (frobenius / standard) runs by default
    ("_muon_test", r"MuonTest\.test_\w+_(aol|schatten)(_\w+)?$"): 3,
}


def _stride(count: int) -> int:
    stride = max(1, -(-count // SAMPLE))
    while stride > 2 and any(stride % d == 0 for d in range(2, int(stride**0.5) + 1)):
        stride += 1
    return stride


def _default_skip(short: str, qualified: str, method: str, families: dict) -> str | None:
    for (file, pattern), seconds in SLOW.items():
        if file == short and re.match(pattern, qualified):
            return f"slow ({seconds} s): OPTIM_FN_OPTAX_SUITE=full"
    match = re.fullmatch(r"(.*?)(\d+)", method)
    if match and families.get(match[1], 0) > SAMPLE:
        count = families[match[1]]
        stride = _stride(count)
        if int(match[2]) % stride:
            return (
                f"default subset: case 0, {stride}, {2 * stride}, ... of {count}: "
                "OPTIM_FN_OPTAX_SUITE=full"
            )
    return None


def _skipped(reason: str):
    @unittest.skip(reason)
    def skip(self):
        pass

    return skip


def _collect(module_name: str) -> dict[str, type]:
    """optax's test classes of ``module_name``, pointed at optim_fn, with the skips."""
    short = module_name.rsplit(".", 1)[-1]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:  # one of the file's own test dependencies is missing
        reason = f"optax's {short}.py cannot be imported here: {error}"
        return {f"Test_{short}": type(f"Test_{short}", (unittest.TestCase,),
                                      {"test_file": _skipped(reason)})}
    optax_adapter.point_at_optim_fn(module)
    classes = {}
    for name, value in vars(module).items():
        if not (
            isinstance(value, type)
            and issubclass(value, unittest.TestCase)
            and value.__module__ == module_name
        ):
            continue
        methods = [m for m in dir(value) if m.startswith("test")]
        families = collections.Counter(
            match[1] for m in methods if (match := re.fullmatch(r"(.*?)(\d+)", m))
        )
        overrides = {}
        for method in methods:
            qualified = f"{name}.{method}"
            reason = next(
                (r for (file, pattern), r in SKIPS.items()
                 if file == short and re.match(pattern, qualified)),
                None,
            )
            if reason is None and not FULL:
                reason = _default_skip(short, qualified, method, families)
            if reason is not None:
                overrides[method] = _skipped(reason)
        classes[f"Test_{short}_{name}"] = type(f"Test_{short}_{name}", (value,), overrides)
    return classes


for _module_name in FILES:
    globals().update(_collect(_module_name))
