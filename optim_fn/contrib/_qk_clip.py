"""MuonClip's QK-clip as a transform: chain it after any optimizer (Kimi K2, 2025)."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax

from optim_fn.core import validation as check
from optim_fn.core.base import Array, GradientTransformationExtraArgs, ScalarOrSchedule
from optim_fn.core.hyperparams import Hyperparams
from optim_fn.core.lift import rule_transform
from optim_fn.core.validation import checks_once
from optim_fn.rules import qk_clip as rules


class QKClipSpec(NamedTuple):
    """Marks a param leaf as the query or key weight of attention layer ``layer``.

    ``output_axis``: the axis of size ``num_heads x head_dim`` (heads in blocks).
    """

    layer: str
    role: Literal["query", "key"]
    num_heads: int
    output_axis: int = -1


class QKClipState(NamedTuple):
    count: Array
    hyperparams: Hyperparams


def _is_spec(x: Any) -> bool:
    return isinstance(x, QKClipSpec)


def _specs_per_leaf(updates: Any, spec: Any) -> list:
    with_none = jax.tree.leaves(updates, is_leaf=lambda x: x is None)
    resolved = spec(updates) if callable(spec) else spec
    found = jax.tree.leaves(resolved, is_leaf=lambda x: x is None or _is_spec(x))
    if len(found) != len(with_none):
        raise ValueError(
            "qk_clip: `heads` must be a tree (or a function of the params returning one) "
            "with one QKClipSpec (or None, for leaves left alone) per param leaf"
        )
    result = []
    for leaf, s in zip(with_none, found, strict=True):
        if leaf is None:
            continue
        if s is not None:
            if s.role not in ("query", "key"):
                raise ValueError(f"qk_clip: role must be 'query' or 'key', got {s.role!r}")
            size = leaf.shape[s.output_axis]
            if s.num_heads < 1 or size % s.num_heads:
                raise ValueError(
                    f"qk_clip: {s.num_heads} heads do not divide axis {s.output_axis} "
                    f"(size {size}) of the {s.role} weight of layer {s.layer!r}; fix "
                    "`num_heads` or `output_axis` in its QKClipSpec"
                )
        result.append({"spec": s})
    return result


def _rule(update, *, param, spec, max_logits, threshold, alpha):
    if spec is None:
        return (update,)
    if max_logits is None or spec.layer not in max_logits:
        raise ValueError(
            f"qk_clip: `update` needs `max_logits={{{spec.layer!r}: per-head maxima, ...}}` "
            "(the largest attention logit of each head in this step's forward pass)"
        )
    power = alpha if spec.role == "query" else 1 - alpha
    return rules.qk_clip(
        update, param=param, max_logit=max_logits[spec.layer], threshold=threshold,
        power=power, num_heads=spec.num_heads, output_axis=spec.output_axis % param.ndim,
    )


@checks_once
def qk_clip(
    heads: Any,
    threshold: ScalarOrSchedule = 100.0,
    alpha: ScalarOrSchedule = 0.5,
) -> GradientTransformationExtraArgs:
    r"""QK-clip (MuonClip): caps each attention head's logits after the optimizer's step.

    Chain it last, after any optimizer (``chain(muon(...), qk_clip(heads))``); ``update``
    then takes ``max_logits={layer: S}``, each ``S`` of shape ``(num_heads,)`` holding the
    largest attention logit of each head in the step's forward pass. For each query and
    key weight (``heads``: a tree, or a function of the params returning one, with a
    :class:`QKClipSpec` for those leaves and None elsewhere), with
    :math:`\eta_h = \min(1, \tau / S_h)`:

    .. math::
        W_q^h \leftarrow \eta_h^{\alpha} W_q^h,\qquad W_k^h \leftarrow \eta_h^{1-\alpha} W_k^h

    applied to the params after the step (the returned update lands on them), so head
    ``h``'s logits scale by :math:`\eta_h`; heads under the threshold are untouched.
    Defaults: ``threshold=100`` (:math:`\tau`), ``alpha=0.5`` (the report's multi-head
    attention form; its MLA form, which scales the rotary parts differently, is not
    provided). Reference: Kimi Team, "Kimi K2: Open Agentic Intelligence" (2025),
    arXiv 2507.20534; optax PR #1383.
    """
    check.check_non_negative("qk_clip", "threshold", threshold)
    check.check_scalar("qk_clip", "alpha", alpha)
    if not callable(alpha) and not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"qk_clip: `alpha` must be in [0, 1], got {alpha!r}")
    return rule_transform(
        _rule,
        QKClipState,
        init_slots=lambda param: (),
        hyperparams={"threshold": threshold, "alpha": alpha},
        uses_params=True,
        leaf_keywords=lambda updates: _specs_per_leaf(updates, heads),
        extra_args=("max_logits",),
        name="qk_clip",
        flat_reason="it rescales each query and key weight head by head",
    )
