"""Contributed optimizers, under the names optax gives them in ``optax.contrib``.

``optax.contrib.X`` -> ``optim_fn.contrib.X``: the same keywords and defaults, our own
update rules (checked step by step against optax in ``tests/test_family_parity.py``),
hyperparameters stored in the state. As in optax, these are newer methods whose
interfaces may still change; the established optimizers live at the top level.
"""

from optim_fn.contrib._ademamix import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdEMAMixState,
    ademamix,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from optim_fn.contrib._adopt import ScaleByAdoptState, adopt, scale_by_adopt
from optim_fn.contrib._cocob import COCOBState, cocob, scale_by_cocob
from optim_fn.contrib._dadapt import DAdaptAdamWState, ProdigyState, dadapt_adamw, prodigy
from optim_fn.contrib._dog import DoGState, DoWGState, dog, dowg, scale_by_dog, scale_by_dowg
from optim_fn.contrib._madgrad import MadgradState, madgrad, scale_by_madgrad
from optim_fn.contrib._momo import MomoAdamState, MomoState, momo, momo_adam
from optim_fn.contrib._muon import (
    MuonDimensionNumbers,
    MuonState,
    ScaleByShapeState,
    muon,
    orthogonalize_via_newton_schulz,
    scale_by_muon,
    scale_by_shape,
)
from optim_fn.contrib._sam import NormalizeState, SAMState, normalize, sam
from optim_fn.contrib._schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from optim_fn.contrib._sophia import (
    HutchinsonState,
    SophiaState,
    hutchinson_estimator_diag_hessian,
    scale_by_sophia,
    sophia,
)

__all__ = [
    "COCOBState",
    "DAdaptAdamWState",
    "DoGState",
    "DoWGState",
    "HutchinsonState",
    "MadgradState",
    "MomoAdamState",
    "MomoState",
    "MuonDimensionNumbers",
    "MuonState",
    "NormalizeState",
    "ProdigyState",
    "SAMState",
    "ScaleByAdemamixState",
    "ScaleByAdoptState",
    "ScaleByShapeState",
    "ScaleBySimplifiedAdEMAMixState",
    "ScheduleFreeState",
    "SophiaState",
    "ademamix",
    "adopt",
    "cocob",
    "dadapt_adamw",
    "dog",
    "dowg",
    "hutchinson_estimator_diag_hessian",
    "madgrad",
    "momo",
    "momo_adam",
    "muon",
    "normalize",
    "orthogonalize_via_newton_schulz",
    "prodigy",
    "sam",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_cocob",
    "scale_by_dog",
    "scale_by_dowg",
    "scale_by_madgrad",
    "scale_by_muon",
    "scale_by_shape",
    "scale_by_simplified_ademamix",
    "scale_by_sophia",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "simplified_ademamix",
    "sophia",
]
