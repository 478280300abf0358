"""Typed spec documents: the strict schema of models, block libraries, params and nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc import BLOCKS
from archc.boundary import (
    CLASS_RESERVED,
    MODEL_RESERVED,
    PARAM_RESERVED,
    check_name,
    check_node_name,
    model_class_name,
)
from archc.errors import ArchcError, Location, SpecError, did_you_mean
from archc.spec.loader import SpecList, SpecMap, load_spec_text, load_yaml

SPEC_VERSION = 1
PARAM_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "bool": bool,
    "str": str,
    "list": list,
    "size": (int, list, tuple),
    "op": (str, dict),
}
"""`size` is an int or an (h, w) pair, as a kernel, stride or padding; `op` names an op, or
gives it with attributes (`{op: batch_norm, eps: 1.0e-3}`), that nodes of the block build by
the param's name (`bn1: norm`), as torchvision's `norm_layer`."""
DOCUMENT_KEYS = {
    "archc": "spec language version (write `archc: 1`)",
    "name": "model name",
    "doc": "description",
    "imports": "block libraries to import, relative to this file",
    "params": "model parameters, overridable with --set",
    "let": "derived values",
    "input": "input shape without the batch axis, e.g. [3, 224, 224]",
    "expect": "golden values checked at build: params, buffers, macs",
    "init": "how parameters start: {op or Block.node: {param: initialiser}}",
    "train": "how to train it: loss, optimizer, schedule, epochs, batch_size, …",
    "blocks": "block definitions",
    "body": "the model's nodes",
    "outputs": "named outputs, returned as a dict: {name: node}",
    "postprocess": "the detection stage after the network: stage ops, and the modules they feed",
}
MODEL_ONLY_KEYS = (
    "name",
    "params",
    "let",
    "input",
    "expect",
    "body",
    "outputs",
    "init",
    "train",
    "postprocess",
)
BLOCK_KEYS = ("doc", "params", "let", "inputs", "output_channels", "body", "outputs")
NODE_KEYS = (
    "op",
    "block",
    "call",
    "seq",
    "branches",
    "from",
    "when",
    "repeat",
    "names",
    "frozen",
    "shared",
    "within",
)
SEQUENCE_REFERENCES = ("previous", "input")
"""What an item of a sequence may read with `from:`: the item before, the sequence's input."""
EXPECT_KEYS = ("params", "buffers", "macs")


@dataclass(frozen=True)
class Value:
    """A raw spec value (literal or expression text) and where it was written."""

    raw: Any
    location: Location
    key_location: Location | None = None
    """Where its key stands, for errors about the key itself (unknown, misspelt)."""


@dataclass(frozen=True)
class ParamDef:
    name: str
    type: str
    default: Value | None
    location: Location


@dataclass
class NodeSpec:
    """One entry of a body: an op, a block instance, or (a YAML list) a numbered sequence."""

    name: str
    location: Location
    target: str = ""
    kind: str = ""
    """'op' or 'block' when written out, 'call' for `call: <node>` (the module an earlier node
    made, run again on this node's inputs); '' for a sequence or the `relu`-style
    shorthand."""
    args: dict[str, Value] = field(default_factory=dict)
    items: list[NodeSpec] | None = None
    parallel: bool = False
    """`branches:` rather than a sequence: every item reads the node's input, and the node's
    value is the list of their outputs (nn.ModuleList)."""
    sources: list[Value] | None = None
    when: Value | None = None
    repeat: Value | None = None
    names: Value | None = None
    """With `repeat:` in a body, the copies' names: a template such as `denselayer{i + 1}`."""
    frozen: Value | None = None
    """A bool: the node's parameters (all of them, through every block inside) are not
    trained (torch's `requires_grad_(False)`)."""
    shared: bool = False
    """`shared: true`: one module called on each of the node's inputs in turn (a detection
    head applied to every pyramid level); the node's value is the list of its outputs."""
    within: Value | None = None
    """`within: <node>`: the block's module is kept inside an earlier block node's module
    (torchvision's mask head in `roi_heads`, beside the box head), its state at that path."""


