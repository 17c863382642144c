"""The compiled average pooling against ``torch.nn.functional.avg_pool2d``: outputs and gradients
to the bit where the kernels run, PyTorch's own pooling everywhere else, the ``SNNERGY_KERNELS``
switch, and the models and the network plan reading it as an ``nn.AvgPool2d``. Tests that need the
kernels skip with the reason when no C compiler exists."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snnergy import native, pooling
from snnergy.config import ModelConfig
from snnergy.models import build_model
from snnergy.pooling import AvgPool2d, avg_pool, compiled_window
from snnergy.structure import trace

COMPILED, PYTORCH = "_PoolBackward", "AvgPool2DBackward0"


@pytest.fixture
def built(native_buildable: None) -> None:
    """The kernels built (as the first pooling on a CPU builds them), or the test skipped with the
    reason when they cannot exist here (switched off, no C compiler)."""
    assert pooling.prepare(), f"the pooling kernels must build here: {pooling.unavailable_reason()}"


def pool_both(x: torch.Tensor, module: nn.AvgPool2d) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                             torch.Tensor, str]:
    """``module`` against ``F.avg_pool2d`` on ``x``: both outputs, both input gradients for one
    output gradient (with signed zeros in it), and the name of the module's backward node."""
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = module(ours)
    expected = F.avg_pool2d(ref, module.kernel_size, module.stride, module.padding, module.ceil_mode,
                            module.count_include_pad, module.divisor_override)
    torch.manual_seed(1)
    grad = torch.randn_like(expected)
    grad[0, 0, 0, :3] = -0.0
    out.backward(grad)
    expected.backward(grad)
    assert ours.grad is not None and ref.grad is not None
    return out.detach(), expected.detach(), ours.grad, ref.grad, out.grad_fn.name()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values and equal signs (``-0.0`` is not ``+0.0``) and the same layout."""
    return (a.shape == b.shape and a.stride() == b.stride() and torch.equal(a, b)
            and bool((a.signbit() == b.signbit()).all()))


def signed_map(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=dtype)
    x[0, 0, 0, :4] = -0.0  # a window of negative zeros: ATen's sum starts at +0.0
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 5, 28, 28), (2, 6, 27, 29), (2, 16, 10, 10), (1, 3, 7, 40), (2, 1, 4, 4),
                                   (1, 2, 3, 17)])
@pytest.mark.parametrize("kernel", [2, 3, (2, 1), (1, 3), (2, 3)])
def test_compiled_pooling_and_gradient_equal_avg_pool2d_to_the_bit(built: None, dtype: torch.dtype,
                                                                    shape: tuple[int, ...], kernel: object) -> None:
    # widths 28 and 40 with kernel 2 take the eight-lane loop (14 and 20 outputs: eight, then the last
    # eight again); 27, 29 and 17 crop a column; 7, 27 and 3 crop rows; widths 10 and 4 (5 and 2
    # outputs) and the other kernels take the scalar loop
    out, expected, grad, ref_grad, node = pool_both(signed_map(shape, dtype), AvgPool2d(kernel))
    assert node == COMPILED
    assert same_bits(out, expected)
    assert same_bits(grad, ref_grad)


def test_the_compiled_pooling_is_the_same_on_several_threads(built: None) -> None:
    x = signed_map((8, 6, 28, 28), torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pool_both(x, AvgPool2d(2))
        torch.set_num_threads(2)
        two = pool_both(x, AvgPool2d(2))
    finally:
        torch.set_num_threads(threads)
    assert same_bits(one[0], two[0]) and same_bits(one[2], two[2])


@pytest.mark.parametrize("module, x", [
    (AvgPool2d(2), signed_map((2, 3, 8, 8), torch.float32).contiguous(memory_format=torch.channels_last)),
    (AvgPool2d(2), signed_map((2, 3, 8, 6), torch.float32).transpose(2, 3)),  # height and width swapped
    (AvgPool2d(2), signed_map((2, 3, 8, 8), torch.bfloat16)),
    (AvgPool2d(3, stride=1), signed_map((2, 3, 8, 8), torch.float32)),  # overlapping windows
    (AvgPool2d(2, padding=1), signed_map((2, 3, 8, 8), torch.float32)),
    (AvgPool2d(2, ceil_mode=True), signed_map((2, 3, 7, 7), torch.float32)),
    (AvgPool2d(2, divisor_override=1), signed_map((2, 3, 8, 8), torch.float32)),
])
def test_every_other_pooling_is_pytorchs_own(module: AvgPool2d, x: torch.Tensor) -> None:
    out, expected, grad, ref_grad, node = pool_both(x, module)
    assert node == PYTORCH
    assert same_bits(out, expected) and same_bits(grad, ref_grad)


def test_a_map_smaller_than_the_window_gets_pytorchs_error() -> None:
    with pytest.raises(RuntimeError) as ours:
        AvgPool2d(4)(torch.zeros(1, 1, 3, 8))
    with pytest.raises(RuntimeError) as theirs:
        F.avg_pool2d(torch.zeros(1, 1, 3, 8), 4)
    assert str(ours.value) == str(theirs.value)


def test_switched_off_the_kernels_leave_pytorchs_pooling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.SWITCH, "off")
    out, expected, grad, ref_grad, node = pool_both(signed_map((2, 6, 28, 28), torch.float32), AvgPool2d(2))
    assert node == PYTORCH
    assert same_bits(out, expected) and same_bits(grad, ref_grad)
    assert pooling.unavailable_reason() == f"{native.SWITCH}=off"


def test_compiled_window_is_the_plain_window_only() -> None:
    assert compiled_window(nn.AvgPool2d(2)) == (2, 2)
    assert compiled_window(nn.AvgPool2d((2, 3))) == (2, 3)
    assert compiled_window(nn.AvgPool2d(2, stride=2)) == (2, 2)
    assert compiled_window(nn.AvgPool2d(2, stride=1)) is None
    assert compiled_window(nn.AvgPool2d(2, padding=1)) is None
    assert compiled_window(nn.AvgPool2d(2, ceil_mode=True)) is None
    assert compiled_window(nn.AvgPool2d(2, divisor_override=3)) is None


def test_avg_pool_takes_any_avg_pool2d_module(built: None) -> None:
    x = signed_map((2, 3, 6, 6), torch.float64).requires_grad_()
    out = avg_pool(x, nn.AvgPool2d(3))  # a plain torch module: its arguments, the kernels
    assert out.grad_fn.name() == COMPILED
    assert same_bits(out.detach(), F.avg_pool2d(x.detach(), 3))


def test_the_models_pool_with_it_and_the_plan_reads_it_as_average_pooling() -> None:
    model = build_model(ModelConfig(name="lenet"), (1, 28, 28), 10)
    pools = [m for m in model.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 2 and all(type(m) is AvgPool2d for m in pools)
    plan = trace(model, (1, 28, 28))
    reference = build_model(ModelConfig(name="lenet"), (1, 28, 28), 10)
    for name, child in list(reference.named_children()):
        if isinstance(child, AvgPool2d):
            setattr(reference, name, nn.AvgPool2d(child.kernel_size))
    reference.load_state_dict(model.state_dict())
    expected = trace(reference, (1, 28, 28))
    assert [s.name for s in plan.stages] == [s.name for s in expected.stages]
    pre = [[(type(op), repr(op)) for op in b.pre] for s in plan.stages for b in s.branches]
    assert pre == [[(type(op), repr(op)) for op in b.pre] for s in expected.stages for b in s.branches]
    assert (nn.AvgPool2d, repr(nn.AvgPool2d(2))) in [op for ops in pre for op in ops]  # torch's module
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), reference(x))  # the same network, to the bit


@pytest.mark.parametrize("activation", ["relu", "qcfs", "clip"])
def test_traced_models_record_pytorchs_own_ops(built: None, activation: str) -> None:
    # torch.fx symbolic tracing (SpikingJelly's ann2snn converter traces the model it is given)
    # and torch.jit.trace see PyTorch's pooling and the activations' PyTorch expressions, never
    # a kernel call: the traced graphs compute what the eager model computes, to the bit (the
    # kernels give PyTorch's bits)
    model = build_model(ModelConfig(name="lenet", activation=activation), (1, 28, 28), 10).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        graph = torch.fx.symbolic_trace(model)
        assert any(node.target is F.avg_pool2d for node in graph.graph.nodes)
        assert torch.equal(graph(x), expected)
        traced = torch.jit.trace(model, x, check_trace=False)
        assert torch.equal(traced(x), expected)
    assert not native.eager(torch.fx.Proxy(torch.fx.Graph().placeholder("x"))) and native.eager(x)


def test_plain_copy_hands_torchs_own_pooling_to_tools_that_trace() -> None:
    model = build_model(ModelConfig(name="lenet"), (1, 28, 28), 10).eval()
    twin = pooling.plain_copy(model)
    pools = [m for m in twin.modules() if isinstance(m, nn.AvgPool2d)]
    assert pools and all(type(m) is nn.AvgPool2d for m in pools)
    assert any(type(m) is AvgPool2d for m in model.modules())  # the model itself is left as it is
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(twin(x), model(x))
    graph = torch.fx.symbolic_trace(twin)  # pooling as call_module nodes, as converters look for them
    assert sum(node.op == "call_module" and type(graph.get_submodule(node.target)) is nn.AvgPool2d
               for node in graph.graph.nodes) == len(pools)
    assert type(pooling.plain_copy(AvgPool2d(2))) is nn.AvgPool2d
