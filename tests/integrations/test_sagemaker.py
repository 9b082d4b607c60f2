"""Local SageMaker jobs: requests as Step Functions sends them, programs written for the tests."""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import tarfile
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.validate import validate_parameters

from cvpipe.asl.errors import StatesError
from cvpipe.asl.tasks import TaskRegistry, TaskRequest
from cvpipe.integrations.faults import AccountLimits
from cvpipe.integrations.jobs import JobPool
from cvpipe.integrations.sagemaker import register_sagemaker
from cvpipe.integrations.sagemaker_api import service_model
from cvpipe.integrations.sagemaker_instance import VolumeDiscarder, metric_values
from cvpipe.integrations.store import LocalObjectStore

pytestmark = pytest.mark.integration

BUCKET = "cvpipe-local-artifacts"
TRAIN = """
import json, os, signal, sys, time
from pathlib import Path

def main(ml_root=Path("/opt/ml")):
    hp = json.loads((ml_root / "input/config/hyperparameters.json").read_text())
    mode = hp.get("mode", "ok")
    if mode == "sleep":
        time.sleep(30)
    if mode == "fail":
        (ml_root / "output/failure").write_text("ValueError: alpha must be positive")
        return 1
    if mode == "exit3":
        return 3
    if mode == "crash":  # a fault of the program itself
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "snoop":  # what a job is given, and what it leaves behind for the next on this worker
        tree = {str(path.relative_to(ml_root)): oct(path.stat().st_mode) for path in ml_root.rglob("*")}
        tree.pop("job.log")
        channels = {path.name: path.read_text() for path in (ml_root / "input/data").rglob("*.csv")}
        (ml_root / "model/seen.json").write_text(json.dumps({"tree": tree, "channels": channels}))
        (ml_root / "input/config/extra.json").write_text("{}")
        (ml_root / "input/junk").mkdir()
        (ml_root / "input/junk/file").write_text("x")
        for channel in (ml_root / "input/data").iterdir():
            (channel / "data.csv").unlink()
            (channel / "stale.csv").write_text("stale")
        (ml_root / "model/sub").mkdir()
        (ml_root / "output/data/out.txt").write_text("x")
        os.chmod(ml_root / "input/config", 0o700)
        return 0
    if mode == "lost" and "Retrying" not in (ml_root / "job.log").read_text():
        os.kill(os.getpid(), signal.SIGKILL)  # the worker goes, as an instance lost mid-job
    rows = (ml_root / "input/data/train/data.csv").read_text()
    print("validation:score=0.75")
    print("validation:score=0.875")
    print("train:score=not-a-number")
    print("fit_time=nan")
    (ml_root / "model/model.txt").write_text(rows)
    (ml_root / "model/meta").mkdir()
    (ml_root / "model/meta/info.json").write_text(json.dumps({
        "job": os.environ["TRAINING_JOB_NAME"], "config": hp,
        "resources": json.loads((ml_root / "input/config/resourceconfig.json").read_text()),
        "channels": json.loads((ml_root / "input/config/inputdataconfig.json").read_text())}))
    (ml_root / "output/data/extra.txt").write_text("extra")
    return 0
"""
SPLIT = """
import json, os
from pathlib import Path

def main(ml_root=Path("/opt/ml")):
    rows = (ml_root / "processing/input/data.csv").read_text().splitlines()
    out = ml_root / "processing/output"
    (out / "folds.txt").write_text(os.environ["CV_K"])
    (out / "nested").mkdir()
    (out / "nested/rows.txt").write_text(str(len(rows)))
    (ml_root / "output/message").write_text(json.dumps({"n_rows": len(rows), "k": int(os.environ["CV_K"])}))
    return 0
"""
METRICS = [
    {"Name": "validation:score", "Regex": r"validation:score=(\S+)"},
    {"Name": "train:score", "Regex": r"train:score=(\S+)"},
    {"Name": "fit_time", "Regex": r"fit_time=(\S+)"},
]
_names = itertools.count()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("programs")
    (folder / "cvtest_sm_train.py").write_text(TRAIN)
    (folder / "cvtest_sm_split.py").write_text(SPLIT)
    programs = {"train": "cvtest_sm_train:cli", "split": "cvtest_sm_split:cli"}
    with JobPool(programs, workers=2, sys_path=[str(folder)]) as pool:
        yield pool


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    store = LocalObjectStore(tmp_path / "s3")
    store.put_bytes(f"s3://{BUCKET}/data/train/data.csv", b"a,b\n1,2\n3,4\n")
    return store


