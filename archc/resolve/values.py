"""Evaluating spec values: literals stay literal, strings of non-string type are expressions."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from archc.boundary import check_node_name
from archc.errors import Location, SpecError, did_you_mean
from archc.ir.symbolic import Sym, concrete, is_symbolic, source
from archc.ops import REGISTRY
from archc.ops.attributes import Attrs, AttrsError
from archc.ops.base import Op, OpChoice
from archc.spec.document import Value
from archc.spec.expressions import evaluate
from archc.spec.loader import SpecList, SpecMap


def evaluate_value(value: Value, env: Mapping[str, Any], literal_strings: bool) -> Any:
    """A spec value: expression strings evaluated unless the target type is a string; a
    string-typed value that is the name of a param or let in scope is that value."""
    return _evaluate(value.raw, value.location, env, literal_strings)


def _evaluate(raw: Any, location: Location, env: Mapping[str, Any], literal_strings: bool) -> Any:
    if isinstance(raw, str):
        if literal_strings:  # text, unless it names a value in scope (`act: act` passes one on)
            return env.get(raw, raw)
        return evaluate(raw, env, location)
    if isinstance(raw, list):
        locations = [
            raw.item_at(i) if isinstance(raw, SpecList) else location for i in range(len(raw))
        ]
        return [_evaluate(item, at, env, literal_strings) for item, at in zip(raw, locations)]
    return raw


def evaluate_names(value: Value, env: Mapping[str, Any]) -> Any:
    """A `names:` template such as `denselayer{i + 1}`: the name, or in a class an f-string."""
    if not isinstance(value.raw, str):
        raise SpecError(f"names: expected a template string, got {value.raw!r}", value.location)
    literal_parts, source_parts, symbolic = [], [], False
    for literal, field, _, _ in string.Formatter().parse(value.raw):
        literal_parts.append(literal)
        source_parts.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is not None:
            result = evaluate(field, env, value.location)
            symbolic = symbolic or is_symbolic(result)
            literal_parts.append(str(concrete(result)))
            source_parts.append("{" + source(result) + "}")
    name = check_node_name("".join(literal_parts), value.location)
    return Sym('f"' + "".join(source_parts) + '"', name) if symbolic else name


def build_attrs(
    schema: type[Attrs],
    values: dict[str, Any],
    locations: dict[str, Location],
    where: str,
    fallback: Location,
    switched_off: bool = False,
) -> Attrs:
    """Validate attribute values (their concrete values) and keep symbolic ones for emission;
    `switched_off`: the node is off at these values (a class's `when:`), so its symbolic
    values are not checked at them, only those written out.

    Unknown keys are the caller's to report (it knows where each key stands).
    """
    unchecked = frozenset(
        key for key, value in values.items() if switched_off and is_symbolic(value)
    )
    try:
        concretes = {key: _tuples(concrete(value)) for key, value in values.items()}
        attrs = schema.checked_but(concretes, unchecked)
    except AttrsError as error:
        if error.key not in values:  # a required attribute left out
            raise SpecError(f"{error} for {where}", fallback) from None
        raise SpecError(f"{where}.{error.key}: {error}", locations[error.key]) from None
    symbolic = {key: _tuples(value) for key, value in values.items() if is_symbolic(value)}
    return attrs.replace(**symbolic) if symbolic else attrs


def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def op_attrs(
    op: Op,
    args: Mapping[str, Value],
    env: Mapping[str, Any],
    where: str,
    fallback: Location,
    switched_off: bool = False,
) -> Attrs:
    """An op's attributes as written (a node's, or an `op` param's): unknown keys refused at
    the key, values evaluated, typed (see build_attrs for `switched_off`)."""
    fields = op.Attrs.fields()
    unknown = next((key for key in args if key not in fields), None)
    if unknown is not None:
        raise SpecError(
            f"unknown attribute '{unknown}' for {where}",
            args[unknown].key_location or args[unknown].location,
            did_you_mean(unknown, fields) or f"expected one of: {', '.join(fields)}",
        )
    values = {
        key: evaluate_value(value, env, fields[key].takes_text) for key, value in args.items()
    }
    locations = {key: value.location for key, value in args.items()}
    for key in op.literal_attrs:
        if key in args and not isinstance(args[key].raw, int):
            raise SpecError(
                f"{where}.{key}: expected a number written out, got {args[key].raw!r}",
                locations[key],
                f"{key} fixes the layout the generated code indexes in, so no param sets it",
            )
    return build_attrs(op.Attrs, values, locations, where, fallback, switched_off)


def op_choice(value: Value, env: Mapping[str, Any], where: str) -> Any:
    """An `op` param's value: an op's name, `{op: NAME, attribute: value, …}`, or the name
    of a param in scope that holds one (`norm: norm` passes a block's own on)."""
    raw = value.raw
    if isinstance(raw, str) and raw in env:
        return env[raw]
    if isinstance(raw, str):
        op = REGISTRY.get(raw)
        return OpChoice(raw, op.default_attrs() if op is not None else None, value.location)
    name = raw.get("op") if isinstance(raw, SpecMap) else None
    if not isinstance(name, str):
        raise SpecError(
            f"{where}: expected an op, as a name or {{op: NAME, attribute: value, …}}, got {raw!r}",
            value.location,
        )
    op = REGISTRY.get(name)
    if op is None:
        raise SpecError(
            f"{where}: unknown op '{name}'", raw.value_at("op"), did_you_mean(name, REGISTRY)
        )
    args = {
        key: Value(item, raw.value_at(key), raw.key_at(key))
        for key, item in raw.items()
        if key != "op"
    }
    attrs = op_attrs(op, args, env, f"{where} ({name})", value.location)
    return OpChoice(name, attrs, value.location)
