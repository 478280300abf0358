"""The flax backend against the torch backend: same weights, same outputs, same BN updates."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.helpers import (
    DETECTION_SETTINGS,
    GENERATED,
    assert_same_detections,
    box_masks,
    calibrate_batch_norms,
    canonical_order,
    load_generated,
    named_outputs,
    randomize_batch_norm,
    run_archc,
    spread_detections,
)

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
jax.config.update("jax_default_matmul_precision", "highest")
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False

TOLERANCE = 1e-4
# Small inputs where the architecture allows; resnet50 at its full 224 once.
CASES = [
    ("resnet18", 64),
    ("resnet34", 64),
    ("resnet50", 224),
    ("resnet101", 64),
    ("resnet152", 64),
    ("alexnet", 64),
    ("vgg16", 32),
    ("squeezenet1_0", 64),
    ("squeezenet1_1", 64),
    ("mobilenet_v2", 64),
    ("googlenet", 64),
    ("inception_v3", 80),
    ("mobilenet_v3_large", 64),
    ("mobilenet_v3_small", 64),
    ("efficientnet_b0", 64),
    ("shufflenet_v2_x1_0", 64),
    ("shufflenet_v1", 64),
    ("densenet121", 64),
    ("mobilenetv1_100", 64),
    ("lcnet_100", 64),
    ("ghostnet_100", 64),
    ("darknet53", 64),
    ("cspdarknet53", 64),
    ("cspresnet50", 64),
    ("xception41", 64),
    ("unet", 188),  # the smallest valid size: every pooled map stays even
    ("pspnet", 64),
    ("bisenetv1", 64),
    ("deeplabv3_resnet50", 64),
    ("resnet50_fpn", 64),
    ("yolov3", 64),  # three heads at 2 x 2, 4 x 4 and 8 x 8
    ("detnet59", 64),
    ("retinanet_resnet50_fpn", 64),  # levels of 8, 4, 2, 1 and 1: one head on each
    ("retinanet_resnet50_fpn_v2", 64),
    ("ssd300_vgg16", 300),  # its unpadded last convs need about this size
    ("ssdlite320_mobilenet_v3_large", 64),  # maps of 4, 2, 1, 1, 1 and 1
    ("fasterrcnn_resnet50_fpn", 64),
    # Transformers learn their position embeddings for 224 x 224.
    ("vit_b_16", 224),
    ("deit_small_patch16_224", 224),
    ("deit_tiny_patch16_224", 224),
    ("deit_tiny_distilled_patch16_224", 224),
    ("swin_t", 224),  # a grid its 7 x 7 windows tile at every stage (56, 28, 14, 7)
    ("swin_t", 96),  # and one they tile at none (24, 12, 6, 3): each map padded to windows
    ("convnext_tiny", 64),
    ("regnet_x_400mf", 64),
]


def close(got: Any, want: Any) -> bool:
    """Within TOLERANCE of `want` relative to its largest value (at least 1): float32
    rounding grows with the values, which the reference init makes larger than torch's."""
    want = np.asarray(want)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    return bool(np.abs(np.asarray(got) - want).max() <= TOLERANCE * scale) if want.size else True


def nhwc(value: torch.Tensor) -> np.ndarray:
    array = value.detach().numpy()
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


def flax_submodule(model: Any, path: str) -> Any:
    """The flax module at a torch module path ('layer1.0.conv1'), or None."""
    for part in path.split("."):
        items = getattr(model, "layers", model)  # nnx.Sequential's layers, or an nnx.List
        model = items[int(part)] if part.isdigit() else getattr(model, part, None)
        if model is None:
            return None
    return model


def first_divergence(torch_model: torch.nn.Module, flax_model: Any, example: torch.Tensor) -> str:
    """Run every torch submodule's recorded input through its flax twin; name the first (in
    execution order) whose output differs."""
    records = []
    hooks = [
        module.register_forward_hook(
            lambda module, inputs, output, name=name: records.append((name, inputs, output))
        )
        for name, module in torch_model.named_modules()
        if name
    ]
    with torch.no_grad():
        torch_model(example)
    for hook in hooks:
        hook.remove()
    for name, inputs, output in records:
        twin = flax_submodule(flax_model, name)
        if twin is None or not callable(twin):
            continue
        got = np.asarray(twin(*(nhwc(value) for value in inputs)))
        difference = np.abs(got - nhwc(output)).max()
        if difference > TOLERANCE:
            return f"first diverging node: {name} (max abs diff {difference:.2e})"
    return "no submodule diverges on its own"


