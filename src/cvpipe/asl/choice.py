"""Choice rules: comparison operators, type tests and the And/Or/Not combinators.

A comparison whose value has the wrong type is false, as in AWS. A Variable that selects nothing is
a ``States.Runtime`` error, except under IsPresent, whose whole point is to ask.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

from .errors import NO_CHOICE_MATCHED, RUNTIME, StatesError
from .paths import compact_json, get_path, path_exists, validate_path

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:Z|([+-])(\d{2}):(\d{2}))", re.ASCII
)


def _as_string(value: Any) -> bytes | None:
    # AWS orders strings as Java does, by UTF-16 code unit; big-endian UTF-16 bytes sort the same way.
    return value.encode("utf-16-be", "surrogatepass") if isinstance(value, str) else None


def _as_number(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _as_boolean(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_timestamp(value: Any) -> Decimal | None:
    """Seconds since the epoch of an RFC 3339 timestamp with an uppercase T and Z, exact to any precision."""
    match = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    if not match:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, sign, offset_hours, offset_minutes = match.groups()[6:]
    if offset_minutes and int(offset_minutes) > 59:
        return None
    try:
        offset = timedelta(hours=int(offset_hours or 0), minutes=int(offset_minutes or 0))
        zone = timezone(-offset if sign == "-" else offset)
        moment = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None
    return Decimal((moment - _EPOCH) // timedelta(seconds=1)) + Decimal("0" + (fraction or ""))


_TYPES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "String": (_as_string, "a string"),
    "Numeric": (_as_number, "a number"),
    "Boolean": (_as_boolean, "a boolean"),
    "Timestamp": (_as_timestamp, "an RFC 3339 timestamp such as '2016-08-18T17:33:00Z'"),
}
_RELATIONS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}
_COMPARISONS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    type_name + relation_name: (type_name, relation)
    for type_name in _TYPES
    for relation_name, relation in _RELATIONS.items()
    if type_name != "Boolean" or relation_name == "Equals"
}
_PATH_COMPARISONS = {name + "Path": name for name in _COMPARISONS}
_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "IsNull": lambda value: value is None,
    "IsNumeric": lambda value: _as_number(value) is not None,
    "IsString": lambda value: isinstance(value, str),
    "IsBoolean": lambda value: isinstance(value, bool),
    "IsTimestamp": lambda value: _as_timestamp(value) is not None,
}
_COMBINATORS = ("And", "Or", "Not")
_OPERATORS = frozenset(
    [*_COMPARISONS, *_PATH_COMPARISONS, "StringMatches", *_TYPE_TESTS, "IsPresent", *_COMBINATORS]
)


@lru_cache(maxsize=256)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """StringMatches: ``*`` matches any run of characters, ``\\*`` a star and ``\\\\`` a backslash."""
    parts = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\" and pattern[position + 1 : position + 2] in ("*", "\\"):
            parts.append(re.escape(pattern[position + 1]))
            position += 2
            continue
        parts.append(".*" if char == "*" else re.escape(char))
        position += 1
    return re.compile("".join(parts), re.DOTALL)


def _operator_of(rule: dict[str, Any]) -> str:
    found = [key for key in rule if key in _OPERATORS]
    if len(found) != 1:
        raise StatesError(RUNTIME, f"a Choice rule needs exactly one operator, found {found or 'none'}")
    return found[0]


def _resolve(path: str, data: Any, context: dict[str, Any] | None) -> Any:
    try:
        return get_path(path, data, context)
    except StatesError:
        raise StatesError(
            RUNTIME, f"Invalid path '{path}': The choice state's condition path references an invalid value."
        ) from None


def evaluate_rule(rule: dict[str, Any], data: Any, context: dict[str, Any] | None = None) -> bool:
    """Whether a Choice rule (top-level or nested) holds for ``data``."""
    name = _operator_of(rule)
    if name == "And":
        return all(evaluate_rule(inner, data, context) for inner in rule["And"])
    if name == "Or":
        return any(evaluate_rule(inner, data, context) for inner in rule["Or"])
    if name == "Not":
        return not evaluate_rule(rule["Not"], data, context)
    variable, operand = rule["Variable"], rule[name]
    if name == "IsPresent":
        return bool(path_exists(variable, data, context) == operand)
    value = _resolve(variable, data, context)
    if name in _TYPE_TESTS:
        return bool(_TYPE_TESTS[name](value) == operand)
    if name == "StringMatches":
        return isinstance(value, str) and _wildcard(operand).fullmatch(value) is not None
    if name in _PATH_COMPARISONS:
        name, operand = _PATH_COMPARISONS[name], _resolve(operand, data, context)
    type_name, relation = _COMPARISONS[name]
    as_type = _TYPES[type_name][0]
    left, right = as_type(value), as_type(operand)
    return left is not None and right is not None and relation(left, right)


def next_state(state: dict[str, Any], data: Any, context: dict[str, Any] | None = None) -> str:
    """The Next of the first Choice rule that matches, else Default."""
    rule = matching_rule(state, data, context)
    if rule is not None:
        return str(rule["Next"])
    if "Default" in state:
        return str(state["Default"])
    raise StatesError(NO_CHOICE_MATCHED, "No Choice rule matched the input and the state has no Default.")


def matching_rule(
    state: dict[str, Any], data: Any, context: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The first Choice rule that matches ``data``, or None."""
    for rule in state.get("Choices", []):
        if evaluate_rule(rule, data, context):
            return dict(rule)
    return None


