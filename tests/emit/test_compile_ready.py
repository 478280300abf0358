"""Generated torch models are ready for a GPU: torch.compile traces each whole, and a forward
does no work on the host (checked on CPU: dynamo's explain needs no Inductor, and the meta
device shows any tensor a forward makes off the input's device)."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.pipeline import compile_spec
from tests.helpers import GENERATED, SPECS, load_generated

torch = pytest.importorskip("torch")
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

MODEL_SPECS = sorted(SPECS.glob("*.yaml"))


def input_shape(spec: Path) -> tuple[int, ...]:
    shape = compile_spec(spec).program.graph.inputs["input"].shape
    return (1, *(int(dim) for dim in shape[1:]))


@pytest.mark.parametrize("spec", MODEL_SPECS, ids=[path.stem for path in MODEL_SPECS])
def test_torch_compile_traces_the_whole_model(spec: Path) -> None:
    model = load_generated(GENERATED / "torch" / f"{spec.stem}.py").create_model().eval()
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(torch.randn(input_shape(spec)))
    torch._dynamo.reset()
    reasons = [str(reason.reason) for reason in explanation.break_reasons]
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), reasons


class OffDevice(TorchDispatchMode):
    """Records each op whose result is not on the meta device, where everything given is."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if any(
            isinstance(t, torch.Tensor) and t.device.type != "meta" for t in tree_leaves(result)
        ):
            self.ops.add(str(func))
        return result


@pytest.mark.parametrize("spec", MODEL_SPECS, ids=[path.stem for path in MODEL_SPECS])
def test_a_forward_makes_no_tensor_off_the_input_device(spec: Path) -> None:
    with torch.device("meta"):
        model = load_generated(GENERATED / "torch" / f"{spec.stem}.py").create_model().eval()
    with OffDevice() as watch, torch.no_grad():
        model(torch.empty(input_shape(spec), device="meta"))
    assert not watch.ops


def test_the_off_device_check_sees_a_host_tensor() -> None:
    """The check itself: a module that makes a tensor on the host in its forward is caught."""

    class HostMask(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.zeros(x.shape[-1]).to(x)

    with OffDevice() as watch:
        HostMask()(torch.empty(2, 3, device="meta"))
    assert "aten.zeros.default" in watch.ops or "aten.fill_.Scalar" in watch.ops, watch.ops


def test_create_model_options_keep_the_weights_and_the_outputs() -> None:
    """channels_last and bf16 autocast change how a forward runs, not what the model holds
    or (beyond bf16's precision) what it computes; with compile it is one graph still."""
    module = load_generated(GENERATED / "torch" / "resnet18.py")
    plain = module.create_model().eval()
    example = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = plain(example)

    fast = module.create_model(channels_last=True).eval()
    fast.load_state_dict(plain.state_dict(), strict=True)
    convs = [p for p in fast.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    with torch.no_grad():
        output = fast(example.to(memory_format=torch.channels_last))
    assert (output - expected).abs().max().item() <= 1e-4

    mixed = module.create_model(channels_last=True, autocast=torch.bfloat16).eval()
    mixed.load_state_dict(plain.state_dict(), strict=True)
    assert {p.dtype for p in mixed.state_dict().values() if p.is_floating_point()} == {
        torch.float32
    }
    with torch.no_grad():
        output = mixed(example)
    assert output.dtype == torch.bfloat16
    relative = (output.float() - expected).norm() / expected.norm()
    assert relative.item() <= 5e-2
    with torch.no_grad():
        explanation = torch._dynamo.explain(mixed)(example)
    torch._dynamo.reset()
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)

    compiled = module.create_model(compile=True)
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled.state_dict().keys() == {f"_orig_mod.{key}" for key in plain.state_dict()}
