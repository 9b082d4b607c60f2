"""JSONPath as Step Functions evaluates it: Paths, Reference Paths and the context object (``$$``).

AWS evaluates paths with Jayway JsonPath (over Jackson); this module reproduces what a state machine
can observe of it:

- a *definite* path (only names and indexes, e.g. ``$.a.b[0]['c d']``) yields its value and fails
  when a step finds nothing; an index past the end of an array reads as null, as Jackson does;
- an *indefinite* path (wildcard, slice, union, filter, recursive descent) yields the list of its
  matches, which may be empty; only its definite prefix must exist.

Definite paths, which nearly every definition uses, are walked by hand; the indefinite remainder of
a path is parsed once with ``jsonpath_ng.ext`` and applied to the value the definite prefix reaches.
Its common steps (names, indexes, wildcards, slices, recursive descent) are compiled into functions
over plain values that visit nodes in jsonpath_ng's order; a path with a filter or an extension is
evaluated by jsonpath_ng itself. Values are returned by reference: callers must treat input
documents as immutable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.parser import parse as parse_extended
from jsonpath_ng.jsonpath import Child, Descendants, Fields, Index, Root, Slice, Wildcard

from .errors import RESULT_PATH_MATCH_FAILURE, RUNTIME, StatesError
from .history import to_json_text
from .variables import variables_of

Step = str | int
"""One definite step: an object member name or an array index."""

_STEP = re.compile(
    r"""
      \.(?P<name>[^\s.\[\]()'"*,?@]+)                 # .name
    | \.?\[\s*(?P<index>-?\d+)\s*\]                   # [0]   (AWS also accepts .[0])
    | \.?\[\s*'(?P<single>(?:[^'\\]|\\.)*)'\s*\]      # ['name']
    | \.?\[\s*"(?P<double>(?:[^"\\]|\\.)*)"\s*\]      # ["name"]
    """,
    re.VERBOSE | re.ASCII,
)
_ESCAPED = re.compile(r"\\(.)")
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class _Path:
    in_context: bool
    variable: str | None
    """``$name...``: the path starts at a variable's value."""
    steps: tuple[Step, ...]
    """The definite prefix."""
    rest: Callable[[Any], list[Any]] | None
    """The indefinite remainder: the list of its matches in the value the prefix reaches; None for a
    definite path."""


class _NoMatch(Exception):
    def __init__(self, depth: int) -> None:
        super().__init__(depth)
        self.depth = depth
        """Index of the step that found nothing."""


_PAST_THE_END = object()

compact_json = to_json_text
"""JSON text as AWS prints payloads: no insignificant whitespace, non-ASCII kept as is."""


@lru_cache(maxsize=4096)
def _compile(path: str) -> _Path:
    if not path.startswith("$"):
        raise ValueError(f"invalid path '{path}': a path must start with '$'")
    in_context = path.startswith("$$")
    variable = _VARIABLE.match(path)
    body = path[variable.end() :] if variable else path[2:] if in_context else path[1:]
    steps: list[Step] = []
    position = 0
    while match := _STEP.match(body, position):
        if match["name"] is not None:
            steps.append(match["name"])
        elif match["index"] is not None:
            steps.append(int(match["index"]))
        else:
            quoted = match["single"] if match["single"] is not None else match["double"]
            steps.append(_ESCAPED.sub(r"\1", quoted))
        position = match.end()
    rest = None
    if position < len(body):
        try:
            parsed = parse_extended("$" + body[position:])
        except JSONPathError as error:
            raise ValueError(f"invalid path '{path}': cannot parse '{body[position:]}' ({error})") from None
        rest = _matcher(parsed)
    return _Path(in_context, variable[1] if variable else None, tuple(steps), rest)


Selector = Callable[[list[Any]], list[Any]]
"""One step of an indefinite path: from the nodes matched so far, the nodes it matches, in order."""


def _matcher(parsed: JSONPath) -> Callable[[Any], list[Any]]:
    """The function that lists ``parsed``'s matches in a value: compiled steps, else jsonpath_ng's."""
    selector = _selector(parsed, top=True)
    if selector is None:
        return lambda value: [match.value for match in parsed.find(value)]
    return lambda value: selector([value])


def _selector(node: JSONPath, top: bool = False) -> Selector | None:
    """``node`` as a Selector, with jsonpath_ng's semantics and order; None for what it has no plain
    form of here (filters, extensions, the root inside a path)."""
    if type(node) is Root:
        return (lambda nodes: nodes) if top else None
    if type(node) is Child or type(node) is Descendants:
        left, right = _selector(node.left, top), _selector(node.right)
        if left is None or right is None:
            return None
        return _sequence(left, right, descend=type(node) is Descendants)
    if type(node) is Fields and "*" not in node.fields:  # a field named * : jsonpath_ng decides
        names = node.fields
        return lambda nodes: [n[name] for n in nodes if isinstance(n, dict) for name in names if name in n]
    if type(node) is Wildcard:
        return lambda nodes: [
            child
            for n in nodes
            if isinstance(n, (dict, list))
            for child in (n.values() if isinstance(n, dict) else n)
        ]
    if type(node) is Index:
        indices = node.indices
        return lambda nodes: [
            n[i] for n in nodes if isinstance(n, list) for i in indices if -len(n) <= i < len(n)
        ]
    if type(node) is Slice and (node.start, node.end, node.step) != (None, None, None):
        if node.step == 0:
            return lambda nodes: []
        part = slice(node.start, node.end, node.step)
        return lambda nodes: [child for n in nodes if isinstance(n, list) for child in n[part]]
    return None


def _sequence(left: Selector, right: Selector, descend: bool) -> Selector:
    """``left.right`` (Child) or ``left..right`` (Descendants: right applies to every node below)."""
    if descend:
        return lambda nodes: right(_containers(left(nodes)))
    return lambda nodes: right(left(nodes))


