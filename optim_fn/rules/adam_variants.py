"""Adam's relatives: Adamax, AMSGrad, AdaBelief, Yogi, RAdam, Adan, ADOPT, AdEMAMix, EMA.

Each rule takes one gradient array, the state arrays of the same shape, and scalar
hyperparameters, and returns ``(update, *new_state)`` (see :mod:`optim_fn.rules.classic`
for the conventions: ``count`` is ``t``, 1 at the first update; each decay rate ``b``
also arrives as ``one_minus_b``, computed at full precision on the host).

Second moments are real (``|g|^2``) for complex gradients, and every comparison
(``max``, ``sign``) is taken on real numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from optim_fn.core.numerics import safe_increment as next_count
from optim_fn.rules.classic import abs_sq, debias, moving_average

Array = jax.Array


def real(x: Array) -> Array:
    """The real part of a complex array (a second-moment slot stored in a complex dtype)."""
    return x.real if jnp.iscomplexobj(x) else x




def nesterov_debias(mu: Array, grad: Array, b1: Array, one_minus_b1: Array, count: Array) -> Array:
    """Dozat's (2016) Nesterov first moment: ``b1 m_t/(1-b1^{t+1}) + (1-b1) g_t/(1-b1^t)``."""
    return b1 * debias(mu, b1, next_count(count)) + one_minus_b1 * debias(grad, b1, count)


def first_moment_hat(
    mu: Array, grad: Array, b1: Array, one_minus_b1: Array, count: Array, nesterov: bool
) -> Array:
    if nesterov:
        return nesterov_debias(mu, grad, b1, one_minus_b1, count)
    return debias(mu, b1, count)


def ema(
    grad: Array,
    ema: Array,
    *,
    count: Array,
    decay: Array,
    one_minus_decay: Array,
    debias_ema: bool,
) -> tuple:
    """Exponential moving average: ``e_t = d e + (1-d) g``; ``u = e_t`` (or ``e_t/(1-d^t)``)."""
    ema = moving_average(grad, ema, decay, one_minus_decay)
    return (debias(ema, decay, count) if debias_ema else ema), ema


def adamax(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    eps: Array,
    precise_bias_correction: bool = False,
) -> tuple:
    """Adamax (Kingma & Ba 2015, Algorithm 2): Adam with the infinity norm.

    ``m_t = b1 m + (1-b1) g``; ``u_t = max(b2 u, |g| + eps)``; ``u = m_t / (1-b1^t) / u_t``.
    ``precise_bias_correction`` computes ``1 - b1^t`` from ``1 - b1`` (see ``debias``).
    """
    mu = moving_average(grad, mu, b1, one_minus_b1)
    nu = jnp.maximum(b2 * real(nu), jnp.abs(grad) + eps)
    correction = one_minus_b1 if precise_bias_correction else None
    return debias(mu, b1, count, correction) / nu, mu, nu


def amsgrad(
    grad: Array,
    mu: Array,
    nu: Array,
    nu_max: Array,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
    eps_root: Array,
    bias_correction_mu: bool,
    bias_correction_nu: bool,
) -> tuple:
    """AMSGrad (Reddi, Kale & Kumar 2018): Adam dividing by the running max of ``v``.

    ``v^max_t = max(v^max, v^_t)`` with ``v^_t`` the (optionally bias-corrected) second
    moment; ``u = m^_t / (sqrt(v^max_t + eps_root) + eps)``.
    """
    mu = moving_average(grad, mu, b1, one_minus_b1)
    nu = moving_average(abs_sq(grad), nu, b2, one_minus_b2)
    mu_hat = debias(mu, b1, count) if bias_correction_mu else mu
    nu_hat = debias(nu, b2, count) if bias_correction_nu else nu
    nu_max = jnp.maximum(real(nu_max), real(nu_hat))
    return mu_hat / (jnp.sqrt(nu_max + eps_root) + eps), mu, nu, nu_max


