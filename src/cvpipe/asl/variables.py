"""Variables (``Assign``): where states keep values for later states instead of in their output.

A ``Variables`` scope belongs to a line of execution: the top level, a Parallel branch or a Map
iteration. Inner scopes read the variables of the scopes around them; what they assign stays inside
(an assignment inside a branch never reaches the states after the Parallel). A Distributed Map's
child executions start from an empty scope, as they are executions of their own.

Limits as in Step Functions: one variable's value and one Assign's values at most 256 KiB each, all
the variables of an execution at most 10 MiB; beyond them ``States.DataLimitExceeded``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from .errors import DATA_LIMIT_EXCEEDED, StatesError

VARIABLE_LIMIT = 262_144
ASSIGN_LIMIT = 262_144
EXECUTION_LIMIT = 10_485_760


class _Budget:
    """The bytes of variables one execution holds (all its scopes)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.lock = threading.Lock()


class Variables:
    def __init__(self, parent: Variables | None = None, budget: _Budget | None = None) -> None:
        self.parent = parent
        self._values: dict[str, Any] = {}
        self._sizes: dict[str, int] = {}
        self._budget: _Budget = budget or (parent._budget if parent else _Budget())

    def child(self) -> Variables:
        """The scope of a Parallel branch or a Map iteration."""
        return Variables(self)

    def visible(self) -> dict[str, Any]:
        """Every variable this scope can read, inner names hiding outer ones."""
        outer = self.parent.visible() if self.parent else {}
        return {**outer, **self._values}

    def lookup(self, name: str) -> tuple[bool, Any]:
        scope: Variables | None = self
        while scope is not None:
            if name in scope._values:
                return True, scope._values[name]
            scope = scope.parent
        return False, None

    def assign(self, values: dict[str, Any]) -> dict[str, str]:
        """Store one state's Assign (all its values were computed before any is stored); the JSON text
        of each value, as measured (the state's exited event reports them)."""
        texts = {
            name: json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            for name, value in values.items()
        }
        sizes = {name: len(text.encode("utf-8")) for name, text in texts.items()}
        for name, size in sizes.items():
            if size > VARIABLE_LIMIT:
                raise StatesError(
                    DATA_LIMIT_EXCEEDED,
                    f"The value of variable '{name}' is {size} bytes, which exceeds the maximum of "
                    f"{VARIABLE_LIMIT} bytes for one variable.",
                )
        if sum(sizes.values()) > ASSIGN_LIMIT:
            raise StatesError(
                DATA_LIMIT_EXCEEDED,
                f"The values of one Assign are {sum(sizes.values())} bytes, which exceeds the maximum "
                f"of {ASSIGN_LIMIT} bytes.",
            )
        with self._budget.lock:
            total = self._budget.bytes + sum(sizes.values()) - sum(self._sizes.get(n, 0) for n in sizes)
            if total > EXECUTION_LIMIT:
                raise StatesError(
                    DATA_LIMIT_EXCEEDED,
                    f"The variables of the execution would hold {total} bytes, which exceeds the maximum "
                    f"of {EXECUTION_LIMIT} bytes.",
                )
            self._budget.bytes = total
        self._values.update(values)
        self._sizes.update(sizes)
        return texts


class Context(dict[str, Any]):
    """The context object (``$$``) of a state, with the variables in scope beside it."""

    def __init__(self, fields: dict[str, Any], variables: Variables) -> None:
        super().__init__(fields)
        self.variables = variables

    def with_fields(self, **fields: Any) -> Context:
        return Context({**self, **fields}, self.variables)


def variables_of(context: Any) -> Variables | None:
    return context.variables if isinstance(context, Context) else None
