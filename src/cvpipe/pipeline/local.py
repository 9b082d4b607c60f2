"""The local engine wired to this project's stack: the template's state machine and functions, the
container entrypoints as local jobs, a local object store and a local model registry."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import re
import secrets
import signal
import sqlite3
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ..asl import Clock, Engine, Event, Execution, ExecutionResult, RealClock, TaskRegistry
from ..asl.history import timestamp_text
from ..asl.payload import PAYLOAD_LIMIT, payload_size
from ..asl.redrive import TaskJournal
from ..errors import UserError
from ..integrations import local_aws
from ..integrations.faults import AccountLimits
from ..integrations.jobs import STOP_GRACE_SECONDS
from ..integrations.lambda_ import register_lambda
from ..integrations.registry import LocalModelRegistry, register_registry
from ..integrations.sagemaker import register_sagemaker
from ..integrations.store import LocalObjectStore, StoreObjects, register_s3
from ..integrations.template import Template, TemplateError, bucket_name, state_machine_for, substitute
from ..stdio import stdout_to
from . import contract
from .contract import DEFINITION, TEMPLATE
from .history_file import CHILD_HISTORIES_FILE, HISTORY_FILE, HistoryWriter, read_history
from .progress import assigned
from .project import job_pool
from .results import cv_results

RECORD = "execution.json"
"""The run's record: written when it starts (RUNNING) and again when it ends, however it ends."""
JOURNAL = "journal.jsonl.gz"
"""Task outcomes as they happen, which ``--resume`` replays (see ``cvpipe.asl.redrive``); locked while
the run is live. One JSON line per outcome, each its own gzip member (``zcat`` reads them all): an
outcome is whole on disk once written, and the repeats of the tuning state in its entries compress several times over."""
_JOURNAL_CHUNK = 4096  # bytes fed to the decompressor at a time while finding where members end
_POLL_SECONDS = 0.1  # how often the waiting run looks at the signals received
ARTIFACT_BUCKET = "ArtifactBucket"
# Template parameters without a usable default: locally the job image is containers/, run in the pool.
LOCAL_PARAMETERS = {"JobImageUri": "cvpipe-jobs:local"}
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


# The local setting behind the stack parameter AllowedPackages: packages besides scikit-learn that an
# input may name estimators from (the job workers import them from this environment).
ALLOWED_PACKAGES_VARIABLE = "CVPIPE_ALLOWED_PACKAGES"


def local_parameters() -> dict[str, str]:
    """Template parameters that this machine sets: an empty setting keeps the template's default."""
    packages = "".join(os.environ.get(ALLOWED_PACKAGES_VARIABLE, "").split())
    if not packages:
        return {}
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*,?", packages):
        raise UserError(
            f"{ALLOWED_PACKAGES_VARIABLE}={packages!r}: list top-level Python package names separated by commas, "
            "e.g. xgboost,lightgbm"
        )
    return {"AllowedPackages": packages}


def local_home(home: Path | None = None) -> Path:
    return (home or Path(os.environ.get("CVPIPE_HOME") or ".cvpipe")).resolve()


