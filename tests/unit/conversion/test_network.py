"""Graph (torch.fx) conversion: functional ops, residual shortcuts, their simulation and counts."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnergy.config import ConvertConfig, DataConfig, ModelConfig
from snnergy.conversion import convert
from snnergy.data import load_dataset
from snnergy.errors import CheckpointError, ConversionError
from snnergy.experiments import measure, simulate
from snnergy.models import build_model
from snnergy.simulation import (
    ChannelScale,
    Shortcut,
    SpikingNetwork,
    SpikingStage,
    load_snn,
    save_snn,
    simulate_batch,
    simulate_reference,
)

THIS_FILE = __file__.rsplit("/", 1)[-1]


class ResidualNet(nn.Module):
    """Written as users write models: F.relu, torch.relu, x.view, torch.flatten, BN, two residuals."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.proj = nn.Conv2d(8, 16, 1, stride=2)
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x  # identity shortcut
        x = torch.relu(out)
        x = F.relu(self.down(x) + self.proj(x))  # projection shortcut
        x = F.avg_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


def _randomize_bn(net: nn.Module) -> nn.Module:
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net


def _residual(dtype: torch.dtype = torch.float64) -> tuple[SpikingNetwork, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.rand(24, 1, 8, 8)
    snn = convert(_randomize_bn(ResidualNet()).eval(), x, ConvertConfig(percentile=99.0))
    return snn.to(dtype), x.to(dtype)


# ---------------------------------------------------------------------------- the graph walk


def test_functional_residual_net_converts_into_a_chain_with_shortcuts() -> None:
    torch.manual_seed(0)
    net, x = _randomize_bn(ResidualNet()).eval(), torch.rand(40, 1, 8, 8)
    snn = convert(net, x, ConvertConfig(percentile=99.0, channelwise=True))
    summary = [(s.name, s.neuron_name, [(c.name, c.source) for c in s.shortcuts]) for s in snn.stages]
    assert summary == [
        ("stem", "relu", []),
        ("conv1", "relu_1", []),
        ("conv2", "relu_2", [("identity:relu", "relu")]),
        ("down", "relu_3", [("proj", "relu_2")]),
        ("fc", None, []),
    ]
    assert [type(op) for op in snn.stages[-1].pre] == [nn.AvgPool2d, nn.Flatten]
    with torch.no_grad():  # rate model = DNN logits; activations = DNN's / lambda per channel
        assert torch.allclose(snn(x), net(x), rtol=1e-4, atol=1e-5)
        acts, _ = snn.activations(x)
        dnn = F.relu(net.bn(net.stem(x)))
    lam = torch.tensor(snn.scales["relu"]).view(1, -1, 1, 1)
    assert torch.allclose(acts["relu"], dnn / lam, atol=1e-5)
    # identity branch weight = lambda_src / lambda_out per channel (reconciled scales)
    identity = snn.stages[2].shortcuts[0].layer
    expected = torch.tensor(snn.scales["relu"], dtype=torch.float64) / torch.tensor(snn.scales["relu_2"], dtype=torch.float64)
    assert isinstance(identity, ChannelScale)
    assert torch.allclose(identity.weight.detach().double(), expected, rtol=1e-6)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in snn.modules())


def test_sequential_subclass_and_plain_modules_now_convert() -> None:
    class Skip(nn.Sequential):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.view(x.size(0), -1))

    x = torch.rand(8, 4)
    for net in (Skip(nn.Linear(4, 4)), Net()):
        snn = convert(net, x)
        with torch.no_grad():
            assert torch.allclose(snn(x), net(x), atol=1e-6)
    # Skip's readout: fc(x) + x, the identity of the (analog) input with weight 1 (lambda_in = 1)
    assert [c.source for c in convert(Skip(nn.Linear(4, 4)), x).stages[0].shortcuts] == [None]


