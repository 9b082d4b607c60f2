"""The documents of the tuning loop and of registration: proposals, fold and candidate results, the
tuning state, and the results of the holdout, final fit and registration steps."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, JsonValue, TypeAdapter

from .config import Document


class Candidate(Document):
    id: int = Field(ge=0, description="position in the search's fixed sequence of candidates")
    params: dict[str, JsonValue] = Field(description="the estimator's parameters: fixed and searched")
    hyperparameters: dict[str, str] = Field(description="the training jobs' HyperParameters")


class Proposal(Document):
    """ProposeCandidates' result: an empty list ends the search."""

    round: int = Field(ge=1)
    candidates: list[Candidate]


class Metric(Document):
    """An entry of a training job's FinalMetricDataList, as SageMaker describes it."""

    model_config = ConfigDict(extra="ignore")  # SageMaker's shape, not ours: its other fields are not read

    MetricName: str
    Value: float


class CompletedFold(Document):
    fold: int
    job: str
    status: Literal["Completed"]
    metrics: list[Metric] = Field(description="the training job's FinalMetricDataList")


class FailedFold(Document):
    fold: int
    job: str = Field(description="empty when the job could not be started")
    status: Literal["Failed"]
    error: str = ""
    cause: str = ""


FoldResult = Annotated[CompletedFold | FailedFold, Field(discriminator="status")]
fold_result = TypeAdapter(FoldResult)


class MetricScores(Document):
    """One metric's test scores per fold (and training scores when the folds report them)."""

    folds: list[float] = Field(description="the metric's validation score of each fold, in fold order")
    mean: float
    std: float = Field(description="population std (ddof=0), as scikit-learn's cv_results_ std_test_score")
    stderr: float = Field(
        description="standard error of the mean: sample std (ddof=1) / sqrt(folds); 0 for one fold"
    )
    train_folds: list[float] | None = None
    train_mean: float | None = None
    train_std: float | None = None


class CvScores(Document):
    """The refit metric's scores (mean, std, folds...), every metric's in ``metrics``, and the times."""

    mean: float
    std: float = Field(description="population std (ddof=0), as scikit-learn's cv_results_ std_test_score")
    folds: list[float] = Field(description="the validation score of each fold, in fold order")
    train_mean: float | None = Field(description="mean training score; null unless every fold reported one")
    fit_time_mean: float | None = Field(description="mean fit seconds; null unless every fold reported one")
    stderr: float = Field(0.0, description="standard error of the mean: sample std (ddof=1) / sqrt(folds)")
    fit_time_std: float | None = None
    score_time_mean: float | None = None
    score_time_std: float | None = None
    metrics: dict[str, MetricScores] = Field(
        default_factory=dict, description="every metric of the split job's by name, the refit one included"
    )


class Failure(Document):
    fold: int
    job: str
    error: str
    cause: str


class CandidateResult(Candidate):
    """A candidate with its cross-validation scores, or why it has none (any failed fold fails it)."""

    status: Literal["Completed", "Failed"]
    cv: CvScores | None
    failures: list[Failure]


class Tuning(Document):
    """The tuning state after a round: AggregateScores' result."""

    round: int = Field(ge=1)
    history: list[CandidateResult] = Field(description="every candidate evaluated so far, in proposal order")
    best: CandidateResult | None = Field(description="the completed candidate with the highest CV mean")
    evaluated: int = Field(ge=0)
    failed: int = Field(ge=0)
    done: bool


class HoldoutResult(Document):
    """The job that scored the chosen candidate on the holdout rows."""

    job: str
    # The job's FinalMetricDataList values; it declares only validation:score, so that score or none.
    score: list[float] = Field(max_length=1)


class FinalTraining(Document):
    """The job that fitted the chosen candidate on all tuning rows."""

    job: str
    model_data_url: str = Field(description="the model artifact that CreateModelPackage registers")


class Registration(Document):
    """BuildRegistration's result: what PutStatistics and CreateModelPackage take."""

    statistics: dict[str, JsonValue] = Field(description="the model quality document (CV and holdout scores)")
    statistics_bucket: str
    statistics_key: str
    statistics_uri: str
    description: str = Field(max_length=1024)
    metadata: dict[str, str] = Field(description="CustomerMetadataProperties")
    client_token: str = Field(description="stable per execution: a retried registration is not a new version")
