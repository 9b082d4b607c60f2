"""SageMaker training and processing jobs, run as local jobs in the warm worker pool.

``register_sagemaker`` serves the optimized integrations ``arn:aws:states:::sagemaker:
createTrainingJob[.sync]`` and ``createProcessingJob[.sync]``. A request is checked against
botocore's own model of the SageMaker API, then the job runs in ``JOBS_DIR/NAME``, a folder laid
out like ``/opt/ml`` in the container; inputs come from and outputs go to the local object store.
The ``.sync`` result is what Describe{Training,Processing}Job would return; a job that ends Failed
or Stopped fails the task with ``States.TaskFailed`` and that description as the cause, as Step
Functions does. Without ``.sync`` the task returns the job ARN at once and the job runs on.
A job is stopped (status Stopped) after ``StoppingCondition.MaxRuntimeInSeconds`` or when its
``.sync`` task is cancelled, which the engine also does when the state's TimeoutSeconds run out.

The local account has quotas of concurrent instances per instance type, and fault rules may
answer a request with a service error or make its job end Failed or Stopped (``faults.py``).

What a single machine cannot do is refused up front with a ValidationException that says so:
more than one instance, Pipe input mode, data sources other than S3 prefixes, container
arguments, and entrypoints that are not programs of the local image.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from cvpipe.asl.errors import TASK_FAILED, StatesError
from cvpipe.asl.tasks import TaskRegistry, TaskRequest

from .faults import JOB_FAILURE_REASON, AccountLimits, Fault
from .jobs import JobOutcome, JobPool
from .local_aws import arn, region
from .sagemaker_api import invalid_parameters, load_service_model, service_error
from .sagemaker_instance import (
    DISCARDED,
    FILES,
    TAR,
    TAR_IF_ANY,
    Instance,
    Report,
    VolumeDiscarder,
    metric_values,
)
from .store import LocalObjectStore

JOB_OPERATIONS = ("CreateTrainingJob", "CreateProcessingJob")
TRAINING_RESOURCE = "arn:aws:states:::sagemaker:createTrainingJob"
PROCESSING_RESOURCE = "arn:aws:states:::sagemaker:createProcessingJob"
MESSAGE_LIMIT = 1024  # characters of output/message and output/failure that SageMaker keeps
DEFAULT_MAX_RUNTIME = 86400  # SageMaker's default StoppingCondition.MaxRuntimeInSeconds
INTERNAL_ERROR = JOB_FAILURE_REASON
"""SageMaker's FailureReason when a job fails for a reason of its own, not the job's (an instance lost)."""
PROGRAM_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGSYS}
"""Signals by which a program ends itself (a crash): its fault, like a non-zero exit, not the host's."""
CONTAINER_ROOT = PurePosixPath("/opt/ml")
PROCESSING_ROOT = CONTAINER_ROOT / "processing"
# -- jobs -------------------------------------------------------------------------------------


class _Invalid(Exception):
    """The request cannot run: becomes a ValidationException."""


def _epoch_ms(seconds: float) -> int:
    """Optimized integrations return timestamps as epoch milliseconds."""
    return int(seconds * 1000)


def _container_path(local_path: Any, field: str) -> PurePosixPath:
    """``/opt/ml/processing/...`` -> the path relative to the job folder."""
    path = PurePosixPath(local_path) if isinstance(local_path, str) else None
    if (
        path is None
        or ".." in path.parts
        or not path.is_relative_to(PROCESSING_ROOT)
        or path == PROCESSING_ROOT
    ):
        raise _Invalid(f"{field} must be a path under {PROCESSING_ROOT}/, got {local_path!r}")
    return path.relative_to(CONTAINER_ROOT)