def models(
    name: str, folder: Path = GENERATED, **overrides: Any
) -> tuple[ModuleType, torch.nn.Module, Any]:
    flax_file = load_generated(folder / "flax" / f"{name}.py")
    torch_model = load_generated(folder / "torch" / f"{name}.py").create_model(**overrides)
    randomize_batch_norm(torch_model)
    flax_model = flax_file.create_model(nnx.Rngs(0), **overrides)
    state = {key: value.numpy() for key, value in torch_model.state_dict().items()}
    flax_file.load_torch_state_dict(flax_model, state)
    return flax_file, torch_model, flax_model


def assert_eval_outputs_match(torch_model: torch.nn.Module, flax_model: Any, size: int) -> None:
    torch_model.eval()
    flax_model.eval()
    channels = next(p for p in torch_model.parameters() if p.ndim == 4).shape[1]  # the stem conv
    example = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = named_outputs(torch_model(example), nhwc)  # flax gives feature maps as NHWC
    got = named_outputs(nnx.jit(lambda model, x: model(x))(flax_model, nhwc(example)), np.asarray)
    assert got.keys() == expected.keys()
    assert all(got[key].shape == expected[key].shape for key in got)
    if not all(close(got[key], expected[key]) for key in got):
        difference = max(np.abs(got[key] - expected[key]).max() for key in got)
        pytest.fail(
            f"max abs diff {difference:.2e}; {first_divergence(torch_model, flax_model, example)}"
        )


@pytest.mark.parametrize(("name", "size"), CASES, ids=[f"{name}-{size}" for name, size in CASES])
def test_eval_outputs_match(name: str, size: int) -> None:
    _, torch_model, flax_model = models(name)
    assert_eval_outputs_match(torch_model, flax_model, size)


# Detectors and the image size their stage is compared at (the smallest each allows).
DETECTORS = {
    "yolov3": 96,
    "retinanet_resnet50_fpn": 128,
    "retinanet_resnet50_fpn_v2": 128,
    "ssd300_vgg16": 300,
    "ssdlite320_mobilenet_v3_large": 128,
    "fasterrcnn_resnet50_fpn": 128,
}


@pytest.mark.parametrize("name", DETECTORS)
def test_detections_match_torch(name: str) -> None:
    """detect() in flax (fixed sizes, padded NMS under jit) against torch's, which the
    torchvision test holds to the detector: the same detections up to rounding."""
    settings = DETECTION_SETTINGS[name]
    torch.manual_seed(0)
    torch_model = load_generated(GENERATED / "torch" / f"{name}.py").create_model(**settings)
    size = DETECTORS[name]
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    spread_detections(torch_model, name, lambda model: model(example))
    flax_file = load_generated(GENERATED / "flax" / f"{name}.py")
    flax_model = flax_file.create_model(nnx.Rngs(0), **settings)
    state = {key: value.numpy() for key, value in torch_model.state_dict().items()}
    flax_file.load_torch_state_dict(flax_model, state)
    torch_model.eval()
    flax_model.eval()
    with torch.no_grad():
        expected = torch_model.detect(example).numpy()
    got = np.asarray(nnx.jit(lambda model, x: model.detect(x))(flax_model, nhwc(example)))
    assert got.shape == expected.shape
    for rows, want in zip(got, expected):
        assert (want[:, 5] >= 0).sum() >= 100
        threshold = next(iter(settings.values()))
        # scores to 1e-3: through calibrated norms the heads' rounding reaches 1.2e-4 on AMD
        assert_same_detections(rows, want, box_atol=1e-2, score_rtol=1e-3, threshold=threshold)


