"""The parameter trees the benchmarks run on (shapes only; values are random)."""

from __future__ import annotations

import numpy as np


def one_leaf(scale: float) -> dict[str, tuple[int, ...]]:
    return {"w": (int(25_000_000 * scale),)}


def resnet50_like(scale: float, stages: int = 4) -> dict[str, tuple[int, ...]]:
    """ResNet-50's 161 leaves (conv kernels, batch-norm scales and biases, the head).

    ``scale`` < 1 shrinks the channel widths; ``stages`` < 4 keeps only the first stages
    (fewer leaves, for the quick run).
    """
    width = lambda c: max(4, int(round(c * scale**0.5)))  # noqa: E731 - a local shorthand
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(name, kh, kw, cin, cout):
        shapes[f"{name}/kernel"] = (kh, kw, cin, cout)
        shapes[f"{name}/bn_scale"] = (cout,)
        shapes[f"{name}/bn_bias"] = (cout,)

    conv_bn("stem", 7, 7, 3, width(64))
    cin = width(64)
    layout = list(zip([3, 4, 6, 3], [64, 128, 256, 512], strict=True))[:stages]
    for stage, (blocks, base) in enumerate(layout):
        w, cout = width(base), width(base * 4)
        for block in range(blocks):
            prefix = f"stage{stage}/block{block}"
            conv_bn(f"{prefix}/conv1", 1, 1, cin, w)
            conv_bn(f"{prefix}/conv2", 3, 3, w, w)
            conv_bn(f"{prefix}/conv3", 1, 1, w, cout)
            if block == 0:
                conv_bn(f"{prefix}/downsample", 1, 1, cin, cout)
            cin = cout
    shapes["head/kernel"] = (cin, 1000)
    shapes["head/bias"] = (1000,)
    return shapes


def many_small_leaves(count: int, seed: int = 0) -> dict[str, tuple[int, ...]]:
    """``count`` vectors of 1k-5k floats, most of distinct lengths (as in a real model)."""
    sizes = np.random.default_rng(seed).integers(1000, 5001, size=count)
    return {f"leaf{i:05d}": (int(size),) for i, size in enumerate(sizes)}


def transformer_like(d_model: int, blocks: int = 12, vocab: int = 8192) -> dict[str, tuple]:
    """A GPT-style stack: embeddings, then per block layer norms, attention and MLP."""
    shapes: dict[str, tuple[int, ...]] = {"embed": (vocab, d_model), "pos": (1024, d_model)}
    for b in range(blocks):
        p = f"block{b:02d}"
        shapes |= {
            f"{p}/ln1_scale": (d_model,),
            f"{p}/ln1_bias": (d_model,),
            f"{p}/qkv": (d_model, 3 * d_model),
            f"{p}/qkv_bias": (3 * d_model,),
            f"{p}/proj": (d_model, d_model),
            f"{p}/proj_bias": (d_model,),
            f"{p}/ln2_scale": (d_model,),
            f"{p}/ln2_bias": (d_model,),
            f"{p}/mlp_in": (d_model, 4 * d_model),
            f"{p}/mlp_in_bias": (4 * d_model,),
            f"{p}/mlp_out": (4 * d_model, d_model),
            f"{p}/mlp_out_bias": (d_model,),
        }
    shapes["ln_f_scale"] = (d_model,)
    shapes["ln_f_bias"] = (d_model,)
    return shapes


def distinct_vectors(count: int, floats: int = 100) -> dict[str, tuple[int, ...]]:
    """``count`` leaves of about ``floats`` numbers, every shape different."""
    return {f"leaf{i:05d}": (floats + i,) for i in range(count)}


def same_vectors(count: int, floats: int = 100) -> dict[str, tuple[int, ...]]:
    return {f"leaf{i:05d}": (floats,) for i in range(count)}


def all_trees(quick: bool, small_leaves: int | None = None) -> dict[str, dict[str, tuple[int, ...]]]:
    if quick:
        return {
            "one_leaf": one_leaf(0.04),
            "resnet50_like": resnet50_like(0.04, stages=1),
            "small_leaves": many_small_leaves(small_leaves or 50),
            "transformer_like": transformer_like(64, blocks=2, vocab=512),
        }
    return {
        "one_leaf": one_leaf(1.0),
        "resnet50_like": resnet50_like(1.0),
        "small_leaves": many_small_leaves(small_leaves or 2000),
        "transformer_like": transformer_like(512),
    }


def count_params(shapes: dict[str, tuple[int, ...]]) -> int:
    return int(sum(np.prod(s, dtype=np.int64) for s in shapes.values()))
