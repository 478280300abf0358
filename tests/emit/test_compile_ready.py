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