@pytest.fixture
def tasks(store: LocalObjectStore, pool: JobPool, tmp_path: Path) -> TaskRegistry:
    tasks = TaskRegistry()
    register_sagemaker(
        tasks, store, pool, lambda request: tmp_path / "runs" / request.context["Execution"]["Name"] / "jobs"
    )
    return tasks


def assert_describe_shape(description: dict[str, Any], operation: str) -> None:
    """The description fits botocore's model of the response; optimized integrations return
    timestamps as epoch milliseconds, which botocore would have parsed into datetimes."""

    def parsed(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: parsed(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [parsed(v) for v in value]
        if key.endswith(("Time", "Timestamp")):
            assert isinstance(value, int)
            return datetime.fromtimestamp(value / 1000, UTC)
        return value

    validate_parameters(parsed(description), service_model().operation_model(operation).output_shape)


def job_name(label: str) -> str:
    return f"{label}-{next(_names)}"


def training_request(name: str, **changes: Any) -> dict[str, Any]:
    request = {
        "TrainingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/cvpipe",
        "AlgorithmSpecification": {
            "TrainingImage": "cvjobs:latest",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRICS,
        },
        "HyperParameters": {"mode": "ok", "cv_seed": "0"},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/train"}
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/runs/exec/models/"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    return {**request, **changes}


def processing_request(name: str, **changes: Any) -> dict[str, Any]:
    request = {
        "ProcessingJobName": name,
        "RoleArn": "arn:aws:iam::000000000000:role/cvpipe",
        "AppSpecification": {"ImageUri": "cvjobs:latest", "ContainerEntrypoint": ["split"]},
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
        },
        "Environment": {"CV_K": "5"},
        "ProcessingInputs": [
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/data/train/data.csv",
                    "LocalPath": "/opt/ml/processing/input",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "split",
                    "S3Output": {
                        "S3Uri": f"s3://{BUCKET}/runs/exec/split",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
    }
    return {**request, **changes}


def call(
    tasks: TaskRegistry,
    resource: str,
    parameters: dict[str, Any],
    execution: str = "exec",
    events: list | None = None,
    cancelled: threading.Event | None = None,
) -> Any:
    request = TaskRequest(
        resource=resource,
        parameters=parameters,
        context={"Execution": {"Name": execution}},
        cancelled=cancelled or threading.Event(),
        emit=lambda kind, details: events.append((kind, details)) if events is not None else None,
    )
    return tasks.resolve(resource)(request)


TRAIN_SYNC = "arn:aws:states:::sagemaker:createTrainingJob.sync"
PROCESS_SYNC = "arn:aws:states:::sagemaker:createProcessingJob.sync"


def failed_description(tasks: TaskRegistry, resource: str, parameters: dict[str, Any], **kwargs: Any) -> dict:
    with pytest.raises(StatesError) as caught:
        call(tasks, resource, parameters, **kwargs)
    assert caught.value.error == "States.TaskFailed"
    return json.loads(caught.value.cause)


def validation_error(tasks: TaskRegistry, resource: str, parameters: dict[str, Any]) -> str:
    with pytest.raises(StatesError) as caught:
        call(tasks, resource, parameters)
    assert caught.value.error == "SageMaker.AmazonSageMakerException"
    assert "Error Code: ValidationException" in caught.value.cause
    return caught.value.cause


def test_training_job_runs_and_returns_describe_training_job(tasks, store, tmp_path) -> None:
    name = job_name("Fold")
    events: list = []
    result = call(tasks, TRAIN_SYNC, training_request(name), events=events)

    assert_describe_shape(result, "DescribeTrainingJob")
    assert result["TrainingJobStatus"] == result["SecondaryStatus"] == "Completed"
    assert result["TrainingJobArn"] == f"arn:aws:sagemaker:us-east-1:000000000000:training-job/{name.lower()}"
    assert "FailureReason" not in result
    assert result["HyperParameters"] == {"mode": "ok", "cv_seed": "0"}
    assert result["CreationTime"] <= result["TrainingStartTime"] <= result["TrainingEndTime"]
    assert result["BillableTimeInSeconds"] >= 1
    assert events == [
        (
            "TaskSubmitted",
            {
                "resourceType": "sagemaker",
                "resource": "createTrainingJob.sync",
                "output": json.dumps({"TrainingJobArn": result["TrainingJobArn"]}),
                "outputDetails": {"truncated": False},
            },
        )
    ]
    # Last match wins; lines whose capture is not a finite number are skipped.
    assert [(m["MetricName"], m["Value"]) for m in result["FinalMetricDataList"]] == [
        ("validation:score", 0.875)
    ]

    model_uri = result["ModelArtifacts"]["S3ModelArtifacts"]
    assert model_uri == f"s3://{BUCKET}/runs/exec/models/{name}/output/model.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(store.get_bytes(model_uri))) as tar:
        assert tar.extractfile("model.txt").read() == b"a,b\n1,2\n3,4\n"
        info = json.load(tar.extractfile("meta/info.json"))
    assert info["job"] == name and info["config"] == {"mode": "ok", "cv_seed": "0"}
    assert info["resources"]["current_host"] == "algo-1" and info["resources"]["hosts"] == ["algo-1"]
    assert store.exists(model_uri.replace("model.tar.gz", "output.tar.gz"))
    assert info["channels"]["train"]["TrainingInputMode"] == "File"
    # Once the job completed, its folder keeps the description and the log, not the instance's volume.
    folder = tmp_path / "runs" / "exec" / "jobs" / name
    assert json.loads((folder / "describe.json").read_text()) == result
    assert "validation:score=0.875" in (folder / "job.log").read_text()
    assert not any((folder / volume).exists() for volume in ("input", "model", "output/data"))


def seen_by(store: LocalObjectStore, description: dict[str, Any]) -> dict[str, Any]:
    with tarfile.open(
        fileobj=io.BytesIO(store.get_bytes(description["ModelArtifacts"]["S3ModelArtifacts"]))
    ) as tar:
        return json.load(tar.extractfile("seen.json"))


def test_each_job_is_given_a_volume_as_new_whatever_the_jobs_before_it_left(tasks, store, tmp_path) -> None:
    store.put_bytes(f"s3://{BUCKET}/data/validation/data.csv", b"v\n1\n")
    fresh = None
    for index in range(8):  # four per worker: the later ones get the volumes their worker emptied
        channel = "validation" if index >= 6 else "train"
        inputs = [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/{channel}"}
                },
            }
        ]
        request = training_request(
            job_name("snoop"), HyperParameters={"mode": "snoop"}, InputDataConfig=inputs
        )
        seen = seen_by(store, call(tasks, TRAIN_SYNC, request))
        if channel == "train":
            assert seen["channels"] == {"data.csv": "a,b\n1,2\n3,4\n"}
            fresh = fresh or seen["tree"]
            assert seen["tree"] == fresh
        else:
            assert seen["channels"] == {"data.csv": "v\n1\n"}
            assert sorted(seen["tree"]) == sorted(path.replace("/train", "/validation") for path in fresh)
        time.sleep(0.2)  # for the worker to empty the volume
    assert sorted(fresh) == [
        "input",
        "input/config",
        "input/config/hyperparameters.json",
        "input/config/inputdataconfig.json",
        "input/config/resourceconfig.json",
        "input/data",
        "input/data/train",
        "input/data/train/data.csv",
        "model",
        "output",
        "output/data",
    ]
    assert any(path.name.startswith("spare-") for path in (store.root / ".discarded").iterdir())


def test_failure_reason_comes_from_the_failure_file(tasks) -> None:
    request = training_request(job_name("fail"), HyperParameters={"mode": "fail"})
    description = failed_description(tasks, TRAIN_SYNC, request)
    assert description["TrainingJobStatus"] == "Failed"
    assert description["FailureReason"] == "ValueError: alpha must be positive"


def test_failure_without_a_failure_file_reports_the_exit_code(tasks, store) -> None:
    name = job_name("exit")
    description = failed_description(
        tasks, TRAIN_SYNC, training_request(name, HyperParameters={"mode": "exit3"})
    )
    assert description["FailureReason"] == "AlgorithmError: exit code 3"
    assert not store.list(f"s3://{BUCKET}/runs/exec/models/{name}/")  # nothing uploaded


def test_max_runtime_stops_the_job(tasks) -> None:
    request = training_request(
        job_name("slow"), HyperParameters={"mode": "sleep"}, StoppingCondition={"MaxRuntimeInSeconds": 1}
    )
    description = failed_description(tasks, TRAIN_SYNC, request)
    assert (description["TrainingJobStatus"], description["SecondaryStatus"]) == (
        "Stopped",
        "MaxRuntimeExceeded",
    )
    assert "MaxRuntimeInSeconds" in description["FailureReason"]


def test_cancelling_the_task_stops_the_job(tasks) -> None:
    cancelled = threading.Event()
    threading.Timer(0.3, cancelled.set).start()
    started = time.monotonic()
    request = training_request(job_name("cancel"), HyperParameters={"mode": "sleep"})
    description = failed_description(tasks, TRAIN_SYNC, request, cancelled=cancelled)
    assert (description["TrainingJobStatus"], description["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert time.monotonic() - started < 10


def test_missing_input_data_fails_the_job_with_a_client_error(tasks) -> None:
    channels = [
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/nothing/here"}
            },
        }
    ]
    description = failed_description(
        tasks, TRAIN_SYNC, training_request(job_name("nodata"), InputDataConfig=channels)
    )
    assert description["FailureReason"].startswith('ClientError: No S3 objects found under S3 URL "s3://')


@pytest.mark.parametrize(
    "change, message",
    [
        ({"RoleArn": None}, 'Missing required parameter in input: "RoleArn"'),
        ({"HyperParameters": {"C": 1.0}}, "Invalid type for parameter HyperParameters.C"),
        ({"TrainingJobName": "bad_name"}, "Member must satisfy regular expression pattern"),
        (
            {"ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1}},
            "InstanceCount must be 1",
        ),
        ({"AlgorithmSpecification": {"TrainingInputMode": "Pipe"}}, "not Pipe"),
        (
            {
                "AlgorithmSpecification": {
                    "TrainingInputMode": "File",
                    "MetricDefinitions": [{"Name": "m", "Regex": "("}],
                }
            },
            "invalid Regex",
        ),
    ],
)
def test_invalid_training_requests_are_refused(tasks, tmp_path, change, message) -> None:
    request = {
        key: value for key, value in training_request(job_name("bad"), **change).items() if value is not None
    }
    assert message in validation_error(tasks, TRAIN_SYNC, request)
    assert not (tmp_path / "runs").exists()  # nothing was created


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"StoppingCondition": {"MaxRuntimeInSeconds": 777_601}},
            "Value '777601' at 'stoppingCondition.maxRuntimeInSeconds' failed to satisfy constraint: "
            "Member must have value less than or equal to 777600",
        ),
        (
            {"ProcessingJobName": "x" * 64},
            "at 'processingJobName' failed to satisfy constraint: Member must have length less than or equal to 63",
        ),
        (
            {"Environment": {"CV_K": "5" * 257}},
            "at 'environment' failed to satisfy constraint: Map value must satisfy constraint: "
            "[Member must have length less than or equal to 256]",
        ),
    ],
)
def test_processing_requests_beyond_sagemakers_constraints_are_refused(
    tasks, tmp_path, change, message
) -> None:
    cause = validation_error(tasks, PROCESS_SYNC, processing_request(job_name("limits"), **change))
    assert cause.startswith("1 validation error detected: ")
    assert message in cause
    assert not (tmp_path / "runs").exists()