@dataclass
class BlockDef:
    name: str
    location: Location
    params: dict[str, ParamDef]
    lets: dict[str, Value]
    inputs: list[str]
    body: list[NodeSpec]
    doc: str = ""
    output_channels: Value | None = None
    """What the block promises to produce: checked against inference, written in loops."""
    sequential: bool = False
    """A body written as a YAML list: the block is a numbered sequence (nn.Sequential)."""
    outputs: list[Value] | None = None
    """Values the block returns as a list (torchvision's stages for an FPN); None: its last."""


@dataclass(frozen=True)
class InitRule:
    """One entry of `init:`: the layers it covers (an op's name, or `Block.node`, the model's
    name standing for its body) and each param's initialiser, as written."""

    target: str
    location: Location
    params: dict[str, Value]
    when: Value | None = None
    """A `Block.node` rule's condition, an expression of the model's params
    (`when: zero_init_residual`): the rule applies where it holds."""
    op: Value | None = None
    """A sequence's rule: the op whose layers it starts, the others left alone (torchvision's
    `if isinstance(layer, nn.Conv2d)` in its loop over a head's modules)."""


@dataclass
class ModelSpec:
    root: BlockDef
    input: Value
    expect: dict[str, Value]
    blocks: dict[str, BlockDef]
    path: Path
    outputs: dict[str, Value] = field(default_factory=dict)
    """Output name → the node it returns; empty: the body's last node, unnamed."""
    imported_at: dict[str, Location] = field(default_factory=dict)
    """A block library (as errors name it) → the `imports:` entry that first brought it in."""
    init: list[InitRule] = field(default_factory=list)
    """The `init:` rules, in order (archc.resolve.init reads them)."""
    train: Value | None = None
    """The `train:` section as written (archc.train.plan checks it)."""
    postprocess: list[NodeSpec] = field(default_factory=list)
    """The detection stage: nodes of stage ops after the body, reading its values; the
    generated model's `detect()` and `loss()` return what they give."""

    def import_notes(self, error: ArchcError) -> None:
        """Add to an error inside a block library the chain of lines that imported it."""
        file = error.location.file if error.location else None
        while file in self.imported_at and len(error.notes) < len(self.imported_at):
            where = self.imported_at[file]
            error.notes.append((where, f"{file} is imported here"))
            file = where.file


