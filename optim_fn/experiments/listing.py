"""What ``optim-fn list`` prints: problems and optimizers with plain-text formulas.

The docstrings write their math for Sphinx (``:math:`` roles, LaTeX); a terminal shows
that markup raw. These are the same formulas written to be read in a terminal: ASCII
operators, ``<-`` for an update, and the option names ``optim-fn list`` shows next to
them (``b1``, ``eps``, ``weight_decay``, ...), so a formula says what each option does.
``lr`` is ``learning_rate``, ``g`` the gradient, ``p`` the params, ``t`` the step
(from 1); ``x^2``, ``sqrt``, ``/`` and ``max`` act per coordinate, ``|x|`` is a norm per
leaf (a layer).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

NOTATION = (
    "g: gradient, p: params, lr: learning_rate, t: step (from 1); x^2, sqrt, /, max act "
    "per coordinate, |x| is a norm per leaf; other names are the options shown"
)

PROBLEM_FORMULAS: dict[str, str] = {
    "rosenbrock": "f = (a - x)^2 + b*(y - x^2)^2; minimum 0 at (a, a^2)",
    "beale": "f = sum over k=1..3 of (c_k - x + x*y^k)^2, c = (1.5, 2.25, 2.625); "
    "minimum 0 at (3, 0.5)",
    "himmelblau": "f = (x^2 + y - 11)^2 + (x + y^2 - 7)^2; four minima 0, one at (3, 2)",
    "saddle": "f = x^2 + (y^2 - 1)^2 / 4; saddle at (0, 0), minima 0 at (0, +-1)",
    "quadratic": "f = (z1^2 + condition_number*z2^2) / 2, z = (x, y) rotated by angle; "
    "minimum 0 at (0, 0)",
    "rastrigin": "f = 2*A + sum over i of (p_i^2 - A*cos(2*pi*p_i)), A = amplitude; "
    "minimum 0 at (0, 0)",
    "linear": "f = 1/(2N) * sum over i of (w*x_i + b - y_i)^2, "
    "y_i = slope*x_i + intercept + noise*e_i",
    "logistic": "f = 1/N * sum over i of [log(1 + exp(z_i)) - y_i*z_i] + l2/2 * |w|^2, "
    "z_i = w.x_i",
    "digits": "f = mean softmax cross-entropy of the logits layer1(tanh(layer0(image))), "
    "layer(x) = w*x + b, over the training images",
}

_ADAM_MOMENTS = (
    "m <- b1*m + (1-b1)*g; v <- b2*v + (1-b2)*g^2; m_hat = m/(1-b1^t), v_hat = v/(1-b2^t)"
)

OPTIMIZER_FORMULAS: dict[str, str] = {
    "sgd": "p <- p - lr*g",
    "momentum": "v <- momentum*v + g; p <- p - lr*v",
    "nesterov": "v <- momentum*v + g; p <- p - lr*(g + momentum*v)",
    "adagrad": "s <- s + g^2 (s starts at initial_accumulator_value); "
    "p <- p - lr*g / sqrt(s + eps)",
    "rmsprop": "v <- decay*v + (1-decay)*g^2; p <- p - lr*g / sqrt(v + eps)",
    "adadelta": "Eg <- rho*Eg + (1-rho)*g^2; d = sqrt(Ed + eps) / sqrt(Eg + eps) * g; "
    "Ed <- rho*Ed + (1-rho)*d^2; p <- p - lr*d",
    "adam": f"{_ADAM_MOMENTS}; p <- p - lr*m_hat / (sqrt(v_hat + eps_root) + eps)",
    "adamw": f"{_ADAM_MOMENTS}; "
    "p <- p - lr*(m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay*p)",
    "lion": "c = b1*m + (1-b1)*g; p <- p - lr*(sign(c) + weight_decay*p); "
    "m <- b2*m + (1-b2)*g",
    "lamb": f"{_ADAM_MOMENTS}; r = m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay*p; "
    "p <- p - lr*(|p| / |r|)*r",
    "adabelief": "m <- b1*m + (1-b1)*g; s <- b2*s + (1-b2)*(g - m)^2 + eps_root; "
    "p <- p - lr*(m/(1-b1^t)) / (sqrt(s/(1-b2^t)) + eps)",
    "nadam": f"{_ADAM_MOMENTS}; n = b1*m/(1-b1^(t+1)) + (1-b1)*g/(1-b1^t); "
    "p <- p - lr*n / (sqrt(v_hat + eps_root) + eps)",
    "radam": f"{_ADAM_MOMENTS}; R = 2/(1-b2) - 1, rho = R - 2t*b2^t/(1-b2^t), "
    "r = sqrt((rho-4)(rho-2)R / ((R-4)(R-2)rho)); "
    "p <- p - lr*r*m_hat / (sqrt(v_hat + eps_root) + eps) if rho >= threshold, "
    "else p <- p - lr*m_hat",
    "amsgrad": f"{_ADAM_MOMENTS}; v_max <- max(v_max, v_hat); "
    "p <- p - lr*m_hat / (sqrt(v_max + eps_root) + eps)",
    "yogi": "m <- b1*m + (1-b1)*g; v <- v - (1-b2)*sign(v - g^2)*g^2; "
    "p <- p - lr*(m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)",
    "adamax": "m <- b1*m + (1-b1)*g; u <- max(b2*u, |g| + eps) (|g| per coordinate); "
    "p <- p - lr*m / ((1-b1^t)*u)",
    "adan": "d = g - g_prev; m <- b1*m + (1-b1)*g; v <- b2*v + (1-b2)*d; "
    "n <- b3*n + (1-b3)*(g + (1-b2)*d)^2; "
    "p <- p - lr*((m_hat + (1-b2)*v_hat) / (sqrt(n_hat + eps_root) + eps) "
    "+ weight_decay*p), _hat: bias-corrected",
    "novograd": "v <- b2*v + (1-b2)*|g|^2 (one number per leaf); "
    "m <- b1*m + g / (sqrt(v + eps_root) + eps) + weight_decay*p; p <- p - lr*m",
    "signum": "m <- beta*m + (1-beta)*g; p <- p - lr*sign(m)",
    "rprop": "per coordinate: s <- min(eta_plus*s, max_step_size) while sign(g) holds, "
    "s <- max(eta_minus*s, min_step_size) and g <- 0 when it flips; "
    "p <- p - s*sign(g), s starting at lr",
    "adafactor": "V <- (1-w)*V + w*g^2, w = t^(-decay_rate), factored into row and column "
    "means for large matrices; u = g / sqrt(V); u <- u / max(1, rms(u)/clipping_threshold); "
    "p <- p - lr*max(rms(p), 1e-3)*u",
    "muon": "matrices: m <- beta*m + (1-beta)*g, p <- p - lr*(s*NS(m_hat) + weight_decay*p), "
    "NS(m) ~ U*V^T for m = U*S*V^T (Newton-Schulz, ns_steps), s a shape factor; "
    "other leaves: AdamW with adam_b1, adam_b2, adam_learning_rate (default lr)",
    "soap": "D = Adam's step (b1, b2, eps) in the eigenbasis of Shampoo's preconditioner, "
    "refreshed every precondition_frequency steps; p <- (1 - lr*weight_decay)*(p - lr*D)",
    "schedule_free_adamw": "v <- b2*v + (1-b2)*g(y)^2; "
    "z <- z - lr*(g(y) / (sqrt(v/(1-b2^t)) + eps) + weight_decay*y); "
    "x <- (1-c)*x + c*z, c = lr^weight_lr_power / sum of lr^weight_lr_power so far; "
    "y = b1*x + (1-b1)*z (the params)",
    "prodigy": "Adam on d*g with step lr*d: d grows to c*r / |s|_1, r and s running sums "
    "of <g, p0 - p> and g weighted by lr*d; p <- p - lr*d*(m / (sqrt(v) + d*eps) "
    "+ weight_decay*p), bias-corrected",
    "adopt": "v starts at g^2; m <- b1*m + (1-b1)*clip(g / max(sqrt(v), eps), (t-1)^(1/4)); "
    "v <- b2*v + (1-b2)*g^2; p <- p - lr*m",
    "ademamix": "m1 <- b1*m1 + (1-b1)*g; m2 <- b3*m2 + (1-b3)*g; v <- b2*v + (1-b2)*g^2; "
    "p <- p - lr*((m1/(1-b1^t) + alpha*m2) / (sqrt(v/(1-b2^t) + eps_root) + eps) "
    "+ weight_decay*p)",
    "madgrad": "w = (lr + eps)*sqrt(t); v <- v + w*g^2; s <- s + w*g; "
    "z = p0 - s / (cbrt(v) + eps); p <- momentum*p + (1-momentum)*z "
    "(g includes weight_decay*p)",
    "dog": "p <- p - lr * max over steps of |p - p0| / sqrt(sum over steps of |g|^2 + eps) * g "
    "(norms over all params)",
    "cocob": "per coordinate: L <- max(L, |g|), G <- G + |g|, R <- max(R - g*(p - p0), 0), "
    "theta <- theta - g; p = p0 + theta / (L*max(G + L, alpha*L)) * (L + R), "
    "g scaled by lr",
    "galore": "matrices: P from an SVD of g every update_proj_gap steps (rank columns), "
    "Adam on P^T*g, back-projected times scale; other leaves: Adam; "
    "p <- p - lr*(u + weight_decay*p)",
    "normuon": "matrices: m <- beta*m + (1-beta)*g, O = NS(beta*m + (1-beta)*g); "
    "v <- b2*v + (1-b2)*mean over inputs of O^2 (one per output); u = O/(sqrt(v) + eps) "
    "rescaled to |O|; p <- p - lr*(s*u + weight_decay*p), s = sqrt(max(1, n_out/n_in)); "
    "other leaves: AdamW with adam_b1, adam_b2, adam_eps",
    "adamuon": "matrices: m <- beta*m + (1-beta)*g, O = NS(beta*m + (1-beta)*g); "
    "v <- b2*v + (1-b2)*O^2; u = O / (sqrt(v/(1-b2^t)) + eps), rescaled to RMS rms_scale; "
    "p <- p - lr*(u + weight_decay*p); other leaves: AdamW with adam_b1, adam_b2, adam_eps",
    "shampoo": "per block of order k: L_i <- b2*L_i + w*G_(i)*G_(i)^T (w = 1 if b2 = 1: a sum, "
    "else 1-b2), one factor per axis; F <- b1*F + (1-b1)*g; "
    "P = F times each (L_i/c_t + eps*I)^(-1/(2k)) (k = 2 for a matrix: L^(-1/4)*F*R^(-1/4)), "
    "roots refreshed every precondition_frequency steps; p <- p - lr*(P + weight_decay*p)",
    "kron": "m <- b1*m + (1-b1)*g, m_hat = m/(1-b1^t); preconditioner Q_1^T Q_1 x ... (one "
    "triangular or diagonal factor per axis) fitted with step precond_lr on random probes "
    "with probability precond_update_prob; u = P*m_hat clipped to RMS 1.1; "
    "p <- p - lr*(u + weight_decay*p)",
    "dion": "matrices: M <- M + g; P = orth(M*Q), R = M^T*P; M <- M - (1-mu)*P*R^T; "
    "Q <- R with unit columns (rank = rank_fraction*min side); "
    "p <- (1 - lr*weight_decay)*p - lr*sqrt(d_out/d_in)*P*Q^T; "
    "other leaves: AdamW with b1, b2, eps",
    "scion": "d <- (1-momentum)*d + momentum*g; u = scales*dir(d), dir: s*U*V^T for "
    "d = U*S*V^T (matrices, spectral, Newton-Schulz), d/rms(d) (vectors); "
    "p <- p - lr*u if unconstrained (the preset), else p <- (1-lr)*p - lr*u",
}


def _shown(default: Any) -> str:
    # A function's repr carries its address; its name is what a reader needs.
    if callable(default) and hasattr(default, "__name__"):
        return default.__name__
    return repr(default)


def _title(factory: Any) -> str:
    """A docstring's first line without its Sphinx markup: ``"Rosenbrock's banana valley"``."""
    line = (inspect.getdoc(factory) or "").splitlines()[0]
    return line.split(":math:")[0].replace("``", "").rstrip(" :.")


