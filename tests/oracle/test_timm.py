"""Zoo specs whose reference is a timm model: counts, strict state_dict loading, outputs,
FlopCounterMode, at the model's default input size."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.helpers import GENERATED, archc_stats, compare, load_generated, torchvision  # noqa: E402

TIMM = [
    *("mobilenetv1_100", "lcnet_100", "ghostnet_100"),
    *("darknet53", "cspdarknet53", "cspresnet50", "xception41"),
    *("deit_small_patch16_224", "deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"),
]


@pytest.fixture(scope="module")
def timm():
    torchvision()  # timm imports torchvision, which needs the CPU workaround first
    return pytest.importorskip("timm")


@pytest.mark.parametrize("name", TIMM)
def test_spec_matches_timm(name: str, timm) -> None:
    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False)
    stats = archc_stats(f"specs/{name}.yaml")
    assert stats["input"][1:] == list(reference.default_cfg["input_size"])
    generated = load_generated(GENERATED / "torch" / f"{name}.py").create_model()
    compare(reference, generated, stats)