def display_path(path: Path) -> str:
    """The path as errors show it: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else Path(relative).as_posix()


def load_model(path: Path, text: str | None = None) -> ModelSpec:
    """Load a model spec and every block library it imports, transitively. With `text`, the
    spec is that text, named `path` in errors (its imports resolve from path's folder)."""
    path = path.resolve()
    document = _load_document(path, text)
    if "body" not in document:
        raise SpecError("a model spec needs a 'body'", document.location)
    blocks: dict[str, BlockDef] = {}
    imported_at: dict[str, Location] = {}
    _collect_blocks(path, document, blocks, [path], imported_at)
    for key in ("name", "input"):
        if key not in document:
            raise SpecError(
                f"missing required key '{key}' ({DOCUMENT_KEYS[key]})", document.location
            )
    name = check_name(document["name"], document.value_at("name"), "name", MODEL_RESERVED)
    if model_class_name(name) in CLASS_RESERVED:
        raise SpecError(
            f"the model's class would be {model_class_name(name)}, a name the generated file "
            "already defines or imports",
            document.value_at("name"),
            "rename the model",
        )
    if model_class_name(name) in blocks:
        raise SpecError(
            f"the model's class {model_class_name(name)} would be block "
            f"{model_class_name(name)} (at {blocks[model_class_name(name)].location})",
            document.value_at("name"),
            "rename the model or the block",
        )
    root = BlockDef(
        name=name,
        location=document.location,
        params=_parse_params(document.get("params"), document, PARAM_RESERVED, True),
        lets=_parse_lets(document, PARAM_RESERVED),
        inputs=["input"],
        body=_parse_body(document["body"], document.value_at("body")),
        doc=str(document.get("doc", "")),
    )
    _check_own_names(root)
    expect = _parse_expect(document)
    input_value = Value(document["input"], document.value_at("input"))
    outputs = _parse_outputs(document)
    init = _parse_init(document)
    train = Value(document["train"], document.value_at("train")) if "train" in document else None
    postprocess = _parse_postprocess(document, root)
    return ModelSpec(
        root, input_value, expect, blocks, path, outputs, imported_at, init, train, postprocess
    )


def _parse_postprocess(document: SpecMap, root: BlockDef) -> list[NodeSpec]:
    """`postprocess:` nodes, named apart from the body's."""
    if "postprocess" not in document:
        return []
    nodes = _parse_body(document["postprocess"], document.value_at("postprocess"))
    body = {node.name for node in root.body}
    for node in nodes:
        if node.name in body:
            raise SpecError(
                f"postprocess: node '{node.name}' is already a node of the body",
                node.location,
            )
        if node.repeat is not None or node.when is not None or node.shared or node.items:
            raise SpecError(
                f"postprocess: node '{node.name}' must be one stage op or module, without "
                "repeat:, when:, shared: or a sequence",
                node.location,
            )
    return nodes


def _load_document(path: Path, text: str | None = None) -> SpecMap:
    display = display_path(path)
    document = load_yaml(path, display) if text is None else load_spec_text(text, display)
    if not isinstance(document, SpecMap):
        raise SpecError(
            "a spec must be a YAML mapping",
            getattr(document, "location", None) or Location(display_path(path), 1, 1),
        )
    check_keys(document, DOCUMENT_KEYS, "spec")
    version = document.get("archc")
    if version is None:
        raise SpecError(
            "missing required key 'archc' (the spec language version)",
            document.location,
            hint=f"write `archc: {SPEC_VERSION}`",
        )
    if version != SPEC_VERSION:
        raise SpecError(
            f"unsupported spec version: expected {SPEC_VERSION}, got {version!r}",
            document.value_at("archc"),
        )
    return document


def _collect_blocks(
    path: Path,
    document: SpecMap,
    blocks: dict[str, BlockDef],
    chain: list[Path],
    imported_at: dict[str, Location],
) -> None:
    """The blocks of a document and of the libraries it imports, depth first; `chain` is
    the import path from the model spec to this document."""
    imports = document.get("imports")
    if imports is None:
        imports = SpecList()
    elif not isinstance(imports, SpecList):
        raise SpecError(
            f"imports must be a list of paths, got {imports!r}", document.value_at("imports")
        )
    for index, entry in enumerate(imports):
        location = imports.item_at(index)
        target = _import_target(entry, location, path, chain[0].parent)
        if target in chain:
            cycle = " → ".join(display_path(file) for file in [*chain, target])
            raise SpecError(f"imports form a cycle: {cycle}", location)
        if display_path(target) in imported_at:  # already loaded along another path
            continue
        imported_at[display_path(target)] = location
        try:
            library = _load_document(target)
            for key in MODEL_ONLY_KEYS:
                if key in library:
                    raise SpecError(f"a block library cannot have '{key}'", library.key_at(key))
            _collect_blocks(target, library, blocks, [*chain, target], imported_at)
        except ArchcError as error:  # also show the line that imported the file at fault
            last = error.notes[-1][0] if error.notes else error.location
            if last is not None and last.file == display_path(target):
                error.notes.append((location, f"{display_path(target)} is imported here"))
            raise
    definitions = document.get("blocks", SpecMap())
    if not isinstance(definitions, SpecMap):
        raise SpecError("blocks must be a mapping of block names", document.value_at("blocks"))
    for name, definition in definitions.items():
        check_name(name, definitions.key_at(name), "block name", CLASS_RESERVED)
        if name in blocks:
            raise SpecError(
                f"block '{name}' is defined twice (first at {blocks[name].location})",
                definitions.key_at(name),
            )
        blocks[name] = _parse_block(name, definition, definitions.value_at(name))
        _check_own_names(blocks[name])


def _check_own_names(block: BlockDef) -> None:
    """A block's class keeps the `use_<node>` switch and `num_<node>` count of a node beside
    its nodes: a node by one of those names would overwrite one of them."""
    if block.sequential:
        return
    names = {node.name for node in block.body}
    for node in block.body:
        if node.name[:4] in ("use_", "num_") and node.name[4:] in names:
            raise SpecError(
                f"node name '{node.name}' is taken: the class keeps the switch or count of "
                f"node '{node.name[4:]}' under it",
                node.location,
                "rename it",
            )


def _import_target(entry: Any, location: Location, path: Path, root: Path) -> Path:
    """Where an `imports:` entry points: a shipped library (`archc:resnet`), or a file
    relative to the importing one, inside the model spec's folder tree or the shipped
    libraries' folder, nowhere else."""
    text = str(entry)
    shipped = sorted(file.stem for file in BLOCKS.glob("*.yaml"))
    if text.startswith("archc:"):
        name = text.removeprefix("archc:")
        if name not in shipped:
            hint = did_you_mean(name, shipped) or f"shipped: {', '.join(shipped)}"
            raise SpecError(f"no shipped block library named {text!r}", location, hint)
        return BLOCKS / f"{name}.yaml"
    if not isinstance(entry, str) or not entry or Path(text).is_absolute():
        raise SpecError(
            f"imports: expected a path relative to this file or archc:NAME, got {entry!r}",
            location,
        )
    target = (path.parent / text).resolve()
    if not (target.is_relative_to(root) or target.is_relative_to(BLOCKS)):
        raise SpecError(
            f"import {text!r} leaves the spec's folder",
            location,
            "imports stay inside the folder of the model spec, or name a shipped library "
            "(archc:NAME)",
        )
    if not target.is_file():
        raise SpecError(f"imported file not found: {text}", location)
    return target


def _parse_block(name: str, definition: Any, location: Location) -> BlockDef:
    if not isinstance(definition, SpecMap):
        raise SpecError(f"block '{name}' must be a mapping with a body", location)
    check_keys(definition, BLOCK_KEYS, f"block '{name}'")
    if "body" not in definition:
        raise SpecError(f"block '{name}' needs a 'body'", location)
    inputs = definition.get("inputs", ["input"])
    if "inputs" in definition and not (isinstance(inputs, SpecList) and inputs):
        raise SpecError(
            f"inputs must be a list of names, got {inputs!r}", definition.value_at("inputs")
        )
    if "inputs" in definition:  # locals of the call method, made unique there
        for index, input_name in enumerate(inputs):
            check_name(input_name, inputs.item_at(index), "input name", frozenset())
    # A block's constructor takes its inputs' channel counts under these names.
    channels = frozenset(["in_channels", *(f"{input_name}_channels" for input_name in inputs)])
    body, body_location = definition["body"], definition.value_at("body")
    sequential = isinstance(body, SpecList)
    if sequential and len(inputs) != 1:
        raise SpecError(f"block '{name}': a sequence body takes one input", body_location)
    return BlockDef(
        name=name,
        location=location,
        params=_parse_params(definition.get("params"), definition, PARAM_RESERVED | channels),
        lets=_parse_lets(definition, PARAM_RESERVED | channels),
        inputs=list(inputs),
        body=(
            _parse_sequence(name, body, body_location)
            if sequential
            else _parse_body(body, body_location)
        ),
        doc=str(definition.get("doc", "")),
        output_channels=(
            Value(definition["output_channels"], definition.value_at("output_channels"))
            if "output_channels" in definition
            else None
        ),
        sequential=sequential,
        outputs=_parse_block_outputs(name, definition, sequential),
    )


def _parse_block_outputs(name: str, definition: SpecMap, sequential: bool) -> list[Value] | None:
    """`outputs: [layer1, layer2, "fpn[0]"]`: what a block returns, as a list."""
    if "outputs" not in definition:
        return None
    listed = definition["outputs"]
    location = definition.value_at("outputs")
    if (
        not isinstance(listed, SpecList)
        or not listed
        or not all(isinstance(item, str) for item in listed)
    ):
        raise SpecError(f"block '{name}': outputs must be a list of node names", location)
    if sequential:
        raise SpecError(f"block '{name}': a sequence returns its last item, not outputs", location)
    if "output_channels" in definition:
        raise SpecError(
            f"block '{name}': output_channels promises one output, but it has outputs:",
            definition.key_at("output_channels"),
        )
    return [Value(item, listed.item_at(index)) for index, item in enumerate(listed)]


def _parse_params(
    section: Any, owner: SpecMap, reserved: frozenset[str], require_defaults: bool = False
) -> dict[str, ParamDef]:
    if section is None:
        return {}
    if not isinstance(section, SpecMap):
        raise SpecError("params must be a mapping of names", owner.value_at("params"))
    params = {}
    for name, entry in section.items():
        location = section.value_at(name)
        check_name(name, section.key_at(name), "param name", reserved)
        if isinstance(entry, str) and entry in PARAM_TYPES:
            kind, default = entry, None
        elif isinstance(entry, SpecMap) and "type" in entry:
            check_keys(entry, ("type", "default", "doc"), f"param '{name}'")
            kind = entry["type"]
            if kind not in PARAM_TYPES:
                raise SpecError(
                    f"unknown param type {kind!r}",
                    entry.value_at("type"),
                    did_you_mean(str(kind), PARAM_TYPES) or f"one of {', '.join(PARAM_TYPES)}",
                )
            default = (
                Value(entry["default"], entry.value_at("default")) if "default" in entry else None
            )
        else:
            kind, default = _type_of_literal(entry), Value(entry, location)
        if default is None and require_defaults:
            raise SpecError(f"model param '{name}' needs a default value", location)
        if default is not None and not matches_type(default.raw, kind):
            raise SpecError(
                f"param '{name}': expected a {kind} default, got {default.raw!r}", location
            )
        params[name] = ParamDef(name, kind, default, location)
    return params


def matches_type(value: Any, kind: str) -> bool:
    """Whether a concrete value is of a param type (a bool is not an int here)."""
    if kind == "size" and isinstance(value, (list, tuple)):
        return len(value) == 2 and all(matches_type(item, "int") for item in value)
    if kind == "op" and isinstance(value, dict):  # `{op: batch_norm, eps: 1.0e-3}`
        return isinstance(value.get("op"), str)
    return isinstance(value, PARAM_TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))