def validate_rule(rule: dict[str, Any]) -> list[str]:
    """Problems of a top-level Choice rule and of the rules nested in it.

    Problems of nested rules say where they are, e.g. ``And[1].Not: NumericEquals must be a number``.
    """
    return _rule_problems(rule, "", top_level=True)


def _rule_problems(rule: Any, where: str, *, top_level: bool) -> list[str]:
    at = f"{where}: " if where else ""
    if not isinstance(rule, dict):
        return [f"{at}a Choice rule must be an object"]
    allowed = {"Variable", "Comment"} | ({"Next", "Assign"} if top_level else set())
    problems = []
    for key in rule:
        if key == "Next" and not top_level:
            problems.append(f"{at}'Next' is only allowed on top-level rules")
        elif key not in _OPERATORS and key not in allowed:
            problems.append(f"{at}{key!r} is not a Choice rule operator")
    if top_level and not (isinstance(rule.get("Next"), str) and rule["Next"]):
        problems.append(f"{at}'Next' must name a state")
    names = [key for key in rule if key in _OPERATORS]
    if len(names) != 1:
        found = ", ".join(names) if names else "none"
        return [*problems, f"{at}needs exactly one operator, found {found}"]
    name = names[0]
    operand = rule[name]
    inner_where = f"{where}.{name}" if where else name
    if name in _COMBINATORS:
        if "Variable" in rule:
            problems.append(f"{at}'Variable' is not allowed with {name}")
        if name == "Not":
            return problems + _rule_problems(operand, inner_where, top_level=False)
        if not isinstance(operand, list) or not operand:
            return [*problems, f"{at}{name} must be a non-empty array of rules"]
        for index, inner in enumerate(operand):
            problems += _rule_problems(inner, f"{inner_where}[{index}]", top_level=False)
        return problems
    variable = rule.get("Variable")
    if variable is None:
        problems.append(f"{at}{name} needs a 'Variable'")
    elif problem := validate_path(variable):
        problems.append(f"{at}Variable {problem}")
    operand_problem = _operand_problem(name, operand)
    if operand_problem:
        problems.append(f"{at}{name} {operand_problem}")
    return problems


def _operand_problem(name: str, operand: Any) -> str | None:
    if name in _PATH_COMPARISONS:
        problem = validate_path(operand)
        return f"must be a path: {problem}" if problem else None
    if name in _TYPE_TESTS or name == "IsPresent":
        expected_type = "Boolean"
    elif name == "StringMatches":
        expected_type = "String"
    else:
        expected_type = _COMPARISONS[name][0]
    as_type, description = _TYPES[expected_type]
    return None if as_type(operand) is not None else f"must be {description}, got {compact_json(operand)}"
