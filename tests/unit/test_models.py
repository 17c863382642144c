"""Tests for snnergy.models: registry, shapes, the converter's structure rules."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from snnergy.config import ModelConfig
from snnergy.errors import ConfigError, ConversionError
from snnergy.models import MODELS, build_model, check_supported, lenet, vgg
from snnergy.pooling import AvgPool2d

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
# The layer types the registry's models are built from (exact types).
SUPPORTED_LAYERS = (nn.Conv2d, nn.Linear, nn.ReLU, nn.AvgPool2d, AvgPool2d, nn.MaxPool2d, nn.BatchNorm1d, nn.BatchNorm2d,
                    nn.Flatten, nn.Dropout)  # MaxPool2d: lenet-max (issue 15, converted by spike-count gating)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_builds_runs_and_follows_the_rules(name: str, shape: tuple[int, int, int]) -> None:
    model = build_model(ModelConfig(name), shape, num_classes=7)
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, 7)
    if not isinstance(model, nn.Sequential):  # a graph model (resnet): supported leaves only
        leaves = [m for m in model.modules() if not list(m.children())]
        assert all(type(m) in SUPPORTED_LAYERS for m in leaves)
        assert all(not m.inplace for m in leaves if isinstance(m, nn.ReLU))
        return
    children = list(model.named_children())
    # flat, only supported layers (exact types), meaningful names
    assert all(type(child) in SUPPORTED_LAYERS for _, child in children)
    assert all(len(list(child.children())) == 0 for _, child in children)
    assert all(not child_name.isdigit() for child_name, _ in children)
    # ReLUs not in place, biases on, logits from a final Linear
    assert all(not c.inplace for _, c in children if isinstance(c, nn.ReLU))
    assert all(c.bias is not None for _, c in children if isinstance(c, (nn.Conv2d, nn.Linear)))
    assert isinstance(children[-1][1], nn.Linear)
    plan = check_supported(model, shape)  # passes: no exception
    # every ReLU is an activation of the plan, in order
    assert [a.name for a in plan.activations] == [n for n, c in children if isinstance(c, nn.ReLU)]


@pytest.mark.parametrize("name", MODELS.names())
def test_width_scales_the_parameter_count(name: str) -> None:
    counts = [_params(build_model(ModelConfig(name, w), (1, 8, 8), 10)) for w in (0.5, 1.0, 2.0)]
    assert counts[0] < counts[1] < counts[2]


def test_tiny_width_keeps_at_least_one_unit() -> None:
    # 16 units x 0.001 rounds to 0 -> clamped to 1
    model = build_model(ModelConfig("tiny-mlp", 0.001), (1, 2, 2), 3)
    assert model.fc1.out_features == 1


def test_lenet_sizes_follow_the_input() -> None:
    # 28x28: conv5 pad 2 -> 28, pool -> 14, conv5 -> 10, pool -> 5: 16*5*5 = 400
    m28 = lenet((1, 28, 28), 10)
    assert (m28.conv1.kernel_size, m28.conv1.padding) == ((5, 5), (2, 2))
    assert (m28.fc1.in_features, m28.fc1.out_features, m28.fc2.out_features) == (400, 120, 84)
    # 8x8: conv3 pad 1 -> 8, pool -> 4, conv3 pad 1 -> 4, pool -> 2: 32 channels * 2 * 2 = 128
    m8 = lenet((1, 8, 8), 10)
    assert (m8.conv1.kernel_size, m8.conv2.padding, m8.fc1.in_features) == ((3, 3), (1, 1), 128)
    # 32x32x3: conv5 -> 28, pool -> 14, conv5 -> 10, pool -> 5: 16*5*5 = 400
    m32 = lenet((3, 32, 32), 10)
    assert (m32.conv1.in_channels, m32.conv1.padding, m32.fc1.in_features) == (3, (0, 0), 400)
    assert [n for n, _ in m28.named_children()] == [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten",
        "fc1", "relu3", "fc2", "relu4", "fc3",
    ]  # fmt: skip


def test_lenet_width_scales_channels() -> None:
    # 28x28: 6 x 2 = 12, 16 x 2 = 32 channels -> 32 * 5 * 5 = 800 features
    model = lenet((1, 28, 28), 10, width=2.0)
    assert (model.conv1.out_channels, model.conv2.out_channels, model.fc1.in_features) == (12, 32, 800)
    # 8x8: 16 x 0.5 = 8, 32 x 0.5 = 16 channels -> 16 * 2 * 2 = 64 features
    small = lenet((1, 8, 8), 10, width=0.5)
    assert (small.conv1.out_channels, small.conv2.out_channels, small.fc1.in_features) == (8, 16, 64)


@pytest.mark.parametrize(
    ("shape", "blocks", "flat"),
    [
        ((1, 8, 8), 2, 64 * 2 * 2),  # 8 -> 4 -> 2 (a third pool would give 1)
        ((1, 28, 28), 3, 128 * 3 * 3),  # 28 -> 14 -> 7 -> 3
        ((3, 32, 32), 3, 128 * 4 * 4),  # 32 -> 16 -> 8 -> 4 (at most 3 blocks)
    ],
)
def test_vgg_block_count(shape: tuple[int, int, int], blocks: int, flat: int) -> None:
    model = vgg(shape, 10)
    pools = [c for c in model if isinstance(c, nn.AvgPool2d)]
    convs = [c for c in model if isinstance(c, nn.Conv2d)]
    assert (len(pools), len(convs)) == (blocks, 2 * blocks)
    assert model.fc1.in_features == flat
    assert isinstance(model.bn_fc1, nn.BatchNorm1d) and model.dropout.p == 0.2


def test_vgg_too_small_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least 4x4"):
        build_model(ModelConfig("vgg"), (1, 3, 3), 10)


def test_building_leaves_batchnorm_statistics_untouched() -> None:
    # the dummy forward that sizes fc1 must not update running stats
    model = build_model(ModelConfig("vgg"), (1, 8, 8), 10)
    assert model.training
    for bn in (m for m in model if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))):
        assert int(bn.num_batches_tracked) == 0
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_build_model_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="unknown model 'densenet'; known: mlp, lenet, lenet-max, vgg, resnet, resnet20, tiny-mlp"):
        build_model(ModelConfig("densenet"), (1, 8, 8), 10)
    for width in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="model.width"):
            build_model(ModelConfig("mlp", width), (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="input_shape"):
        build_model(ModelConfig("mlp"), (8, 8), 10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_classes"):
        build_model(ModelConfig("mlp"), (1, 8, 8), 0)


def _lenet_like(pool: nn.Module, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(1, 2, 3)),
                ("act1", act),
                ("pool1", pool),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(8, 3)),
            ]
        )
    )


def test_check_supported_refuses_max_pooling() -> None:
    # overlapping windows: no spike-count gate (issue 15 converts MaxPool2d(k) with kernel = stride)
    model = _lenet_like(nn.MaxPool2d(3, stride=1), nn.ReLU())
    with pytest.raises(ConversionError, match=r"'pool1' \(MaxPool2d\).*use AvgPool2d"):
        check_supported(model, (1, 6, 6))


def test_check_supported_refuses_other_activations() -> None:
    model = _lenet_like(nn.AvgPool2d(2), nn.Sigmoid())
    with pytest.raises(ConversionError, match=r"'act1' \(Sigmoid\).*use ReLU"):
        check_supported(model, (1, 6, 6))


def test_check_supported_lists_supported_layers_for_anything_else() -> None:
    model = _lenet_like(nn.Upsample(scale_factor=1), nn.ReLU())
    with pytest.raises(ConversionError, match=r"'pool1' \(Upsample\).*supported layers: Conv2d, Linear"):
        check_supported(model, (1, 6, 6))


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        # two weighted layers without a ReLU between them
        ([nn.Flatten(), nn.Linear(4, 3), nn.Linear(3, 2)], r"'2' \(Linear\) reads .*'1' \(Linear\) without a ReLU"),
        # an activation after the logits
        ([nn.Flatten(), nn.Linear(4, 2), nn.ReLU()], r"end with a Linear.*ends with module '2' \(ReLU\)"),
        # BatchNorm not right after a weighted layer
        ([nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3), nn.Linear(3, 2)], r"'3' \(BatchNorm1d\) must directly follow"),
        # BatchNorm2d after a Linear
        ([nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Linear(3, 2)], r"'2' \(BatchNorm2d\) must directly follow"),
        # pooling between a conv and its ReLU
        ([nn.Conv2d(1, 1, 1), nn.AvgPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(1, 2)], r"'1' \(AvgPool2d\) reads .* after the ReLU"),
        # a ReLU on the input
        ([nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)], r"'0' \(ReLU\) must follow a Conv2d/Linear"),
        # a conv as the output layer
        ([nn.Conv2d(1, 2, 2)], r"must end with a Linear.*'0' \(Conv2d\)"),
        # no weighted layer at all
        ([nn.Flatten()], "no Conv2d or Linear"),
        # reflect padding is not zero padding
        ([nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)],
         "padding_mode"),
    ],
)
def test_check_supported_refuses_bad_structure(layers: list[nn.Module], message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        check_supported(nn.Sequential(*layers), (1, 2, 2))


def test_check_supported_reads_nested_containers_and_custom_forwards() -> None:
    # one traced plan for every model: nesting and a forward of its own are fine
    nested = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.ReLU(), nn.Linear(3, 2))
    assert [s.name for s in check_supported(nested, (1, 2, 2)).stages] == ["0.1", "2"]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x)))

    assert [a.name for a in check_supported(Net(), (2,)).activations] == ["relu"]

    class NoForward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

    with pytest.raises(ConversionError, match="NoForward cannot be traced"):
        check_supported(NoForward(), (2,))


def test_check_supported_refuses_subclasses_of_supported_layers() -> None:
    class MyReLU(nn.ReLU):
        pass

    with pytest.raises(ConversionError, match=r"'2' \(MyReLU\)"):
        check_supported(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), MyReLU(), nn.Linear(3, 2)), (1, 2, 2))


@pytest.mark.parametrize("shape,pool,blocks", [((1, 8, 8), (2, 2), 1), ((1, 28, 28), (7, 7), 1), ((3, 32, 32), (8, 8), 3)])
def test_resnet_sizes_and_shortcuts(shape: tuple[int, int, int], pool: tuple[int, int], blocks: int) -> None:
    # stages at strides 1, 2, 2 (3x3, padding 1): 8 -> 8 -> 4 -> 2; 28 -> 14 -> 7; 32 -> 16 -> 8
    model = build_model(ModelConfig("resnet" if blocks == 1 else "resnet20"), shape, 10)
    assert model.pool.kernel_size == pool
    blocks_of = [list(getattr(model, f"stage{s}")) for s in (1, 2, 3)]
    assert [len(b) for b in blocks_of] == [blocks] * 3
    # projection (1x1 conv + BN) only where the shape changes: the first block of stages 2 and 3
    assert [[b.shortcut is not None for b in stage] for stage in blocks_of] == [
        [False] * blocks, [True] + [False] * (blocks - 1), [True] + [False] * (blocks - 1)]
    # ResNet-8: 6 x 1 + 2 = 8 weighted layers on the main path; ResNet-20: 6 x 3 + 2 = 20
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and "shortcut" not in n]
    assert len(convs) == 6 * blocks + 2


def test_resnet_refuses_tiny_inputs() -> None:
    with pytest.raises(ConfigError, match="at least 4x4"):
        build_model(ModelConfig("resnet"), (1, 3, 3), 10)


@pytest.mark.parametrize("activation", ["qcfs", "clip"])
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_builds_with_trained_thresholds_under_the_same_names(name: str, activation: str) -> None:
    from snnergy.structure import trace

    relu = trace(build_model(ModelConfig(name), (1, 8, 8), 10), (1, 8, 8))
    for channelwise in (False, True):
        model = build_model(ModelConfig(name, activation=activation, levels=4, channelwise_threshold=channelwise),
                            (1, 8, 8), 10)
        plan = trace(model, (1, 8, 8))
        assert [a.name for a in plan.activations] == [a.name for a in relu.activations]
        assert {a.kind for a in plan.activations} == {activation}
        assert not any(isinstance(m, nn.ReLU) for m in model.modules())
        for act in plan.activations:
            # each threshold starts at 1: one per layer, or one per channel of the layer's input
            channels = act.shape[0] if channelwise else 1
            assert act.parameters["threshold"] == [1.0] * channels, act.name
            assert act.parameters.get("levels") == (4 if activation == "qcfs" else None)
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