def test_every_broken_constraint_is_reported_at_once(tasks) -> None:
    request = training_request(
        "x" * 64,
        ResourceConfig={"InstanceType": "ml.nope", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 0},
    )
    cause = validation_error(tasks, TRAIN_SYNC, request)
    assert cause.startswith("3 validation errors detected: ")
    assert (
        "at 'trainingJobName' failed to satisfy constraint: Member must have length less than or equal to 63"
        in cause
    )
    assert (
        "at 'resourceConfig.instanceType' failed to satisfy constraint: Member must satisfy enum value set"
        in cause
    )
    assert (
        "Value '0' at 'stoppingCondition.maxRuntimeInSeconds' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1" in cause
    )


def sagemaker_with(
    store: LocalObjectStore, pool: JobPool, tmp_path: Path, limits: AccountLimits
) -> TaskRegistry:
    tasks = TaskRegistry()
    register_sagemaker(tasks, store, pool, lambda request: tmp_path / "runs" / "exec" / "jobs", limits)
    return tasks


def test_jobs_beyond_the_accounts_quota_are_refused_until_one_ends(store, pool, tmp_path) -> None:
    tasks = sagemaker_with(store, pool, tmp_path, AccountLimits(quotas={"ml.m5.large": 1}))
    slow = training_request(
        job_name("slow"), HyperParameters={"mode": "sleep"}, StoppingCondition={"MaxRuntimeInSeconds": 1}
    )
    call(tasks, "arn:aws:states:::sagemaker:createTrainingJob", slow)  # runs on, for a second

    with pytest.raises(StatesError) as refused:
        call(tasks, TRAIN_SYNC, training_request(job_name("second")))
    assert refused.value.error == "SageMaker.ResourceLimitExceededException"
    assert refused.value.cause.startswith(
        "The account-level service limit 'ml.m5.large for training job usage' is 1 Instances, with current "
        "utilization of 1 Instances and a request delta of 1 Instances."
    )
    # Processing jobs count against a quota of their own.
    assert (
        call(tasks, PROCESS_SYNC, processing_request(job_name("split")))["ProcessingJobStatus"] == "Completed"
    )
    described = tmp_path / "runs" / "exec" / "jobs" / slow["TrainingJobName"] / "describe.json"
    for _ in range(500):
        if described.exists():
            break
        time.sleep(0.02)
    assert call(tasks, TRAIN_SYNC, training_request(job_name("third")))["TrainingJobStatus"] == "Completed"


