"""Input and output processing of a state: InputPath, Parameters, ResultSelector, ResultPath, OutputPath.

"Raw input" is what a state receives, "result" what its work produced (a task's answer, a Pass
state's Result, a Map or Parallel state's list). Templates build new containers; values picked out of
the input by paths are shared with it, so inputs must be treated as immutable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import DATA_LIMIT_EXCEEDED, RUNTIME, StatesError
from .intrinsics import evaluate_intrinsic, is_intrinsic
from .paths import compact_json, get_path, set_path, validate_path

PAYLOAD_LIMIT = 262_144
"""AWS's limit for a state's input or output: 256 KiB of UTF-8 JSON text."""


Filler = Callable[[Any, "dict[str, Any] | None"], Any]
"""A compiled template: what it makes of ``(data, context)``."""


def apply_template(template: Any, data: Any, context: dict[str, Any] | None = None) -> Any:
    """Fill a payload template (Parameters, ItemSelector, ResultSelector) from ``data`` and ``context``.

    A field whose name ends in ``.$`` takes the value of its path or intrinsic call and loses the
    suffix; objects and arrays are walked to any depth; everything else is copied as written.
    """
    if isinstance(template, (dict, list)):
        return _filler(template)(data, context)
    return template


_FILLERS: dict[int, tuple[Any, Filler]] = {}
"""Compiled templates by the template's identity (the template is kept, so the identity is its own)."""
_MOST_FILLERS = 4096


def _filler(template: Any) -> Filler:
    """``template`` compiled on first use: a definition's templates are filled once per state entry,
    and each time the same fields are told apart and the same paths checked."""
    entry = _FILLERS.get(id(template))
    if entry is None or entry[0] is not template:
        if len(_FILLERS) >= _MOST_FILLERS:
            _FILLERS.clear()
        entry = _FILLERS[id(template)] = (template, _compile(template))
    return entry[1]


def _compile(template: Any) -> Filler:
    if isinstance(template, dict):
        fields = [
            (key[:-2], _field(key, value)) if key.endswith(".$") else (key, _compile(value))
            for key, value in template.items()
        ]
        return lambda data, context: {key: fill(data, context) for key, fill in fields}
    if isinstance(template, list):
        items = [_compile(item) for item in template]
        return lambda data, context: [fill(data, context) for fill in items]
    return lambda data, context: template


def _field(key: str, expression: Any) -> Filler:
    """A ``.$`` field: its intrinsic call, or its path (a path that is not valid fails each time)."""
    if is_intrinsic(expression):
        return lambda data, context: _intrinsic_value(key, expression, data, context)
    problem = validate_path(expression)
    if problem:
        cause = f"The value for the field '{key}' must be a valid JSONPath or a valid intrinsic function call: {problem}"

        def refuse(data: Any, context: dict[str, Any] | None) -> Any:
            raise StatesError(RUNTIME, cause)

        return refuse
    return lambda data, context: _path_value(key, expression, data, context)


def _intrinsic_value(key: str, expression: str, data: Any, context: dict[str, Any] | None) -> Any:
    try:
        return evaluate_intrinsic(expression, data, context)
    except StatesError as error:
        # Intrinsics report their own failures as States.IntrinsicFailure; States.Runtime
        # from inside one means a path argument found nothing.
        if error.error != RUNTIME:
            raise
        raise StatesError(
            RUNTIME,
            f"The JsonPath argument for the field '{key}' could not be found in the input "
            f"'{compact_json(data)}': {error.cause}",
        ) from None


def _path_value(key: str, expression: str, data: Any, context: dict[str, Any] | None) -> Any:
    try:
        return get_path(expression, data, context)
    except StatesError:
        source, where = (context, "context object") if expression.startswith("$$") else (data, "input")
        raise StatesError(
            RUNTIME,
            f"The JSONPath '{expression}' specified for the field '{key}' could not be found in the "
            f"{where} '{compact_json(source)}'",
        ) from None


def _select(state: dict[str, Any], field: str, data: Any, context: dict[str, Any] | None) -> Any:
    """InputPath and OutputPath: absent keeps everything, null keeps nothing (``{}``)."""
    if field not in state:
        return data
    path = state[field]
    return {} if path is None else get_path(path, data, context)


def select_input(state: dict[str, Any], raw_input: Any, context: dict[str, Any] | None = None) -> Any:
    """What InputPath keeps of the raw input."""
    return _select(state, "InputPath", raw_input, context)


def fill_parameters(state: dict[str, Any], selected: Any, context: dict[str, Any] | None = None) -> Any:
    """Parameters applied to what InputPath kept.

    A Map state's ``Parameters`` is its legacy name for ItemSelector, which applies to each item,
    so it is left to the Map state.
    """
    if "Parameters" in state and state.get("Type") != "Map":
        return apply_template(state["Parameters"], selected, context)
    return selected


def process_input(state: dict[str, Any], raw_input: Any, context: dict[str, Any] | None = None) -> Any:
    """The effective input of a state: InputPath, then Parameters."""
    return fill_parameters(state, select_input(state, raw_input, context), context)


def process_output(
    state: dict[str, Any], raw_input: Any, result: Any, context: dict[str, Any] | None = None
) -> Any:
    """The effective output of a state: ResultSelector, ResultPath, then OutputPath."""
    if "ResultSelector" in state:
        result = apply_template(state["ResultSelector"], result, context)
    return place_result(state, raw_input, result, context)


def place_result(
    state: dict[str, Any], raw_input: Any, result: Any, context: dict[str, Any] | None = None
) -> Any:
    """ResultPath, then OutputPath.

    ResultPath places the result into the raw input: absent means ``$`` (the result replaces the
    input), null discards the result and keeps the raw input.
    """
    result_path = state.get("ResultPath", "$")
    combined = raw_input if result_path is None else set_path(raw_input, result_path, result)
    return _select(state, "OutputPath", combined, context)


def copy_document(value: Any) -> Any:
    """A deep copy of a JSON document (objects, arrays, scalars): what ``copy.deepcopy`` makes of it,
    in a third of the time, as it keeps no memo (a document has no shared or cyclic parts)."""
    if isinstance(value, dict):
        return {key: copy_document(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_document(item) for item in value]
    return value


def payload_size(value: Any) -> int:
    """Size in bytes of ``value`` as AWS counts it: UTF-8 of its compact JSON text."""
    return len(compact_json(value).encode("utf-8"))


def checked_json_text(value: Any, limit: int = PAYLOAD_LIMIT) -> str:
    """``value``'s compact JSON text, once checked against ``limit``: a state measures a payload and
    records it in the history with one encoding."""
    text = compact_json(value)
    check_text_size(text, limit)
    return text


def check_text_size(text: str, limit: int = PAYLOAD_LIMIT) -> None:
    """Raise ``StatesError(States.DataLimitExceeded)`` if the JSON ``text`` is larger than ``limit`` bytes."""
    size = len(text.encode("utf-8"))
    if size > limit:
        raise StatesError(
            DATA_LIMIT_EXCEEDED,
            f"The payload is {size} bytes, which exceeds the maximum of {limit} bytes.",
        )


def check_payload_size(value: Any, limit: int = PAYLOAD_LIMIT) -> None:
    """Raise ``StatesError(States.DataLimitExceeded)`` if ``value`` is larger than ``limit`` bytes."""
    check_text_size(compact_json(value), limit)