def test_mask_rcnn_masks_match_torch() -> None:
    """Mask R-CNN's detect() in flax against torch's (whose network is Faster R-CNN's, tested
    above): the same detections (boxes to 1e-2 px, scores to 1e-3, as Faster R-CNN's), and
    each one's mask pasted into the image (channels-last in flax: (N, H, W, R)) within 1e-3:
    the pixels at a box's edges move with it."""
    name = "maskrcnn_resnet50_fpn"
    example = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    settings = {"box_score_thresh": 0.0, "box_detections_per_img": 20}
    flax_file, torch_model, flax_model = models(name, **settings)
    # the random norms of a fresh ResNet (kaiming convs) saturate the box head's softmax
    calibrate_batch_norms(torch_model, lambda model: model(example))
    state = {key: value.numpy() for key, value in torch_model.state_dict().items()}
    flax_file.load_torch_state_dict(flax_model, state)
    torch_model.eval()
    flax_model.eval()
    with torch.no_grad():
        expected = torch_model.detect(example)
    got = nnx.jit(lambda model, x: model.detect(x))(flax_model, nhwc(example))
    assert got.keys() == expected.keys() == {"detections", "masks"}
    for rows, want, masks, wanted_masks in zip(
        np.asarray(got["detections"]),
        expected["detections"].numpy(),
        np.moveaxis(np.asarray(got["masks"]), -1, 1),
        expected["masks"].numpy(),
    ):
        assert_same_detections(rows, want, box_atol=1e-2, score_rtol=1e-3)
        order, wanted_order = canonical_order(rows), canonical_order(want)
        assert np.abs(masks[order] - wanted_masks[wanted_order]).max() <= 1e-3
        assert wanted_masks.max() > 0


# Those with a loss(), and their settings: Faster R-CNN's samples take every row, so that
# flax's draws (jax.random) and torch's (torch.randperm) take the same.
RCNN_SAMPLES = {
    "rpn_batch_size_per_image": 100_000,
    "rpn_post_nms_top_n_train": 100,
    "box_batch_size_per_image": 128,
    "box_positive_fraction": 1.0,
}
LOSSES = {
    "yolov3": {},
    "retinanet_resnet50_fpn": {},
    "retinanet_resnet50_fpn_v2": {},
    "ssd300_vgg16": {},
    "ssdlite320_mobilenet_v3_large": {},
    "fasterrcnn_resnet50_fpn": RCNN_SAMPLES,
    "maskrcnn_resnet50_fpn": RCNN_SAMPLES,
}


@pytest.mark.parametrize("name", LOSSES)
def test_losses_match_torch(name: str) -> None:
    """loss() in flax, its targets padded to fixed sizes (label -1), against torch's on the
    same images, boxes and masks (Mask R-CNN's), both in training (batch statistics)."""
    _, torch_model, flax_model = models(name, **LOSSES[name])
    torch_model.train()
    flax_model.train()
    size = DETECTORS.get(name, 128)
    boxes = [[[8.0, 10.0, 60.0, 50.0], [40.0, 30.0, 120.0, 126.0]], [[0.0, 64.0, 30.0, 100.0]]]
    labels = [[3, 79], [1]]  # classes of every detector (YOLOv3 has 80 from 0)
    masks = box_masks(torch.tensor(boxes[0] + boxes[1]), size)
    targets = [
        {"boxes": torch.tensor(boxes[0]), "labels": torch.tensor(labels[0]), "masks": masks[:2]},
        {"boxes": torch.tensor(boxes[1]), "labels": torch.tensor(labels[1]), "masks": masks[2:]},
    ]
    padded = {
        "boxes": np.asarray([boxes[0], [*boxes[1], [0.0] * 4]], np.float32),
        "labels": np.asarray([labels[0], [*labels[1], -1]]),
        "masks": np.stack([masks[:2].numpy(), np.concatenate([masks[2:], masks[2:] * 0])]),
    }
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch_model.loss(example, targets)
    loss = nnx.jit(lambda model, x, targets: model.loss(x, targets))
    got = loss(flax_model, nhwc(example), padded)
    assert got.keys() == expected.keys()
    for key, value in got.items():
        assert abs(float(value) - float(expected[key])) <= TOLERANCE * float(expected[key]), key
        assert float(value) > 0, key


