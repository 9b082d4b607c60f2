"""Aggregate a round's fold scores into the tuning history and decide whether to propose more."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from fold_scores import AggregateEvent, RoundResults, aggregate, cv_mean
from map_results import fold_results

logger = Logger()
tracer = Tracer()
metrics = Metrics()
s3 = boto3.client("s3")


def read_object(bucket: str, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_parser(model=AggregateEvent)
def lambda_handler(event: AggregateEvent, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(execution=event.config.run.execution)
    evaluations = fold_results([candidate.id for candidate in event.candidates], event.results, read_object)
    round_results = RoundResults(
        config=event.config, tuning=event.tuning, candidates=event.candidates, evaluations=evaluations
    )
    tuning = aggregate(round_results)
    this_round = tuning.history[len(tuning.history) - len(event.candidates) :]
    metrics.add_metric(name="CandidatesEvaluated", unit=MetricUnit.Count, value=len(this_round))
    metrics.add_metric(
        name="FoldFailures", unit=MetricUnit.Count, value=sum(len(entry.failures) for entry in this_round)
    )
    if tuning.best:
        metrics.add_metric(name="BestScore", unit=MetricUnit.NoUnit, value=cv_mean(tuning.best))
    logger.info(
        "Round aggregated",
        extra={
            "round": tuning.round,
            "evaluated": tuning.evaluated,
            "failed": tuning.failed,
            "best": tuning.best and {"id": tuning.best.id, "cv_mean": cv_mean(tuning.best)},
            "done": tuning.done,
        },
    )
    return tuning.model_dump(mode="json")
