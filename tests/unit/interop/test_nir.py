"""NIR export and import: the graph written, the round trip, folding, refusals and hostile files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnergy
from snnergy.errors import CheckpointError, ConversionError
from snnergy.interop import RESET_KEY, V0_KEY, export_nir, import_nir
from snnergy.simulation import IFNeuron, SpikingNetwork, SpikingStage, simulate_batch, simulate_reference

nir = pytest.importorskip("nir", reason="the optional package nir is not installed (pip install 'snnergy[nir]')")


def lenet_snn(reset: str = "subtract") -> tuple[SpikingNetwork, torch.Tensor]:
    """A converted LeNet-like net (conv-pool-conv-pool-flatten-fc-fc) and calibration inputs."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 5),
    ).eval()
    with torch.no_grad():
        net[4].running_mean.uniform_(-0.2, 0.2)
        net[4].running_var.uniform_(0.5, 2.0)
    x = torch.rand(64, 1, 8, 8)
    return snnergy.convert(net, calibration=x, reset=reset), x


def test_export_writes_the_chain_with_normalized_weights_and_if_metadata(tmp_path: Path) -> None:
    snn, _ = lenet_snn()
    export_nir(snn, tmp_path / "net.nir")
    graph = nir.read(tmp_path / "net.nir")
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    # the chain in edge order: input, conv, IF, pool, conv, IF, pool, flatten, affine, IF, affine, output
    order, node = [], "input"
    following = dict(graph.edges)
    while node in following:
        order.append(kinds[node])
        node = following[node]
    order.append(kinds[node])
    assert order == ["Input", "Conv2d", "IF", "AvgPool2d", "Conv2d", "IF", "AvgPool2d", "Flatten",
                     "Affine", "IF", "Affine", "Output"]
    assert graph.nodes["input"].input_type["input"].tolist() == [1, 8, 8]
    assert graph.nodes["output"].output_type["output"].tolist() == [5]
    # the exported weights are the SNN's (normalized, BN folded), not the DNN's
    for stage in snn.stages:
        assert np.array_equal(graph.nodes[stage.name].weight, stage.layer.weight.detach().numpy())
        assert np.array_equal(graph.nodes[stage.name].bias, stage.layer.bias.detach().numpy())
    for name in ("1", "5", "9"):  # the ReLU names become the IF nodes
        neuron = graph.nodes[name]
        assert np.all(neuron.r == 1) and np.all(neuron.v_threshold == 1) and np.all(neuron.v_reset == 0)
        assert neuron.metadata[RESET_KEY] == "subtract"
    assert graph.nodes["1"].r.shape == (4, 8, 8) and graph.nodes["9"].r.shape == (16,)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_export_read_import_gives_identical_spikes(tmp_path: Path, reset: str) -> None:
    snn, x = lenet_snn(reset)
    export_nir(snn, tmp_path / "net.nir")
    back = import_nir(nir.read(tmp_path / "net.nir"))
    assert back.neuron == IFNeuron(1.0, reset)
    assert [(s.name, s.neuron_name) for s in back.stages] == [(s.name, s.neuron_name) for s in snn.stages]
    for mode in ("looped", "batched"):
        a = simulate_batch(snn, x[:16], [1, 8, 32, 64], mode=mode)
        b = simulate_batch(back, x[:16], [1, 8, 32, 64], mode=mode)
        assert torch.equal(a.potentials, b.potentials)
        for name in a.final_counts:
            assert torch.equal(a.final_counts[name], b.final_counts[name]), name
            assert torch.equal(a.spike_counts[name], b.spike_counts[name]), name
    assert float(sum(c.sum() for c in a.final_counts.values())) > 0  # the test sees spikes at all


def test_sum_pooling_and_bias_free_linear_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    stages = [
        SpikingStage("conv", "if1", nn.Sequential(), nn.Conv2d(2, 3, 3, padding="same", bias=False), True),
        SpikingStage("fc", None, nn.Sequential(nn.AvgPool2d(2, divisor_override=1), nn.Flatten()),
                     nn.Linear(12, 4, bias=False), False),
    ]
    snn = SpikingNetwork(stages, (2, 4, 4))
    graph = export_nir(snn, tmp_path / "sum.nir")
    assert type(graph.nodes["fc.pre0"]).__name__ == "SumPool2d" and type(graph.nodes["fc"]).__name__ == "Linear"
    back = import_nir(tmp_path / "sum.nir")
    assert back.stages[1].pre[0].divisor_override == 1 and back.stages[1].layer.bias is None
    x = torch.rand(8, 2, 4, 4) * 2
    assert torch.equal(simulate_reference(snn, x, [16]).potentials, simulate_reference(back, x, [16]).potentials)


