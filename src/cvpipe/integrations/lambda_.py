"""Lambda functions of the template, run on this machine where Step Functions would invoke them.

Two Task Resources reach a function:

- ``arn:aws:states:::lambda:invoke`` with Parameters ``FunctionName`` (a name, an ARN, either with a
  qualifier) and ``Payload``; the result is the Invoke response: ``{"ExecutedVersion", "Payload",
  "StatusCode", "SdkHttpMetadata", "SdkResponseMetadata"}``;
- a function ARN itself: the state's effective input is the event, the handler's return the result.

Each invocation runs in an execution environment of its own (``lambda_runtime``): a process that
imported the function once and is reused by the function's next invocations while it is idle, as
Lambda reuses warm environments. Environments are forked from one process that has imported the
third-party modules functions commonly share (boto3, pydantic, Powertools, ...; never a function's
or a layer's own code), so a cold start costs the function's own init only, not those imports
again; a function whose folder or layers bring a module of one of those names starts in a fresh
interpreter instead, so that its own copy is the one it imports.

Concurrent invocations get environments of their own, so the branches of a Parallel and the
iterations of a Map run at the same time. An invocation that runs past the function's Timeout fails
with ``Sandbox.Timedout``, and one that the task stops (its TimeoutSeconds, a failed sibling, an
aborted execution) ends its environment.

A handler that raises fails the task as Lambda reports a function error: error = the exception's
class name, cause = ``{"errorMessage", "errorType", "requestId", "stackTrace"}`` as JSON text; a
return value that is not JSON fails with ``Runtime.MarshalError``, and import problems with the
Python runtime's ``Runtime.ImportModuleError``/``Runtime.UserCodeSyntaxError``/``Runtime.HandlerNotFound``.
A function's ``SendTaskSuccess``/``SendTaskFailure``/``SendTaskHeartbeat`` calls through boto3 reach
the local engine, and its S3 ``GetObject`` calls the local object store (other S3 calls are not routed).

Differences from AWS:

- ``POWERTOOLS_TRACE_DISABLED=true`` is set, as there is no X-Ray daemon;
- a layer of the template (``AWS::Serverless::LayerVersion`` with a local ContentUri) is put on
  ``sys.path`` after the function's folder, where Lambda has /opt/python, without copying; a layer
  given by ARN is not fetched: its modules must be installed here;
- an environment inherits this process's environment variables besides the function's own, and the
  shared modules were imported with this process's variables, not the function's (none of them
  reads a variable a function sets at import);
- the init phase has no 10-second limit, and memory is not limited;
- history events are ``Task*`` ones, also for function-ARN Resources (AWS writes ``LambdaFunction*``).
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
import re
import signal
import threading
import time
import uuid
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from cvpipe.asl.callbacks import TaskTokens, TokenError
from cvpipe.asl.distributed import ObjectStorage
from cvpipe.asl.errors import RUNTIME, StatesError
from cvpipe.asl.tasks import TaskRegistry, TaskRequest

from . import local_aws
from .jobs import Forked, Template, reap, take_template
from .lambda_runtime import TEMPLATE_ARGS, TEMPLATE_NAME, serve, serve_forked
from .template import FunctionSpec

INVOKE = "arn:aws:states:::lambda:invoke"
FUNCTION_ARN = re.compile(r"arn:aws[\w-]*:lambda:[\w-]+:\d{12}:function:[\w-]+(:[\w$-]+)?")
FUNCTION_NAME = re.compile(
    r"(?:arn:aws[\w-]*:lambda:[\w-]+:)?(?:\d{12}:function:)?(?P<name>[\w-]+)(?::(?P<qualifier>[\w$-]+))?"
)
_POLL_SECONDS = 0.05  # how often a waiting invocation looks at its cancellation event
_STOP_GRACE_SECONDS = 1.0


@dataclass(eq=False)
class _Environment:
    started: Future[tuple[Any, Connection]]
    """Its process (a fork of the template, or multiprocessing's) and the connection to it, once started."""
    log_stream: str
    ready: bool = False
    """Its init has been reported (a started environment may still be importing the function)."""
    ending: threading.Lock = field(default_factory=threading.Lock)
    """Held while it is ended: an invocation that stops it and the closing of all may end it at once."""

    @property
    def process(self) -> Any:
        return self.started.result()[0]

    @property
    def conn(self) -> Connection:
        return self.started.result()[1]


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
    """The template's functions, each invoked in warm execution environments of its own."""

    def __init__(
        self, functions: dict[str, FunctionSpec], project_root: Path, objects: ObjectStorage | None = None
    ) -> None:
        """``objects``: the object store that functions' S3 GetObject calls read (none: they fail)."""
        self.functions = functions
        self.project_root = project_root
        self.objects = objects
        self._context = multiprocessing.get_context("spawn")
        self._idle: dict[str, list[_Environment]] = {}
        self._all: set[_Environment] = set()
        self._templates: list[Template] = []  # the one environments are forked from, once started
        # Environments start in the background (the template's imports, then a fork), one at a time.
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="cvpipe-lambda-start")
        self._lock = threading.Lock()
        self._closed = False
        self._finalizer = weakref.finalize(self, _end_all, self._all, self._templates, self._starter)

    def start(self) -> None:
        """Start one environment per function now, so that their imports overlap other work instead
        of delaying each function's first invocation (a local shortcut, not Lambda behaviour: each
        function's first invocation is still its cold start)."""
        with self._lock:
            for spec in self.functions.values():
                idle = self._idle.setdefault(spec.logical_id, [])
                if not idle:
                    idle.append(self._spawn(spec))

    def close(self) -> None:
        """End every execution environment (running invocations fail)."""
        with self._lock:
            self._closed = True
        atexit.unregister(self._finalizer)
        self._finalizer()

    def invoke_api(self, request: TaskRequest) -> dict[str, Any]:
        """``lambda:invoke``: the Invoke API's response around the handler's return."""
        parameters = request.parameters if isinstance(request.parameters, dict) else {}
        if not isinstance(parameters.get("FunctionName"), str):
            raise StatesError(RUNTIME, f"{INVOKE} needs Parameters.FunctionName")
        request_id = str(uuid.uuid4())
        payload = self.invoke(parameters["FunctionName"], parameters.get("Payload", {}), request_id, request)
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
        return self.invoke(request.resource, request.parameters, str(uuid.uuid4()), request)

    def invoke(self, function: str, event: Any, request_id: str, request: TaskRequest | None = None) -> Any:
        """Call the function's handler with ``event`` in an idle (or new) environment; return what it
        returns. ``request`` (the task's) brings the task's time limit, cancellation and tokens."""
        spec = self._find(function)
        event_text = json.dumps(event)
        cancelled = request.cancelled if request is not None else threading.Event()
        tokens = request.tokens if request is not None else TaskTokens()
        environment = self._acquire(spec, request_id, cancelled)
        if environment is None:
            return None  # the task stopped waiting before an environment was ready
        task_timeout = request.timeout if request is not None else None
        arn = function if function.startswith("arn:") else local_aws.arn("lambda", f"function:{function}")
        context = {
            "function_name": spec.logical_id,
            "function_version": "$LATEST",
            "invoked_function_arn": arn,
            "memory_limit_in_mb": spec.memory_size,
            "aws_request_id": request_id,
            "log_group_name": f"/aws/lambda/{spec.logical_id}",
            "log_stream_name": environment.log_stream,
            "timeout_seconds": min(spec.timeout, task_timeout) if task_timeout else spec.timeout,
        }
        environment.conn.send(("invoke", event_text, context))
        reply = self._await(environment, spec.timeout, cancelled, tokens)
        if reply is None:  # stopped by the task, or over the function's Timeout
            if cancelled.is_set():
                return None
            raise function_error(
                "Sandbox.Timedout",
                f"RequestId: {request_id} Error: Task timed out after {spec.timeout:.2f} seconds",
                request_id,
            )
        self._release(spec, environment)
        if reply[0] == "error":
            raise function_error(reply[1], reply[2], request_id, reply[3])
        return json.loads(reply[1])

    def _await(
        self, environment: _Environment, limit: float | None, cancelled: threading.Event, tokens: TaskTokens
    ) -> tuple[Any, ...] | None:
        """The environment's next answer, serving its token calls meanwhile; None (and the environment
        ended) if ``cancelled`` was set or ``limit`` seconds passed first. A crash is an error answer."""
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            left = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, deadline - time.monotonic())
            ready = wait([environment.conn], max(left, 0.0))  # a process's end closes its side
            if environment.conn in ready:
                try:
                    message = environment.conn.recv()
                except (EOFError, OSError):
                    message = None
                if message is not None and message[0] == "call":
                    service, _, operation = message[1].partition(":")
                    if service == "s3":
                        environment.conn.send(_object_call(self.objects, operation, message[2]))
                    else:
                        environment.conn.send(_token_call(tokens, operation, message[2]))
                    continue
                if message is not None:
                    _write_output(message[-2], message[-1])
                    return tuple(message[:-2])
            if ready:
                code = self._end(environment)
                return ("error", "Runtime.ExitError", f"Runtime exited with error: exit status {code}", [])
            if cancelled.is_set() or (deadline is not None and time.monotonic() >= deadline):
                self._end(environment)
                return None

    def _acquire(
        self, spec: FunctionSpec, request_id: str, cancelled: threading.Event
    ) -> _Environment | None:
        with self._lock:
            if self._closed:
                raise StatesError(RUNTIME, "the local Lambda functions have been closed")
            idle = self._idle.setdefault(spec.logical_id, [])
            environment = None
            while idle and environment is None:
                candidate = idle.pop()
                if candidate.process.is_alive():
                    environment = candidate
                else:
                    self._all.discard(candidate)
            if environment is None:
                environment = self._spawn(spec)
        if environment.ready:
            return environment
        ready = self._await(environment, None, cancelled, TaskTokens())
        if ready is None:
            return None
        if ready[0] != "ready":
            self._end(environment)
            raise function_error(ready[1], ready[2], request_id, ready[3])
        environment.ready = True
        return environment

    def _spawn(self, spec: FunctionSpec) -> _Environment:
        """Start an environment (in the background); the caller holds the lock."""
        folder = (self.project_root / spec.code_uri).resolve()
        log_stream = datetime.now(UTC).strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        if not self._templates:
            self._templates.append(take_template(self._context, TEMPLATE_ARGS, TEMPLATE_NAME))
            # Before multiprocessing's own exit handler, which would wait for the template forever.
            atexit.register(self._finalizer)
        code_path = [str(folder), *map(str, spec.layers)]
        environment_variables = {**os.environ, **self._environment(spec, folder, log_stream)}
        started = self._starter.submit(
            self._start, self._templates[0], spec.logical_id, code_path, spec.handler, environment_variables
        )
        environment = _Environment(started, log_stream)
        self._all.add(environment)
        return environment

    def _start(
        self, template: Template, name: str, code_path: list[str], handler: str, variables: dict[str, str]
    ) -> tuple[Any, Connection]:
        """A fork of the template, or a fresh interpreter if the function brings a module of a name
        the template imported (or the template is gone)."""
        try:
            if not _provides(code_path, template.preloaded()):
                pid, conn = template.fork(serve_forked, (code_path, handler, variables))
                return Forked(pid, template), conn
        except (EOFError, OSError):  # the template died (the OOM killer, a kill -9)
            pass
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=serve, args=(child_end, code_path, handler, variables), name=f"lambda:{name}", daemon=True
        )
        process.start()
        child_end.close()
        return process, parent_end

    def _release(self, spec: FunctionSpec, environment: _Environment) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(spec.logical_id, []).append(environment)
                return
        self._end(environment)

    def _end(self, environment: _Environment) -> int:
        with self._lock:
            self._all.discard(environment)
        return _end(environment)

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


