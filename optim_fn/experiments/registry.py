"""Problems and optimizers by name, as the command line spells them.

A choice is written ``name`` or ``name:key=value,key=value``: ``adam:learning_rate=3e-3``,
``quadratic:condition_number=100``. Values are numbers, ``true``/``false`` or ``none``.
A group name (``classic``, ``modern``, ``matrix``, ``all``) stands for its optimizers
(:func:`make_optimizers`). Every error message lists what is valid.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optim_fn
import optim_fn.contrib
from optim_fn.core.base import GradientTransformation
from optim_fn.experiments import datasets, functions, listing
from optim_fn.experiments.matrix_presets import MATRIX
from optim_fn.experiments.preset import Preset
from optim_fn.experiments.problem import Problem

PROBLEMS: dict[str, Callable[..., Problem]] = {
    "rosenbrock": functions.rosenbrock,
    "beale": functions.beale,
    "himmelblau": functions.himmelblau,
    "saddle": functions.saddle,
    "quadratic": functions.quadratic,
    "rastrigin": functions.rastrigin,
    "linear": datasets.linear_regression,
    "logistic": datasets.logistic_regression,
    "digits": datasets.digits_mlp,
}

DEFAULT_PROBLEMS = ("rosenbrock", "digits")


CLASSIC: dict[str, Preset] = {
    "sgd": Preset(
        optim_fn.sgd,
        {},
        {"*": 1e-2, "rosenbrock": 1e-3, "linear": 3e-2, "logistic": 0.1, "digits": 0.3},
        "gradient descent, full-batch or stochastic",
    ),
    "momentum": Preset(
        optim_fn.sgd,
        {"momentum": 0.9},
        {"*": 3e-3, "rosenbrock": 1e-3, "linear": 1e-2, "logistic": 3e-2, "digits": 3e-2},
        "heavy-ball momentum 0.9 (Polyak 1964)",
    ),
    "nesterov": Preset(
        optim_fn.sgd,
        {"momentum": 0.9, "nesterov": True},
        {"*": 3e-3, "rosenbrock": 1e-3, "linear": 1e-2, "logistic": 3e-2, "digits": 3e-2},
        "Nesterov momentum 0.9 (Sutskever et al. 2013)",
    ),
    "adagrad": Preset(
        optim_fn.adagrad,
        {},
        {"*": 0.3, "digits": 0.1},
        "per-coordinate steps shrinking with the sum of squares (Duchi et al. 2011)",
    ),
    "rmsprop": Preset(
        optim_fn.rmsprop,
        {},
        {"*": 1e-2, "rosenbrock": 3e-3, "digits": 3e-3},
        "divide by a running RMS of gradients (Hinton 2012)",
    ),
    "adadelta": Preset(
        optim_fn.adadelta,
        {},
        {"*": 1.0},
        "RMS of past updates over RMS of gradients (Zeiler 2012)",
    ),
    "adam": Preset(
        optim_fn.adam,
        {},
        {"*": 3e-2, "digits": 3e-3},
        "momentum and RMS scaling, bias-corrected (Kingma & Ba 2015)",
    ),
    "adamw": Preset(
        optim_fn.adamw,
        {"weight_decay": 1e-2},
        {"*": 3e-2, "digits": 3e-3},
        "Adam with decoupled weight decay 1e-2 (Loshchilov & Hutter 2019)",
    ),
}


def rprop(
    learning_rate: float, eta_minus: float = 0.5, eta_plus: float = 1.2,
    min_step_size: float = 1e-6, max_step_size: float = 50.0,
) -> GradientTransformation:
    """:func:`optim_fn.rprop` with its initial step as a learning rate in the state.

    Rprop's ``learning_rate`` is the initial per-coordinate step, a slot filled at
    ``init``, so the command line's sweep (which sets ``learning_rate`` in the state
    after ``init``) could not reach it. Rprop's steps scale linearly with it, so this is
    ``learning_rate`` times Rprop with initial step 1 and bounds divided by
    ``learning_rate``: the same numbers (up to rounding) at the rate it is built with.
    In a sweep the bounds scale with the swept rate.
    """
    if not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"rprop: `learning_rate` must be > 0, got {learning_rate!r}")
    return optim_fn.chain(
        optim_fn.scale_by_rprop(
            1.0, eta_minus, eta_plus, min_step_size / learning_rate, max_step_size / learning_rate
        ),
        optim_fn.scale_by_learning_rate(learning_rate),
    )


# Learning rates: see Preset (a sweep per problem, best final loss). On rastrigin the
# "best" rate is the one whose path happened to end in the lowest basin: a lottery.
MODERN: dict[str, Preset] = {
    "lion": Preset(
        optim_fn.lion,
        {},
        {"*": 0.003, "himmelblau": 0.01, "quadratic": 0.1, "rastrigin": 0.3, "linear": 0.01,
         "logistic": 0.03},
        "sign of an interpolated momentum, decoupled weight decay 1e-3 (Chen et al. 2023, Lion)",
    ),
    "lamb": Preset(
        optim_fn.lamb,
        {},
        {"*": 0.003, "rosenbrock": 0.1, "beale": 0.001, "quadratic": 0.03, "rastrigin": 1,
         "linear": 0.03, "logistic": 0.01, "digits": 0.01},
        "Adam steps scaled per layer by |params| / |step| (You et al. 2020, LAMB); on the "
        "one-vector problems (2-d, linear, logistic) the whole vector is one layer",
    ),
    "adabelief": Preset(
        optim_fn.adabelief,
        {},
        {"*": 0.003, "rosenbrock": 0.1, "beale": 0.03, "himmelblau": 0.001, "quadratic": 0.01,
         "linear": 0.3, "logistic": 0.01, "digits": 0.03},
        "Adam dividing by the spread of g around its mean, not its size (Zhuang et al. 2020, "
        "AdaBelief)",
    ),
    "nadam": Preset(
        optim_fn.nadam,
        {},
        {"*": 0.03, "himmelblau": 0.01, "saddle": 0.01, "rastrigin": 1, "linear": 0.3,
         "logistic": 0.1},
        "Adam with Nesterov momentum (Dozat 2016, NAdam)",
    ),
    "radam": Preset(
        optim_fn.radam,
        {},
        {"*": 0.03, "rosenbrock": 0.003, "beale": 0.01, "quadratic": 0.1, "rastrigin": 0.01,
         "linear": 0.1, "logistic": 0.1},
        "Adam with the variance of its step rectified; momentum SGD for the first steps (Liu et "
        "al. 2020, RAdam)",
    ),
    "amsgrad": Preset(
        optim_fn.amsgrad,
        {},
        {"*": 0.1, "rosenbrock": 1, "beale": 1, "himmelblau": 0.01, "saddle": 0.03,
         "rastrigin": 0.03, "linear": 0.3},
        "Adam dividing by the running maximum of the second moment (Reddi et al. 2018, AMSGrad)",
    ),
    "yogi": Preset(
        optim_fn.yogi,
        {},
        {"*": 0.1, "rosenbrock": 0.3, "himmelblau": 0.01, "saddle": 0.01, "quadratic": 0.03,
         "rastrigin": 3, "digits": 0.03},
        "Adam with an additive, sign-controlled second moment, eps 1e-3 (Zaheer et al. 2018, Yogi)",
    ),
    "adamax": Preset(
        optim_fn.adamax,
        {},
        {"*": 0.1, "rosenbrock": 1, "beale": 0.3, "himmelblau": 0.01, "saddle": 0.01,
         "rastrigin": 0.03, "linear": 0.3},
        "Adam with the infinity norm of past gradients (Kingma & Ba 2015, AdaMax)",
    ),
    "adan": Preset(
        optim_fn.adan,
        {},
        {"*": 0.01, "himmelblau": 0.1, "saddle": 0.03, "quadratic": 1, "rastrigin": 0.001,
         "linear": 3, "logistic": 1, "digits": 0.03},
        "Nesterov-style momentum of gradients and of their differences (Xie et al. 2022, Adan)",
    ),
    "novograd": Preset(
        optim_fn.novograd,
        {},
        {"*": 0.0003, "himmelblau": 0.001, "quadratic": 0.001, "rastrigin": 0.0001,
         "linear": 0.003, "logistic": 0.001, "digits": 0.03},
        "per-layer second moment, gradients normalised per layer (Ginsburg et al. 2019, "
        "NovoGrad); on the one-vector problems (2-d, linear, logistic) the whole vector is one "
        "layer",
    ),
    "signum": Preset(
        optim_fn.signum,
        {},
        {"*": 0.01, "rosenbrock": 0.003, "beale": 0.003, "quadratic": 0.1, "rastrigin": 0.0003,
         "digits": 0.003},
        "sign of momentum 0.9 (Bernstein et al. 2018, signSGD with momentum)",
    ),
    "rprop": Preset(
        rprop,
        {},
        {"*": 1e-05, "rosenbrock": 0.03, "rastrigin": 3e-05, "digits": 0.1},
        "per-coordinate steps grown while the sign holds, shrunk when it flips (Riedmiller & "
        "Braun 1993; iRprop-, Igel & Hüsken 2000); learning_rate is the initial step; a "
        "full-batch method: mini-batch noise flips signs",
    ),
    "adafactor": Preset(
        optim_fn.adafactor,
        {},
        {"*": 0.03, "beale": 0.003, "himmelblau": 0.01, "saddle": 0.01, "quadratic": 0.3,
         "rastrigin": 1},
        "second moments factored into row and column means, steps relative to the params' RMS, "
        "update clipping 1 (Shazeer & Stern 2018, Adafactor); no leaf here has both sides >= 128,"
        " so none is factored",
    ),
    "muon": Preset(
        optim_fn.contrib.muon,
        {},
        {"*": 0.03, "himmelblau": 0.01, "saddle": 0.01, "rastrigin": 1, "linear": 0.3,
         "logistic": 0.1},
        "momentum orthogonalised by Newton-Schulz for matrices, AdamW (Nesterov) for the rest "
        "(Jordan et al. 2024, Muon); on the one-vector problems (2-d, linear, logistic) every "
        "step is its Adam branch (NAdam's numbers), on digits the weight matrices get Muon",
    ),
    "soap": Preset(
        optim_fn.contrib.soap,
        {},
        {"*": 0.003, "himmelblau": 0.01, "quadratic": 0.01, "rastrigin": 1, "linear": 0.03,
         "logistic": 0.03, "digits": 0.03},
        "Adam in the eigenbasis of Shampoo's preconditioner, b1=b2=0.95, weight decay 1e-2, first"
        " update 0 (Vyas et al. 2024, SOAP); vectors, so all of the one-vector problems (2-d, "
        "linear, logistic), get plain Adam steps; not in the groups: on the CPU a vmap of 3+ SOAP"
        " runs on digits hangs (sweep or --seeds 3), so run it there with --sweep-points 0 and at"
        " most 2 seeds",
    ),
    "schedule_free_adamw": Preset(
        optim_fn.contrib.schedule_free_adamw,
        {},
        {"*": 0.1, "beale": 0.3, "quadratic": 0.3, "rastrigin": 0.01, "linear": 0.3,
         "logistic": 0.3},
        "Schedule-Free AdamW: interpolated averaging instead of momentum and schedules (Defazio "
        "et al. 2024); the loss shown is at the training iterate y where gradients are taken, not"
        " at the averaged x (schedule_free_eval_params), which the runner does not compute",
    ),
    "prodigy": Preset(
        optim_fn.contrib.prodigy,
        {},
        {"*": 1},
        "parameter-free Adam: the step scale d estimated from the distance travelled (Mishchenko "
        "& Defazio 2024, Prodigy); learning rate 1",
    ),
    "adopt": Preset(
        optim_fn.contrib.adopt,
        {},
        {"*": 0.03, "rosenbrock": 3, "beale": 1, "himmelblau": 0.003, "quadratic": 0.1,
         "rastrigin": 0.01, "linear": 0.3, "logistic": 0.1},
        "Adam normalising by the previous second moment, with clipping (Taniguchi et al. 2024, "
        "ADOPT)",
    ),
    "ademamix": Preset(
        optim_fn.contrib.ademamix,
        {},
        {"*": 3, "rosenbrock": 0.1, "beale": 0.3, "himmelblau": 1, "saddle": 0.3, "logistic": 1,
         "digits": 0.03},
        "Adam plus 5 times a slow (0.9999) gradient average (Pagliardini et al. 2025, AdEMAMix)",
    ),
    "madgrad": Preset(
        optim_fn.contrib.madgrad,
        {},
        {"*": 0.003, "himmelblau": 0.0003, "saddle": 0.001, "rastrigin": 1e-05, "linear": 0.1,
         "logistic": 0.01, "digits": 0.03},
        "momentumised dual averaging with a cube-root scale (Defazio & Jelassi 2022, MADGRAD)",
    ),
    "dog": Preset(
        optim_fn.contrib.dog,
        {},
        {"*": 1},
        "parameter-free SGD: distance from the start over the root sum of squared gradient norms "
        "(Ivgi et al. 2023, DoG); learning rate 1",
    ),
    "cocob": Preset(
        optim_fn.contrib.cocob,
        {},
        {"*": 1},
        "parameter-free coin betting per coordinate (Orabona & Tommasi 2017, COCOB-Backprop); "
        "learning rate 1",
    ),
    "galore": Preset(
        optim_fn.contrib.galore,
        {},
        {"*": 0.03, "rosenbrock": 0.1, "himmelblau": 0.01, "saddle": 0.01, "rastrigin": 1,
         "linear": 0.1},
        "Adam on rank-128 projections of matrix gradients, SVD every 200 steps (Zhao et al. 2024,"
        " GaLore); the digits MLP's matrices have rank <= 64, so it is Adam in a rotated basis "
        "there, and plain Adam on the one-vector problems (2-d, linear, logistic)",
    ),
}

OPTIMIZERS: dict[str, Preset] = {**CLASSIC, **MODERN, **MATRIX}

DEFAULT_OPTIMIZERS = tuple(CLASSIC)
# SOAP and Shampoo are run by name only: on the CPU, a vmap of 3 or more SOAP runs (2 or
# more Shampoo runs) on the digits MLP (the sweep, or --seeds 3) does not return in
# minutes, so a group containing them would hang there.
BY_NAME_ONLY = ("soap", "shampoo")
MODERN_OPTIMIZERS = tuple(name for name in MODERN if name not in BY_NAME_ONLY)
MATRIX_OPTIMIZERS = tuple(
    name for name in ("adamw", "muon", *MATRIX) if name not in BY_NAME_ONLY
)
GROUPS: dict[str, tuple[str, ...]] = {
    "classic": DEFAULT_OPTIMIZERS,
    "modern": MODERN_OPTIMIZERS,
    "matrix": MATRIX_OPTIMIZERS,
    "all": DEFAULT_OPTIMIZERS + MODERN_OPTIMIZERS
    + tuple(name for name in MATRIX if name not in BY_NAME_ONLY),
}
"""Names that stand for several optimizers on the command line (``--optimizers modern``);
``matrix`` is AdamW and the matrix optimizers (Muon's family, Kron, Dion, Scion); ``all``
is every preset but :data:`BY_NAME_ONLY` (see their summaries)."""


class ChoiceError(ValueError):
    """A name or option on the command line that is not valid (the message says why)."""


def _parse_value(text: str, where: str) -> Any:
    if "/" in text:  # a point, e.g. start=-1.5/2 (commas already separate the options)
        parts = [_parse_value(part, where) for part in text.split("/")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in parts):
            raise ChoiceError(
                f"{where}: {text!r} is not a point; write numbers as x/y, e.g. -1.5/2"
            )
        return tuple(float(v) for v in parts)
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    raise ChoiceError(
        f"{where}: {text!r} is not a value; use a number (3e-3), a point (-1.5/2), true, "
        "false or none"
    )


def parse_choice(text: str, kind: str, valid: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Splits ``"name:key=value,..."`` into the name and a dict of keyword values."""
    name, _, options = text.partition(":")
    name = name.strip().lower()
    if name not in valid:
        raise ChoiceError(
            f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}"
        )
    keywords: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ChoiceError(
                f"{kind} {text!r}: option {item!r} must be written key=value, "
                f"e.g. {name}:learning_rate=3e-3"
            )
        keywords[key.strip()] = _parse_value(value, f"{kind} {text!r}, option {key.strip()!r}")
    return name, keywords