def test_adaptive_and_mean_pooling_map_onto_avg_pool() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(F.relu(self.conv(x)))  # 8x8 -> 2x2: windows of 4x4
            return self.fc(x.mean((2, 3)))  # global average over the 2x2

    torch.manual_seed(0)
    net, x = Net(), torch.rand(6, 1, 8, 8)
    snn = convert(net, x)
    pools = [op for op in snn.stages[1].pre if isinstance(op, nn.AvgPool2d)]
    assert [p.kernel_size for p in pools] == [(4, 4), (2, 2)]
    with torch.no_grad():
        assert torch.allclose(snn(x), net(x), atol=1e-6)


def test_dnn_and_snn_accuracy_agree_on_digits() -> None:
    # Trained briefly on digits (1347 train / 450 test, 8x8); at T = 256 the IF rates approach the
    # normalized ReLU activations, so the SNN's accuracy must match the DNN's within 1 point.
    torch.manual_seed(0)
    splits = load_dataset(DataConfig(dataset="digits"))
    net = _randomize_bn(ResidualNet())
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(6):
        order = torch.randperm(len(splits.train_x))
        for i in range(0, len(order), 64):
            batch = order[i : i + 64]
            optimizer.zero_grad()
            F.cross_entropy(net(splits.train_x[batch]), splits.train_y[batch]).backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        dnn = float((net(splits.test_x).argmax(1) == splits.test_y).float().mean())
    snn = convert(net, splits.train_x[:500], ConvertConfig(percentile=99.9))
    record = simulate(snn, (splits.test_x, splits.test_y), timesteps=[256])
    assert dnn > 0.9
    assert abs(record.accuracy[-1] - dnn) <= 0.01


# ---------------------------------------------------------------------------- errors


def test_untraceable_model_names_the_line() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow
                return self.fc(x)
            return -self.fc(x)

    with pytest.raises(ConversionError, match=rf"Branchy cannot be traced.*{THIS_FILE}:\d+ `if x.sum\(\) > 0:"):
        convert(Branchy(), torch.rand(4, 4))


class _Sigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.sigmoid(self.fc1(x)))


class _MaxPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(2 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # overlapping windows: no spike-count gate
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 3, 1, 1), 1))


class _Square(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class _Cat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(x))
        return self.fc2(torch.cat([h, h], 1))