def _read_limited(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")[:MESSAGE_LIMIT]
    except FileNotFoundError:
        return None


class _Job(ABC):
    """What training and processing jobs share: name, folder, program, run and description."""

    operation: str  # CreateTrainingJob, ...
    noun: str  # TrainingJob: the prefix of Name, Arn, Status in requests and descriptions
    usage: str  # training job: what the account's instance quotas count
    arn_type: str  # training-job
    spec_field: str  # the request field with ContainerEntrypoint
    volume: tuple[str, ...] = ()  # the job folder's container-only parts, removed once it completed
    default_program: str | None
    program: str  # set by check()

    def __init__(self, params: dict[str, Any], folder: Path, store: LocalObjectStore) -> None:
        self.params = params
        self.name: str = params[f"{self.noun}Name"]
        self.arn = arn("sagemaker", f"{self.arn_type}/{self.name.lower()}")
        self.folder = folder
        self.store = store
        self.created = time.time()
        self.fault: Fault | None = None  # an injected end: Failed or Stopped
        self.on_end: Callable[[], None] = lambda: None
        self.report: Report | None = None  # from the instance, once the job's worker answered

    def check(self, programs: dict[str, str]) -> None:
        """Refuse what cannot run locally; sets ``self.program``."""
        spec = self.params.get(self.spec_field, {})
        if spec.get("ContainerArguments") or len(spec.get("ContainerEntrypoint", [None])) != 1:
            raise _Invalid(
                f"the local runner calls a program's main() and passes no arguments: "
                f"{self.spec_field}.ContainerEntrypoint must be one program name and "
                f"ContainerArguments must be empty"
            )
        self.program = spec.get("ContainerEntrypoint", [self.default_program])[0]
        if self.program not in programs:
            raise _Invalid(
                f"{self.spec_field}.ContainerEntrypoint must name a program of the local "
                f"image, one of: {', '.join(sorted(programs))} (got {self.program!r})"
            )
        instances = self.instance_config().get("InstanceCount", 1)
        if instances != 1:
            raise _Invalid(f"the local runner runs one instance; InstanceCount must be 1, got {instances}")

    @abstractmethod
    def instance_config(self) -> dict[str, Any]:
        """The request's InstanceCount/InstanceType block."""

    @property
    def instances(self) -> tuple[str, int]:
        config = self.instance_config()
        return config.get("InstanceType", ""), config.get("InstanceCount", 1)

    @abstractmethod
    def instance(self) -> Instance:
        """What the job's instance does around the program: the folder's layout, the inputs it
        fetches and the outputs it stores."""

    def _instance(self, **layout: Any) -> Instance:
        return Instance(folder=os.path.abspath(self.folder), store=str(self.store.root), **layout)

    @abstractmethod
    def describe(
        self, status: str, reason: str | None, started: float, ended: float, stop_kind: str | None
    ) -> dict[str, Any]:
        """The Describe*Job response; ``stop_kind`` says why a Stopped job stopped."""

    def environment(self) -> dict[str, str]:
        return dict(self.params.get("Environment", {}))

    def run(self, pool: JobPool, cancelled: threading.Event | None) -> dict[str, Any]:
        """Run to the end and return the description; it is also saved as ``describe.json``.

        A job whose worker was lost (killed by a signal from outside: the OOM killer, a kill -9)
        fails with SageMaker's InternalServerError; as SageMaker does, a training job whose request
        has a RetryStrategy then starts again, under the same name, up to MaximumRetryAttempts times.
        """
        max_runtime = self.params.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME)
        retries = self.params.get("RetryStrategy", {}).get("MaximumRetryAttempts", 0)
        started = time.time()
        stop_kind = None
        try:
            if self.fault is not None:
                status, reason, stop_kind = self._injected(self.fault)
                return self._described(status, reason, started, stop_kind)
            for attempt in range(retries + 1):
                if attempt:
                    self._restart(attempt, retries)
                outcome = pool.run(
                    self.program,
                    self.folder,
                    self.environment(),
                    self.folder / "job.log",
                    cancelled,
                    timeout=max_runtime,
                    host=self.instance(),
                )
                started = time.time() - outcome.seconds
                self.report = outcome.report
                status, reason, stop_kind = self._result(outcome, max_runtime)
                if reason != INTERNAL_ERROR or (cancelled is not None and cancelled.is_set()):
                    break
        except OSError as exc:
            status, reason = "Failed", f"ClientError: moving job data failed: {exc}"
        finally:
            self.on_end()  # the instances go back to the account's quota
        return self._described(status, reason, started, stop_kind)

    def _described(
        self, status: str, reason: str | None, started: float, stop_kind: str | None
    ) -> dict[str, Any]:
        # A completed job's instance discarded its volume: what the job produced is in the store,
        # what it was given is in the description. A failed job's folder stays for diagnosis.
        description = self.describe(status, reason, started, time.time(), stop_kind)
        with open(os.path.join(self.folder, "describe.json"), "w") as file:
            file.write(json.dumps(description, separators=(",", ":")))
        return description

    @staticmethod
    def _injected(fault: Fault) -> tuple[str, str | None, str | None]:
        if fault.job_end == "Stopped":  # as if StopTrainingJob had been called
            return "Stopped", None, "Stopped"
        return "Failed", fault.message, None

    def _result(self, outcome: JobOutcome, max_runtime: float) -> tuple[str, str | None, str | None]:
        if outcome.timed_out:
            return (
                "Stopped",
                f"MaxRuntimeExceeded: the job ran longer than "
                f"StoppingCondition.MaxRuntimeInSeconds ({max_runtime} s)",
                "MaxRuntimeExceeded",
            )
        if outcome.stopped:
            return "Stopped", "Stopped: the job was stopped because its task was cancelled", "Stopped"
        if self.report is not None and self.report.missing is not None:
            return (
                "Failed",
                f'ClientError: No S3 objects found under S3 URL "{self.report.missing}" given in input data '
                f"source. Please ensure that the bucket exists in the selected region ({region()}) and "
                f"that objects exist under that S3 prefix.",
                None,
            )
        if self.report is not None and self.report.error is not None:
            return "Failed", f"ClientError: moving job data failed: {self.report.error}", None
        if outcome.exit_code == 0:
            return "Completed", None, None
        if outcome.exit_code < 0 and -outcome.exit_code not in PROGRAM_FAULTS:
            return "Failed", INTERNAL_ERROR, None
        failure = _read_limited(self.folder / "output" / "failure")
        return "Failed", failure or f"AlgorithmError: exit code {outcome.exit_code}", None

    def _restart(self, attempt: int, retries: int) -> None:
        """Clear what the failed attempt left, but its log, as SageMaker starts a retried job afresh."""
        for path in self.folder.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != "job.log":
                path.unlink()
        with open(self.folder / "job.log", "a") as log:
            log.write(f"[cvpipe] {INTERNAL_ERROR} Retrying the job (retry {attempt} of {retries}).\n")

    def _common(self, status: str, reason: str | None, ended: float) -> dict[str, Any]:
        names = {f"{self.noun}Name": self.name, f"{self.noun}Arn": self.arn, f"{self.noun}Status": status}
        return {
            **names,
            **({"FailureReason": reason} if reason else {}),
            "CreationTime": _epoch_ms(self.created),
            "LastModifiedTime": _epoch_ms(ended),
        }

    def _echo(self, *fields: str) -> dict[str, Any]:
        """Request fields that the description repeats, when the request has them."""
        return {field: self.params[field] for field in fields if field in self.params}


