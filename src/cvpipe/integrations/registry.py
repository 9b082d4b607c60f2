"""A local SageMaker Model Registry: model package groups and versioned model packages in SQLite.

Requests and responses have SageMaker's shapes (checked against botocore's model of the API), so
the definition's ``aws-sdk:sagemaker:*`` tasks behave as on AWS. The database outlives runs and is
shared by processes: WAL lets readers work while one process writes, and every write is a single
``BEGIN IMMEDIATE`` transaction, so version numbers never collide and a failed write leaves nothing.

Errors follow Step Functions' aws-sdk naming (Java SDK v2): SageMaker answers "does not exist" and
"already exists" with a ValidationException, which the API does not model, so the error is
``SageMaker.SageMakerException``; the cause carries the service's message.

Local differences: without a group, ``list_model_packages`` lists every package (SageMaker lists
unversioned ones only) and results come newest first, in one page.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cvpipe.asl.errors import StatesError
from cvpipe.asl.tasks import TaskRegistry

from .faults import AccountLimits
from .local_aws import arn
from .sagemaker_api import invalid_parameters, service_error, service_model
from .store import LocalObjectStore, aws_sdk_time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_package_groups (
    name     TEXT PRIMARY KEY COLLATE NOCASE,  -- SageMaker names are case-insensitive (ARNs are lower case)
    created  REAL NOT NULL,
    request  TEXT NOT NULL                      -- the CreateModelPackageGroup request (JSON)
);
CREATE TABLE IF NOT EXISTS model_packages (
    arn          TEXT PRIMARY KEY,
    group_name   TEXT COLLATE NOCASE,           -- NULL for an unversioned package
    version      INTEGER,
    client_token TEXT,
    created      REAL NOT NULL,
    modified     REAL,
    request      TEXT NOT NULL,                 -- the CreateModelPackage request with updates applied
    UNIQUE (group_name, version)
);
CREATE INDEX IF NOT EXISTS model_packages_by_token ON model_packages (group_name, client_token);
"""


def _error(operation: str, message: str) -> StatesError:
    return service_error(operation, "ValidationException", message, aws_sdk=True)


def _check(operation: str, params: Any) -> dict[str, Any]:
    problem = invalid_parameters(operation, params)
    if problem:
        raise _error(operation, problem)
    return params


def _group_arn(name: str) -> str:
    return arn("sagemaker", f"model-package-group/{name.lower()}")


def _name_from(name_or_arn: str, resource_type: str) -> str:
    """A name, or the name in an ARN of ``resource_type`` (``model-package-group``)."""
    marker = f":{resource_type}/"
    if name_or_arn.startswith("arn:") and marker in name_or_arn:
        return name_or_arn.partition(marker)[2]
    return name_or_arn


