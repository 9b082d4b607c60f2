"""The README's input reference names every key of the execution input's JSON Schema, and no other."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def schema_keys(schema: dict[str, Any]) -> set[str]:
    """Dotted names of every key that takes a value (objects with fixed fields are walked into)."""
    definitions = schema["$defs"]

    def section(node: dict[str, Any]) -> dict[str, Any] | None:
        refs = [node.get("$ref"), *(option.get("$ref") for option in node.get("anyOf", []))]
        found = [definitions[ref.rsplit("/", 1)[1]] for ref in refs if ref]
        return found[0] if found and "properties" in found[0] else None

    def walk(properties: dict[str, Any], prefix: str) -> set[str]:
        keys = set()
        for name, node in properties.items():
            inner = section(node)
            keys |= walk(inner["properties"], f"{prefix}{name}.") if inner else {prefix + name}
        return keys

    return walk(schema["properties"], "")


def readme_keys(text: str) -> set[str]:
    """The keys named in the first column of the table under ``| key | default | meaning |``."""
    lines = text[text.index("| key | default | meaning |") :].splitlines()[2:]
    table = itertools.takewhile(lambda line: line.startswith("|"), lines)
    return {key for line in table for key in re.findall(r"`([a-z_.]+)`", line.split("|")[1])}


def test_the_input_reference_covers_every_key_of_the_schema() -> None:
    schema = json.loads((ROOT / "schemas" / "execution-input.schema.json").read_text())
    text = (ROOT / "README.md").read_text()
    keys, documented = schema_keys(schema), readme_keys(text)
    assert keys - documented == set(), "keys the README's input reference lacks"
    assert documented - keys == set(), "keys the README documents that the schema does not have"
    assert {
        "cv.group_column",
        "metrics",
        "model.preprocessing.numeric.impute",
        "dataset.csv.delimiter",
    } <= keys
