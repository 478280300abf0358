"""The spec's `train:` section, checked into a TrainPlan (located errors for the rest).

```yaml
train:
  loss: {cross_entropy: {label_smoothing: 0.1}}
  optimizer: {sgd: {lr: 0.5, momentum: 0.9, weight_decay: 2.0e-5}}
  schedule: cosine
  warmup_epochs: 5
  epochs: 600
  batch_size: 1024
```

Values may be expressions of the model's params (`lr: 0.1 * batch / 256` with a param
`batch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.errors import Location, SpecError, did_you_mean
from archc.ir.graph import TensorType
from archc.ir.symbolic import concrete
from archc.resolve.values import evaluate_value
from archc.spec.document import Value, check_keys, matches_type
from archc.spec.loader import SpecMap
from archc.train.catalogue import LOSSES, OPTIMIZERS, SCHEDULES, TARGETS, Entry

TRAIN_KEYS = {
    "loss": "the loss: a name, or {name: {setting: value}}",
    "optimizer": "the optimizer: a name, or {name: {setting: value}}",
    "schedule": "the learning-rate schedule, stepped once per epoch (default constant)",
    "warmup_epochs": "epochs of linear warm-up from 1% of the learning rate (default 0)",
    "epochs": "how many passes over the training set",
    "batch_size": "the global batch size, split evenly across processes",
    "precision": "fp32, or bf16 (forward and loss under autocast, fp32 weights)",
    "norm_weight_decay": "weight decay of norm weights and of biases (default: the optimizer's)",
    "loss_weights": "each output's weight in the loss, for a model of several outputs (auxiliary"
    " heads); accuracy is the first's",
    "distillation": "a trained teacher's predictions as targets too: {teacher: its spec, kind:"
    " soft | hard, temperature, alpha, output}",
    "l1_penalty": "λ of an L1 penalty λ·Σ|w| over the weights (parameters of two or more axes)",
    "clip_grad_norm": "clip the gradients' global norm to this (default: no clipping)",
    "patience": "stop early after this many epochs without a better test metric",
}
REQUIRED = ("loss", "optimizer", "epochs", "batch_size")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Choice:
    """A loss, optimizer or schedule: its catalogue entry and the settings written."""

    name: str
    entry: Entry
    settings: dict[str, Any] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict, compare=False)
    """Where each setting is written: a backend that cannot honour one points at it."""
    location: Location | None = field(default=None, compare=False)


DISTILLATION_KEYS = {
    "teacher": "the teacher's spec, relative to this one (its name must differ)",
    "kind": "soft: KL to the teacher's softened probabilities (Hinton); hard: cross-entropy to"
    " its top class (DeiT)",
    "temperature": "the softening of both distributions (soft; default 3.0)",
    "alpha": "the distillation loss's weight, the labels' taking the rest (default 0.5)",
    "output": "the output the teacher supervises (DeiT's dist head; default the scored one)",
}


@dataclass(frozen=True)
class Distillation:
    teacher: Path
    kind: str
    temperature: float = 3.0
    alpha: float = 0.5
    output: str = ""
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TrainPlan:
    loss: Choice
    targets: str
    """What the loss compares the outputs with: a key of catalogue.TARGETS."""
    optimizer: Choice
    schedule: Choice
    epochs: int
    batch_size: int
    warmup_epochs: int = 0
    precision: str = "fp32"
    norm_weight_decay: float | None = None
    l1_penalty: float | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    """Output name → its loss's weight (a model of several outputs); the first is scored."""
    distillation: Distillation | None = None
    clip_grad_norm: float | None = None
    patience: int | None = None


