"""One declaration of each document the cross-validation workflow passes between its states.

Every Lambda function gets this package from a layer (template.yaml ``WorkflowDocumentsLayer``: in Lambda
it is under /opt/python) and validates what it receives against these models; ``schemas`` publishes
them as JSON Schemas in schemas/. The package needs nothing but pydantic.
"""

from .config import NO_BASELINE, Config, DatasetInfo, Document, Run
from .execution_input import ExecutionInput
from .tuning import (
    Candidate,
    CandidateResult,
    CompletedFold,
    CvScores,
    FailedFold,
    Failure,
    FinalTraining,
    FoldResult,
    HoldoutResult,
    Metric,
    MetricScores,
    Proposal,
    Registration,
    Tuning,
    fold_result,
)

__all__ = [
    "NO_BASELINE",
    "Candidate",
    "CandidateResult",
    "CompletedFold",
    "Config",
    "CvScores",
    "DatasetInfo",
    "Document",
    "ExecutionInput",
    "FailedFold",
    "Failure",
    "FinalTraining",
    "FoldResult",
    "HoldoutResult",
    "Metric",
    "MetricScores",
    "Proposal",
    "Registration",
    "Run",
    "Tuning",
    "fold_result",
]
