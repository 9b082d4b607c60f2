"""JSONata in state machines: ``{% expression %}`` values, evaluated with ``$states`` and the variables.

Expressions are evaluated by ``jsonata-python`` (a port of the reference JSONata implementation) with
the functions Step Functions adds: ``$partition``, ``$range``, ``$hash``, ``$random`` (optionally
seeded), ``$uuid`` and ``$parse``. ``$states`` holds ``input``, ``context`` and, where the state has
them, ``result`` and ``errorOutput``; every variable in scope is bound by its name.

An expression that fails, or yields nothing (JSONata's *undefined*) where a value is needed, raises
``States.QueryEvaluationError`` with a cause naming the field and the expression.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jsonata  # type: ignore[import-untyped]  # no type information shipped
from jsonata.utils import Utils  # type: ignore[import-untyped]

from .errors import QUERY_EVALUATION_ERROR, StatesError

_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
_MAX_RANGE_LENGTH = 1000  # as States.ArrayRange
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_BOUND = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)\s*:=")
_PARAMETERS = re.compile(r"function\s*\(([^)]*)\)")
_STRINGS = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|/\*.*?\*/""", re.S)

RESERVED = {"states"}
"""Names a variable cannot have: ``$states`` is the state's own data."""


class ExpressionError(ValueError):
    """An expression that does not parse (a definition error)."""


def is_expression(value: Any) -> bool:
    """Whether ``value`` is a JSONata expression: a string that is ``{% ... %}`` as a whole."""
    return isinstance(value, str) and value.startswith("{%") and value.endswith("%}") and len(value) >= 4


def body(value: str) -> str:
    return value[2:-2].strip()


def _partition(array: Any, size: Any) -> list[Any]:
    if not isinstance(array, list) or not _integer(size) or size <= 0:
        raise ValueError("$partition needs an array and a positive integer chunk size")
    return [array[i : i + size] for i in range(0, len(array), size)]


def _range(start: Any, end: Any, step: Any = 1) -> list[int]:
    if not (_integer(start) and _integer(end) and _integer(step)) or step == 0:
        raise ValueError("$range needs integer start, end and a non-zero integer step")
    values = list(range(int(start), int(end) + (1 if step > 0 else -1), int(step)))
    if len(values) > _MAX_RANGE_LENGTH:
        raise ValueError(f"$range would return more than {_MAX_RANGE_LENGTH} items")
    return values


def _hash(value: Any, algorithm: Any) -> str:
    if not isinstance(value, str) or algorithm not in _HASHES:
        raise ValueError(f"$hash needs a string and one of {', '.join(_HASHES)}")
    return hashlib.new(_HASHES[algorithm], value.encode("utf-8")).hexdigest()


def _random(seed: Any = None) -> float:
    return random.Random(seed).random() if seed is not None else random.random()


def _uuid() -> str:
    return str(uuid.uuid4())


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError("$parse needs a string of JSON text")
    return _to_jsonata(json.loads(text))


def _integer(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()


AWS_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "partition": _partition,
    "range": _range,
    "hash": _hash,
    "random": _random,
    "uuid": _uuid,
    "parse": _parse,
}


@lru_cache(maxsize=4096)
def compile_expression(text: str) -> jsonata.Jsonata:
    """The compiled expression (``text`` without its ``{% %}``); ExpressionError if it does not parse."""
    try:
        expression = jsonata.Jsonata(text)
    except Exception as exc:  # the parser's JException
        raise ExpressionError(f"the JSONata expression '{text}' does not parse: {exc}") from None
    expression.set_output_convert_nulls(False)
    for name, function in AWS_FUNCTIONS.items():
        expression.register_lambda(name, function)
    return expression


def builtin_functions() -> set[str]:
    frame = jsonata.Jsonata.static_frame
    return set(frame.bindings) | set(AWS_FUNCTIONS) if frame is not None else set(AWS_FUNCTIONS)


def referenced_variables(text: str) -> set[str]:
    """Variable names an expression reads (not ``$states``, functions, or names it binds itself)."""
    code = _STRINGS.sub('""', text)
    bound = set(_BOUND.findall(code))
    for parameters in _PARAMETERS.findall(code):
        bound |= set(_VARIABLE.findall(parameters))
    names = set()
    for match in _VARIABLE.finditer(code):
        rest = code[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a call
        names.add(match[1])
    return names - bound - RESERVED - builtin_functions()


def _to_jsonata(value: Any) -> Any:
    """JSON null as JSONata's null (a bare None would read as undefined)."""
    return Utils.NULL_VALUE if value is None else value


def evaluate(text: str, field: str, states: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
    """The value of expression ``text`` (``{% %}`` removed) given for ``field``."""
    try:
        expression = compile_expression(text)
    except ExpressionError as exc:
        raise StatesError(QUERY_EVALUATION_ERROR, str(exc)) from None
    bindings = {name: _to_jsonata(value) for name, value in variables.items()}
    bindings["states"] = dict(states)
    try:
        value = expression.evaluate(None, bindings)
    except Exception as exc:  # JException, or one of AWS's functions refusing its arguments
        raise StatesError(
            QUERY_EVALUATION_ERROR,
            f"The JSONata expression '{text}' specified for the field '{field}' threw an error during "
            f"evaluation: {exc}",
        ) from None
    if value is None:
        raise StatesError(
            QUERY_EVALUATION_ERROR,
            f"The JSONata expression '{text}' specified for the field '{field}' returned nothing (undefined).",
        )
    try:
        return _to_json(Utils.convert_nulls(value))
    except (TypeError, ValueError):
        raise StatesError(
            QUERY_EVALUATION_ERROR,
            f"The JSONata expression '{text}' specified for the field '{field}' returned a value that is "
            "not JSON (a function, or a number that is not finite).",
        ) from None


def _to_json(value: Any) -> Any:
    """A plain JSON value: JSONata's sequences become lists, whole floats stay floats as JSON reads them."""
    return json.loads(json.dumps(value, allow_nan=False))


def evaluate_value(value: Any, field: str, states: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
    """A field's value with every ``{% %}`` string in it (at any depth) replaced by its value."""
    if is_expression(value):
        return evaluate(body(value), field, states, variables)
    if isinstance(value, dict):
        return {key: evaluate_value(item, f"{field}/{key}", states, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [
            evaluate_value(item, f"{field}[{index}]", states, variables) for index, item in enumerate(value)
        ]
    return value


def expressions_in(value: Any, where: str = "") -> list[tuple[str, str]]:
    """Every expression (``{% %}`` removed) inside a field's value, with where it is below ``where``
    (``Output.total``, ``Arguments.items[0]``)."""
    if is_expression(value):
        return [(where, body(value))]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in expressions_in(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [
            found for index, item in enumerate(value) for found in expressions_in(item, f"{where}[{index}]")
        ]
    return []


def expression_problem(text: str) -> str | None:
    try:
        compile_expression(text)
    except ExpressionError as exc:
        return str(exc)
    return None
