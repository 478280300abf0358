"""Reference initialisation: a fresh generated model starts as the reference model does.

Per parameter, a constant one (a norm's weight, a zeroed bias) equals the reference's exactly
and a random one is drawn from the same distribution: a two-sample Kolmogorov-Smirnov test
on up to SAMPLE values of each, at a p-value no real difference in scale or shape reaches
with this many values. The flax model's parameters are tested so against the torch model's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.helpers import GENERATED, REPO, load_generated, torchvision

torch = pytest.importorskip("torch")
stats = pytest.importorskip("scipy.stats")

SAMPLE = 20_000
P_VALUE = 1e-4
TORCHVISION = [
    "resnet18",
    "resnet50",
    "vgg16",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "regnet_x_400mf",
    "densenet121",
    "googlenet",
    "inception_v3",
    "convnext_tiny",
    "swin_t",
    "vit_b_16",
    "alexnet",  # no rules: torch's own defaults on both sides
    "ssdlite320_mobilenet_v3_large",
    "ssd300_vgg16",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fasterrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
]
DETECTORS = {
    "ssdlite320_mobilenet_v3_large",
    "ssd300_vgg16",
    *(name for name in TORCHVISION if "_fpn" in name),
}
FLAX = [
    "resnet50",
    "convnext_tiny",
    "vit_b_16",
    "alexnet",
    "retinanet_resnet50_fpn",
    "ssd300_vgg16",
]


def differences(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> list[str]:
    """The parameters whose starting values `got` does not draw as `want` does."""
    assert got.keys() == want.keys()
    found = []
    generator = np.random.default_rng(0)
    for name, reference in want.items():
        ours = got[name]
        if reference.min() == reference.max():  # a constant
            if not (ours == reference.flat[0]).all():
                found.append(f"{name}: not all {reference.flat[0]}")
            continue
        samples = [
            generator.choice(values.ravel(), min(values.size, SAMPLE), replace=False)
            for values in (ours, reference)
        ]
        p_value = stats.ks_2samp(*samples).pvalue
        if p_value < P_VALUE:
            found.append(f"{name}: std {ours.std():.4g} vs {reference.std():.4g} (p {p_value:.1e})")
    return found


def parameters(model: Any) -> dict[str, np.ndarray]:
    return {name: value.detach().numpy().copy() for name, value in model.named_parameters()}


def reference_model(name: str) -> Any:
    kwargs = (
        {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    )
    if name in DETECTORS:  # no backbone weights either
        kwargs = {"weights_backbone": None}
    return torchvision().models.get_model(name, weights=None, **kwargs)


@pytest.mark.parametrize("name", TORCHVISION)
def test_a_fresh_model_starts_as_torchvisions(name: str) -> None:
    generated = load_generated(GENERATED / "torch" / f"{name}.py").create_model()
    assert differences(parameters(generated), parameters(reference_model(name))) == []


def test_without_its_rules_resnet18_starts_otherwise() -> None:
    """The test above can fail: the same spec without `init:` keeps torch's defaults, which
    torchvision's ResNet replaces."""
    import archc

    text = (REPO / "specs" / "resnet18.yaml").read_text()
    plain = text.replace("init:\n  conv2d: {weight: {kaiming_normal: fan_out}}\n", "init:\n")
    assert plain != text
    model = archc.load(plain).torch()
    found = differences(parameters(model), parameters(reference_model("resnet18")))
    assert found and all(".weight" in line for line in found)


def test_without_its_block_rule_ssd300_starts_otherwise() -> None:
    """A block's rule starts every layer in it: without `SSDFc:`, SSD's fc6 and fc7 (items of
    the sequence `backbone.extra.0`, beside conv5's kaiming convs) keep the convs' kaiming."""
    import archc

    text = (REPO / "specs" / "ssd300_vgg16.yaml").read_text()
    rule = "  SSDFc: {weight: xavier_uniform, bias: zeros}\n"
    assert rule in text
    model = archc.load(text.replace(rule, "")).torch()
    found = differences(parameters(model), parameters(reference_model("ssd300_vgg16")))
    assert found and all(line.startswith("backbone.extra.0.7.") for line in found)


OFF_BY_DEFAULT = REPO / "tests" / "specs" / "switched.yaml"


@pytest.mark.parametrize("deep", [False, True])
def test_init_rules_hold_for_every_value_of_the_params(deep: bool) -> None:
    import archc

    model = archc.load(OFF_BY_DEFAULT).torch(deep=deep)
    assert (model.stem.weight == 1).all()
    assert (model.stem.bias is None) == deep and (deep or (model.stem.bias == 0).all())
    if deep:
        assert (model.extra.conv.weight == 0.5).all() and (model.extra.conv.bias == 0.25).all()
    nnx = pytest.importorskip("flax.nnx")
    flax_model = archc.load(OFF_BY_DEFAULT).flax(nnx.Rngs(0), deep=deep)
    assert (np.asarray(flax_model.stem.kernel.get_value()) == 1).all()
    assert (flax_model.stem.bias is None) == deep
    if deep:
        assert (np.asarray(flax_model.extra.conv.bias.get_value()) == 0.25).all()


def test_a_rule_for_layers_only_other_params_build_is_taken() -> None:
    """At the defaults no conv has a bias and the only linear is switched off, yet the op
    rules are not refused (`deep` builds both) and start them where it does."""
    import archc

    model = archc.load(
        "archc: 1\nname: switched\nparams: {deep: false}\ninput: [3, 8, 8]\n"
        "init:\n  conv2d: {bias: zeros}\n  linear: {weight: {constant: 0.5}}\n"
        "body:\n  stem: {op: conv2d, out: 4, kernel: 3, bias: deep}\n"
        "  head: [flatten, {op: linear, out: 2, when: deep}]\n"
    )
    deep = model.torch(deep=True)
    assert (deep.stem.bias == 0).all() and (deep.head[1].weight == 0.5).all()
    assert model.torch(deep=False).stem.bias is None


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_starts_as_torchvisions(name: str) -> None:
    """torchvision's zero_init_residual=True zeroes each residual block's last norm weight,
    so that every block starts as the identity; create_model takes the same option."""
    file = GENERATED / "torch" / f"{name}.py"
    generated = load_generated(file).create_model(zero_init_residual=True)
    models = torchvision().models
    reference = models.get_model(name, weights=None, zero_init_residual=True)
    assert differences(parameters(generated), parameters(reference)) == []


def test_zero_init_residual_in_flax() -> None:
    nnx = pytest.importorskip("flax.nnx")
    module = load_generated(GENERATED / "flax" / "resnet50.py")
    for zeroed in (False, True):
        model = module.create_model(nnx.Rngs(0), zero_init_residual=zeroed)
        block = model.layer3.layers[2]
        assert (np.asarray(block.bn3.weight.get_value()) == (0 if zeroed else 1)).all()
        assert (np.asarray(block.bn2.weight.get_value()) == 1).all()


@pytest.mark.parametrize("name", FLAX)
def test_a_fresh_flax_model_starts_as_the_torch_one(name: str) -> None:
    nnx = pytest.importorskip("flax.nnx")
    module = load_generated(GENERATED / "flax" / f"{name}.py")
    model = module.create_model(nnx.Rngs(0))
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    got = {module._torch_name(model, path): np.asarray(value.get_value()) for path, value in flat}
    want = parameters(load_generated(GENERATED / "torch" / f"{name}.py").create_model())
    assert differences(got, want) == []
