from __future__ import annotations

import math

import pytest
import torch

from snnergy.distillation import distillation_loss, soft_target_loss


def test_the_loss_equals_its_hand_computed_value_on_two_classes() -> None:
    # T = 2, w = 1/2, label 0. Student logits (0, 0): softmax(s/T) = (1/2, 1/2).
    # Teacher logits (2 ln 3, 0): t/T = (ln 3, 0), softmax = (3/4, 1/4).
    # KL(teacher || student) = 3/4 ln((3/4)/(1/2)) + 1/4 ln((1/4)/(1/2)) = 3/4 ln(3/2) - 1/4 ln 2
    #                        = 0.75 * 0.405465 - 0.25 * 0.693147 = 0.130812
    # soft = T^2 KL = 4 * 0.130812 = 0.523248;  CE = -ln(1/2) = ln 2 = 0.693147
    # total = (1 - 1/2) ln 2 + 1/2 * 0.523248 = 0.608198
    student = torch.zeros(1, 2, dtype=torch.float64)
    teacher = torch.tensor([[2 * math.log(3), 0.0]], dtype=torch.float64)
    parts = distillation_loss(student, teacher, torch.tensor([0]), temperature=2.0, weight=0.5)
    kl = 0.75 * math.log(1.5) - 0.25 * math.log(2)
    assert float(parts.soft) == pytest.approx(4 * kl, rel=1e-12)
    assert float(parts.task) == pytest.approx(math.log(2), rel=1e-12)
    assert float(parts.total) == pytest.approx(0.5 * math.log(2) + 0.5 * 4 * kl, rel=1e-12)
    assert float(parts.total) == pytest.approx(0.608198, abs=1e-6)


def test_the_soft_term_is_the_batch_mean_and_zero_when_the_student_matches() -> None:
    # Two samples: the first matches the teacher (KL 0), the second is the case above at T = 1,
    # teacher (ln 3, 0) -> (3/4, 1/4) against (1/2, 1/2): KL = 0.130812; the mean is half of it.
    teacher = torch.tensor([[1.0, -1.0], [math.log(3), 0.0]], dtype=torch.float64)
    student = torch.tensor([[1.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    kl = 0.75 * math.log(1.5) - 0.25 * math.log(2)
    assert float(soft_target_loss(student, teacher, 1.0)) == pytest.approx(kl / 2, rel=1e-12)
    assert float(soft_target_loss(teacher, teacher, 3.0)) == pytest.approx(0.0, abs=1e-15)


def test_the_teacher_gets_no_gradient_and_weight_zero_is_cross_entropy() -> None:
    student = torch.tensor([[0.3, -0.2, 1.0]], requires_grad=True)
    teacher = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    y = torch.tensor([2])
    parts = distillation_loss(student, teacher, y, temperature=4.0, weight=0.0)
    assert torch.equal(parts.total, torch.nn.functional.cross_entropy(student, y))
    distillation_loss(student, teacher, y, temperature=4.0, weight=1.0).total.backward()
    assert teacher.grad is None and student.grad is not None and bool(student.grad.abs().sum() > 0)
    # w = 1: the student's gradient is T^2 * (softmax(s/T) - softmax(t/T)) / T = T * (p_s - p_t)
    expected = 4.0 * (torch.softmax(student.detach() / 4, 1) - torch.softmax(teacher.detach() / 4, 1))
    assert torch.allclose(student.grad, expected, atol=1e-6)