def belief(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
    eps_root: Array,
    nesterov: bool,
) -> tuple:
    """AdaBelief (Zhuang et al. 2020, Algorithm 2): the second moment of ``g - m``.

    ``m_t = b1 m + (1-b1) g``; ``s_t = b2 s + (1-b2)|g - m_t|^2 + eps_root``;
    ``u = m^_t / (sqrt(s_t/(1-b2^t)) + eps)`` with ``m^_t`` as in Adam.
    """
    mu = moving_average(grad, mu, b1, one_minus_b1)
    nu = moving_average(abs_sq(grad - mu), nu, b2, one_minus_b2) + eps_root
    mu_hat = first_moment_hat(mu, grad, b1, one_minus_b1, count, nesterov)
    return mu_hat / (jnp.sqrt(debias(nu, b2, count)) + eps), mu, nu


def yogi(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
    eps_root: Array,
) -> tuple:
    """Yogi (Zaheer et al. 2018, Algorithm 2): an additive second-moment update.

    ``v_t = v - (1-b2) sign(v - g^2) g^2``; ``u = m^_t / (sqrt(v^_t + eps_root) + eps)``.
    """
    mu = moving_average(grad, mu, b1, one_minus_b1)
    square = abs_sq(grad)
    nu = real(nu)
    nu = nu - one_minus_b2 * jnp.sign(nu - square) * square
    return debias(mu, b1, count) / (jnp.sqrt(debias(nu, b2, count) + eps_root) + eps), mu, nu


def radam_rho(count: Array, one_minus_b2: Array) -> Array:
    """RAdam's ``rho_t = 2/(1-b2) - 1 - 2 t b2^t / (1-b2^t)``, accurate to ~5e-7 in float32.

    Written directly, ``rho_t`` is a difference of two numbers close to ``rho_inf``
    (~2000 for ``b2 = 0.999``) while ``rho_t`` itself is ~5 where RAdam switches on: in
    float32 that loses 1-3% of it (optax's float32 RAdam is 1.2% off its float64 run at
    step 6). With ``x = 1 - b2`` and ``u = -t log(1-x)``, ``rho_t + 1 = 2 N / (x(1-e^-u))``
    where ``N = g(u) + t d e^-u``, ``g(u) = 1 - e^-u (1+u)`` and ``d = -log(1-x) - x``;
    ``g`` and ``d`` are summed as series where their direct forms would cancel.
    """
    x = one_minus_b2
    t = count.astype(x.dtype)
    log_one_minus_x = jnp.log1p(-x)
    d_series = sum(x**k / k for k in range(2, 12))
    d = jnp.where(x < 0.1, d_series, -log_one_minus_x - x)
    u = -t * log_one_minus_x
    g_series = sum((-1) ** k * (k - 1) * u**k / float(math.factorial(k)) for k in range(2, 16))
    g = jnp.where(u < 1, g_series, -jnp.expm1(-u) - u * jnp.exp(-u))
    # b2 = 0 (x = 1): u and d are infinite but the term they form vanishes.
    tail = jnp.where(x < 1, t * d * jnp.exp(-u), 0)
    return 2 * (g + tail) / (x * -jnp.expm1(-u)) - 1