def _containers(nodes: list[Any]) -> list[Any]:
    """The objects and arrays among ``nodes`` and below them, depth first, each before what it holds:
    the nodes of a recursive descent that a step can find anything in (no step finds anything in a
    string, number, boolean or null)."""
    found: list[Any] = []
    stack = [node for node in reversed(nodes) if isinstance(node, (dict, list))]
    while stack:
        value = stack.pop()
        found.append(value)
        children = reversed(value.values()) if isinstance(value, dict) else reversed(value)
        stack.extend([child for child in children if isinstance(child, (dict, list))])
    return found


def _compiled(path: str) -> _Path:
    if not isinstance(path, str):
        raise StatesError(RUNTIME, f"invalid path {path!r}: a path must be a string")
    try:
        return _compile(path)
    except ValueError as error:
        raise StatesError(RUNTIME, str(error)) from None


def _walk(compiled: _Path, data: Any, context: dict[str, Any] | None) -> Any:
    """Follow the definite steps of a path; raise ``_NoMatch`` at the first one that finds nothing."""
    if compiled.variable is not None:
        variables = variables_of(context)
        found, node = variables.lookup(compiled.variable) if variables else (False, None)
        if not found:
            raise StatesError(RUNTIME, f"The variable '${compiled.variable}' is not defined")
    elif compiled.in_context:
        node = context if context is not None else {}
    else:
        node = data
    last = len(compiled.steps) - 1
    for depth, step in enumerate(compiled.steps):
        if isinstance(step, str):
            if not isinstance(node, dict) or step not in node:
                raise _NoMatch(depth)
            node = node[step]
        elif isinstance(node, list):
            if not -len(node) <= step < len(node):
                if depth == last and compiled.rest is None:
                    return _PAST_THE_END
                raise _NoMatch(depth)
            node = node[step]
        else:
            raise _NoMatch(depth)
    return node


def _jayway_form(compiled: _Path, steps: tuple[Step, ...]) -> str:
    """The normalized path Jayway prints in its messages, e.g. ``$['a'][0]``."""
    root = f"${compiled.variable}" if compiled.variable else "$$" if compiled.in_context else "$"
    return root + "".join(f"['{step}']" if isinstance(step, str) else f"[{step}]" for step in steps)


def get_path(path: str, data: Any, context: dict[str, Any] | None = None) -> Any:
    """Evaluate a Path: ``$...`` against ``data``, ``$$...`` against the context object.

    A definite path returns its value, an indefinite one the list of its matches. Raises
    ``StatesError(States.Runtime)`` naming the path when a definite step finds nothing.
    """
    compiled = _compiled(path)
    try:
        node = _walk(compiled, data, context)
    except _NoMatch as missing:
        reached = _jayway_form(compiled, compiled.steps[: missing.depth + 1])
        raise StatesError(RUNTIME, f"Invalid path '{path}' : No results for path: {reached}") from None
    if node is _PAST_THE_END:
        return None
    if compiled.rest is None:
        return node
    return compiled.rest(node)


def path_exists(path: str, data: Any, context: dict[str, Any] | None = None) -> bool:
    """Whether ``path`` selects something (Choice ``IsPresent``).

    An index past the end of an array does not exist, and an indefinite path exists when it
    has at least one match.
    """
    compiled = _compiled(path)
    try:
        node = _walk(compiled, data, context)
    except (_NoMatch, StatesError):
        return False
    if node is _PAST_THE_END:
        return False
    return compiled.rest is None or bool(compiled.rest(node))


def set_path(data: Any, reference_path: str, value: Any) -> Any:
    """Place ``value`` in ``data`` at a Reference Path, as ResultPath does.

    Returns a new structure and leaves ``data`` untouched (containers along the path are copied,
    the rest is shared). ``$`` replaces the whole input, missing object members are created, and
    array indexes must exist. Raises ``StatesError(States.ResultPathMatchFailure)`` when the path
    cannot be applied, e.g. ``$.a.b`` when ``$.a`` is a string.
    """
    compiled = _compiled(reference_path)
    if compiled.in_context or compiled.variable or compiled.rest is not None:
        raise StatesError(RUNTIME, f"'{reference_path}' is not a Reference Path into the state input")
    try:
        return _assign(data, compiled.steps, 0, value)
    except _NoMatch:
        raise StatesError(
            RESULT_PATH_MATCH_FAILURE,
            f"Unable to apply ReferencePath {reference_path} to input {json.dumps(compact_json(data))}",
        ) from None


def _assign(node: Any, steps: tuple[Step, ...], depth: int, value: Any) -> Any:
    if depth == len(steps):
        return value
    step = steps[depth]
    if isinstance(step, str) and isinstance(node, dict):
        updated = dict(node)
        updated[step] = _assign(node.get(step, {}), steps, depth + 1, value)
        return updated
    if isinstance(step, int) and isinstance(node, list) and -len(node) <= step < len(node):
        items = list(node)
        items[step] = _assign(node[step], steps, depth + 1, value)
        return items
    raise _NoMatch(depth)


def validate_path(path: str, *, reference: bool = False) -> str | None:
    """Return what is wrong with ``path``, or None if it is a valid Path.

    ``reference=True`` also requires a Reference Path: one that can only identify a single node,
    so no wildcards, filters, slices, unions or recursive descent.
    """
    if not isinstance(path, str):
        return f"a path must be a string, not {path!r}"
    try:
        compiled = _compile(path)
    except ValueError as error:
        return str(error)
    if reference and compiled.rest is not None:
        return (
            f"'{path}' is not a Reference Path: wildcards, filters, slices, unions and "
            "recursive descent are not allowed"
        )
    return None
