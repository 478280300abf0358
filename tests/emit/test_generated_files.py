"""The committed generated files (torch, flax, IR) are current, deterministic and ruff-clean;
generated torch code does what the checker predicts (shapes, params, buffers, MACs) on a spec
that exercises the language."""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import GENERATED, REPO, SPECS, count_macs, load_generated, run_archc

MODEL_SPECS = sorted(SPECS.glob("*.yaml"))
BACKENDS = ("torch", "flax")
FEATURES = "tests/specs/features.yaml"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every model spec built afresh, plus its IR dump."""
    checkout = tmp_path_factory.mktemp("checkout")  # the specs as far from it as from ours
    shutil.copytree(SPECS, checkout / "specs")
    out = checkout / "generated"
    (out / "ir").mkdir(parents=True)
    for spec in MODEL_SPECS:
        relative = spec.relative_to(REPO).as_posix()
        for backend in BACKENDS:
            build = run_archc("build", relative, "--backend", backend, cwd=checkout)
            assert build.returncode == 0, build.stderr
        dump = run_archc("ir", relative)
        assert dump.returncode == 0, dump.stderr
        (out / "ir" / f"{spec.stem}.txt").write_text(dump.stdout)
    return out


@pytest.mark.parametrize("spec", MODEL_SPECS, ids=lambda path: path.stem)
def test_generated_files_are_current(spec: Path, regenerated: Path) -> None:
    for kind, suffix in (("torch", ".py"), ("flax", ".py"), ("ir", ".txt")):
        committed = GENERATED / kind / f"{spec.stem}{suffix}"
        fresh = regenerated / kind / f"{spec.stem}{suffix}"
        assert committed.exists(), f"{committed} is missing; run `make generated`"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed} is stale; run `make generated` and review the diff"
        )


def test_build_is_byte_identical_across_runs(tmp_path: Path) -> None:
    outputs = []
    for index in range(2):
        out = tmp_path / str(index)
        assert run_archc("build", "specs/resnet18.yaml", "-o", str(out)).returncode == 0
        outputs.append((out / "torch" / "resnet18.py").read_bytes())
    assert outputs[0] == outputs[1]


def test_a_build_reads_the_same_from_anywhere_and_its_header_regenerates_it(
    tmp_path: Path,
) -> None:
    """Spec paths are written relative to the output folder (a shipped library's as
    archc/blocks/…), so the file does not depend on the working directory; the header's
    command, run in that folder, writes the same file."""
    absolute = run_archc("build", str(SPECS / "resnet18.yaml"), "-o", str(tmp_path / "a"))
    relative = run_archc("build", "specs/resnet18.yaml", "-o", str(tmp_path / "a" / "b"))
    assert absolute.returncode == relative.returncode == 0, absolute.stderr + relative.stderr
    first = (tmp_path / "a" / "torch" / "resnet18.py").read_text()
    assert "Spec: archc/blocks/resnet.yaml:" in first
    paths = re.findall(r"(?:Spec:|archc from)\s+(\S+?):", first)
    assert len(paths) > 2 and not any(Path(path).is_absolute() for path in paths), paths
    folder = tmp_path / "a" / "b" / "torch"
    second = (folder / "resnet18.py").read_text()
    command = re.search(r"Regenerate, in this folder:\s+archc (.*?)\nParams", second, re.S)[1]
    (folder / "resnet18.py").unlink()
    assert run_archc(*shlex.split(command), cwd=folder).returncode == 0
    assert (folder / "resnet18.py").read_text() == second
    deeper = re.sub(r"((?:\.\./)+)", r"\1../", first)  # b/ is one level deeper than a/
    assert deeper.split() == second.split()  # the same words, wrapped where they fit


def test_generated_code_is_ruff_clean(regenerated: Path, tmp_path: Path) -> None:
    files = []
    for backend in BACKENDS:
        build = run_archc("build", FEATURES, "--backend", backend, "-o", str(tmp_path))
        assert build.returncode == 0, build.stderr
        files.append(str(tmp_path / backend / "features.py"))
        files += [str(path) for path in (regenerated / backend).glob("*.py")]
        for spec in ("specs/resnet50.yaml", "specs/shufflenet_v2_x1_0.yaml"):  # the export too
            export = ["--optimize", "inference", "--backend", backend, "-o", str(tmp_path)]
            build = run_archc("build", spec, *export)
            assert build.returncode == 0, build.stderr
            files.append(str(tmp_path / backend / f"{Path(spec).stem}_inference.py"))
    ruff = [sys.executable, "-m", "ruff"]
    settings = ["--config", str(REPO / "pyproject.toml")]
    check = ["check", *settings, "--extend-select", "PLW0127"]  # and no `x = x`
    for command in (check, ["format", "--check", *settings]):
        result = subprocess.run([*ruff, *command, *files], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


OVERRIDES = [
    [],
    ["use_pool=false"],
    ["layers=1", "growth=4"],
    ["width=0.5", "layers=5"],
]


@pytest.mark.parametrize("overrides", OVERRIDES, ids=lambda items: ",".join(items) or "defaults")
def test_generated_code_matches_the_checker(overrides: list[str], tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    sets = [f"--set={item}" for item in overrides]
    build = run_archc("build", FEATURES, "-o", str(tmp_path), *sets)
    assert build.returncode == 0, build.stderr
    stats = json.loads(run_archc("stats", FEATURES, "--format", "json", *sets).stdout)
    ir_lines = run_archc("ir", FEATURES, *sets).stdout.splitlines()
    model = load_generated(tmp_path / "torch" / "features.py").create_model().eval()

    macs, output = count_macs(model, torch.randn(2, *stats["input"][1:]))
    assert sum(p.numel() for p in model.parameters()) == stats["params"]
    assert sum(b.numel() for b in model.buffers()) == stats["buffers"]
    assert macs == 2 * stats["macs"]  # a batch of 2: the checker counts per sample
    predicted = ir_lines[-2].split(" : ")[1].split(" = ")[0]  # "%fc : f32[N,10] = …"
    assert predicted == f"f32[N,{','.join(map(str, output.shape[1:]))}]"


def test_block_classes_are_shared_across_overrides(tmp_path: Path) -> None:
    """The default build's create_model(**overrides) equals a build with --set."""
    torch = pytest.importorskip("torch")
    build = run_archc("build", FEATURES, "-o", str(tmp_path))
    assert build.returncode == 0
    module = load_generated(tmp_path / "torch" / "features.py")
    stats = json.loads(
        run_archc("stats", FEATURES, "--format", "json", "--set=layers=5", "--set=width=0.5").stdout
    )
    model = module.create_model(layers=5, width=0.5)
    assert sum(p.numel() for p in model.parameters()) == stats["params"]
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_readme_zoo_table_is_current() -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import readme_zoo
    finally:
        sys.path.remove(str(REPO / "tools"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_zoo.BEGIN in readme
    assert readme_zoo.with_table(readme, readme_zoo.zoo_table()) == readme, (
        "README.md's zoo table is stale; run `make generated`"
    )


FIGURES = ["resnet50", "googlenet", "unet", "swin_t"]  # the README's; the Makefile's FIGURES


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is missing")
@pytest.mark.parametrize("model", FIGURES)
def test_readme_diagrams_are_current_and_fit_a_page(model: str, tmp_path: Path) -> None:
    fresh = tmp_path / f"{model}.png"
    result = run_archc("diagram", f"specs/{model}.yaml", "-o", str(fresh))
    assert result.returncode == 0, result.stderr
    committed = (REPO / "docs" / f"{model}.png").read_bytes()
    assert fresh.read_bytes() == committed, f"docs/{model}.png is stale; run `make generated`"
    width, height = png_size(committed)
    assert height <= 2 * width and width <= 2 * height, (width, height)  # a page's shape


def test_readme_plot_is_current(tmp_path: Path) -> None:
    pytest.importorskip("cairosvg")
    fresh = tmp_path / "zoo.png"
    specs = sorted(path.relative_to(REPO).as_posix() for path in SPECS.glob("*.yaml"))
    assert run_archc("compare", *specs, "--plot", str(fresh)).returncode == 0
    committed = (REPO / "docs" / "zoo.png").read_bytes()
    assert fresh.read_bytes() == committed, "docs/zoo.png is stale; run `make generated`"
    assert png_size(committed) == (1800, 1200)


@pytest.mark.parametrize("spec", MODEL_SPECS, ids=[path.stem for path in MODEL_SPECS])
def test_ir_names_are_the_state_dict_keys(spec: Path) -> None:
    """Every parameter and buffer the IR declares is the generated module's state_dict entry
    of that name and shape, and nothing else is there (a shared module's later calls use
    the first call's)."""
    torch = pytest.importorskip("torch")
    from archc.pipeline import compile_spec

    graph = compile_spec(spec).program.graph
    declared = {}
    for node in graph.own_state():
        parameters, buffers = graph.state_shapes(node.name)
        for suffix, shape in {**parameters, **buffers}.items():
            joiner = "" if suffix[:1] in ("", "_") else "."
            declared[node.name + joiner + suffix] = tuple(shape)
    with torch.device("meta"):
        module = load_generated(GENERATED / "torch" / f"{spec.stem}.py").create_model()
    assert declared == {key: tuple(value.shape) for key, value in module.state_dict().items()}


def _loop_widths(path: Path) -> list[str]:
    """The source of every `channels = …` that ends a loop appending a block of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    blocks = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    widths = []
    for loop in ast.walk(tree):
        if not isinstance(loop, ast.For):
            continue
        built = {
            call.args[0].func.id
            for call in ast.walk(loop)
            if isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "append"
            and isinstance(call.args[0], ast.Call)
            and isinstance(call.args[0].func, ast.Name)
        }
        last = loop.body[-1]
        assigns_width = isinstance(last, ast.Assign) and ast.unparse(last.targets[0]) == "channels"
        if built & blocks and assigns_width:
            widths.append(ast.unparse(last.value))
    return widths


@pytest.mark.parametrize("backend", BACKENDS)
def test_stage_loops_read_widths_from_their_blocks(backend: str) -> None:
    """A stage loop carries `channels` on from the block it built, not from a width worked
    out at build time (`channels = 256`)."""
    widths = [width for path in (GENERATED / backend).glob("*.py") for width in _loop_widths(path)]
    assert len(widths) >= 30  # the zoo's ResNets, MobileNets, ShuffleNet…
    assert all(re.fullmatch(r"\w+\[-1\]\.out_channels", width) for width in widths), widths


@pytest.mark.parametrize("model", ["resnet18", "shufflenet_v2_x1_0", "mobilenet_v2"])
def test_a_blocks_out_channels_is_its_outputs_width(model: str) -> None:
    """Each generated block's `out_channels` equals the width a forward gives it."""
    torch = pytest.importorskip("torch")
    network = load_generated(GENERATED / "torch" / f"{model}.py").create_model().eval()
    blocks = [
        module
        for module in network.modules()
        if type(module).__module__ == type(network).__module__ and module is not network
    ]
    seen: list[tuple[int, int]] = []
    hooks = [
        block.register_forward_hook(
            lambda block, _, output: seen.append((block.out_channels, output.shape[1]))
        )
        for block in blocks
        if hasattr(block, "out_channels")
    ]
    with torch.no_grad():
        network(torch.randn(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    assert len(seen) >= 8
    assert all(reported == measured for reported, measured in seen), seen


def test_an_op_param_set_from_the_command_line_picks_the_module(tmp_path: Path) -> None:
    """`--set norm=frozen_batch_norm` swaps the class the generated code builds: the norm's
    weight and bias become buffers, as the checker counts them."""
    torch = pytest.importorskip("torch")
    spec = tmp_path / "normed.yaml"
    spec.write_text(
        "archc: 1\nname: normed\nparams: {norm: {type: op, default: batch_norm}}\n"
        "input: [3, 8, 8]\nbody:\n  conv: {op: conv2d, out: 4, kernel: 3}\n  bn: norm\n"
    )
    counts = {}
    for norm in ("batch_norm", "frozen_batch_norm"):
        out = tmp_path / norm
        build = run_archc("build", str(spec), "-o", str(out), f"--set=norm={norm}")
        assert build.returncode == 0, build.stderr
        stats = json.loads(
            run_archc("stats", str(spec), "--format", "json", f"--set=norm={norm}").stdout
        )
        model = load_generated(out / "torch" / "normed.py").create_model()
        counts[norm] = (
            sum(p.numel() for p in model.parameters()),
            sum(b.numel() for b in model.buffers()),
        )
        assert counts[norm] == (stats["params"], stats["buffers"])
        assert model(torch.randn(1, 3, 8, 8)).shape == (1, 4, 6, 6)
    # conv 3·4·9 + 4 = 112; BatchNorm adds 8 params, 9 buffers; frozen, 16 buffers.
    assert counts == {"batch_norm": (120, 9), "frozen_batch_norm": (112, 16)}