@dataclass
class PipelineRun:
    """One finished local execution."""

    name: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    run_dir: Path | str
    """The run's folder, or on AWS its S3 prefix."""
    tuning: dict[str, Any] | None = None
    """The last tuning state seen, so a failed run still reports its best candidate."""
    config: dict[str, Any] | None = None
    """The config once the split resolved it (metric, baseline), so a failed run still reports them."""
    redrive_count: int = 0
    """How often the run was resumed."""

    @property
    def input_rejected(self) -> bool:
        """Whether the run failed on what the user gave, before anything was trained: on the input
        (PrepareInput), on the dataset and the settings the split job checks against it, or on
        hyperparameters beyond SageMaker's limits (ProposeCandidates)."""
        # A split job lost with its worker is no fault of the input: resume the run.
        return self.error in contract.INPUT_ERRORS and not (self.cause or "").startswith(
            INTERNAL_ERROR_PREFIX
        )

    @property
    def worth_resuming(self) -> bool:
        """Whether ``--resume`` may end otherwise: the run stopped on something transient (a service
        error, a job lost with its worker, an interrupt), not on its data or its results."""
        transient = (self.cause or "").startswith(INTERNAL_ERROR_PREFIX)
        return self.status != "SUCCEEDED" and (
            transient or not (self.input_rejected or self.error in contract.FAIL_STATE_ERRORS)
        )

    def document(self) -> dict[str, Any]:
        """The execution output plus where its files are, the same keys whatever the status."""
        output = self.output if isinstance(self.output, dict) else {}
        tuning = self.tuning or {}
        config = self.config or {}
        doc = {
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "best": tuning.get("best"),
            "metric": config.get("dataset_info", {}).get("metric"),
            "model_package_arn": None,
            "model_package_version": None,
            **output,
            # The config holds a stand-in for "no baseline" (JSON has no -infinity): report none.
            "baseline": config["baseline"] if config.get("baseline_given") else None,
            "run_dir": str(self.run_dir),
        }
        if "tuning" not in output and tuning:
            doc["tuning"] = {
                "rounds": tuning.get("round"),
                "evaluated": tuning.get("evaluated"),
                "failed": tuning.get("failed"),
                "history": tuning.get("history"),
            }
        if doc["model_package_arn"]:
            doc["model_package_version"] = int(doc["model_package_arn"].rsplit("/", 1)[1])
        history = (doc.get("tuning") or {}).get("history")
        info = config.get("dataset_info") or {}
        if history:
            doc["cv_results"] = cv_results(history, info.get("metrics") or [info.get("metric")])
        return doc


# What the recorder keeps: the run's config and tuning state, from the states that assign them.
KEPT = {
    ("PassStateExited", contract.START_TUNING): contract.CONFIG_VARIABLE,
    ("TaskStateExited", contract.AGGREGATE_SCORES): contract.TUNING_VARIABLE,
}


def kept_document(event: Event) -> tuple[str, Any] | None:
    """(``config`` or ``tuning``, its value) when ``event`` assigns a document that a run's report keeps."""
    name = KEPT.get((event.type, str(event.details.get("name"))))
    if name is None:
        return None
    return name, assigned(event.details, name)


def check_execution_name(name: str) -> None:
    """Step Functions' rule for an execution name (local run folders are named after it too)."""
    if not EXECUTION_NAME.match(name):
        raise UserError(f"execution name {name!r}: use 1 to 80 letters, digits, '-' or '_'")


def default_execution_name() -> str:
    return datetime.now(UTC).strftime("cv-%Y%m%d-%H%M%S-") + secrets.token_hex(3)