def _type_of_literal(value: Any) -> str:
    if isinstance(value, dict) and "op" in value:
        return "op"
    for name in ("bool", "int", "float", "str", "list"):
        if isinstance(value, PARAM_TYPES[name]):
            return name
    return "str"


def _parse_lets(owner: SpecMap, reserved: frozenset[str]) -> dict[str, Value]:
    section = owner.get("let", SpecMap())
    if not isinstance(section, SpecMap):
        raise SpecError("let must be a mapping of names to expressions", owner.value_at("let"))
    for name in section:
        check_name(name, section.key_at(name), "let name", reserved)
    return {name: Value(raw, section.value_at(name)) for name, raw in section.items()}


def _parse_expect(document: SpecMap) -> dict[str, Value]:
    section = document.get("expect", SpecMap())
    if not isinstance(section, SpecMap):
        raise SpecError("expect must be a mapping", document.value_at("expect"))
    check_keys(section, EXPECT_KEYS, "expect")
    for key, value in section.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(
                f"expect.{key}: expected an integer, got {value!r}", section.value_at(key)
            )
    return {key: Value(value, section.value_at(key)) for key, value in section.items()}


def _parse_init(document: SpecMap) -> list[InitRule]:
    """`init: {conv2d: {weight: {kaiming_normal: fan_out}}, Bottleneck.bn3: {weight: zeros}}`:
    the shape only; archc.resolve.init checks the names against the model."""
    section = document.get("init", SpecMap())
    if not isinstance(section, SpecMap):
        raise SpecError(
            "init must be a mapping of ops or Block.node names to {param: initialiser}",
            document.value_at("init"),
        )
    rules = []
    for target, params in section.items():
        if not isinstance(target, str) or not isinstance(params, SpecMap) or not params:
            raise SpecError(
                f"init.{target}: expected a mapping of params to initialisers, e.g."
                " {weight: {normal: 0.01}, bias: zeros}",
                section.value_at(target),
            )
        values = {
            str(name): Value(raw, params.value_at(name), params.key_at(name))
            for name, raw in params.items()
        }
        when, op = values.pop("when", None), values.pop("op", None)
        if not values:
            raise SpecError(
                f"init.{target}: a condition without initialisers: expected params too, e.g."
                " {weight: zeros, when: zero_init_residual}",
                section.value_at(target),
            )
        rules.append(InitRule(target, section.key_at(target), values, when, op))
    return rules


