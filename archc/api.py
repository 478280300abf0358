"""archc from Python: `load` compiles a spec once, and the model it gives answers what the
command line prints (stats, summaries, code, drawings) as plain data, and builds its generated
code in memory as a framework module. The command line is a thin layer over this.

    import archc
    model = archc.load("specs/resnet50.yaml", set={"num_classes": 10}, input=320)
    model.stats()["macs"]; print(model.summary()); net = model.torch()

A bad spec raises `archc.ArchcError`, whose `location` is the FILE:LINE:COL it points at.
"""

from __future__ import annotations

import functools
import json
import shlex
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archc.errors import ArchcError, InternalError
from archc.passes.memory import DTYPE_BYTES, OPTIMIZER_STATES, Memory, training_memory
from archc.pipeline import Compiled, FlippedValues, compile_spec, flipped_points
from archc.render import compare as compare_render
from archc.render import stats as stats_render

if TYPE_CHECKING:
    from archc.passes.inference import InferenceExport

Size = int | tuple[int, int]
"""An image size: 320 (square) or (height, width)."""

TEXT_NAME = "<spec>"
"""What errors call a spec given as text."""


def load(
    spec: str | Path, set: Mapping[str, Any] | None = None, input: Size | None = None
) -> Model:
    """Compile a spec: a path, or a spec's text (its imports resolve from the working folder).

    `set` overrides model params with Python values, as `--set NAME=VALUE` does
    (`{"num_classes": 10, "norm": {"op": "batch_norm", "eps": 1e-3}}`); `input` is the image
    size instead of the spec's.
    """
    return load_texts(spec, _as_texts(set), _size(input))


def load_texts(
    spec: str | Path,
    overrides: Mapping[str, str] | None = None,
    size: tuple[int, int] | None = None,
    emittable: bool = False,
) -> Model:
    """`load` with the overrides as `--set` gives them (YAML texts): the command line's.
    With `emittable`, also refuse what a backend could not write (`check`)."""
    path, text = _spec_source(spec)
    overrides = dict(overrides or {})
    compiled = compile_spec(path, overrides, size, text, emittable)
    return Model(compiled, path, overrides, size, text)


