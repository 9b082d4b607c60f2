"""`cvpipe asl run --faults FILE`: any definition meets the local SageMaker and Model Registry with the
quotas and injected faults of `cvpipe run --faults`, read and refused the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cvpipe.cli import main

pytestmark = pytest.mark.integration

GROUP = "asl-faults"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jobs:1"
REGISTER: dict[str, Any] = {
    "StartAt": "Group",
    "States": {
        "Group": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:sagemaker:createModelPackageGroup",
            "Parameters": {"ModelPackageGroupName": GROUP},
            "ResultPath": None,
            "Next": "Register",
        },
        "Register": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:sagemaker:createModelPackage",
            "Parameters": {
                "ModelPackageGroupName": GROUP,
                "ModelApprovalStatus": "Approved",
                "InferenceSpecification": {
                    "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://bucket-a/model.tar.gz"}],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
            },
            "Retry": [
                {"ErrorEquals": ["SageMaker.SageMakerException"], "IntervalSeconds": 1, "MaxAttempts": 1}
            ],
            "End": True,
        },
    },
}
TRAIN: dict[str, Any] = {
    "StartAt": "Train",
    "States": {
        "Train": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
            "Parameters": {
                "TrainingJobName": "asl-quota-job",
                "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
                "RoleArn": "arn:aws:iam::123456789012:role/sagemaker",
                "OutputDataConfig": {"S3OutputPath": "s3://bucket-a/out"},
                "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
                "StoppingCondition": {"MaxRuntimeInSeconds": 60},
            },
            "End": True,
        }
    },
}


@pytest.fixture
def asl_run(tmp_path: Path, capfd):
    """Run a definition with a faults document on a store and home in tmp_path: (exit code, summary, stderr)."""
    store = tmp_path / "s3"
    (store / "bucket-a").mkdir(parents=True)
    (store / "bucket-a" / "model.tar.gz").write_bytes(b"a model")  # a package must name an existing artifact

    def run(definition: dict[str, Any], faults: Any, *options: str) -> tuple[int, Any, str]:
        (tmp_path / "machine.asl.json").write_text(json.dumps(definition))
        (tmp_path / "faults.json").write_text(faults if isinstance(faults, str) else json.dumps(faults))
        code = main(
            [
                "asl",
                "run",
                str(tmp_path / "machine.asl.json"),
                "--faults",
                str(tmp_path / "faults.json"),
                "--virtual-clock",
                *options,
            ]
        )
        out, err = capfd.readouterr()
        return code, json.loads(out) if out else None, err

    run.options = ("--store", str(store), "--home", str(tmp_path / "home"))  # type: ignore[attr-defined]
    return run


def throttled(times: int) -> dict[str, Any]:
    return {
        "rules": [
            {"action": "CreateModelPackage", "match": GROUP, "error": "ThrottlingException", "times": times}
        ]
    }


def test_a_call_throttled_once_is_retried_by_the_definition(asl_run) -> None:
    code, summary, err = asl_run(REGISTER, throttled(1), *asl_run.options)

    assert code == 0, err
    assert summary["status"] == "SUCCEEDED"
    assert summary["output"]["ModelPackageArn"].endswith(f":model-package/{GROUP}/1")


def test_a_fault_beyond_the_retries_fails_the_execution_with_sagemakers_error(asl_run) -> None:
    code, summary, _ = asl_run(REGISTER, throttled(2), *asl_run.options)

    assert code == 1
    assert summary["error"] == "SageMaker.SageMakerException"  # the aws-sdk integration's name
    assert summary["cause"].startswith("Rate exceeded (Service: SageMaker, Status Code: 400")


def test_the_quotas_refuse_jobs_as_the_account_would(asl_run) -> None:
    code, summary, _ = asl_run(TRAIN, {"quotas": {"ml.m5.large": 0}}, *asl_run.options)

    assert code == 1
    assert summary["error"] == "SageMaker.ResourceLimitExceededException"
    assert "'ml.m5.large for training job usage' is 0 Instances" in summary["cause"]


def test_a_bad_faults_file_is_refused_as_cvpipe_run_refuses_it(asl_run, tmp_path: Path, capfd) -> None:
    faults = {"rules": [{"action": "CreateTrainingJob", "match": "-f3-", "error": "Throttled", "times": 0}]}
    code, summary, err = asl_run(TRAIN, faults, *asl_run.options)
    run_code = main(["run", "--faults", str(tmp_path / "faults.json")])
    run_err = capfd.readouterr().err

    assert code == run_code == 2
    assert summary is None and "Traceback" not in err
    assert err.removeprefix("cvpipe asl run: ") == run_err.removeprefix("cvpipe run: ")
    assert "rules[0].error: unknown error 'Throttled'" in err


@pytest.mark.parametrize("faults", ["{not json", '{"quotas": {"m5.large": 2}}'])
def test_a_faults_file_that_cannot_be_used_names_the_file(asl_run, tmp_path: Path, faults: str) -> None:
    code, _, err = asl_run(TRAIN, faults, *asl_run.options)

    assert code == 2
    assert err.startswith(f"cvpipe asl run: --faults {tmp_path / 'faults.json'}: ")


def test_faults_without_a_store_say_what_to_add(asl_run) -> None:
    code, summary, err = asl_run(TRAIN, {"quotas": {"ml.m5.large": 0}})

    assert (code, summary) == (2, None)
    assert "add --store DIR" in err


def test_a_definition_that_calls_no_sagemaker_leaves_no_state_folder(tmp_path: Path, capfd) -> None:
    (tmp_path / "s3").mkdir()
    (tmp_path / "pass.asl.json").write_text(
        json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    )
    home = tmp_path / "home"

    code = main(
        ["asl", "run", str(tmp_path / "pass.asl.json"), "--store", str(tmp_path / "s3"), "--home", str(home)]
    )

    assert code == 0, capfd.readouterr().err
    assert not home.exists()
