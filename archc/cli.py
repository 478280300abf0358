"""The `archc` command line."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from archc import __version__
from archc.errors import ArchcError, InternalError, SpecError
from archc.render import SORT_KEYS

if TYPE_CHECKING:
    from archc.api import Model

EPILOG = (
    "Errors in a spec are reported as FILE:LINE:COL: error: message, with exit status 2; "
    "a bug in archc exits with status 3."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with _without_cycle_collection():
            return args.run(args)
    except ArchcError as error:
        print(error.render(), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `archc ops | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:
        if args.debug:
            raise
        if not isinstance(error, InternalError):
            error = InternalError(args.command, f"{type(error).__name__}: {error}")
        print(f"archc: {error}; rerun with --debug for the traceback", file=sys.stderr)
        return 3


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """A command makes millions of objects and few cycles: the cycle collector, rescanning
    them all over and over, would cost a third of a 100,000-op check. It is back on after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archc",
        description="Compile declarative YAML architecture specs: check shapes, count params "
        "and MACs, emit PyTorch code.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an internal error"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _command(commands, "check", "validate a spec and check every shape", _check)
    stats = _command(commands, "stats", "params, buffers, MACs, FLOPs, activations", _stats)
    stats.add_argument(
        "--format",
        choices=("table", "json", "csv", "html"),
        default="table",
        help="output format (default: table)",
    )
    stats.add_argument(
        "--per-layer",
        action="store_true",
        help="one row per primitive op (name, op, output shape, params, MACs, share), in "
        "every format (the JSON lists them under 'nodes' anyway)",
    )
    stats.add_argument(
        "--depth",
        type=_positive,
        default=1,
        metavar="N",
        help="one row per module down to N levels of the model (2: layer1, layer1.0, …); "
        "default 1, the top-level blocks",
    )
    stats.add_argument(
        "--batch",
        type=_positive,
        default=1,
        metavar="N",
        help="the batch of the training-memory estimate (default 1; the counts are per sample)",
    )
    stats.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="the activations' dtype in the memory estimate; parameters stay fp32 (default fp32)",
    )
    stats.add_argument(
        "--optimizer",
        choices=("sgd", "adam", "none"),
        default="sgd",
        help="state per parameter in the memory estimate: sgd (momentum) 1, adam 2 (default sgd)",
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
    build.add_argument(
        "--optimize",
        choices=("inference",),
        help="inference: the inference export, DIR/<backend>/<name>_inference.py, with each "
        "batch norm folded into its conv and inference_state_dict() to convert a training "
        "checkpoint (the default build keeps the training model's parameters)",
    )
    build.add_argument(
        "--train",
        action="store_true",
        help="also write DIR/<backend>/<name>_train.py, the spec's train: section as a script "
        "that imports the model file: torch under torchrun (DDP or FSDP2), flax as one jitted "
        "step over a jax mesh; checkpoints, resume, metrics (and a distillation teacher's "
        "model file)",
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
        help="levels of blocks drawn open as clusters; deeper ones are boxes (default: the "
        "deepest that keeps the drawing within 20 boxes, the first block of each kind drawn "
        "open, a U-Net as a U, a tall drawing wrapped into columns)",
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
    compare.add_argument(
        "--input",
        type=_image_sizes,
        metavar="SIZES",
        help="image sizes, one row per model and size: 224,320 or 320x256 "
        "(default: each spec's own); a size a model refuses is a row marked refused, its "
        "located reason on stderr, and the exit status 2",
    )
    compare.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="also draw MACs against params (log axes) with the Pareto frontier marked, "
        "every point labelled: FILE.svg, .png or .pdf (these two need CairoSVG)",
    )
    compare.add_argument(
        "--accuracy",
        type=Path,
        metavar="FILE.csv",
        help="with --plot: draw accuracy against MACs instead, from a CSV with the header "
        "model,accuracy (top-1 in %%); models it lacks are left out of the plot",
    )
    _add_model_options(compare)
    compare.set_defaults(run=_compare)
    diff = commands.add_parser(
        "diff",
        help="what differs per block between two models (params, MACs, shapes)",
        description="what differs per block between two models (params, MACs, output shapes); "
        "blocks are matched by path (layer1.0)",
        epilog=EPILOG,
    )
    diff.add_argument("before", type=Path, metavar="A", help="model spec (YAML)")
    diff.add_argument("after", type=Path, metavar="B", help="model spec (YAML); may be A again")
    _add_model_options(diff)
    diff.set_defaults(run=_diff)
    diff.add_argument(
        "--depth",
        type=_positive,
        default=2,
        metavar="N",
        help="levels of nesting listed (default: 2, stages and their blocks)",
    )
    diff.add_argument(
        "-o",
        "--out",
        type=Path,
        metavar="FILE",
        help="also draw B with the changed blocks outlined in red (.svg, .png, .pdf, .dot)",
    )
    imports = commands.add_parser(
        "import",
        help="write an existing PyTorch model as a spec",
        description="write an existing PyTorch model as a spec: its module tree kept (node "
        "names are its state_dict paths), library layers as ops, other modules' forwards "
        "traced with torch.fx into blocks, instances of a class sharing a definition with "
        "params for what differs; the spec is compiled and must count the model's params",
        epilog=EPILOG,
    )
    imports.add_argument(
        "model", metavar="MODEL", help="torchvision:NAME, timm:NAME or module:callable"
    )
    imports.add_argument(
        "-o", "--out", type=Path, required=True, metavar="FILE.yaml", help="the spec to write"
    )
    imports.set_defaults(run=_import)
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
    _add_model_options(command)
    command.add_argument(
        "--input",
        type=_image_size,
        metavar="SIZE",
        help="image height and width instead of the spec's: 320 or 320x256",
    )
    command.set_defaults(run=run)
    return command


def _add_model_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a model param (repeatable)",
    )