def test_fault_rules_answer_matching_calls_as_many_times_as_they_say(store, pool, tmp_path) -> None:
    rules = {
        "rules": [
            {"action": "CreateTrainingJob", "match": "flaky", "error": "ThrottlingException", "times": 1},
            {"action": "CreateTrainingJob", "match": "doomed", "error": "Failed", "times": None},
        ]
    }
    limits = AccountLimits.from_document(rules, ["CreateTrainingJob"], ["CreateTrainingJob"])
    tasks = sagemaker_with(store, pool, tmp_path, limits)

    with pytest.raises(StatesError) as throttled:
        call(tasks, TRAIN_SYNC, training_request(job_name("flaky")))
    assert throttled.value.error == "SageMaker.AmazonSageMakerException"
    assert throttled.value.cause.startswith("Rate exceeded (Service: AmazonSageMaker; Status Code: 400; ")
    assert call(tasks, TRAIN_SYNC, training_request(job_name("flaky")))["TrainingJobStatus"] == "Completed"
    for _ in range(2):
        description = failed_description(tasks, TRAIN_SYNC, training_request(job_name("doomed")))
        assert description["TrainingJobStatus"] == "Failed"
        assert description["FailureReason"].startswith("InternalServerError: ")


def test_a_job_name_is_used_once_across_executions(tasks) -> None:
    name = job_name("twice")
    call(tasks, TRAIN_SYNC, training_request(name), execution="first")
    with pytest.raises(StatesError) as caught:
        call(tasks, TRAIN_SYNC, training_request(name.upper()), execution="second")
    assert caught.value.error == "SageMaker.ResourceInUseException"
    assert "Error Code: ResourceInUse" in caught.value.cause
    assert "a training job with this name already exists" in caught.value.cause


