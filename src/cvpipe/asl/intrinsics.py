"""The ``States.*`` intrinsic functions of payload templates (``"field.$": "States.Format(...)"``).

Arguments are string literals in single quotes (escapes ``\\'`` ``\\{`` ``\\}`` ``\\\\``; any other
backslash is an error), numbers, ``true``/``false``/``null``, paths (``$.x``, ``$$.x``) and nested
calls. Bad syntax is a ``ValueError`` (a definition error); bad arguments at run time raise
``StatesError(States.IntrinsicFailure)`` naming the function.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NoReturn

from .errors import INTRINSIC_FAILURE, StatesError
from .paths import compact_json, get_path, validate_path


@dataclass(frozen=True)
class Constant:
    """A number, boolean or null written in the call."""

    value: Any


@dataclass(frozen=True)
class Text:
    """A quoted string literal."""

    value: str
    pieces: tuple[str, ...]
    """The text split at its unescaped ``{}`` placeholders, for ``States.Format``."""


@dataclass(frozen=True)
class PathArgument:
    path: str


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Argument, ...]


Argument = Constant | Text | PathArgument | Call


def nesting_depth(argument: Argument) -> int:
    """How many calls deep ``argument`` goes: 1 for a call whose arguments hold no call."""
    if not isinstance(argument, Call):
        return 0
    return 1 + max((nesting_depth(inner) for inner in argument.args), default=0)


MAX_NESTING = 10
"""AWS: "You can nest up to 10 intrinsic functions within a field" (checked at creation)."""

FORMAT = "States.Format"
_MAX_STRING_LENGTH = 10_000  # AWS's limit for Base64Encode, Base64Decode and Hash input
_INT32 = (-(2**31), 2**31 - 1)
_MAX_RANGE_LENGTH = 1000
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


class _InvalidArguments(Exception):
    """Raised by a function body; the caller adds the function's name."""


@dataclass(frozen=True)
class _Function:
    body: _Body
    min_args: int
    max_args: int | None


_FUNCTIONS: dict[str, _Function] = {}


_Body = Callable[[list[Any]], Any]


def _intrinsic(name: str, min_args: int, max_args: int | None) -> Callable[[_Body], _Body]:
    def register(body: _Body) -> _Body:
        _FUNCTIONS[name] = _Function(body, min_args, max_args)
        return body

    return register


def is_intrinsic(value: str) -> bool:
    """Whether the value of a ``.$`` field is an intrinsic call rather than a path."""
    return isinstance(value, str) and value.lstrip().startswith("States.")


@lru_cache(maxsize=1024)
def parse_intrinsic(expr: str) -> Call:
    """Parse an intrinsic call; raise ``ValueError`` saying what is wrong and where."""
    parser = _Parser(expr)
    call = parser.call()
    parser.skip_spaces()
    if parser.position != len(expr):
        parser.fail("unexpected text after the closing parenthesis")
    return call


def evaluate_intrinsic(expr: str, data: Any, context: dict[str, Any] | None = None) -> Any:
    """Evaluate an intrinsic call; its paths read ``data`` (``$``) and ``context`` (``$$``)."""
    try:
        call = parse_intrinsic(expr)
    except ValueError as error:
        raise StatesError(INTRINSIC_FAILURE, str(error)) from None
    return _evaluate_call(call, data, context)


def _evaluate(argument: Argument, data: Any, context: dict[str, Any] | None) -> Any:
    if isinstance(argument, Call):
        return _evaluate_call(argument, data, context)
    if isinstance(argument, PathArgument):
        return get_path(argument.path, data, context)
    return argument.value


def _evaluate_call(call: Call, data: Any, context: dict[str, Any] | None) -> Any:
    values = [_evaluate(argument, data, context) for argument in call.args]
    try:
        if call.name == FORMAT:
            # Format needs to know which braces of a literal template were escaped.
            values[0] = _template_pieces(call.args[0], values[0])
        return _FUNCTIONS[call.name].body(values)
    except _InvalidArguments as error:
        raise StatesError(INTRINSIC_FAILURE, f"Invalid arguments in {call.name}: {error}") from None


