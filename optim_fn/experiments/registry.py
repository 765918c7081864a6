"""Problems and optimizers by name, as the command line spells them.

A choice is written ``name`` or ``name:key=value,key=value``: ``adam:learning_rate=3e-3``,
``quadratic:condition_number=100``. Values are numbers, ``true``/``false`` or ``none``.
Every error message lists what is valid.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optim_fn
from optim_fn.base import GradientTransformation
from optim_fn.experiments import datasets, functions
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


@dataclass(frozen=True)
class Preset:
    """A named optimizer: a factory, fixed keywords, and per-problem learning rates.

    ``learning_rates`` maps a problem name to the learning rate used when the user gives
    none; ``"*"`` is the fallback. They were picked from the command line's own
    learning-rate sweep (the sensitivity plot), among the values that converge without
    oscillating, so that the default comparison shows each method working.
    """

    factory: Callable[..., GradientTransformation]
    keywords: dict[str, Any] = field(default_factory=dict)
    learning_rates: dict[str, float] = field(default_factory=dict)
    summary: str = ""

    def learning_rate(self, problem: str) -> float:
        return self.learning_rates.get(problem, self.learning_rates["*"])


OPTIMIZERS: dict[str, Preset] = {
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

DEFAULT_OPTIMIZERS = tuple(OPTIMIZERS)


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
    name, keywords = parse_choice(text, "optimizer", OPTIMIZERS)
    _check_keywords("optimizer", name, OPTIMIZERS[name].factory, keywords)
    label = text.strip() if keywords else name
    return OptimizerChoice(name, keywords, label)


def describe() -> str:
    """A listing of every problem and optimizer with its options and defaults."""
    lines = ["problems:"]
    for name, factory in PROBLEMS.items():
        options = ", ".join(
            f"{p.name}={p.default!r}" for p in inspect.signature(factory).parameters.values()
        )
        doc = (inspect.getdoc(factory) or "").splitlines()[0]
        lines.append(f"  {name:<11} {doc}")
        lines.append(f"  {'':<11} options: {options or '(none)'}")
    lines.append("optimizers:")
    for name, preset in OPTIMIZERS.items():
        options = ", ".join(
            f"{p.name}={preset.keywords.get(p.name, p.default)!r}"
            for p in inspect.signature(preset.factory).parameters.values()
            if p.name != "learning_rate"
        )
        rates = ", ".join(f"{k}: {v:g}" for k, v in preset.learning_rates.items())
        lines.append(f"  {name:<11} {preset.summary}")
        lines.append(f"  {'':<11} learning_rate by problem ({rates}); {options}")
    return "\n".join(lines)