def _token_call(tokens: TaskTokens, operation: str, parameters: dict[str, Any]) -> tuple[Any, ...]:
    """Answer a function's SendTask* call as the Step Functions API would."""
    try:
        token = parameters["taskToken"]
        if operation == "SendTaskSuccess":
            tokens.send_success(token, parameters["output"])
        elif operation == "SendTaskFailure":
            tokens.send_failure(token, parameters.get("error", ""), parameters.get("cause", ""))
        else:
            tokens.send_heartbeat(token)
    except TokenError as refused:
        return ("fault", refused.code, refused.message)
    except KeyError as missing:
        return ("fault", "ValidationException", f"{operation} needs {missing}")
    return ("reply", {})


def _object_call(
    objects: ObjectStorage | None, operation: str, parameters: dict[str, Any]
) -> tuple[Any, ...]:
    """Answer a function's S3 GetObject call from the local object store, as S3 would."""
    bucket, key = parameters.get("Bucket"), parameters.get("Key")
    if objects is None:
        return ("fault", "NoSuchBucket", "The specified bucket does not exist")
    try:
        body = objects.get_object(str(bucket), str(key))
    except KeyError:
        return ("fault", "NoSuchKey", "The specified key does not exist.")
    return ("reply", {"Body": body, "ContentLength": len(body)})


