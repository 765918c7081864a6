"""Two-dimensional test functions with known minima, as finite sums of terms.

Each function of the plane is written as the mean of ``n`` per-example losses
:math:`e_i(x, y)` (``n`` times its ``i``-th term), so full-batch gradient descent sees the
function itself and stochastic gradient descent sees one term at a time. The params are
one ``float32`` array of shape ``(2,)``; the gradient is derived by hand as the Jacobian
of the terms.

References: Rosenbrock, Comput. J. 3 (1960); Beale (1958); Himmelblau, Applied Nonlinear
Programming (1972); Rastrigin (1974), as collected by Jamil & Yang, "A literature survey
of benchmark functions for global optimisation problems" (2013).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from optim_fn.experiments.problem import Problem

Array = jax.Array


def _from_terms(
    name: str,
    description: str,
    terms: Callable[[Array], Array],
    jacobian: Callable[[Array], Array],
    *,
    num_terms: int,
    start: tuple[float, float],
    minimum: float,
    minimizers: tuple[tuple[float, float], ...],
    bounds: tuple[tuple[float, float], tuple[float, float]],
    tolerance: float,
    default_steps: int,
    options: dict,
) -> Problem:
    """A :class:`Problem` whose examples are the indices of the ``num_terms`` terms.

    ``terms(p) -> (num_terms,)`` are the per-example losses (their mean is the function)
    and ``jacobian(p) -> (num_terms, 2)`` their hand-derived gradients.
    """

    def loss(params: Array, indices: Array) -> Array:
        return jnp.mean(terms(params)[indices])

    def value_and_grad(params: Array, indices: Array) -> tuple[Array, Array]:
        return loss(params, indices), jnp.mean(jacobian(params)[indices], axis=0)

    if np.shape(start) != (2,) or not np.all(np.isfinite(np.asarray(start, float))):
        raise ValueError(
            f"{name}: `start` must be a point (x, y) of two finite numbers, got {start!r}"
        )
    start_point = jnp.asarray(start, jnp.float32)

    def init(seed: int) -> Array:
        del seed  # every run of a 2-d problem starts from the same point
        return start_point

    return Problem(
        name=name,
        description=description,
        data=jnp.arange(num_terms),
        loss=loss,
        value_and_grad=value_and_grad,
        init=init,
        minimum=minimum,
        minimizers=minimizers,
        bounds=bounds,
        tolerance=tolerance,
        default_steps=default_steps,
        options={"start": start, **options},
    )


def rosenbrock(
    a: float = 1.0, b: float = 100.0, start: tuple[float, float] = (-1.2, 1.0)
) -> Problem:
    """Rosenbrock's banana valley :math:`(a-x)^2 + b (y-x^2)^2`.

    Minimum 0 at :math:`(a, a^2)`; the floor of the curved valley is nearly flat, so
    plain gradient descent crawls along it. Terms: :math:`2(a-x)^2` and
    :math:`2b(y-x^2)^2`. Default start :math:`(-1.2, 1)` (Rosenbrock 1960).
    """

    def terms(p: Array) -> Array:
        x, y = p[0], p[1]
        return jnp.stack([2 * (a - x) ** 2, 2 * b * (y - x**2) ** 2])

    def jacobian(p: Array) -> Array:
        x, y = p[0], p[1]
        zero = jnp.zeros_like(x)
        return jnp.stack(
            [
                jnp.stack([-4 * (a - x), zero]),
                jnp.stack([-8 * b * x * (y - x**2), 4 * b * (y - x**2)]),
            ]
        )

    return _from_terms(
        "rosenbrock",
        f"Rosenbrock (a={a:g}, b={b:g})",
        terms,
        jacobian,
        num_terms=2,
        start=start,
        minimum=0.0,
        minimizers=((a, a * a),),
        bounds=((-2.0, 2.0), (-1.0, 3.0)),
        tolerance=1e-3,
        default_steps=2000,
        options={"a": a, "b": b},
    )


_BEALE_CONSTANTS = (1.5, 2.25, 2.625)


def beale(start: tuple[float, float] = (1.0, 1.4)) -> Problem:
    """Beale's function :math:`\\sum_{k=1}^{3} (c_k - x + x y^k)^2`, ``c = (1.5, 2.25, 2.625)``.

    Minimum 0 at :math:`(3, 1/2)`, in a narrow curved valley with steep walls for
    :math:`|y| > 1`. Terms: :math:`3 (c_k - x + x y^k)^2`.
    """
    constants = jnp.asarray(_BEALE_CONSTANTS, jnp.float32)
    powers = jnp.arange(1, 4, dtype=jnp.float32)

    def residuals(p: Array) -> Array:
        return constants - p[0] + p[0] * p[1] ** powers

    def terms(p: Array) -> Array:
        return 3 * residuals(p) ** 2

    def jacobian(p: Array) -> Array:
        x, y = p[0], p[1]
        r = residuals(p)
        d_dx = 6 * r * (y**powers - 1)
        d_dy = 6 * r * powers * x * y ** (powers - 1)
        return jnp.stack([d_dx, d_dy], axis=1)

    return _from_terms(
        "beale",
        "Beale",
        terms,
        jacobian,
        num_terms=3,
        start=start,
        minimum=0.0,
        minimizers=((3.0, 0.5),),
        bounds=((-1.0, 4.5), (-1.5, 2.0)),
        tolerance=1e-3,
        default_steps=2000,
        options={},
    )


# Refined with Newton's method in float64 from the values in Himmelblau (1972).
_HIMMELBLAU_MINIMIZERS = (
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.2831859912861696),
    (3.5844283403304917, -1.8481265269644034),
)


def himmelblau(start: tuple[float, float] = (-0.5, -0.5)) -> Problem:
    """Himmelblau's function :math:`(x^2 + y - 11)^2 + (x + y^2 - 7)^2`.

    Four minima, all 0 (one at :math:`(3, 2)`): which one a run reaches depends on the
    path, so optimizers that start together can end apart. Terms: :math:`2(x^2+y-11)^2`
    and :math:`2(x+y^2-7)^2`.
    """

    def terms(p: Array) -> Array:
        x, y = p[0], p[1]
        return jnp.stack([2 * (x**2 + y - 11) ** 2, 2 * (x + y**2 - 7) ** 2])

    def jacobian(p: Array) -> Array:
        x, y = p[0], p[1]
        u, v = x**2 + y - 11, x + y**2 - 7
        return jnp.stack([4 * u * jnp.stack([2 * x, 1.0]), 4 * v * jnp.stack([1.0, 2 * y])])

    return _from_terms(
        "himmelblau",
        "Himmelblau",
        terms,
        jacobian,
        num_terms=2,
        start=start,
        minimum=0.0,
        minimizers=_HIMMELBLAU_MINIMIZERS,
        bounds=((-5.0, 5.0), (-5.0, 5.0)),
        tolerance=1e-3,
        default_steps=1000,
        options={},
    )


def saddle(start: tuple[float, float] = (1.5, 1e-3)) -> Problem:
    """A saddle between two valleys: :math:`x^2 + (y^2 - 1)^2 / 4`.

    Saddle point at the origin (value 1/4), minima 0 at :math:`(0, \\pm 1)`. Started
    just off the ridge :math:`y = 0`, gradient descent first slides to the saddle and
    lingers there (the escape direction has gradient :math:`\\approx y`), while methods
    that normalise the step leave at once. Terms: :math:`2x^2` and :math:`(y^2-1)^2/2`.
    """

    def terms(p: Array) -> Array:
        x, y = p[0], p[1]
        return jnp.stack([2 * x**2, (y**2 - 1) ** 2 / 2])

    def jacobian(p: Array) -> Array:
        x, y = p[0], p[1]
        zero = jnp.zeros_like(x)
        return jnp.stack([jnp.stack([4 * x, zero]), jnp.stack([zero, 2 * y * (y**2 - 1)])])

    return _from_terms(
        "saddle",
        "saddle x^2 + (y^2-1)^2/4",
        terms,
        jacobian,
        num_terms=2,
        start=start,
        minimum=0.0,
        minimizers=((0.0, 1.0), (0.0, -1.0)),
        bounds=((-2.0, 2.0), (-1.6, 1.6)),
        tolerance=1e-3,
        default_steps=1000,
        options={},
    )


def quadratic(
    condition_number: float = 10.0,
    angle: float = 0.0,
    start: tuple[float, float] = (-3.0, 2.0),
) -> Problem:
    """An ill-conditioned quadratic bowl :math:`\\tfrac12 (z_1^2 + \\kappa z_2^2)`.

    Here :math:`z = R\\theta`, :math:`R` rotates by ``angle`` radians, and the Hessian
    has eigenvalues 1 and :math:`\\kappa` = ``condition_number``: gradient descent must
    use a step below :math:`2/\\kappa` and then crawls along the flat direction.
    Minimum 0 at the origin.
    With ``angle=0`` the valley is aligned with the axes, which per-coordinate methods
    (Adagrad, RMSprop, Adam) exploit; a rotated valley takes that advantage away.
    Terms: :math:`z_1^2` and :math:`\\kappa z_2^2`.
    """
    if not condition_number >= 1:
        raise ValueError(
            f"quadratic: `condition_number` must be >= 1, got {condition_number!r}"
        )
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = jnp.asarray([[cos, sin], [-sin, cos]], jnp.float32)
    curvature = jnp.asarray([1.0, condition_number], jnp.float32)

    def terms(p: Array) -> Array:
        return curvature * (rotation @ p) ** 2

    def jacobian(p: Array) -> Array:
        return (2 * curvature * (rotation @ p))[:, None] * rotation

    return _from_terms(
        "quadratic",
        f"quadratic (condition number {condition_number:g})",
        terms,
        jacobian,
        num_terms=2,
        start=start,
        minimum=0.0,
        minimizers=((0.0, 0.0),),
        bounds=((-4.0, 4.0), (-3.0, 3.0)),
        tolerance=1e-4,
        default_steps=500,
        options={"condition_number": condition_number, "angle": angle},
    )


def rastrigin(amplitude: float = 10.0, start: tuple[float, float] = (-2.7, 2.2)) -> Problem:
    """Rastrigin's function :math:`2A + \\sum_i (\\theta_i^2 - A \\cos 2\\pi\\theta_i)`.

    Global minimum 0 at the origin, surrounded by a lattice of local minima near the
    integer points: local methods stop in the nearest one. Terms (one per coordinate):
    :math:`2(A + \\theta_i^2 - A\\cos 2\\pi\\theta_i)`.
    """
    two_pi = 2 * math.pi

    def terms(p: Array) -> Array:
        return 2 * (amplitude + p**2 - amplitude * jnp.cos(two_pi * p))

    def jacobian(p: Array) -> Array:
        return jnp.diag(2 * (2 * p + two_pi * amplitude * jnp.sin(two_pi * p)))

    return _from_terms(
        "rastrigin",
        f"Rastrigin (A={amplitude:g})",
        terms,
        jacobian,
        num_terms=2,
        start=start,
        minimum=0.0,
        minimizers=((0.0, 0.0),),
        bounds=((-4.0, 4.0), (-4.0, 4.0)),
        tolerance=1e-3,
        default_steps=1000,
        options={"amplitude": amplitude},
    )
