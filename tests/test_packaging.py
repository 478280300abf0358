"""archc installed from its wheel, with its core dependencies alone, works from anywhere:
templates and block libraries come from the package, not from this checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of this checkout and its core dependencies: its bin."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # the committed files only, as a release would have them
    files = run("git", "ls-files", "-z", cwd=REPO).stdout.split("\0")
    for name in filter(None, files):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "-w",
        root / "dist",
        source,
        cwd=root,
    )
    (wheel,) = (root / "dist").glob("archc-*.whl")
    run(sys.executable, "-m", "venv", root / "venv", cwd=root)
    bin_ = root / "venv" / "bin"
    run(
        bin_ / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "-c",
        REPO / "constraints.txt",
        wheel,
        cwd=root,
    )
    return bin_


def test_the_wheel_holds_no_framework_and_finds_its_files(installed: Path, tmp_path: Path) -> None:
    frozen = run(installed / "python", "-m", "pip", "freeze", cwd=tmp_path).stdout.lower()
    assert "archc" in frozen
    for framework in ("torch", "jax", "flax"):
        assert f"\n{framework}==" not in f"\n{frozen}"
    where = run(installed / "python", "-c", "import archc; print(archc.__file__)", cwd=tmp_path)
    assert "site-packages" in where.stdout


def test_the_installed_command_runs_from_another_folder(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "net.yaml").write_text(
        "archc: 1\nname: net\nimports: [archc:resnet]\ninput: [3, 32, 32]\n"
        "body:\n  block: {block: BasicBlock, planes: 8}\n"
        "  pool: {op: adaptive_avg_pool2d, size: 1}\n  flat: flatten\n  fc: {op: linear, out: 10}\n"
    )
    archc = installed / "archc"
    assert "ok: net" in run(archc, "check", "net.yaml", cwd=tmp_path).stdout
    assert '"params":' in run(archc, "stats", "net.yaml", "--format", "json", cwd=tmp_path).stdout
    for backend in ("torch", "flax"):
        run(archc, "build", "net.yaml", "--backend", backend, "-o", "out", cwd=tmp_path)
        text = (tmp_path / "out" / backend / "net.py").read_text()
        compile(text, "net.py", "exec")
        assert "class BasicBlock(" in text
    run(archc, "diagram", "net.yaml", "-o", "net.dot", cwd=tmp_path)
    assert (tmp_path / "net.dot").read_text().startswith("digraph")
    if shutil.which("dot"):
        run(archc, "diagram", "net.yaml", "-o", "net.svg", cwd=tmp_path)
        assert "<svg" in (tmp_path / "net.svg").read_text()