def _write_output(out: bytes, err: bytes) -> None:
    """What a function printed goes where this process's stdout and stderr point now."""
    for fd, data in ((1, out), (2, err)):
        if data:
            os.write(fd, data)


def _provides(code_path: list[str], modules: frozenset[str]) -> bool:
    """Whether one of the folders has a top-level module or package of one of these names."""
    for folder in code_path:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        if any(entry.partition(".")[0] in modules for entry in entries):
            return True
    return False


def _end(environment: _Environment) -> int:
    with environment.ending:  # closing a connection twice at once closes another's descriptor
        try:
            process, conn = environment.started.result()
        except Exception:  # it never started (closed meanwhile)
            return -int(signal.SIGKILL)
        if not conn.closed:
            conn.close()
        if process.exitcode is None:
            process.terminate()
        reap(process, _STOP_GRACE_SECONDS)
        return int(process.exitcode)


def _end_all(environments: set[_Environment], templates: list[Template], starter: ThreadPoolExecutor) -> None:
    starter.shutdown(cancel_futures=True)
    ending = list(environments)
    for environment in ending:  # signal all of them first: they then exit while each is reaped
        if environment.started.done() and environment.started.exception() is None:
            environment.process.terminate()
    for environment in ending:
        _end(environment)
    environments.clear()
    for template in templates:
        template.close(_STOP_GRACE_SECONDS)
    templates.clear()


def register_lambda(
    registry: TaskRegistry,
    functions_table: dict[str, FunctionSpec],
    project_root: Path | str,
    objects: ObjectStorage | None = None,
) -> LocalFunctions:
    """Route ``lambda:invoke`` and function ARNs to the template's handlers (CodeUri relative to
    ``project_root``); their S3 GetObject calls read ``objects``."""
    functions = LocalFunctions(functions_table, Path(project_root), objects)
    registry.register(INVOKE, functions.invoke_api)
    registry.register(FUNCTION_ARN, functions.invoke_resource)
    return functions