def _parse_outputs(document: SpecMap) -> dict[str, Value]:
    """`outputs: {out: logits}`; names may be numbers (`"0"`, as torchvision's FPN)."""
    if "outputs" not in document:
        return {}
    section = document["outputs"]
    if (
        not isinstance(section, SpecMap)
        or not section
        or not all(isinstance(node, str) for node in section.values())
    ):
        raise SpecError(
            "outputs must be a mapping of output names to node names",
            document.value_at("outputs"),
        )
    return {str(name): Value(node, section.value_at(name)) for name, node in section.items()}


def _parse_body(body: Any, location: Location) -> list[NodeSpec]:
    if not isinstance(body, SpecMap) or not body:
        raise SpecError("body must be a non-empty mapping of node names to nodes", location)
    nodes = []
    for name, entry in body.items():
        check_node_name(name, body.key_at(name))
        nodes.append(_parse_node(name, entry, body.value_at(name)))
    return nodes


def _parse_node(name: str, entry: Any, location: Location) -> NodeSpec:
    if isinstance(entry, str):
        return NodeSpec(name, location, target=entry)
    if isinstance(entry, SpecList):
        return NodeSpec(name, location, items=_parse_sequence(name, entry, location))
    if not isinstance(entry, SpecMap):
        raise SpecError(
            f"node '{name}': expected an op name, a mapping or a list, got {entry!r}", location
        )
    kinds = [key for key in ("op", "block", "call", "seq", "branches") if key in entry]
    if len(kinds) != 1:
        problem = (
            f"has both {' and '.join(kinds)}"
            if kinds
            else "needs one of 'op:', 'block:', 'call:', 'seq:', 'branches:'"
        )
        raise SpecError(f"node '{name}' {problem}", location)
    kind = kinds[0]
    target = entry[kind]
    items = None
    if kind in ("seq", "branches"):
        items = _parse_sequence(name, target, entry.value_at(kind), kind == "branches")
        target = ""
        extra = [key for key in entry if key not in NODE_KEYS]
        if extra:
            raise SpecError(
                f"node '{name}': a {kind} takes no attributes, got '{extra[0]}'",
                entry.key_at(extra[0]),
            )
    elif not isinstance(target, str):
        raise SpecError(
            f"node '{name}': {kind} must be a name, got {target!r}", entry.value_at(kind)
        )
    sources = _parse_sources(entry) if "from" in entry else None
    optional = {
        key: Value(entry[key], entry.value_at(key))
        for key in ("when", "repeat", "names", "frozen")
        if key in entry
    }
    if "names" in optional and ("repeat" not in optional or items is not None):
        raise SpecError(
            f"node '{name}': names: applies to a repeated op or block", entry.key_at("names")
        )
    shared = _parse_shared(name, entry, kind, optional)
    within = _parse_within(name, entry, kind, optional, shared)
    if kind == "call" and (optional or shared or any(key not in NODE_KEYS for key in entry)):
        extra = next(key for key in entry if key not in ("call", "from"))
        raise SpecError(
            f"node '{name}': call: runs a module as its node made it, so it takes only from:, "
            f"got '{extra}'",
            entry.key_at(extra),
        )
    args = {
        key: Value(raw, entry.value_at(key), entry.key_at(key))
        for key, raw in entry.items()
        if key not in NODE_KEYS
    }
    return NodeSpec(
        name,
        location,
        target=target,
        kind=kind if items is None else "",
        args=args,
        items=items,
        parallel=kind == "branches",
        sources=sources,
        when=optional.get("when"),
        repeat=optional.get("repeat"),
        names=optional.get("names"),
        frozen=optional.get("frozen"),
        shared=shared,
        within=within,
    )