def test_processing_job_moves_inputs_outputs_environment_and_exit_message(tasks, store, tmp_path) -> None:
    name = job_name("split")
    result = call(tasks, PROCESS_SYNC, processing_request(name))
    assert_describe_shape(result, "DescribeProcessingJob")
    assert result["ProcessingJobStatus"] == "Completed"
    assert result["ProcessingJobArn"].endswith(f":processing-job/{name}")
    assert json.loads(result["ExitMessage"]) == {"n_rows": 3, "k": 5}
    assert store.list(f"s3://{BUCKET}/runs/exec/split") == [
        f"s3://{BUCKET}/runs/exec/split/folds.txt",
        f"s3://{BUCKET}/runs/exec/split/nested/rows.txt",
    ]
    assert store.get_bytes(f"s3://{BUCKET}/runs/exec/split/folds.txt") == b"5"
    assert (tmp_path / "runs" / "exec" / "jobs" / name / "processing" / "input" / "data.csv").is_file()


def test_processing_request_response_returns_the_arn_and_runs_on(tasks, tmp_path) -> None:
    name = job_name("async")
    result = call(tasks, "arn:aws:states:::sagemaker:createProcessingJob", processing_request(name))
    assert result == {"ProcessingJobArn": f"arn:aws:sagemaker:us-east-1:000000000000:processing-job/{name}"}
    describe = tmp_path / "runs" / "exec" / "jobs" / name / "describe.json"
    for _ in range(500):
        if describe.exists():
            break
        time.sleep(0.02)
    assert json.loads(describe.read_text())["ProcessingJobStatus"] == "Completed"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {
                "AppSpecification": {
                    "ImageUri": "x",
                    "ContainerEntrypoint": ["split"],
                    "ContainerArguments": ["--k", "5"],
                }
            },
            "passes no arguments",
        ),
        ({"AppSpecification": {"ImageUri": "x", "ContainerEntrypoint": ["nope"]}}, "one of: split, train"),
        ({"AppSpecification": {"ImageUri": "x"}}, "ContainerEntrypoint must name a program"),
        (
            {
                "ProcessingInputs": [
                    {
                        "InputName": "data",
                        "S3Input": {
                            "S3Uri": f"s3://{BUCKET}/data",
                            "LocalPath": "/tmp/data",
                            "S3DataType": "S3Prefix",
                        },
                    }
                ]
            },
            "must be a path under /opt/ml/processing/",
        ),
        (
            {
                "ProcessingOutputConfig": {
                    "Outputs": [
                        {
                            "OutputName": "o",
                            "S3Output": {
                                "S3Uri": f"s3://{BUCKET}/o",
                                "LocalPath": "/opt/ml/processing/../model",
                                "S3UploadMode": "EndOfJob",
                            },
                        }
                    ]
                }
            },
            "must be a path under /opt/ml/processing/",
        ),
    ],
)
def test_invalid_processing_requests_are_refused(tasks, change, message) -> None:
    assert message in validation_error(tasks, PROCESS_SYNC, processing_request(job_name("bad"), **change))


