"""Validate the execution input and normalise it into the config every later state reads."""

from __future__ import annotations

import os
from typing import Any

from allowlist import allowed_packages
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from execution_input import InvalidInputError, normalise
from pydantic import BaseModel, Field
from workflow_documents.execution_input import DEFAULT_MAX_PARALLEL_JOBS

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# The stack's AllowedPackages parameter; a malformed value fails every invocation, naming the setting.
ALLOWED_PACKAGES = allowed_packages(os.environ)


class PrepareInputEvent(BaseModel):
    # The execution input is validated by ``normalise``, which names every bad field.
    input: Any = None
    execution: str = Field(min_length=1, max_length=80)
    started: str = ""  # $$.Execution.StartTime
    # The stack's MaxParallelJobs (a definition substitution, so it arrives as text).
    max_parallel_jobs: int = Field(DEFAULT_MAX_PARALLEL_JOBS, ge=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_parser(model=PrepareInputEvent)
def lambda_handler(event: PrepareInputEvent, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(execution=event.execution)
    try:
        config = normalise(
            event.input,
            execution=event.execution,
            bucket=os.environ["ARTIFACT_BUCKET"],
            started=event.started,
            allowed_packages=ALLOWED_PACKAGES,
            max_parallel_jobs=event.max_parallel_jobs,
        )
    except InvalidInputError as error:
        metrics.add_metric(name="InvalidInputs", unit=MetricUnit.Count, value=1)
        logger.warning("Invalid execution input", extra={"problems": error.problems})
        raise
    metrics.add_metric(name="ExecutionsPrepared", unit=MetricUnit.Count, value=1)
    logger.info("Execution input normalised", extra={"run": config["run"]})
    return config