def radam(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
    eps_root: Array,
    threshold: Array,
    nesterov: bool,
    eps_on_raw_nu: bool = False,
    strict_threshold: bool = False,
) -> tuple:
    """RAdam (Liu et al. 2020, Algorithm 2): Adam with a rectified adaptive step.

    ``eps_on_raw_nu`` (PyTorch's placement) divides by ``(sqrt(v_t) + eps) / sqrt(1-b2^t)``
    instead of ``sqrt(v^_t) + eps``, with both bias corrections computed from ``1 - b``;
    ``strict_threshold`` (PyTorch's) rectifies when ``rho_t > threshold`` rather than ``>=``.

    ``rho_inf = 2/(1-b2) - 1``, ``rho_t = rho_inf - 2 t b2^t / (1-b2^t)``; when
    ``rho_t >= threshold``, ``u = r_t m^_t / (sqrt(v^_t + eps_root) + eps)`` with
    ``r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))``,
    otherwise ``u = m^_t`` (momentum SGD while the variance is intractable).
    """
    mu = moving_average(grad, mu, b1, one_minus_b1)
    nu = moving_average(abs_sq(grad), nu, b2, one_minus_b2)
    rho_inf = 2 / one_minus_b2 - 1
    rho = radam_rho(count, one_minus_b2)
    # Clamped so the branch that `where` discards cannot make a NaN (rho < 4 early on).
    ratio = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
    rectifier = jnp.sqrt(jnp.maximum(ratio, 0))
    rectify = rho > threshold if strict_threshold else rho >= threshold
    if eps_on_raw_nu and not nesterov:
        mu_hat = debias(mu, b1, count, one_minus_b1)
        root_correction = jnp.sqrt(-jnp.expm1(count * jnp.log1p(-one_minus_b2)))
        scaling = root_correction.astype(mu_hat.dtype) / (jnp.sqrt(nu + eps_root) + eps)
        adaptive = mu_hat * rectifier.astype(mu_hat.dtype) * scaling
        return jnp.where(rectify, adaptive, mu_hat), mu, nu
    mu_hat = first_moment_hat(mu, grad, b1, one_minus_b1, count, nesterov)
    nu_hat = debias(nu, b2, count)
    adaptive = rectifier.astype(mu_hat.dtype) * mu_hat / (jnp.sqrt(nu_hat + eps_root) + eps)
    return jnp.where(rectify, adaptive, mu_hat), mu, nu


def adan(
    grad: Array,
    m: Array,
    v: Array,
    n: Array,
    prev_grad: Array,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    b3: Array,
    one_minus_b3: Array,
    eps: Array,
    eps_root: Array,
) -> tuple:
    """Adan (Xie et al. 2022, Algorithm 1), with optax's decay convention.

    ``d_t = g_t - g_{t-1}`` (0 at t=1); ``m_t = b1 m + (1-b1) g``;
    ``v_t = b2 v + (1-b2) d_t``; ``n_t = b3 n + (1-b3)|g_t + (1-b2) d_t|^2``;
    ``u = (m^_t + (1-b2) v^_t) / (sqrt(n^_t + eps_root) + eps)``, each ``^`` a bias
    correction.
    """
    diff = jnp.where(count == 1, jnp.zeros_like(grad), grad - prev_grad)
    m = moving_average(grad, m, b1, one_minus_b1)
    v = moving_average(diff, v, b2, one_minus_b2)
    n = moving_average(abs_sq(grad + one_minus_b2 * diff), n, b3, one_minus_b3)
    direction = debias(m, b1, count) + one_minus_b2 * debias(v, b2, count)
    return direction / (jnp.sqrt(debias(n, b3, count) + eps_root) + eps), m, v, n, grad


def _clip_magnitude(x: Array, limit: Array) -> Array:
    if jnp.iscomplexobj(x):
        magnitude = jnp.abs(x)
        return x * jnp.where(magnitude > limit, limit / jnp.where(magnitude > 0, magnitude, 1), 1)
    return jnp.clip(x, -limit, limit)


def adopt(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
    nesterov: bool,
    use_clipping: bool,
    clip_value_fn: Callable[[Array], Array],
) -> tuple:
    """ADOPT (Taniguchi et al. 2024, Algorithm 2): normalise by the PREVIOUS second moment.

    At t=1 only ``v_1 = g^2``. Then ``m_t = b1 m + (1-b1) clip(g / max(sqrt(v_{t-1}), eps),
    c(t-1))`` with ``c = clip_value_fn``, ``v_t = b2 v + (1-b2) g^2``, and ``u = m_t``
    (Nesterov: ``b1 m_t + (1-b1)`` times the clipped term).
    """
    first = count == 1
    b1_now = jnp.where(first, 1, b1)
    one_minus_b1_now = jnp.where(first, 0, one_minus_b1)
    b2_now = jnp.where(first, 0, b2)
    one_minus_b2_now = jnp.where(first, 1, one_minus_b2)
    normalized = grad / jnp.maximum(jnp.sqrt(real(nu)), eps)
    if use_clipping:
        normalized = _clip_magnitude(normalized, clip_value_fn(count - 1))
    new_nu = moving_average(abs_sq(grad), nu, b2_now, one_minus_b2_now)
    mu = moving_average(normalized, mu, b1_now, one_minus_b1_now)
    update = moving_average(normalized, mu, b1_now, one_minus_b1_now) if nesterov else mu
    return update, mu, new_nu


