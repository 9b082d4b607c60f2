"""Lambda functions of the template, run in-process where Step Functions would invoke them.

Two Task Resources reach a function:

- ``arn:aws:states:::lambda:invoke`` with Parameters ``FunctionName`` (a name, an ARN, either with a
  qualifier) and ``Payload``; the result is the Invoke response: ``{"ExecutedVersion", "Payload",
  "StatusCode", "SdkHttpMetadata", "SdkResponseMetadata"}``;
- a function ARN itself: the state's effective input is the event, the handler's return the result.

A handler that raises fails the task as Lambda reports a function error: error = the exception's
class name, cause = ``{"errorMessage", "errorType", "requestId", "stackTrace"}`` as JSON text; a
return value that is not JSON fails with ``Runtime.MarshalError``, and import problems with the
Python runtime's ``Runtime.ImportModuleError``/``Runtime.UserCodeSyntaxError``/``Runtime.HandlerNotFound``.

Differences from AWS, because the functions share this process:

- invocations run one at a time: each sets its environment variables in ``os.environ``, which is
  process-wide (a Map of Lambda tasks is therefore serialised locally); a task that timed out or was
  cancelled cannot stop its handler, which keeps the lock until it returns;
- the function's Timeout is not enforced; ``get_remaining_time_in_millis`` counts down from it;
- ``POWERTOOLS_TRACE_DISABLED=true`` is set, as there is no X-Ray daemon;
- history events are ``Task*`` ones, also for function-ARN Resources (AWS writes ``LambdaFunction*``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from cvpipe.asl.errors import RUNTIME, StatesError
from cvpipe.asl.tasks import TaskRegistry, TaskRequest

from . import local_aws
from .template import FunctionSpec

INVOKE = "arn:aws:states:::lambda:invoke"
FUNCTION_ARN = re.compile(r"arn:aws[\w-]*:lambda:[\w-]+:\d{12}:function:[\w-]+(:[\w$-]+)?")
FUNCTION_NAME = re.compile(
    r"(?:arn:aws[\w-]*:lambda:[\w-]+:)?(?:\d{12}:function:)?(?P<name>[\w-]+)(?::(?P<qualifier>[\w$-]+))?"
)
MODULE_PREFIX = "cvpipe_lambda_"

_INVOCATION_LOCK = threading.Lock()
"""One invocation at a time in this process: functions set os.environ and sys.path."""


@dataclass
class LambdaContext:
    """The ``context`` argument of a handler, with the attributes of the Python runtime's."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    timeout_seconds: float
    identity: Any = None
    client_context: Any = None
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000), 0)


def function_error(
    error_type: str, message: str, request_id: str, stack: list[str] | None = None
) -> StatesError:
    """A function error as Step Functions reports it: the type as the error, Lambda's error JSON as the cause."""
    cause = {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": stack or [],
    }
    return StatesError(error_type, json.dumps(cause, separators=(",", ":")))


