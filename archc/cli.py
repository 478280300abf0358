"""The `archc` command line."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from archc import __version__
from archc.errors import ArchcError, InternalError, SpecError
from archc.render.compare import SORT_KEYS

EPILOG = "Errors are reported as FILE:LINE:COL: error: message, with exit status 2."


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ArchcError as error:
        print(error.render(), file=sys.stderr)
        return 2
    except InternalError as error:
        print(f"archc: {error}", file=sys.stderr)
        return 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archc",
        description="Compile declarative YAML architecture specs: check shapes, count params "
        "and MACs, emit PyTorch code.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _command(commands, "check", "validate a spec and check every shape", _check)
    stats = _command(commands, "stats", "params, buffers, MACs, FLOPs, activations", _stats)
    stats.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="output format (default: table)",
    )
    stats.add_argument(
        "--per-layer",
        action="store_true",
        help="one table row per primitive op (name, op, output shape, params, MACs, share); "
        "the JSON lists them under 'nodes' anyway",
    )
    build = _command(commands, "build", "emit model code for a backend", _build)
    build.add_argument(
        "--backend",
        choices=("torch", "flax"),
        default="torch",
        help="code generator: torch (nn.Module, NCHW) or flax (flax.nnx, NHWC); default torch",
    )
    build.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("generated"),
        metavar="DIR",
        help="output folder; writes DIR/<backend>/<name>.py (default: generated)",
    )
    _command(commands, "ir", "print the IR graph, one line per node", _ir)
    diagram = _command(
        commands, "diagram", "draw the architecture: nested blocks, shapes, costs", _diagram
    )
    diagram.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="FILE.svg, .png or .pdf (needs Graphviz's dot) or .dot (needs nothing)",
    )
    diagram.add_argument(
        "--depth",
        type=_positive,
        metavar="N",
        help="levels of blocks drawn open as clusters; deeper ones are boxes "
        "(default: the deepest that keeps the drawing within 60 boxes)",
    )
    diagram.add_argument(
        "--rankdir",
        choices=("TB", "LR"),
        default="TB",
        help="top to bottom or left to right (default: TB)",
    )
    compare = commands.add_parser(
        "compare",
        help="one row per model: params, MACs, FLOPs, activation memory",
        description="one row per model: params, MACs, FLOPs, activation memory",
        epilog=EPILOG,
    )
    compare.add_argument("specs", type=Path, nargs="+", metavar="SPEC", help="model specs")
    compare.add_argument(
        "--format",
        choices=("md", "csv", "json", "html", "latex"),
        default="md",
        help="output format (default: md)",
    )
    compare.add_argument(
        "--sort", choices=SORT_KEYS, help="order rows by this column (default: as given)"
    )
    compare.set_defaults(run=_compare)
    ops = commands.add_parser(
        "ops",
        help="list the primitive ops and their attributes",
        description="list the primitive ops and their attributes",
    )
    ops.set_defaults(run=_ops)
    return parser


def _command(
    commands: argparse._SubParsersAction, name: str, summary: str, run: object
) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=summary, description=summary, epilog=EPILOG)
    command.add_argument("spec", type=Path, help="model spec (YAML)")
    command.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a model param (repeatable)",
    )
    command.set_defaults(run=run)
    return command


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _compile(args: argparse.Namespace):
    from archc.pipeline import compile_spec

    overrides = {}
    for item in args.overrides:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise SpecError(f"--set expects NAME=VALUE, got {item!r}")
        overrides[name.strip()] = value.strip()
    return compile_spec(args.spec, overrides)


def _check(args: argparse.Namespace) -> int:
    compiled = _compile(args)
    total = compiled.costs.total
    graph = compiled.program.graph
    print(
        f"{args.spec}: ok: {graph.name}, {len(graph.nodes)} nodes, {total.params:,} params, "
        f"{total.macs / 1e9:.3f} GMACs, output {graph.type_of(graph.output)}"
    )
    return 0


def _stats(args: argparse.Namespace) -> int:
    from archc.render import stats

    compiled = _compile(args)
    table = stats.stats_per_layer if args.per_layer else stats.stats_table
    render = {"table": table, "json": stats.stats_json, "csv": stats.stats_csv}
    sys.stdout.write(render[args.format](compiled.program.graph.name, compiled.costs))
    return 0


def _build(args: argparse.Namespace) -> int:
    from archc.emit.files import write_atomic
    from archc.emit.flax.emitter import flax_source
    from archc.emit.torch.emitter import torch_source

    compiled = _compile(args)
    command = shlex.join(
        [
            "archc",
            "build",
            str(args.spec),
            "--backend",
            args.backend,
            *(f"--set={item}" for item in args.overrides),
        ]
    )
    emit = {"torch": torch_source, "flax": flax_source}[args.backend]
    text = emit(compiled.program, compiled.costs, command)
    path = args.out / args.backend / f"{compiled.program.graph.name}.py"
    write_atomic(path, text)
    total = compiled.costs.total
    print(f"wrote {path}: {total.params:,} params, {total.macs / 1e9:.3f} GMACs")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from archc.pipeline import compile_spec
    from archc.render import compare

    rows = []
    for spec in args.specs:
        compiled = compile_spec(spec)
        rows.append(
            compare.comparison_row(compiled.program.graph.name, spec.as_posix(), compiled.costs)
        )
    if args.sort:
        rows.sort(key=lambda row: getattr(row, args.sort))
    render = {
        "md": compare.compare_markdown,
        "csv": compare.compare_csv,
        "json": compare.compare_json,
        "html": compare.compare_html,
        "latex": compare.compare_latex,
    }
    sys.stdout.write(render[args.format](rows))
    return 0


def _diagram(args: argparse.Namespace) -> int:
    from archc.emit.files import write_atomic
    from archc.render.diagram import diagram_dot, render_dot

    compiled = _compile(args)
    dot = diagram_dot(compiled.program, compiled.costs, args.depth, args.rankdir)
    write_atomic(args.out, render_dot(dot, args.out))
    print(f"wrote {args.out}")
    return 0


def _ir(args: argparse.Namespace) -> int:
    from archc.ir.printer import format_graph

    sys.stdout.write(format_graph(_compile(args).program.graph))
    return 0


def _ops(args: argparse.Namespace) -> int:
    from archc.ops import REGISTRY

    for name in sorted(REGISTRY):
        op = REGISTRY[name]
        inputs = "2+ inputs" if op.arity is None else f"{op.arity} input"
        print(f"{name} ({inputs}): {op.summary}")
        for field, info in op.Attrs.model_fields.items():
            annotation = info.annotation
            kind = annotation.__name__ if isinstance(annotation, type) else str(annotation)
            default = "required" if info.is_required() else f"default {info.default!r}"
            print(f"    {field}: {kind.replace('typing.', '')}, {default}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
