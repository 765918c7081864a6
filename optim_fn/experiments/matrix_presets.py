"""The matrix optimizers of :mod:`optim_fn.contrib` as command-line presets.

Muon and SOAP are in :data:`~optim_fn.experiments.registry.MODERN` (they came first);
these are the rest of the family of issue 14: NorMuon, AdaMuon, Shampoo, PSGD Kron,
Dion and Scion. Each precondition or orthogonalise the 2-d leaves (the digits MLP's
weight matrices); on the one-vector problems (the 2-d functions, ``linear``,
``logistic``) they do what their docstrings say they do for vectors, noted in each
summary.

Learning rates: one sweep per optimizer and problem, as for the modern presets
(:class:`~optim_fn.experiments.preset.Preset`): 12 rates 1e-5, 3e-5, ..., 1, 3 in one
``vmap`` of :func:`~optim_fn.experiments.runner.run`, the problem's default steps and
batch mode, seed 0, the lowest final full loss winning (ties to the smaller rate).
Shampoo on ``digits`` was swept one run per rate: a ``vmap`` of two or more Shampoo runs
there does not return in minutes on the CPU (as SOAP's three), so Shampoo is in no group.
"""

from __future__ import annotations

import optim_fn.contrib
from optim_fn.experiments.preset import Preset

MATRIX: dict[str, Preset] = {
    "normuon": Preset(
        optim_fn.contrib.normuon,
        {},
        {"*": 0.01, "rosenbrock": 0.003, "saddle": 0.003, "quadratic": 0.03, "rastrigin": 0.001,
         "linear": 0.03, "digits": 0.03},
        "Muon with its orthogonalised step normalised per row by a second moment, AdamW (0.9, "
        "0.95) for the rest (Li et al. 2025, NorMuon); on the one-vector problems (2-d, linear, "
        "logistic) every step is its Adam branch",
    ),
    "adamuon": Preset(
        optim_fn.contrib.adamuon,
        {},
        {"*": 0.01, "rosenbrock": 0.003, "saddle": 0.003, "quadratic": 0.03, "rastrigin": 0.001,
         "linear": 0.03},
        "Adam's second moment on Muon's orthogonalised momentum, rescaled to RMS 0.2, weight "
        "decay 1e-2; AdamW (0.9, 0.95) for the rest (Si et al. 2025, AdaMuon); on the one-vector"
        " problems (2-d, linear, logistic) every step is its Adam branch",
    ),
    "shampoo": Preset(
        optim_fn.contrib.shampoo,
        {},
        {"*": 0.3, "rosenbrock": 3, "beale": 1, "saddle": 0.1, "rastrigin": 1, "digits": 3},
        "Kronecker-factored preconditioner L^(-1/4) g R^(-1/4) from summed g g^T and g^T g, "
        "refreshed every step (Gupta et al. 2018; Shi et al. 2023, Distributed Shampoo "
        "defaults); a vector gets one factor L^(-1/2) (full-matrix AdaGrad); not in the groups: "
        "on the CPU a vmap of 2+ Shampoo runs on digits does not return (sweep or --seeds 2), "
        "so run it there with --sweep-points 0 and 1 seed",
    ),
    "kron": Preset(
        optim_fn.contrib.kron,
        {},
        {"*": 0.003, "himmelblau": 0.01, "quadratic": 0.01, "rastrigin": 0.001, "linear": 0.03,
         "logistic": 0.03},
        "PSGD Kron: Kronecker-factored triangular preconditioner fitted by a Lie-group step on "
        "random probes, updated with a decaying probability; momentum 0.9 (Li 2018, 2022); "
        "vectors get a diagonal preconditioner",
    ),
    "dion": Preset(
        optim_fn.contrib.dion,
        {},
        {"*": 0.003, "himmelblau": 0.01, "quadratic": 0.01, "rastrigin": 0.001, "linear": 0.1,
         "logistic": 0.01, "digits": 0.03},
        "orthonormalised low-rank (rank_fraction 1: full rank) power-iteration update of the "
        "momentum with error feedback, weight decay 1e-2; AdamW (0.9, 0.95) for the rest (Ahn "
        "et al. 2025, Dion); on the one-vector problems (2-d, linear, logistic) every step is "
        "its AdamW branch",
    ),
    "scion": Preset(
        optim_fn.contrib.scion,
        {"unconstrained": True},
        {"*": 0.003, "himmelblau": 0.03, "quadratic": 0.01, "rastrigin": 0.0003, "linear": 0.01,
         "logistic": 0.01, "digits": 0.03},
        "steps along the norm-ball LMO direction of averaged gradients: U*V^T (spectral norm) "
        "for matrices, g / rms(g) for vectors, radius 1, momentum 0.1 (Pethick et al. 2025, "
        "Scion); unconstrained (uScion): the constrained default keeps the params in the ball "
        "and cannot fit digits (final loss 1.97 at its best rate)",
    ),
}
