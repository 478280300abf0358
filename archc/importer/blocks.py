"""Block instances → block definitions: one per class and structure, with params.

Instances of one class whose bodies have the same nodes, ops, wiring and attribute names
share a definition; so do those that lack some single-input nodes of a larger one (a ResNet
block without its downsample), the node switched on by a `with_<node>` param (`when:`). A
value that is the same in every instance stays a literal; one that differs becomes a param
(named by its attribute, or by node and attribute where two would share a name), values that
always vary together share one param, and one always a whole multiple of another is written
so (`out * 4`). Other structures of a class get definitions of their own (`Conv2dNormActivation`,
`Conv2dNormActivation2`). Instances that a shipped library block builds are calls to it
instead (`archc.importer.library`), and the definitions nothing calls then are dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from archc.boundary import PARAM_RESERVED
from archc.importer.items import Instance, Item, Node, Op, Seq
from archc.importer.library import LibraryBlock, library_args, library_blocks
from archc.resolve.params import defaults


@dataclass
class Call:
    """A block instance at its call site: its definition and arguments."""

    block: str
    args: dict[str, Any]
    library: str | None = None
    """The shipped library the block is from (`archc:resnet`); None: a definition here."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """A library block's param defaults, which the spec need not write."""


@dataclass(frozen=True)
class Ref:
    """A value written as an expression of the enclosing block's params."""

    source: str


@dataclass
class Definition:
    name: str
    params: dict[str, str]
    """Param → its type (int, float, bool, str, size, list)."""
    body: list[Node]
    """Ops and sequences with literals or Refs; block instances as Calls."""
    listed: bool
    output_channels: str | None = None
    """`in_channels + k` where every instance adds k channels (measured), else None."""


@dataclass
class Blocks:
    definitions: list[Definition]
    """Leaves first."""
    body: list[Node]
    """The model's own."""
    imports: list[str]
    """The shipped libraries it calls blocks of."""
    called: set[str]
    """The library blocks it calls."""


def block_definitions(
    root: Instance, widths: dict[str, tuple[int, int]], allowed: Collection[str] = ()
) -> Blocks:
    """The blocks of the model; `widths` are each module's input and output channels, by
    path, where measured. A class that a shipped block among `allowed` builds (one of its
    name, or of a library so found) is called as that block rather than defined."""
    instances = list(_post_order(root))
    heights: dict[int, int] = {}
    for instance in instances:  # children first
        inner = [heights[id(child)] for child in _children(instance)]
        heights[id(instance)] = 1 + max(inner, default=0)
    shapes: dict[int, Any] = {}
    for height in sorted(set(heights.values())):  # a block's shape names its blocks' shapes
        level = [instance for instance in instances if heights[id(instance)] == height]
        own = {id(instance): _shape(instance, shapes) for instance in level}
        bases = _bases(list(dict.fromkeys(own.values())))
        shapes.update({key: bases[shape] for key, shape in own.items()})
    groups: dict[Any, list[Instance]] = {}
    for instance in sorted(instances, key=lambda inst: heights[id(inst)]):
        groups.setdefault(shapes[id(instance)], []).append(instance)
    calls: dict[int, Call] = {}
    definitions: list[Definition] = []
    imports: list[str] = []
    # Where a class has a library block of its name, that library's blocks may build others.
    libraries = {
        block.library
        for kind in {instance.kind for instance in instances}
        for block in library_blocks().get(kind, [])
    }
    found_blocks = [
        block
        for blocks in library_blocks().values()
        for block in blocks
        if block.library in libraries and block.block.name in allowed
    ]
    names = Counter[str]()
    for members in groups.values():
        if members[0] is root:
            body = _resolved(root.body, {}, calls)
            definitions = _used(definitions, body)
            _rename_apart(definitions, body, imports)
            everywhere = [*body, *(node for definition in definitions for node in definition.body)]
            called = {call.block for call in _calls(everywhere) if call.library is not None}
            return Blocks(definitions, body, imports, called)
        kind = members[0].kind
        found = _library_calls(members, widths, calls, allowed, found_blocks)
        if found is not None:
            imports += [found] if found not in imports else []
            continue
        names[kind] += 1
        name = kind if names[kind] == 1 else f"{kind}{names[kind]}"
        definition = _definition(name, members, calls)
        definition.output_channels = _output_channels(members, widths)
        definitions.append(definition)
    raise AssertionError("the model is its own group")