class LocalFunctions:
    """The template's functions: handlers loaded on first use, invoked one at a time."""

    def __init__(self, functions: dict[str, FunctionSpec], project_root: Path) -> None:
        self.functions = functions
        self.project_root = project_root
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._siblings: dict[str, dict[str, ModuleType]] = {}
        """Per function, the modules imported from its folder, kept out of sys.modules between calls."""

    def invoke_api(self, request: TaskRequest) -> dict[str, Any]:
        """``lambda:invoke``: the Invoke API's response around the handler's return."""
        parameters = request.parameters if isinstance(request.parameters, dict) else {}
        if not isinstance(parameters.get("FunctionName"), str):
            raise StatesError(RUNTIME, f"{INVOKE} needs Parameters.FunctionName")
        request_id = str(uuid.uuid4())
        payload = self.invoke(
            parameters["FunctionName"], parameters.get("Payload", {}), request_id, request.timeout
        )
        return {
            "ExecutedVersion": "$LATEST",
            "Payload": payload,
            "SdkHttpMetadata": {
                "HttpHeaders": {
                    "Content-Type": "application/json",
                    "X-Amz-Executed-Version": "$LATEST",
                    "x-amzn-RequestId": request_id,
                },
                "HttpStatusCode": 200,
            },
            "SdkResponseMetadata": {"RequestId": request_id},
            "StatusCode": 200,
        }

    def invoke_resource(self, request: TaskRequest) -> Any:
        """A function ARN as the Resource: the handler's return is the result."""
        return self.invoke(request.resource, request.parameters, str(uuid.uuid4()), request.timeout)

    def invoke(self, function: str, event: Any, request_id: str, task_timeout: float | None = None) -> Any:
        """Call the function's handler with a copy of ``event``; return what it returns (as JSON)."""
        spec = self._find(function)
        event = json.loads(json.dumps(event))
        timeout = min(spec.timeout, task_timeout) if task_timeout else spec.timeout
        log_stream = datetime.now(UTC).strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        with _INVOCATION_LOCK, self._inside(spec, log_stream):
            handler = self._handler(spec, request_id)
            try:
                result = handler(event, self._context(spec, function, request_id, timeout, log_stream))
            except Exception as exc:  # reported as the function error
                stack = traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])
                raise function_error(type(exc).__name__, str(exc), request_id, stack) from exc
        try:
            return json.loads(json.dumps(result))
        except (TypeError, ValueError) as exc:
            raise function_error(
                "Runtime.MarshalError", f"Unable to marshal response: {exc}", request_id
            ) from exc

    def _find(self, function: str) -> FunctionSpec:
        match = FUNCTION_NAME.fullmatch(function)
        spec = self.functions.get(match["name"]) if match else None
        if spec is None:
            known = ", ".join(sorted(self.functions)) or "none"
            raise StatesError(
                RUNTIME,
                f"no local handler for Lambda function {function!r}: the template has no function of that name"
                f" with a local CodeUri and Handler (it has: {known})",
            )
        return spec

    def _context(
        self, spec: FunctionSpec, invoked: str, request_id: str, timeout: float, log_stream: str
    ) -> LambdaContext:
        arn = invoked if invoked.startswith("arn:") else local_aws.arn("lambda", f"function:{invoked}")
        return LambdaContext(
            function_name=spec.logical_id,
            function_version="$LATEST",
            invoked_function_arn=arn,
            memory_limit_in_mb=spec.memory_size,
            aws_request_id=request_id,
            log_group_name=f"/aws/lambda/{spec.logical_id}",
            log_stream_name=log_stream,
            timeout_seconds=timeout,
        )

    def _handler(self, spec: FunctionSpec, request_id: str) -> Callable[[Any, Any], Any]:
        """Import the handler's module from its file under a name of its own (once)."""
        if spec.logical_id in self._handlers:
            return self._handlers[spec.logical_id]
        module_path, _, function_name = spec.handler.rpartition(".")
        if not module_path:
            raise function_error("Runtime.MalformedHandlerName", f"Bad handler '{spec.handler}'", request_id)
        file = self.project_root / spec.code_uri / (module_path.replace(".", "/") + ".py")
        name = MODULE_PREFIX + re.sub(r"\W", "_", f"{spec.logical_id}_{module_path}")
        module_spec = importlib.util.spec_from_file_location(name, file)
        if module_spec is None or module_spec.loader is None or not file.is_file():
            raise function_error(
                "Runtime.ImportModuleError",
                f"Unable to import module '{module_path}': no file {file}",
                request_id,
            )
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pydantic look their module up there
        try:
            module_spec.loader.exec_module(module)
        except ImportError as exc:
            raise function_error(
                "Runtime.ImportModuleError", f"Unable to import module '{module_path}': {exc}", request_id
            ) from exc
        except SyntaxError as exc:
            raise function_error(
                "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_path}': {exc}", request_id
            ) from exc
        except Exception as exc:  # an init error: Lambda reports the exception itself
            stack = traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])
            raise function_error(type(exc).__name__, str(exc), request_id, stack) from exc
        finally:
            if not hasattr(module, function_name):
                sys.modules.pop(name, None)
        if not hasattr(module, function_name):
            raise function_error(
                "Runtime.HandlerNotFound",
                f"Handler '{function_name}' missing on module '{module_path}'",
                request_id,
            )
        self._handlers[spec.logical_id] = getattr(module, function_name)
        return self._handlers[spec.logical_id]

    @contextmanager
    def _inside(self, spec: FunctionSpec, log_stream: str) -> Iterator[None]:
        """The function's world while it imports or runs: its environment, its folder first on
        sys.path, its own sibling modules in sys.modules (and no other function's)."""
        folder = (self.project_root / spec.code_uri).resolve()
        siblings = self._siblings.setdefault(spec.logical_id, {})
        displaced = {name: sys.modules[name] for name in siblings if name in sys.modules}
        sys.modules.update(siblings)
        variables = self._environment(spec, folder, log_stream)
        saved = {key: os.environ.get(key) for key in variables}
        os.environ.update(variables)
        sys.path.insert(0, str(folder))
        before = set(sys.modules) - set(siblings)
        try:
            yield
        finally:
            sys.path.remove(str(folder))
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            for name in set(sys.modules) - before:
                if not name.startswith(MODULE_PREFIX) and _is_in(sys.modules[name], folder):
                    siblings[name] = sys.modules.pop(name)
            sys.modules.update(displaced)

    @staticmethod
    def _environment(spec: FunctionSpec, folder: Path, log_stream: str) -> dict[str, str]:
        region = local_aws.region()
        return {
            **spec.environment,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.logical_id}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "LAMBDA_TASK_ROOT": str(folder),
            "_HANDLER": spec.handler,
        }


def _is_in(module: ModuleType, folder: Path) -> bool:
    file = getattr(module, "__file__", None)
    return isinstance(file, str) and file.startswith(str(folder) + os.sep)


def register_lambda(
    registry: TaskRegistry, functions_table: dict[str, FunctionSpec], project_root: Path | str
) -> LocalFunctions:
    """Route ``lambda:invoke`` and function ARNs to the template's handlers (CodeUri relative to ``project_root``)."""
    functions = LocalFunctions(functions_table, Path(project_root))
    registry.register(INVOKE, functions.invoke_api)
    registry.register(FUNCTION_ARN, functions.invoke_resource)
    return functions
