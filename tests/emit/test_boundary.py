"""The boundary between spec text and code: adversarial but valid names, docs and strings
build to files that compile and say nothing the spec did not ask for."""

from __future__ import annotations

import ast
import contextlib
import io
import keyword
import subprocess
import sys
from pathlib import Path

import pytest

from archc import boundary
from archc.cli import main
from tests.helpers import REPO

NASTY = [
    'x"""; __import__("os").system("touch CANARY"); """',
    "x'''; __import__('os').system('touch CANARY'); '''",
    'ends with a quote"',
    '"starts" with a quote',
    'ends with two quotes""',
    "ends with a backslash\\",
    "C:\\new\\table\\x41 \\N{BULLET} \\u0041",
    "line\nbreak\r\nand\ttab",
    "nul \0 here, bell \a, escape \x1b[31m",
    "line separator \u2028 paragraph \u2029 next line \x85",
    "{{ jinja }} {% if %} {# comment #} {0} {self}",
    "unicode: café, 東京, emoji 🙂, RTL \u202e",
    "# a comment\nimport os\nos.system('touch CANARY')",
]


def yaml_string(text: str) -> str:
    """`text` as a double-quoted YAML scalar."""
    return '"' + text.encode("unicode_escape").decode().replace('"', '\\"') + '"'


def spec_text(text: str) -> str:
    """A model whose docs, output name and string param all carry `text` (YAML-escaped)."""
    quoted = yaml_string(text)
    return (
        f"archc: 1\nname: tricky\ndoc: {quoted}\n"
        f"params: {{label: {quoted}, width: 4}}\n"
        "input: [3, 8, 8]\n"
        f"blocks:\n  Unit:\n    doc: {quoted}\n    params: {{tag: str, out: int}}\n"
        "    body:\n      conv: {op: conv2d, out: out, kernel: 1}\n"
        "body:\n  stem: {block: Unit, tag: label, out: width}\n  relu: relu\n"
        f"outputs: {{{quoted}: relu}}\n"
    )


def build(folder: Path, name: str, text: str, backend: str, *options: str) -> str:
    spec = folder / name
    spec.write_text(text, encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main(["build", name, "--backend", backend, "-o", "out", *options])
    assert status == 0
    return (folder / "out" / backend / "tricky.py").read_text(encoding="utf-8")


class _Blank(ast.NodeTransformer):
    """Every string constant made empty: what remains is the code's structure."""

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        return ast.Constant("" if isinstance(node.value, str) else node.value)


def structure(source: str) -> str:
    return ast.dump(_Blank().visit(ast.parse(source)))


@pytest.mark.parametrize("backend", ["torch", "flax"])
@pytest.mark.parametrize("text", NASTY, ids=range(len(NASTY)))
def test_adversarial_strings_build_to_the_same_code_as_plain_ones(
    text: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    nasty = build(tmp_path, 'we\'ird "name" \\ C:\\new.yaml', spec_text(text), backend)
    plain = build(tmp_path, "plain.yaml", spec_text("plain"), backend)
    compile(nasty, "tricky.py", "exec")
    assert structure(nasty) == structure(plain)
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--config", str(REPO / "pyproject.toml"), "-"],
        input=nasty,
        capture_output=True,
        text=True,
        check=True,
    )
    assert formatted.stdout == nasty, "the generated file is not as ruff formats it"
    namespace: dict = {}
    exec(compile(ast.parse(nasty), "tricky.py", "exec"), namespace)  # defines, runs nothing
    assert namespace["__doc__"].startswith("tricky: ")
    assert not (tmp_path / "CANARY").exists()


@pytest.mark.parametrize("text", NASTY, ids=range(len(NASTY)))
def test_set_string_values_reach_the_file_as_data(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--set label=…` (read as YAML, as every --set value) lands in the constructor's
    default and the Regenerate line."""
    monkeypatch.chdir(tmp_path)
    option = f"--set=label={yaml_string(text)}"
    nasty = build(tmp_path, "tricky.yaml", spec_text("plain"), "torch", option)
    plain = build(tmp_path, "tricky.yaml", spec_text("plain"), "torch", "--set=label=plain")
    assert structure(nasty) == structure(plain)
    assert not (tmp_path / "CANARY").exists()


@pytest.mark.parametrize("text", NASTY, ids=range(len(NASTY)))
def test_a_string_literal_holds_exactly_its_text(text: str) -> None:
    assert ast.literal_eval(boundary.string_literal(text)) == text


@pytest.mark.parametrize("text", NASTY, ids=range(len(NASTY)))
def test_docstring_text_is_one_string_whatever_it_holds(text: str) -> None:
    module = ast.parse(f'"""{boundary.docstring_text(text)}"""\n')
    assert len(module.body) == 1
    assert module.body[0].value.value == text


def test_the_reserved_names_cover_both_frameworks() -> None:
    """The boundary's list of module attributes, against the frameworks themselves."""
    torch = pytest.importorskip("torch")
    nnx = pytest.importorskip("flax.nnx")
    for module in (torch.nn.Module, torch.nn.Sequential, nnx.Module):
        public = {name for name in dir(module) if not name.startswith("_")}
        assert public <= boundary.FRAMEWORK_ATTRIBUTES, public - boundary.FRAMEWORK_ATTRIBUTES


def test_the_reserved_names_cover_every_generated_global() -> None:
    """Every module-level name of every committed generated file is reserved for classes."""
    root = Path(__file__).parents[2] / "generated"
    for path in [*root.glob("torch/*.py"), *root.glob("flax/*.py")]:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.asname or alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            else:
                continue
            if isinstance(node, ast.ClassDef) and "Spec: " in (ast.get_docstring(node) or ""):
                continue  # a block's class, named by the spec
            for name in names:
                assert name in boundary.GENERATED_GLOBALS, (path.name, name)


@pytest.mark.parametrize("word", keyword.kwlist)
def test_no_keyword_is_a_name(word: str) -> None:
    from archc.errors import Location, SpecError

    with pytest.raises(SpecError, match="keyword"):
        boundary.check_name(word, Location("s.yaml", 1, 1), "node name", frozenset())