# --- parsing -------------------------------------------------------------------------------------

_NAME = re.compile(r"States\.[A-Za-z0-9]+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", re.ASCII)
_KEYWORD = re.compile(r"(true|false|null)\b")
_KEYWORDS = {"true": True, "false": False, "null": None}
_ESCAPABLE = "'{}\\"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def fail(self, problem: str) -> NoReturn:
        raise ValueError(
            f"invalid intrinsic function '{self.text}' at character {self.position + 1}: {problem}"
        )

    def skip_spaces(self) -> None:
        while self.position < len(self.text) and self.text[self.position].isspace():
            self.position += 1

    def peek(self) -> str:
        return self.text[self.position : self.position + 1]

    def call(self) -> Call:
        self.skip_spaces()
        match = _NAME.match(self.text, self.position)
        if not match:
            self.fail("expected a function name such as States.Format")
        name = match.group()
        if name not in _FUNCTIONS:
            self.fail(f"unknown intrinsic function {name}")
        self.position = match.end()
        self.skip_spaces()
        if self.peek() != "(":
            self.fail(f"expected '(' after {name}")
        self.position += 1
        args: list[Argument] = []
        self.skip_spaces()
        if self.peek() == ")":
            self.position += 1
        else:
            while True:
                args.append(self.argument())
                self.skip_spaces()
                separator = self.peek()
                if separator not in (",", ")"):
                    self.fail(f"expected ',' or ')' in the arguments of {name}")
                self.position += 1
                if separator == ")":
                    break
        self._check_arguments(name, args)
        return Call(name, tuple(args))

    def _check_arguments(self, name: str, args: list[Argument]) -> None:
        function = _FUNCTIONS[name]
        if len(args) < function.min_args or (function.max_args is not None and len(args) > function.max_args):
            if function.max_args is None:
                expected = f"at least {function.min_args}"
            elif function.min_args == function.max_args:
                expected = str(function.min_args)
            else:
                expected = f"{function.min_args} to {function.max_args}"
            raise ValueError(f"{name} takes {expected} arguments, got {len(args)} in '{self.text}'")
        if name == FORMAT:
            template = args[0]
            if isinstance(template, Constant):
                raise ValueError(f"the first argument of {FORMAT} must be a string in '{self.text}'")
            if isinstance(template, Text) and len(template.pieces) - 1 != len(args) - 1:
                raise ValueError(
                    f"{FORMAT} template has {len(template.pieces) - 1} placeholders but "
                    f"{len(args) - 1} values in '{self.text}'"
                )

    def argument(self) -> Argument:
        self.skip_spaces()
        first = self.peek()
        if first == "'":
            return self.string()
        if first == "$":
            return self.path()
        if self.text.startswith("States.", self.position):
            return self.call()
        for pattern, convert in ((_NUMBER, _number), (_KEYWORD, _KEYWORDS.__getitem__)):
            match = pattern.match(self.text, self.position)
            if match:
                self.position = match.end()
                return Constant(convert(match.group()))
        self.fail("expected a string in single quotes, a number, true, false, null, a path or a call")

    def string(self) -> Text:
        self.position += 1  # opening quote
        pieces: list[str] = []
        current: list[str] = []
        text = self.text
        while self.position < len(text):
            char = text[self.position]
            if char == "'":
                self.position += 1
                pieces.append("".join(current))
                return Text("{}".join(pieces), tuple(pieces))
            if char == "\\":
                escaped = text[self.position + 1 : self.position + 2]
                if not escaped or escaped not in _ESCAPABLE:
                    self.fail("a backslash must escape one of ' { } \\")
                current.append(escaped)
                self.position += 2
            elif text.startswith("{}", self.position):
                pieces.append("".join(current))
                current = []
                self.position += 2
            else:
                current.append(char)
                self.position += 1
        self.fail("unterminated string literal")

    def path(self) -> PathArgument:
        """Read a path up to the ',' or ')' that ends the argument, skipping over brackets and quotes."""
        start = self.position
        depth = 0
        quote = ""
        text = self.text
        while self.position < len(text):
            char = text[self.position]
            if quote:
                if char == "\\":
                    self.position += 1
                elif char == quote:
                    quote = ""
            elif char in "'\"":
                quote = char
            elif char in "[(":
                depth += 1
            elif char in "])":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and (char == "," or char.isspace()):
                break
            self.position += 1
        path = text[start : self.position]
        problem = validate_path(path)
        if problem:
            self.fail(problem)
        return PathArgument(path)


