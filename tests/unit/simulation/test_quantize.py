"""Weight quantization of the SNN: values and error bounds by hand, per-channel scales, the spec
round trip, bad widths, and the accuracy of int8 / 2-bit on a tiny converted net."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from snnergy.config import ConvertConfig
from snnergy.conversion import convert
from snnergy.errors import CheckpointError, ConfigError
from snnergy.simulation import ChannelScale, Shortcut, SpikingNetwork, SpikingStage, load_snn, save_snn, simulate_batch
from snnergy.simulation.quantize import quantize_tensor, quantize_weights, weighted_layers


def test_per_layer_values_and_error_bound_by_hand() -> None:
    w = torch.tensor([[1.4, -0.5], [0.26, 0.0]])
    w_q, scale = quantize_tensor(w, 3)
    # 3 bits: q_max = 2^2 - 1 = 3; scale = max|w| / 3 = 1.4 / 3 = 0.46667.
    # w / scale = [3, -1.0714, 0.5571, 0] -> round -> [3, -1, 1, 0] (0.5571 rounds up)
    # w_q = [1.4, -0.46667, 0.46667, 0]
    assert float(scale) == pytest.approx(1.4 / 3)
    assert w_q.flatten().tolist() == pytest.approx([1.4, -1.4 / 3, 1.4 / 3, 0.0], abs=1e-6)
    # round-to-nearest of a value inside [-q_max, q_max] is off by at most 1/2 a step, so
    # |w - w_q| <= scale / 2 for every element (here max error |0.26 - 0.46667| = 0.20667 <= 0.23333)
    assert float((w - w_q).abs().max()) <= float(scale) / 2 + 1e-7
    assert float((w - w_q).abs().max()) == pytest.approx(1.4 / 3 - 0.26, abs=1e-6)


def test_round_trip_is_exact_on_the_grid_and_idempotent() -> None:
    # 8 bits: q_max = 127; weights that are already k * (1 / 127) come back unchanged
    grid = torch.tensor([-127.0, -64.0, -1.0, 0.0, 5.0, 127.0]) / 127
    w_q, scale = quantize_tensor(grid, 8)
    assert float(scale) == pytest.approx(1 / 127)
    assert torch.allclose(w_q, grid, atol=1e-7)
    torch.manual_seed(0)
    w = torch.randn(6, 5)
    once, _ = quantize_tensor(w, 4)
    twice, _ = quantize_tensor(once, 4)  # the peak is on the grid (q = q_max): same scale, same values
    assert torch.allclose(once, twice, atol=1e-6)


def test_per_channel_scales_by_hand() -> None:
    w = torch.tensor([[0.3, -0.1], [-2.0, 0.9], [0.0, 0.0]])
    w_q, scales = quantize_tensor(w, 2, per_channel=True)
    # 2 bits: q_max = 1; scales = row max|w| = [0.3, 2.0] and 1 for the all-zero row (kept zero).
    # row 0: [0.3, -0.1] / 0.3 = [1, -0.333] -> [1, 0] -> [0.3, 0]
    # row 1: [-2, 0.9] / 2 = [-1, 0.45] -> [-1, 0] -> [-2, 0]
    assert scales.tolist() == pytest.approx([0.3, 2.0, 1.0])
    assert w_q.flatten().tolist() == pytest.approx([0.3, 0.0, -2.0, 0.0, 0.0, 0.0])
    # per layer, the one scale is 2.0: row 0 / 2 = [0.15, -0.05] -> [0, 0]: the small row is lost
    per_layer, _ = quantize_tensor(w, 2)
    assert per_layer[0].tolist() == [0.0, 0.0]


def tiny_net() -> SpikingNetwork:
    torch.manual_seed(0)
    stages = [SpikingStage("fc1", "r1", nn.Sequential(nn.Flatten()), nn.Linear(4, 6), True),
              SpikingStage("fc2", "r2", nn.Sequential(), nn.Linear(6, 6), True,
                           (Shortcut("id", "r1", nn.Sequential(), ChannelScale(6)),)),
              SpikingStage("fc3", None, nn.Sequential(), nn.Linear(6, 3), False)]
    snn = SpikingNetwork(stages, (1, 2, 2))
    with torch.no_grad():
        stages[1].shortcuts[0].layer.weight.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.63]))
    return snn


def test_every_weight_and_shortcut_is_quantized_biases_and_thresholds_kept() -> None:
    snn = tiny_net()
    q = quantize_weights(snn, 3, per_channel=False)
    assert [name for name, _ in weighted_layers(q)] == ["fc1", "fc2", "fc2/id", "fc3"]
    for (_, before), (_, after) in zip(weighted_layers(snn), weighted_layers(q)):
        # 3 bits: every weight is k * max|w| / 3 with k in {-3..3}: at most 7 distinct values
        steps = after.weight.detach() / (before.weight.detach().abs().max() / 3)
        assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.unique().numel() <= 7
        if isinstance(before, nn.Linear):
            assert torch.equal(after.bias, before.bias)  # biases stay float
    # the shortcut by hand: scale = 0.63 / 3 = 0.21; [0.1 .. 0.63] / 0.21 = [0.48, 0.95, 1.43, 1.90, 2.38, 3]
    # -> [0, 1, 1, 2, 2, 3] -> [0, 0.21, 0.21, 0.42, 0.42, 0.63]
    assert q.stages[1].shortcuts[0].layer.weight.tolist() == pytest.approx([0, 0.21, 0.21, 0.42, 0.42, 0.63], abs=1e-6)
    assert q.neuron == snn.neuron and (q.weight_bits, q.weight_per_channel) == (3, False)
    assert snn.weight_bits is None  # the original is untouched


@pytest.mark.parametrize("bits", [1, 17, 0, 8.0, True, "8", None])
def test_bad_bits_are_one_clear_error(bits: object) -> None:
    with pytest.raises(ConfigError, match=r"bits must be an integer in \[2, 16\]"):
        quantize_weights(tiny_net(), bits)  # type: ignore[arg-type]


def test_quantizing_twice_and_bad_config_are_refused() -> None:
    with pytest.raises(ConfigError, match="already quantized to 8 bits"):
        quantize_weights(quantize_weights(tiny_net(), 8), 4)
    with pytest.raises(ConfigError, match=r"convert\.weight_bits"):
        ConvertConfig(weight_bits=1)
    with pytest.raises(ConfigError, match=r"convert\.weight_per_channel"):
        ConvertConfig(weight_per_channel="yes")  # type: ignore[arg-type]


def test_spec_round_trip_records_the_bits(tmp_path) -> None:
    q = quantize_weights(tiny_net(), 4, per_channel=True)
    save_snn(q, tmp_path)
    spec = json.loads((tmp_path / "snn.json").read_text())
    assert spec["weight_quantization"] == {"bits": 4, "per_channel": True}
    loaded = load_snn(tmp_path)
    assert (loaded.weight_bits, loaded.weight_per_channel) == (4, True)
    assert all(torch.equal(a, b) for a, b in zip(q.state_dict().values(), loaded.state_dict().values()))
    assert "weight_quantization" not in tiny_net().to_spec()  # float32: today's spec, unchanged
    spec["weight_quantization"]["bits"] = 20
    with pytest.raises(CheckpointError, match=r"weight_quantization\.bits"):
        SpikingNetwork.from_spec(spec)


def converted_tiny() -> tuple[SpikingNetwork, torch.Tensor]:
    torch.manual_seed(1)
    dnn = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.rand(200, 1, 4, 4)
    return convert(dnn, x), x


def test_int8_keeps_predictions_and_2_bits_errs_more() -> None:
    snn, x = converted_tiny()
    int8, int2 = quantize_weights(snn, 8), quantize_weights(snn, 2)
    with torch.no_grad():
        ref, out8, out2 = snn(x), int8(x), int2(x)
    agree8 = (out8.argmax(1) == ref.argmax(1)).float().mean()
    assert agree8 >= 0.97  # the per-weight error is at most max|w| / 254
    # error ordering: 2 bits (step max|w|) strays farther from the float logits than 8 bits
    assert (out2 - ref).abs().mean() > 10 * (out8 - ref).abs().mean()
    # the simulated SNN too: int8 spike-rate predictions match the float SNN's on nearly all inputs
    a, b = simulate_batch(snn, x, [64], mode="looped"), simulate_batch(int8, x, [64], mode="looped")
    assert (a.potentials[-1].argmax(1) == b.potentials[-1].argmax(1)).float().mean() >= 0.95


def test_convert_applies_weight_bits_from_the_config() -> None:
    torch.manual_seed(1)
    dnn = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    x = torch.rand(50, 1, 4, 4)
    plain = convert(dnn, x)
    q = convert(dnn, x, ConvertConfig(weight_bits=4, weight_per_channel=True))
    expected = quantize_weights(plain, 4, per_channel=True)
    assert (q.weight_bits, q.weight_per_channel, plain.weight_bits) == (4, True, None)
    assert all(torch.allclose(a, b) for a, b in zip(q.state_dict().values(), expected.state_dict().values()))
