"""The command line: help, formats, framework-free compilation, safe writes."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, SPECS, run_archc

FRAMEWORKS = ("torch", "jax", "flax", "torchvision")


def test_help_lists_the_commands() -> None:
    result = run_archc("--help")
    assert result.returncode == 0
    for command in ("check", "stats", "build", "ir", "diagram", "compare", "ops"):
        assert command in result.stdout


def test_check_reports_ok() -> None:
    result = run_archc("check", "specs/resnet50.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("specs/resnet50.yaml: ok: resnet50,")
    assert "25,557,032 params" in result.stdout


def test_compiling_and_emitting_never_import_a_framework(tmp_path: Path) -> None:
    script = f"""
import sys
from archc.cli import main
for argv in (["check", "specs/resnet50.yaml"], ["stats", "specs/resnet50.yaml"],
             ["build", "specs/resnet50.yaml", "-o", {str(tmp_path)!r}],
             ["diagram", "specs/resnet50.yaml", "-o", {str(tmp_path / "r.svg")!r}],
             ["compare", "specs/resnet50.yaml", "specs/unet.yaml"]):
    assert main(argv) == 0
loaded = sorted(name for name in {FRAMEWORKS!r} if name in sys.modules)
assert not loaded, loaded
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_stats_json_has_the_documented_keys() -> None:
    stats = json.loads(run_archc("stats", "specs/resnet18.yaml", "--format", "json").stdout)
    assert {"params", "buffers", "macs", "flops", "input"} <= stats.keys()
    assert stats["flops"] == 2 * stats["macs"]
    assert stats["input"] == [1, 3, 224, 224]
    blocks = stats["blocks"]
    assert sum(block["macs"] for block in blocks.values()) == stats["macs"]
    assert sum(node["params"] for node in stats["nodes"]) == stats["params"]
    assert list(blocks)[:4] == ["conv1", "bn1", "relu", "maxpool"]


def test_stats_csv_and_table_agree_with_json() -> None:
    stats = json.loads(run_archc("stats", "specs/resnet34.yaml", "--format", "json").stdout)
    rows = list(
        csv.DictReader(
            io.StringIO(run_archc("stats", "specs/resnet34.yaml", "--format", "csv").stdout)
        )
    )
    total = rows[-1]
    assert total["block"] == "total"
    assert int(total["params"]) == stats["params"]
    assert int(total["macs"]) == stats["macs"]
    table = run_archc("stats", "specs/resnet34.yaml").stdout
    assert f"{stats['params']:,}" in table
    assert f"MACs {stats['macs']:,}" in table
    assert "1x3x224x224" in table.splitlines()[0]
    *_, coverage, memory = table.rstrip().splitlines()
    assert coverage == f"coverage: {len(stats['nodes'])} of {len(stats['nodes'])} nodes costed"
    assert memory.startswith("training memory at batch 1, fp32 activations (MiB): params ")
    assert memory.endswith(f" = {stats['memory']['total'] / 2**20:,.1f}")


def test_a_failed_build_leaves_existing_output_alone(tmp_path: Path) -> None:
    target = tmp_path / "torch" / "resnet18.py"
    assert run_archc("build", "specs/resnet18.yaml", "-o", str(tmp_path)).returncode == 0
    before = target.read_bytes()
    broken = run_archc("build", "specs/resnet18.yaml", "-o", str(tmp_path), "--set=layers=[0]")
    assert broken.returncode == 2
    assert target.read_bytes() == before
    assert [path.name for path in target.parent.iterdir()] == ["resnet18.py"]


def test_build_warns_where_the_other_value_of_a_bool_param_is_refused(tmp_path: Path) -> None:
    """The file builds the model at either value of `flat`, and the spec is refused at one
    (a linear over an NCHW image): build writes it, and says so at the node, as check would
    at that value; a spec whose bool params both hold builds without a warning."""
    spec = tmp_path / "flat.yaml"
    text = (
        "archc: 1\nname: flat\nparams: {flat: false}\ninput: [3, 8, 8]\nbody:\n"
        "  conv: {op: conv2d, out: 4, kernel: 3}\n  fc: {op: linear, out: 4, when: flat}\n"
    )
    spec.write_text(text)
    built = run_archc("build", str(spec), "-o", str(tmp_path))
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "torch" / "flat.py").exists()
    refused = run_archc("check", str(spec), "--set=flat=true")
    assert refused.returncode == 2
    reason = refused.stderr.splitlines()[0].partition("error: ")[2]
    assert built.stderr.splitlines()[0] == (
        f"{spec}:7:7: warning: the file's create_model(flat=True) builds what the spec "
        f"refuses: {reason}"
    )
    spec.write_text(text.replace("linear, out: 4", "conv2d, out: 4, kernel: 1"))
    built = run_archc("build", str(spec), "-o", str(tmp_path))
    assert built.returncode == 0 and built.stderr == "", built.stderr


