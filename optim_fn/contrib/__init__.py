"""Contributed optimizers, under the names optax gives them in ``optax.contrib``.

``optax.contrib.X`` -> ``optim_fn.contrib.X``: the same keywords and defaults, our own
update rules (checked step by step against optax in ``tests/test_family_parity.py``),
hyperparameters stored in the state. As in optax, these are newer methods whose
interfaces may still change; the established optimizers live at the top level.
"""

from optim_fn.contrib._acprop import acprop, scale_by_acprop
from optim_fn.contrib._adamuon import AdaMuonState, adamuon, scale_by_adamuon
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
from optim_fn.contrib._complex_valued import (
    SplitRealAndImaginaryState,
    split_real_and_imaginary,
)
from optim_fn.contrib._dadapt import DAdaptAdamWState, ProdigyState, dadapt_adamw, prodigy
from optim_fn.contrib._dion import DionState, dion, scale_by_dion
from optim_fn.contrib._dog import DoGState, DoWGState, dog, dowg, scale_by_dog, scale_by_dowg
from optim_fn.contrib._galore import (
    GaLoreDimensionNumbers,
    GaLoreState,
    galore,
    scale_by_galore,
)
from optim_fn.contrib._kron import KronState, kron, precond_update_prob_schedule, scale_by_kron
from optim_fn.contrib._madgrad import MadgradState, madgrad, scale_by_madgrad
from optim_fn.contrib._mechanic import MechanicState, mechanize
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
from optim_fn.contrib._normuon import NorMuonState, normuon, scale_by_normuon
from optim_fn.contrib._privacy import (
    DifferentiallyPrivateAggregateState,
    differentially_private_aggregate,
    dpsgd,
)
from optim_fn.contrib._qk_clip import QKClipSpec, QKClipState, qk_clip
from optim_fn.contrib._sam import NormalizeState, SAMState, normalize, sam
from optim_fn.contrib._schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from optim_fn.contrib._scion import ScionNorm, ScionState, scale_by_scion, scion
from optim_fn.contrib._shampoo import ShampooState, scale_by_shampoo, shampoo
from optim_fn.contrib._soap import SoapState, scale_by_soap, soap
from optim_fn.contrib._sophia import (
    HutchinsonState,
    SophiaState,
    hutchinson_estimator_diag_hessian,
    scale_by_sophia,
    sophia,
)
from optim_fn.transforms._plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = [
    "AdaMuonState",
    "COCOBState",
    "DAdaptAdamWState",
    "DifferentiallyPrivateAggregateState",
    "DionState",
    "DoGState",
    "DoWGState",
    "GaLoreDimensionNumbers",
    "GaLoreState",
    "HutchinsonState",
    "KronState",
    "MadgradState",
    "MechanicState",
    "MomoAdamState",
    "MomoState",
    "MuonDimensionNumbers",
    "MuonState",
    "NorMuonState",
    "NormalizeState",
    "ProdigyState",
    "QKClipSpec",
    "QKClipState",
    "ReduceLROnPlateauState",
    "SAMState",
    "ScaleByAdemamixState",
    "ScaleByAdoptState",
    "ScaleByShapeState",
    "ScaleBySimplifiedAdEMAMixState",
    "ScheduleFreeState",
    "ScionNorm",
    "ScionState",
    "ShampooState",
    "SoapState",
    "SophiaState",
    "SplitRealAndImaginaryState",
    "acprop",
    "adamuon",
    "ademamix",
    "adopt",
    "cocob",
    "dadapt_adamw",
    "differentially_private_aggregate",
    "dion",
    "dog",
    "dowg",
    "dpsgd",
    "galore",
    "hutchinson_estimator_diag_hessian",
    "kron",
    "madgrad",
    "mechanize",
    "momo",
    "momo_adam",
    "muon",
    "normalize",
    "normuon",
    "orthogonalize_via_newton_schulz",
    "precond_update_prob_schedule",
    "prodigy",
    "qk_clip",
    "reduce_on_plateau",
    "sam",
    "scale_by_acprop",
    "scale_by_adamuon",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_cocob",
    "scale_by_dion",
    "scale_by_dog",
    "scale_by_dowg",
    "scale_by_galore",
    "scale_by_kron",
    "scale_by_madgrad",
    "scale_by_normuon",
    "scale_by_muon",
    "scale_by_scion",
    "scale_by_shampoo",
    "scale_by_shape",
    "scale_by_simplified_ademamix",
    "scale_by_soap",
    "scale_by_sophia",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "scion",
    "shampoo",
    "simplified_ademamix",
    "soap",
    "sophia",
    "split_real_and_imaginary",
]