class _TrainingJob(_Job):
    operation, noun, arn_type = "CreateTrainingJob", "TrainingJob", "training-job"
    usage = "training job"
    spec_field = "AlgorithmSpecification"
    default_program = "train"
    volume = ("input", "model", "output/data")  # output/ keeps the uploaded model.tar.gz, output.tar.gz

    def check(self, programs: dict[str, str]) -> None:
        super().check(programs)
        for channel in self.params.get("InputDataConfig", []):
            source = channel["DataSource"].get("S3DataSource")
            field = f"channel {channel['ChannelName']!r}"
            if source is None or source["S3DataType"] != "S3Prefix":
                raise _Invalid(f"{field}: the local runner reads S3DataSource with S3DataType S3Prefix only")
            if channel.get("InputMode", self.input_mode) == "Pipe":
                raise _Invalid(f"{field}: the local runner supports File and FastFile input modes, not Pipe")
            _checked_uri(source["S3Uri"], f"{field} S3Uri")
        _checked_uri(self.params["OutputDataConfig"].get("S3OutputPath"), "OutputDataConfig.S3OutputPath")
        for definition in self.params.get(self.spec_field, {}).get("MetricDefinitions", []):
            try:
                re.compile(definition["Regex"])
            except re.error as exc:
                raise _Invalid(f"MetricDefinitions {definition['Name']!r}: invalid Regex: {exc}") from None

    @property
    def input_mode(self) -> str:
        return self.params.get(self.spec_field, {}).get("TrainingInputMode", "File")

    @property
    def output_prefix(self) -> str:
        return f"{self.params['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{self.name}/output"

    def instance_config(self) -> dict[str, Any]:
        return self.params.get("ResourceConfig", {})

    def environment(self) -> dict[str, str]:
        # SageMaker tells a training container which job it is.
        return {**super().environment(), "TRAINING_JOB_NAME": self.name, "TRAINING_JOB_ARN": self.arn}

    @property
    def metric_definitions(self) -> tuple[tuple[str, str], ...]:
        definitions = self.params.get(self.spec_field, {}).get("MetricDefinitions", [])
        return tuple((definition["Name"], definition["Regex"]) for definition in definitions)

    def instance(self) -> Instance:
        channels, inputs = {}, []
        for channel in self.params.get("InputDataConfig", []):
            source = channel["DataSource"]["S3DataSource"]
            channels[channel["ChannelName"]] = {
                "TrainingInputMode": channel.get("InputMode", self.input_mode),
                "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                "RecordWrapperType": channel.get("RecordWrapperType", "None"),
                **{key: channel[key] for key in ("ContentType", "CompressionType") if key in channel},
            }
            inputs.append((source["S3Uri"], f"input/data/{channel['ChannelName']}"))
        instance_type = self.instance_config().get("InstanceType", "local")
        hosts = ["algo-1"]
        resources = {
            "current_host": hosts[0],
            "current_instance_type": instance_type,
            "current_group_name": "homogeneousCluster",
            "hosts": hosts,
            "instance_groups": [
                {"instance_group_name": "homogeneousCluster", "instance_type": instance_type, "hosts": hosts}
            ],
            "network_interface_name": "eth0",
        }
        return self._instance(
            folders=("input", "input/config", "model", "output", "output/data"),
            documents=(
                ("input/config/hyperparameters.json", self.params.get("HyperParameters", {})),
                ("input/config/inputdataconfig.json", channels),
                ("input/config/resourceconfig.json", resources),
            ),
            inputs=tuple(inputs),
            outputs=(
                ("model", f"{self.output_prefix}/model.tar.gz", TAR),
                ("output/data", f"{self.output_prefix}/output.tar.gz", TAR_IF_ANY),
            ),
            metric_definitions=self.metric_definitions,
            volume=self.volume,
        )

    def describe(
        self, status: str, reason: str | None, started: float, ended: float, stop_kind: str | None
    ) -> dict[str, Any]:
        seconds = max(1, math.ceil(ended - started))
        # The instance read the metrics; the log holds them when its worker did not answer.
        metrics = self.report.metrics if self.report is not None else None
        if metrics is None:
            metrics = metric_values(self.metric_definitions, os.path.join(self.folder, "job.log"))
        return {
            **self._common(status, reason, ended),
            "SecondaryStatus": stop_kind or status,
            "ModelArtifacts": {"S3ModelArtifacts": f"{self.output_prefix}/model.tar.gz"},
            "HyperParameters": self.params.get("HyperParameters", {}),
            "StoppingCondition": self.params.get(
                "StoppingCondition", {"MaxRuntimeInSeconds": DEFAULT_MAX_RUNTIME}
            ),
            **self._echo(
                "AlgorithmSpecification",
                "RetryStrategy",
                "RoleArn",
                "InputDataConfig",
                "OutputDataConfig",
                "ResourceConfig",
                "Environment",
            ),
            "EnableNetworkIsolation": self.params.get("EnableNetworkIsolation", False),
            "EnableInterContainerTrafficEncryption": self.params.get(
                "EnableInterContainerTrafficEncryption", False
            ),
            "EnableManagedSpotTraining": self.params.get("EnableManagedSpotTraining", False),
            "TrainingStartTime": _epoch_ms(started),
            "TrainingEndTime": _epoch_ms(ended),
            "TrainingTimeInSeconds": seconds,
            "BillableTimeInSeconds": seconds,
            "FinalMetricDataList": [
                {"MetricName": name, "Value": value, "Timestamp": _epoch_ms(ended)} for name, value in metrics
            ],
        }