@dataclass(frozen=True)
class Model:
    """A compiled spec, and everything archc says about it."""

    compiled: Compiled
    path: Path
    overrides: dict[str, str]
    """The `--set` texts it was compiled with."""
    input_size: tuple[int, int] | None
    text: str | None = None
    """The spec's text, when it was given as text."""

    @property
    def name(self) -> str:
        return self.compiled.program.graph.name

    def stats(self, **options: Any) -> dict[str, Any]:
        """Params, buffers, MACs, FLOPs, activations, depth, per block and per node, and the
        training-memory estimate (`options`: batch, dtype, optimizer, and depth for the
        blocks): the keys of `archc stats --format json`."""
        return json.loads(self.stats_text("json", **options))

    def stats_text(
        self,
        format: str = "table",
        per_layer: bool = False,
        batch: int = 1,
        dtype: str = "fp32",
        optimizer: str = "sgd",
        depth: int = 1,
    ) -> str:
        """`archc stats` as text: table, json, csv or html; a row per module down to `depth`
        levels, or per primitive op; the training-memory estimate at `batch` (table, json)."""
        if format not in ("table", "json", "csv", "html"):
            raise ArchcError(f"unknown stats format {format!r}: expected table, json, csv or html")
        costs = self.compiled.costs
        if format == "csv":
            return stats_render.stats_csv(self.name, costs, depth, per_layer)
        if format == "html":
            return stats_render.stats_html(self.name, costs, depth, per_layer)
        memory = self.memory(batch, dtype, optimizer)
        if format == "json":
            return stats_render.stats_json(self.name, costs, memory, depth)
        if per_layer:
            return stats_render.stats_per_layer(self.name, costs, memory)
        return stats_render.stats_table(self.name, costs, memory, depth)

    def summary(self, depth: int = 1, per_layer: bool = False, **memory: Any) -> str:
        """The cost table, per module down to `depth` levels or per primitive op, and the
        memory line."""
        return self.stats_text("table", per_layer, depth=depth, **memory)

    def memory(self, batch: int = 1, dtype: str = "fp32", optimizer: str = "sgd") -> Memory:
        """What a training step holds at its peak, in bytes (archc.passes.memory)."""
        if dtype not in DTYPE_BYTES or optimizer not in OPTIMIZER_STATES:
            raise ArchcError(
                f"memory: expected a dtype of {', '.join(DTYPE_BYTES)} and an optimizer of "
                f"{', '.join(OPTIMIZER_STATES)}, got {dtype!r} and {optimizer!r}"
            )
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ArchcError(f"memory: expected a batch of at least 1, got {batch!r}")
        graph = self.compiled.program.graph
        return training_memory(graph, self.compiled.costs, batch, dtype, optimizer)

    def check_line(self) -> str:
        """What `archc check` prints: nodes, params, MACs and the output types."""
        total, graph = self.compiled.costs.total, self.compiled.program.graph
        return (
            f"{graph.name}, {len(graph.nodes)} nodes, {total.params:,} params, "
            f"{total.macs / 1e9:.3f} GMACs, output {graph.describe_outputs()}"
        )

    def ir(self) -> str:
        """The IR graph, one line per node (`archc ir`)."""
        from archc.ir.printer import format_graph

        return format_graph(self.compiled.program.graph)

    def source(
        self, backend: str = "torch", optimize: str | None = None, folder: Path | None = None
    ) -> str:
        """The generated file's text (`archc build`); `optimize="inference"` gives the
        inference export; `folder`, where it is to be written, makes its paths relative."""
        from archc.emit.flax.emitter import flax_source
        from archc.emit.torch.emitter import torch_source

        emitters = {"torch": torch_source, "flax": flax_source}
        _check_backend(backend)
        if optimize not in (None, "inference"):
            raise ArchcError(f"unknown optimization {optimize!r}: expected inference")
        program, costs = self.compiled.program, self.compiled.costs
        export = self.inference_export if optimize else None
        command = self.build_command(backend, optimize, folder)
        others = () if optimize else self.flipped.points
        return emitters[backend](program, costs, command, export, folder, others)

    def train_source(self, folder: Path | None = None, backend: str = "torch") -> str:
        """The training script's text (`archc build --train`) for `backend`, which imports
        the model's file from its own folder."""
        from archc.emit.training import train_source

        _check_backend(backend)
        command = self.build_command(backend, None, folder) + " --train"
        teacher = self.teacher.compiled.program if self.teacher else None
        return train_source(self.compiled.program, command, folder, backend, teacher)

    @functools.cached_property
    def teacher(self) -> Model | None:
        """The distillation teacher of the spec's `train:` section, compiled (None without)."""
        plan = self.compiled.program.train
        if plan is None or plan.distillation is None:
            return None
        return load(plan.distillation.teacher)

    @functools.cached_property
    def flipped(self) -> FlippedValues:
        """The model at each of its bool params the other way, for translation validation,
        and the values of them the spec refuses."""
        return flipped_points(self.compiled, self.path, self.overrides, self.input_size, self.text)

    @functools.cached_property
    def inference_export(self) -> InferenceExport:
        """The inference passes' rewrite of the model (norms folded, branches joined)."""
        from archc.passes.inference import inference_export

        return inference_export(self.compiled.program)

    def build_command(
        self, backend: str, optimize: str | None = None, folder: Path | None = None
    ) -> str:
        """The `archc build` command that writes this model's file (its header quotes it);
        with `folder`, the command run there that writes the file to it."""
        from archc.emit.source_file import shown_path

        size = [f"--input={self.input_size[0]}x{self.input_size[1]}"] if self.input_size else []
        spec = self.path.as_posix() if self.text is None else TEXT_NAME
        return shlex.join(
            [
                "archc",
                "build",
                shown_path(spec, folder),
                "--backend",
                backend,
                *(["-o", ".."] if folder is not None else []),
                *(f"--set={name}={value}" for name, value in self.overrides.items()),
                *size,
                *([f"--optimize={optimize}"] if optimize else []),
            ]
        )

    def module(self, backend: str = "torch", optimize: str | None = None) -> types.ModuleType:
        """The generated file, run in memory as a module of its own."""
        source = self.source(backend, optimize)
        module = types.ModuleType(f"archc_generated.{backend}.{self.name}")
        exec(compile(source, f"<archc {backend} {self.name}>", "exec"), module.__dict__)
        return module

    def torch(self, **options: Any) -> Any:
        """An `nn.Module` built from the generated code (`create_model(**options)`)."""
        return self.module("torch").create_model(**options)

    def flax(self, rngs: Any, **options: Any) -> Any:
        """An `nnx.Module` built from the generated code (`create_model(rngs, **options)`)."""
        return self.module("flax").create_model(rngs, **options)

    def diagram(
        self, path: str | Path | None = None, *, depth: int | None = None, rankdir: str = "TB"
    ) -> bytes:
        """The drawing as SVG (or, with `path`, in its format, written there atomically)."""
        from archc.emit.files import write_atomic
        from archc.render.diagram import diagram_dot, render_dot

        program, costs = self.compiled.program, self.compiled.costs
        target = Path(path) if path is not None else Path(f"{self.name}.svg")
        drawing = render_dot(diagram_dot(program, costs, depth, rankdir), target)
        if path is not None:
            write_atomic(target, drawing)
        return drawing

    def _repr_html_(self) -> str:
        return self.stats_text("html")

    def _repr_svg_(self) -> str | None:
        try:
            return self.diagram().decode()
        except ArchcError:  # no Graphviz here: the notebook shows the table instead
            return None


