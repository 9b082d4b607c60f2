"""The local model registry: versions, idempotency, persistence, errors, and shapes against moto."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.validate import validate_parameters
from moto import mock_aws

from cvpipe.asl.errors import StatesError
from cvpipe.asl.tasks import TaskRegistry, TaskRequest
from cvpipe.integrations.registry import LocalModelRegistry, register_registry
from cvpipe.integrations.sagemaker_api import service_model
from cvpipe.integrations.store import LocalObjectStore

pytestmark = pytest.mark.integration

BUCKET = "cvpipe-local-artifacts"
MODEL = f"s3://{BUCKET}/runs/exec/final/output/model.tar.gz"
STATISTICS = f"s3://{BUCKET}/runs/exec/statistics.json"


def package_request(group: str = "cv-models", **changes: Any) -> dict[str, Any]:
    request = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": "SVC, 5-fold CV",
        "InferenceSpecification": {
            "Containers": [{"Image": "cvjobs:latest", "ModelDataUrl": MODEL}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        "ModelMetrics": {
            "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": STATISTICS}}
        },
        "CustomerMetadataProperties": {"execution": "exec", "cv_score": "0.91"},
    }
    return {**request, **changes}


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    store = LocalObjectStore(tmp_path / "s3")
    store.put_bytes(MODEL, b"model")
    store.put_bytes(STATISTICS, b"{}")
    return store


@pytest.fixture
def registry(tmp_path: Path, store: LocalObjectStore) -> LocalModelRegistry:
    registry = LocalModelRegistry(tmp_path / "registry.sqlite", store)
    registry.create_model_package_group(
        {"ModelPackageGroupName": "cv-models", "ModelPackageGroupDescription": "CV"}
    )
    return registry


def sdk_error(call, *args: Any) -> StatesError:
    with pytest.raises(StatesError) as caught:
        call(*args)
    assert caught.value.error == "SageMaker.SageMakerException"  # ValidationException is not modeled
    return caught.value


def test_versions_count_up_per_group(registry: LocalModelRegistry) -> None:
    registry.create_model_package_group({"ModelPackageGroupName": "Other"})
    first = registry.create_model_package(package_request())["ModelPackageArn"]
    other = registry.create_model_package(package_request("other"))["ModelPackageArn"]
    second = registry.create_model_package(package_request())["ModelPackageArn"]
    assert first == "arn:aws:sagemaker:us-east-1:000000000000:model-package/cv-models/1"
    assert second.endswith("model-package/cv-models/2") and other.endswith("model-package/other/1")

    described = registry.describe_model_package(second)
    assert (described["ModelPackageVersion"], described["ModelPackageGroupName"]) == (2, "cv-models")
    assert described["ModelPackageStatus"] == "Completed"
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert described["CustomerMetadataProperties"] == {"execution": "exec", "cv_score": "0.91"}
    assert described["InferenceSpecification"] == package_request()["InferenceSpecification"]
    assert (
        registry.describe_model_package_group(
            "arn:aws:sagemaker:us-east-1:000000000000:model-package-group/other"
        )["ModelPackageGroupName"]
        == "Other"
    )

    listed = registry.list_model_packages("cv-models")["ModelPackageSummaryList"]
    assert [item["ModelPackageVersion"] for item in listed] == [2, 1]  # newest first
    assert len(registry.list_model_packages()["ModelPackageSummaryList"]) == 3


def test_client_token_makes_create_idempotent(registry: LocalModelRegistry) -> None:
    first = registry.create_model_package(package_request(ClientToken="exec-final"))
    again = registry.create_model_package(package_request(ClientToken="exec-final"))
    other = registry.create_model_package(package_request(ClientToken="another-run"))
    assert first == again and other["ModelPackageArn"].endswith("/2")
    assert len(registry.list_model_packages("cv-models")["ModelPackageSummaryList"]) == 2
    # Approving the package since does not make the same request another one.
    registry.update_model_package(
        {"ModelPackageArn": first["ModelPackageArn"], "ModelApprovalStatus": "Approved"}
    )
    assert registry.create_model_package(package_request(ClientToken="exec-final")) == first


def test_a_client_token_reused_for_another_request_is_refused(registry: LocalModelRegistry) -> None:
    registry.create_model_package(package_request(ClientToken="exec-final"))
    with pytest.raises(StatesError) as caught:
        registry.create_model_package(
            package_request(ClientToken="exec-final", ModelPackageDescription="other")
        )
    assert caught.value.error == "SageMaker.ConflictException"
    assert "ClientToken exec-final" in caught.value.cause
    assert len(registry.list_model_packages("cv-models")["ModelPackageSummaryList"]) == 1


def test_registry_persists_across_instances(
    tmp_path: Path, registry: LocalModelRegistry, store: LocalObjectStore
) -> None:
    arn = registry.create_model_package(package_request())["ModelPackageArn"]
    reopened = LocalModelRegistry(tmp_path / "registry.sqlite", store)
    assert reopened.describe_model_package(arn)["ModelPackageVersion"] == 1
    assert reopened.create_model_package(package_request())["ModelPackageArn"].endswith("/2")


def test_update_changes_approval_and_metadata(registry: LocalModelRegistry) -> None:
    arn = registry.create_model_package(package_request())["ModelPackageArn"]
    assert registry.update_model_package(
        {
            "ModelPackageArn": arn,
            "ModelApprovalStatus": "Approved",
            "ApprovalDescription": "best CV score",
            "CustomerMetadataProperties": {"reviewer": "ci"},
            "CustomerMetadataPropertiesToRemove": ["cv_score"],
        }
    ) == {"ModelPackageArn": arn}
    described = registry.describe_model_package(arn)
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == (
        "Approved",
        "best CV score",
    )
    assert described["CustomerMetadataProperties"] == {"execution": "exec", "reviewer": "ci"}
    assert "LastModifiedTime" in described
    approved = registry.list_model_packages("cv-models", approval_status="Approved")[
        "ModelPackageSummaryList"
    ]
    assert [item["ModelPackageArn"] for item in approved] == [arn]
    error = sdk_error(registry.update_model_package, {"ModelPackageArn": arn, "ModelApprovalStatus": "Maybe"})
    assert "Member must satisfy enum value set" in error.cause


def test_errors_name_the_problem(registry: LocalModelRegistry) -> None:
    assert (
        "Model Package Group already exists"
        in sdk_error(registry.create_model_package_group, {"ModelPackageGroupName": "CV-MODELS"}).cause
    )
    assert (
        "model-package-group/missing does not exist"
        in sdk_error(registry.create_model_package, package_request("missing")).cause
    )
    assert "does not exist" in sdk_error(registry.describe_model_package_group, "missing").cause
    assert (
        "does not exist"
        in sdk_error(
            registry.describe_model_package,
            "arn:aws:sagemaker:us-east-1:000000000000:model-package/cv-models/9",
        ).cause
    )
    assert "Missing required parameter" in sdk_error(registry.create_model_package_group, {}).cause


@pytest.mark.parametrize(
    "change, missing",
    [
        (
            {
                "InferenceSpecification": {
                    "Containers": [{"Image": "i", "ModelDataUrl": f"s3://{BUCKET}/nope.tar.gz"}],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                }
            },
            f"s3://{BUCKET}/nope.tar.gz",
        ),
        (
            {
                "ModelMetrics": {
                    "Bias": {
                        "Report": {"ContentType": "application/json", "S3Uri": "s3://other-bucket/r.json"}
                    }
                }
            },
            "s3://other-bucket/r.json",
        ),
    ],
)
def test_missing_artifacts_are_refused_and_leave_no_entry(
    registry: LocalModelRegistry, change, missing
) -> None:
    assert missing in sdk_error(registry.create_model_package, package_request(**change)).cause
    assert registry.list_model_packages("cv-models")["ModelPackageSummaryList"] == []
    assert registry.create_model_package(package_request())["ModelPackageArn"].endswith("/1")


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, registry: LocalModelRegistry) -> None:
    with sqlite3.connect(tmp_path / "registry.sqlite") as conn:
        conn.execute(
            "CREATE TRIGGER fail AFTER INSERT ON model_packages BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    with pytest.raises(sqlite3.DatabaseError, match="disk full"):
        registry.create_model_package(package_request(ClientToken="t"))
    with sqlite3.connect(tmp_path / "registry.sqlite") as conn:
        conn.execute("DROP TRIGGER fail")
    assert registry.list_model_packages()["ModelPackageSummaryList"] == []
    # The token was not taken, nor the version number.
    assert registry.create_model_package(package_request(ClientToken="t"))["ModelPackageArn"].endswith("/1")


def test_aws_sdk_tasks(registry: LocalModelRegistry) -> None:
    tasks = TaskRegistry()
    register_registry(tasks, registry)

    def call(action: str, parameters: dict[str, Any]) -> Any:
        resource = f"arn:aws:states:::aws-sdk:sagemaker:{action}"
        return tasks.resolve(resource)(TaskRequest(resource=resource, parameters=parameters, context={}))

    arn = call("createModelPackage", package_request())["ModelPackageArn"]
    call("updateModelPackage", {"ModelPackageArn": arn, "ModelApprovalStatus": "Approved"})
    assert call("describeModelPackage", {"ModelPackageName": arn})["ModelApprovalStatus"] == "Approved"
    latest = call(
        "listModelPackages",
        {"ModelPackageGroupName": "cv-models", "ModelApprovalStatus": "Approved", "MaxResults": 1},
    )
    assert [item["ModelPackageArn"] for item in latest["ModelPackageSummaryList"]] == [arn]
    group = call("describeModelPackageGroup", {"ModelPackageGroupName": "cv-models"})
    assert group["ModelPackageGroupStatus"] == "Completed"
    assert call("createModelPackageGroup", {"ModelPackageGroupName": "g2"})["ModelPackageGroupArn"].endswith(
        "/g2"
    )
    with pytest.raises(StatesError, match="does not support SortOrder"):
        call("listModelPackages", {"ModelPackageGroupName": "cv-models", "SortOrder": "Ascending"})
    with pytest.raises(StatesError) as caught:
        call("describeModelPackage", {})
    assert caught.value.error == "SageMaker.SageMakerException"


def test_shapes_match_botocore_and_moto(tmp_path: Path, store: LocalObjectStore) -> None:
    """The same calls against moto's SageMaker: every key moto returns, we return, with the same
    type (timestamps aside: boto3 parses the text that aws-sdk tasks return into datetimes);
    and every response fits botocore's model of it."""
    steps: list[tuple[str, str, dict[str, Any]]] = [
        (
            "create_model_package_group",
            "CreateModelPackageGroup",
            {"ModelPackageGroupName": "cv-models", "ModelPackageGroupDescription": "CV"},
        ),
        ("create_model_package", "CreateModelPackage", package_request()),
        ("create_model_package", "CreateModelPackage", package_request()),
        ("describe_model_package_group", "DescribeModelPackageGroup", {"ModelPackageGroupName": "cv-models"}),
        ("list_model_package_groups", "ListModelPackageGroups", {}),
        ("list_model_packages", "ListModelPackages", {"ModelPackageGroupName": "cv-models"}),
        (
            "update_model_package",
            "UpdateModelPackage",
            {"ModelPackageArn": "<v1>", "ModelApprovalStatus": "Approved"},
        ),
        ("describe_model_package", "DescribeModelPackage", {"ModelPackageName": "<v1>"}),
    ]
    local = LocalModelRegistry(tmp_path / "registry.sqlite", store)
    tasks = TaskRegistry()
    register_registry(tasks, local)
    with mock_aws():
        client = boto3.client("sagemaker", region_name="us-east-1")
        v1 = {"local": "", "moto": ""}
        for method, operation, params in steps:
            action = method.split("_")[0] + "".join(word.title() for word in method.split("_")[1:])
            resource = f"arn:aws:states:::aws-sdk:sagemaker:{action}"
            ours = tasks.resolve(resource)(
                TaskRequest(resource=resource, context={}, parameters=_fill(params, v1["local"]))
            )
            theirs = getattr(client, method)(**_fill(params, v1["moto"]))
            theirs.pop("ResponseMetadata")
            if operation == "CreateModelPackage" and not v1["local"]:
                v1 = {"local": ours["ModelPackageArn"], "moto": theirs["ModelPackageArn"]}
            validate_parameters(ours, service_model().operation_model(operation).output_shape)
            _assert_same_shape(ours, theirs, operation)


def _fill(params: dict[str, Any], arn: str) -> dict[str, Any]:
    return {key: arn if value == "<v1>" else value for key, value in params.items()}


# Where moto makes things up: a Studio user behind every call, and validation and image-scan
# statuses for packages that have nothing to check. Locally these are empty.
_MOTO_INVENTIONS = ("CreatedBy", "LastModifiedBy", "ValidationStatuses", "ImageScanStatuses")


def _assert_same_shape(ours: Any, theirs: Any, where: str) -> None:
    if where.endswith(_MOTO_INVENTIONS):
        assert type(ours) is type(theirs) and not ours, where
    elif isinstance(theirs, datetime):
        assert isinstance(ours, str) and datetime.fromisoformat(ours.replace("Z", "+00:00")), where
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        # moto leaves the package name out of versioned packages; botocore's model requires it.
        assert set(theirs) <= set(ours), f"{where}: missing {set(theirs) - set(ours)}"
        for key in theirs:
            _assert_same_shape(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), where
        for index, (mine, other) in enumerate(zip(ours, theirs, strict=False)):
            _assert_same_shape(mine, other, f"{where}[{index}]")
    else:
        assert type(ours) is type(theirs), f"{where}: {ours!r} vs {theirs!r}"
