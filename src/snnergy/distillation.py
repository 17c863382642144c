"""Knowledge distillation: a student learns from a teacher's softened outputs as well as the labels.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (NIPS 2014 Deep Learning
Workshop, arXiv:1503.02531, 2015). With the student's logits ``s``, the teacher's ``t``, the
labels ``y``, a temperature ``T`` and a weight ``w`` in [0, 1], the task loss of a batch is::

    (1 - w) * CE(s, y) + w * T^2 * KL(softmax(t / T) || softmax(s / T))

the KL divergence averaged over the batch. The factor ``T^2`` keeps the soft term's gradients on
the scale of the hard term's when ``T`` changes (the gradient of the soft term scales as 1/T^2,
Hinton et al. 2015, section 2). The teacher's logits are constants: it is evaluated without
gradients and never trained. ``w = 0`` is plain cross-entropy; ``w = 1`` learns from the teacher
alone.

Training (``train.distill``, :func:`snnergy.training.fit`) adds its activity penalty on top, as
without a teacher.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class DistillationLoss(NamedTuple):
    """One batch's distilled task loss and its parts.

    Attributes:
        total: ``(1 - w) * task + w * soft``, what is minimized (before any activity penalty).
        task: The cross-entropy with the labels.
        soft: ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch.
    """

    total: torch.Tensor
    task: torch.Tensor
    soft: torch.Tensor


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, the mean over the batch.

    Args:
        student_logits: ``(N, C)`` logits of the network being trained.
        teacher_logits: ``(N, C)`` logits of the teacher (treated as constants).
        temperature: ``T`` > 0; larger values soften both distributions.

    Example:
        >>> # T = 1: teacher (3/4, 1/4) against student (1/2, 1/2):
        >>> # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308
        >>> s, t = torch.zeros(1, 2), torch.tensor([[float(torch.tensor(3.0).log()), 0.0]])
        >>> round(float(soft_target_loss(s, t, 1.0)), 4)
        0.1308
    """
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * (temperature * temperature)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    weight: float,
    task: torch.Tensor | None = None,
) -> DistillationLoss:
    """The distilled task loss ``(1 - w) * CE(s, y) + w * T^2 * KL(softmax(t/T) || softmax(s/T))``.

    Args:
        student_logits: ``(N, C)`` logits of the network being trained.
        teacher_logits: ``(N, C)`` logits of the teacher (constants).
        labels: ``(N,)`` class indices.
        temperature: ``T`` > 0.
        weight: ``w`` in [0, 1], the soft term's share.
        task: The cross-entropy of ``student_logits`` and ``labels`` when already computed.

    Example:
        >>> s, t, y = torch.zeros(1, 2), torch.tensor([[float(torch.tensor(3.0).log()), 0.0]]), torch.tensor([0])
        >>> parts = distillation_loss(s, t, y, 1.0, 0.5)  # 0.5 * ln 2 + 0.5 * 0.1308
        >>> round(float(parts.total), 4), round(float(parts.task), 4)
        (0.412, 0.6931)
    """
    if task is None:
        task = F.cross_entropy(student_logits, labels)
    soft = soft_target_loss(student_logits, teacher_logits, temperature)
    return DistillationLoss((1.0 - weight) * task + weight * soft, task, soft)
