"""The benchmark's optimizers and their search spaces.

Each space tunes the learning rate log-uniformly over about two decades around the
default of the optimizer's paper or of optax/PyTorch, plus the one or two
hyperparameters the method's authors or AlgoPerf's baselines tune (momentum and decay
rates as ``1 - beta``, log-uniform; weight decay, log-uniform). Everything else keeps
the optimizer's default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optim_fn
from optim_fn.experiments.benchmark.search import Range


@dataclass(frozen=True)
class Tunable:
    """An optimizer factory (tuned keywords only) and its search space."""

    factory: Callable[..., Any]
    space: Mapping[str, Range]
    source: str


# Params whose path names one of these stay on AdamW under Muon: the embeddings and the
# output layer, as in the NanoGPT speedrun (Muon is for the hidden matrices).
NOT_HIDDEN = ("embed", "unembed", "head", "position")
# A convolution kernel with at most this many input channels reads the image itself (gray
# or RGB): like an embedding it stays on AdamW, as the first convolution of Jordan et al.'s
# CIFAR-10 speedrun does (Muon for the hidden convolutions).
IMAGE_CHANNELS = 3
# flax's convolution kernel is ``(height, width, in, out)``: one matrix with the spatial
# axes folded into the input axis (``scale_by_muon``'s documented 4-d policy).
CONV_KERNEL = ((0, 1, 2), 3)


def hidden_matrices(params: Any) -> Any:
    """Muon's dimension numbers for the hidden params, ``None`` (AdamW) for the rest.

    Hidden: a 2-d param not named in :data:`NOT_HIDDEN` (``MuonDimensionNumbers(0, 1)``)
    and a 4-d flax convolution kernel with more than :data:`IMAGE_CHANNELS` input
    channels (:data:`CONV_KERNEL`: spatial axes folded into the input axis).
    """
    import jax

    from optim_fn.contrib import MuonDimensionNumbers

    def dims(path: Any, leaf: Any) -> Any:
        if any(part in jax.tree_util.keystr(path) for part in NOT_HIDDEN):
            return None
        if leaf.ndim == 2:
            return MuonDimensionNumbers(0, 1)
        if leaf.ndim == 4 and leaf.shape[2] > IMAGE_CHANNELS:
            return MuonDimensionNumbers(*CONV_KERNEL)
        return None

    return jax.tree_util.tree_map_with_path(dims, params)


def _muon(**tuned: Any) -> Any:
    from optim_fn.contrib import muon

    return muon(**tuned, muon_weight_dimension_numbers=hidden_matrices)


OPTIMIZERS: dict[str, Tunable] = {
    "sgd": Tunable(
        optim_fn.sgd,
        {"learning_rate": Range(1e-3, 1.0)},
        "lr around 0.1 (Bottou et al. 2018 practice; the seeds' sweep)",
    ),
    "momentum": Tunable(
        lambda learning_rate, one_minus_momentum: optim_fn.sgd(
            learning_rate, momentum=1.0 - one_minus_momentum
        ),
        {"learning_rate": Range(1e-3, 1.0), "one_minus_momentum": Range(0.01, 0.3)},
        "heavy ball; momentum 0.7-0.99 around 0.9 (Sutskever et al. 2013; AlgoPerf)",
    ),
    "adagrad": Tunable(
        optim_fn.adagrad,
        {"learning_rate": Range(1e-3, 1.0)},
        "lr around optax/Keras 0.01-0.1 (Duchi et al. 2011)",
    ),
    "rmsprop": Tunable(
        lambda learning_rate, one_minus_decay: optim_fn.rmsprop(
            learning_rate, decay=1.0 - one_minus_decay
        ),
        {"learning_rate": Range(1e-4, 3e-2), "one_minus_decay": Range(0.01, 0.1)},
        "lr around 1e-3, decay 0.9-0.99 (Hinton 2012; PyTorch default 0.99)",
    ),
    "adadelta": Tunable(
        lambda learning_rate, one_minus_rho: optim_fn.adadelta(
            learning_rate, rho=1.0 - one_minus_rho
        ),
        {"learning_rate": Range(0.1, 10.0), "one_minus_rho": Range(0.01, 0.1)},
        "lr around PyTorch's 1.0, rho 0.9-0.99 (Zeiler 2012: 0.95)",
    ),
    "adam": Tunable(
        lambda learning_rate, one_minus_b1, one_minus_b2: optim_fn.adam(
            learning_rate, b1=1.0 - one_minus_b1, b2=1.0 - one_minus_b2
        ),
        {
            "learning_rate": Range(1e-4, 3e-2),
            "one_minus_b1": Range(0.03, 0.3),
            "one_minus_b2": Range(1e-3, 0.1),
        },
        "lr around 1e-3, b1 0.7-0.97, b2 0.9-0.999 (Kingma & Ba 2015; AlgoPerf NAdamW)",
    ),
    "adamw": Tunable(
        lambda learning_rate, one_minus_b1, weight_decay: optim_fn.adamw(
            learning_rate, b1=1.0 - one_minus_b1, weight_decay=weight_decay
        ),
        {
            "learning_rate": Range(1e-4, 3e-2),
            "one_minus_b1": Range(0.03, 0.3),
            "weight_decay": Range(1e-3, 1.0),
        },
        "Adam's lr and b1, decoupled decay 1e-3-1 (Loshchilov & Hutter 2019; grokking: 1)",
    ),
    "muon": Tunable(
        lambda learning_rate, weight_decay: _muon(
            learning_rate=learning_rate, weight_decay=weight_decay,
            adam_weight_decay=weight_decay,
        ),
        {"learning_rate": Range(1e-3, 0.1), "weight_decay": Range(1e-3, 1.0)},
        "Muon on the hidden 2-d params and hidden convolutions (lr around 0.02), AdamW on "
        "embeddings, the image-reading convolution, output layer, biases and norms, same lr "
        "(Jordan et al. 2024)",
    ),
}

DEFAULT_OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


def tunables(names: Sequence[str]) -> dict[str, Tunable]:
    """The named optimizers; an unknown name raises a ``ValueError`` listing the valid ones."""
    unknown = [name for name in names if name not in OPTIMIZERS]
    if unknown:
        raise ValueError(
            f"unknown optimizer {', '.join(map(repr, unknown))}; valid: {', '.join(OPTIMIZERS)}"
        )
    for name in names:
        for key, bounds in OPTIMIZERS[name].space.items():
            bounds.check(f"{name}.{key}")
    return {name: OPTIMIZERS[name] for name in names}
