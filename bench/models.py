"""Throughput of the generated zoo models against torchvision's, in one process, interleaved.

    python bench/models.py [--models resnet50,googlenet] [--device cpu|cuda] [--batch 8]
                           [--dtype fp32|bf16] [--compile] [--flax] [--repeat 5]

Each variant runs the same weights (torchvision's, loaded strictly into the archc model):
torchvision eager, the archc model (default build) and, for inference, archc's inference export
(`--optimize inference`, the weights through its inference_state_dict()), each also in
channels_last, torchvision with BatchNorm folded into the convs (torch.fx) in channels_last,
and each of these under torch.compile with --compile; inference
(no_grad, eval) and one SGD training step. Rounds interleave the variants so that a busy
moment of the machine is shared; the median round is printed as images per second and as a
ratio to torchvision eager. With --flax, the flax build runs under jax.jit beside them (its own
random weights: speed only). Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.fx.experimental.optimization import fuse  # noqa: E402

from tests.helpers import GENERATED, load_generated, torchvision  # noqa: E402
from tests.oracle.test_torchvision import BUILDER_KWARGS  # noqa: E402
from tests.passes.exports import models as export_models  # noqa: E402

DEFAULT_MODELS = "resnet50,googlenet,mobilenet_v2,efficientnet_b0,vit_b_16,swin_t"
Step = Callable[[], None]


def torch_variants(name: str, options: argparse.Namespace) -> dict[str, torch.nn.Module]:
    """The models to time, all with torchvision's weights, NCHW and channels_last."""
    reference = getattr(torchvision().models, name)(**BUILDER_KWARGS.get(name, {}))
    generated = load_generated(GENERATED / "torch" / f"{name}.py").create_model()
    generated.load_state_dict(reference.state_dict(), strict=True)
    variants = {"torchvision eager": reference, "archc default": generated}
    if not options.train:  # folding BatchNorm is for inference only
        variants["archc inference export"] = inference_export_model(name, reference)
    for key in list(variants):
        variants[f"{key}, channels_last"] = _channels_last(copy.deepcopy(variants[key]))
    if not options.train:
        folded = fuse(copy.deepcopy(reference).eval())
        variants["torchvision BN-folded, channels_last"] = _channels_last(folded)
    if options.compile:
        variants |= {f"{key} + compile": torch.compile(model) for key, model in variants.items()}
    return {key: model.to(options.device) for key, model in variants.items()}


def inference_export_model(name: str, reference: torch.nn.Module) -> torch.nn.Module:
    """`archc build --optimize inference` of the spec, with the reference's weights converted
    by the export's own inference_state_dict()."""
    with tempfile.TemporaryDirectory() as folder:
        _, module, _ = export_models(REPO / "specs" / f"{name}.yaml", Path(folder))
    model = module.create_model()
    model.load_state_dict(module.inference_state_dict(reference.state_dict()), strict=True)
    return model


def _channels_last(model: torch.nn.Module) -> torch.nn.Module:
    return model.to(memory_format=torch.channels_last)


def torch_step(model: torch.nn.Module, batch: torch.Tensor, options: argparse.Namespace) -> Step:
    """One inference batch, or one SGD step on a cross-entropy loss."""
    autocast = torch.autocast(options.device, torch.bfloat16, enabled=options.dtype == "bf16")
    labels = torch.randint(0, 1000, (len(batch),), device=options.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def infer() -> None:
        with torch.no_grad(), autocast:
            model(batch)

    def train() -> None:
        with autocast:
            output = model(batch)
            loss = torch.nn.functional.cross_entropy(_logits(output), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train(options.train)
    return train if options.train else infer


def _logits(output: object) -> torch.Tensor:
    """The class scores: googlenet and inception return auxiliary outputs in training."""
    if isinstance(output, dict):
        return next(iter(output.values()))
    return output if isinstance(output, torch.Tensor) else output[0]


def flax_step(name: str, options: argparse.Namespace) -> Step:
    import jax
    from flax import nnx

    module = load_generated(GENERATED / "flax" / f"{name}.py")
    dtype = jax.numpy.bfloat16 if options.dtype == "bf16" else None
    model = module.create_model(nnx.Rngs(0), dtype=dtype)
    model.eval()
    batch = jax.numpy.ones((options.batch, options.size, options.size, 3))
    forward = module.jit_forward(model)

    def infer() -> None:
        jax.block_until_ready(forward(batch))

    return infer


def timed(step: Step, iterations: int, synchronize: Step) -> float:
    """Images per second over `iterations` steps."""
    synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    synchronize()
    return iterations / (time.perf_counter() - start)


def bench_model(name: str, options: argparse.Namespace) -> None:
    synchronize = torch.cuda.synchronize if options.device == "cuda" else lambda: None
    shape = (options.batch, 3, options.size, options.size)
    steps: dict[str, Step] = {}
    for key, model in torch_variants(name, options).items():
        layout = torch.channels_last if "channels_last" in key else torch.contiguous_format
        batch = torch.randn(shape, device=options.device).to(memory_format=layout)
        steps[key] = torch_step(model, batch, options)
    if options.flax and not options.train:
        steps["archc flax, jax.jit"] = flax_step(name, options)
    for step in steps.values():  # warm-up: compilation, autotuning, allocator
        for _ in range(2):
            step()
    rounds: dict[str, list[float]] = {key: [] for key in steps}
    for _ in range(options.repeat):
        for key, step in steps.items():
            rounds[key].append(timed(step, options.iterations, synchronize) * options.batch)
    base = statistics.median(rounds["torchvision eager"])
    print(f"\n{name} ({'training step' if options.train else 'inference'})")
    for key, values in rounds.items():
        speed = statistics.median(values)
        print(f"  {key:44s} {speed:9.1f} img/s  {speed / base:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated zoo names")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--train", action="store_true", help="time a training step")
    parser.add_argument("--compile", action="store_true", help="also each under torch.compile")
    parser.add_argument("--flax", action="store_true", help="also the flax build under jit")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--iterations", type=int, default=3, help="steps per round")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    device = torch.cuda.get_device_name() if options.device == "cuda" else platform.processor()
    print(
        f"device {options.device} ({device or 'cpu'}), torch {torch.__version__}, "
        f"batch {options.batch}, {options.size}x{options.size}, {options.dtype}, "
        f"{options.threads} CPU threads; median of {options.repeat} interleaved rounds"
    )
    for name in options.models.split(","):
        bench_model(name, options)


if __name__ == "__main__":
    main()
