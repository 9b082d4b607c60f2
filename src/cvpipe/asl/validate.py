"""Checks a definition before it runs, reporting every problem with the path to the field at fault.

A problem reads like ``States.Evaluate.ItemProcessor.States.TrainFold: Next 'X' does not exist``.
Besides the spec's rules it rejects, with a clear reason, the few ASL features the local engine
does not run: JSONata, variables (``Assign``) and the distributed Map.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from .choice import validate_rule
from .errors import ALL, DefinitionError
from .intrinsics import is_intrinsic, parse_intrinsic
from .paths import validate_path
from .states import parse_timestamp

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
    "Pass": COMMON | TRANSITION | INPUT_OUTPUT | {"Parameters", "ResultPath", "Result"},
    "Task": COMMON
    | TRANSITION
    | INPUT_OUTPUT
    | RECOVERY
    | TASK_TIMEOUTS
    | {"Parameters", "Resource", "Credentials"},
    "Choice": COMMON | INPUT_OUTPUT | {"Choices", "Default"},
    "Wait": COMMON | TRANSITION | INPUT_OUTPUT | {"Seconds", "Timestamp", "SecondsPath", "TimestampPath"},
    "Succeed": COMMON | INPUT_OUTPUT,
    "Fail": COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
    "Parallel": COMMON | TRANSITION | INPUT_OUTPUT | RECOVERY | {"Parameters", "Branches"},
    "Map": COMMON | TRANSITION | INPUT_OUTPUT | RECOVERY | MAP_ITEMS,
}
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
NO_DISTRIBUTED_MAP = "the distributed Map is not supported by the local engine"
NOT_SUPPORTED = {
    "Assign": "variables (Assign) are not supported by the local engine",
    "Arguments": "JSONata fields are not supported by the local engine",
    "Output": "JSONata fields are not supported by the local engine",
    **{name: NO_DISTRIBUTED_MAP for name in DISTRIBUTED_MAP},
}

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
CATCHER_FIELDS = {"ErrorEquals", "Next", "ResultPath", "Comment"}

MAX_STATE_NAME = 80


def validate(definition: Any) -> None:
    """Raise DefinitionError listing every problem of ``definition``; return None if there is none."""
    if not isinstance(definition, dict):
        raise DefinitionError(["the definition must be a JSON object"])
    problems = _unknown_fields("", definition, TOP_LEVEL_FIELDS)
    problems += _query_language("", definition)
    if "TimeoutSeconds" in definition and not _positive_int(definition["TimeoutSeconds"]):
        problems.append("TimeoutSeconds must be a positive integer")
    problems += _machine("", definition)
    problems += _duplicate_names(definition)
    if problems:
        raise DefinitionError(problems)


def _machine(where: str, machine: dict[str, Any]) -> list[str]:
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
        problems += _state(f"{where}States.{name}", name, state, set(states))
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


def _state(where: str, name: str, state: Any, names: set[str]) -> list[str]:
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
    problems += _unknown_fields(where, state, FIELDS[state_type])
    problems += _query_language(where, state)
    if state_type not in TERMINAL_TYPES:
        problems += _transition(where, state, names)
    problems += _paths(where, state)
    for template in ("Parameters", "ItemSelector", "ResultSelector"):
        if template in state:
            problems += _template(f"{where}.{template}", state[template])
    if "Retry" in state:
        problems += _handlers(f"{where}.Retry", state["Retry"], "Retrier", RETRIER_FIELDS, names=None)
    if "Catch" in state:
        problems += _handlers(f"{where}.Catch", state["Catch"], "Catcher", CATCHER_FIELDS, names=names)
    check = CHECKS.get(state_type)
    return problems + (check(where, state, names) if check else [])


def _unknown_fields(where: str, spec: dict[str, Any], allowed: set[str]) -> list[str]:
    prefix = f"{where}: " if where else ""
    problems = []
    for field in spec:
        if field in NOT_SUPPORTED:
            problems.append(f"{prefix}{field}: {NOT_SUPPORTED[field]}")
        elif field not in allowed:
            problems.append(f"{prefix}field '{field}' is not allowed here")
    return problems


def _query_language(where: str, spec: dict[str, Any]) -> list[str]:
    if spec.get("QueryLanguage", "JSONPath") == "JSONPath":
        return []
    prefix = f"{where}: " if where else ""
    return [
        f"{prefix}QueryLanguage {spec['QueryLanguage']!r}: only JSONPath is supported by the local engine"
    ]


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
            parse_intrinsic(value)
        except ValueError as exc:
            return [f"{where}: {exc}"]
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
    problems = []
    if "IntervalSeconds" in retrier and not _positive_int(retrier["IntervalSeconds"]):
        problems.append(f"{where}: IntervalSeconds must be a positive integer")
    if "MaxAttempts" in retrier and not _non_negative_int(retrier["MaxAttempts"]):
        problems.append(f"{where}: MaxAttempts must be a non-negative integer")
    if "BackoffRate" in retrier and not (_number(retrier["BackoffRate"]) and retrier["BackoffRate"] >= 1.0):
        problems.append(f"{where}: BackoffRate must be a number >= 1.0")
    if "MaxDelaySeconds" in retrier and not _positive_int(retrier["MaxDelaySeconds"]):
        problems.append(f"{where}: MaxDelaySeconds must be a positive integer")
    if retrier.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
        problems.append(f"{where}: JitterStrategy must be FULL or NONE")
    return problems


def _check_task(where: str, state: dict[str, Any], names: set[str]) -> list[str]:
    problems = [] if isinstance(state.get("Resource"), str) else [f"{where}: Resource is required"]
    for field in ("TimeoutSeconds", "HeartbeatSeconds"):
        if field in state and not _positive_int(state[field]):
            problems.append(f"{where}: {field} must be a positive integer")
        if field in state and f"{field}Path" in state:
            problems.append(f"{where}: has both {field} and {field}Path")
    timeout, heartbeat = state.get("TimeoutSeconds"), state.get("HeartbeatSeconds")
    if _positive_int(timeout) and _positive_int(heartbeat) and heartbeat >= timeout:
        problems.append(f"{where}: HeartbeatSeconds must be smaller than TimeoutSeconds")
    return problems


def _check_choice(where: str, state: dict[str, Any], names: set[str]) -> list[str]:
    choices = state.get("Choices")
    if not isinstance(choices, list) or not choices:
        return [f"{where}: Choices must be a non-empty array"]
    problems = []
    for index, rule in enumerate(choices):
        at = f"{where}.Choices[{index}]"
        problems += [f"{at}: {problem}" for problem in validate_rule(rule)]
        target = rule.get("Next") if isinstance(rule, dict) else None
        if isinstance(target, str) and target not in names:
            problems.append(f"{at}: Next '{target}' does not exist")
    if "Default" in state and not _names_one_of(state["Default"], names):
        problems.append(f"{where}: Default '{state['Default']}' does not exist")
    return problems


def _check_wait(where: str, state: dict[str, Any], names: set[str]) -> list[str]:
    given = [field for field in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if field in state]
    if len(given) != 1:
        return [f"{where}: exactly one of Seconds, Timestamp, SecondsPath or TimestampPath is required"]
    if "Seconds" in state and not _non_negative_int(state["Seconds"]):
        return [f"{where}: Seconds must be a non-negative integer"]
    if "Timestamp" in state and parse_timestamp(state["Timestamp"]) is None:
        return [f"{where}: Timestamp {state['Timestamp']!r} is not an RFC 3339 timestamp"]
    return []


def _check_fail(where: str, state: dict[str, Any], names: set[str]) -> list[str]:
    problems = []
    for field in ("Error", "Cause"):
        if field in state and f"{field}Path" in state:
            problems.append(f"{where}: has both {field} and {field}Path")
        if field in state and not isinstance(state[field], str):
            problems.append(f"{where}: {field} must be a string")
    return problems


def _check_parallel(where: str, state: dict[str, Any], names: set[str]) -> list[str]:
    branches = state.get("Branches")
    if not isinstance(branches, list) or not branches:
        return [f"{where}: Branches must be a non-empty array"]
    return [
        problem
        for index, branch in enumerate(branches)
        for problem in _sub_machine(f"{where}.Branches[{index}]", branch)
    ]


def _check_map(where: str, state: dict[str, Any], names: set[str]) -> list[str]:
    problems = []
    processors = [field for field in ("ItemProcessor", "Iterator") if field in state]
    if len(processors) != 1:
        problems.append(f"{where}: exactly one of ItemProcessor or Iterator is required")
    else:
        problems += _sub_machine(f"{where}.{processors[0]}", state[processors[0]], processor=True)
    if "ItemSelector" in state and "Parameters" in state:
        problems.append(f"{where}: has both ItemSelector and Parameters (its older name)")
    if "MaxConcurrency" in state and not _non_negative_int(state["MaxConcurrency"]):
        problems.append(f"{where}: MaxConcurrency must be a non-negative integer")
    if "MaxConcurrency" in state and "MaxConcurrencyPath" in state:
        problems.append(f"{where}: has both MaxConcurrency and MaxConcurrencyPath")
    return problems


CHECKS = {
    "Task": _check_task,
    "Choice": _check_choice,
    "Wait": _check_wait,
    "Fail": _check_fail,
    "Parallel": _check_parallel,
    "Map": _check_map,
}


def _sub_machine(where: str, machine: Any, *, processor: bool = False) -> list[str]:
    """A Parallel branch, or a Map's ItemProcessor or Iterator (either may carry a ProcessorConfig)."""
    if not isinstance(machine, dict):
        return [f"{where}: must be an object with StartAt and States"]
    allowed = MACHINE_FIELDS | ({"ProcessorConfig"} if processor else set())
    problems = _unknown_fields(where, machine, allowed)
    config = machine.get("ProcessorConfig", {})
    if isinstance(config, dict) and config.get("Mode", "INLINE") != "INLINE":
        problems.append(f"{where}.ProcessorConfig: {NO_DISTRIBUTED_MAP}")
    return problems + _machine(f"{where}.", machine)


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