def _check_keywords(kind: str, name: str, factory: Callable, keywords: Mapping) -> None:
    accepted = [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    unknown = [k for k in keywords if k not in accepted]
    if unknown:
        raise ChoiceError(
            f"{kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(accepted)}"
        )


def make_problem(text: str) -> Problem:
    """The problem named by ``text`` (``"quadratic:condition_number=100"``)."""
    name, keywords = parse_choice(text, "problem", PROBLEMS)
    _check_keywords("problem", name, PROBLEMS[name], keywords)
    try:
        return PROBLEMS[name](**keywords)
    except (TypeError, ValueError) as error:
        raise ChoiceError(f"problem {text!r}: {error}") from None


@dataclass(frozen=True)
class OptimizerChoice:
    """An optimizer picked on the command line, before its problem is known."""

    name: str
    keywords: dict[str, Any]
    label: str

    def build(self, problem: str) -> tuple[GradientTransformation, dict[str, Any]]:
        """The transform for ``problem`` and every keyword it was built with."""
        preset = OPTIMIZERS[self.name]
        keywords = {
            "learning_rate": preset.learning_rate(problem),
            **preset.keywords,
            **self.keywords,
        }
        try:
            return preset.factory(**keywords), keywords
        except (TypeError, ValueError) as error:
            raise ChoiceError(f"optimizer {self.label!r}: {error}") from None


def make_optimizer(text: str) -> OptimizerChoice:
    """The optimizer named by ``text`` (``"adam:learning_rate=3e-3,b1=0.95"``)."""
    name = text.partition(":")[0].strip().lower()
    if name in GROUPS:
        raise ChoiceError(
            f"{name!r} is a group of optimizers ({', '.join(GROUPS[name])}); groups take no "
            "options: name one optimizer to give it options"
        )
    try:
        name, keywords = parse_choice(text, "optimizer", OPTIMIZERS)
    except ChoiceError as error:
        if name in OPTIMIZERS:
            raise
        raise ChoiceError(f"{error}; groups: {', '.join(GROUPS)}") from None
    _check_keywords("optimizer", name, OPTIMIZERS[name].factory, keywords)
    label = text.strip() if keywords else name
    return OptimizerChoice(name, keywords, label)


def make_optimizers(texts: Sequence[str]) -> list[OptimizerChoice]:
    """The optimizers named by ``texts``, each group name replaced by its members.

    ``["adam", "modern"]`` is Adam followed by every modern preset in :data:`GROUPS`
    order; ``["all"]`` is every preset.
    """
    choices = []
    for text in texts:
        name = text.strip().lower()
        if name in GROUPS:
            choices.extend(make_optimizer(member) for member in GROUPS[name])
        else:
            choices.append(make_optimizer(text))
    return choices


def describe() -> str:
    """What ``optim-fn list`` prints: every problem and optimizer with its plain-text
    formula, options and defaults (:func:`optim_fn.experiments.listing.render`)."""
    return listing.render(PROBLEMS, OPTIMIZERS, GROUPS)
