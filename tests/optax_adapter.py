"""Stands in for ``optax._src.alias`` so optax's own alias tests run on optim_fn.

optax's ``alias_test.py`` looks its optimizers up as ``alias.<name>`` at call time; this
module has the same names, bound to optim_fn's implementations. Only names optim_fn
provides are here: a test that asks for another one (L-BFGS belongs to
``optim_fn.lbfgs`` and its own suite) fails its lookup with AttributeError, which
``tests/test_optax_alias_suite.py`` turns into a skip.
"""

from __future__ import annotations

import optim_fn

NAMES = (
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "amsgrad",
    "fromage",
    "lamb",
    "lars",
    "lion",
    "nadam",
    "nadamw",
    "noisy_sgd",
    "novograd",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
    "sign_sgd",
    "signum",
    "sm3",
    "yogi",
)

globals().update({name: getattr(optim_fn, name) for name in NAMES})