@dataclass
class _ChildHistories:
    """The events of a run's child executions, in a file opened with the first of them (a run that
    starts none has none)."""

    path: Path
    earlier: list[dict[str, Any]]
    writer: HistoryWriter | None = None

    def append(self, event: Event, execution_arn: str) -> None:
        if self.writer is None:
            self.writer = HistoryWriter(self.path, self.earlier)
        self.writer.append(event, execution_arn)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class _RunRecorder:
    """Streams the history to the run's history file and keeps what a failed run still reports: its
    config and tuning state, and the states it is in."""

    history: HistoryWriter
    forward: Callable[[Event], None] | None
    child_histories: _ChildHistories
    on_child_started: Callable[[str], None]
    """Told of each child execution as it starts (its jobs belong in the run's folder)."""
    tuning: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    registering: bool = False
    """The run has started writing to the registry: an interrupt lets it finish."""
    open_states: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event) -> None:
        # Called in event order, under the history's lock; then under the recorder's own, which
        # abort_unless_registering takes too (aborting emits no event: no lock is taken the other way).
        with self._lock:
            if self.history.closed:  # from a handler thread abandoned when the run was stopped
                return
            self.history.append(event)
            self._track(event)
            found = kept_document(event)
            if found:
                setattr(self, *found)
        if self.forward:
            self.forward(event)

    def child_event(self, execution_arn: str, event: Event) -> None:
        """An event of a child execution (a candidate's evaluation): it has a history of its own, kept
        apart from the run's; the progress display and the states a stopped run was in see it."""
        if event.type == "ExecutionStarted":
            self.on_child_started(execution_arn)
        with self._lock:
            if self.history.closed:
                return
            self.child_histories.append(event, execution_arn)
            self._track(event)
        if self.forward:
            self.forward(event)

    def _track(self, event: Event) -> None:
        """The states entered and not yet left; whether the registration has begun."""
        name = str(event.details.get("name"))
        if event.type.endswith("StateEntered"):
            self.open_states[name] += 1
            self.registering = self.registering or name == contract.REGISTRATION_START
        elif event.type.endswith("StateExited"):
            self.open_states[name] -= 1

    def abort_unless_registering(self, execution: Execution, error: str, cause: str) -> bool:
        """Abort the execution, unless it has begun registering the model (then it runs to its end).

        Under the lock that sees the registration start: either the abort comes first, and the
        engine starts no task after it, or the registration does, and it finishes."""
        with self._lock:
            if self.registering:
                return False
            execution.abort(error, cause, grace=STOP_GRACE_SECONDS + 1)
            return True

    def stopped_in(self) -> list[str]:
        """The states entered and not left, outermost first: where a stopped or failed run was."""
        return [name for name, count in self.open_states.items() if count > 0]


class Interrupts:
    """SIGINT and SIGTERM as a run takes them: counted (never raised) and acted on by the run's own
    loop. The first stops the run: its jobs stopped, its record written. A second hurries that: job
    workers are killed at once. Neither skips the record. ``notice`` says what is done about each."""

    def __init__(self, notice: Callable[[str], None] | None = None) -> None:
        self.received: list[int] = []
        self.notice = notice or (lambda text: None)

    def __call__(self, signum: int, frame: Any = None) -> None:
        self.received.append(signum)

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal's number, as a shell reports a process that the signal ended."""
        return 128 + self.received[0] if self.received else None

    @contextlib.contextmanager
    def handled(self) -> Iterator[Interrupts]:
        """Take SIGINT and SIGTERM while the block runs (signal handlers live in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.signal(number, self) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


STOP_ERRORS = {int(signal.SIGINT): "Interrupted", int(signal.SIGTERM): "Terminated"}
"""The error an execution stopped by a signal is recorded with, as StopExecution's ``error``."""
INTERNAL_ERROR_PREFIX = "InternalServerError"


