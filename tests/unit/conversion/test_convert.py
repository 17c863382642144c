"""DNN-to-SNN conversion: structure checks, BN folding, percentile scales, normalization."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snnergy.config import ConvertConfig
from snnergy.conversion import activation_scales, convert, fold_batchnorm
from snnergy.errors import ConfigError, ConversionError, DataError
from snnergy.simulation import SpikingNetwork
from snnergy.structure import trace


def seq(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def randomize_bn(net: nn.Module) -> nn.Module:
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net


def mlp() -> nn.Sequential:
    return seq(flatten=nn.Flatten(), fc1=nn.Linear(64, 32), relu1=nn.ReLU(), drop=nn.Dropout(0.5),
               fc2=nn.Linear(32, 16), relu2=nn.ReLU(), fc3=nn.Linear(16, 10))


def lenet() -> nn.Sequential:
    return seq(conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.AvgPool2d(2),
               conv2=nn.Conv2d(4, 8, 3, padding=1), relu2=nn.ReLU(), pool2=nn.AvgPool2d(2),
               flatten=nn.Flatten(), fc1=nn.Linear(32, 16), relu3=nn.ReLU(), fc2=nn.Linear(16, 10))


def vgg_bn() -> nn.Sequential:
    return randomize_bn(seq(
        conv1=nn.Conv2d(1, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 4, 3, padding=1, bias=False), bn2=nn.BatchNorm2d(4), relu2=nn.ReLU(),
        pool1=nn.AvgPool2d(2), conv3=nn.Conv2d(4, 8, 3, padding=1, groups=2), bn3=nn.BatchNorm2d(8),
        relu3=nn.ReLU(), pool2=nn.AvgPool2d(2), flatten=nn.Flatten(), fc1=nn.Linear(32, 16),
        bn4=nn.BatchNorm1d(16), relu4=nn.ReLU(), drop=nn.Dropout(0.3), fc2=nn.Linear(16, 10)))


NETS = {"mlp": mlp, "lenet": lenet, "vgg_bn": vgg_bn}


# ---------------------------------------------------------------------------- the plan's checks


def test_nested_sequentials_are_flattened_with_qualified_names() -> None:
    net = seq(features=nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2)),
              flatten=nn.Flatten(), head=nn.Sequential(nn.Linear(8, 3)))
    plan = trace(net, (1, 6, 6))
    assert [(s.name, s.neuron.name if s.neuron else None) for s in plan.stages] == [
        ("features.0", "features.1"), ("head.0", None)]
    assert [type(op).__name__ for op in plan.stages[1].main.pre] == ["AvgPool2d", "Flatten"]


class Square(nn.Module):
    """A functional-only custom layer: its forward is invisible to the converter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class Skip(nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + x


# Each model fits its input shape, so that the structure, not a shape, is what is refused.
@pytest.mark.parametrize("model,shape,match", [
    (seq(conv=nn.Conv2d(1, 2, 3), relu=nn.ReLU(), pool=nn.MaxPool2d(2, stride=1), flat=nn.Flatten(),
         fc=nn.Linear(2, 2)), (1, 4, 4), r"'pool' \(MaxPool2d\).*use AvgPool2d"),  # overlapping windows
    (seq(fc1=nn.Linear(4, 4), act=nn.Sigmoid(), fc2=nn.Linear(4, 2)), (4,), r"'act' \(Sigmoid\).*use ReLU"),
    (seq(fc1=nn.Linear(4, 4), act=nn.LeakyReLU(), fc2=nn.Linear(4, 2)), (4,), r"'act'.*use ReLU"),
    (seq(fc=nn.Linear(4, 2), soft=nn.Softmax(dim=1)), (4,), r"'soft'.*logits"),
    (seq(relu=nn.ReLU(), fc=nn.Linear(4, 2)), (4,), r"'relu' \(ReLU\) must follow"),
    (seq(fc1=nn.Linear(4, 4), relu=nn.ReLU(), bn=nn.BatchNorm1d(4), fc2=nn.Linear(4, 2)), (4,),
     r"'bn'.*must directly follow"),
    (seq(conv=nn.Conv2d(1, 2, 3), bn=nn.BatchNorm1d(2), relu=nn.ReLU(), flat=nn.Flatten(),
         fc=nn.Linear(8, 2)), (1, 4, 4), r"'bn'.*BatchNorm2d"),
    (seq(fc1=nn.Linear(4, 3), bn=nn.BatchNorm1d(4), relu=nn.ReLU(), fc2=nn.Linear(3, 2)), (4,),
     r"'bn'.*4 channels but 'fc1' gives 3"),
    (seq(conv=nn.Conv2d(1, 2, 3), pool=nn.AvgPool2d(2), relu=nn.ReLU(), flat=nn.Flatten(),
         fc=nn.Linear(2, 2)), (1, 4, 4), r"'pool'.*after the ReLU"),
    (seq(fc1=nn.Linear(4, 4), fc2=nn.Linear(4, 2)), (4,), r"'fc2'.*without a ReLU"),
    (seq(fc1=nn.Linear(4, 4), relu=nn.ReLU()), (4,), r"end with a Linear.*'relu'"),
    (seq(conv=nn.Conv2d(1, 2, 3)), (1, 4, 4), r"end with a Linear.*'conv'"),
    (seq(flat=nn.Flatten(0), fc=nn.Linear(4, 2)), (4,), r"'flat'.*start_dim=0"),
    (seq(fc1=nn.Linear(4, 4), bn=nn.BatchNorm1d(4, track_running_stats=False), relu=nn.ReLU(),
         fc2=nn.Linear(4, 2)), (4,), r"'bn'.*running statistics"),
    (seq(conv=nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), relu=nn.ReLU(),
         flat=nn.Flatten(), fc=nn.Linear(32, 2)), (1, 4, 4), r"'conv'.*padding_mode"),
    (seq(drop=nn.Dropout()), (4,), r"no Conv2d or Linear"),
])
def test_unsupported_layers_and_structures_are_refused(model: nn.Module, shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        trace(model, shape)
    with pytest.raises(ConversionError, match=match):
        convert(model, torch.rand(4, *shape))


@pytest.mark.parametrize("model,match", [
    (seq(fc1=nn.Linear(4, 4), sq=Square(), fc2=nn.Linear(4, 2)),
     r"op 'mul' \(operator\.mul\) in module 'sq' \(Square\).*only sums of branches"),
    (Net(), None),
    (Skip(nn.Linear(4, 4)), None),
])
def test_custom_modules_are_traced_into_the_plan(model: nn.Module, match: str | None) -> None:
    # one walk for every model: a custom forward is traced, so Net and Skip (a residual identity
    # branch around a Linear) convert, and Square's product is named with what to do instead.
    if match is None:
        assert isinstance(convert(model, torch.rand(4, 4)), SpikingNetwork)
    else:
        with pytest.raises(ConversionError, match=match):
            trace(model, (4,))
        with pytest.raises(ConversionError, match=match):
            convert(model, torch.rand(4, 4))


# ---------------------------------------------------------------------------- fold_batchnorm


@pytest.mark.parametrize("layer,norm,shape,features", [
    (nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), (6, 3, 6, 6), 5 * 6 * 6),
    (nn.Conv2d(3, 5, 3, bias=False), nn.BatchNorm2d(5), (6, 3, 6, 6), 5 * 4 * 4),
    (nn.Linear(7, 5), nn.BatchNorm1d(5), (6, 7), 5),
])
def test_fold_batchnorm_keeps_outputs(layer: nn.Module, norm: nn.Module, shape: tuple[int, ...],
                                      features: int) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(layer, randomize_bn(norm), nn.ReLU(), nn.Flatten(), nn.Linear(features, 3))
    x = torch.randn(shape)
    net.eval()
    expected = net(x)
    net.train()
    before = copy.deepcopy(net.state_dict())
    folded = fold_batchnorm(net, tuple(x.shape[1:]))
    assert torch.allclose(folded(x), expected, atol=1e-5)
    assert isinstance(folded[1], nn.Identity) and folded[0].bias is not None
    assert net.training and isinstance(net[1], nn.BatchNorm1d | nn.BatchNorm2d)  # original untouched
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_fold_batchnorm_formula() -> None:
    # W' = (gamma/sigma) W, b' = (gamma/sigma)(b - mu) + beta with sigma = sqrt(var + eps):
    # gamma 2, var 3, eps 1 -> sigma 2, gamma/sigma 1; mu 0.5, beta 0.25: W' = W, b' = b - 0.25
    net = seq(fc=nn.Linear(2, 1), bn=nn.BatchNorm1d(1, eps=1.0), relu=nn.ReLU(), out=nn.Linear(1, 1))
    with torch.no_grad():
        net.fc.weight.copy_(torch.tensor([[1.0, -2.0]]))
        net.fc.bias.fill_(1.0)
        net.bn.weight.fill_(2.0)
        net.bn.bias.fill_(0.25)
        net.bn.running_mean.fill_(0.5)
        net.bn.running_var.fill_(3.0)
    folded = fold_batchnorm(net, (2,))
    assert folded.fc.weight.tolist() == [[1.0, -2.0]]
    assert folded.fc.bias.tolist() == [0.75]