@dataclass(frozen=True)
class Comparison:
    """`archc compare`'s rows; a size a model refuses is a row marked refused, its error in
    `errors`."""

    rows: list[compare_render.Row]
    errors: list[ArchcError]

    def table(self, format: str = "md") -> str:
        renderers = {
            "md": compare_render.compare_markdown,
            "csv": compare_render.compare_csv,
            "json": compare_render.compare_json,
            "html": compare_render.compare_html,
            "latex": compare_render.compare_latex,
        }
        return renderers[format](self.rows)

    def sorted(self, key: str) -> Comparison:
        return Comparison(sorted(self.rows, key=lambda row: getattr(row, key)), self.errors)

    def plot(self, path: str | Path | None = None, accuracy: str | Path | None = None) -> bytes:
        """MACs against params with the Pareto frontier, or with `accuracy` (a CSV of
        `model,accuracy` in %) accuracy against MACs: SVG, or written to `path` (.svg, .png,
        .pdf) atomically."""
        from archc.emit.files import write_atomic
        from archc.render.plot import pareto_plot, read_accuracy, render_plot

        scores = read_accuracy(Path(accuracy)) if accuracy is not None else None
        svg = pareto_plot([row for row in self.rows if not row.error], scores)
        if path is None:
            return svg.encode()
        drawing = render_plot(svg, Path(path))
        write_atomic(Path(path), drawing)
        return drawing

    def _repr_html_(self) -> str:
        return self.table("html")


def compare(
    specs: Iterable[str | Path],
    set: Mapping[str, Any] | None = None,
    input: Iterable[Size] | None = None,
) -> Comparison:
    """One row per spec and input size (`archc compare`)."""
    return compare_texts(specs, _as_texts(set), [_size(size) for size in input or []])


def compare_texts(
    specs: Iterable[str | Path],
    overrides: Mapping[str, str] | None = None,
    sizes: Iterable[tuple[int, int]] | None = None,
) -> Comparison:
    """`compare` with the overrides as `--set` gives them: the command line's."""
    rows, errors = [], []
    for spec in specs:
        for size in list(sizes or [None]):
            try:
                model = load_texts(spec, overrides, size)
            except ArchcError as error:
                if size is None:  # the spec itself is wrong, not the size asked of it
                    raise
                errors.append(error)
                label = spec.as_posix() if isinstance(spec, Path) else str(spec)
                rows.append(compare_render.refused_row(label, size, error.message))
                continue
            label = model.path.as_posix() if model.text is None else TEXT_NAME
            rows.append(compare_render.comparison_row(model.name, label, model.compiled.costs))
    return Comparison(rows, errors)


def import_spec(model: Any, name: str | None = None, size: tuple[int, ...] | None = None) -> str:
    """The text of a spec that builds an existing PyTorch model again (`archc import`):
    `model` is `torchvision:NAME`, `timm:NAME`, `module:callable` or an nn.Module. The spec
    is compiled before it is returned, and must count the model's params and buffers."""
    from archc.importer.model import imported_spec
    from archc.importer.sources import DEFAULT_INPUT, load_source

    if isinstance(model, str):
        origin = model.partition(":")[0]
        name_found, model, size_found = load_source(model)
    else:
        origin, name_found, size_found = (
            "its Python code",
            type(model).__name__.lower(),
            DEFAULT_INPUT,
        )
    name, size = name or name_found, size or size_found
    text = imported_spec(model, name, origin, size)
    try:
        total = load(text).compiled.costs.total
    except ArchcError as error:  # what the importer writes must compile
        raise InternalError("import", f"the spec written does not compile: {error}") from None
    params = sum(tensor.numel() for tensor in model.parameters())
    buffers = sum(tensor.numel() for tensor in model.buffers())
    if (total.params, total.buffers) != (params, buffers):
        raise InternalError(
            "import",
            f"the spec counts {total.params:,} params and {total.buffers:,} buffers, the model "
            f"{params:,} and {buffers:,}",
        )
    return text


def _check_backend(backend: str) -> None:
    if backend not in ("torch", "flax"):
        raise ArchcError(f"unknown backend {backend!r}: expected torch or flax")


def _as_texts(values: Mapping[str, Any] | None) -> dict[str, str]:
    """Python values as `--set` texts: JSON is YAML 1.2."""
    return {name: json.dumps(value) for name, value in (values or {}).items()}


def _spec_source(spec: str | Path) -> tuple[Path, str | None]:
    """A path to read, or (for a spec's text) the name errors give it and the text."""
    if isinstance(spec, str) and ("\n" in spec or spec.lstrip().startswith("archc:")):
        return Path(TEXT_NAME), spec
    return Path(spec), None


def _size(value: Size | None) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else tuple(value)
    whole = [isinstance(side, int) and not isinstance(side, bool) and side >= 1 for side in pair]
    if len(pair) != 2 or not all(whole):
        raise ArchcError(f"input: expected a size like 320 or (320, 256), got {value!r}")
    return pair
