"""The Python API against the command line: the same numbers, the same code, the same errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree

import pytest

import archc
from tests.helpers import REPO, run_archc

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    ("spec", "settings", "size"),
    [
        ("specs/resnet18.yaml", {}, None),
        ("specs/resnet50.yaml", {"num_classes": 10}, 160),
        ("specs/mobilenet_v3_small.yaml", {"norm": {"op": "batch_norm", "eps": 0.01}}, None),
        ("specs/unet.yaml", {"padding": 1}, (96, 128)),
    ],
    ids=["plain", "set and input", "op param with attributes", "pair input"],
)
def test_stats_are_the_command_lines(spec: str, settings: dict, size: object) -> None:
    sets = [f"--set={name}={json.dumps(value)}" for name, value in settings.items()]
    sizes = (
        []
        if size is None
        else ["--input", "x".join(map(str, size if isinstance(size, tuple) else (size, size)))]
    )
    cli = run_archc("stats", spec, "--format", "json", *sets, *sizes)
    assert cli.returncode == 0, cli.stderr
    model = archc.load(spec, set=settings, input=size)
    assert model.stats() == json.loads(cli.stdout)
    assert model.summary() == run_archc("stats", spec, *sets, *sizes).stdout


def test_source_is_the_built_file(tmp_path: Path) -> None:
    for backend in ("torch", "flax"):
        build = run_archc("build", "specs/resnet18.yaml", "--backend", backend, "-o", str(tmp_path))
        assert build.returncode == 0, build.stderr
        built = (tmp_path / backend / "resnet18.py").read_text()
        folder = tmp_path / backend
        assert archc.load("specs/resnet18.yaml").source(backend, folder=folder) == built
    export = run_archc(
        "build", "specs/resnet18.yaml", "--optimize", "inference", "-o", str(tmp_path)
    )
    assert export.returncode == 0, export.stderr
    text = (tmp_path / "torch" / "resnet18_inference.py").read_text()
    export = archc.load("specs/resnet18.yaml").source("torch", "inference", tmp_path / "torch")
    assert export == text


def test_torch_and_flax_modules_are_built_in_memory() -> None:
    torch = pytest.importorskip("torch")
    nnx = pytest.importorskip("flax.nnx")
    model = archc.load("specs/resnet18.yaml", set={"num_classes": 7}, input=64)
    net = model.torch()
    assert sum(p.numel() for p in net.parameters()) == model.stats()["params"]
    assert net.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    flax_net = model.flax(nnx.Rngs(0))
    state = nnx.state(flax_net, nnx.Param)
    assert (
        sum(leaf.size for leaf in __import__("jax").tree.leaves(state)) == model.stats()["params"]
    )


SPEC_TEXT = """archc: 1
name: tiny
imports: [archc:resnet]
input: [3, 32, 32]
body:
  stem: {op: conv2d, out: 16, kernel: 3, padding: 1}
  block: {block: BasicBlock, planes: 16}