class LocalPipeline:
    """Runs executions of the project's state machine on this machine."""

    def __init__(
        self,
        root: Path,
        home: Path | None = None,
        workers: int | None = None,
        clock: Clock | None = None,
        limits: AccountLimits | None = None,
    ) -> None:
        """``limits``: the local account's quotas and injected faults (default: a new account's quotas)."""
        if workers is not None and workers < 1:
            raise UserError("--workers must be at least 1")
        self.root = root
        self.home = local_home(home)
        try:
            template = Template(root / TEMPLATE, parameters={**LOCAL_PARAMETERS, **local_parameters()})
            machine = state_machine_for(template, root / DEFINITION)
            self.definition = substitute(machine.definition_uri.read_text(), machine.substitutions)
            # Only the functions the state machine invokes: others (the S3 trigger's) have no part in a run.
            invoked = set(machine.substitutions.values())
            functions = {
                name: spec
                for name, spec in template.functions().items()
                if local_aws.arn("lambda", f"function:{name}") in invoked
            }
        except TemplateError as error:
            raise UserError(str(error)) from None
        self.state_machine_name = machine.logical_id
        self.bucket = bucket_name(ARTIFACT_BUCKET)
        self.store = LocalObjectStore(self.home / "s3")
        try:
            self.store.root.mkdir(parents=True, exist_ok=True)
            self.registry = LocalModelRegistry(self.home / "registry.sqlite", self.store)
        except (OSError, sqlite3.Error) as error:
            raise UserError(
                f"local state folder {self.home}: cannot hold the object store and the model registry there "
                f"({error}); choose another --home or $CVPIPE_HOME, or move a damaged registry.sqlite aside"
            ) from None
        self.pool = job_pool(root, workers)
        tasks = TaskRegistry()
        objects = StoreObjects(self.store)
        self.functions = register_lambda(tasks, functions, root, objects)
        self.volumes = register_sagemaker(
            tasks,
            self.store,
            self.pool,
            jobs_dir=lambda request: (
                self.run_dir(self._run_of(request.context["Execution"]["Name"])) / "jobs"
            ),
            limits=limits,
        )
        register_s3(tasks, self.store)
        register_registry(tasks, self.registry, limits)
        self._children: dict[str, str] = {}
        """Child execution name -> the execution that started it."""
        self.engine = Engine(
            tasks,
            clock=clock or RealClock(),
            account_id=local_aws.ACCOUNT_ID,
            region=local_aws.region(),
            objects=objects,
        )

    def __enter__(self) -> LocalPipeline:
        self.pool.start()  # workers warm up while the first states run
        self.functions.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.close()
        self.functions.close()
        self.volumes.drain()  # the workers' spare volumes, now that the workers are gone

    def run_dir(self, execution_name: str) -> Path:
        return self.store.path(f"s3://{self.bucket}/runs/{execution_name}")

    def _adopt(self, execution_name: str) -> Callable[[str], None]:
        """Record the child executions of ``execution_name`` (a Distributed Map's) as it starts them."""

        def started(child_arn: str) -> None:
            self._children[child_arn.rsplit(":", 1)[-1]] = execution_name

        return started

    def _run_of(self, execution_name: str) -> str:
        """The execution whose run folder holds the jobs of ``execution_name``: itself, or its parent."""
        return self._children.get(execution_name, execution_name)

    def stage_dataset(self, execution_input: dict[str, Any]) -> dict[str, Any]:
        """Locally a dataset may be a file: copy it into the object store and point the input there."""
        dataset = execution_input.get("dataset")
        if not isinstance(dataset, dict):
            return execution_input  # absent or malformed: PrepareInput says what is wrong
        uri = dataset.get("uri")
        if not isinstance(uri, str) or uri.startswith("s3://"):
            return (
                execution_input  # absent, malformed or already in the store: PrepareInput says what is wrong
            )
        path = Path(uri).expanduser()
        if path.is_dir():
            raise UserError(f"dataset.uri {uri}: is a folder; point it at one CSV file")
        if not path.exists():
            raise UserError(f"dataset.uri {uri}: no such file")
        if not path.is_file():
            raise UserError(
                f"dataset.uri {uri}: not a regular file (a device or a pipe); point it at one CSV file"
            )
        try:
            staged = self.store.stage_file(path, self.bucket)
        except OSError as error:
            raise UserError(f"dataset.uri {uri}: cannot read it ({error.strerror or error})") from None
        return {**execution_input, "dataset": {**dataset, "uri": staged}}

    def run(
        self,
        execution_input: dict[str, Any],
        name: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        interrupts: Interrupts | None = None,
    ) -> PipelineRun:
        name = name or default_execution_name()
        check_execution_name(name)
        run_dir = self.run_dir(name)
        if run_dir.exists():
            raise UserError(
                f"execution name {name!r} is taken: {run_dir} exists; choose another --name, "
                f"or continue that run with --resume {name}"
            )
        staged = self.stage_dataset(execution_input)
        size = payload_size(staged)
        if size > PAYLOAD_LIMIT:
            # StartExecution refuses such an input before any state runs.
            raise UserError(
                f"execution input: {size} bytes of JSON, more than the {PAYLOAD_LIMIT} bytes (256 KiB) Step Functions "
                "accepts: shorten model.params or model.search_space"
            )
        try:
            run_dir.mkdir(parents=True)
        except OSError as error:
            raise UserError(
                f"local state folder {self.home}: cannot create the run folder {run_dir} ({error.strerror or error}); "
                "choose another --home or $CVPIPE_HOME"
            ) from None
        return self._execute(name, staged, self.engine.clock.now(), 0, on_event, interrupts)

    def resume(
        self,
        name: str,
        on_event: Callable[[Event], None] | None = None,
        interrupts: Interrupts | None = None,
    ) -> PipelineRun:
        """Continue a run that did not succeed (failed, stopped, or killed with its process), as
        RedriveExecution does: the same input, name and start time; the tasks that finished keep
        their outcomes (the fold jobs that completed are not run again) and the rest run again."""
        record = self.read_record(name)
        if record["status"] == "SUCCEEDED":
            raise UserError(f"execution {name} succeeded: there is nothing to resume")
        if "start_date" not in record:
            raise UserError(
                f"execution {name} was recorded by an older cvpipe and cannot be resumed; run it again"
            )
        started = datetime.fromisoformat(record["start_date"])
        return self._execute(
            name, record["input"], started, record["redrive_count"] + 1, on_event, interrupts
        )

    def read_record(self, name: str) -> dict[str, Any]:
        """The record of execution ``name`` (``execution.json``); UserError if there is none."""
        check_execution_name(name)
        path = self.run_dir(name) / RECORD
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"no execution {name!r} in {self.home}: {path} does not exist") from None
        except (OSError, ValueError) as error:
            raise UserError(f"execution {name!r}: cannot read its record {path} ({error})") from None
        if not isinstance(record, dict) or not {"status", "input"} <= record.keys():
            raise UserError(f"execution {name!r}: its record {path} is not a run record")
        return record

    def _execute(
        self,
        name: str,
        staged: dict[str, Any],
        started: datetime,
        redrive_count: int,
        on_event: Callable[[Event], None] | None,
        interrupts: Interrupts | None,
    ) -> PipelineRun:
        """Run (or redrive) one execution in its run folder, recording it as it starts and as it ends."""
        interrupts = interrupts or Interrupts()
        run_dir = self.run_dir(name)
        try:
            journal_file = (run_dir / JOURNAL).open("a+b")  # closed by the with below
        except OSError as error:
            raise UserError(
                f"execution {name}: cannot write its run folder {run_dir} ({error.strerror or error}); "
                "choose another --home or $CVPIPE_HOME"
            ) from None
        with journal_file:
            try:
                fcntl.flock(journal_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"execution {name} is running in another process; wait for it to end"
                ) from None
            journal = open_journal(journal_file)
            # A redriven execution's history goes on after the earlier attempts' events.
            history = HistoryWriter(run_dir / HISTORY_FILE, read_history(run_dir) if redrive_count else [])
            earlier_children = read_history(run_dir, CHILD_HISTORIES_FILE) if redrive_count else []
            child_histories = _ChildHistories(run_dir / CHILD_HISTORIES_FILE, earlier_children)
            # What the functions print (logs, EMF metrics) is what CloudWatch Logs would hold.
            with (
                contextlib.closing(history),
                contextlib.closing(child_histories),
                (run_dir / "functions.log").open("ab") as log,
                stdout_to(log.fileno()),
            ):
                recorder = _RunRecorder(history, on_event, child_histories, self._adopt(name))
                # Recorded before the execution starts, so that a resume seen while it runs finds it live.
                record = {
                    "name": name,
                    "arn": local_aws.arn("states", f"execution:{self.state_machine_name}:{name}"),
                    "status": "RUNNING",
                    "input": staged,
                    "start_date": started.isoformat(),
                    "redrive_count": redrive_count,
                }
                _write_json_atomically(run_dir / RECORD, record)
                execution = self.engine.start(
                    self.definition,
                    staged,
                    name=name,
                    on_event=recorder,
                    on_child_event=recorder.child_event,
                    state_machine_name=self.state_machine_name,
                    journal=journal,
                    start_time=started,
                    redrive_count=redrive_count,
                )
                result, keyboard_interrupt = self._wait(execution, recorder, interrupts)
                self.volumes.drain()  # the run's folder holds what it keeps, and only that, once it ended
                _write_json_atomically(
                    run_dir / RECORD,
                    {
                        **record,
                        "status": result.status,
                        "stop_date": timestamp_text(self.engine.clock.now()),
                        "stopped_in": recorder.stopped_in() if result.status != "SUCCEEDED" else [],
                        "output": result.output,
                        "error": result.error,
                        "cause": result.cause,
                    },
                )
        for child in [child for child, parent in list(self._children.items()) if parent == name]:
            del self._children[child]
        if keyboard_interrupt:
            raise KeyboardInterrupt
        run = PipelineRun(
            name,
            result.status,
            result.output,
            result.error,
            result.cause,
            run_dir,
            recorder.tuning,
            recorder.config,
            redrive_count,
        )
        results = run.document().get("cv_results")
        if results:
            _write_json_atomically(run_dir / "cv_results.json", results)
        return run

    def _wait(
        self, execution: Execution, recorder: _RunRecorder, interrupts: Interrupts
    ) -> tuple[ExecutionResult, bool]:
        """The execution's result, acting on each interrupt meanwhile; and whether one of them came as
        a KeyboardInterrupt (no handler installed: the Python API), to be raised once it is recorded."""
        acted, keyboard_interrupt = 0, False
        while True:
            try:
                return execution.wait(_POLL_SECONDS), keyboard_interrupt
            except TimeoutError:
                pass
            except KeyboardInterrupt:
                keyboard_interrupt = True
                interrupts(signal.SIGINT)
            while acted < len(interrupts.received):
                number = interrupts.received[acted]
                acted += 1
                what = signal.Signals(number).name
                error = STOP_ERRORS.get(number, "Interrupted")
                if not recorder.abort_unless_registering(execution, error, f"the run was stopped by {what}"):
                    interrupts.notice(f"{what} while registering the model: letting the registration finish")
                elif acted == 1:
                    interrupts.notice(f"{what}: stopping the jobs and recording the run (again to hurry)")
                else:
                    self.pool.hurry()
                    interrupts.notice(f"{what}: stopping the job workers now")


