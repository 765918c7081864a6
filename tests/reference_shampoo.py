"""A NumPy transcription of facebookresearch/optimizers' Distributed Shampoo (single device).

Written for the tests from the algorithm of ``distributed_shampoo/`` at commit
f60660661194de26d3ee78bae6d15820ff8e583d (2026-08-05), which is not on PyPI:
``DistributedShampoo._compute_search_directions`` and ``_group_step_body``
(distributed_shampoo.py), ``Distributor._merge_and_block_with_params``
(distributor/shampoo_distributor.py), ``merge_small_dims`` / ``multi_dim_split``
(utils/shampoo_utils.py), ``RootInvShampooPreconditionerList`` and
``EigenvalueCorrectedShampooPreconditionerList`` (preconditioner/
shampoo_preconditioner_list.py), ``AdagradPreconditionerList`` and
``SGDPreconditionerList``, and ``matrix_inverse_root`` / ``matrix_eigendecomposition``
(preconditioner/matrix_functions.py, with the default ``EigenConfig``,
``PerturbationConfig(perturb_before_computation=True)`` and ``CoupledNewtonConfig``).
It keeps the reference's structure (blocks in lists, one pass per stage) so that it reads
against that code, not against optim_fn's; everything is float64.

Offered: ``betas``, ``beta3``, ``epsilon``, ``weight_decay`` with the ``"decoupled"`` and
``"l2"`` types, ``max_preconditioner_dim``, ``precondition_frequency``,
``start_preconditioning_step``, ``use_bias_correction``, grafting by SGD / AdaGrad /
RMSprop / Adam, the root-inverse (eigendecomposition or coupled Newton) and
eigenvalue-corrected preconditioners, classic momentum (``ClassicMomentumConfig``), and
``target_parameter_dimensionality`` 1 (merge) or ``math.inf`` (keep the shape),
``inverse_exponent_override`` and ``ignored_basis_change_dims``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def merge_small_dims(shape, threshold, target_dimensionality):
    if 0 in shape:
        return (0,)
    if math.isinf(target_dimensionality):
        return tuple(shape)
    squeezed = [s for s in reversed(shape) if s != 1] or [1]
    new_shape = [squeezed[0]]
    for processed, size in enumerate(squeezed[1:], start=1):
        potential = len(new_shape) + len(squeezed) - processed
        if potential > target_dimensionality and new_shape[-1] * size <= threshold:
            new_shape[-1] = new_shape[-1] * size
        else:
            new_shape.append(size)
    return tuple(reversed(new_shape))


def _torch_split(array, split_size, axis):
    """``torch.split(t, split_size, dim)``: chunks of ``split_size``, the last shorter."""
    size = array.shape[axis]
    return [
        np.take(array, np.arange(start, min(start + split_size, size)), axis=axis)
        for start in range(0, size, split_size)
    ]


def multi_dim_split_indices(shape, split_size):
    """Index arrays of the blocks ``multi_dim_split`` returns (in its order)."""
    if math.isinf(split_size):
        return [np.arange(int(np.prod(shape))).reshape(shape)]
    blocks = [np.arange(int(np.prod(shape))).reshape(shape)]
    for axis in range(len(shape)):
        blocks = [piece for block in blocks for piece in _torch_split(block, split_size, axis)]
    return blocks


def _lerp(start, end, weight):
    """``torch.lerp``."""
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


def matrix_inverse_root_eigen(a, root, epsilon):
    a_ridge = a + epsilon * np.eye(a.shape[0])
    eigenvalues, eigenvectors = np.linalg.eigh(a_ridge)
    lambda_min = eigenvalues.min()
    if lambda_min < epsilon:
        eigenvalues = eigenvalues + (-lambda_min)
        eigenvalues = eigenvalues + epsilon
    inv_power = eigenvalues ** (-1.0 / float(root))
    return (eigenvectors * inv_power[None, :]) @ eigenvectors.T


def matrix_inverse_root_newton(a, root, epsilon, max_iterations, tolerance):
    dim = a.shape[0]
    alpha = -1 / root
    identity = np.eye(dim)
    a_ridge = a + epsilon * identity
    z = (root + 1) / (2 * np.linalg.norm(a_ridge))
    x = z ** (-alpha) * identity
    m = z * a_ridge
    error = np.max(np.abs(m - identity))
    iteration = 0
    while error > tolerance and iteration < max_iterations:
        iteration += 1
        m_p = m * alpha + identity * (1 - alpha)
        x = x @ m_p
        m = np.linalg.matrix_power(m_p, root) @ m
        error = np.max(np.abs(m - identity))
    return x


def _precondition_grad(grad, selector, preconditioner_list, dims=((0,), (0,))):
    """``BaseShampooPreconditionerList._precondition_grad``: a tensordot with the next
    preconditioner on each selected dim, a left rotation of the axes on the others."""
    preconditioners = iter(preconditioner_list)
    for should_precondition in selector:
        if should_precondition:
            grad = np.tensordot(grad, next(preconditioners), axes=dims)
        else:
            grad = np.transpose(grad, (*range(1, grad.ndim), 0))
    return grad


class DistributedShampoo:
    """One parameter group; ``step(params, grads)`` returns the new params."""

    def __init__(
        self,
        params,
        lr=1e-2,
        betas=(0.9, 1.0),
        beta3=-1.0,
        epsilon=1e-12,
        weight_decay=0.0,
        weight_decay_type="decoupled",
        max_preconditioner_dim=1024,
        precondition_frequency=1,
        start_preconditioning_step=-1,
        use_bias_correction=True,
        grafting=None,
        grafting_beta2=None,
        grafting_epsilon=1e-10,
        preconditioner="root_inverse",
        root_inverse=("eigen",),
        inverse_exponent_override=None,
        ignored_basis_change_dims=None,
        classic_momentum=None,
        target_parameter_dimensionality=1,
    ):
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.beta3 = self.beta1 if beta3 == -1.0 else beta3
        self.epsilon = epsilon
        self.weight_decay = weight_decay
        self.weight_decay_type = weight_decay_type
        self.precondition_frequency = precondition_frequency
        if start_preconditioning_step == -1:
            start_preconditioning_step = precondition_frequency
        self.start = start_preconditioning_step
        self.use_bias_correction = use_bias_correction
        self.preconditioner = preconditioner
        self.root_inverse = root_inverse
        self.classic_momentum = classic_momentum
        self.step_count = 0

        # The distributor: merge, then block, each param.
        self.shapes = [p.shape for p in params]
        self.merged = [
            merge_small_dims(p.shape, max_preconditioner_dim, target_parameter_dimensionality)
            for p in params
        ]
        self.block_indices = [
            multi_dim_split_indices(m, max_preconditioner_dim) for m in self.merged
        ]
        blocks = [
            p.reshape(-1)[index]
            for p, idx in zip(params, self.block_indices, strict=True)
            for index in idx
        ]
        self.block_shapes = [b.shape for b in blocks]

        # Shampoo's preconditioner list.
        self.shampoo_weighting = 1.0 if self.beta2 == 1.0 else 1 - self.beta2
        self.shampoo_bias_correction2 = 1.0
        override = inverse_exponent_override or {}
        ignored = ignored_basis_change_dims or {}

        def inverse_exponent(dimension, order):
            on_order = override.get(order, {})
            if isinstance(on_order, dict):
                return on_order.get(dimension, 1 / (2 * max(order, 1)))
            return on_order

        if preconditioner == "root_inverse":
            self.selectors = [
                tuple(inverse_exponent(d, b.ndim) != 0.0 for d in range(b.ndim)) for b in blocks
            ]
            self.roots = [
                [1 / inverse_exponent(k, b.ndim) for k, on in enumerate(sel) if on]
                for b, sel in zip(blocks, self.selectors, strict=True)
            ]
        else:
            self.selectors = [
                tuple(d not in ignored.get(b.ndim, []) for d in range(b.ndim)) for b in blocks
            ]
            self.roots = [[1 / override.get(b.ndim, 1 / 2)] for b in blocks]
        dims = [
            [d for d, on in zip(b.shape, sel, strict=True) if on]
            for b, sel in zip(blocks, self.selectors, strict=True)
        ]
        self.factor_matrices = [[np.zeros((d, d)) for d in ds] for ds in dims]
        if preconditioner == "root_inverse":
            self.inv_factor_matrices = [[np.eye(d) for d in ds] for ds in dims]
        else:
            self.eigenvectors = [[np.eye(d) for d in ds] for ds in dims]
            self.corrected_eigenvalues = [np.zeros(b.shape) for b in blocks]

        # Grafting's preconditioner list.
        self.grafting = grafting
        if grafting in ("adagrad", "rmsprop", "adam"):
            if grafting == "adagrad":
                self.g_beta2, self.g_weighting, self.g_use_bc = 1.0, 1.0, False
            elif grafting == "rmsprop":
                beta2 = 0.99 if grafting_beta2 is None else grafting_beta2
                self.g_beta2, self.g_weighting, self.g_use_bc = beta2, 1 - beta2, False
            else:
                beta2 = 0.999 if grafting_beta2 is None else grafting_beta2
                self.g_beta2, self.g_weighting, self.g_use_bc = beta2, 1 - beta2, True
            self.g_epsilon = grafting_epsilon
            self.g_bias_correction2 = 1.0
            self.g_preconditioners = [np.zeros(b.shape) for b in blocks]

        self.filtered_grads = [np.zeros(b.shape) for b in blocks] if self.beta1 != 0 else None
        self.momentum_buffers = (
            [np.zeros(b.shape) for b in blocks] if classic_momentum is not None else None
        )

    # -- blocking ------------------------------------------------------------------------

    def _blocked(self, arrays):
        return [
            a.reshape(-1)[index].copy()
            for a, idx in zip(arrays, self.block_indices, strict=True)
            for index in idx
        ]

    def _unblocked(self, blocks):
        out, position = [], 0
        for shape, idx in zip(self.shapes, self.block_indices, strict=True):
            flat = np.zeros(int(np.prod(shape)))
            for index in idx:
                flat[index.reshape(-1)] = blocks[position].reshape(-1)
                position += 1
            out.append(flat.reshape(shape))
        return out

    # -- Shampoo's preconditioner list ---------------------------------------------------

    def _shampoo_update(self, grads, step, perform_amortized_computation):
        for grad, factors, selector in zip(
            grads, self.factor_matrices, self.selectors, strict=True
        ):
            order = grad.ndim
            selected = [k for k in range(order) if selector[k]]
            for factor, k in zip(factors, selected, strict=True):
                others = [*range(k), *range(k + 1, order)]
                outer = np.tensordot(grad, grad, axes=(others, others))
                if self.beta2 != 1.0:
                    factor *= self.beta2
                factor += self.shampoo_weighting * outer
        if self.use_bias_correction and self.beta2 < 1.0:
            self.shampoo_bias_correction2 = 1.0 - self.beta2**step
        if perform_amortized_computation:
            for i, (factors, roots) in enumerate(
                zip(self.factor_matrices, self.roots, strict=True)
            ):
                for k, factor in enumerate(factors):
                    corrected = factor / self.shampoo_bias_correction2
                    if self.preconditioner == "eigenvalue_corrected":
                        ridge = corrected + self.epsilon * np.eye(corrected.shape[0])
                        self.eigenvectors[i][k] = np.linalg.eigh(ridge)[1]
                    elif self.root_inverse[0] == "eigen":
                        self.inv_factor_matrices[i][k] = matrix_inverse_root_eigen(
                            corrected, Fraction(roots[k]), self.epsilon
                        )
                    else:
                        _, max_iterations, tolerance = self.root_inverse
                        root = Fraction(roots[k])
                        assert root.denominator == 1
                        self.inv_factor_matrices[i][k] = matrix_inverse_root_newton(
                            corrected, root.numerator, self.epsilon, max_iterations, tolerance
                        )
        if self.preconditioner == "eigenvalue_corrected":
            for i, grad in enumerate(grads):
                rotated = _precondition_grad(grad, self.selectors[i], self.eigenvectors[i])
                if self.beta2 != 1.0:
                    self.corrected_eigenvalues[i] *= self.beta2
                self.corrected_eigenvalues[i] += self.shampoo_weighting * rotated * rotated

    def _shampoo_precondition(self, grads):
        if self.preconditioner == "root_inverse":
            return [
                _precondition_grad(g, selector, inv)
                for g, selector, inv in zip(
                    grads, self.selectors, self.inv_factor_matrices, strict=True
                )
            ]
        out = []
        for g, selector, vectors, eigenvalues, roots in zip(
            grads,
            self.selectors,
            self.eigenvectors,
            self.corrected_eigenvalues,
            self.roots,
            strict=True,
        ):
            rotated = _precondition_grad(g.copy(), selector, vectors)
            corrected = eigenvalues / self.shampoo_bias_correction2
            # torch's pow(x, 0.5) is a square root
            power = 1 / roots[0]
            corrected = np.sqrt(corrected) if power == 0.5 else corrected**power
            rotated = rotated / (corrected + self.epsilon)
            out.append(_precondition_grad(rotated, selector, vectors, dims=((0,), (1,))))
        return out

    # -- grafting's preconditioner list --------------------------------------------------

    def _grafting_update(self, grads, step):
        if self.grafting in (None, "sgd"):
            return
        for v, g in zip(self.g_preconditioners, grads, strict=True):
            if self.g_beta2 != 1.0:
                v *= self.g_beta2
            v += self.g_weighting * g * g
        if self.g_use_bc and self.g_beta2 < 1.0:
            self.g_bias_correction2 = 1.0 - self.g_beta2**step

    def _grafting_precondition(self, grads):
        if self.grafting == "sgd":
            return [g.copy() for g in grads]
        return [
            g / (np.sqrt(v / self.g_bias_correction2) + self.g_epsilon)
            for g, v in zip(grads, self.g_preconditioners, strict=True)
        ]

    # -- the step ------------------------------------------------------------------------

    def step(self, params, grads):
        self.step_count += 1
        step = self.step_count
        grads = self._blocked(grads)
        blocked_params = self._blocked(params)
        perform_amortized_computation = (
            step % self.precondition_frequency == 0 and step > self.start
        ) or step == self.start
        use_grafting_method = step < self.start and self.grafting is not None

        if self.weight_decay != 0.0 and self.weight_decay_type == "l2":
            grads = [g + self.weight_decay * p for g, p in zip(grads, blocked_params, strict=True)]

        self._shampoo_update(grads, step, perform_amortized_computation)
        self._grafting_update(grads, step)

        if self.beta1 != 0.0:
            if self.beta3 != self.beta1:
                filtered = [
                    _lerp(f, g, 1 - self.beta3)
                    for f, g in zip(self.filtered_grads, grads, strict=True)
                ]
            self.filtered_grads = [
                _lerp(f, g, 1 - self.beta1) for f, g in zip(self.filtered_grads, grads, strict=True)
            ]
            if self.beta3 == self.beta1:
                filtered = self.filtered_grads
            if self.use_bias_correction:
                correction = 1.0 - self.beta3 * self.beta1 ** (step - 1)
                filtered = [f / correction for f in filtered]
        else:
            filtered = grads

        if use_grafting_method:
            directions = self._grafting_precondition(filtered)
        else:
            directions = self._shampoo_precondition(filtered)
            if self.grafting is not None:
                grafted = self._grafting_precondition(filtered)
                directions = [
                    d * (np.linalg.norm(gd) / (np.linalg.norm(d) + 1e-16))
                    for d, gd in zip(directions, grafted, strict=True)
                ]

        if self.weight_decay != 0.0 and self.weight_decay_type == "decoupled":
            directions = [
                d + self.weight_decay * p for d, p in zip(directions, blocked_params, strict=True)
            ]

        if self.classic_momentum is not None:
            momentum, dampening, nesterov = self.classic_momentum
            new_directions = []
            for i, d in enumerate(directions):
                self.momentum_buffers[i] = momentum * self.momentum_buffers[i] + (1 - dampening) * d
                if nesterov:
                    new_directions.append((1 - dampening) * d + momentum * self.momentum_buffers[i])
                else:
                    new_directions.append(self.momentum_buffers[i].copy())
            directions = new_directions

        updates = self._unblocked([-self.lr * d for d in directions])
        return [p + u for p, u in zip(params, updates, strict=True)]
