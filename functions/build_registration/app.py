"""Build the Model Registry request of a run: CV statistics document and model package fields."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from registration import RegistrationEvent, build_registration

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_parser(model=RegistrationEvent)
def lambda_handler(event: RegistrationEvent, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(execution=event.config.run.execution)
    registration = build_registration(event)
    best, cv = event.best
    metrics.add_metric(name="RegisteredScore", unit=MetricUnit.NoUnit, value=cv.mean)
    if event.holdout_score is not None:
        metrics.add_metric(name="HoldoutScore", unit=MetricUnit.NoUnit, value=event.holdout_score)
    logger.info(
        "Registration built",
        extra={
            "statistics_uri": registration.statistics_uri,
            "candidate": best.id,
            "holdout_score": event.holdout_score,
        },
    )
    return registration.model_dump(mode="json")