def render(
    problems: Mapping[str, Callable[..., Any]],
    optimizers: Mapping[str, Any],
    groups: Mapping[str, Sequence[str]],
) -> str:
    """Every problem and optimizer preset with its formula, options and defaults.

    The registry's tables come in as arguments (:func:`~optim_fn.experiments.registry.
    describe` passes them), so this module does not import the registry.
    """
    missing = "(no plain-text formula yet: see the docstring)"
    lines = [f"notation: {NOTATION}", "problems:"]
    for name, factory in problems.items():
        options = ", ".join(
            f"{p.name}={p.default!r}" for p in inspect.signature(factory).parameters.values()
        )
        lines.append(f"  {name:<11} {_title(factory)}")
        lines.append(f"  {'':<11} formula: {PROBLEM_FORMULAS.get(name, missing)}")
        lines.append(f"  {'':<11} options: {options or '(none)'}")
    lines.append("optimizers:")
    for name, preset in optimizers.items():
        options = ", ".join(
            f"{p.name}={_shown(preset.keywords.get(p.name, p.default))}"
            for p in inspect.signature(preset.factory).parameters.values()
            if p.name != "learning_rate"
        )
        rates = ", ".join(f"{k}: {v:g}" for k, v in preset.learning_rates.items())
        lines.append(f"  {name:<19} {preset.summary}")
        lines.append(f"  {'':<19} formula: {OPTIMIZER_FORMULAS.get(name, missing)}")
        lines.append(f"  {'':<19} learning_rate by problem ({rates}); {options}")
    lines.append("groups (for --optimizers):")
    for name, members in groups.items():
        lines.append(f"  {name:<19} {' '.join(members)}")
    return "\n".join(lines)