def open_journal(journal_file: BinaryIO) -> TaskJournal:
    """The journal of a run folder: its earlier attempts' outcomes, and a writer for this one's. An
    entry cut short (the process was killed as it wrote it) is dropped: that task runs again."""
    journal_file.seek(0)
    recorded, end = _journal_entries(journal_file.read())
    journal_file.truncate(end)  # new entries follow the last whole one, not a cut one

    def write(entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        journal_file.write(gzip.compress(line.encode(), mtime=0))
        journal_file.flush()

    return TaskJournal(recorded, write)


def read_journal(run_dir: Path) -> list[dict[str, Any]]:
    """The task outcomes a run folder's journal holds, in the order they were recorded."""
    try:
        return _journal_entries((Path(run_dir) / JOURNAL).read_bytes())[0]
    except FileNotFoundError:
        return []


def _journal_entries(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The entries of the journal's bytes, and where the last whole one ends."""
    view, entries, start = memoryview(data), [], 0
    while start < len(data):
        member, position, parts = zlib.decompressobj(wbits=31), start, []
        try:
            while not member.eof and position < len(data):
                parts.append(member.decompress(view[position : position + _JOURNAL_CHUNK]))
                position += _JOURNAL_CHUNK
        except zlib.error:
            break
        if not member.eof:
            break
        with contextlib.suppress(ValueError):
            entries.append(json.loads(b"".join(parts)))
        start = min(position, len(data)) - len(member.unused_data)
    return entries, start


def _write_json_atomically(path: Path, document: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(path)
