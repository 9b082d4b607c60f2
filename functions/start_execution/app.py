"""Start a pipeline execution for an object uploaded under the trigger prefix (S3 -> EventBridge)."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from starter import RefusedUpload, Upload, build_input, execution_name, ignored_because, parse_sidecar, start

logger = Logger()
tracer = Tracer()
metrics = Metrics()
s3 = boto3.client("s3")
stepfunctions = boto3.client("stepfunctions")


@tracer.capture_method
def read_sidecar(upload: Upload) -> bytes | None:
    try:
        return s3.get_object(Bucket=upload.bucket, Key=upload.sidecar_key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_parser(model=S3EventNotificationEventBridgeModel)
def lambda_handler(event: S3EventNotificationEventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    detail = event.detail
    # The key as stored, not URL-encoded: EventBridge's "Object Created" detail differs here from S3's
    # classic notifications (Records[].s3.object.key, URL-encoded with '+' for a space); see the event
    # structure in https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html, whose samples
    # carry keys with raw ':' characters.
    upload = Upload(detail.bucket.name, detail.object.key, detail.object.version_id, detail.object.etag)
    logger.append_keys(object=upload.uri)
    reason = ignored_because(upload)
    if reason:
        logger.info("Upload ignored", extra={"reason": reason})
        return {"status": "ignored", "reason": reason}
    name = execution_name(upload)
    try:
        document = build_input(upload, parse_sidecar(upload, read_sidecar(upload)))
    except RefusedUpload as refused:
        # Retrying cannot fix the input: report it and end (no dead letter, no execution).
        metrics.add_metric(name="RefusedUploads", unit=MetricUnit.Count, value=1)
        logger.error("Upload refused: no execution started", extra={"problems": refused.problems})
        return {"status": "refused", "execution_name": name, "problems": refused.problems}
    started = start(stepfunctions, os.environ["STATE_MACHINE_ARN"], name, document)
    if started.duplicate:
        metrics.add_metric(name="DuplicateUploadEvents", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="ExecutionsStarted", unit=MetricUnit.Count, value=1)
    logger.info(
        "Execution started" if not started.duplicate else "Execution already started for this object",
        extra={"execution_arn": started.execution_arn},
    )
    return {
        "status": "duplicate" if started.duplicate else "started",
        "execution_name": name,
        "execution_arn": started.execution_arn,
    }
