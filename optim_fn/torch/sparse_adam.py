"""``torch.optim.SparseAdam`` for sparse gradients given as ``jax.experimental.sparse.BCOO``.

Representation: each gradient leaf is a ``BCOO`` array with the param's shape and no
batch dimensions (``n_batch=0``); its sparse dimensions index entries (or rows, with
dense trailing dimensions, as an embedding's gradient ``BCOO((rows_values, row_ids),
shape=table.shape)``). Duplicated indices are summed first, as torch's ``coalesce()``.
Only the entries present move: their moments and params; everything else is untouched.
The update returned is dense (zeros elsewhere), so ``optim_fn.apply_updates`` applies it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import sparse

from optim_fn.core import hyperparams as hp
from optim_fn.core.base import GradientTransformationExtraArgs, ScalarOrSchedule
from optim_fn.core.lift import rule_transform
from optim_fn.torch.porting import torch_optimizer


class SparseAdamState(NamedTuple):
    count: jax.Array
    exp_avg: Any
    exp_avg_sq: Any
    hyperparams: hp.Hyperparams


def _is_sparse(x: Any) -> bool:
    return isinstance(x, sparse.BCOO)


def _init_state(params):
    for leaf in jax.tree.leaves(params):
        if jnp.iscomplexobj(leaf):
            raise ValueError("SparseAdam does not support complex parameters (`params`)")
    return jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params)


def _sparse_leaf(grad, m, v, count, h, maximize):
    """One leaf: lazy Adam on the entries present in ``grad``; the update is dense."""
    if not _is_sparse(grad):
        raise ValueError(
            "SparseAdam needs sparse gradients: pass each gradient as a "
            "jax.experimental.sparse.BCOO (or use optim_fn.torch.Adam for dense ones)"
        )
    if grad.n_batch != 0:
        raise ValueError("SparseAdam: BCOO gradients with batch dimensions are not supported")
    grad = grad.sum_duplicates(nse=grad.nse)
    index = tuple(grad.indices[:, i] for i in range(grad.n_sparse))
    values = -grad.data if maximize else grad.data
    old_m = m.at[index].get(mode="fill", fill_value=0)
    old_v = v.at[index].get(mode="fill", fill_value=0)
    delta_m = (values - old_m) * h["one_minus_beta1"]
    delta_v = (values * values - old_v) * h["one_minus_beta2"]
    numer = delta_m + old_m
    denom = jnp.sqrt(delta_v + old_v) + h["eps"]
    t = count.astype(h["lr"].dtype)
    correction1 = -jnp.expm1(t * jnp.log1p(-h["one_minus_beta1"]))
    correction2 = -jnp.expm1(t * jnp.log1p(-h["one_minus_beta2"]))
    step_size = (h["lr"] * jnp.sqrt(correction2) / correction1).astype(m.dtype)
    update = jnp.zeros_like(m).at[index].add(-step_size * (numer / denom), mode="drop")
    new_m = m.at[index].add(delta_m, mode="drop")
    new_v = v.at[index].add(delta_v, mode="drop")
    return update, new_m, new_v


def _sparse_adam_rule(grads, exp_avg, exp_avg_sq, *, count, maximize, **hyperparams):
    """Whole tree, because a sparse gradient is a pytree node (BCOO), not one leaf."""
    grad_leaves, treedef = jax.tree.flatten(grads, is_leaf=_is_sparse)
    m_leaves = treedef.flatten_up_to(exp_avg)
    v_leaves = treedef.flatten_up_to(exp_avg_sq)
    out = [
        _sparse_leaf(g, m, v, count, hyperparams, maximize)
        for g, m, v in zip(grad_leaves, m_leaves, v_leaves, strict=True)
    ]
    return tuple(jax.tree.unflatten(treedef, [o[i] for o in out]) for i in range(3))


@torch_optimizer
def SparseAdam(  # noqa: N802 - torch's class name
    lr: ScalarOrSchedule = 1e-3,
    betas: tuple[ScalarOrSchedule, ScalarOrSchedule] = (0.9, 0.999),
    eps: ScalarOrSchedule = 1e-8,
    maximize: bool = False,
) -> GradientTransformationExtraArgs:
    """``torch.optim.SparseAdam``: lazy Adam on the entries present in a sparse gradient.

    .. math::
        m_i \\mathrel{+}= (1-\\beta_1)(g_i - m_i), \\quad
        v_i \\mathrel{+}= (1-\\beta_2)(g_i^2 - v_i), \\quad
        p_i \\mathrel{-}= \\eta \\frac{\\sqrt{1-\\beta_2^t}}{1-\\beta_1^t}
        \\frac{m_i}{\\sqrt{v_i} + \\epsilon}

    for the indices ``i`` in the gradient (eps on the RAW :math:`\\sqrt{v}`, unlike
    Adam). ``t`` counts every update, even one whose gradient has no entries.
    Defaults as torch. Real params only.
    """
    where = "SparseAdam"
    b1, b2 = betas
    for value, label, name in [(lr, "learning rate", "lr"), (eps, "epsilon value", "eps")]:
        if not callable(value) and not 0.0 < float(value):
            raise ValueError(f"{where}: Invalid {label}: {value} (`{name}` must be > 0)")
    for index, value in enumerate((b1, b2)):
        if not callable(value) and not 0.0 <= float(value) < 1.0:
            raise ValueError(
                f"{where}: Invalid beta parameter at index {index}: {value} "
                f"(`betas[{index}]` must be in [0, 1))"
            )
    return rule_transform(
        _sparse_adam_rule,
        SparseAdamState,
        slots=("exp_avg", "exp_avg_sq"),
        init_state=_init_state,
        hyperparams={"lr": lr, "beta1": b1, "beta2": b2, "eps": eps},
        decays=("beta1", "beta2"),
        static={"maximize": maximize},
        name=where,
    )
