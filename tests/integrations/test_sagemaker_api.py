"""Request validation as SageMaker does it: the verdicts kept per member value answer as the whole
check does, whatever valid requests came before."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cvpipe.integrations import sagemaker_api
from cvpipe.integrations.sagemaker_api import invalid_parameters

pytestmark = pytest.mark.unit

OPERATION = "CreateTrainingJob"
VALID: dict[str, Any] = {
    "TrainingJobName": "cv-0-f0",
    "RoleArn": "arn:aws:iam::000000000000:role/cvpipe",
    "AlgorithmSpecification": {
        "TrainingImage": "cvjobs:latest",
        "TrainingInputMode": "File",
        "MetricDefinitions": [{"Name": f"m{index}", "Regex": f"m{index}=(\\S+)"} for index in range(20)],
    },
    "HyperParameters": {"C": "1.0", "cv_fold": "0"},
    "InputDataConfig": [
        {
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/split"}},
        }
    ],
    "OutputDataConfig": {"S3OutputPath": "s3://bucket/jobs"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
}


def changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    request = copy.deepcopy(VALID)
    target = request
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return request


CHANGES = [
    (("StoppingCondition", "MaxRuntimeInSeconds"), 3600.0),  # a float where the model wants an integer
    (("StoppingCondition", "MaxRuntimeInSeconds"), True),  # a boolean is not the integer 1
    (("StoppingCondition", "MaxRuntimeInSeconds"), 0),
    (("ResourceConfig", "InstanceCount"), 1.0),
    (("ResourceConfig", "InstanceType"), "ml.nope"),
    (("AlgorithmSpecification", "MetricDefinitions", 7, "Name"), ""),
    (("AlgorithmSpecification", "MetricDefinitions", 7, "Regex"), "x" * 501),
    (("AlgorithmSpecification", "TrainingInputMode"), KeyError),
    (("AlgorithmSpecification", "Unknown"), "field"),
    (("HyperParameters", "C"), 1.0),
    (("InputDataConfig",), tuple(VALID["InputDataConfig"])),  # botocore takes a tuple for a list
    (("InputDataConfig", 0, "DataSource", "S3DataSource", "S3Uri"), b"s3://bucket/split"),
    (("RoleArn",), KeyError),
    (("Unknown",), "field"),
    (("TrainingJobName",), "bad_name"),
]


@pytest.mark.parametrize("path, value", CHANGES)
def test_a_request_after_valid_ones_is_judged_as_the_whole_check_judges_it(path, value) -> None:
    request = changed(path, value)
    sagemaker_api._valid_members.clear()
    alone = invalid_parameters(OPERATION, request)

    assert invalid_parameters(OPERATION, VALID) is None  # its members' verdicts are kept
    assert invalid_parameters(OPERATION, request) == alone
    assert invalid_parameters(OPERATION, VALID) is None


@pytest.mark.parametrize(
    "path",
    [("StoppingCondition", "MaxRuntimeInSeconds"), ("ResourceConfig", "VolumeSizeInGB")],
)
def test_a_boolean_where_the_model_wants_a_number_is_refused_naming_the_member(path) -> None:
    sagemaker_api._valid_members.clear()
    member = ".".join(name[:1].lower() + name[1:] for name in path)

    assert invalid_parameters(OPERATION, changed(path, True)) == (
        f"1 validation error detected: Value 'true' at '{member}' failed to satisfy constraint: "
        "Member must be a number"
    )
    assert invalid_parameters(OPERATION, changed(path, 1)) is None


def test_a_valid_request_with_new_values_in_a_few_members_is_valid() -> None:
    assert invalid_parameters(OPERATION, VALID) is None
    for index in range(5):
        request = changed(("HyperParameters", "C"), str(index))
        request["TrainingJobName"] = f"cv-{index}-f0"
        assert invalid_parameters(OPERATION, request) is None