def test_final_metrics_parsing(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text(
        textwrap.dedent("""\
        loss=0.5
        loss=0.25 epoch 2
        loss=inf
        acc=
        acc=0.9
        score:
    """)
    )
    definitions = (
        ("loss", r"loss=(\S+)"),
        ("acc", r"acc=(\S*)"),
        ("nogroup", r"score:"),
        ("absent", r"zzz=(\d+)"),
    )
    assert metric_values(definitions, str(log)) == (("loss", 0.25), ("acc", 0.9))


def test_a_lost_worker_fails_the_job_with_an_internal_error(tasks) -> None:
    description = failed_description(
        tasks, TRAIN_SYNC, training_request(job_name("lost"), HyperParameters={"mode": "lost"})
    )
    assert description["TrainingJobStatus"] == "Failed"
    assert description["FailureReason"].startswith("InternalServerError:")


def test_a_retry_strategy_reruns_a_job_lost_with_its_worker(tasks, tmp_path) -> None:
    name = job_name("lost")
    request = training_request(
        name, HyperParameters={"mode": "lost"}, RetryStrategy={"MaximumRetryAttempts": 2}
    )
    result = call(tasks, TRAIN_SYNC, request)
    assert result["TrainingJobStatus"] == "Completed" and result["TrainingJobName"] == name
    assert result["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    assert [m["Value"] for m in result["FinalMetricDataList"]] == [0.875]
    log = (tmp_path / "runs" / "exec" / "jobs" / name / "job.log").read_text()
    assert log.count("Retrying the job (retry 1 of 2)") == 1


def test_a_program_that_crashes_is_not_retried(tasks, tmp_path) -> None:
    name = job_name("crash")
    request = training_request(
        name, HyperParameters={"mode": "crash"}, RetryStrategy={"MaximumRetryAttempts": 2}
    )
    description = failed_description(tasks, TRAIN_SYNC, request)
    assert description["FailureReason"] == f"AlgorithmError: exit code -{int(signal.SIGSEGV)}"
    assert "Retrying" not in (tmp_path / "runs" / "exec" / "jobs" / name / "job.log").read_text()


def test_discarded_volumes_leave_their_job_folders_at_once_and_are_deleted_by_the_drain(
    tmp_path: Path,
) -> None:
    trash = tmp_path / "s3" / ".discarded"
    (trash / "left-by-a-killed-run" / "model").mkdir(parents=True)  # deleted with the first volumes
    (trash / f"spare-{os.getpid()}-0" / "0").mkdir(parents=True)  # a live worker's: kept
    (trash / "spare-4194305-0" / "0").mkdir(parents=True)  # beyond any pid: a dead worker's
    discarder = VolumeDiscarder(trash)
    volumes = []
    for index in range(20):
        volume = tmp_path / "jobs" / f"job-{index}" / "input" / "config"
        volume.mkdir(parents=True)
        (volume / "hyperparameters.json").write_text("{}")
        volumes.append(volume.parent)
    discarder.discard([*volumes, tmp_path / "jobs" / "job-0" / "model"])  # one never made: skipped

    assert not any(volume.exists() for volume in volumes)
    assert all(volume.parent.is_dir() for volume in volumes)  # the job folders stay
    discarder.drain()
    assert [path.name for path in trash.iterdir()] == [f"spare-{os.getpid()}-0"]
