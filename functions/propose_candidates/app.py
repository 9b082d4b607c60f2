"""Propose the next round of hyperparameter candidates, or none when the search is over."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from search_space import HyperparameterLimitError, ProposeEvent, propose

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_parser(model=ProposeEvent)
def lambda_handler(event: ProposeEvent, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(execution=event.config.run.execution)
    try:
        proposal = propose(event)
    except HyperparameterLimitError as error:
        metrics.add_metric(name="InvalidCandidates", unit=MetricUnit.Count, value=1)
        logger.warning("Candidates exceed SageMaker's hyperparameter limits", extra={"problem": str(error)})
        raise
    metrics.add_metric(name="CandidatesProposed", unit=MetricUnit.Count, value=len(proposal.candidates))
    logger.info(
        "Candidates proposed",
        extra={"round": proposal.round, "ids": [candidate.id for candidate in proposal.candidates]},
    )
    return proposal.model_dump(mode="json")