def _parse_within(
    name: str, entry: SpecMap, kind: str, optional: dict[str, Value], shared: bool
) -> Value | None:
    """`within: <node>`: a node name, on a block node that is made once."""
    if "within" not in entry:
        return None
    owner = _typed(name, entry, "within", str, "a node name")
    if kind != "block" or _repeated(optional) or shared:
        raise SpecError(
            f"node '{name}': within: keeps one block's module inside another's, so it applies "
            f"to a block node made once (no repeat:, when: or shared:)",
            entry.key_at("within"),
        )
    return Value(owner, entry.value_at("within"))


def _parse_shared(name: str, entry: SpecMap, kind: str, optional: dict[str, Value]) -> bool:
    """`shared: true`: a literal, on an op, block or sequence that is made once."""
    if "shared" not in entry:
        return False
    shared = _typed(name, entry, "shared", bool, "true or false")
    clash = _repeated(optional)
    if shared and (clash or kind == "branches"):
        raise SpecError(
            f"node '{name}': a shared node is one module, made once: it cannot have "
            f"{clash + ':' if clash else 'branches:'}",
            entry.key_at("shared"),
        )
    return shared


def _typed(name: str, entry: SpecMap, key: str, kind: type, expected: str) -> Any:
    """The value of `key`, which must be a `kind` (`expected` in words)."""
    value = entry[key]
    if not isinstance(value, kind):
        raise SpecError(
            f"node '{name}': {key}: expected {expected}, got {value!r}", entry.value_at(key)
        )
    return value


