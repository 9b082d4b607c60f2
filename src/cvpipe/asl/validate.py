"""Checks a definition before it runs, reporting every problem with the path to the field at fault.

A problem reads like ``States.Evaluate.ItemProcessor.States.TrainFold: Next 'X' does not exist``.
Both query languages are checked: a JSONata state may not carry JSONPath-only fields (InputPath,
Parameters, ResultPath, ...) and a JSONPath state may not carry JSONata-only ones (Arguments, Output,
Condition, Items); every ``{% %}`` expression must parse; and every variable a state reads must be
assigned on some path before it (in the state's own scope or one around it).
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from .choice import validate_rule
from .distributed import (
    GET_OBJECT,
    INPUT_TYPES,
    LIST_OBJECTS,
    MAX_BATCH_BYTES,
    MAX_CONCURRENCY,
    OUTPUT_TYPES,
    PUT_OBJECT,
    TRANSFORMATIONS,
)
from .errors import ALL, DefinitionError
from .expressions import (
    RESERVED,
    expression_problem,
    expressions_in,
    is_expression,
    referenced_variables,
)
from .intrinsics import MAX_NESTING, is_intrinsic, nesting_depth, parse_intrinsic
from .paths import validate_path
from .states import JSONATA, JSONPATH, MAX_SECONDS, WAIT_FOR_TASK_TOKEN, parse_timestamp

COMMON = {"Type", "Comment", "QueryLanguage"}
TRANSITION = {"Next", "End"}
INPUT_OUTPUT = {"InputPath", "OutputPath"}
RECOVERY = {"ResultSelector", "ResultPath", "Retry", "Catch"}

TASK_TIMEOUTS = {"TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath"}
MAP_ITEMS = {
    "ItemsPath",
    "ItemSelector",
    "Parameters",
    "ItemProcessor",
    "Iterator",
    "MaxConcurrency",
    "MaxConcurrencyPath",
}

FIELDS: dict[str, set[str]] = {
    "Pass": COMMON | TRANSITION | INPUT_OUTPUT | {"Parameters", "ResultPath", "Result", "Assign"},
    "Task": COMMON
    | TRANSITION
    | INPUT_OUTPUT
    | RECOVERY
    | TASK_TIMEOUTS
    | {"Parameters", "Resource", "Credentials", "Assign"},
    "Choice": COMMON | INPUT_OUTPUT | {"Choices", "Default", "Assign"},
    "Wait": COMMON
    | TRANSITION
    | INPUT_OUTPUT
    | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath", "Assign"},
    "Succeed": COMMON | INPUT_OUTPUT,
    "Fail": COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": COMMON | TRANSITION | INPUT_OUTPUT | RECOVERY | {"Parameters", "Branches", "Assign"},
    "Map": COMMON | TRANSITION | INPUT_OUTPUT | RECOVERY | MAP_ITEMS | {"Assign"},
}
"""The fields of each type in a JSONPath state."""

JSONATA_ONLY = {"Arguments", "Output", "Items", "Condition"}
JSONPATH_ONLY = {
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "Result",
    "ItemsPath",
    "Iterator",
    "SecondsPath",
    "TimestampPath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "MaxConcurrencyPath",
    "ErrorPath",
    "CausePath",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCountPath",
}
JSONATA_FIELDS: dict[str, set[str]] = {
    "Pass": COMMON | TRANSITION | {"Output", "Assign"},
    "Task": COMMON
    | TRANSITION
    | {"Resource", "Credentials", "Arguments", "Output", "Assign", "Retry", "Catch"}
    | {"TimeoutSeconds", "HeartbeatSeconds"},
    "Choice": COMMON | {"Choices", "Default", "Output", "Assign"},
    "Wait": COMMON | TRANSITION | {"Seconds", "Timestamp", "Output", "Assign"},
    "Succeed": COMMON | {"Output"},
    "Fail": COMMON | {"Error", "Cause"},
    "Parallel": COMMON | TRANSITION | {"Branches", "Arguments", "Output", "Assign", "Retry", "Catch"},
    "Map": COMMON
    | TRANSITION
    | {"ItemProcessor", "Items", "ItemSelector", "MaxConcurrency", "Output", "Assign", "Retry", "Catch"},
}
"""The fields of each type in a JSONata state."""
EXPRESSION_FIELDS = (
    "Arguments",
    "Output",
    "Assign",
    "Items",
    "ItemSelector",
    "Seconds",
    "Timestamp",
    "TimeoutSeconds",
    "HeartbeatSeconds",
    "MaxConcurrency",
    "Error",
    "Cause",
    "ToleratedFailurePercentage",
    "ToleratedFailureCount",
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
)
"""Fields of a JSONata state whose values may hold ``{% %}`` expressions."""
TERMINAL_TYPES = {"Choice", "Succeed", "Fail"}

DISTRIBUTED_MAP = [
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "Label",
    "ToleratedFailurePercentage",
    "ToleratedFailureCount",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCountPath",
]
NOT_SUPPORTED: dict[str, str] = {}
"""Fields the local engine refuses although AWS accepts them, with the reason."""

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_VARIABLE_NAME = 80
_PATH_VARIABLE = re.compile(r"(?<![\w$])\$([A-Za-z_][A-Za-z0-9_]*)")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'")

TOP_LEVEL_FIELDS = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}
MACHINE_FIELDS = {"StartAt", "States", "Comment"}
RETRIER_FIELDS = {
    "ErrorEquals",
    "IntervalSeconds",
    "MaxAttempts",
    "BackoffRate",
    "MaxDelaySeconds",
    "JitterStrategy",
    "Comment",
}
CATCHER_FIELDS = {"ErrorEquals", "Next", "ResultPath", "Comment", "Assign"}
JSONATA_CATCHER_FIELDS = {"ErrorEquals", "Next", "Output", "Assign", "Comment"}

MAX_STATE_NAME = 80


def validate(definition: Any) -> None:
    """Raise DefinitionError listing every problem of ``definition``; return None if there is none."""
    if not isinstance(definition, dict):
        raise DefinitionError(["the definition must be a JSON object"])
    problems = _unknown_fields("", definition, TOP_LEVEL_FIELDS)
    problems += _query_language("", definition)
    problems += _bounded("", definition, "TimeoutSeconds", 1, MAX_EXECUTION_SECONDS)
    language = definition.get("QueryLanguage", JSONPATH)
    problems += _machine("", definition, language if language in (JSONATA, JSONPATH) else JSONPATH)
    problems += _duplicate_names(definition)
    if not problems:
        problems += _unassigned_variables("", definition, set(), language)
    if problems:
        raise DefinitionError(problems)


def _machine(where: str, machine: dict[str, Any], language: str) -> list[str]:
    """Problems of a set of states (the top level, a branch, an ItemProcessor); ``where`` prefixes them."""
    states = machine.get("States")
    start_at = machine.get("StartAt")
    if not isinstance(states, dict) or not states:
        return [f"{where}States must be a non-empty object"]
    problems = []
    if not isinstance(start_at, str):
        problems.append(f"{where}StartAt is required")
    elif start_at not in states:
        problems.append(f"{where}StartAt '{start_at}' does not exist")
    for name, state in states.items():
        problems += _state(f"{where}States.{name}", name, state, set(states), language)
    if isinstance(start_at, str) and start_at in states:
        reachable = _reachable(start_at, states)
        problems += [
            f"{where}States.{name}: unreachable from StartAt '{start_at}'"
            for name in states
            if name not in reachable
        ]
    return problems


def _duplicate_names(definition: dict[str, Any]) -> list[str]:
    """State names must be unique across the whole definition, nested machines included."""
    first: dict[str, str] = {}
    problems = []
    pending: list[tuple[str, Any]] = [("", definition)]
    while pending:
        where, machine = pending.pop(0)
        states = machine.get("States") if isinstance(machine, dict) else None
        for name, state in states.items() if isinstance(states, dict) else []:
            at = f"{where}States.{name}"
            if name in first:
                problems.append(
                    f"{at}: the name is already used by {first[name]}; state names must be unique"
                )
            first.setdefault(name, at)
            if not isinstance(state, dict):
                continue
            pending += [
                (f"{at}.Branches[{i}].", branch) for i, branch in enumerate(_list(state.get("Branches")))
            ]
            pending += [
                (f"{at}.{field}.", state[field]) for field in ("ItemProcessor", "Iterator") if field in state
            ]
    return problems


def _reachable(start_at: str, states: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    pending: list[Any] = [start_at]
    while pending:
        name = pending.pop()
        if not isinstance(name, str) or name in seen or name not in states:
            continue
        seen.add(name)
        state = states[name] if isinstance(states[name], dict) else {}
        pending += [state.get("Next"), state.get("Default")]
        for handler in [*_list(state.get("Choices")), *_list(state.get("Catch"))]:
            pending.append(handler.get("Next") if isinstance(handler, dict) else None)
    return seen


def _state(where: str, name: str, state: Any, names: set[str], default_language: str) -> list[str]:
    if not isinstance(state, dict):
        return [f"{where}: a state must be an object"]
    problems = (
        [f"{where}: the name is longer than {MAX_STATE_NAME} characters"]
        if len(name) > MAX_STATE_NAME
        else []
    )
    state_type = state.get("Type")
    if state_type is None:
        return [*problems, f"{where}: Type is required (one of {', '.join(FIELDS)})"]
    if not isinstance(state_type, str) or state_type not in FIELDS:
        return [*problems, f"{where}: unknown Type {state_type!r} (one of {', '.join(FIELDS)})"]
    problems += _query_language(where, state, default_language)
    language = state.get("QueryLanguage", default_language)
    jsonata = language == JSONATA
    allowed = JSONATA_FIELDS[state_type] if jsonata else FIELDS[state_type]
    if state_type == "Map":
        allowed = allowed | (set(DISTRIBUTED_MAP) - JSONPATH_ONLY if jsonata else set(DISTRIBUTED_MAP))
    problems += _unknown_fields(where, state, allowed, language)
    if state_type not in TERMINAL_TYPES:
        problems += _transition(where, state, names)
    if jsonata:
        problems += _expressions(where, state)
    else:
        problems += _paths(where, state)
        for template in ("Parameters", "ItemSelector", "ResultSelector", "Assign"):
            if template in state:
                problems += _template(f"{where}.{template}", state[template])
    if "Assign" in state:
        problems += _assign(f"{where}.Assign", state["Assign"])
    for index, catcher in enumerate(_list(state.get("Catch"))):
        if isinstance(catcher, dict) and "Assign" in catcher:
            at = f"{where}.Catch[{index}].Assign"
            problems += _assign(at, catcher["Assign"]) + ([] if jsonata else _template(at, catcher["Assign"]))
    if "Retry" in state:
        problems += _handlers(f"{where}.Retry", state["Retry"], "Retrier", RETRIER_FIELDS, names=None)
    if "Catch" in state:
        catcher_fields = JSONATA_CATCHER_FIELDS if jsonata else CATCHER_FIELDS
        problems += _handlers(f"{where}.Catch", state["Catch"], "Catcher", catcher_fields, names=names)
    check = CHECKS.get(state_type)
    # Nested machines default to the top level's QueryLanguage, not to their Parallel's or Map's.
    check_language = default_language if state_type in ("Parallel", "Map") else language
    return problems + (check(where, state, names, check_language) if check else [])


def _unknown_fields(
    where: str, spec: dict[str, Any], allowed: set[str], language: str = JSONPATH
) -> list[str]:
    prefix = f"{where}: " if where else ""
    problems = []
    for field in spec:
        if field in NOT_SUPPORTED:
            problems.append(f"{prefix}{field}: {NOT_SUPPORTED[field]}")
        elif field in allowed:
            continue
        elif language == JSONATA and field in JSONPATH_ONLY:
            problems.append(
                f"{prefix}field '{field}' is JSONPath-only: a JSONata state uses Arguments, Output, "
                "Assign and {% %} expressions instead"
            )
        elif language == JSONPATH and field in JSONATA_ONLY:
            problems.append(
                f'{prefix}field \'{field}\' is JSONata-only: set "QueryLanguage": "JSONata" on the state '
                "or the state machine to use it"
            )
        else:
            problems.append(f"{prefix}field '{field}' is not allowed here")
    return problems


def _query_language(where: str, spec: dict[str, Any], default_language: str = JSONPATH) -> list[str]:
    language = spec.get("QueryLanguage", default_language)
    prefix = f"{where}: " if where else ""
    if language not in (JSONATA, JSONPATH):
        return [f"{prefix}QueryLanguage {language!r} must be JSONata or JSONPath"]
    if where and default_language == JSONATA and language == JSONPATH:
        return [
            f"{prefix}QueryLanguage JSONPath is not allowed in a state machine whose QueryLanguage is JSONata"
        ]
    return []


def _expressions(where: str, state: dict[str, Any]) -> list[str]:
    """A JSONata state: every ``{% %}`` expression parses, and no field name ends in ``.$``."""
    problems = []
    for field in EXPRESSION_FIELDS:
        if field in state:
            problems += _expression_problems(f"{where}.{field}", state[field])
    for index, catcher in enumerate(_list(state.get("Catch"))):
        if isinstance(catcher, dict):
            for field in ("Output", "Assign"):
                if field in catcher:
                    problems += _expression_problems(f"{where}.Catch[{index}].{field}", catcher[field])
    return problems


def _expression_problems(where: str, value: Any) -> list[str]:
    problems = [
        f"{at}: {problem}"
        for at, text in expressions_in(value, where)
        if (problem := expression_problem(text))
    ]
    return problems + [
        f"{where}: field names ending in '.$' are JSONPath; in JSONata write the value as a {{% %}} expression"
        for key in _keys(value)
        if key.endswith(".$")
    ]


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(key for item in value.values() for key in _keys(item))]
    if isinstance(value, list):
        return [key for item in value for key in _keys(item)]
    return []


def _assign(where: str, assign: Any) -> list[str]:
    if is_expression(assign):
        return []
    if not isinstance(assign, dict):
        return [f"{where}: must be an object of variable names and values"]
    problems = []
    for key in assign:
        name = key.removesuffix(".$")
        if not VARIABLE_NAME.fullmatch(name) or len(name) > MAX_VARIABLE_NAME:
            problems.append(
                f"{where}: {name!r} is not a variable name (a letter or '_', then letters, digits or '_'; "
                f"at most {MAX_VARIABLE_NAME} characters)"
            )
        elif name in RESERVED:
            problems.append(f"{where}: '{name}' is reserved and cannot be assigned")
    return problems


def _transition(where: str, state: dict[str, Any], names: set[str]) -> list[str]:
    if "Next" in state and "End" in state:
        return [f"{where}: has both Next and End"]
    if "Next" in state:
        return (
            [] if _names_one_of(state["Next"], names) else [f"{where}: Next '{state['Next']}' does not exist"]
        )
    if state.get("End") is True:
        return []
    if "End" in state:
        return [f"{where}: End must be true"]
    return [f"{where}: has neither Next nor End"]


PATH_FIELDS = ("InputPath", "OutputPath")
REFERENCE_PATH_FIELDS = [
    "ItemsPath",
    "SecondsPath",
    "TimestampPath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "MaxConcurrencyPath",
]


def _paths(where: str, state: dict[str, Any]) -> list[str]:
    problems = []
    for field in PATH_FIELDS:
        if state.get(field) is not None:
            problems += _path_problem(f"{where}.{field}", state[field], reference=False)
    if state.get("ResultPath") is not None:
        problems += _result_path(f"{where}.ResultPath", state["ResultPath"])
    for field in REFERENCE_PATH_FIELDS:
        if field in state:
            problems += _path_problem(f"{where}.{field}", state[field], reference=True)
    for field in ("ErrorPath", "CausePath"):
        if field in state:
            problems += _expression(f"{where}.{field}", state[field], reference=True)
    return problems


def _path_problem(where: str, path: Any, *, reference: bool) -> list[str]:
    problem = validate_path(path, reference=reference)
    return [f"{where}: {problem}"] if problem else []


def _result_path(where: str, path: Any) -> list[str]:
    if isinstance(path, str) and path.startswith("$$"):
        return [f"{where}: '{path}' cannot write into the context object"]
    return _path_problem(where, path, reference=True)


def _expression(where: str, value: Any, *, reference: bool = False) -> list[str]:
    """A ``.$`` value, ErrorPath or CausePath: an intrinsic function call or a path."""
    if isinstance(value, str) and is_intrinsic(value):
        try:
            depth = nesting_depth(parse_intrinsic(value))
        except ValueError as exc:
            return [f"{where}: {exc}"]
        if depth > MAX_NESTING:
            return [
                f"{where}: nests {depth} intrinsic functions, one inside another; "
                f"at most {MAX_NESTING} can be nested within a field"
            ]
        return []
    return _path_problem(where, value, reference=reference)


def _template(where: str, template: Any) -> list[str]:
    """Parameters, ItemSelector or ResultSelector: every ``key.$`` holds a path or an intrinsic."""
    if isinstance(template, list):
        return [
            problem
            for index, value in enumerate(template)
            for problem in _template(f"{where}[{index}]", value)
        ]
    if not isinstance(template, dict):
        return []
    problems = []
    for key, value in template.items():
        if key.endswith(".$"):
            problems += _expression(f"{where}.{key}", value)
        else:
            problems += _template(f"{where}.{key}", value)
    return problems


def _handlers(where: str, handlers: Any, kind: str, allowed: set[str], names: set[str] | None) -> list[str]:
    """A Retry (``names`` None) or Catch field."""
    if not isinstance(handlers, list):
        return [f"{where}: must be an array"]
    problems = []
    for index, handler in enumerate(handlers):
        at = f"{where}[{index}]"
        if not isinstance(handler, dict):
            problems.append(f"{at}: a {kind} must be an object")
            continue
        problems += [
            f"{at}: field '{field}' is not allowed in a {kind}" for field in handler if field not in allowed
        ]
        errors = handler.get("ErrorEquals")
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
            problems.append(f"{at}: ErrorEquals must be a non-empty array of error names")
        elif ALL in errors and (len(errors) > 1 or index != len(handlers) - 1):
            problems.append(f"{at}: States.ALL must appear alone, in the last {kind}")
        if names is None:
            problems += _retrier_numbers(at, handler)
        elif not isinstance(handler.get("Next"), str):
            problems.append(f"{at}: Next is required")
        else:
            if handler["Next"] not in names:
                problems.append(f"{at}: Next '{handler['Next']}' does not exist")
            if handler.get("ResultPath") is not None:
                problems += _result_path(f"{at}.ResultPath", handler["ResultPath"])
    return problems


def _retrier_numbers(where: str, retrier: dict[str, Any]) -> list[str]:
    problems = _bounded(where, retrier, "IntervalSeconds", 1, MAX_SECONDS)
    problems += _bounded(where, retrier, "MaxAttempts", 0, MAX_SECONDS)
    problems += _bounded(where, retrier, "MaxDelaySeconds", 1, MAX_DELAY_SECONDS)
    if "BackoffRate" in retrier and not (_number(retrier["BackoffRate"]) and retrier["BackoffRate"] >= 1.0):
        problems.append(f"{where}: BackoffRate must be a number >= 1.0")
    if retrier.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
        problems.append(f"{where}: JitterStrategy must be FULL or NONE")
    return problems


MAX_DELAY_SECONDS = 31_622_400
MAX_EXECUTION_SECONDS = 31_536_000
"""A standard execution runs at most one year."""
DISTRIBUTED_MAX_CONCURRENCY = MAX_CONCURRENCY


def _bounded(
    where: str,
    state: dict[str, Any],
    field: str,
    low: int,
    high: int,
    jsonata: bool = False,
    *,
    whole: bool = True,
) -> list[str]:
    """``field``, if present, is an integer (a number if not ``whole``) in [low, high] (or, in
    JSONata, an expression)."""
    if field not in state or (jsonata and is_expression(state[field])):
        return []
    value = state[field]
    if not (_int(value) if whole else _number(value)) or not low <= value <= high:
        prefix = f"{where}: " if where else ""
        kind = "an integer" if whole else "a number"
        return [f"{prefix}{field} must be {kind} from {low} to {high}, not {value!r}"]
    return []


def _check_task(where: str, state: dict[str, Any], names: set[str], language: str) -> list[str]:
    problems = [] if isinstance(state.get("Resource"), str) else [f"{where}: Resource is required"]
    jsonata = language == JSONATA
    for field in ("TimeoutSeconds", "HeartbeatSeconds"):
        problems += _bounded(where, state, field, 1, MAX_SECONDS, jsonata)
        if field in state and f"{field}Path" in state:
            problems.append(f"{where}: has both {field} and {field}Path")
    timeout, heartbeat = state.get("TimeoutSeconds"), state.get("HeartbeatSeconds")
    if _positive_int(timeout) and _positive_int(heartbeat) and heartbeat >= timeout:
        problems.append(f"{where}: HeartbeatSeconds must be smaller than TimeoutSeconds")
    if str(state.get("Resource", "")).endswith(WAIT_FOR_TASK_TOKEN):
        field, token = (
            ("Arguments", "$states.context.Task.Token") if jsonata else ("Parameters", "$$.Task.Token")
        )
        if not any(token in text for text in _strings(state.get(field))):
            problems.append(
                f"{where}: a {WAIT_FOR_TASK_TOKEN} task must pass the task token on: reference {token} in {field}"
            )
    return problems


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def _check_choice(where: str, state: dict[str, Any], names: set[str], language: str) -> list[str]:
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        return [f"{where}: Choices must be a non-empty array"]
    problems = []
    for index, rule in enumerate(choices):
        at = f"{where}.Choices[{index}]"
        if language == JSONATA:
            problems += _jsonata_rule(at, rule)
        else:
            problems += [f"{at}: {problem}" for problem in validate_rule(rule)]
        target = rule.get("Next") if isinstance(rule, dict) else None
        if isinstance(target, str) and target not in names:
            problems.append(f"{at}: Next '{target}' does not exist")
        if isinstance(rule, dict) and "Assign" in rule:
            problems += _assign(f"{at}.Assign", rule["Assign"])
            if language != JSONATA:
                problems += _template(f"{at}.Assign", rule["Assign"])
    if "Default" in state and not _names_one_of(state["Default"], names):
        problems.append(f"{where}: Default '{state['Default']}' does not exist")
    return problems


def _jsonata_rule(where: str, rule: Any) -> list[str]:
    if not isinstance(rule, dict):
        return [f"{where}: a Choice rule must be an object"]
    problems = [
        f"{where}: field '{key}' is not allowed in a JSONata Choice rule (Condition, Next, Assign, Output)"
        for key in rule
        if key not in {"Condition", "Next", "Assign", "Output", "Comment"}
    ]
    if not isinstance(rule.get("Next"), str):
        problems.append(f"{where}: 'Next' must name a state")
    condition = rule.get("Condition")
    if isinstance(condition, bool):
        return problems
    if not is_expression(condition):
        return [*problems, f"{where}: Condition must be a {{% %}} expression or a boolean"]
    for field in ("Condition", "Output", "Assign"):
        if field in rule:
            problems += _expression_problems(f"{where}.{field}", rule[field])
    return problems


def _check_wait(where: str, state: dict[str, Any], names: set[str], language: str) -> list[str]:
    given = [field for field in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if field in state]
    if len(given) != 1:
        return [f"{where}: exactly one of Seconds, Timestamp, SecondsPath or TimestampPath is required"]
    jsonata = language == JSONATA
    problems = _bounded(where, state, "Seconds", 0, MAX_SECONDS, jsonata)
    timestamp = state.get("Timestamp")
    if (
        "Timestamp" in state
        and not (jsonata and is_expression(timestamp))
        and parse_timestamp(timestamp) is None
    ):
        problems.append(f"{where}: Timestamp {timestamp!r} is not an RFC 3339 timestamp")
    return problems


def _check_fail(where: str, state: dict[str, Any], names: set[str], language: str) -> list[str]:
    problems = []
    for field in ("Error", "Cause"):
        if field in state and f"{field}Path" in state:
            problems.append(f"{where}: has both {field} and {field}Path")
        if field in state and not isinstance(state[field], str):
            problems.append(f"{where}: {field} must be a string")
    return problems


def _check_parallel(where: str, state: dict[str, Any], names: set[str], language: str) -> list[str]:
    branches = state.get("Branches")
    if not isinstance(branches, list) or not branches:
        return [f"{where}: Branches must be a non-empty array"]
    return [
        problem
        for index, branch in enumerate(branches)
        for problem in _sub_machine(f"{where}.Branches[{index}]", branch, language)
    ]


def _check_map(where: str, state: dict[str, Any], names: set[str], language: str) -> list[str]:
    problems = []
    jsonata = state.get("QueryLanguage", language) == JSONATA
    processors = [field for field in ("ItemProcessor", "Iterator") if field in state]
    if len(processors) != 1:
        problems.append(f"{where}: exactly one of ItemProcessor or Iterator is required")
    else:
        problems += _sub_machine(f"{where}.{processors[0]}", state[processors[0]], language, processor=True)
    distributed = is_distributed(state)
    if not distributed:
        problems += [
            f"{where}: {field} is only allowed in a Map whose ItemProcessor.ProcessorConfig.Mode is DISTRIBUTED"
            for field in DISTRIBUTED_MAP
            if field in state and field not in NOT_SUPPORTED
        ]
    if "ItemSelector" in state and "Parameters" in state:
        problems.append(f"{where}: has both ItemSelector and Parameters (its older name)")
    problems += _bounded(
        where,
        state,
        "MaxConcurrency",
        0,
        DISTRIBUTED_MAX_CONCURRENCY if distributed else MAX_SECONDS,
        jsonata,
    )
    if "MaxConcurrency" in state and "MaxConcurrencyPath" in state:
        problems.append(f"{where}: has both MaxConcurrency and MaxConcurrencyPath")
    problems += _bounded(where, state, "ToleratedFailurePercentage", 0, 100, jsonata, whole=False)
    problems += _bounded(where, state, "ToleratedFailureCount", 0, MAX_SECONDS, jsonata)
    if distributed:
        problems += check_distributed(where, state, jsonata)
    return problems


CHECKS = {
    "Task": _check_task,
    "Choice": _check_choice,
    "Wait": _check_wait,
    "Fail": _check_fail,
    "Parallel": _check_parallel,
    "Map": _check_map,
}


def is_distributed(state: dict[str, Any]) -> bool:
    processor = state.get("ItemProcessor")
    config = processor.get("ProcessorConfig") if isinstance(processor, dict) else None
    return isinstance(config, dict) and config.get("Mode") == "DISTRIBUTED"


NAME_CHARACTER = r"[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]"
"""A character AWS allows in the names of executions, Map labels and other resources."""
LABEL = re.compile(NAME_CHARACTER + "{1,40}")
READER_CONFIG_FIELDS = {
    "InputType",
    "ManifestType",
    "CSVHeaderLocation",
    "CSVHeaders",
    "CSVDelimiter",
    "MaxItems",
    "MaxItemsPath",
}
BATCHER_FIELDS = {
    "MaxItemsPerBatch",
    "MaxItemsPerBatchPath",
    "MaxInputBytesPerBatch",
    "MaxInputBytesPerBatchPath",
    "BatchInput",
}


def check_distributed(where: str, state: dict[str, Any], jsonata: bool) -> list[str]:
    """The fields of a Distributed Map (ItemReader, ItemBatcher, ResultWriter, Label)."""
    problems = []
    arguments = "Arguments" if jsonata else "Parameters"
    if "Label" in state and not (isinstance(state["Label"], str) and LABEL.fullmatch(state["Label"])):
        problems.append(
            f"{where}: Label must be 1 to 40 characters without whitespace, brackets, wildcards or "
            "special characters"
        )
    reader = state.get("ItemReader")
    if "ItemReader" in state:
        problems += _sub_fields(f"{where}.ItemReader", reader, {"Resource", "ReaderConfig", arguments})
    if isinstance(reader, dict):
        at = f"{where}.ItemReader"
        if reader.get("Resource") not in (GET_OBJECT, LIST_OBJECTS):
            problems.append(f"{at}: Resource must be {GET_OBJECT} or {LIST_OBJECTS}")
        config = reader.get("ReaderConfig", {})
        problems += _sub_fields(
            f"{at}.ReaderConfig",
            config,
            READER_CONFIG_FIELDS - (JSONPATH_ONLY_SUFFIXED if jsonata else set()),
        )
        if isinstance(config, dict):
            input_type = config.get("InputType")
            unsupported = [
                f"InputType {input_type}" if input_type == "PARQUET" else "",
                "ManifestType" if "ManifestType" in config else "",
            ]
            problems += [
                f"{at}.ReaderConfig: {what} is not supported by the local engine (it reads CSV, JSON, "
                "JSON Lines and S3 inventory manifests of CSV files)"
                for what in unsupported
                if what
            ]
            if reader.get("Resource") == GET_OBJECT and input_type not in (*INPUT_TYPES, "PARQUET"):
                problems.append(f"{at}.ReaderConfig: InputType must be one of {', '.join(INPUT_TYPES)}")
            if input_type == "CSV" and config.get("CSVHeaderLocation", "FIRST_ROW") not in (
                "FIRST_ROW",
                "GIVEN",
            ):
                problems.append(f"{at}.ReaderConfig: CSVHeaderLocation must be FIRST_ROW or GIVEN")
            if config.get("CSVHeaderLocation") == "GIVEN" and not isinstance(config.get("CSVHeaders"), list):
                problems.append(
                    f"{at}.ReaderConfig: CSVHeaderLocation GIVEN needs CSVHeaders (an array of names)"
                )
            problems += _bounded(f"{at}.ReaderConfig", config, "MaxItems", 0, 100_000_000, jsonata)
    for field in ("ItemsPath", "Items"):
        if field in state and "ItemReader" in state:
            problems.append(f"{where}: {field} cannot be used with ItemReader")
    batcher = state.get("ItemBatcher")
    if "ItemBatcher" in state:
        problems += _sub_fields(
            f"{where}.ItemBatcher", batcher, BATCHER_FIELDS - (JSONPATH_ONLY_SUFFIXED if jsonata else set())
        )
    if isinstance(batcher, dict):
        at = f"{where}.ItemBatcher"
        if not any(field in batcher for field in BATCHER_FIELDS - {"BatchInput"}):
            problems.append(f"{at}: needs MaxItemsPerBatch or MaxInputBytesPerBatch (or their Path forms)")
        problems += _bounded(at, batcher, "MaxItemsPerBatch", 1, MAX_SECONDS, jsonata)
        problems += _bounded(at, batcher, "MaxInputBytesPerBatch", 1, MAX_BATCH_BYTES, jsonata)
    if "ResultWriter" in state:
        problems += _result_writer(f"{where}.ResultWriter", state["ResultWriter"], arguments)
    if not jsonata:
        for field, template in (
            ("ItemReader", "Parameters"),
            ("ResultWriter", "Parameters"),
            ("ItemBatcher", "BatchInput"),
        ):
            spec = state.get(field)
            if isinstance(spec, dict) and template in spec:
                problems += _template(f"{where}.{field}.{template}", spec[template])
    return problems


def _result_writer(where: str, writer: Any, arguments: str) -> list[str]:
    """ResultWriter holds a WriterConfig (results shaped into the state's output), a Resource with
    its Parameters/Arguments (results exported), or all three, as AWS requires."""
    problems = _sub_fields(where, writer, {"Resource", "WriterConfig", arguments})
    if not isinstance(writer, dict):
        return problems
    if "Resource" in writer and writer["Resource"] != PUT_OBJECT:
        problems.append(f"{where}: Resource must be {PUT_OBJECT}")
    if ("Resource" in writer) != (arguments in writer):
        problems.append(f"{where}: Resource and {arguments} go together (the object store to export to)")
    if "Resource" not in writer and "WriterConfig" not in writer:
        problems.append(
            f"{where}: needs a WriterConfig, or a Resource with {arguments}, or all three "
            "(it cannot be empty)"
        )
    if "WriterConfig" in writer:
        config = writer["WriterConfig"]
        problems += _sub_fields(f"{where}.WriterConfig", config, {"OutputType", "Transformation"})
        for field, values in (("Transformation", TRANSFORMATIONS), ("OutputType", OUTPUT_TYPES)):
            if isinstance(config, dict) and field in config and config[field] not in values:
                problems.append(f"{where}.WriterConfig: {field} must be one of {', '.join(values)}")
    return problems


JSONPATH_ONLY_SUFFIXED = {"MaxItemsPath", "MaxItemsPerBatchPath", "MaxInputBytesPerBatchPath"}


def _sub_fields(where: str, spec: Any, allowed: set[str]) -> list[str]:
    if not isinstance(spec, dict):
        return [f"{where}: must be an object"]
    return [f"{where}: field '{field}' is not allowed here" for field in spec if field not in allowed]


def _sub_machine(where: str, machine: Any, language: str, *, processor: bool = False) -> list[str]:
    """A Parallel branch, or a Map's ItemProcessor or Iterator (either may carry a ProcessorConfig)."""
    if not isinstance(machine, dict):
        return [f"{where}: must be an object with StartAt and States"]
    allowed = MACHINE_FIELDS | ({"ProcessorConfig"} if processor else set())
    problems = _unknown_fields(where, machine, allowed)
    config = machine.get("ProcessorConfig", {})
    if not isinstance(config, dict) or config.get("Mode", "INLINE") not in ("INLINE", "DISTRIBUTED"):
        problems.append(f"{where}.ProcessorConfig: Mode must be INLINE or DISTRIBUTED")
    elif config.get("Mode") == "DISTRIBUTED" and config.get("ExecutionType") not in ("STANDARD", "EXPRESS"):
        # AWS: "You must provide this field if you specified DISTRIBUTED for the Mode sub-field."
        problems.append(f"{where}.ProcessorConfig: ExecutionType must be STANDARD or EXPRESS")
    return problems + _machine(f"{where}.", machine, language)


# -- variables: every one read is assigned on some path before ------------------------------------


def _unassigned_variables(where: str, machine: dict[str, Any], outer: set[str], language: str) -> list[str]:
    """Variables read by the states of ``machine`` that no path from StartAt assigns first.

    ``outer`` are the variables of the scopes around (readable inside a Parallel or inline Map).
    A state's own Assign is not visible to the state's other fields, nor to itself.
    """
    states: dict[str, Any] = machine["States"]
    before: dict[str, set[str]] = {machine["StartAt"]: set(outer)}
    pending = [machine["StartAt"]]
    while pending:
        name = pending.pop()
        for target, assigned in _transitions(states[name]):
            reaching = before[name] | assigned
            if target in states and (target not in before or not reaching <= before[target]):
                before[target] = before.get(target, set()) | reaching
                pending.append(target)
    problems = []
    for name, state in states.items():
        if name not in before:
            continue
        state_language = state.get("QueryLanguage", language)
        at = f"{where}States.{name}"
        for field, variable in _reads(state, state_language):
            if variable not in before[name]:
                problems.append(
                    f"{at}.{field}: reads the variable ${variable}, which no state assigns before it "
                    "(assign it with Assign in an earlier state)"
                )
        inner_outer = set() if is_distributed(state) else before[name]
        for index, branch in enumerate(_list(state.get("Branches"))):
            problems += _unassigned_variables(f"{at}.Branches[{index}].", branch, inner_outer, language)
        for field in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(field), dict):
                problems += _unassigned_variables(f"{at}.{field}.", state[field], inner_outer, language)
    return problems


