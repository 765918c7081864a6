"""The property checks, each usable alone, and :func:`check_transform` running all.

See :mod:`optim_fn.testing` for the list of properties and an example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.core.base import Params, Updates, apply_updates
from optim_fn.core.hyperparams import (
    ReadOnlyHyperparameterError,
    get_hyperparams,
    set_hyperparams,
)
from optim_fn.testing._harness import (
    HYPERPARAMS_ARE_DATA,
    JIT_MATCHES_EAGER,
    RETRACE_FIX,
    ZERO_GRAD_UPDATE,
    PropertyCheckError,
    Run,
    TracedStep,
    TransformLike,
    ZeroGradUpdate,
    assert_traced_once,
    assert_trees_close,
    check_state,
    check_updates,
    eager_update,
    jit_eager_rtol,
    leaf_name,
    prepare_inputs,
    resolve_transform,
    run_steps,
)


def check_structure(
    transform: TransformLike,
    params: Params = None,
    grads: Sequence[Updates] | None = None,
    *,
    steps: int | None = None,
    seed: int = 0,
    extra_args: dict | None = None,
) -> None:
    """Updates keep the gradients' structure/shapes/dtypes; the state keeps its own.

    Checked after every step, eagerly and under ``jax.jit``. ``params`` defaults to
    :func:`default_params`; ``grads`` (one tree per step) to ``steps`` (3) random trees.
    """
    transform = resolve_transform(transform)
    params, grads = prepare_inputs(params, grads, steps, seed)
    extra_args = dict(extra_args or {})
    for mode, update in (
        ("eager", eager_update(transform, extra_args)),
        ("jit", TracedStep(transform, extra_args)),
    ):
        run = run_steps(update, transform, params, grads, mode)
        _check_runs_states(run, mode)


def _check_runs_states(run: Run, mode: str) -> None:
    for index, state in enumerate(run.states, start=1):
        check_state(state, run.init_state, f"step {index} ({mode})")


def check_no_retrace(
    transform: TransformLike,
    params: Params = None,
    grads: Sequence[Updates] | None = None,
    *,
    steps: int | None = None,
    seed: int = 0,
    extra_args: dict | None = None,
) -> None:
    """A jitted step is traced once over ``steps`` (>= 2) steps; on failure the message
    names the input leaf whose shape, dtype or weak type changed."""
    transform = resolve_transform(transform)
    params, grads = prepare_inputs(params, grads, steps, seed)
    if len(grads) < 2:
        raise ValueError("check_no_retrace needs `steps` >= 2 (a retrace shows at step 2)")
    traced = TracedStep(transform, dict(extra_args or {}))
    run_steps(traced, transform, params, grads, "jit")
    assert_traced_once(traced, RETRACE_FIX)


def _compare_runs(eager: Run, jitted: Run, rtol, atol) -> None:
    eager_steps = zip(eager.updates, eager.states, strict=True)
    jit_steps = zip(jitted.updates, jitted.states, strict=True)
    for index, (eager_out, jit_out) in enumerate(zip(eager_steps, jit_steps, strict=True), 1):
        step = f"step {index}"
        for name, jit_tree, eager_tree in zip(
            ("updates", "state"), jit_out, eager_out, strict=True
        ):
            assert_trees_close(
                jit_tree,
                eager_tree,
                name,
                rtol,
                atol,
                JIT_MATCHES_EAGER,
                step,
                default_rtol=jit_eager_rtol,
            )


def check_jit_matches_eager(
    transform: TransformLike,
    params: Params = None,
    grads: Sequence[Updates] | None = None,
    *,
    steps: int | None = None,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    extra_args: dict | None = None,
) -> None:
    """The jitted update equals the op-by-op one at every step (updates and state).

    "Eager" runs under :func:`jax.disable_jit`, so even an update that compiles itself
    when called outside a trace is evaluated one operation at a time. Tolerance per leaf:
    ``|jit - eager| <= atol + rtol |eager|``, by default ``rtol`` = the square root of
    the leaf dtype's epsilon (3.5e-4 for float32, see ``jit_eager_rtol`` for why not
    tighter) and ``atol = rtol * max|eager leaf|``.
    """
    transform = resolve_transform(transform)
    params, grads = prepare_inputs(params, grads, steps, seed)
    extra_args = dict(extra_args or {})
    eager = run_steps(eager_update(transform, extra_args), transform, params, grads, "eager")
    jitted = run_steps(TracedStep(transform, extra_args), transform, params, grads, "jit")
    _compare_runs(eager, jitted, rtol, atol)


def _validate_expected(expected, argument: str) -> None:
    if not ((isinstance(expected, str) and expected == "zero") or callable(expected)):
        raise ValueError(
            f"`{argument}` must be 'zero' or a function of the params returning the "
            f"expected updates{' (or None to skip)' if argument == 'zero_grad_update' else ''}"
            f", got {expected!r}"
        )


def _check_zero_grads(update, transform, params, grads_like, expected, steps, rtol, atol):
    zeros = jax.tree.map(jnp.zeros_like, grads_like)
    state = transform.init(params)
    for index in range(1, steps + 1):
        step = f"step {index} of zero gradients"
        updates, state = update(zeros, state, params)
        check_updates(zeros, updates, step)
        if isinstance(expected, str):  # "zero"
            for path, leaf in jax.tree_util.tree_flatten_with_path(updates)[0]:
                values = np.abs(np.asarray(leaf).astype(np.complex128))
                bad = ~(values <= (0.0 if atol is None else atol))
                if bad.any():
                    raise PropertyCheckError(
                        ZERO_GRAD_UPDATE,
                        f"zero gradients from a fresh state should give a zero update, got "
                        f"{int(bad.sum())} of {values.size} entries nonzero or NaN "
                        f"(max |update| {np.max(values)}); if the rule moves params without a "
                        "gradient (weight decay), pass `zero_grad_update=` a function of the "
                        "params returning the expected update, or None",
                        step=step,
                        path=leaf_name("updates", path),
                    )
        else:
            assert_trees_close(
                updates,
                expected(params),
                "updates",
                rtol,
                atol,
                ZERO_GRAD_UPDATE,
                step,
                allow_nan=False,
            )
        params = apply_updates(params, updates)


def check_zero_grad_update(
    transform: TransformLike,
    params: Params = None,
    *,
    expected: str | Callable[[Params], Updates] = "zero",
    steps: int = 3,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    extra_args: dict | None = None,
) -> None:
    """From a fresh state, ``steps`` jitted steps of zero gradients give zero updates.

    ``expected="zero"`` asks for exact zeros (NaN fails; ``atol`` relaxes it);
    a function ``expected(params) -> updates`` gives the update expected at each step
    from the params of that step (e.g. ``-lr * wd * p`` for AdamW), compared within
    ``rtol`` (default 16 units in the last place of the leaf's dtype) and ``atol``
    (default ``rtol * max|expected leaf|``).
    """
    _validate_expected(expected, "expected")
    transform = resolve_transform(transform)
    params, _ = prepare_inputs(params, None, 1, seed)
    update = TracedStep(transform, dict(extra_args or {}))
    _check_zero_grads(update, transform, params, params, expected, steps, rtol, atol)


def _scaled(value: jax.Array) -> jax.Array:
    # Halving keeps decay rates in [0, 1) and non-negative values non-negative; an
    # integer hyperparameter (a patience, a period) grows by one instead.
    value = np.asarray(value)
    return value + 1 if np.issubdtype(value.dtype, np.integer) else value * 0.5


def _check_hyperparams(update: TracedStep, transform, params, grads) -> None:
    state = transform.init(params)
    update(grads, state, params)  # the reference trace, with the values from init
    try:
        names = get_hyperparams(state)
    except TypeError:  # an optax state without hyperparameters: nothing to set
        return
    for name, value in names.items():
        try:
            changed = set_hyperparams(state, **{name: _scaled(value)})
        except ReadOnlyHyperparameterError:  # scheduled or derived: not settable by design
            continue
        read_back = get_hyperparams(changed)[name]
        if not np.allclose(np.asarray(read_back), _scaled(value), rtol=1e-6):
            raise PropertyCheckError(
                HYPERPARAMS_ARE_DATA,
                f"set_hyperparams({name}={_scaled(value)}) then get_hyperparams gives {read_back}",
                path=name,
            )
        update(grads, changed, params)
    assert_traced_once(
        update,
        "Keep hyperparameters as arrays in the state (see optim_fn.core.hyperparams) so that a "
        "new value is new data, not a new program.",
    )


def check_hyperparams_are_data(
    transform: TransformLike,
    params: Params = None,
    grads: Updates = None,
    *,
    seed: int = 0,
    extra_args: dict | None = None,
) -> None:
    """Setting any hyperparameter with ``set_hyperparams`` does not retrace a jitted step.

    Each settable hyperparameter :func:`optim_fn.get_hyperparams` finds in the state is
    halved in turn and read back; a state without hyperparameters passes trivially.
    """
    transform = resolve_transform(transform)
    params, grads_seq = prepare_inputs(params, None if grads is None else [grads], None, seed)
    update = TracedStep(transform, dict(extra_args or {}))
    _check_hyperparams(update, transform, params, grads_seq[0])


def check_transform(
    transform: TransformLike,
    params: Params = None,
    grads: Sequence[Updates] | None = None,
    *,
    steps: int | None = None,
    zero_grad_update: ZeroGradUpdate = "zero",
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    extra_args: dict | None = None,
) -> None:
    """Runs every property check on ``transform`` in one go, sharing the compiled step.

    Args:
      transform: a gradient transformation, or a function of no arguments building one.
      params: the param tree (default :func:`default_params`).
      grads: one gradient tree per step (default ``steps`` random trees like ``params``).
      steps: the number of steps (default 3) when ``grads`` is not given.
      zero_grad_update: ``"zero"`` (zero gradients give exactly zero updates), ``None``
        (skip that check) or ``expected(params) -> updates``.
      seed: seeds the default params and gradients.
      rtol, atol: tolerances of the value comparisons (defaults in
        :func:`check_jit_matches_eager` and :func:`check_zero_grad_update`).
      extra_args: keyword arguments passed to every ``update`` call.

    The checks, in order: structure and dtypes (eager and jit runs), no retrace, jit
    matches eager, zero gradient update (on the same jitted step: still one trace),
    hyperparameters are data. The first property broken raises.

    Raises:
      PropertyCheckError: naming the property, the step and the leaf path.
    """
    if zero_grad_update is not None:
        _validate_expected(zero_grad_update, "zero_grad_update")
    transform = resolve_transform(transform)
    params, grads = prepare_inputs(params, grads, steps, seed)
    extra_args = dict(extra_args or {})
    traced = TracedStep(transform, extra_args)
    eager = run_steps(eager_update(transform, extra_args), transform, params, grads, "eager")
    jitted = run_steps(traced, transform, params, grads, "jit")
    _check_runs_states(eager, "eager")
    _check_runs_states(jitted, "jit")
    assert_traced_once(traced, RETRACE_FIX)
    _compare_runs(eager, jitted, rtol, atol)
    if zero_grad_update is not None:
        _check_zero_grads(
            traced, transform, params, grads[0], zero_grad_update, len(grads), rtol, atol
        )
        assert_traced_once(traced, RETRACE_FIX)
    _check_hyperparams(traced, transform, params, grads[0])