def one_neuron_graph(r: float, threshold: float, metadata: dict | None = None, v_reset: float = 0.0):
    """Input (1,) -> Affine w=1 -> IF(r, threshold) -> Affine w=1 -> Output."""
    one = np.ones((1, 1), dtype=np.float32)
    nodes = {
        "input": nir.Input(input_type=np.array([1])),
        "fc1": nir.Affine(weight=one, bias=np.zeros(1, dtype=np.float32)),
        "if1": nir.IF(r=np.array([r], dtype=np.float32), v_threshold=np.array([threshold], dtype=np.float32),
                      v_reset=np.array([v_reset], dtype=np.float32), metadata=metadata or {}),
        "fc2": nir.Affine(weight=one, bias=np.zeros(1, dtype=np.float32)),
        "output": nir.Output(output_type=np.array([1])),
    }
    edges = [("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_resistance_and_threshold_fold_into_the_weights_and_plain_nir_resets_to_zero() -> None:
    # NIR neuron r = 2, threshold 4, input 0.75: r I = 1.5 per step, v = 1.5, 3.0, 4.5 -> spike,
    # reset to 0 (no metadata: NIR's semantics), then 1.5, 3.0, 4.5 -> spike: 2 spikes in 6 steps.
    # Imported: current 0.75 * 2 / 4 = 0.375, threshold 1: v = 0.375, 0.75, 1.125 -> spike, same.
    snn = import_nir(one_neuron_graph(2.0, 4.0))
    assert snn.neuron.reset == "zero"
    assert snn.stages[0].layer.weight.item() == pytest.approx(0.5)
    trace = simulate_reference(snn, torch.tensor([[0.75]]), [6])
    assert trace.spike_counts["if1"].item() == 2.0
    # with snnergy's metadata, reset by subtraction: 1.125 -> 0.125, 0.5, 0.875, 1.25 -> 0.25, 0.625:
    # 2 spikes too in 6 steps, but 1.5 * 8 / 4 = 3 in 8 steps where reset to zero gives 2 (8 // 3)
    sub = import_nir(one_neuron_graph(2.0, 4.0, {RESET_KEY: "subtract"}))
    assert sub.neuron.reset == "subtract"
    assert simulate_reference(sub, torch.tensor([[0.75]]), [8]).spike_counts["if1"].item() == 3.0
    assert simulate_reference(snn, torch.tensor([[0.75]]), [8]).spike_counts["if1"].item() == 2.0


def test_import_refuses_what_snnergy_cannot_simulate(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="'if1' .*v_reset must be 0"):
        import_nir(one_neuron_graph(1.0, 1.0, v_reset=0.5))
    with pytest.raises(ConversionError, match="snnergy_reset='leak'"):
        import_nir(one_neuron_graph(1.0, 1.0, {RESET_KEY: "leak"}))
    graph = one_neuron_graph(1.0, 1.0)
    graph.nodes["if1"] = nir.LIF(tau=np.ones(1), r=np.ones(1), v_leak=np.zeros(1), v_threshold=np.ones(1))
    with pytest.raises(ConversionError, match=r"node 'if1' \(LIF\) is not supported here"):
        import_nir(graph)
    graph = one_neuron_graph(1.0, 1.0)
    graph.nodes["delay"] = nir.Delay(delay=np.ones(1))
    graph.edges = [("input", "delay"), ("delay", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "output")]
    with pytest.raises(ConversionError, match=r"node 'delay' \(Delay\) is not supported"):
        import_nir(graph)
    graph = one_neuron_graph(1.0, 1.0)  # a second IF layer in parallel with if1: not a chain
    graph.nodes["fc1b"] = nir.Affine(weight=np.ones((1, 1), dtype=np.float32), bias=np.zeros(1, dtype=np.float32))
    graph.nodes["if1b"] = nir.IF(r=np.ones(1), v_threshold=np.ones(1))
    graph.nodes["fc2b"] = nir.Affine(weight=np.ones((1, 1), dtype=np.float32), bias=np.zeros(1, dtype=np.float32))
    graph.edges = graph.edges + [("input", "fc1b"), ("fc1b", "if1b"), ("if1b", "fc2b"), ("fc2b", "output")]
    with pytest.raises(ConversionError, match=r"after 'input' the graph does not continue as one chain"):
        import_nir(graph)
    graph = one_neuron_graph(1.0, 1.0)  # a loop of flatten nodes in front of fc1: refused, no hang
    graph.nodes["f1"], graph.nodes["f2"] = nir.Flatten(input_type=None), nir.Flatten(input_type=None)
    graph.edges = [("f1", "f2"), ("f2", "f1"), ("f1", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "output")]
    with pytest.raises(ConversionError, match=r"node 'f1' \(Flatten\) feeds \['f2', 'fc1'\]"):
        import_nir(graph)
    graph = one_neuron_graph(1.0, 1.0)
    graph.edges = graph.edges + [("fc1", "fc2")]  # a weighted node feeding two places
    with pytest.raises(ConversionError, match=r"node 'fc1' \(Affine\) feeds \['if1', 'fc2'\]"):
        import_nir(graph)


class Residual(nn.Module):
    """Functional ReLUs, an identity shortcut, a strided 1x1-conv shortcut, pooling, flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 6, 3, padding=1, stride=2)
        self.down = nn.Conv2d(4, 6, 1, stride=2)
        self.fc = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.conv1(x))
        b = F.relu(self.conv2(a) + a)
        c = F.relu(self.conv3(b) + self.down(b))
        return self.fc(torch.flatten(F.avg_pool2d(c, 2), 1))


def test_residual_network_round_trips_with_identical_spikes(tmp_path: Path) -> None:
    torch.manual_seed(2)
    x = torch.rand(32, 1, 8, 8)
    snn = snnergy.convert(Residual().eval(), calibration=x)
    assert sum(len(stage.shortcuts) for stage in snn.stages) == 2
    graph = export_nir(snn, tmp_path / "res.nir")
    kinds = {type(node).__name__ for node in graph.nodes.values()}
    assert "Scale" in kinds  # the identity shortcut
    # NIR sums a node's inputs: the IF nodes fed by a shortcut have two incoming edges
    fan_in = [sum(1 for _, b in graph.edges if b == name) for name, node in graph.nodes.items()
              if type(node).__name__ == "IF"]
    assert sorted(fan_in) == [1, 2, 2]
    back = import_nir(tmp_path / "res.nir")
    assert [[c.source for c in s.shortcuts] for s in back.stages] == [[c.source for c in s.shortcuts] for s in snn.stages]
    a = simulate_batch(snn, x[:8], [4, 32, 64], mode="looped")
    b = simulate_batch(back, x[:8], [4, 32, 64], mode="looped")
    assert torch.equal(a.potentials, b.potentials)
    assert all(torch.equal(a.final_counts[k], b.final_counts[k]) for k in a.final_counts)
    assert float(sum(c.sum() for c in a.final_counts.values())) > 0


def test_export_refuses_ceil_mode_pooling(tmp_path: Path) -> None:
    stages = [SpikingStage("fc1", "if1", nn.Sequential(), nn.Conv2d(1, 2, 1), True),
              SpikingStage("fc2", None, nn.Sequential(nn.AvgPool2d(2, ceil_mode=True), nn.Flatten()),
                           nn.Linear(8, 2), False)]
    with pytest.raises(ConversionError, match=r"'fc2.pre\[0\]' \(AvgPool2d\) uses ceil_mode"):
        export_nir(SpikingNetwork(stages, (1, 3, 3)), tmp_path / "ceil.nir")
    assert not (tmp_path / "ceil.nir").exists()


def test_hostile_truncated_and_missing_files_give_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="NIR file not found"):
        import_nir(tmp_path / "missing.nir")
    hostile = tmp_path / "hostile.nir"
    hostile.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="hostile.nir: not a readable NIR file"):
        import_nir(hostile)
    snn, _ = lenet_snn()
    export_nir(snn, tmp_path / "good.nir")
    data = (tmp_path / "good.nir").read_bytes()
    truncated = tmp_path / "truncated.nir"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.nir: not a readable NIR file"):
        import_nir(truncated)


def test_snnergy_package_exports_the_nir_functions() -> None:
    assert snnergy.export_nir is export_nir and snnergy.import_nir is import_nir


def test_nir_reset_to_zero_costs_accuracy_on_a_digits_lenet(tmp_path: Path) -> None:
    """The price of NIR's IF semantics: a reader ignoring ``snnergy_reset`` resets to zero."""
    from snnergy.config import DataConfig, ExperimentConfig, ModelConfig, TrainConfig
    from snnergy.experiments import train

    config = ExperimentConfig(data=DataConfig(dataset="digits", batch_size=32), model=ModelConfig(name="lenet"),
                              train=TrainConfig(epochs=15, lr=1e-2), device="cpu")
    trained = train(config)
    dnn_accuracy = trained.history[-1].test_accuracy
    test = (trained.splits.test_x, trained.splits.test_y)
    snn = snnergy.convert(trained.model, calibration=trained.splits.train_x[:512], percentile=99.9)
    export_nir(snn, tmp_path / "lenet.nir")
    graph = nir.read(tmp_path / "lenet.nir")
    for node in graph.nodes.values():  # what a NIR reader that ignores our metadata simulates
        node.metadata = {}
    plain = import_nir(graph)
    assert plain.neuron.reset == "zero"
    subtract = snnergy.simulate(snn, test, timesteps=[32, 128])
    zero = snnergy.simulate(plain, test, timesteps=[32, 128])
    # measured (torch 2.13 CPU, seed 0): DNN 0.973; subtract 0.971 at T = 128, reset to zero 0.951
    assert subtract.accuracy[-1] >= dnn_accuracy - 0.015
    assert zero.accuracy[-1] < subtract.accuracy[-1]
    # With a constant input current I in [0, 1] per step, reset by subtraction fires floor(T I)
    # times in T steps, reset to zero floor(T / ceil(1 / I)) <= floor(T I) times: the first layer
    # never spikes more under reset to zero, so it also performs fewer SynOps.
    first = snn.stages[0].neuron_name
    x = trained.splits.test_x[:64]
    counts_sub = simulate_batch(snn, x, [128]).final_counts[first]
    counts_zero = simulate_batch(plain, x, [128]).final_counts[first]
    assert bool((counts_zero <= counts_sub).all()) and float(counts_zero.sum()) < float(counts_sub.sum())
    assert zero.synops[-1] < subtract.synops[-1]


# ---------------------------------------------------------------------------- initial potential v0


def test_v0_travels_in_the_metadata_and_round_trips(tmp_path: Path) -> None:
    snn, x = lenet_snn()
    snn.neuron = IFNeuron(1.0, "subtract", 0.5)
    export_nir(snn, tmp_path / "net.nir")
    graph = nir.read(tmp_path / "net.nir")
    assert all(float(graph.nodes[name].metadata[V0_KEY]) == 0.5 for name in ("1", "5", "9"))
    assert float(graph.metadata[V0_KEY]) == 0.5
    back = import_nir(graph)
    assert back.neuron == IFNeuron(1.0, "subtract", 0.5)
    a, b = simulate_batch(snn, x[:16], [1, 8, 32], mode="looped"), simulate_batch(back, x[:16], [1, 8, 32], mode="looped")
    assert torch.equal(a.potentials, b.potentials)
    assert all(torch.equal(a.final_counts[k], b.final_counts[k]) for k in a.final_counts)
    graph.nodes["5"].metadata[V0_KEY] = 0.25
    with pytest.raises(ConversionError, match=f"disagree on the initial potential {V0_KEY}"):
        import_nir(graph)


def test_import_reads_v0_and_starts_at_zero_without_it() -> None:
    # r = 1, threshold 1, input 0.25 per step, reset by subtraction: from v0 = 1/2 the potential
    # is 0.75, 1.0 -> spike at step 2; from 0 (no metadata: NIR's IF has no initial potential)
    # it is 0.25, 0.5: no spike yet
    half = import_nir(one_neuron_graph(1.0, 1.0, {RESET_KEY: "subtract", V0_KEY: 0.5}))
    plain = import_nir(one_neuron_graph(1.0, 1.0, {RESET_KEY: "subtract"}))
    assert half.neuron.v0 == 0.5 and plain.neuron.v0 == 0.0
    x = torch.tensor([[0.25]])
    assert simulate_reference(half, x, [2]).spike_counts["if1"].item() == 1.0
    assert simulate_reference(plain, x, [2]).spike_counts["if1"].item() == 0.0
    with pytest.raises(ConversionError, match=rf"'if1' \(IF\): metadata {V0_KEY}=1.5 must be a number in \[0, 1\)"):
        import_nir(one_neuron_graph(1.0, 1.0, {V0_KEY: 1.5}))


def norse_like_graph(batch: int, arrays_with_batch: bool = True):
    """What norse writes: Input (batch, 4) -> Affine -> IF (arrays (1, 3)) -> Affine -> Output (1, 2)."""
    rng = np.random.default_rng(0)
    lead = (1,) if arrays_with_batch else ()
    nodes = {
        "input": nir.Input(input_type=np.array([batch, 4])),
        "fc1": nir.Affine(weight=rng.uniform(0, 1, (3, 4)).astype(np.float32), bias=np.zeros(3, dtype=np.float32)),
        "if1": nir.IF(r=np.ones((*lead, 3)), v_threshold=np.ones((*lead, 3))),
        "fc2": nir.Affine(weight=rng.uniform(-1, 1, (2, 3)).astype(np.float32), bias=np.zeros(2, dtype=np.float32)),
        "output": nir.Output(output_type=np.array([1, 2])),
    }
    edges = [("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_a_leading_batch_of_one_is_dropped_and_other_batches_are_refused() -> None:
    # issue 15: norse writes Input (1, 64); import kept it as the per-sample shape and simulate then
    # failed with a raw ValueError from simulation/runner.py
    snn = import_nir(norse_like_graph(1))
    assert snn.input_shape == (4,)
    plain = import_nir(norse_like_graph(1, arrays_with_batch=False))
    x = torch.rand(5, 4)
    assert torch.equal(simulate_reference(snn, x, [8]).spike_counts["if1"],
                       simulate_reference(plain, x, [8]).spike_counts["if1"])
    record = snnergy.simulate(snn, (x, torch.zeros(5, dtype=torch.long)), timesteps=[4])
    assert record.samples == 5
    with pytest.raises(ConversionError, match=r"has shape \(8, 4\): a batch of 8; snnergy reads one sample's shape, \(4,\)"):
        import_nir(norse_like_graph(8))


def test_a_batched_conv_input_and_flatten_after_the_batch_import(tmp_path: Path) -> None:
    # sinabs/norse write Input (1, C, H, W) and Flatten(start_dim=1): the same network as snnergy's own
    snn, x = lenet_snn()
    export_nir(snn, tmp_path / "n.nir")
    graph = nir.read(tmp_path / "n.nir")
    nodes = dict(graph.nodes)
    nodes["input"] = nir.Input(input_type=np.array([1, *snn.input_shape]))
    for name, node in list(nodes.items()):
        if isinstance(node, nir.Flatten):
            nodes[name] = nir.Flatten(input_type=node.input_type, start_dim=1, end_dim=-1)
    batched = import_nir(nir.NIRGraph(nodes=nodes, edges=graph.edges, type_check=False))
    assert batched.input_shape == snn.input_shape
    ref, got = simulate_reference(snn, x[:8], [16]), simulate_reference(batched, x[:8], [16])
    for name in ref.spike_counts:
        assert torch.equal(ref.spike_counts[name], got.spike_counts[name])
    nodes["input"] = nir.Input(input_type=np.array([2, *snn.input_shape]))
    with pytest.raises(ConversionError, match="a batch of 2"):
        import_nir(nir.NIRGraph(nodes=nodes, edges=graph.edges, type_check=False))


def test_the_reset_can_be_chosen_on_import() -> None:
    # issue 15: sinabs resets by subtraction but writes NIR's reset to zero. Same neuron as above
    # (current 0.375 per step after folding r/threshold = 1/2): 8 steps give 3 spikes by subtraction
    # (8 * 0.375 = 3.0), 2 with reset to zero (a spike every 3 steps)
    graph = one_neuron_graph(2.0, 4.0)
    assert import_nir(graph).neuron.reset == "zero"
    sub = import_nir(graph, reset="subtract")
    assert sub.neuron.reset == "subtract"
    assert simulate_reference(sub, torch.tensor([[0.75]]), [8]).spike_counts["if1"].item() == 3.0
    # the option wins over snnergy's metadata too
    assert import_nir(one_neuron_graph(2.0, 4.0, {RESET_KEY: "subtract"}), reset="zero").neuron.reset == "zero"
    with pytest.raises(snnergy.errors.ConfigError, match="reset must be one of"):
        import_nir(graph, reset="leak")


def test_a_readout_that_is_not_one_dimensional_is_a_clear_error() -> None:
    # a 2-d readout used to reach the runner's accuracy and fail there with a raw ValueError
    from snnergy.errors import ConfigError

    stage1 = SpikingStage("fc1", "if1", nn.Sequential(), nn.Linear(4, 3), True)
    stage2 = SpikingStage("fc2", None, nn.Sequential(), nn.Linear(3, 2), False)
    snn = SpikingNetwork([stage1, stage2], (1, 4))
    with pytest.raises(ConfigError, match=r"gives per-sample shape \(1, 2\)"):
        snnergy.simulate(snn, (torch.rand(3, 1, 4), torch.zeros(3, dtype=torch.long)), timesteps=[2])


def test_export_refuses_max_pooling_with_a_clear_error(tmp_path: Path) -> None:
    # issue 15: max pooling converts by spike-count gating, which NIR cannot express
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)).eval()
    snn = snnergy.convert(net, torch.rand(8, 1, 4, 4))
    with pytest.raises(ConversionError, match=r"\(MaxPool2d\) cannot be exported: NIR has no max pooling node"):
        export_nir(snn, tmp_path / "m.nir")
    assert not (tmp_path / "m.nir").exists()


@pytest.mark.parametrize("reader", ["sinabs", "norse", "snntorch"])
def test_export_for_torch_readers_writes_sum_pooling_and_keeps_the_function(reader: str, tmp_path: Path) -> None:
    # issue 15: nirtorch readers map no AvgPool2d. Each 2x2 average pool becomes SumPool2d and its
    # 1/4 moves into the next layer's weights (a power of two: exact); norse and snnTorch apply
    # Flatten to batched tensors: Flatten(start_dim=1) over (1, C, H, W); sinabs adds the batch dim
    # itself (sinabs/nir.py): Flatten(start_dim=0). snnergy's import gives the same spikes.
    snn, x = lenet_snn()
    graph = export_nir(snn, tmp_path / "r.nir", reader=reader)
    kinds = [type(node).__name__ for node in graph.nodes.values()]
    assert "AvgPool2d" not in kinds and kinds.count("SumPool2d") == 2
    flatten = next(node for node in graph.nodes.values() if isinstance(node, nir.Flatten))
    if reader == "sinabs":
        assert flatten.start_dim == 0 and tuple(np.asarray(flatten.input_type["input"])) == (6, 2, 2)
    else:
        assert flatten.start_dim == 1 and tuple(np.asarray(flatten.input_type["input"])) == (1, 6, 2, 2)
    own = next(node for name, node in export_nir(snn).nodes.items() if isinstance(node, nir.Conv2d) and name != "0")
    summed = next(node for name, node in graph.nodes.items() if isinstance(node, nir.Conv2d) and name != "0")
    np.testing.assert_array_equal(np.asarray(summed.weight), np.asarray(own.weight) / 4)  # 1/(2*2) folded
    np.testing.assert_array_equal(np.asarray(summed.bias), np.asarray(own.bias))  # the bias is not pooled
    back = import_nir(tmp_path / "r.nir")
    a, b = simulate_reference(snn, x[:16], [8, 32]), simulate_reference(back, x[:16], [8, 32])
    assert torch.equal(a.potentials, b.potentials)
    assert all(torch.equal(a.spike_counts[k], b.spike_counts[k]) for k in a.spike_counts)


def test_export_options_are_checked_and_reach_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from snnergy.cli import main
    from snnergy.errors import ConfigError
    from snnergy.simulation import save_snn

    snn, x = lenet_snn()
    with pytest.raises(ConfigError, match="unknown NIR reader 'lava'; known: nir, sinabs, norse, snntorch"):
        export_nir(snn, reader="lava")
    with pytest.raises(ConfigError, match="pooling must be one of"):
        export_nir(snn, pooling="max")
    # --pooling sum alone keeps NIR's per-sample Flatten (the type-checked graph)
    kinds = {type(n).__name__ for n in export_nir(snn, pooling="sum").nodes.values()}
    assert "SumPool2d" in kinds and "AvgPool2d" not in kinds
    save_snn(snn, tmp_path / "snn")
    assert main(["export-nir", str(tmp_path / "snn"), "--for", "sinabs", "--out", str(tmp_path / "s.nir")]) == 0
    assert "for sinabs" in capsys.readouterr().out
    back = import_nir(tmp_path / "s.nir")
    assert torch.equal(simulate_reference(snn, x[:4], [8]).potentials, simulate_reference(back, x[:4], [8]).potentials)


def test_residual_export_for_readers_keeps_the_function(tmp_path: Path) -> None:
    torch.manual_seed(2)
    x = torch.rand(32, 1, 8, 8)
    snn = snnergy.convert(Residual().eval(), calibration=x)
    export_nir(snn, tmp_path / "res.nir", reader="sinabs")
    back = import_nir(tmp_path / "res.nir")
    a = simulate_batch(snn, x[:8], [4, 32], mode="looped")
    b = simulate_batch(back, x[:8], [4, 32], mode="looped")
    assert torch.equal(a.potentials, b.potentials)