def _immutable(request: dict[str, Any]) -> dict[str, Any]:
    """A package's request without what UpdateModelPackage may have changed since."""
    mutable = (
        "ModelApprovalStatus",
        "ApprovalDescription",
        "CustomerMetadataProperties",
        "ModelPackageGroupName",
    )
    return {key: value for key, value in request.items() if key not in mutable}


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class LocalModelRegistry:
    def __init__(self, db_path: Path, store: LocalObjectStore) -> None:
        self.db_path = Path(db_path)
        self.store = store
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(self._connect()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # A connection per operation: cheap with SQLite, and safe from any thread.
        conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    @contextlib.contextmanager
    def _transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            # IMMEDIATE takes the write lock up front: two writers never read the same max version.
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    # -- model package groups -------------------------------------------------------------------

    def create_model_package_group(self, params: dict[str, Any]) -> dict[str, Any]:
        operation = "CreateModelPackageGroup"
        name = _check(operation, params)["ModelPackageGroupName"]
        with self._transaction(write=True) as conn:
            if conn.execute("SELECT 1 FROM model_package_groups WHERE name = ?", (name,)).fetchone():
                raise _error(operation, f"Model Package Group already exists: {_group_arn(name)}")
            conn.execute(
                "INSERT INTO model_package_groups VALUES (?, ?, ?)", (name, time.time(), json.dumps(params))
            )
        return {"ModelPackageGroupArn": _group_arn(name)}

    def describe_model_package_group(self, name_or_arn: str) -> dict[str, Any]:
        name = _name_from(name_or_arn, "model-package-group")
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM model_package_groups WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise _error("DescribeModelPackageGroup", f"ModelPackageGroup {_group_arn(name)} does not exist.")
        return {**self._group_summary(row), "CreatedBy": {}}

    def list_model_package_groups(self) -> dict[str, Any]:
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM model_package_groups ORDER BY created DESC, rowid DESC"
            ).fetchall()
        return {"ModelPackageGroupSummaryList": [self._group_summary(row) for row in rows]}

    @staticmethod
    def _group_summary(row: sqlite3.Row) -> dict[str, Any]:
        request = json.loads(row["request"])
        return _drop_none(
            {
                "ModelPackageGroupName": row["name"],
                "ModelPackageGroupArn": _group_arn(row["name"]),
                "ModelPackageGroupDescription": request.get("ModelPackageGroupDescription"),
                "CreationTime": aws_sdk_time(row["created"]),
                "ModelPackageGroupStatus": "Completed",
            }
        )

    # -- model packages -------------------------------------------------------------------------

    def create_model_package(self, params: dict[str, Any]) -> dict[str, Any]:
        """Register a model: a new version of ``ModelPackageGroupName``, or an unversioned package
        named ``ModelPackageName``. A repeated ``ClientToken`` with the same request returns the first
        call's ARN; with another request it is refused (ConflictException)."""
        operation = "CreateModelPackage"
        _check(operation, params)
        group: str | None = params.get("ModelPackageGroupName")
        name: str | None = params.get("ModelPackageName")
        if (group is None) == (name is None):
            raise _error(
                operation,
                "Exactly one of ModelPackageGroupName (a versioned package) and "
                "ModelPackageName (an unversioned package) must be given.",
            )
        self._check_artifacts(operation, params)
        token = params.get("ClientToken")
        request = {key: value for key, value in params.items() if key != "ClientToken"}
        if group is not None:
            request.setdefault("ModelApprovalStatus", "PendingManualApproval")  # SageMaker's default
        with self._transaction(write=True) as conn:
            if token is not None:
                found = conn.execute(
                    "SELECT arn, request FROM model_packages WHERE group_name IS ? AND client_token = ?",
                    (group, token),
                ).fetchone()
                if found:
                    if _immutable(json.loads(found["request"])) != _immutable(request):
                        raise service_error(
                            operation,
                            "ConflictException",
                            f"ClientToken {token} was used by another CreateModelPackage request "
                            f"({found['arn']}); use a new token for a new package",
                            aws_sdk=True,
                        )
                    return {"ModelPackageArn": found["arn"]}
            if group is None:
                assert name is not None  # exactly one of the two, checked above
                version = None
                package_arn = arn("sagemaker", f"model-package/{name.lower()}")
                if conn.execute("SELECT 1 FROM model_packages WHERE arn = ?", (package_arn,)).fetchone():
                    raise _error(operation, f"Model Package already exists: {package_arn}")
            else:
                stored = conn.execute(
                    "SELECT name FROM model_package_groups WHERE name = ?", (group,)
                ).fetchone()
                if stored is None:
                    raise _error(operation, f"ModelPackageGroup {_group_arn(group)} does not exist.")
                request["ModelPackageGroupName"] = stored["name"]
                (latest,) = conn.execute(
                    "SELECT MAX(version) FROM model_packages WHERE group_name = ?", (group,)
                ).fetchone()
                version = (latest or 0) + 1
                package_arn = arn("sagemaker", f"model-package/{group.lower()}/{version}")
            conn.execute(
                "INSERT INTO model_packages (arn, group_name, version, client_token, created, request)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    package_arn,
                    request.get("ModelPackageGroupName"),
                    version,
                    token,
                    time.time(),
                    json.dumps(request),
                ),
            )
        return {"ModelPackageArn": package_arn}

    def _check_artifacts(self, operation: str, params: dict[str, Any]) -> None:
        """SageMaker refuses a package whose model data or metrics it cannot read."""
        uris = [
            container["ModelDataUrl"]
            for container in params.get("InferenceSpecification", {}).get("Containers", [])
            if "ModelDataUrl" in container
        ]
        uris += [
            source["S3Uri"]
            for metric_kind in params.get("ModelMetrics", {}).values()
            for source in metric_kind.values()
            if "S3Uri" in source
        ]
        for uri in uris:
            try:
                found = self.store.exists(uri)
            except ValueError:
                found = False
            if not found:
                raise _error(
                    operation,
                    f"Could not find an object at {uri}: model data and metrics must "
                    f"exist in the object store before the model is registered.",
                )

    def describe_model_package(self, name_or_arn: str) -> dict[str, Any]:
        """A package by ARN, or an unversioned package by name."""
        with self._transaction() as conn:
            row = self._package_row(conn, "DescribeModelPackage", name_or_arn)
        request = json.loads(row["request"])
        members = service_model().operation_model("DescribeModelPackage").output_shape.members
        return {
            **{key: value for key, value in request.items() if key in members},
            **self._package_summary(row, request),
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
            "CertifyForMarketplace": request.get("CertifyForMarketplace", False),
            "CreatedBy": {},
            **(
                {"LastModifiedTime": aws_sdk_time(row["modified"]), "LastModifiedBy": {}}
                if row["modified"]
                else {}
            ),
        }

    def list_model_packages(
        self, group: str | None = None, approval_status: str | None = None, max_results: int | None = None
    ) -> dict[str, Any]:
        """Summaries, newest first: of one group's versions, or (no group) of every package."""
        query = "SELECT * FROM model_packages WHERE (:group IS NULL OR group_name = :group)"
        query += " ORDER BY created DESC, rowid DESC"
        with self._transaction() as conn:
            rows = conn.execute(
                query, {"group": group and _name_from(group, "model-package-group")}
            ).fetchall()
        summaries = [self._package_summary(row, json.loads(row["request"])) for row in rows]
        if approval_status is not None:
            summaries = [item for item in summaries if item.get("ModelApprovalStatus") == approval_status]
        return {"ModelPackageSummaryList": summaries[:max_results]}

    def update_model_package(self, params: dict[str, Any]) -> dict[str, Any]:
        """Change the approval status, its description, or the customer metadata."""
        operation = "UpdateModelPackage"
        _check(operation, params)
        with self._transaction(write=True) as conn:
            row = self._package_row(conn, operation, params["ModelPackageArn"])
            request = json.loads(row["request"])
            for key in ("ModelApprovalStatus", "ApprovalDescription"):
                if key in params:
                    request[key] = params[key]
            metadata = {
                **request.get("CustomerMetadataProperties", {}),
                **params.get("CustomerMetadataProperties", {}),
            }
            for key in params.get("CustomerMetadataPropertiesToRemove", []):
                metadata.pop(key, None)
            request["CustomerMetadataProperties"] = metadata
            conn.execute(
                "UPDATE model_packages SET request = ?, modified = ? WHERE arn = ?",
                (json.dumps(request), time.time(), row["arn"]),
            )
        return {"ModelPackageArn": row["arn"]}

    @staticmethod
    def _package_row(conn: sqlite3.Connection, operation: str, name_or_arn: str) -> sqlite3.Row:
        if name_or_arn.startswith("arn:"):
            package_arn = name_or_arn
        else:
            package_arn = arn("sagemaker", f"model-package/{name_or_arn}")
        row = conn.execute("SELECT * FROM model_packages WHERE arn = ?", (package_arn.lower(),)).fetchone()
        if row is None:
            raise _error(operation, f"ModelPackage {package_arn} does not exist.")
        return row

    @staticmethod
    def _package_summary(row: sqlite3.Row, request: dict[str, Any]) -> dict[str, Any]:
        return _drop_none(
            {
                # A versioned package is named after its group.
                "ModelPackageName": request.get("ModelPackageName", request.get("ModelPackageGroupName")),
                "ModelPackageGroupName": row["group_name"],
                "ModelPackageVersion": row["version"],
                "ModelPackageArn": row["arn"],
                "ModelPackageDescription": request.get("ModelPackageDescription"),
                "CreationTime": aws_sdk_time(row["created"]),
                "ModelPackageStatus": "Completed",
                "ModelApprovalStatus": request.get("ModelApprovalStatus"),
            }
        )