def test_yolo_loss_gradient_matches_torch() -> None:
    """The flax yolo_loss's gradient on random maps (channels last) against torch's, which
    the paper test holds to darknet's delta; targets padded (label -1)."""
    anchors = [[116, 90, 156, 198, 373, 326], [30, 61, 62, 45, 59, 119], [10, 13, 16, 30, 33, 23]]
    torch_file = load_generated(GENERATED / "torch" / "yolov3.py")
    flax_file = load_generated(GENERATED / "flax" / "yolov3.py")
    generator = torch.Generator().manual_seed(0)
    maps = [
        (torch.randn(2, 255, cells, cells, generator=generator) * 0.5).requires_grad_()
        for cells in (3, 6, 12)
    ]
    boxes = [[3.0, 8.0, 93.0, 88.0], [30.0, 20.0, 60.0, 80.0], [40.0, 41.0, 52.0, 55.0]]
    labels = [0, 5, 79]
    targets = [
        {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels)},
        {"boxes": torch.tensor(boxes[1:]), "labels": torch.tensor(labels[1:])},
    ]
    padded = {
        "boxes": np.asarray([boxes, [*boxes[1:], [0.0] * 4]], np.float32),
        "labels": np.asarray([labels, [*labels[1:], -1]]),
    }
    image = torch.zeros(2, 3, 96, 96)
    torch_file.yolo_loss(image, maps, targets, anchors, 0.7).backward()

    def loss(heads: list[Any]) -> Any:
        return flax_file.yolo_loss(nhwc(image), heads, padded, anchors, 0.7)

    grads = jax.grad(loss)([nhwc(head.detach()) for head in maps])
    for head, grad in zip(maps, grads):
        assert np.abs(np.moveaxis(np.asarray(grad), -1, 1) - head.grad.numpy()).max() <= 1e-5


def test_samplers_draw_as_many_rows_as_torchvisions() -> None:
    """Faster R-CNN's samplers in flax and torch: per image 128 foreground and 128 background
    rows of those matched (the foreground at most half of 256), none ignored, and in flax
    other draws from another key."""
    flax_file = load_generated(GENERATED / "flax" / "fasterrcnn_resnet50_fpn.py")
    torch_file = load_generated(GENERATED / "torch" / "fasterrcnn_resnet50_fpn.py")
    rows = np.random.default_rng(0).choice([0, 1, -1, -1, -2], size=(2, 1000))
    flax_draws = [flax_file.sample_matches(rows, jax.random.key(seed), 256, 0.5) for seed in (0, 1)]
    torch_draw = torch_file.sample_matches(torch.as_tensor(rows), 256, 0.5).numpy()
    for sampled in [*map(np.asarray, flax_draws), torch_draw]:
        assert ((sampled >= 0).sum(axis=1) == 128).all()
        assert ((sampled == -1).sum(axis=1) == 128).all()
        chosen = sampled >= -1
        assert (sampled[chosen] == rows[chosen]).all()
    assert (np.asarray(flax_draws[0]) != np.asarray(flax_draws[1])).any()


def test_padded_unet_matches() -> None:
    _, torch_model, flax_model = models("unet", padding=1)
    assert_eval_outputs_match(torch_model, flax_model, 48)


@pytest.mark.parametrize("overrides", [[], ["use_pool=false", "layers=2"]], ids=["defaults", "set"])
def test_language_features_match(overrides: list[str], tmp_path: Path) -> None:
    """Concat, multi-input blocks, conditional pooling (ceil_mode), loops, SiLU, make_divisible."""
    for backend in ("torch", "flax"):
        sets = [f"--set={item}" for item in overrides]
        build = run_archc(
            "build", "tests/specs/features.yaml", "--backend", backend, "-o", str(tmp_path), *sets
        )
        assert build.returncode == 0, build.stderr
    _, torch_model, flax_model = models("features", tmp_path)
    assert_eval_outputs_match(torch_model, flax_model, 32)


# mobilenet_v3_small: BatchNorm with momentum 0.01 and eps 1e-3; its dropout is set to 0 so
# that both frameworks compute the same function in training.
TRAIN_CASES = [("resnet18", {}), ("resnet50", {}), ("mobilenet_v3_small", {"dropout": 0.0})]


@pytest.mark.parametrize(("name", "overrides"), TRAIN_CASES, ids=[n for n, _ in TRAIN_CASES])
def test_train_step_updates_batch_norm_like_torch(name: str, overrides: dict) -> None:
    flax_file, torch_model, flax_model = models(name, **overrides)
    torch_model.train()
    flax_model.train()
    example = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = torch_model(example).numpy()
    got = np.asarray(nnx.jit(lambda model, x: model(x))(flax_model, nhwc(example)))
    # Train-mode BN normalises over as few as 4×2×2 values in layer4, which amplifies rounding
    # noise in the logits; they are held relative to their scale, the statistics absolutely.
    assert np.abs(got - expected).max() <= TOLERANCE * np.abs(expected).max()
    flax_state = {
        flax_file._torch_name(flax_model, path): np.asarray(variable.get_value())
        for path, variable in nnx.to_flat_state(nnx.state(flax_model, nnx.BatchStat))
    }
    torch_buffers = dict(torch_model.named_buffers())
    assert flax_state.keys() == torch_buffers.keys()
    for key, value in torch_buffers.items():
        assert close(flax_state[key], value.numpy()), key