@pytest.mark.parametrize("model,shape,match", [
    (_Sigmoid(), (4,), rf"op 'sigmoid' \(torch\.sigmoid\) at .*{THIS_FILE}:\d+ `return self\.fc2\(torch\.sigmoid.*use ReLU"),
    (_MaxPool(), (1, 4, 4), rf"op 'max_pool2d' .*{THIS_FILE}:\d+ .*average pooling"),
    (nn.Sequential(OrderedDict(fc1=nn.Linear(4, 4), sq=_Square(), fc2=nn.Linear(4, 2))), (4,),
     rf"op 'mul' \(operator\.mul\) in module 'sq' \(_Square\) at .*{THIS_FILE}:\d+ `return x \* x`"),
    (_Cat(), (4,), r"op 'cat' \(torch\.cat\).*concatenation is not supported"),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), nn.Sigmoid()), (4,), r"'3' \(Sigmoid\)"),
])
def test_unsupported_ops_name_the_node_and_line(model: nn.Module, shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        convert(model, torch.rand(4, *shape))


def test_pre_activation_residual_without_relu_is_refused() -> None:
    class PreAct(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc1(x) + x  # the sum feeds a Linear, not a ReLU
            return self.fc3(F.relu(self.fc2(h)))

    with pytest.raises(ConversionError, match=r"module 'fc2' \(Linear\).*reads op 'add'.*without a ReLU"):
        convert(PreAct(), torch.rand(4, 4))


# ---------------------------------------------------------------------------- simulation


@pytest.mark.parametrize("mode", ["batched", "looped"])
@pytest.mark.parametrize("input", ["analog", "poisson"])
def test_fast_path_equals_reference_on_a_residual_net(mode: str, input: str) -> None:
    snn, x = _residual()
    kwargs = {"input": input}
    fast = simulate_batch(snn, x, [1, 5, 30], mode=mode, max_elements=4096,
                          generator=torch.Generator().manual_seed(3), **kwargs)
    ref = simulate_reference(snn, x, [1, 5, 30], generator=torch.Generator().manual_seed(3), **kwargs)
    assert fast.spike_counts.keys() == ref.spike_counts.keys()
    for name in ref.spike_counts:
        assert torch.equal(fast.spike_counts[name], ref.spike_counts[name]), name
        assert torch.equal(fast.final_counts[name], ref.final_counts[name]), name
    assert torch.equal(fast.potentials, ref.potentials)
    assert float(ref.spike_counts["relu_2"][-1].sum()) > 0  # the residual layer does spike


def _tiny_residual() -> SpikingNetwork:
    """Input (1, 4, 4) -> n1 (2, 4, 4) -> n2 (2, 4, 4) + identity(n1) -> n3 (3, 2, 2) + conv1x1(n1) -> fc.

    Every weight is zero; biases and the identity's weight set the spikes:
    n1: bias 1, fires every step; n2: identity 0.5 x n1 -> current 0.5, fires at even steps;
    n3: bias 1, fires every step; the 1x1 projection carries 0 (zero weights, no bias).
    """
    conv = lambda cin, cout, k, s, p: nn.Conv2d(cin, cout, k, stride=s, padding=p)  # noqa: E731
    stage1 = SpikingStage("conv1", "n1", nn.Sequential(), conv(1, 2, 3, 1, 1), True)
    identity = Shortcut("identity:n1", "n1", nn.Sequential(), ChannelScale(1))
    stage2 = SpikingStage("conv2", "n2", nn.Sequential(), conv(2, 2, 3, 1, 1), True, [identity])
    proj = Shortcut("proj", "n1", nn.Sequential(), nn.Conv2d(2, 3, 1, stride=2, bias=False))
    stage3 = SpikingStage("conv3", "n3", nn.Sequential(), conv(2, 3, 1, 2, 0), True, [proj])
    readout = SpikingStage("fc", None, nn.Sequential(nn.Flatten()), nn.Linear(12, 2), False)
    snn = SpikingNetwork([stage1, stage2, stage3, readout], (1, 4, 4))
    with torch.no_grad():
        for p in snn.parameters():
            p.zero_()
        stage1.layer.bias.fill_(1.0)
        identity.layer.weight.fill_(0.5)
        stage3.layer.bias.fill_(1.0)
    return snn


def test_residual_synops_match_a_hand_count() -> None:
    # Fan-out of one n1 neuron, summed over the 2 x 4 x 4 = 32 neurons (all spike every step):
    # - into conv2 (3x3, padding 1, 2 outputs): windows per position on 4x4 are 4 at corners,
    #   6 on edges, 9 inside: rows [4,6,6,4],[6,9,9,6],[6,9,9,6],[4,6,6,4] sum 100; x 2 outputs
    #   x 2 channels = 400;
    # - into the identity shortcut: 1 per neuron = 32;
    # - into the 1x1 stride-2 projection (3 outputs): the 2x2 even positions per channel feed 3
    #   each, the others nothing: 4 x 3 x 2 channels = 24.
    # n1: (400 + 32 + 24) = 456 per step. n2 fires at steps 2 and 4; its fan-out into conv3 (1x1,
    # stride 2, 3 outputs) is 24 per step of all neurons firing: 24 at T=2, 48 at T=4. n3 (3x2x2
    # = 12 neurons) fires every step into fc (2 outputs): 24 per step.
    # T=2: 912 + 24 + 48 = 984; T=4: 1824 + 48 + 96 = 1968.
    snn = _tiny_residual()
    data = (torch.ones(3, 1, 4, 4), torch.zeros(3, dtype=torch.long))
    record = simulate(snn, data, timesteps=[2, 4])
    assert record.synops_per_layer["n1"] == [912.0, 1824.0]
    assert record.synops_per_layer["n2"] == [24.0, 48.0]
    assert record.synops_per_layer["n3"] == [48.0, 96.0]
    assert record.synops == [984.0, 1968.0]
    assert record.input_macs == [200.0, 200.0]  # conv1 on an all-ones input: 100 x 2 outputs
    # Poisson with x = 1 spikes every step: input synops = conv1 fan-out 200 per step
    record = simulate(snn, data, timesteps=[2, 4], input="poisson")
    assert record.synops_per_layer["input"] == [400.0, 800.0]


def test_shortcut_from_the_analog_input_counts_its_macs_once() -> None:
    # fc(x) + x on inputs with 3 non-zero features of 4: input MACs = 3 x 2 (fc) + 3 (identity)
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) + x

    x = torch.tensor([[1.0, 0.5, 0.0, 2.0]])
    snn = convert(Skip(), x)
    record = simulate(snn, (x, torch.zeros(1, dtype=torch.long)), timesteps=[3])
    assert record.input_macs == [3 * 4 + 3.0]


def test_dnn_measure_counts_the_projection_shortcut() -> None:
    # resnet on 8x8: stage2's projection is a 1x1 stride-2 conv from 16x8x8 to 32x4x4; each of the
    # 16 x 4 x 4 even positions feeds 32 outputs: dense = nominal = 32 x 4 x 4 x 16 = 8192 MACs.
    torch.manual_seed(0)
    model = build_model(ModelConfig("resnet"), (1, 8, 8), 10)
    record = measure(model, (torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)))
    layer = record.layers["stage2.0.shortcut.conv"]
    assert layer.macs_dense == layer.macs_nominal == 8192.0
    assert record.macs_dense == sum(v.macs_dense for v in record.layers.values())
    assert "stage2.0.relu2" in record.sparsity