# -- aws-sdk:sagemaker ----------------------------------------------------------------------------

_LIST_FILTERS = {"ModelPackageGroupName", "ModelApprovalStatus", "MaxResults"}


# The API operations the local registry answers (``aws-sdk:sagemaker:createModelPackage``, ...).
OPERATIONS = (
    "CreateModelPackageGroup",
    "DescribeModelPackageGroup",
    "ListModelPackageGroups",
    "CreateModelPackage",
    "DescribeModelPackage",
    "ListModelPackages",
    "UpdateModelPackage",
)


def register_registry(
    tasks: TaskRegistry, model_registry: LocalModelRegistry, limits: AccountLimits | None = None
) -> None:
    """Serve ``arn:aws:states:::aws-sdk:sagemaker:<action>`` for the registry's actions; the fault
    rules of ``limits`` may answer a call with a service error instead."""
    account = limits or AccountLimits()

    def served(operation: str, call: Any) -> Any:
        def handler(request: Any) -> Any:
            fault = account.fault(operation, "", request.parameters)
            if fault is not None:
                raise service_error(operation, fault.code, fault.message, aws_sdk=True)
            return call(request.parameters)

        return handler

    def name_lookup(operation: str, field: str, describe: Any) -> Any:
        return lambda params: describe(_check(operation, params)[field])

    def list_packages(params: dict[str, Any]) -> dict[str, Any]:
        operation = "ListModelPackages"
        unsupported = sorted(set(_check(operation, params)) - _LIST_FILTERS)
        if unsupported:
            raise _error(operation, f"the local model registry does not support {', '.join(unsupported)}")
        return model_registry.list_model_packages(
            params.get("ModelPackageGroupName"), params.get("ModelApprovalStatus"), params.get("MaxResults")
        )

    actions = {
        "createModelPackageGroup": model_registry.create_model_package_group,
        "describeModelPackageGroup": name_lookup(
            "DescribeModelPackageGroup", "ModelPackageGroupName", model_registry.describe_model_package_group
        ),
        "listModelPackageGroups": lambda params: model_registry.list_model_package_groups(),
        "createModelPackage": model_registry.create_model_package,
        "describeModelPackage": name_lookup(
            "DescribeModelPackage", "ModelPackageName", model_registry.describe_model_package
        ),
        "listModelPackages": list_packages,
        "updateModelPackage": model_registry.update_model_package,
    }
    for operation in OPERATIONS:
        action = operation[0].lower() + operation[1:]
        tasks.register(f"arn:aws:states:::aws-sdk:sagemaker:{action}", served(operation, actions[action]))