@pytest.mark.parametrize("name", list(dict.fromkeys(name for name, _ in CASES)))
def test_flax_counts_equal_archc(name: str) -> None:
    stats = json.loads(run_archc("stats", f"specs/{name}.yaml", "--format", "json").stdout)
    flax_model = load_generated(GENERATED / "flax" / f"{name}.py").create_model(nnx.Rngs(0))

    def size(kind: type) -> int:
        return sum(variable.size for _, variable in nnx.to_flat_state(nnx.state(flax_model, kind)))

    assert size(nnx.Param) == stats["params"]
    assert size(nnx.BatchStat) == stats["buffers"]
    params = nnx.to_flat_state(nnx.state(flax_model, nnx.Param))
    assert not any(np.isnan(variable.get_value()).any() for _, variable in params)  # all drawn


def test_loader_refuses_a_state_dict_that_does_not_fit() -> None:
    flax_file = load_generated(GENERATED / "flax" / "resnet18.py")
    torch_model = load_generated(GENERATED / "torch" / "resnet18.py").create_model()
    state = {key: value.numpy() for key, value in torch_model.state_dict().items()}
    model = flax_file.create_model(nnx.Rngs(0))
    with pytest.raises(KeyError, match=r"missing \['fc\.bias'\]"):
        flax_file.load_torch_state_dict(model, {k: v for k, v in state.items() if k != "fc.bias"})
    with pytest.raises(KeyError, match=r"unexpected \['extra'\]"):
        flax_file.load_torch_state_dict(model, {**state, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"fc\.weight: expected"):
        flax_file.load_torch_state_dict(model, {**state, "fc.weight": np.zeros((10, 512))})


def test_build_flax_never_imports_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    argv = ["build", "specs/resnet50.yaml", "--backend", "flax", "-o", str(tmp_path)]
    script = (
        "import sys\nfrom archc.cli import main\n"
        f"assert main({argv!r}) == 0\n"
        "assert not [m for m in ('torch', 'jax', 'flax') if m in sys.modules]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=GENERATED.parent
    )
    assert result.returncode == 0, result.stderr


def test_every_spec_has_a_parity_case() -> None:
    specs = {path.stem for path in (GENERATED.parent / "specs").glob("*.yaml")}
    assert specs == {name for name, _ in CASES} | {"maskrcnn_resnet50_fpn"}  # its own test


def test_create_model_dtypes_compute_in_bf16_from_float32_parameters() -> None:
    _, torch_model, _ = models("resnet18")
    flax_file = load_generated(GENERATED / "flax" / "resnet18.py")
    weights = {key: value.numpy() for key, value in torch_model.state_dict().items()}
    example = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch_model.eval()(example).numpy()
    model = flax_file.create_model(nnx.Rngs(0), dtype=jax.numpy.bfloat16)
    flax_file.load_torch_state_dict(model, weights)
    model.eval()
    output = flax_file.jit_forward(model)(nhwc(example))
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert output.dtype == jax.numpy.bfloat16
    assert {value.dtype for value in params} == {np.dtype("float32")}
    error = np.linalg.norm(np.asarray(output, np.float32) - expected) / np.linalg.norm(expected)
    assert error <= 2e-2
    stored = flax_file.create_model(nnx.Rngs(0), param_dtype=jax.numpy.bfloat16)
    params = jax.tree.leaves(nnx.state(stored, nnx.Param))
    assert {value.dtype for value in params} == {np.dtype(jax.numpy.bfloat16)}


def test_jit_forward_updates_batch_statistics_as_the_eager_call() -> None:
    """The donated state comes back updated: two jitted training calls, two eager ones."""
    flax_file, torch_model, eager = models("resnet18")
    jitted = flax_file.create_model(nnx.Rngs(1))
    weights = {key: value.numpy() for key, value in torch_model.state_dict().items()}
    flax_file.load_torch_state_dict(jitted, weights)
    example = nhwc(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    eager.train()
    jitted.train()
    forward = flax_file.jit_forward(jitted)
    for _ in range(2):
        assert close(forward(example), eager(example))
    statistics = [jax.tree.leaves(nnx.state(model, nnx.BatchStat)) for model in (eager, jitted)]
    for first, second in zip(*statistics):
        assert close(second, first)