# ---------------------------------------------------------------------------- activation_scales


def hand_net() -> nn.Sequential:
    """fc1 = identity on 2 inputs with bias (0, 0.5); fc2: 2 -> 3."""
    net = seq(fc1=nn.Linear(2, 2), relu1=nn.ReLU(), fc2=nn.Linear(2, 3))
    with torch.no_grad():
        net.fc1.weight.copy_(torch.eye(2))
        net.fc1.bias.copy_(torch.tensor([0.0, 0.5]))
        net.fc2.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]]))
        net.fc2.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return net


# relu1 unit 0 = relu(x0): [1, 2, 4, 0]; unit 1 = relu(x1 + 0.5): [0, 1, 2, 0.5]
HAND_X = torch.tensor([[1.0, -1.0], [2.0, 0.5], [4.0, 1.5], [-1.0, 0.0]])


def test_activation_scales_hand_cases() -> None:
    net = hand_net()
    # layer-wise, non-zero values {1, 2, 4, 1, 2, 0.5} sorted [0.5, 1, 1, 2, 2, 4]
    assert float(activation_scales(net, HAND_X, 100)["relu1"]) == 4.0  # the maximum
    assert float(activation_scales(net, HAND_X, 50)["relu1"]) == 1.5  # pos 2.5: 1 + 0.5*(2-1)
    # channel-wise: unit 0 non-zero [1, 2, 4]; unit 1 non-zero [0.5, 1, 2]
    assert activation_scales(net, HAND_X, 100, channelwise=True)["relu1"].tolist() == [4.0, 2.0]
    assert activation_scales(net, HAND_X, 75, channelwise=True)["relu1"].tolist() == [3.0, 1.5]