class _ProcessingJob(_Job):
    operation, noun, arn_type = "CreateProcessingJob", "ProcessingJob", "processing-job"
    usage = "processing job"
    spec_field = "AppSpecification"
    default_program = None  # the image's entrypoint is not known locally: it must be given

    def check(self, programs: dict[str, str]) -> None:
        super().check(programs)
        for item in self.params.get("ProcessingInputs", []):
            source = item.get("S3Input")
            field = f"ProcessingInputs {item['InputName']!r}"
            if (
                source is None
                or source["S3DataType"] != "S3Prefix"
                or source.get("S3InputMode", "File") != "File"
            ):
                raise _Invalid(
                    f"{field}: the local runner reads S3Input with S3DataType S3Prefix "
                    f"and S3InputMode File only"
                )
            _container_path(source.get("LocalPath"), f"{field} LocalPath")
            _checked_uri(source["S3Uri"], f"{field} S3Uri")
        for item in self.outputs():
            field = f"ProcessingOutputConfig.Outputs {item['OutputName']!r}"
            if "S3Output" not in item:
                raise _Invalid(f"{field}: the local runner writes S3Output only")
            _container_path(item["S3Output"].get("LocalPath"), f"{field} LocalPath")
            _checked_uri(item["S3Output"]["S3Uri"], f"{field} S3Uri")

    def outputs(self) -> list[dict[str, Any]]:
        return self.params.get("ProcessingOutputConfig", {}).get("Outputs", [])

    def instance_config(self) -> dict[str, Any]:
        return self.params["ProcessingResources"]["ClusterConfig"]

    def instance(self) -> Instance:
        folders = ["output"]  # for output/message
        for item in self.outputs():
            path = _container_path(item["S3Output"]["LocalPath"], "LocalPath")
            folders += [parent.as_posix() for parent in reversed(path.parents) if parent.parts]
            folders.append(path.as_posix())
        return self._instance(
            folders=tuple(dict.fromkeys(folders)),
            inputs=tuple(
                (
                    item["S3Input"]["S3Uri"],
                    _container_path(item["S3Input"]["LocalPath"], "LocalPath").as_posix(),
                )
                for item in self.params.get("ProcessingInputs", [])
            ),
            outputs=tuple(
                (
                    _container_path(item["S3Output"]["LocalPath"], "LocalPath").as_posix(),
                    item["S3Output"]["S3Uri"],
                    FILES,
                )
                for item in self.outputs()
            ),
        )

    def describe(
        self, status: str, reason: str | None, started: float, ended: float, stop_kind: str | None
    ) -> dict[str, Any]:
        message = _read_limited(self.folder / "output" / "message")
        return {
            **self._common(status, reason, ended),
            **self._echo(
                "ProcessingInputs",
                "ProcessingOutputConfig",
                "ProcessingResources",
                "StoppingCondition",
                "AppSpecification",
                "Environment",
                "NetworkConfig",
                "RoleArn",
            ),
            **({"ExitMessage": message} if message is not None else {}),
            "ProcessingStartTime": _epoch_ms(started),
            "ProcessingEndTime": _epoch_ms(ended),
        }