def test_expect_is_skipped_when_params_are_overridden() -> None:
    result = run_archc("check", "specs/resnet50.yaml", "--set", "num_classes=10")
    assert result.returncode == 0, result.stderr
    assert "23,528,522 params" in result.stdout


def test_ir_prints_one_line_per_node() -> None:
    lines = run_archc("ir", "specs/resnet18.yaml").stdout.splitlines()
    assert lines[0] == "graph resnet18(%input : f32[N,3,224,224]):"
    assert lines[1] == (
        "  %conv1 : f32[N,64,112,112] = "
        "conv2d[out=64, kernel=7, stride=2, padding=3, bias=False](%input)"
        "  # init weight=kaiming_normal(fan_out)"  # the spec's init: rule for conv2d
    )
    assert lines[-1] == "  return %fc"


def test_compare_rows_equal_stats_in_every_format() -> None:
    import csv
    import io

    specs = sorted(path.relative_to(REPO).as_posix() for path in SPECS.glob("*.yaml"))
    as_json = run_archc("compare", *specs, "--format", "json", "--sort", "macs")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [row["macs"] for row in rows] == sorted(row["macs"] for row in rows)
    as_csv = list(
        csv.DictReader(io.StringIO(run_archc("compare", *specs, "--format", "csv").stdout))
    )
    as_markdown = run_archc("compare", *specs).stdout
    for spec in specs:
        stats = json.loads(run_archc("stats", spec, "--format", "json").stdout)
        (row,) = [row for row in rows if row["spec"] == spec]
        (csv_row,) = [row for row in as_csv if row["spec"] == spec]
        for key in ("params", "buffers", "macs", "flops", "activations", "depth"):
            assert row[key] == stats[key] == int(csv_row[key])
        assert f"| {stats['params']:,} | {stats['macs'] / 1e9:.3f} |" in as_markdown


def test_stats_per_layer_lists_every_node_as_the_json_does() -> None:
    stats = json.loads(run_archc("stats", "specs/mobilenet_v2.yaml", "--format", "json").stdout)
    table = run_archc("stats", "specs/mobilenet_v2.yaml", "--per-layer")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("mobilenet_v2 at input 1x3x224x224 (batch 1); core tier")
    rows = [line.split() for line in lines[3 : 3 + len(stats["nodes"])]]
    for node, row in zip(stats["nodes"], rows, strict=True):
        kernel = ["x".join(map(str, node["kernel"]))] if node["kernel"] else []
        inputs = "+".join(node["inputs"])
        assert row[: 4 + len(kernel)] == [node["name"], node["op"], inputs, node["shape"], *kernel]
        counts = row[4 + len(kernel) : 6 + len(kernel)]
        assert [int(cell.replace(",", "")) for cell in counts] == [node["params"], node["macs"]]
        assert float(row[-1]) == round(100 * node["macs"] / stats["macs"], 1)
    assert lines[-2] == f"coverage: {len(stats['nodes'])} of {len(stats['nodes'])} nodes costed"
    assert lines[-1].startswith("training memory at batch 1")
    (total,) = [line.split() for line in lines if line.startswith("total ")]
    assert total[1:3] == [f"{stats['params']:,}", f"{stats['macs']:,}"]
    # MACs by kind: every kind's line adds up to the total.
    kinds = lines[lines.index("MACs by kind:") + 1 : -2]
    assert sum(int(line.split()[1].replace(",", "")) for line in kinds) == stats["macs"]
    assert {line.split()[0] for line in kinds} == set(stats["macs_by_kind"]) == {"conv", "linear"}


def test_compare_html_and_latex_tables_hold_the_json_numbers() -> None:
    from html.parser import HTMLParser

    specs = ["specs/resnet18.yaml", "specs/mobilenet_v3_small.yaml"]
    rows = json.loads(run_archc("compare", *specs, "--format", "json").stdout)

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "tr":
                self.rows.append([])

        def handle_data(self, data: str) -> None:
            if self.rows and data.strip():
                self.rows[-1].append(data)

    parser = Cells()
    parser.feed(run_archc("compare", *specs, "--format", "html").stdout)
    header, *body = parser.rows
    latex = run_archc("compare", *specs, "--format", "latex").stdout.splitlines()
    assert latex[0] == "\\begin{tabular}{llrrrrrr}" and latex[-1] == "\\end{tabular}"
    latex_rows = [
        line.removesuffix(" \\\\").split(" & ") for line in latex if line.endswith("\\\\")
    ]
    assert all(len(cells) == len(header) for cells in latex_rows)
    for row, cells, tex in zip(rows, body, latex_rows[1:], strict=True):
        assert cells[0] == row["model"] and tex[0] == row["model"].replace("_", "\\_")
        assert int(cells[2].replace(",", "")) == row["params"] == int(tex[2].replace(",", ""))
        assert cells[3] == tex[3] == f"{row['macs'] / 1e9:.3f}"
        assert float(cells[6]) == round(row["activations"] * 2 / 2**20, 1)