def test_activation_scales_match_numpy_percentile_and_loader() -> None:
    torch.manual_seed(0)
    net, x = lenet(), torch.rand(40, 1, 8, 8)
    loader = DataLoader(TensorDataset(x, torch.zeros(40)), batch_size=16)
    scales = activation_scales(net, loader, 99.9)
    channel = activation_scales(net, x, 99.0, channelwise=True)
    with torch.no_grad():
        act = net.relu1(net.conv1(x))
    values = act[act != 0].double().numpy()
    assert float(scales["relu1"]) == pytest.approx(np.percentile(values, 99.9), rel=1e-12)
    per_channel = [np.percentile(c[c != 0].double().numpy(), 99.0) for c in act.transpose(0, 1)]
    assert channel["relu1"].tolist() == pytest.approx(per_channel, rel=1e-12)
    assert channel["relu1"].shape == (4,) and scales["relu3"].shape == ()


def test_activation_scales_subsample_deterministically_when_huge() -> None:
    torch.manual_seed(0)
    net, x = mlp(), torch.rand(200, 1, 8, 8)
    exact = activation_scales(net, x, 99.0)
    thinned = activation_scales(net, x, 99.0, max_values=1000)  # relu1 has ~3200 non-zero values
    again = activation_scales(net, x, 99.0, max_values=1000)
    assert all(torch.equal(thinned[k], again[k]) for k in thinned)
    assert float(thinned["relu1"]) == pytest.approx(float(exact["relu1"]), rel=0.1)


# ---------------------------------------------------------------------------- convert