def train_plan(
    section: Any, location: Location, env: dict[str, Any], outputs: dict[str, TensorType]
) -> TrainPlan:
    """The checked plan of a `train:` mapping; `env`: the model's params; `outputs`: the
    model's outputs by name ("" for a model of one)."""
    if not isinstance(section, SpecMap):
        raise SpecError("train must be a mapping of training settings", location)
    check_keys(section, TRAIN_KEYS, "train")
    for key in REQUIRED:
        if key not in section:
            raise SpecError(f"train: missing required key '{key}' ({TRAIN_KEYS[key]})", location)

    def number(key: str, kind: str, least: float, default: Any = None) -> Any:
        if key not in section:
            return default
        value = _value(section, key, env, kind, f"train.{key}")
        if value < least:
            raise SpecError(
                f"train.{key}: expected at least {least}, got {value!r}", section.value_at(key)
            )
        return value

    epochs = number("epochs", "int", 1)
    loss = _choice(section, "loss", LOSSES, env)
    names = list(outputs)
    plan = TrainPlan(
        loss=loss,
        optimizer=_choice(section, "optimizer", OPTIMIZERS, env),
        schedule=_choice(section, "schedule", SCHEDULES, env, "constant"),
        epochs=epochs,
        batch_size=number("batch_size", "int", 1),
        warmup_epochs=number("warmup_epochs", "int", 0, 0),
        precision=_precision(section, env),
        norm_weight_decay=number("norm_weight_decay", "float", 0),
        l1_penalty=number("l1_penalty", "float", 0),
        distillation=_distillation(section, env, names),
        loss_weights=_loss_weights(section, env, names),
        clip_grad_norm=number("clip_grad_norm", "float", 0),
        patience=number("patience", "int", 1),
        targets=_targets(loss, outputs, section),  # once the rest is known to be well-formed
    )
    if plan.warmup_epochs >= epochs:
        raise SpecError(
            f"train.warmup_epochs: {plan.warmup_epochs} leaves none of the {epochs} epochs",
            section.value_at("warmup_epochs"),
        )
    return plan


def _targets(loss: Choice, outputs: dict[str, TensorType], section: SpecMap) -> str:
    """What the loss compares with, as the model's (first) output shows it; every output that
    takes the loss must have the first's shape, for they all take the same targets."""
    (first, output), *others = outputs.items()
    accepted = loss.entry.targets
    if output.rank == 4 and not output.channels_last:
        found = "pixels"
    elif output.rank == 2:
        boxes = "boxes" in accepted and concrete(output.shape[1]) == 4
        found = "boxes" if boxes else "classes"
    else:
        found = ""
    shown = "(N, " + ", ".join(str(concrete(size)) for size in output.shape[1:]) + ")"
    if found not in accepted:
        summaries = " or ".join(TARGETS[kind].summary for kind in accepted)
        raise SpecError(
            f"train.loss: {loss.name} compares {summaries}; the model predicts {shown}",
            loss.location,
            f"losses for it: {', '.join(_losses_for(found)) or 'none'}",
        )
    for name, other in others:
        if other.shape[1:] != output.shape[1:] and "distillation" not in section:
            raise SpecError(
                f"train: every output takes the {loss.name} loss, so '{name}' must have the shape"
                f" of '{first}', {shown}",
                section.location,
            )
    if found != "classes" and "distillation" in section:
        raise SpecError(
            f"train.distillation: distils class scores, and the model predicts {shown}",
            section.value_at("distillation"),
        )
    return found


def _losses_for(targets: str) -> list[str]:
    return [name for name, entry in LOSSES.items() if targets in entry.targets]


def _distillation(section: SpecMap, env: dict[str, Any], outputs: list[str]) -> Distillation | None:
    if "distillation" not in section:
        return None
    raw, where = section["distillation"], section.value_at("distillation")
    if not isinstance(raw, SpecMap):
        raise SpecError(f"train.distillation: expected a mapping, got {raw!r}", where)
    check_keys(raw, DISTILLATION_KEYS, "train.distillation")
    for key in ("teacher", "kind"):
        if key not in raw:
            raise SpecError(f"train.distillation: missing required key '{key}'", where)
    teacher = Path(where.file).parent / str(raw["teacher"])
    if not teacher.is_file():
        raise SpecError(
            f"train.distillation.teacher: no spec at {teacher}", raw.value_at("teacher")
        )
    kind = _value(raw, "kind", env, "str", "train.distillation.kind")
    if kind not in ("soft", "hard"):
        raise SpecError(
            f"train.distillation.kind: expected soft or hard, got {kind!r}", raw.value_at("kind")
        )
    settings = {
        key: _value(raw, key, env, "float", f"train.distillation.{key}")
        for key in ("temperature", "alpha")
        if key in raw
    }
    if not 0 <= settings.get("alpha", 0.5) <= 1 or settings.get("temperature", 1) <= 0:
        raise SpecError("train.distillation: alpha must lie in [0, 1], temperature above 0", where)
    output = str(raw.get("output", outputs[0]))
    if output not in outputs:
        raise SpecError(
            f"train.distillation.output: the model has no output '{output}'",
            raw.value_at("output"),
            did_you_mean(output, outputs) or f"its outputs: {', '.join(outputs)}",
        )
    if len(outputs) > 2 or (len(outputs) == 2 and output == outputs[0]):
        raise SpecError(
            "train.distillation: the model's first output takes the labels' loss, and a second,"
            " if any, the teacher's (DeiT's heads); it returns " + ", ".join(outputs),
            where,
        )
    return Distillation(teacher, kind, **settings, output=output, location=where)