def _library_calls(
    members: list[Instance],
    widths: dict[str, tuple[int, int]],
    calls: dict[int, Call],
    allowed: Collection[str],
    found_blocks: list[LibraryBlock],
) -> str | None:
    """The library whose block builds each of the members (one of their class's name first,
    then any of `found_blocks`, those of the libraries found so), their calls set to it;
    None where none does."""
    named = library_blocks().get(members[0].kind, [])
    others = [block for block in found_blocks if block not in named]
    for candidate in [*named, *others]:
        if candidate.block.name not in allowed:
            continue
        found = [library_args(candidate, member, widths) for member in members]
        if all(args is not None for args in found):
            standard = defaults(candidate.block)
            given = [key for key in candidate.block.params if any(key in args for args in found)]
            for member, args in zip(members, found):  # by all, if by one: to be compared
                filled = {key: args[key] if key in args else standard[key] for key in given}
                calls[id(member)] = Call(candidate.block.name, filled, candidate.library, standard)
            return candidate.library
    return None


def _rename_apart(definitions: list[Definition], body: list[Node], imports: list[str]) -> None:
    """Definitions named as a block of an imported library (an `Inception` of its own beside
    archc:inception's) take a number, and the calls to them with them."""
    imported = {
        name
        for name, found in library_blocks().items()
        if any(block.library in imports for block in found)
    }
    taken = imported | {definition.name for definition in definitions}
    renamed: dict[str, str] = {}
    for definition in definitions:
        if definition.name in imported:
            number = 2
            while f"{definition.name}{number}" in taken:
                number += 1
            renamed[definition.name] = definition.name = f"{definition.name}{number}"
            taken.add(definition.name)
    for call in _calls([*body, *(node for definition in definitions for node in definition.body)]):
        if call.library is None:
            call.block = renamed.get(call.block, call.block)


def _used(definitions: list[Definition], body: list[Node]) -> list[Definition]:
    """The definitions the body calls, directly or through others (one a library block
    replaced may have left some unused)."""
    by_name = {definition.name: definition for definition in definitions}
    wanted: set[str] = set()
    pending = _called(body)
    while pending:
        name = pending.pop()
        if name in by_name and name not in wanted:
            wanted.add(name)
            pending |= _called(by_name[name].body)
    return [definition for definition in definitions if definition.name in wanted]


def _called(body: list[Node]) -> set[str]:
    return {call.block for call in _calls(body) if call.library is None}


def _calls(body: list[Node]) -> Iterator[Call]:
    """Every block call of a body, through its sequences."""

    def of(item: Any) -> Iterator[Call]:
        if isinstance(item, Call):
            yield item
        elif isinstance(item, Seq):
            for child in item.items:
                yield from of(child)

    for node in body:
        yield from of(node.item)


def _output_channels(members: list[Instance], widths: dict[str, tuple[int, int]]) -> str | None:
    """`in_channels + k` where every instance measured adds the same k channels."""
    measured = [widths.get(member.path) for member in members]
    added = {out - into for into, out in filter(None, measured)}
    if None in measured or len(added) != 1:
        return None
    (change,) = added
    return (
        "in_channels" if change == 0 else f"in_channels {'+' if change > 0 else '-'} {abs(change)}"
    )


def _bases(shapes: list[Any]) -> dict[Any, Any]:
    """Each shape → the shape of the definition it joins: itself, or a larger shape of its
    class that has every node it has, and more that it switches off (`when:`), such as a
    ResNet block's downsample."""
    largest_first = sorted(shapes, key=lambda shape: -len(shape[2]))
    bases: dict[Any, Any] = {}
    for shape in largest_first:
        bases[shape] = next(
            (bases[large] for large in largest_first if large in bases and _embeds(shape, large)),
            shape,
        )
    return bases


def _embeds(small: Any, large: Any) -> bool:
    """Whether `small` is `large` with some single-input nodes left out (their readers read
    those nodes' inputs instead), its output the same node's."""
    (kind, listed, body), (large_kind, large_listed, large_body) = small, large
    if kind != large_kind or listed or large_listed or len(body) >= len(large_body):
        return False
    order = [name for name, _, _ in large_body]
    names = [name for name, _, _ in body]
    if names != [name for name in order if name in names] or names[-1] != order[-1]:
        return False
    entries = {name: (item, inputs) for name, item, inputs in large_body}
    removed = {name: entries[name][1] for name in order if name not in names}
    if any(len(inputs) != 1 for inputs in removed.values()):
        return False

    def through(value: str) -> str:
        while value in removed:
            value = removed[value][0]
        return value

    return all(
        item == entries[name][0] and list(inputs) == [through(v) for v in entries[name][1]]
        for name, item, inputs in body
    )


