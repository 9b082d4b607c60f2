"""The inside of one local Lambda execution environment: a process that imports a function once and
then runs its invocations one at a time, as Lambda's Python runtime does.

Each environment is a process of its own, so concurrent invocations (the branches of a Parallel, the
iterations of a Map) really run at the same time, each with the function's environment variables,
its folder on ``sys.path`` and its own module state, and a stuck invocation can be stopped by ending
its process (Lambda then starts a fresh environment too).

Messages on the pipe (tuples, first item the kind):

- environment -> parent: ``("ready", out, err)`` or ``("init_error", error_type, message, stack,
  out, err)`` once; per invocation ``("result", json_text, out, err)`` or ``("error", error_type,
  message, stack, out, err)``; ``("call", operation, parameters)`` when the handler calls a Step
  Functions task-token API, answered by ``("reply", response)`` or ``("fault", code, message)``;
- parent -> environment: ``("invoke", event_json_text, context_fields)``.

``out`` and ``err`` are what the function wrote to stdout and stderr meanwhile, so that the parent
puts them wherever its own output goes at that moment (a run's log, the terminal).

This module imports nothing from the rest of ``cvpipe``: environments start light.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import IO, Any

TOKEN_OPERATIONS = ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat")
"""Step Functions API calls a function may make to answer a ``.waitForTaskToken`` task."""
OBJECT_OPERATIONS = ("GetObject",)
"""S3 API calls a function may make on the local object store (reading what a run wrote)."""

SHARED_MODULES = (
    "boto3",
    "botocore.client",
    "botocore.response",
    "pydantic",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "aws_lambda_powertools.utilities.parser",
    "aws_lambda_powertools.utilities.typing",
    "aws_xray_sdk.core",
    "numpy",
)
"""Third-party modules the environments' template imports (those not installed are skipped)."""
TEMPLATE_NAME = "cvpipe-lambda-runtime"
TEMPLATE_ARGS = ((), SHARED_MODULES, None)
"""What the process that environments are forked from is started with (``cvpipe.integrations.jobs.Template``'s
``args``): nothing on ``sys.path``, the shared modules to import, no thread limit."""


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


class _Captured:
    """A file descriptor (1 or 2) pointed at a temporary file; ``take`` returns what was written since."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (open for the process's life)
        os.dup2(self.file.fileno(), fd)

    def take(self) -> bytes:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        self.file.seek(0)
        data = self.file.read()
        self.file.seek(0)
        self.file.truncate()
        os.lseek(self.fd, 0, os.SEEK_SET)
        return data


def serve(conn: Connection, code_path: list[str], handler: str, environment: dict[str, str]) -> None:
    """The environment's main loop: init (import the handler), then invocations until the pipe closes.

    ``code_path``: the function's folder, then its layers' Python folders, as Lambda orders
    /var/task and /opt/python on ``sys.path``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    out, err = _Captured(1), _Captured(2)
    os.environ.update(environment)
    sys.path[:0] = code_path
    _route_token_calls(conn)
    module_path, _, function_name = handler.rpartition(".")
    try:
        function = _load(module_path, function_name)
    except _InitError as failure:
        conn.send(("init_error", *failure.args, out.take(), err.take()))
        return
    conn.send(("ready", out.take(), err.take()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent closed the environment
            return
        _, event_text, context_fields = message
        reply = _invoke(function, json.loads(event_text), LambdaContext(**context_fields))
        conn.send((*reply, out.take(), err.take()))


def serve_forked(conn: Connection, code_path: list[str], handler: str, environment: dict[str, str]) -> None:
    """``serve`` in a fork of a process that imported shared modules: ``environment`` is the whole
    environment (the fork has its template's)."""
    os.environ.clear()
    serve(conn, code_path, handler, environment)


class _InitError(Exception):
    """``(error_type, message, stack)`` as the Python runtime reports a failed init."""


def _load(module_path: str, function_name: str) -> Any:
    if not module_path:
        raise _InitError("Runtime.MalformedHandlerName", f"Bad handler '{module_path}.{function_name}'", [])
    try:
        module = importlib.import_module(module_path)
    except SyntaxError as exc:
        message = f"Syntax error in module '{module_path}': {exc}"
        raise _InitError("Runtime.UserCodeSyntaxError", message, []) from None
    except ImportError as exc:
        message = f"Unable to import module '{module_path}': {exc}"
        raise _InitError("Runtime.ImportModuleError", message, []) from None
    except Exception as exc:  # an init error: Lambda reports the exception itself
        raise _InitError(type(exc).__name__, str(exc), _stack(exc)) from None
    if not hasattr(module, function_name):
        raise _InitError(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_path}'", []
        )
    return getattr(module, function_name)


def _invoke(function: Any, event: Any, context: LambdaContext) -> tuple[Any, ...]:
    try:
        result = function(event, context)
    except Exception as exc:  # reported as the function error
        return ("error", type(exc).__name__, str(exc), _stack(exc))
    try:
        return ("result", json.dumps(result))
    except (TypeError, ValueError) as exc:
        return ("error", "Runtime.MarshalError", f"Unable to marshal response: {exc}", [])


def _stack(exc: BaseException) -> list[str]:
    return traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:])


def _route_token_calls(conn: Connection) -> None:
    """Send a function's ``SendTask*`` calls (boto3's ``stepfunctions`` client) to the local engine
    and its S3 ``GetObject`` calls to the local object store, instead of AWS, as the function would
    reach Step Functions and S3 in the cloud. botocore is patched only if the function can import it."""
    try:
        from botocore.client import BaseClient
        from botocore.response import StreamingBody
    except ImportError:
        return
    make_api_call = BaseClient._make_api_call
    routed_operations = {"states": TOKEN_OPERATIONS, "s3": OBJECT_OPERATIONS}

    def routed(client: Any, operation: str, parameters: dict[str, Any]) -> Any:
        service = client.meta.service_model.endpoint_prefix
        if operation not in routed_operations.get(service, ()):
            return make_api_call(client, operation, parameters)
        conn.send(("call", f"{service}:{operation}", parameters))
        reply = conn.recv()
        if reply[0] == "fault":
            error = {"Error": {"Code": reply[1], "Message": reply[2]}}
            # The service's modeled exception for the code (client.exceptions.NoSuchKey, ...), as boto3 raises.
            raise client.exceptions.from_code(reply[1])(error, operation)
        response = reply[1]
        if "Body" in response:
            body = response["Body"]
            response = {**response, "Body": StreamingBody(io.BytesIO(body), len(body))}
        return response

    setattr(BaseClient, "_make_api_call", routed)  # noqa: B010 (patching a method)