# ---------------------------------------------------------------------------- spec and files


def test_shortcut_spec_round_trip(tmp_path) -> None:
    snn, x = _residual(torch.float32)
    save_snn(snn, tmp_path)
    loaded = load_snn(tmp_path)
    spec = json.loads((tmp_path / "snn.json").read_text())
    assert spec == snn.to_spec() and spec["version"] == 3
    assert spec["stages"][2]["shortcuts"] == [
        {"name": "identity:relu", "source": "relu", "pre": [], "layer": {"kind": "scale", "features": 1}}]
    assert spec["stages"][3]["shortcuts"][0]["layer"]["kind"] == "conv2d"
    a = simulate_batch(snn, x, [4, 16], mode="looped")
    b = simulate_batch(loaded, x, [4, 16], mode="looped")
    assert all(torch.equal(a.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts)
    assert torch.equal(a.potentials, b.potentials)


def test_version_1_specs_are_still_read_and_bad_sources_refused() -> None:
    snn, _ = _residual(torch.float32)
    spec = snn.to_spec()
    chain = {**spec, "version": 1, "stages": [{k: v for k, v in s.items() if k != "shortcuts"}
                                              for s in spec["stages"]]}
    assert all(len(s.shortcuts) == 0 for s in SpikingNetwork.from_spec(chain).stages)
    spec["stages"][2]["shortcuts"][0]["source"] = "relu_3"  # a later layer: not allowed
    with pytest.raises(CheckpointError, match="not an earlier stage"):
        SpikingNetwork.from_spec(spec)
    spec = snn.to_spec()
    del spec["stages"][3]["shortcuts"][0]["layer"]["stride"]
    with pytest.raises(CheckpointError, match=r"stages\[3\]\.shortcuts\[0\]\.layer\.stride"):
        SpikingNetwork.from_spec(spec)


# ---------------------------------------------------------------------------- the registry resnet


def test_registry_resnet_converts_with_projection_and_identity_shortcuts() -> None:
    torch.manual_seed(0)
    model = _randomize_bn(build_model(ModelConfig("resnet", 0.5), (1, 8, 8), 10)).eval()
    x = torch.rand(32, 1, 8, 8)
    snn = convert(model, x)
    kinds = {s.name: [type(c.layer).__name__ for c in s.shortcuts] for s in snn.stages}
    assert kinds["stage1.0.conv2"] == ["ChannelScale"]
    assert kinds["stage2.0.conv2"] == kinds["stage3.0.conv2"] == ["Conv2d"]
    assert [s.neuron_name for s in snn.stages][:3] == ["stem_relu", "stage1.0.relu1", "stage1.0.relu2"]
    with torch.no_grad():
        assert torch.allclose(snn(x), model(x), rtol=1e-4, atol=1e-5)