def _definition(name: str, members: list[Instance], calls: dict[int, Call]) -> Definition:
    """The definition of instances of one shape (some with nodes switched off), and each
    one's call."""
    base = max(members, key=lambda member: len(member.body))
    optional = [
        node.name
        for node in base.body
        if any(node.name not in {n.name for n in member.body} for member in members)
    ]
    columns = [_slots(member.body, calls) for member in members]
    paths = list(_slots(base.body, calls))
    _fill_absent(columns, paths)
    for node_name in optional:
        for member, column in zip(members, columns):
            column[f"{node_name}.with"] = any(node.name == node_name for node in member.body)
    paths += [f"{node_name}.with" for node_name in optional]
    varying = [path for path in paths if _varies(columns, path)]
    refs, firsts = _shared(columns, varying)
    names = _param_names(list(firsts.values()))
    params = {names[path]: _type(vector) for vector, path in firsts.values()}
    refs = {path: Ref(_renamed(ref.source, names)) for path, ref in refs.items()}
    for member, column in zip(members, columns):
        args = {names[path]: column[path] for _, path in firsts.values()}
        calls[id(member)] = Call(name, args)
    body = _resolved(base.body, refs, calls)
    for node in body:
        if node.name in optional:
            node.when = refs[f"{node.name}.with"].source
    return Definition(name, params, body, base.listed)


def _shared(
    columns: list[dict[str, Any]], varying: list[str]
) -> tuple[dict[str, Ref], dict[str, tuple[tuple, str]]]:
    """Each varying slot's ref to the param that holds it, by the path the param was first
    seen at (or `path * k`), and the params: their values (by repr) → values, first path."""
    refs: dict[str, Ref] = {}
    firsts: dict[str, tuple[tuple, str]] = {}
    for path in varying:
        vector = tuple(column[path] for column in columns)
        known = firsts.get(repr(vector))
        ref = Ref(known[1]) if known else _multiple(vector, list(firsts.values()))
        if ref is None:
            firsts[repr(vector)] = (vector, path)
            ref = Ref(path)
        refs[path] = ref
    return refs, firsts


def _param_names(params: list[tuple[tuple, str]]) -> dict[str, str]:
    """Each param's first path → its name: the attribute alone where no other param has
    that attribute, else the path (`conv_0_out`), a reserved name given a trailing `_`."""
    keys = Counter(_param_key(path) for _, path in params)
    names: dict[str, str] = {}
    for _, path in params:
        key = _param_key(path)
        name = key if keys[key] == 1 else path.replace(".", "_")
        if name[0].isdigit():  # an item of a sequence: `out_3` for `3.out`
            *where, attribute = path.split(".")
            name = "_".join([attribute, *where])
        if name in PARAM_RESERVED or name in names.values():
            name = f"{path.replace('.', '_')}_"
        names[path] = name
    return names


def _param_key(path: str) -> str:
    """A param's name when no other param of its block shares it: the attribute's, or for a
    node that may be switched off, `with_<node>`."""
    node, _, key = path.rpartition(".")
    return f"with_{node.replace('.', '_')}" if key == "with" else key


def _fill_absent(columns: list[dict[str, Any]], paths: list[str]) -> None:
    """Values for the slots of nodes an instance switches off, which it never reads: those
    of a slot that holds the same in every instance that has both (or a whole multiple of
    it), so that they vary with it rather than add a param."""
    complete = [path for path in paths if all(path in column for column in columns)]
    for path in paths:
        if path in complete:
            continue
        present = [column for column in columns if path in column]
        source = next(
            (
                (other, factor)
                for other in complete
                for factor in (1, 2, 3, 4, 6, 8)
                if all(_same(_times(column[other], factor), column[path]) for column in present)
            ),
            None,
        )
        for column in columns:
            if path not in column:
                column[path] = _times(column[source[0]], source[1]) if source else present[0][path]


def _same(a: Any, b: Any) -> bool:
    """Equal and of one type (False is not 0 here)."""
    return type(a) is type(b) and a == b


def _times(value: Any, factor: int) -> Any:
    if factor == 1:
        return value
    return value * factor if isinstance(value, int) and not isinstance(value, bool) else None


