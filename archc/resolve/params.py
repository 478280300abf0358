"""Model params, `--set` overrides, lets, block arguments and the input shape."""

from __future__ import annotations

from typing import Any

from archc.errors import Location, SpecError, did_you_mean
from archc.ir.symbolic import concrete
from archc.resolve.values import evaluate_value, op_choice
from archc.spec.document import BlockDef, NodeSpec, Value, matches_type
from archc.spec.loader import parse_scalar


def model_args(root: BlockDef, overrides: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's params after `--set`, and the overrides applied (typed)."""
    applied = {key: parse_override(root, key, text) for key, text in overrides.items()}
    return {**defaults(root), **applied}, applied


def parse_override(root: BlockDef, key: str, text: str) -> Any:
    """One `--set key=value`, typed against the model param it overrides."""
    if key not in root.params:
        known = ", ".join(root.params) or "none"
        hint = did_you_mean(key, root.params) or f"the params are: {known}"
        raise SpecError(f"--set {key}={text}: '{key}' is not a param of {root.name}", hint=hint)
    value, kind = parse_scalar(text), root.params[key].type
    if kind == "op" and matches_type(value, kind):
        return op_choice(Value(value, Location("--set", 1, 1)), {}, f"--set {key}")
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not matches_type(value, kind):
        raise SpecError(f"--set {key}={text}: expected a {kind}, got {value!r}")
    return value


def defaults(definition: BlockDef) -> dict[str, Any]:
    return {
        name: (
            op_choice(param.default, {}, f"param '{name}'")
            if param.type == "op"
            else _plain(param.default.raw)
        )
        for name, param in definition.params.items()
        if param.default is not None
    }


def block_args(
    node: NodeSpec, definition: BlockDef, env: dict[str, Any], full_name: str
) -> dict[str, Any]:
    """The arguments a call site passes to a block, evaluated and type-checked."""
    args = {}
    for key, value in node.args.items():
        param = definition.params.get(key)
        if param is None:
            raise SpecError(
                f"unknown param '{key}' for block {definition.name}",
                value.key_location or value.location,
                did_you_mean(key, definition.params)
                or f"its params are: {', '.join(definition.params) or 'none'}",
            )
        if param.type == "op":
            args[key] = op_choice(value, env, f"{full_name}.{key}")
            continue
        args[key] = evaluate_value(value, env, literal_strings=param.type == "str")
        if not matches_type(concrete(args[key]), param.type):
            raise SpecError(
                f"{full_name}.{key}: expected a {param.type}, got {concrete(args[key])!r}",
                value.location,
            )
    for name, param in definition.params.items():
        if param.default is None and name not in args:
            raise SpecError(
                f"{full_name}: block {definition.name} needs param '{name}'", node.location
            )
    return args


def bind_lets(definition: BlockDef, env: dict[str, Any]) -> dict[str, Any]:
    """Add a definition's lets to `env`, in order (each may use the ones before)."""
    for name, value in definition.lets.items():
        env[name] = evaluate_value(value, env, literal_strings=False)
    return env


def channel_names(definition: BlockDef) -> list[str]:
    """Expression names of the inputs' channel counts: `in_channels`, or `<input>_channels`."""
    if len(definition.inputs) == 1:
        return ["in_channels"]
    return [f"{name}_channels" for name in definition.inputs]


def input_shape(value: Value, env: dict[str, Any]) -> list[int]:
    shape = evaluate_value(value, env, literal_strings=False)
    positive = (
        isinstance(shape, list)
        and shape
        and all(isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 for dim in shape)
    )
    if not positive:
        raise SpecError(
            "input: expected a list of positive sizes without the batch axis, "
            f"e.g. [3, 224, 224], got {shape!r}",
            value.location,
        )
    return shape


def evaluate_checked(value: Value, env: dict[str, Any], kind: str, what: str) -> Any:
    """A `when:` or `repeat:` value, which must be of one param type."""
    result = evaluate_value(value, env, literal_strings=False)
    if not matches_type(concrete(result), kind):
        raise SpecError(f"{what}: expected a {kind}, got {concrete(result)!r}", value.location)
    return result


def _plain(raw: Any) -> Any:
    return [_plain(item) for item in raw] if isinstance(raw, list) else raw
