"""Executions of the deployed state machine: start one, follow its history, read how it ended."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..asl.history import Event, details_key
from ..errors import UserError
from .clients import Aws, aws_errors, error_code

# Where `cvpipe start` uploads a local dataset: outside the S3 trigger's prefix, so it starts nothing.
STAGING_PREFIX = "datasets"
HISTORY_PAGE = 1000  # GetExecutionHistory's largest page
POLL_SECONDS = 5.0


def dataset_file(execution_input: dict[str, Any]) -> tuple[Path, str] | None:
    """The input's local dataset file and the key it is staged under in the stack's bucket, named by its
    content (an unchanged file is uploaded once); None for an s3:// URI, or no dataset.uri at all."""
    dataset = execution_input.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("uri"), str):
        return None  # absent or malformed: PrepareInput names the field
    uri = dataset["uri"]
    if uri.startswith("s3://"):
        return None
    path = Path(uri).expanduser()
    if not path.is_file():
        raise UserError(f"dataset.uri {uri}: no such file (give a CSV file or an s3:// URI)")
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as error:
        raise UserError(f"dataset.uri {uri}: cannot read it ({error.strerror or error})") from None
    return path, f"{STAGING_PREFIX}/{digest}/{path.name}"


def with_dataset_uri(execution_input: dict[str, Any], uri: str) -> dict[str, Any]:
    return {**execution_input, "dataset": {**execution_input["dataset"], "uri": uri}}


def stage_dataset(aws: Aws, bucket: str, execution_input: dict[str, Any]) -> dict[str, Any]:
    """A local dataset file uploaded to the stack's bucket, and the input pointed at it; s3:// URIs are
    left as they are."""
    found = dataset_file(execution_input)
    if found is None:
        return execution_input
    path, key = found
    s3 = aws.client("s3")
    with aws_errors():
        s3.upload_file(str(path), bucket, key)
    return with_dataset_uri(execution_input, f"s3://{bucket}/{key}")


def start_execution(aws: Aws, state_machine_arn: str, name: str, execution_input: dict[str, Any]) -> str:
    """StartExecution; the new execution's ARN."""
    stepfunctions = aws.client("stepfunctions")
    from botocore.exceptions import ClientError

    with aws_errors():
        try:
            response = stepfunctions.start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input)
            )
        except ClientError as error:
            if error_code(error) == "ExecutionAlreadyExists":
                raise UserError(f"execution name {name!r} is taken: choose another --name") from None
            raise
    return str(response["executionArn"])


def redrive_execution(aws: Aws, execution_arn: str) -> str:
    """RedriveExecution: a failed, aborted or timed-out execution continues from its unsuccessful
    states, keeping what succeeded (the fold jobs that completed are not run again); its ARN stays."""
    stepfunctions = aws.client("stepfunctions")
    from botocore.exceptions import ClientError

    with aws_errors():
        try:
            stepfunctions.redrive_execution(executionArn=execution_arn)
        except ClientError as error:
            code = error_code(error)
            if code in ("ExecutionNotRedrivable", "ExecutionDoesNotExist"):
                message = error.response.get("Error", {}).get("Message") or code
                raise UserError(
                    f"execution {execution_arn} cannot be redriven ({code}: {message}); only a failed, "
                    "aborted or timed-out execution of the last 14 days can"
                ) from None
            raise
    return execution_arn


def event_from_aws(event: dict[str, Any]) -> Event:
    """A GetExecutionHistory event as the local engine's ``Event``: the same type and details."""
    return Event(
        id=event["id"],
        type=event["type"],
        timestamp=event["timestamp"],
        previous_event_id=event.get("previousEventId", 0),
        details=event.get(details_key(event["type"]), {}),
    )


def follow_history(
    aws: Aws,
    execution_arn: str,
    poll_seconds: float = POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Event]:
    """Every event of the execution, in order, as it happens, until the execution has ended.

    Each poll reads on from the page where the last one stopped (GetExecutionHistory's next token),
    so a long run costs one page per poll, not its whole history.
    """
    stepfunctions = aws.client("stepfunctions")
    last_id = 0
    page_token: str | None = None  # the token of the page holding the newest event seen
    while True:
        with aws_errors():
            # Read the status first: when it says ended, the history read after it is complete.
            status = stepfunctions.describe_execution(executionArn=execution_arn)["status"]
            token = page_token
            while True:
                request = {"executionArn": execution_arn, "maxResults": HISTORY_PAGE}
                if token:
                    request["nextToken"] = token
                page = stepfunctions.get_execution_history(**request)
                for event in page["events"]:
                    if event["id"] > last_id:
                        last_id = event["id"]
                        yield event_from_aws(event)
                if not page.get("nextToken"):
                    break
                page_token = token = page["nextToken"]
        if status != "RUNNING":
            return
        sleep(poll_seconds)


@dataclass(frozen=True)
class Ending:
    name: str
    status: str
    output: Any
    error: str | None
    cause: str | None


def describe_ending(aws: Aws, execution_arn: str) -> Ending:
    with aws_errors():
        execution = aws.client("stepfunctions").describe_execution(executionArn=execution_arn)
    output = execution.get("output")
    return Ending(
        name=execution["name"],
        status=execution["status"],
        output=json.loads(output) if output else None,
        error=execution.get("error"),
        cause=execution.get("cause"),
    )
