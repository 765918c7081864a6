"""QK-clip (Kimi K2's MuonClip, arXiv 2507.20534) as a transform chained after a step.

Checked by what it promises: after the clip, each head's largest attention logit (at the
stepped params) is ``min(S_h, tau)``; the clipped head's query weight is scaled by
``eta^alpha``; the other heads and the other leaves are left bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim_fn
import optim_fn.contrib as contrib

HEADS, HEAD_DIM, MODEL = 3, 2, 4


def _max_logits(params, x):
    """Each head's largest logit ``q_i . k_j`` over the sequence ``x`` (flax layout)."""
    q = (x @ params["wq"]).reshape(len(x), HEADS, HEAD_DIM)
    k = (x @ params["wk"]).reshape(len(x), HEADS, HEAD_DIM)
    return np.max(np.einsum("ihd,jhd->hij", q, k), axis=(1, 2))


def test_qk_clip_caps_each_heads_logits():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, MODEL))
    spec = contrib.QKClipSpec
    heads = {"wq": spec("attn", "query", HEADS), "wk": spec("attn", "key", HEADS),
             "wv": None, "bias": None}
    params = {"wq": 2 * rng.standard_normal((MODEL, HEADS * HEAD_DIM)),
              "wk": 2 * rng.standard_normal((MODEL, HEADS * HEAD_DIM)),
              "wv": rng.standard_normal((MODEL, HEADS * HEAD_DIM)), "bias": np.ones(4)}
    grads = {k: 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
    with jax.enable_x64(True):
        for alpha in (0.5, 0.8):
            inner = optim_fn.sgd(0.1)
            stepped = optim_fn.apply_updates(params, inner.update(grads, inner.init(params))[0])
            logits = _max_logits(stepped, x)
            threshold = float(np.sort(logits)[1])  # clips the largest head only
            opt = optim_fn.chain(optim_fn.sgd(0.1), contrib.qk_clip(heads, threshold, alpha))
            step = jax.jit(opt.update)
            updates, _ = step(grads, opt.init(params), params, max_logits={"attn": logits})
            clipped = {k: np.asarray(v) for k, v in optim_fn.apply_updates(params,
                                                                             updates).items()}
            np.testing.assert_allclose(_max_logits(clipped, x), np.minimum(logits, threshold),
                                       rtol=1e-12)
            top = int(np.argmax(logits))
            columns = slice(top * HEAD_DIM, (top + 1) * HEAD_DIM)
            eta = threshold / logits[top]
            np.testing.assert_allclose(clipped["wq"][:, columns],
                                       eta**alpha * stepped["wq"][:, columns], rtol=1e-12)
            others = np.ones(HEADS * HEAD_DIM, bool)
            others[columns] = False
            for k in ("wq", "wk"):  # heads under the threshold: untouched, bit for bit
                assert np.array_equal(clipped[k][:, others], np.asarray(stepped[k])[:, others])
            for k in ("wv", "bias"):
                assert np.array_equal(clipped[k], np.asarray(stepped[k]))


def test_qk_clip_refuses_bad_input():
    params = {"wq": jnp.zeros((4, 6))}
    opt = contrib.qk_clip({"wq": contrib.QKClipSpec("attn", "query", 4)})
    with pytest.raises(ValueError, match="num_heads"):
        opt.update(params, opt.init(params), params, max_logits={"attn": jnp.ones(4)})
    opt = contrib.qk_clip({"wq": contrib.QKClipSpec("attn", "query", 3)})
    with pytest.raises(ValueError, match="max_logits"):
        opt.update(params, opt.init(params), params)
    with pytest.raises(ValueError, match="alpha"):
        contrib.qk_clip({"wq": None}, alpha=2.0)
