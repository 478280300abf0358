"""Training throughput of the generated torch training script against a plain torchvision loop.

    python bench/training.py [--model resnet50] [--batch 8] [--precision fp32|bf16]
                             [--channels-last] [--compile] [--epochs 3] [--repeat 2]

The spec's model gets a `train:` section (SGD with momentum and weight decay, cross-entropy),
`archc build --train` writes its script, and the script trains on its synthetic data (8 batches
an epoch). The reference is the loop torchvision's classification recipe runs: the same model
from torchvision.models, the same optimizer and loss, a DataLoader over the same number of
random images, the loss read back every step, autocast and channels_last and torch.compile as
asked. Each runs in a process of its own; runs alternate; each reports its last epoch's images
per second (the first epochs warm up, and compile); the median of the repeats is printed with
the ratio. On CUDA where torch sees one, else the CPU. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

TRAIN = """
train:
  loss: cross_entropy
  optimizer: {{sgd: {{lr: 0.1, momentum: 0.9, weight_decay: 1.0e-4}}}}
  epochs: {epochs}
  batch_size: {batch}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--model", default="resnet50", help="a zoo spec that torchvision.models also builds")
    add("--batch", type=int, default=8, help="global batch size (default 8)")
    add("--precision", choices=("fp32", "bf16"), default="fp32")
    add("--channels-last", action="store_true")
    add("--compile", action="store_true")
    add("--epochs", type=int, default=3, help="each of 8 steps; the last one is timed")
    add("--repeat", type=int, default=2, help="runs of each, alternating (default 2)")
    add("--reference-run", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def flags(options: argparse.Namespace) -> list[str]:
    """The options both runs share, as the generated script takes them."""
    chosen = ["--precision", options.precision, "--epochs", str(options.epochs)]
    chosen += ["--channels-last"] if options.channels_last else []
    return chosen + (["--compile"] if options.compile else [])


def generated_run(script: Path, options: argparse.Namespace) -> float:
    """The script's last epoch's images per second."""
    metrics = script.parent / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    command = [sys.executable, script.name, "--data", "synthetic", "--metrics", metrics.name]
    subprocess.run(command + flags(options), cwd=script.parent, check=True, capture_output=True)
    epochs = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [epoch["images_per_second"] for epoch in epochs if "images_per_second" in epoch][-1]


def reference_run(options: argparse.Namespace) -> float:
    """A separate process running `reference_loop`, as the generated script runs in one."""
    command = [sys.executable, __file__, "--reference-run", "--model", options.model]
    command += ["--batch", str(options.batch), *flags(options)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def reference_loop(options: argparse.Namespace) -> float:
    """torchvision's model in a plain loop; the last epoch's images per second."""
    from tests.helpers import torchvision

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = getattr(torchvision().models, options.model)().to(device)
    layout = torch.channels_last if options.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    trained = torch.compile(model) if options.compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(8 * options.batch, 3, 224, 224)
    labels = torch.randint(0, 1000, (8 * options.batch,))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), options.batch, shuffle=True
    )
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=options.precision == "bf16")
    rate = 0.0
    for _ in range(options.epochs):
        began, seen = time.perf_counter(), 0
        for batch, targets in loader:
            batch = batch.to(device).contiguous(memory_format=layout)
            with autocast:
                loss = torch.nn.functional.cross_entropy(trained(batch), targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()  # as torchvision's recipe logs it
            seen += len(batch)
        rate = seen / (time.perf_counter() - began)
    return rate


def main() -> None:
    options = parse_args()
    if options.reference_run:
        print(reference_loop(options))
        return
    import archc

    spec = (REPO / "specs" / f"{options.model}.yaml").read_text()
    spec += TRAIN.format(epochs=options.epochs, batch=options.batch)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    print(
        f"{options.model} training, {device or 'cpu'}, torch {torch.__version__}, batch "
        f"{options.batch}, {options.precision}, "
        f"{'channels_last' if options.channels_last else 'NCHW'}"
        f"{', torch.compile' if options.compile else ''}"
    )
    with tempfile.TemporaryDirectory() as folder:
        model = archc.load(spec)
        (Path(folder) / f"{model.name}.py").write_text(model.source("torch", folder=Path(folder)))
        script = Path(folder) / f"{model.name}_train.py"
        script.write_text(model.train_source(Path(folder), "torch"))
        runs: dict[str, list[float]] = {"torchvision loop": [], "archc train.py": []}
        for _ in range(options.repeat):
            runs["torchvision loop"].append(reference_run(options))
            runs["archc train.py"].append(generated_run(script, options))
    reference = statistics.median(runs["torchvision loop"])
    for name, rates in runs.items():
        rate = statistics.median(rates)
        print(f"  {name:18} {rate:10,.1f} img/s  {rate / reference:5.2f}x")


if __name__ == "__main__":
    main()