def _image_size(text: str) -> tuple[int, int]:
    """'320' or '320x256' as (height, width)."""
    parts = text.lower().split("x")
    if len(parts) > 2 or not all(part.strip().isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"expected a size like 320 or 320x256, got {text!r}")
    height, width = (int(parts[0]), int(parts[-1]))
    return height, width


def _image_sizes(text: str) -> list[tuple[int, int]]:
    return [_image_size(item) for item in text.split(",")]


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    overrides = {}
    for item in args.overrides:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise SpecError(f"--set expects NAME=VALUE, got {item!r}")
        overrides[name.strip()] = value.strip()
    return overrides


def _load(args: argparse.Namespace, emittable: bool = False) -> Model:
    from archc.api import load_texts

    return load_texts(args.spec, _overrides(args), args.input, emittable)


def _check(args: argparse.Namespace) -> int:
    print(f"{args.spec}: ok: {_load(args, emittable=True).check_line()}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    model = _load(args)
    options = {"batch": args.batch, "dtype": args.dtype, "optimizer": args.optimizer}
    text = model.stats_text(args.format, args.per_layer, depth=args.depth, **options)
    sys.stdout.write(text)
    return 0


def _build(args: argparse.Namespace) -> int:
    from archc.emit.files import write_atomic

    model = _load(args)
    suffix = "_inference" if args.optimize else ""
    path = args.out / args.backend / f"{model.name}{suffix}.py"
    text = model.source(args.backend, args.optimize, path.parent)
    if args.train and args.optimize:
        raise ArchcError("--train trains the training model: leave out --optimize")
    # Checked before anything is written.
    written = {path: text}
    if args.train:
        from archc.emit.training import script_name

        script = model.train_source(path.parent, args.backend)
        written[path.parent / script_name(model.name)] = script
        if model.teacher is not None:  # the script imports its model file
            teacher = model.teacher.source(args.backend, None, path.parent)
            written[path.parent / f"{model.teacher.name}.py"] = teacher
    for target, content in written.items():
        write_atomic(target, content)
    for name, value, error in [] if args.optimize else model.flipped.refused:
        context = f"the file's create_model({name}={value}) builds what the spec refuses: "
        print(error.render("warning", context), file=sys.stderr)
    total = (model.inference_export.costs if args.optimize else model.compiled.costs).total
    print(f"wrote {path}: {total.params:,} params, {total.macs / 1e9:.3f} GMACs")
    for target in list(written)[1:]:
        print(f"wrote {target}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from archc.api import compare_texts

    if args.accuracy is not None and args.plot is None:
        raise ArchcError("--accuracy draws a plot: give --plot FILE too")
    comparison = compare_texts(args.specs, _overrides(args), args.input)
    for error in comparison.errors:  # the located reason of each refused size
        print(error.render(), file=sys.stderr)
    if args.sort:
        comparison = comparison.sorted(args.sort)
    sys.stdout.write(comparison.table(args.format))
    if args.plot is not None:
        comparison.plot(args.plot, args.accuracy)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 2 if comparison.errors else 0


def _diagram(args: argparse.Namespace) -> int:
    _load(args).diagram(args.out, depth=args.depth, rankdir=args.rankdir)
    print(f"wrote {args.out}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from archc.api import load_texts
    from archc.emit.files import write_atomic
    from archc.render.diagram import diagram_dot, render_dot
    from archc.render.diff import changes, diff_table

    before = load_texts(args.before).compiled
    after = load_texts(args.after, _overrides(args)).compiled
    found = changes(before, after)
    sets = "".join(f" --set {item}" for item in args.overrides)
    names = (str(args.before), f"{args.after}{sets}")
    sys.stdout.write(diff_table(names, before, after, found, args.depth))
    if args.out is not None:
        changed = {change.path for change in found}
        dot = diagram_dot(after.program, after.costs, None, "TB", changed)
        write_atomic(args.out, render_dot(dot, args.out))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _ir(args: argparse.Namespace) -> int:
    sys.stdout.write(_load(args).ir())
    return 0


def _import(args: argparse.Namespace) -> int:
    from archc.api import import_spec
    from archc.emit.files import write_atomic

    text = import_spec(args.model)
    write_atomic(args.out, text)
    print(f"wrote {args.out}: {text.count(chr(10))} lines")
    return 0


def _ops(args: argparse.Namespace) -> int:
    from archc.ops import REGISTRY
    from archc.ops.init import KINDS

    for name in sorted(REGISTRY):
        op = REGISTRY[name]
        inputs = "2+ inputs" if op.arity is None else f"{op.arity} input"
        print(f"{name} ({inputs}): {op.summary}")
        for name, field in op.Attrs.fields().items():
            default = "required" if field.required else f"default {field.default!r}"
            print(f"    {name}: {field.describe()}, {default}")
    print("initialisers (init:):")
    for name, kind in KINDS.items():
        argument = {"number": "a number", "fan": "fan_in | fan_out"}.get(kind.argument)
        print(f"    {f'{{{name}: {argument}}}' if argument else name}: {kind.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