def _assigned(spec: Any) -> set[str]:
    assign = spec.get("Assign") if isinstance(spec, dict) else None
    return {key.removesuffix(".$") for key in assign} if isinstance(assign, dict) else set()


def _transitions(state: dict[str, Any]) -> list[tuple[str, set[str]]]:
    """Each state a state can go to, with the variables it assigns on the way."""
    own = _assigned(state)
    found = [(state["Next"], own)] if "Next" in state else []
    if "Default" in state:
        found.append((state["Default"], own))
    for rule in _list(state.get("Choices")):
        if isinstance(rule, dict) and "Next" in rule:
            found.append((rule["Next"], _assigned(rule) if "Assign" in rule else own))
    for catcher in _list(state.get("Catch")):
        if isinstance(catcher, dict) and "Next" in catcher:
            found.append((catcher["Next"], _assigned(catcher)))
    return found


def _reads(state: dict[str, Any], language: str) -> list[tuple[str, str]]:
    """``(field, variable)`` for every variable a state reads (not inside its nested machines)."""
    fields: dict[str, Any] = {
        key: value for key, value in state.items() if key not in ("Branches", "ItemProcessor", "Iterator")
    }
    for index, rule in enumerate(_list(state.get("Choices"))):
        fields[f"Choices[{index}]"] = rule
    fields.pop("Choices", None)
    for index, catcher in enumerate(_list(state.get("Catch"))):
        fields[f"Catch[{index}]"] = catcher
    fields.pop("Catch", None)
    found = []
    for field, value in fields.items():
        if language == JSONATA:
            names = {name for _, text in expressions_in(value) for name in referenced_variables(text)}
        else:
            names = {
                name
                for text in _path_strings(field, value)
                for name in _PATH_VARIABLE.findall(_QUOTED.sub("''", text))
            }
        found += [(field, name) for name in sorted(names)]
    return found


def _path_strings(key: str, value: Any) -> list[str]:
    """The paths and intrinsic calls of a JSONPath field: ``name.$`` values, ``...Path`` fields and
    Choice rules' ``Variable``, at any depth."""
    if isinstance(value, str):
        return [value] if key.endswith((".$", "Path")) or key == "Variable" else []
    if isinstance(value, dict):
        return [text for name, item in value.items() for text in _path_strings(name, item)]
    if isinstance(value, list):
        return [text for item in value for text in _path_strings(key, item)]
    return []


def _names_one_of(target: Any, names: set[str]) -> bool:
    return isinstance(target, str) and target in names


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value: Any) -> TypeGuard[int]:
    return _int(value) and value > 0


def _non_negative_int(value: Any) -> TypeGuard[int]:
    return _int(value) and value >= 0
