"""The same converted snnergy SNN run by SpikingJelly and sinabs, and counted by NeuroBench and sinabs.

Nothing here converts on its own: every peer network is built from the stages of one
:class:`snnergy.simulation.SpikingNetwork` (weights already BN-folded and normalized by snnergy),
so the peers simulate exactly the same net. The neurons are the peers' integrate-and-fire
neurons with the same dynamics as snnergy's (threshold ``theta``, reset by subtraction, at most
one spike per step, ``v += I; s = v >= theta; v -= s * theta``):

* SpikingJelly 2.0: ``neuron.IFNode(v_threshold=theta, v_reset=None)``; ``v_reset=None`` is its
  reset by subtraction. Single-step mode: the network is called once per step on ``(B, ...)``;
  multi-step mode: every stateless op wrapped in ``layer.SeqToANNContainer`` runs on the
  ``(T*B, ...)`` train and the neurons scan ``(T, B, ...)``.
* sinabs 3.1: ``layers.IAFSqueeze`` with ``spike_fn=SingleSpike`` (its default ``MultiSpike``
  may fire several spikes per step), ``reset_fn=MembraneSubtract()`` and ``min_v_mem=None``
  (no lower bound, as snnergy); the whole ``(B*T, ...)`` train goes through each layer.

Input is analog, as snnergy's default: the image is the constant input current of every step,
so every peer computes the first layer's current at every step (their ordinary usage), while
snnergy computes it once. The readout (the last Linear) is not spiking; its outputs are summed
over the steps, as snnergy accumulates the readout potential.

Counts: :func:`neurobench_synops` runs NeuroBench's ``SynapticOperations`` workload metric on a
DNN; :func:`sinabs_synops` runs sinabs's synops hooks (``sinabs.hooks.register_synops_hooks``)
on the sinabs network; :func:`snnergy_synops_on` counts the same spikes with snnergy's fan-out
code. See docs/benchmarks.md for the definitions and where they differ.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from snnergy.counting import neuron_fanout, weighted_events
from snnergy.simulation import SpikingNetwork


class PeerError(ValueError):
    """A network the peers cannot express (e.g. residual shortcuts in a plain Sequential)."""


# ---------------------------------------------------------------------------- building


def stage_ops(snn: SpikingNetwork) -> list[tuple[str, list[tuple[str, nn.Module]], str | None]]:
    """Per stage: its name, copies of its weightless ops and layer (named), and its neuron name.

    Raises:
        PeerError: A stage has shortcuts (the peers' Sequential networks are chains).
    """
    out = []
    for stage in snn.stages:
        if len(stage.shortcuts):
            raise PeerError(f"stage '{stage.name}' has residual shortcuts: the peer networks "
                            "here are plain chains (LeNet, VGG)")
        ops = [(f"{stage.name}_pre{i}", copy.deepcopy(op)) for i, op in enumerate(stage.pre)]
        ops.append((stage.name, copy.deepcopy(stage.layer)))
        out.append((stage.name, ops, stage.neuron_name if stage.spiking else None))
    return out


def sinabs_network(snn: SpikingNetwork, batch: int) -> nn.Sequential:
    """The SNN as a sinabs Sequential over squeezed ``(B*T, ...)`` trains of ``batch`` samples.

    Child names: the stage's layer keeps its name (``conv1``), each weightless op before it is
    ``<layer>_pre<i>``, and its neurons take the DNN ReLU's name (``relu1``).
    """
    import sinabs.layers as sl
    from sinabs.activation import MembraneSubtract, SingleSpike

    children: list[tuple[str, nn.Module]] = []
    for _, ops, neuron in stage_ops(snn):
        children += ops
        if neuron is not None:
            children.append((neuron, sl.IAFSqueeze(
                batch_size=batch, spike_threshold=float(snn.neuron.threshold), spike_fn=SingleSpike,
                reset_fn=MembraneSubtract(), min_v_mem=None)))
    return nn.Sequential(OrderedDict(children))


def run_sinabs(net: nn.Sequential, x: Tensor, steps: int) -> Tensor:
    """Simulates ``x`` ``(B, ...)`` for ``steps`` steps; returns the readout summed over steps.

    The neuron states are reset first, so every call is a fresh simulation.
    """
    import sinabs.layers as sl

    for module in net.modules():
        if isinstance(module, sl.StatefulLayer):
            module.reset_states()
    batch = x.shape[0]
    train = x.unsqueeze(1).expand(batch, steps, *x.shape[1:]).reshape(batch * steps, *x.shape[1:])
    with torch.no_grad():
        out = net(train)
    return out.reshape(batch, steps, -1).sum(1)


def spikingjelly_network(snn: SpikingNetwork, step_mode: str) -> nn.Sequential:
    """The SNN as a SpikingJelly Sequential: ``"s"`` single-step, ``"m"`` multi-step."""
    from spikingjelly.activation_based import layer, neuron

    if step_mode not in ("s", "m"):
        raise PeerError(f"SpikingJelly step_mode must be 's' or 'm', got {step_mode!r}")
    children: list[tuple[str, nn.Module]] = []
    for name, ops, neuron_name in stage_ops(snn):
        if step_mode == "s":
            children += ops
        else:  # stateless ops on the (T*B, ...) train, as SpikingJelly's own examples do
            children.append((name, layer.SeqToANNContainer(OrderedDict(ops))))
        if neuron_name is not None:
            children.append((neuron_name, neuron.IFNode(
                v_threshold=float(snn.neuron.threshold), v_reset=None, step_mode=step_mode)))
    return nn.Sequential(OrderedDict(children))


def run_spikingjelly_single(net: nn.Sequential, x: Tensor, steps: int) -> Tensor:
    """Calls the single-step network ``steps`` times on ``x``; returns the readout summed."""
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    total = None
    with torch.no_grad():
        for _ in range(steps):
            out = net(x)
            total = out if total is None else total + out
    return total


def run_spikingjelly_multi(net: nn.Sequential, x: Tensor, steps: int) -> Tensor:
    """Runs the multi-step network on the ``(T, B, ...)`` train; returns the readout summed."""
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    with torch.no_grad():
        out = net(x.unsqueeze(0).expand(steps, *x.shape))
    return out.sum(0)


def check_dynamics(snn: SpikingNetwork) -> None:
    """The peers here model reset by subtraction only (snnergy's default)."""
    if snn.neuron.reset != "subtract":
        raise PeerError(f"the SNN resets by '{snn.neuron.reset}'; the peer networks are built "
                        "with reset by subtraction: convert with ConvertConfig(reset='subtract')")


# ---------------------------------------------------------------------------- counting


@dataclass(frozen=True)
class LayerSynops:
    """SynOps of one weighted layer per sample over ``T`` steps, counted by sinabs and snnergy.

    Attributes:
        layer: The receiving layer (a stage name, e.g. ``"conv2"``).
        source: What feeds it: the neuron name of the previous stage, ``None`` for the input.
        sinabs: sinabs's ``synops_per_timestep`` (mean over the ``B*T`` sample-steps, pooling
            corrected) times ``T``.
        snnergy: snnergy's count of the same spikes (:func:`snnergy_synops_on`); for the input
            layer on analog input this is ``None`` (snnergy counts it as ``input_macs``).
    """

    layer: str
    source: str | None
    sinabs: float
    snnergy: float | None


def sinabs_synops(snn: SpikingNetwork, x: Tensor, steps: int) -> tuple[list[LayerSynops], dict[str, Tensor]]:
    """sinabs's per-layer synops on ``x`` over ``steps`` steps, and the spikes behind them.

    Registers ``sinabs.hooks.register_synops_hooks`` on a fresh sinabs network of ``snn``,
    simulates once, and records each neuron layer's spikes (``(B, T, ...)``). Each layer's
    count is then also computed by snnergy from those same spikes.

    Returns:
        The per-layer comparison (input layer first) and the spikes by neuron name.
    """
    from sinabs.hooks import register_synops_hooks

    batch = x.shape[0]
    net = sinabs_network(snn, batch)
    register_synops_hooks(net)
    spikes: dict[str, Tensor] = {}
    handles = []
    names = {s.neuron_name for s in snn.stages if s.spiking}
    for name, module in net.named_children():
        if name in names:
            def keep(_m, _i, out, name=name):
                spikes[name] = out.detach().reshape(batch, steps, *out.shape[1:])
            handles.append(module.register_forward_hook(keep))
    run_sinabs(net, x, steps)
    for handle in handles:
        handle.remove()
    per_index = net.hook_data["synops_per_timestep"]
    children = list(net.named_children())
    by_layer = {children[i][0]: float(v) * steps for i, v in per_index.items()}
    ours = snnergy_synops_on(snn, spikes)
    out = []
    previous: str | None = None
    for stage in snn.stages:
        out.append(LayerSynops(stage.name, previous, by_layer[stage.name],
                               None if previous is None else ours[previous]))
        previous = stage.neuron_name
    return out, spikes


def snnergy_synops_on(snn: SpikingNetwork, spikes: dict[str, Tensor]) -> dict[str, float]:
    """snnergy's SynOps per sample of each neuron layer, for given spikes ``(B, T, ...)``.

    Each neuron's spike count over the ``T`` steps times its fan-out into the next weighted
    layer through average pooling (:func:`snnergy.counting.neuron_fanout`), summed in float64
    and averaged over the ``B`` samples: what ``snnergy.experiments.simulate`` reports in
    ``synops_per_layer`` for its own spikes.
    """
    plan = snn.plan()
    out = {}
    for stage, nxt in zip(plan.stages, plan.stages[1:]):
        if stage.neuron is None:
            continue
        counts = spikes[stage.neuron.name].sum(1, dtype=torch.float64)
        fanout = neuron_fanout(nxt.main.geometry, nxt.main.pools, tuple(counts.shape[1:]))
        out[stage.neuron.name] = float(weighted_events(fanout, counts).mean())
    return out


@dataclass(frozen=True)
class MacCounts:
    """Per-sample MACs of a DNN by NeuroBench.

    Attributes:
        dense, effective_macs, effective_acs: ``SynapticOperations``'s ``Dense``,
            ``Effective_MACs`` and ``Effective_ACs`` (NeuroBench counts a layer's operations as
            ACs when its whole input batch lies in {-1, 0, 1}, as MACs otherwise).
        layers: By layer name, ``(dense, effective)`` per sample from ``single_layer_MACs``.
    """

    dense: float
    effective_macs: float
    effective_acs: float
    layers: dict[str, tuple[float, float]]


def neurobench_synops(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> MacCounts:
    """NeuroBench's ``Dense``, ``Effective_MACs`` and ``Effective_ACs`` per sample on ``(x, y)``.

    Runs NeuroBench's own ``Benchmark`` with the ``SynapticOperations`` workload metric on a
    ``TorchModel`` of ``model``; per layer, NeuroBench's ``single_layer_MACs`` on each layer's
    input (its forward pre-hook), summed over the samples and divided by their number.

    NeuroBench sums each batch's count in the dtype of the model (``nr_updates.sum()``); in
    float32 that is exact only while one layer's count over one batch stays below 2**24. Pass a
    float64 model and input (or small batches) for exact integers.
    """
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.utils.layers import single_layer_MACs
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel
    from torch.utils.data import DataLoader, TensorDataset

    model = model.eval()
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    bench = Benchmark(TorchModel(model), loader, [], [], [[], [SynapticOperations]])
    result = bench.run(quiet=True)["SynapticOperations"]
    bench.workload_metric_manager.cleanup_hooks(bench.model)
    weighted = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    layers = {name: [0, 0] for name, _ in weighted}
    for i in range(0, len(x), batch_size):
        # Inputs are captured first and counted after the hooks are gone: single_layer_MACs
        # deep-copies the layer, hooks included, and calls the copy.
        seen: dict[str, Tensor] = {}
        handles = [module.register_forward_pre_hook(
            lambda _m, inputs, name=name: seen.__setitem__(name, inputs[0])) for name, module in weighted]
        with torch.no_grad():
            model(x[i : i + batch_size])
        for handle in handles:
            handle.remove()
        for name, module in weighted:
            layers[name][0] += single_layer_MACs(seen[name], module, total=True)[0]
            layers[name][1] += single_layer_MACs(seen[name], module)[0]
    n = len(x)
    return MacCounts(float(result["Dense"]), float(result["Effective_MACs"]),
                     float(result["Effective_ACs"]), {k: (v[0] / n, v[1] / n) for k, v in layers.items()})


def relative_difference(a: float, b: float) -> float:
    """``|a - b| / max(|a|, |b|)``, 0.0 when both are 0."""
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale

