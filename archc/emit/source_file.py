"""A whole generated file: header, helpers, block classes (leaves first), the model last."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
from typing import TYPE_CHECKING

from archc import TEMPLATES
from archc.boundary import docstring_text, string_literal
from archc.emit.classes import Backend, class_view
from archc.emit.layout import INDENT, LINE_LIMIT, Call, layout, wrap_text
from archc.errors import InternalError
from archc.ir.functions import FUNCTIONS
from archc.passes.cost import CostReport
from archc.render.stats import input_label
from archc.resolve.classes import block_classes
from archc.resolve.elaborate import Program

if TYPE_CHECKING:  # only annotated: the passes load where an export is made
    from archc.passes.inference import InferenceExport


def emit_file(
    program: Program,
    costs: CostReport,
    command: str,
    backend: Backend,
    export: InferenceExport | None = None,
) -> str:
    """The file's text: the training model, or the inference `export` of it with a
    converter for training checkpoints beside the model."""
    classes, graph = block_classes(program), program.graph
    if export is not None:
        classes, graph, costs = export.classes, export.graph, export.costs
    for rewrite in backend.passes:
        classes = [rewrite(block_class) for block_class in classes]
    views = [class_view(block_class, backend) for block_class in classes]
    code = "\n".join(line for view in views for line in [*view.signature, *view.init, *view.call])
    total = costs.total
    root = program.spec.root
    import jinja2  # here, not at the top: every command checks emission, only build renders

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    template = environment.get_template(f"{backend.name}/model.py.j2")
    context = dict(
        title=wrap_text(f"{root.name}: {root.doc}" if root.doc else root.name, 0),
        spec=docstring_text(root.location.file),
        regenerate=_regenerate(command),
        export_note=wrap_text(_export_note(export), 0) if export else [],
        totals=(
            f"Params {total.params:,} (+ {total.buffers:,} in buffers); "
            f"{total.macs / 1e9:.3f} GMACs = {total.flops / 1e9:.3f} GFLOPs "
            f"at {input_label(costs)}, core tier."
        ),
        helpers=_helpers(code, backend),
        classes=views,
        model=classes[-1].class_name,
        params=list(classes[-1].params),
        checkpoint=export,
        tables=_checkpoint_tables(export) if export else {},
        **backend.checkpoint_arrays,
    )
    draft = template.render(imports=[], **context)
    text = compiled(template.render(imports=_imports(draft, backend), **context))
    if backend.validate is not None:
        backend.validate(text, graph, classes)
    return text


def _regenerate(command: str) -> list[str]:
    """`Regenerate: <command>`, the command on a line of its own when both do not fit one."""
    line = f"Regenerate: {docstring_text(command)}"
    return [line] if len(line) <= LINE_LIMIT else ["Regenerate:", INDENT + docstring_text(command)]


def _export_note(export: InferenceExport) -> str:
    """What the inference export changed, for the file's docstring."""
    changes = [
        f"{len(export.folds)} batch norms folded into their convs" if export.folds else "",
        f"{len(export.joined)} groups of parallel convs joined" if export.joined else "",
    ]
    done = ", ".join(change for change in changes if change) or "nothing to fold or join"
    return f"Inference export: {done}; inference_state_dict() converts a training checkpoint."


def _checkpoint_tables(export: InferenceExport) -> dict[str, list[str]]:
    """The lines of the tables that the inference export's checkpoint converter reads."""
    folds = [
        Call("", [string_literal(fold.conv), string_literal(fold.norm), repr(fold.eps)])
        for fold in export.folds
    ]
    joined = [
        Call(
            "", [string_literal(name), Call("", [string_literal(p) for p in parts], brackets="[]")]
        )
        for name, parts in export.joined
    ]
    renamed = [
        f"{string_literal(old)}: {string_literal(new)}" for old, new in export.renamed.items()
    ]
    return {
        "folds": layout("FOLDED_NORMS = ", Call("", folds, brackets="[]"), 0),
        "joined": layout("JOINED = ", Call("", joined, brackets="[]"), 0),
        "renamed": layout("RENUMBERED = ", Call("", renamed, brackets="{}"), 0),
    }


def compiled(text: str) -> str:
    """The file's text, once it is known to parse and compile (never run here): a file that
    does not is archc's bug, and is not written."""
    try:
        compile(text, "<generated>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        raise InternalError("emit", f"the generated file does not compile: {error}") from None
    return text


def _imports(text: str, backend: Backend) -> list[str]:
    """The import lines the file uses, sections separated by one blank line."""
    lines = [line for pattern, line in backend.imports if not line or re.search(pattern, text)]
    sections = "\n".join(lines).strip("\n")
    return re.sub(r"\n{2,}", "\n\n", sections).split("\n")


def _helpers(code: str, backend: Backend) -> list[str]:
    """Source of every helper the code calls, and of the helpers those call, in file order."""
    sources = {
        name: inspect.getsource(function)
        for name, function in FUNCTIONS.items()
        if not hasattr(builtins, name)
    }
    sources.update(_backend_helpers(backend.name))
    # Called, or passed as a class (`norm=FrozenBatchNorm2d`, `partial(FrozenBatchNorm2d, …)`).
    names = "|".join(map(re.escape, sources))
    uses = re.finditer(rf"(?<![\w.])({names})\(|[=(]\s*({names})\b", code)  # one pass
    called = {use.group(1) or use.group(2) for use in uses}
    used: set[str] = set()
    pending = called | set(backend.required_helpers)
    while pending - used:
        name = (pending - used).pop()
        used.add(name)
        pending |= _called_names(sources[name]) & sources.keys()
    return [source for name, source in sources.items() if name in used]


def _called_names(source: str) -> set[str]:
    """Names a helper calls (its code, not its docstring)."""
    return {
        node.func.id
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }


def _backend_helpers(backend: str) -> dict[str, str]:
    """Top-level definitions of templates/<backend>/helpers.py, read as text (never imported:
    emission must not import the framework)."""
    path = TEMPLATES / backend / "helpers.py"
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    definitions = ast.parse(text).body
    return {
        node.name: ast.get_source_segment(text, node, padded=False) + "\n"
        for node in definitions
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    }
