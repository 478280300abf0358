"""YAML 1.2 semantics and positions."""

from __future__ import annotations

from pathlib import Path

from archc.spec.loader import SpecList, SpecMap, load_yaml, parse_scalar


def test_yaml_1_2_scalars(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("eps: 1e-5\nflag: no\nold_octal: 010\nnew_octal: 0o10\non: yes\n")
    document = load_yaml(path)
    assert document == {"eps": 1e-5, "flag": "no", "old_octal": 10, "new_octal": 8, "on": "yes"}
    assert type(document["eps"]) is float
    assert type(document["old_octal"]) is int


def test_positions_of_keys_values_and_items(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("a:\n  b: [1, {c: 2}]\n")
    document = load_yaml(path, "s.yaml")
    assert isinstance(document, SpecMap)
    inner = document["a"]
    assert str(inner.key_at("b")) == "s.yaml:2:3"
    items = inner["b"]
    assert isinstance(items, SpecList)
    assert str(items.item_at(1)) == "s.yaml:2:10"
    assert str(items[1].value_at("c")) == "s.yaml:2:14"


def test_command_line_values() -> None:
    assert parse_scalar("10") == 10
    assert parse_scalar("0.5") == 0.5
    assert parse_scalar("false") is False
    assert parse_scalar("[3, 4, 6, 3]") == [3, 4, 6, 3]
    assert parse_scalar("nearest") == "nearest"