def _checked_uri(uri: Any, field: str) -> None:
    try:
        LocalObjectStore.parse_uri(uri)
    except ValueError as exc:
        raise _Invalid(f"{field}: {exc}") from None


# -- registration -------------------------------------------------------------------------------

_names_lock = threading.Lock()
_used_names: dict[Path, set[str]] = {}
"""Job names taken in this process, per store (a local account): SageMaker never reuses one."""


def register_sagemaker(
    tasks: TaskRegistry,
    store: LocalObjectStore,
    pool: JobPool,
    jobs_dir: Callable[[TaskRequest], Path],
    limits: AccountLimits | None = None,
) -> VolumeDiscarder:
    """Serve create{Training,Processing}Job with and without ``.sync``; a job of an execution
    runs in ``jobs_dir(request) / NAME``. ``limits``: the account's quotas and fault rules
    (default: a new account's quotas, no faults). Returns what deletes the completed jobs' volumes,
    to ``drain`` when a run ends."""
    account = limits or AccountLimits()
    discarder = VolumeDiscarder(store.root / DISCARDED)
    load_service_model()  # for the first request's validation

    def create(kind: type[_Job], request: TaskRequest) -> _Job:
        params = request.parameters
        problem = invalid_parameters(kind.operation, params)
        if problem:
            raise service_error(kind.operation, "ValidationException", problem)
        job = kind(params, jobs_dir(request) / params[f"{kind.noun}Name"], store)
        try:
            job.check(pool.programs)
        except _Invalid as exc:
            raise service_error(kind.operation, "ValidationException", str(exc)) from None
        with _names_lock:
            used = _used_names.setdefault(store.root, set())
            if job.name.lower() in used or job.folder.exists():
                noun = kind.noun.removesuffix("Job").lower()
                raise service_error(
                    kind.operation,
                    "ResourceInUse",
                    f"{noun.capitalize()} job names must be unique within an AWS account and "
                    f"region, and a {noun} job with this name already exists ({job.arn})",
                )
            instance_type, count = job.instances
            fault = account.fault(kind.operation, job.name, params, (job.usage, instance_type, count))
            if fault is not None and fault.job_end is None:
                raise service_error(kind.operation, fault.code, fault.message)
            refused = account.acquire(job.usage, instance_type, count)
            if refused:
                raise service_error(kind.operation, "ResourceLimitExceeded", refused)
            job.on_end = lambda: account.release(job.usage, instance_type, count)
            job.fault = fault
            used.add(job.name.lower())
            job.folder.mkdir(parents=True)
        request.emit(
            "TaskSubmitted",
            {
                "resourceType": "sagemaker",
                "resource": request.resource.rpartition(":")[2],
                "output": json.dumps({f"{kind.noun}Arn": job.arn}),
                "outputDetails": {"truncated": False},
            },
        )
        return job

    def sync_handler(kind: type[_Job]) -> Callable[[TaskRequest], dict[str, Any]]:
        def handler(request: TaskRequest) -> dict[str, Any]:
            description = create(kind, request).run(pool, request.cancelled)
            if description[f"{kind.noun}Status"] != "Completed":
                raise StatesError(TASK_FAILED, json.dumps(description, separators=(",", ":")))
            return description

        return handler

    def start_handler(kind: type[_Job]) -> Callable[[TaskRequest], dict[str, Any]]:
        def handler(request: TaskRequest) -> dict[str, Any]:
            job = create(kind, request)
            # Like the service, the job outlives the task that started it: no cancellation.
            threading.Thread(target=job.run, args=(pool, None), name=job.name, daemon=True).start()
            return {f"{kind.noun}Arn": job.arn}

        return handler

    for resource, kind in ((TRAINING_RESOURCE, _TrainingJob), (PROCESSING_RESOURCE, _ProcessingJob)):
        tasks.register(resource + ".sync", sync_handler(kind))
        tasks.register(resource, start_handler(kind))
    return discarder