def _repeated(optional: dict[str, Value]) -> str | None:
    """The key (repeat or when) that makes a node more or less than once, if any."""
    return next((key for key in ("repeat", "when") if key in optional), None)


def _parse_sources(entry: SpecMap) -> list[Value]:
    """`from: a` or `from: [a, b]`, each name with its position."""
    sources = entry["from"]
    listed = sources if isinstance(sources, list) else [sources]
    if not listed or not all(isinstance(source, str) for source in listed):
        raise SpecError(
            f"from: expected a node name or a list of names, got {sources!r}",
            entry.value_at("from"),
        )
    if isinstance(sources, SpecList):
        return [Value(source, sources.item_at(i)) for i, source in enumerate(sources)]
    return [Value(sources, entry.value_at("from"))]


def _parse_sequence(
    name: str, entries: Any, location: Location, parallel: bool = False
) -> list[NodeSpec]:
    """The items of a sequence (or of branches), numbered from 0 like nn.Sequential (or
    nn.ModuleList); a sequence's items are wired in order, branches all read one input."""
    what = "branches" if parallel else "a sequence"
    if not isinstance(entries, SpecList) or not entries:
        raise SpecError(f"node '{name}': {what} needs a non-empty list of items", location)
    items = []
    for index, entry in enumerate(entries):
        item = _parse_node(str(index), entry, entries.item_at(index))
        if item.names is not None:
            raise SpecError(
                f"items of {what} are numbered and cannot have 'names'", item.names.location
            )
        if item.parallel:
            raise SpecError("branches must be a named node of a body, not an item", item.location)
        if item.shared:
            raise SpecError(
                f"items of {what} cannot be shared; make the item a node of a body",
                item.location,
            )
        if item.frozen is not None:
            raise SpecError(
                f"items of {what} cannot be frozen one by one",
                item.frozen.location,
                f"freeze the whole node '{name}', or make the item a node of a body",
            )
        for source in item.sources or []:
            if parallel or source.raw not in SEQUENCE_REFERENCES:
                raise SpecError(
                    f"an item of {what} cannot read '{source.raw}'",
                    source.location,
                    "" if parallel else "from: in a sequence names `previous` or `input`",
                )
        items.append(item)
    return items


def check_keys(mapping: SpecMap, allowed: Any, what: str) -> None:
    """Refuse a key not `allowed` in the mapping, at the key, with a did-you-mean hint."""
    for key in mapping:
        if key not in allowed:
            raise SpecError(
                f"unknown key '{key}' in {what}",
                mapping.key_at(key),
                did_you_mean(key, allowed) or f"expected one of: {', '.join(allowed)}",
            )
