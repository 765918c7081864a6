"""A small decoder-only transformer in flax nnx (pre-norm, causal, learned positions)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from optim_fn.experiments.workloads._base import require_flax


def make_transformer(
    rngs: Any,
    *,
    vocab: int,
    length: int,
    width: int = 64,
    heads: int = 4,
    layers: int = 1,
    hidden: int | None = None,
) -> Any:
    """``tokens (batch, length) -> logits (batch, length, vocab)``.

    Each layer: ``x + attention(norm(x))`` with a causal mask, then ``x + mlp(norm(x))``
    (GELU, ``hidden`` units, default ``4 * width``); a final norm and an untied unembedding.
    """
    nnx = require_flax()
    hidden = 4 * width if hidden is None else hidden

    if width % heads:
        raise ValueError(f"width must be a multiple of heads, got width={width}, heads={heads}")

    class CausalSelfAttention(nnx.Module):
        # Written out rather than nnx.MultiHeadAttention, whose softmax runs in float32
        # even for float64 inputs (the gradient tests compare with float64 differences).
        def __init__(self, rngs: Any) -> None:
            self.qkv = nnx.Linear(width, 3 * width, rngs=rngs)
            self.out = nnx.Linear(width, width, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            batch, length, _ = x.shape
            q, k, v = jnp.split(self.qkv(x).reshape(batch, length, 3 * heads, -1), 3, axis=2)
            scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(x.dtype)
            causal = jnp.tril(jnp.ones((length, length), bool))
            weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
            mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, length, width)
            return self.out(mixed)

    class Block(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.norm1 = nnx.LayerNorm(width, rngs=rngs)
            self.attention = CausalSelfAttention(rngs)
            self.norm2 = nnx.LayerNorm(width, rngs=rngs)
            self.up = nnx.Linear(width, hidden, rngs=rngs)
            self.down = nnx.Linear(hidden, width, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            x = x + self.attention(self.norm1(x))
            return x + self.down(jax.nn.gelu(self.up(self.norm2(x))))

    class Transformer(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.embed = nnx.Embed(vocab, width, rngs=rngs)
            self.position = nnx.Param(0.02 * jax.random.normal(rngs.params(), (length, width)))
            self.blocks = nnx.List([Block(rngs) for _ in range(layers)])
            self.norm = nnx.LayerNorm(width, rngs=rngs)
            self.unembed = nnx.Linear(width, vocab, rngs=rngs)

        def __call__(self, tokens: jax.Array) -> jax.Array:
            # a plain lookup: nnx.Embed would cast to its param_dtype, and the gradient
            # tests run the model in float64
            x = self.embed.embedding[...][tokens] + self.position[...][: tokens.shape[-1]]
            for block in self.blocks:
                x = block(x)
            return self.unembed(self.norm(x))

    return Transformer(rngs)


__all__ = ["make_transformer"]
