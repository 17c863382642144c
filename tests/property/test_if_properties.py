"""Identities of the non-leaky integrate-and-fire neuron (Rueckauer et al. 2017)."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnergy.simulation import IFNeuron, if_step
from snnergy.simulation.neurons import if_step_

currents = st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=1, max_size=60)
thresholds = st.floats(0.1, 5.0)


def run(inputs: list[float], neuron: IFNeuron) -> tuple[int, float, list[float]]:
    """Spike count, final potential and spikes of one neuron fed ``inputs`` from v = 0 (float64)."""
    v = torch.zeros((), dtype=torch.float64)
    count, spikes = 0, []
    for value in inputs:
        s, v = if_step(torch.tensor(value, dtype=torch.float64), v, neuron)
        count += int(s.item())
        spikes.append(s.item())
    return count, v.item(), spikes


@settings(max_examples=200, deadline=None)
@given(currents, thresholds)
def test_subtractive_reset_conserves_charge(inputs: list[float], threshold: float) -> None:
    # with subtractive reset nothing is lost: threshold x spikes + final potential = summed input
    count, v, _ = run(inputs, IFNeuron(threshold=threshold))
    assert math.isclose(threshold * count + v, math.fsum(inputs), rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=100, deadline=None)
@given(currents, thresholds, st.sampled_from(["subtract", "zero"]))
def test_spikes_are_binary_and_follow_the_threshold(inputs: list[float], threshold: float,
                                                    reset: str) -> None:
    # at most one spike per step, and a step spikes exactly when v + current reaches the threshold
    neuron, v = IFNeuron(threshold=threshold, reset=reset), torch.zeros((), dtype=torch.float64)
    for value in inputs:
        before = v.item() + value
        s, v = if_step(torch.tensor(value, dtype=torch.float64), v, neuron)
        assert s.item() == (1.0 if before >= threshold else 0.0)
        if reset == "zero" and s.item():
            assert v.item() == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60))
def test_non_negative_input_below_threshold_keeps_potential_in_range(inputs: list[float]) -> None:
    # inputs in [0, threshold]: after each step 0 <= v < threshold, so the rate lags the input
    # mean by less than 1/T (the O(1/T) convergence of rate coding)
    count, v, _ = run(inputs, IFNeuron())
    assert 0.0 <= v < 1.0
    assert 0 <= math.fsum(inputs) - count < 1.0 + 1e-9


@settings(max_examples=100, deadline=None)
@given(currents, thresholds, st.sampled_from(["subtract", "zero"]))
def test_in_place_step_is_bitwise_the_pure_step(inputs: list[float], threshold: float, reset: str) -> None:
    neuron = IFNeuron(threshold, reset)
    current = torch.tensor(inputs, dtype=torch.float32)
    v_pure, v_fast, out = torch.zeros(len(inputs)), torch.zeros(len(inputs)), torch.empty(len(inputs))
    for shift in range(4):  # a few steps with rotated currents
        step = current.roll(shift)
        s_pure, v_pure = if_step(step, v_pure, neuron)
        if_step_(step, v_fast, neuron, out)
        assert torch.equal(s_pure, out)
        assert torch.equal(v_pure, v_fast)
