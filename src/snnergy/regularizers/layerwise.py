"""Per-layer activity regularizers: penalties on post-ReLU maps that favour sparse activity.

A per-layer regularizer maps one layer's activation map ``a`` of shape ``(B, ...)`` to a
per-sample penalty of shape ``(B,)``; the training loss is ``task_loss + strength *
activity_penalty``. (The model-aware entries of the same registry, ``synops`` and ``macs``, are
in :mod:`snnergy.regularizers.energy_aware`.)

Normalization convention (one for all regularizers). With ``n`` the number of elements of one
sample's map:

1. each regularizer is computed per sample and per layer, normalized *per element* (a mean over
   the ``n`` elements, or a ratio of such means);
2. the per-sample values are averaged over the batch;
3. layers are summed, each with an optional weight
   (:meth:`~snnergy.regularizers.bound.LayerwiseRegularizer.penalty`).

Why: per-element normalization makes a strength mean the same on a 6x28x28 conv map and on an
84-unit layer, on every model, and (with the batch mean) at every batch size, so one strength
grid serves every architecture and dataset. Per sample (rather than over the whole batch, as
SparseML computes HS) makes Hoyer-type penalties a property of each input and leaves the
penalty unchanged when the batch is duplicated. Conversions: DeepHoyer sums over elements
(``L1_DeepHoyer = n * l1``); SparseML sums over the batch tensor and divides by ``B``
(``l1_SparseML = n * l1``, ``l2_SparseML = n * l2``, ``hs_SparseML ~ n * hoyer-square``), so a
SparseML ``alpha`` of 1e-5 on a layer of ``n`` elements corresponds to ``1e-5 * n`` here.

Regularizers (``a`` one sample's map, sums and means over its ``n`` elements):

- ``none``: 0.
- ``l1``: ``mean |a|`` (DeepHoyer reg 1; SparseML ``l1``).
- ``l2``: ``mean a^2``, the squared norm without square root, as SparseML's ``l2``.
- ``hoyer``: ``mean|a| / sqrt(mean a^2) = (sum|a| / ||a||_2) / sqrt(n)``, DeepHoyer's Hoyer ratio
  (reg 2) divided by ``sqrt(n)``; in ``[1/sqrt(n), 1]``.
- ``hoyer-square``: ``(mean|a|)^2 / mean a^2 = (sum|a|)^2 / (n sum a^2)``, DeepHoyer's HS (reg 3;
  SparseML ``hs``) divided by ``n``; in ``[1/n, 1]``. Hoyer and HS are scale invariant: they
  reward concentrating the activity on few units rather than shrinking all of it (the
  motivation of DeepHoyer).
- ``transformed-l1``: ``mean (beta+1)|a| / (beta+|a|)`` with ``beta = 1`` as the DeepHoyer code
  fixes it (reg 4); in ``[0, 2)``.

The minimum of Hoyer and HS is reached with exactly one non-zero element, the maximum (1) when
all elements are equal and non-zero. An all-zero sample (silence) scores 0 on every regularizer,
with finite gradients: the denominators are made safe with ``torch.where``. A sample with a
non-finite activation scores NaN, never masked, so training stops on it (``l1`` and ``l2`` also
score NaN where their sum overflows to inf: the check is made on the per-sample value, which a
non-finite activation always makes non-finite, not on every activation).

The functions below are the reference: plain tensor operations, differentiated by autograd.
Each registry entry (:class:`~snnergy.regularizers.bound.LayerwiseRegularizer`) pairs one with
its fast path, a kernel of :mod:`snnergy.regularizers.fused` (issue 8: every layer in one
autograd node with a closed-form gradient, the same value to the bit), taken when the entry's
``fast`` option is on (the default) and every map shares batch size, dtype and device.

References:
    Yang, Wen, Li. "DeepHoyer: Learning Sparser Neural Network with Differentiable Scale-Invariant
    Sparsity Measures." ICLR 2020 (repo yanghr/DeepHoyer, ``mnist/CNN/element.py``).
    Kurtz et al. "Inducing and Exploiting Activation Sparsity for Fast Inference on Deep Neural
    Networks." ICML 2020; SparseML ``ASRegModifier`` (repo neuralmagic/sparseml,
    ``modifier_regularizer.py``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from snnergy.errors import SnnergyError

Regularizer = Callable[[Tensor], Tensor]
"""``(B, ...)`` activation map -> ``(B,)`` per-sample penalty."""

TL1_BETA = 1.0
"""Transformed-L1 ``beta``, fixed to 1 as in the DeepHoyer code (reg 4)."""

def _per_sample(a: Tensor) -> Tensor:
    """The map as ``(B, n)``."""
    if a.dim() == 0:
        raise SnnergyError(f"an activation map needs a batch dimension, got shape {tuple(a.shape)}")
    return a.reshape(a.shape[0], -1)


def _nan_where_nonfinite(value: Tensor) -> Tensor:
    """``value`` ``(B,)``, with NaN for every sample whose value is not finite."""
    return torch.where(torch.isfinite(value), value, torch.full_like(value, math.nan))


def _moments(a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Scale-free ``mean|b|`` and ``mean b^2`` of ``b = a / max|a|``, and the silence mask.

    Hoyer and HS are scale invariant, so they equal their value on ``b``, whose ``mean b^2`` is
    at least ``1/n`` unless the sample is silent: no underflow or overflow in the squares. The
    scale is detached; by scale invariance the gradient stays exact.
    """
    flat = _per_sample(a)
    scale = flat.detach().abs().amax(dim=1, keepdim=True)
    silent = (scale == 0).squeeze(1)
    b = flat / torch.where(scale == 0, torch.ones_like(scale), scale)
    m1 = b.abs().mean(dim=1)
    m2 = b.pow(2).mean(dim=1)
    return m1, torch.where(silent, torch.ones_like(m2), m2), silent