def _number(text: str) -> int | float:
    return float(text) if any(mark in text for mark in ".eE") else int(text)


# --- argument checks -----------------------------------------------------------------------------

_KINDS: dict[str, Callable[[Any], bool]] = {
    "a string": lambda value: isinstance(value, str),
    "an array": lambda value: isinstance(value, list),
    "an object": lambda value: isinstance(value, dict),
    "a boolean": lambda value: isinstance(value, bool),
    "a number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
}


def _arg(values: list[Any], index: int, kind: str) -> Any:
    value = values[index]
    if not _KINDS[kind](value):
        shown = compact_json(value)
        shown = shown if len(shown) <= 100 else shown[:97] + "..."
        raise _InvalidArguments(f"argument {index + 1} must be {kind}, got {shown}")
    return value


def _integer(values: list[Any], index: int) -> int:
    """AWS rounds a non-integer number to the nearest integer, halves up like Java's Math.round."""
    number = _arg(values, index, "a number")
    return number if isinstance(number, int) else math.floor(number + 0.5)


def _bounded_string(values: list[Any], index: int) -> str:
    text: str = _arg(values, index, "a string")
    if len(text) > _MAX_STRING_LENGTH:
        raise _InvalidArguments(f"argument {index + 1} is longer than {_MAX_STRING_LENGTH} characters")
    return text


def _canonical(value: Any) -> str:
    """A key equal for equal JSON values: member order does not matter, 1 and 1.0 and true differ."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- the functions -------------------------------------------------------------------------------


def _template_pieces(argument: Argument, value: Any) -> tuple[str, ...]:
    if isinstance(argument, Text):
        return argument.pieces
    return tuple(_arg([value], 0, "a string").split("{}"))


def _format_value(value: Any) -> str:
    """Render a value as AWS's Format does: strings bare, scalars as JSON, containers as Java prints them."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(map(_format_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_format_value(item)}" for key, item in value.items()) + "}"
    return compact_json(value)


@_intrinsic(FORMAT, 1, None)
def _format(values: list[Any]) -> str:
    pieces, arguments = values[0], values[1:]
    if len(pieces) - 1 != len(arguments):
        raise _InvalidArguments(
            f"the template has {len(pieces) - 1} placeholders but {len(arguments)} values"
        )
    parts = [pieces[0]]
    for argument, piece in zip(arguments, pieces[1:], strict=False):
        parts += (_format_value(argument), piece)
    return "".join(parts)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@_intrinsic("States.StringToJson", 1, 1)
def _string_to_json(values: list[Any]) -> Any:
    text = _arg(values, 0, "a string")
    if not text.strip():
        return None  # AWS parses an empty or blank string as null
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:
        raise _InvalidArguments(f"argument 1 is not JSON text: {error}") from None


@_intrinsic("States.JsonToString", 1, 1)
def _json_to_string(values: list[Any]) -> str:
    return compact_json(values[0])


@_intrinsic("States.Array", 0, None)
def _array(values: list[Any]) -> list[Any]:
    return list(values)


@_intrinsic("States.ArrayPartition", 2, 2)
def _array_partition(values: list[Any]) -> list[list[Any]]:
    items = _arg(values, 0, "an array")
    size = _integer(values, 1)
    if size <= 0:
        raise _InvalidArguments(f"the chunk size must be a positive integer, got {size}")
    return [items[start : start + size] for start in range(0, len(items), size)]


@_intrinsic("States.ArrayContains", 2, 2)
def _array_contains(values: list[Any]) -> bool:
    wanted = _canonical(values[1])
    return any(_canonical(item) == wanted for item in _arg(values, 0, "an array"))