def ademamix(
    grad: Array,
    m1: Array,
    m2: Array,
    nu: Array,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    b3: Array,
    one_minus_b3: Array,
    alpha: Array,
    eps: Array,
    eps_root: Array,
) -> tuple:
    """AdEMAMix (Pagliardini, Ablin & Grangier 2024, Algorithm 1): a fast and a slow EMA.

    ``m1_t = b1 m1 + (1-b1) g``; ``m2_t = b3 m2 + (1-b3) g`` (not bias-corrected);
    ``v_t = b2 v + (1-b2)|g|^2``; ``u = (m1_t/(1-b1^t) + alpha m2_t) / (sqrt(v^_t + eps_root)
    + eps)``.
    """
    m1 = moving_average(grad, m1, b1, one_minus_b1)
    m2 = moving_average(grad, m2, b3, one_minus_b3)
    nu = moving_average(abs_sq(grad), nu, b2, one_minus_b2)
    denominator = jnp.sqrt(debias(nu, b2, count) + eps_root) + eps
    return (debias(m1, b1, count) + alpha * m2) / denominator, m1, m2, nu


def simplified_ademamix(
    grad: Array,
    m: Array,
    n: Array,
    *,
    count: Array,
    b1: Array,
    b2: Array,
    one_minus_b2: Array,
    alpha: Array,
    eps: Array,
    eps_root: Array,
) -> tuple:
    """Simplified AdEMAMix (Morwani et al. 2025, Algorithm 2): an undamped momentum sum.

    ``m_t = b1 m + g`` (no ``1-b1``); ``n_t = b2 n + (1-b2)|g|^2``;
    ``u = (m_t + alpha g) / (sqrt(n_t/(1-b2^t) + eps_root) + eps)``.
    """
    m = b1 * m + grad
    n = moving_average(abs_sq(grad), n, b2, one_minus_b2)
    return (m + alpha * grad) / (jnp.sqrt(debias(n, b2, count) + eps_root) + eps), m, n


def optimistic_gradient(
    grad: Array, prev_grad: Array, *, count: Array, alpha: Array, beta: Array
) -> tuple:
    """Optimistic gradient (Popov 1980; Daskalakis et al. 2018): a gradient extrapolation.

    ``u_t = (alpha + beta) g_t - beta g_{t-1}``, with ``g_0 = g_1`` (so ``u_1 = alpha g_1``).
    """
    prev_grad = jnp.where(count == 1, grad, prev_grad)
    return (alpha + beta) * grad - beta * prev_grad, grad


def acprop(
    grad: Array,
    mu: Array,
    nu: Array,
    *,
    count: Array,
    b1: Array,
    one_minus_b1: Array,
    b2: Array,
    one_minus_b2: Array,
    eps: Array,
    eps_root: Array,
) -> tuple:
    """ACProp (Zhuang et al. 2021) as optax computes it: AdaBelief's ``s``, one step late.

    ``s_t = b2 s + (1-b2)|g - m_{t-1}|^2 + eps_root``; ``m_t = b1 m + (1-b1) g``;
    ``u = g / (sqrt(s_{t-1}/(1-b2^{t-1})) + eps)``, with ``1`` for the root at ``t = 1``.
    The denominator uses only past gradients (the "asynchronous" update).
    """
    previous = count - 1
    first = previous == 0
    # At t = 1 the correction 1 - b2^0 is zero: divide by one there instead.
    nu_hat = debias(real(nu), b2, jnp.where(first, 1, previous))
    nu_hat = jnp.where(first, jnp.ones_like(nu_hat), nu_hat)
    new_nu = moving_average(abs_sq(grad - mu), nu, b2, one_minus_b2) + eps_root
    new_mu = moving_average(grad, mu, b1, one_minus_b1)
    return grad / (jnp.sqrt(nu_hat) + eps), new_mu, new_nu