def no_penalty(a: Tensor) -> Tensor:
    """No regularization: zeros, one per sample.

    Example:
        >>> no_penalty(torch.ones(2, 3))
        tensor([0., 0.])
    """
    return a.new_zeros(_per_sample(a).shape[0])


def l1(a: Tensor) -> Tensor:
    """Mean absolute activation per sample, ``mean |a|`` (DeepHoyer reg 1 divided by ``n``).

    Args:
        a: Activation map ``(B, ...)``.

    Returns:
        ``(B,)`` penalties.

    Example:
        >>> l1(torch.tensor([[0.0, 3.0, 4.0]]))  # (0 + 3 + 4) / 3
        tensor([2.3333])
    """
    return _nan_where_nonfinite(_per_sample(a).abs().mean(dim=1))


def l2(a: Tensor) -> Tensor:
    """Mean squared activation per sample, ``mean a^2`` (SparseML ``l2``: no square root).

    Example:
        >>> l2(torch.tensor([[0.0, 3.0, 4.0]]))  # (0 + 9 + 16) / 3
        tensor([8.3333])
    """
    return _nan_where_nonfinite(_per_sample(a).pow(2).mean(dim=1))


def hoyer(a: Tensor) -> Tensor:
    """Normalized Hoyer ratio per sample, ``mean|a| / sqrt(mean a^2)``, in ``[1/sqrt(n), 1]``.

    DeepHoyer's ``sum|a| / ||a||_2`` divided by ``sqrt(n)``; 0 for a silent sample.

    Example:
        >>> hoyer(torch.tensor([[0.0, 3.0, 4.0], [0.0, 0.0, 0.0]]))  # (7/3) / sqrt(25/3)
        tensor([0.8083, 0.0000])
    """
    m1, m2, silent = _moments(a)
    value = m1 / m2.sqrt()
    return torch.where(silent, torch.zeros_like(value), value)


def hoyer_square(a: Tensor) -> Tensor:
    """Normalized Hoyer-Square per sample, ``(mean|a|)^2 / mean a^2``, in ``[1/n, 1]``.

    DeepHoyer's HS ``(sum|a|)^2 / sum a^2`` divided by ``n``; 0 for a silent sample.

    Example:
        >>> hoyer_square(torch.tensor([[0.0, 3.0, 4.0]]))  # (7/3)^2 / (25/3) = 49/75
        tensor([0.6533])
    """
    m1, m2, silent = _moments(a)
    value = m1.pow(2) / m2
    return torch.where(silent, torch.zeros_like(value), value)


def transformed_l1(a: Tensor) -> Tensor:
    """Transformed L1 per sample, ``mean (beta+1)|a| / (beta+|a|)`` with ``beta = 1``.

    DeepHoyer reg 4 divided by ``n``; each element contributes less than ``beta + 1``.

    Example:
        >>> transformed_l1(torch.tensor([[0.0, 3.0, 4.0]]))  # (0 + 2*3/4 + 2*4/5) / 3
        tensor([1.0333])
    """
    mag = _per_sample(a).abs()
    return _nan_where_nonfinite(((TL1_BETA + 1.0) * mag / (TL1_BETA + mag)).mean(dim=1))