def test_convert_hand_net_weights_follow_the_formula() -> None:
    net = hand_net()
    snn = convert(net, HAND_X, ConvertConfig(percentile=100))
    # lambda_input = 1, lambda_relu1 = 4, readout keeps 1:
    # fc1: W * 1/4, b / 4; fc2: W * 4/1, b unchanged (not rescaled like the weights)
    fc1, fc2 = snn.stages[0].layer, snn.stages[1].layer
    assert torch.equal(fc1.weight, torch.eye(2) / 4) and torch.equal(fc1.bias, torch.tensor([0.0, 0.125]))
    assert torch.equal(fc2.weight, net.fc2.weight * 4) and torch.equal(fc2.bias, net.fc2.bias)
    assert snn.scales == {"relu1": [4.0]}
    assert [(s.name, s.neuron_name, s.spiking) for s in snn.stages] == [
        ("fc1", "relu1", True), ("fc2", None, False)]
    assert snn.neuron.threshold == 1.0 and snn.neuron.reset == "subtract"


def test_convert_hand_net_channelwise() -> None:
    net = hand_net()
    snn = convert(net, HAND_X, ConvertConfig(percentile=100, channelwise=True))
    # lambda_relu1 = [4, 2]: fc1 row i divided by lambda_i; fc2 column j multiplied by lambda_j
    fc1, fc2 = snn.stages[0].layer, snn.stages[1].layer
    assert torch.equal(fc1.weight, torch.tensor([[0.25, 0.0], [0.0, 0.5]]))
    assert torch.equal(fc1.bias, torch.tensor([0.0, 0.25]))
    assert torch.equal(fc2.weight, net.fc2.weight * torch.tensor([4.0, 2.0]))
    assert snn.scales == {"relu1": [4.0, 2.0]}


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("channelwise", [False, True])
def test_rate_model_equals_dnn_logits(name: str, channelwise: bool) -> None:
    torch.manual_seed(1)
    net, x = NETS[name](), torch.rand(50, 1, 8, 8)
    net.train()
    before = copy.deepcopy(net.state_dict())
    loader = DataLoader(TensorDataset(x, torch.zeros(50)), batch_size=16)
    snn = convert(net, loader, ConvertConfig(percentile=99.0, channelwise=channelwise, reset="zero"))
    assert isinstance(snn, SpikingNetwork) and snn.neuron.reset == "zero"
    assert net.training  # the DNN is untouched: mode, weights and BN statistics
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net.eval()
    with torch.no_grad():
        assert torch.allclose(snn(x), net(x), rtol=1e-4, atol=1e-5)
    assert snn.input_shape == (1, 8, 8)
    assert all(s.spiking for s in snn.stages[:-1]) and not snn.stages[-1].spiking
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)) for m in snn.modules())


def test_rate_model_activations_are_dnn_activations_over_lambda() -> None:
    torch.manual_seed(2)
    net, x = lenet().eval(), torch.rand(30, 1, 8, 8)
    snn = convert(net, x, ConvertConfig(percentile=99.0, channelwise=True))
    acts, _ = snn.activations(x)
    with torch.no_grad():
        relu2 = net[:5](x)
    lam = torch.tensor(snn.scales["relu2"]).view(1, -1, 1, 1)
    assert torch.allclose(acts["relu2"], relu2 / lam, atol=1e-5)


def test_silent_layer_is_reported_with_scale_one() -> None:
    net = seq(fc1=nn.Linear(3, 4), relu1=nn.ReLU(), fc2=nn.Linear(4, 2), relu2=nn.ReLU(), fc3=nn.Linear(2, 2))
    with torch.no_grad():
        net.fc2.weight.zero_()
        net.fc2.bias.fill_(-1.0)  # relu2 = relu(-1) = 0 on every input
    snn = convert(net, torch.rand(10, 3))
    assert snn.silent_layers == ("relu2",)
    assert snn.scales["relu2"] == [1.0]


def test_convert_refuses_bad_config_and_empty_calibration() -> None:
    with pytest.raises(ConfigError, match="percentile"):
        convert(mlp(), torch.rand(4, 1, 8, 8), ConvertConfig(percentile=0.0))
    with pytest.raises(ConfigError, match="reset"):
        convert(mlp(), torch.rand(4, 1, 8, 8), ConvertConfig(reset="modulo"))
    with pytest.raises(DataError, match="empty"):
        convert(mlp(), torch.zeros(0, 1, 8, 8))