def test_ops_lists_each_attribute_with_its_range() -> None:
    """The ranges the schemas enforce, as a user reads them (the issue's list)."""
    result = run_archc("ops")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    conv = lines[lines.index(next(line for line in lines if line.startswith("conv2d "))) :][:8]
    assert "    out: int, at least 1, required" in conv
    assert "    padding: int | tuple[int, int], at least 0, default 0" in conv
    assert "    groups: int, at least 1, default 1" in conv
    assert "    eps: float, more than 0, default 1e-05" in lines
    assert "    p: float, at least 0, at most 1, default 0.5" in lines
    assert "    stride: int | tuple[int, int] | None, at least 1, default None" in lines
    initialisers = lines[lines.index("initialisers (init:):") + 1 :]
    assert "    zeros: all zero" in initialisers
    assert any(line.startswith("    {kaiming_normal: fan_in | fan_out}: ") for line in initialisers)


@pytest.mark.parametrize("backend", ["torch", "flax"])
def test_build_train_writes_the_script_beside_the_model(tmp_path: Path, backend: str) -> None:
    spec = "tests/specs/digits_cnn.yaml"
    result = run_archc("build", spec, "-o", str(tmp_path), "--train", "--backend", backend)
    assert result.returncode == 0, result.stderr
    written = sorted(path.name for path in (tmp_path / backend).iterdir())
    assert written == ["digits_cnn.py", "digits_cnn_train.py"]
    folder = tmp_path / backend
    script = (folder / written[1]).read_text()
    assert "from digits_cnn import create_model" in script
    # the header's command, run in the script's folder, writes the same script again
    command = re.search(r"Regenerate, in this folder:\s+archc (.*?)\n\n", script, re.S)[1]
    assert f"--backend {backend}" in " ".join(command.split()) and "--train" in command
    (folder / written[1]).unlink()
    assert run_archc(*shlex.split(command), cwd=folder).returncode == 0
    assert (folder / written[1]).read_text() == script


def test_build_train_without_a_train_section_writes_nothing(tmp_path: Path) -> None:
    result = run_archc("build", "specs/resnet18.yaml", "-o", str(tmp_path), "--train")
    assert result.returncode == 2
    assert result.stderr.startswith("specs/resnet18.yaml:1:1: error: archc build --train needs")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "torch").exists()


def test_build_train_refuses_a_setting_optax_lacks_before_writing(tmp_path: Path) -> None:
    text = (REPO / "tests" / "specs" / "digits_cnn.yaml").read_text()
    spec = tmp_path / "dampened.yaml"
    spec.write_text(
        text.replace("{adamw: {lr: 0.003, weight_decay: 0.01}}", "{sgd: {lr: 0.1, dampening: 0.5}}")
    )
    flax = run_archc("build", str(spec), "-o", str(tmp_path), "--train", "--backend", "flax")
    assert flax.returncode == 2
    assert flax.stderr.startswith(
        f"{spec}:8:30: error: sgd's setting 'dampening' has no optax form"
    ), flax.stderr
    assert "Traceback" not in flax.stderr and not (tmp_path / "flax").exists()
    torch = run_archc("build", str(spec), "-o", str(tmp_path), "--train")
    assert torch.returncode == 0, torch.stderr


@pytest.mark.parametrize("backend", ["torch", "flax"])
def test_build_train_writes_a_distillation_teacher_beside(tmp_path: Path, backend: str) -> None:
    spec = "tests/specs/digits_student.yaml"
    result = run_archc("build", spec, "-o", str(tmp_path), "--train", "--backend", backend)
    assert result.returncode == 0, result.stderr
    written = sorted(path.name for path in (tmp_path / backend).iterdir())
    assert written == ["digits_cnn.py", "digits_student.py", "digits_student_train.py"]
    framework = "from flax import nnx" if backend == "flax" else "import torch"
    assert framework in (tmp_path / backend / "digits_cnn.py").read_text()  # the teacher's


def test_a_teacher_that_predicts_other_classes_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    (tmp_path / "digits_cnn.yaml").write_text((REPO / "tests/specs/digits_cnn.yaml").read_text())
    student = (REPO / "tests/specs/digits_student.yaml").read_text()
    (tmp_path / "student.yaml").write_text(student.replace("classes: 10", "classes: 7"))
    result = run_archc("build", "student.yaml", "--train", "-o", "out", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "student.yaml:9:17: error: train.distillation.teacher: digits_cnn must take the "
        "student's input (1, 8, 8) and predict its 7 classes"
    )
    assert not (tmp_path / "out").exists()
