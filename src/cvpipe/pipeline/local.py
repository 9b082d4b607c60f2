"""The local engine wired to this project's stack: the template's state machine and functions, the
container entrypoints as local jobs, a local object store and a local model registry."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..asl import Clock, Engine, Event, ExecutionResult, RealClock, TaskRegistry
from ..asl.payload import PAYLOAD_LIMIT, payload_size
from ..errors import UserError
from ..integrations import local_aws
from ..integrations.jobs import JobPool, programs_from_pyproject
from ..integrations.lambda_ import register_lambda
from ..integrations.registry import LocalModelRegistry, register_registry
from ..integrations.sagemaker import register_sagemaker
from ..integrations.store import LocalObjectStore, StoreObjects, register_s3
from ..integrations.template import Template, TemplateError, bucket_name, state_machine_for, substitute
from ..stdio import stdout_to
from . import contract
from .contract import DEFINITION, TEMPLATE
from .history_file import HISTORY_FILE, HistoryWriter

CONTAINERS = "containers"
# The image's hosting program answers HTTP until stopped: it is no job.
HOSTING_PROGRAMS = frozenset({"serve"})
ARTIFACT_BUCKET = "ArtifactBucket"
# Template parameters without a usable default: locally the job image is containers/, run in the pool.
LOCAL_PARAMETERS = {"JobImageUri": "cvpipe-jobs:local"}
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# Imported once by each job worker, so that no job pays for them.
WARM_MODULES = (
    "sklearn.svm",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.model_selection",
    "cvjobs.train",
    "cvjobs.split",
)


def find_project_root(start: Path | None = None) -> Path:
    """The cvpipe project folder: the nearest one up from ``start`` (the working directory) holding
    template.yaml and statemachine/, else the one this package was installed from."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[3]):
        if (folder / TEMPLATE).is_file() and (folder / "statemachine").is_dir():
            return folder
    raise UserError("no cvpipe project here: run from the folder holding template.yaml")


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

    @property
    def input_rejected(self) -> bool:
        """Whether the run failed on what the user gave, before anything was trained: on the input
        (PrepareInput), on the dataset and the settings the split job checks against it, or on
        hyperparameters beyond SageMaker's limits (ProposeCandidates)."""
        return self.error in contract.INPUT_ERRORS

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
        return doc


# What the recorder keeps: the run's config and tuning state, from the Pass states that write them.
KEPT = {
    ("PassStateExited", contract.START_TUNING): contract.CONFIG_KEY,
    ("PassStateExited", contract.NEXT_ROUND): contract.TUNING_KEY,
}


def kept_document(event: Event) -> tuple[str, Any] | None:
    """(``config`` or ``tuning``, its value) when ``event`` writes a document that a run's report keeps."""
    key = KEPT.get((event.type, str(event.details.get("name"))))
    if key is None:
        return None
    output = event.details["output"]
    return key, (json.loads(output) if isinstance(output, str) else output)[key]


def default_execution_name() -> str:
    return datetime.now(UTC).strftime("cv-%Y%m%d-%H%M%S-") + secrets.token_hex(3)


@dataclass
class _RunRecorder:
    """Streams the history to the run's history file and keeps what a failed run still reports."""

    history: HistoryWriter
    forward: Callable[[Event], None] | None
    tuning: dict[str, Any] | None = None
    config: dict[str, Any] | None = None

    def __call__(self, event: Event) -> None:
        # Called in event order, under the history's lock.
        if self.history.closed:  # from a handler thread abandoned when the run was stopped
            return
        self.history.append(event)
        found = kept_document(event)
        if found:
            setattr(self, *found)
        if self.forward:
            self.forward(event)


class LocalPipeline:
    """Runs executions of the project's state machine on this machine."""

    def __init__(
        self, root: Path, home: Path | None = None, workers: int | None = None, clock: Clock | None = None
    ) -> None:
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
        containers = root / CONTAINERS
        programs = programs_from_pyproject(containers / "pyproject.toml")
        self.pool = JobPool(
            {name: target for name, target in programs.items() if name not in HOSTING_PROGRAMS},
            workers=workers,
            sys_path=[str(containers)],
            warm_modules=WARM_MODULES,
        )
        tasks = TaskRegistry()
        self.functions = register_lambda(tasks, functions, root)
        register_sagemaker(
            tasks,
            self.store,
            self.pool,
            jobs_dir=lambda request: self.run_dir(request.context["Execution"]["Name"]) / "jobs",
        )
        register_s3(tasks, self.store)
        register_registry(tasks, self.registry)
        self.engine = Engine(
            tasks,
            clock=clock or RealClock(),
            account_id=local_aws.ACCOUNT_ID,
            region=local_aws.region(),
            objects=StoreObjects(self.store),
        )

    def __enter__(self) -> LocalPipeline:
        self.pool.start()  # workers warm up while the first states run
        self.functions.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.close()
        self.functions.close()

    def run_dir(self, execution_name: str) -> Path:
        return self.store.path(f"s3://{self.bucket}/runs/{execution_name}")

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
    ) -> PipelineRun:
        name = name or default_execution_name()
        if not EXECUTION_NAME.match(name):
            raise UserError(f"execution name {name!r}: use 1 to 80 letters, digits, '-' or '_'")
        run_dir = self.run_dir(name)
        if run_dir.exists():
            raise UserError(f"execution name {name!r} is taken: {run_dir} exists; choose another --name")
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
        # What the functions print (logs, EMF metrics) is what CloudWatch Logs would hold.
        history = HistoryWriter(run_dir / HISTORY_FILE)
        with (
            contextlib.closing(history),
            (run_dir / "functions.log").open("ab") as log,
            stdout_to(log.fileno()),
        ):
            recorder = _RunRecorder(history, on_event)
            execution = self.engine.start(
                self.definition,
                staged,
                name=name,
                on_event=recorder,
                state_machine_name=self.state_machine_name,
            )
            try:
                result = execution.wait()
            except KeyboardInterrupt:
                # As StopExecution would: stop the jobs and record the run as aborted, then go on stopping.
                execution.abort("Interrupted", "the run was interrupted (Ctrl-C)")
                self._record(staged, execution.wait())
                raise
        self._record(staged, result)
        return PipelineRun(
            name,
            result.status,
            result.output,
            result.error,
            result.cause,
            run_dir,
            recorder.tuning,
            recorder.config,
        )

    def _record(self, execution_input: dict[str, Any], result: ExecutionResult) -> None:
        _write_json_atomically(
            self.run_dir(result.name) / "execution.json",
            {
                "name": result.name,
                "arn": result.arn,
                "status": result.status,
                "input": execution_input,
                "output": result.output,
                "error": result.error,
                "cause": result.cause,
            },
        )


def _write_json_atomically(path: Path, document: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(path)
