"""Turn an S3 upload into one execution of the pipeline: its input and its idempotent name.

S3 delivers events at least once, so the same upload can arrive twice. The execution name is derived
from the object (bucket, key, and its version id or ETag): a second event for the same object asks for
the same name, which Step Functions refuses (``ExecutionAlreadyExists``) or answers with the running
execution, and either way exactly one execution runs. A new version of the object is a new run.

The rest of the input comes from a sidecar, ``KEY.json`` uploaded beside the data before it (the
execution input without ``dataset.uri``, which the upload sets); without one, the defaults apply.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from allowlist import allowed_packages
from execution_input import InvalidInputError, validate

# The stack's AllowedPackages, as PrepareInput reads them: an upload is refused as the run would be.
ALLOWED_PACKAGES = allowed_packages(os.environ)

SIDECAR_SUFFIX = ".json"
# Step Functions allows up to 80 characters; these are the ones every AWS console, log and ARN takes.
NAME_LIMIT = 80
UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]+")
HASH_LENGTH = 20  # 80 bits: no two objects share a name in practice
# A sidecar is a small JSON document; anything larger is a mistake (a dataset named *.json).
SIDECAR_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Upload:
    """One created object, as the S3 event names it."""

    bucket: str
    key: str
    version_id: str | None
    etag: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def sidecar_key(self) -> str:
        return self.key + SIDECAR_SUFFIX


class RefusedUpload(Exception):
    """The upload cannot start a run; ``problems`` names each bad field or file and what to do."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def ignored_because(upload: Upload) -> str | None:
    """Why this object starts no run (a sidecar, a folder marker), or None when it is data."""
    if upload.key.endswith("/"):
        return "a folder marker, not a dataset"
    if upload.key.endswith(SIDECAR_SUFFIX):
        return f"a sidecar ({SIDECAR_SUFFIX}): it configures the run of the object it is named after"
    return None


def execution_name(upload: Upload) -> str:
    """``s3-<readable file name>-<hash of bucket, key and version>``: at most 80 safe characters, the
    same for every event about the same object version."""
    identity = "\0".join((upload.bucket, upload.key, upload.version_id or upload.etag.strip('"')))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:HASH_LENGTH]
    stem = UNSAFE_NAME_CHARACTERS.sub("-", upload.key.rsplit("/", 1)[-1]).strip("-_")
    room = NAME_LIMIT - len("s3--") - HASH_LENGTH
    return f"s3-{stem[:room]}-{digest}" if stem else f"s3-{digest}"


def parse_sidecar(upload: Upload, body: bytes | None) -> dict[str, Any]:
    """The sidecar's settings (empty without one); refused when it is not a JSON object."""
    if body is None:
        return {}
    where = f"s3://{upload.bucket}/{upload.sidecar_key}"
    if len(body) > SIDECAR_LIMIT:
        raise RefusedUpload([f"{where}: {len(body)} bytes, more than a sidecar's {SIDECAR_LIMIT}"])
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RefusedUpload(
            [f"{where}: not valid JSON ({error}): fix it and upload the data again"]
        ) from None
    if not isinstance(document, dict):
        raise RefusedUpload([f"{where}: must hold a JSON object, the execution input without dataset.uri"])
    return document


def build_input(upload: Upload, sidecar: dict[str, Any]) -> dict[str, Any]:
    """The execution input: the sidecar with ``dataset.uri`` set to the upload, validated as PrepareInput
    validates it, so that a bad sidecar is refused before any execution starts."""
    dataset = sidecar.get("dataset", {})
    where = f"s3://{upload.bucket}/{upload.sidecar_key}"
    if isinstance(dataset, dict) and "uri" in dataset and dataset["uri"] != upload.uri:
        raise RefusedUpload(
            [f"{where}: dataset.uri: set by the upload ({upload.uri}); remove it from the sidecar"]
        )
    document = {
        **sidecar,
        "dataset": {**dataset, "uri": upload.uri} if isinstance(dataset, dict) else dataset,
    }
    try:
        validate(document, ALLOWED_PACKAGES)
    except InvalidInputError as error:
        hint = "" if sidecar else f" (no sidecar found: upload {where} before the data)"
        raise RefusedUpload([f"{where}: {problem}{hint}" for problem in error.problems]) from None
    return document


@dataclass(frozen=True)
class Started:
    execution_arn: str
    duplicate: bool
    """True when an earlier event for the same object had already started it."""


def start(stepfunctions: Any, state_machine_arn: str, name: str, document: dict[str, Any]) -> Started:
    """StartExecution, idempotent: an execution already started under this name counts as success."""
    try:
        response = stepfunctions.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(document)
        )
    except stepfunctions.exceptions.ExecutionAlreadyExists:
        return Started(execution_arn(state_machine_arn, name), duplicate=True)
    return Started(response["executionArn"], duplicate=False)


def execution_arn(state_machine_arn: str, name: str) -> str:
    """``arn:...:stateMachine:MACHINE`` -> ``arn:...:execution:MACHINE:NAME``."""
    prefix, _, machine = state_machine_arn.rpartition(":stateMachine:")
    return f"{prefix}:execution:{machine}:{name}"