@_intrinsic("States.ArrayRange", 3, 3)
def _array_range(values: list[Any]) -> list[int]:
    start, end, step = (_integer(values, index) for index in range(3))
    if step == 0:
        raise _InvalidArguments("the step must not be 0")
    numbers = range(start, end + (1 if step > 0 else -1), step)
    if len(numbers) > _MAX_RANGE_LENGTH:
        raise _InvalidArguments(f"the range has {len(numbers)} elements, more than {_MAX_RANGE_LENGTH}")
    return list(numbers)


@_intrinsic("States.ArrayGetItem", 2, 2)
def _array_get_item(values: list[Any]) -> Any:
    items = _arg(values, 0, "an array")
    index = _integer(values, 1)
    if not 0 <= index < len(items):
        raise _InvalidArguments(f"index {index} is out of bounds for an array of length {len(items)}")
    return items[index]


@_intrinsic("States.ArrayLength", 1, 1)
def _array_length(values: list[Any]) -> int:
    return len(_arg(values, 0, "an array"))


@_intrinsic("States.ArrayUnique", 1, 1)
def _array_unique(values: list[Any]) -> list[Any]:
    seen: set[str] = set()
    unique = []
    for item in _arg(values, 0, "an array"):
        key = _canonical(item)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


@_intrinsic("States.Base64Encode", 1, 1)
def _base64_encode(values: list[Any]) -> str:
    return base64.b64encode(_bounded_string(values, 0).encode("utf-8")).decode("ascii")


@_intrinsic("States.Base64Decode", 1, 1)
def _base64_decode(values: list[Any]) -> str:
    try:
        decoded = base64.b64decode(_bounded_string(values, 0))
    except binascii.Error as error:
        raise _InvalidArguments(f"argument 1 is not Base64: {error}") from None
    return decoded.decode("utf-8", errors="replace")


@_intrinsic("States.Hash", 2, 2)
def _hash(values: list[Any]) -> str:
    data = _bounded_string(values, 0)
    algorithm = _arg(values, 1, "a string")
    if algorithm not in _HASHES:
        raise _InvalidArguments(f"the algorithm must be one of {', '.join(_HASHES)}, got {algorithm!r}")
    return hashlib.new(_HASHES[algorithm], data.encode("utf-8")).hexdigest()


@_intrinsic("States.JsonMerge", 3, 3)
def _json_merge(values: list[Any]) -> dict[str, Any]:
    first, second = _arg(values, 0, "an object"), _arg(values, 1, "an object")
    if _arg(values, 2, "a boolean"):
        raise _InvalidArguments("only shallow merging is supported, the third argument must be false")
    return {**first, **second}


@_intrinsic("States.MathRandom", 2, 3)
def _math_random(values: list[Any]) -> int:
    start, end = _integer(values, 0), _integer(values, 1)
    if start >= end:
        raise _InvalidArguments(f"the start {start} must be less than the end {end}")
    generator = random.Random(_integer(values, 2)) if len(values) == 3 else random
    return generator.randrange(start, end)  # the end is exclusive


@_intrinsic("States.MathAdd", 2, 2)
def _math_add(values: list[Any]) -> int:
    terms = [_integer(values, index) for index in range(2)]
    if not all(_INT32[0] <= term <= _INT32[1] for term in terms):
        raise _InvalidArguments(f"the values must lie between {_INT32[0]} and {_INT32[1]}")
    return sum(terms)


@_intrinsic("States.StringSplit", 2, 2)
def _string_split(values: list[Any]) -> list[str]:
    text, delimiters = _arg(values, 0, "a string"), _arg(values, 1, "a string")
    if not delimiters:
        return [text] if text else []
    # Every character of the second argument is a delimiter; empty pieces are dropped.
    return [part for part in re.split("|".join(map(re.escape, delimiters)), text) if part]


@_intrinsic("States.UUID", 0, 0)
def _uuid(values: list[Any]) -> str:
    return str(uuid.uuid4())