def _loss_weights(section: SpecMap, env: dict[str, Any], outputs: list[str]) -> dict[str, float]:
    """`{out: 1.0, aux: 0.3}`: a weight for each of the model's outputs, in their order."""
    if "loss_weights" not in section:
        if outputs != [""] and "distillation" not in section:
            raise SpecError(
                f"train: the model returns {', '.join(outputs)}: loss_weights must weigh each",
                section.location,
                f"e.g. loss_weights: {{{outputs[0]}: 1.0, {outputs[-1]}: 0.3}}",
            )
        return {}
    raw, where = section["loss_weights"], section.value_at("loss_weights")
    if "distillation" in section:
        raise SpecError("train.loss_weights: distillation weighs the outputs (alpha)", where)
    if outputs == [""]:
        raise SpecError("train.loss_weights: the model returns one output", where)
    if not isinstance(raw, SpecMap):
        raise SpecError(f"train.loss_weights: expected {{output: weight}}, got {raw!r}", where)
    check_keys(raw, outputs, "train.loss_weights (the model's outputs)")
    missing = [name for name in outputs if name not in raw]
    if missing:
        raise SpecError(f"train.loss_weights: no weight for {', '.join(missing)}", where)
    return {name: _value(raw, name, env, "float", f"train.loss_weights.{name}") for name in outputs}


def _precision(section: SpecMap, env: dict[str, Any]) -> str:
    if "precision" not in section:
        return "fp32"
    value = _value(section, "precision", env, "str", "train.precision")
    if value not in PRECISIONS:
        raise SpecError(
            f"train.precision: expected fp32 or bf16, got {value!r}",
            section.value_at("precision"),
            did_you_mean(value, PRECISIONS),
        )
    return value


def _choice(
    section: SpecMap, key: str, catalogue: dict[str, Entry], env: dict[str, Any], default: str = ""
) -> Choice:
    """`name` or `{name: {setting: value}}`, checked against the catalogue."""
    if key not in section:
        return Choice(default, catalogue[default])
    raw, location = section[key], section.value_at(key)
    settings: Any = SpecMap()
    if isinstance(raw, SpecMap) and len(raw) == 1:
        (name,) = raw.keys()
        settings, location = raw[name], raw.key_at(name)
        if not isinstance(settings, SpecMap):
            raise SpecError(
                f"train.{key}.{name}: expected a mapping of settings, got {settings!r}",
                raw.value_at(name),
            )
    elif isinstance(raw, str):
        name = raw
    else:
        raise SpecError(
            f"train.{key}: expected a name or {{name: {{setting: value}}}}, got {raw!r}",
            location,
            f"one of: {', '.join(catalogue)}",
        )
    entry = catalogue.get(name)
    if entry is None:
        raise SpecError(
            f"train.{key}: unknown {key} '{name}'",
            location,
            did_you_mean(name, catalogue) or f"one of: {', '.join(catalogue)}",
        )
    for setting in settings:
        if setting not in entry.settings:
            raise SpecError(
                f"train.{key}.{name}: unknown setting '{setting}'",
                settings.key_at(setting),
                did_you_mean(setting, entry.settings)
                or f"{name} takes: {', '.join(entry.settings) or 'nothing'}",
            )
    for setting in entry.required:
        if setting not in settings:
            raise SpecError(f"train.{key}.{name}: missing required setting '{setting}'", location)
    values = {
        setting: _value(settings, setting, env, kind, f"train.{key}.{name}.{setting}")
        for setting, kind in entry.settings.items()
        if setting in settings
    }
    locations = {setting: settings.key_at(setting) for setting in values}
    return Choice(name, entry, values, locations, location)


def _value(mapping: SpecMap, key: str, env: dict[str, Any], kind: str, what: str) -> Any:
    """A setting's value (an expression of the model's params), of its declared type."""
    location = mapping.value_at(key)
    text = kind == "str"  # a precision's name; other strings are expressions
    value = concrete(evaluate_value(Value(mapping[key], location), env, literal_strings=text))
    item = kind.removeprefix("list[").removesuffix("]")
    ok = (
        isinstance(value, list) and all(matches_type(part, item) for part in value)
        if kind.startswith("list[")
        else matches_type(value, kind)
    )
    if not ok:
        raise SpecError(f"{what}: expected a {kind}, got {value!r}", location)
    return value