def _renamed(source: str, names: dict[str, str]) -> str:
    """A ref to a param's first path (`p * k` too) under the param's name."""
    path, _, factor = source.partition(" * ")
    return names[path] + (f" * {factor}" if factor else "")


def _varies(columns: list[dict[str, Any]], path: str) -> bool:
    return len({repr(column[path]) for column in columns}) > 1


def _multiple(vector: tuple, params: list[tuple[tuple, str]]) -> Ref | None:
    """`p * k` where the vector is always k times the values of an earlier param p."""
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in vector):
        return None
    for base, path in params:
        if not all(isinstance(value, int) and value > 0 for value in base):
            continue
        ratios = {value / low for value, low in zip(vector, base)}
        if len(ratios) == 1 and (ratio := ratios.pop()) == int(ratio) and ratio > 1:
            return Ref(f"{path} * {int(ratio)}")
    return None


def _type(vector: tuple) -> str:
    """The param type that holds every value of the vector."""
    if all(isinstance(value, bool) for value in vector):
        return "bool"
    if any(isinstance(value, list) for value in vector):
        return "size" if all(isinstance(v, int) or len(v) == 2 for v in vector) else "list"
    if all(isinstance(value, int) and not isinstance(value, bool) for value in vector):
        return "int"
    if all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in vector):
        return "float"
    return "str"


def _slots(body: list[Node], calls: dict[int, Call], prefix: str = "") -> dict[str, Any]:
    """Every value written in a body, by path (`conv1.out`, `downsample.0.stride`)."""
    slots: dict[str, Any] = {}
    for node in body:
        slots.update(_item_slots(node.item, calls, f"{prefix}{node.name}"))
    return slots


def _item_slots(item: Item, calls: dict[int, Call], path: str) -> dict[str, Any]:
    if isinstance(item, Op):
        return {f"{path}.{key}": value for key, value in item.attrs.items()}
    if isinstance(item, Seq):
        slots: dict[str, Any] = {}
        for index, child in enumerate(item.items):
            slots.update(_item_slots(child, calls, f"{path}.{index}"))
        return slots
    return {f"{path}.{key}": value for key, value in calls[id(item)].args.items()}


def _resolved(body: list[Node], refs: dict[str, Ref], calls: dict[int, Call]) -> list[Node]:
    """The body with each varying value its Ref and each block instance its Call."""
    return [
        Node(node.name, _resolved_item(node.item, refs, calls, node.name), node.inputs, node.when)
        for node in body
    ]


def _resolved_item(item: Item, refs: dict[str, Ref], calls: dict[int, Call], path: str) -> Any:
    if isinstance(item, Op):
        return Op(item.name, {k: refs.get(f"{path}.{k}", v) for k, v in item.attrs.items()})
    if isinstance(item, Seq):
        return Seq(
            [
                _resolved_item(child, refs, calls, f"{path}.{index}")
                for index, child in enumerate(item.items)
            ]
        )
    call = calls[id(item)]
    args = {k: refs.get(f"{path}.{k}", v) for k, v in call.args.items()}
    return Call(call.block, args, call.library, call.defaults)


def _shape(instance: Instance, shapes: dict[int, Any]) -> Any:
    """What instances sharing a definition have in common: class, nodes, ops, wiring,
    attribute names, and the shapes of the blocks inside."""
    body = tuple(
        (node.name, _item_shape(node.item, shapes), tuple(node.inputs)) for node in instance.body
    )
    return instance.kind, instance.listed, body


def _item_shape(item: Item, shapes: dict[int, Any]) -> Any:
    if isinstance(item, Op):
        return "op", item.name, tuple(item.attrs)
    if isinstance(item, Seq):
        return "seq", tuple(_item_shape(child, shapes) for child in item.items)
    return "block", shapes[id(item)]


def _post_order(instance: Instance) -> Iterator[Instance]:
    """Every block instance of the tree, each after the instances inside it."""
    for child in _children(instance):
        yield from _post_order(child)
    yield instance


def _children(instance: Instance) -> list[Instance]:
    """The block instances in an instance's body, through its sequences."""
    return [inner for node in instance.body for inner in _within(node.item)]


def _within(item: Item) -> list[Instance]:
    if isinstance(item, Seq):
        return [inner for child in item.items for inner in _within(child)]
    return [item] if isinstance(item, Instance) else []