"""


def test_a_spec_given_as_text() -> None:
    model = archc.load(SPEC_TEXT)
    assert model.name == "tiny" and model.stats()["params"] > 0
    assert "archc build '<spec>' --backend torch" in model.source()


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        (
            SPEC_TEXT.replace("out: 16, kernel", "out: 16, kernal"),
            "6:31",
            "unknown attribute 'kernal'",
        ),
        (
            SPEC_TEXT.replace("planes: 16}", "planes: 16, strid: 2}"),
            "7:42",
            "unknown param 'strid'",
        ),
    ],
    ids=["attribute", "block param"],
)
def test_errors_are_the_command_lines(
    text: str, position: str, message: str, tmp_path: Path
) -> None:
    """The same exception type, location and message as the command line prints."""
    with pytest.raises(archc.ArchcError) as caught:
        archc.load(text)
    assert str(caught.value.location) == f"<spec>:{position}"
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    cli = run_archc("check", str(spec), cwd=tmp_path)
    assert cli.returncode == 2
    rendered = caught.value.render().splitlines()[0]
    assert cli.stderr.splitlines()[0] == rendered.replace("<spec>:", "bad.yaml:", 1)
    assert message in caught.value.message


def test_bad_arguments_are_archc_errors() -> None:
    with pytest.raises(archc.ArchcError, match="expected a size like 320"):
        archc.load("specs/resnet18.yaml", input=0)
    with pytest.raises(archc.ArchcError, match="'num_clases' is not a param of resnet18"):
        archc.load("specs/resnet18.yaml", set={"num_clases": 10})
    with pytest.raises(archc.ArchcError, match="unknown backend 'jax'"):
        archc.load("specs/resnet18.yaml").source("jax")
    with pytest.raises(archc.ArchcError, match="unknown stats format 'xml'"):
        archc.load("specs/resnet18.yaml").stats_text("xml")


def test_compare_is_the_command_lines() -> None:
    specs = ["specs/unet.yaml", "specs/resnet18.yaml"]
    cli = run_archc("compare", *specs, "--input", "100,188", "--format", "json")
    assert cli.returncode == 2
    comparison = archc.compare(specs, input=[100, 188])
    assert json.loads(comparison.table("json")) == json.loads(cli.stdout)
    assert [error.render() for error in comparison.errors] == [cli.stderr.rstrip("\n")]


def test_the_comparison_plot_is_the_command_lines(tmp_path: Path) -> None:
    specs = ["specs/resnet18.yaml", "specs/alexnet.yaml"]
    csv = tmp_path / "accuracy.csv"
    csv.write_text("model,accuracy\nresnet18,69.758\nalexnet,56.522\n")
    for accuracy in ([], ["--accuracy", str(csv)]):
        out = tmp_path / "plot.svg"
        assert run_archc("compare", *specs, "--plot", str(out), *accuracy).returncode == 0
        scores = csv if accuracy else None
        assert archc.compare(specs).plot(accuracy=scores) == out.read_bytes()
        written = tmp_path / "api.svg"
        archc.compare(specs).plot(written, scores)
        assert written.read_bytes() == out.read_bytes()


def test_notebook_reprs() -> None:
    """A notebook shows a model as its cost table and its drawing, a comparison as a table."""
    model = archc.load("specs/resnet18.yaml")
    table = ElementTree.fromstring(model._repr_html_())
    rows = [[cell.text for cell in row] for row in table.iter("tr")]
    blocks = model.stats()["blocks"]
    assert [row[0] for row in rows[1:]] == [*blocks, "total"]
    assert [row[2] for row in rows[1:-1]] == [f"{cost['params']:,}" for cost in blocks.values()]
    comparison = ElementTree.fromstring(archc.compare(["specs/resnet18.yaml"])._repr_html_())
    assert [cell.text for cell in list(comparison.iter("tr"))[1]][:3] == [
        "resnet18",
        "1x3x224x224",
        "11,689,512",
    ]
    svg = model._repr_svg_()
    if shutil.which("dot") is None:  # no Graphviz: the notebook falls back to the table
        assert svg is None
    else:
        assert ElementTree.fromstring(svg).tag == f"{SVG}svg"


def test_diagram_writes_the_file_the_command_line_does(tmp_path: Path) -> None:
    cli = run_archc("diagram", "specs/resnet18.yaml", "-o", str(tmp_path / "cli.dot"))
    assert cli.returncode == 0, cli.stderr
    drawing = archc.load("specs/resnet18.yaml").diagram(tmp_path / "api.dot")
    assert (tmp_path / "api.dot").read_bytes() == drawing == (tmp_path / "cli.dot").read_bytes()


def test_the_command_line_starts_without_the_api() -> None:
    """`archc check` stays quick to start: the API (and what it imports) load on first use."""
    import subprocess
    import sys

    code = "import sys, archc.cli; sys.exit('archc.api' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
