"""Property checks that every gradient transformation should pass, in one call.

Run them on a transform of your own (an optim_fn chain, a ``rule_transform``, an optax
transform) exactly as optim_fn's own test suite runs them on its optimizers::

    import optim_fn.testing

    optim_fn.testing.check_transform(optim_fn.adam(1e-3))        # a default param tree
    optim_fn.testing.check_transform(
        lambda: optim_fn.adamw(1e-3, weight_decay=0.1),          # or a factory
        params,
        zero_grad_update=lambda p: jax.tree.map(lambda x: -1e-3 * 0.1 * x, p),
    )

The properties, each also a function of its own:

* :func:`check_structure`: updates have the gradients' tree structure, shapes and
  dtypes; the state keeps the structure, shapes and dtypes ``init`` gave it.
* :func:`check_no_retrace`: a jitted step is traced once, i.e. ``update`` returns a
  state with the same shapes, dtypes and weak types as the state ``init`` returned.
* :func:`check_jit_matches_eager`: the jitted update gives the values of the un-jitted
  one, step after step (updates and state).
* :func:`check_zero_grad_update`: from a fresh state, zero gradients give exactly zero
  updates (or the updates you say, e.g. pure weight decay).
* :func:`check_hyperparams_are_data`: changing any hyperparameter with
  :func:`optim_fn.set_hyperparams` between steps does not retrace the jitted step.

A broken property raises :class:`PropertyCheckError` (an ``AssertionError``) that names
the property, the step and the leaf path, e.g. ``property 'structure and dtypes' failed
at step 1 (jit), leaf updates['w']: dtype float32, but the gradient there is bfloat16``.

:func:`pytrees`, :func:`gradients` and :func:`params_and_grads` are hypothesis
strategies for random inputs. hypothesis is a test dependency (``pip install
"optim-fn[test]"``); the checks themselves work without it.
"""

from optim_fn.testing._harness import (
    HYPERPARAMS_ARE_DATA,
    JIT_MATCHES_EAGER,
    NO_RETRACE,
    STRUCTURE,
    ZERO_GRAD_UPDATE,
    PropertyCheckError,
    default_params,
    random_grads,
)
from optim_fn.testing.checks import (
    check_hyperparams_are_data,
    check_jit_matches_eager,
    check_no_retrace,
    check_structure,
    check_transform,
    check_zero_grad_update,
)
from optim_fn.testing.strategies import Pair, gradients, params_and_grads, pytrees

__all__ = [
    "HYPERPARAMS_ARE_DATA",
    "JIT_MATCHES_EAGER",
    "NO_RETRACE",
    "STRUCTURE",
    "ZERO_GRAD_UPDATE",
    "Pair",
    "PropertyCheckError",
    "check_hyperparams_are_data",
    "check_jit_matches_eager",
    "check_no_retrace",
    "check_structure",
    "check_transform",
    "check_zero_grad_update",
    "default_params",
    "gradients",
    "params_and_grads",
    "pytrees",
    "random_grads",
]
