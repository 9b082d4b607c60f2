"""Cross-validation scores of a round's candidates, folded into the tuning history."""

from __future__ import annotations

import json
import math
import statistics
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, JsonValue, model_validator

VALIDATION_SCORE = "validation:score"
TRAIN_SCORE = "train:score"
FIT_TIME = "fit_time"
MAX_TEXT = 1024  # errors and causes are trimmed so the history fits the state machine's payload


class Metric(BaseModel):
    MetricName: str
    Value: float


class CompletedFold(BaseModel):
    fold: int
    job: str
    status: Literal["Completed"]
    metrics: list[Metric]  # the training job's FinalMetricDataList


class FailedFold(BaseModel):
    fold: int
    job: str
    status: Literal["Failed"]
    error: str = ""
    cause: str = ""


FoldResult = Annotated[CompletedFold | FailedFold, Field(discriminator="status")]


class Candidate(BaseModel):
    id: int
    params: dict[str, JsonValue]
    hyperparameters: dict[str, str]


class CvScores(BaseModel):
    mean: float
    std: float  # population std (ddof=0), as scikit-learn's cv_results_ std_test_score
    folds: list[float]
    train_mean: float | None
    fit_time_mean: float | None


class Failure(BaseModel):
    fold: int
    job: str
    error: str
    cause: str


class HistoryEntry(Candidate):
    status: Literal["Completed", "Failed"]
    cv: CvScores | None
    failures: list[Failure]


class Tuning(BaseModel):
    round: int
    history: list[HistoryEntry]
    best: HistoryEntry | None
    evaluated: int
    failed: int
    done: bool


class TuningSpec(BaseModel):
    max_candidates: int
    batch_size: int


class Run(BaseModel):
    execution: str


class Config(BaseModel):
    """The parts of the normalised config this function reads."""

    tuning: TuningSpec
    run: Run


class AggregateEvent(BaseModel):
    config: Config
    tuning: Tuning | None = None
    candidates: list[Candidate]
    evaluations: list[
        Annotated[list[FoldResult], Field(min_length=1)]
    ]  # evaluations[i]: folds of candidates[i]

    @model_validator(mode="after")
    def _one_evaluation_per_candidate(self) -> AggregateEvent:
        if len(self.evaluations) != len(self.candidates):
            raise ValueError(f"{len(self.candidates)} candidates but {len(self.evaluations)} evaluations")
        return self


def aggregate(event: AggregateEvent) -> Tuning:
    """The tuning state after this round: history, best candidate so far, and whether to stop."""
    previous = event.tuning.history if event.tuning else []
    history = previous + [
        evaluate(c, folds) for c, folds in zip(event.candidates, event.evaluations, strict=False)
    ]
    completed = [entry for entry in history if entry.status == "Completed"]
    spec = event.config.tuning
    return Tuning(
        round=(event.tuning.round if event.tuning else 0) + 1,
        history=history,
        best=max(completed, key=lambda entry: (entry.cv.mean, -entry.id), default=None),
        evaluated=len(history),
        failed=len(history) - len(completed),
        # A round short of batch_size means the search space ran out.
        done=len(history) >= spec.max_candidates or len(event.candidates) < spec.batch_size,
    )


def evaluate(candidate: Candidate, folds: list[CompletedFold | FailedFold]) -> HistoryEntry:
    """One candidate's CV scores; any failed fold fails it, as partial scores are not comparable."""
    folds = sorted(folds, key=lambda result: result.fold)
    failures = [failure for result in folds if (failure := fold_failure(result))]
    if failures:
        return HistoryEntry(**candidate.model_dump(), status="Failed", cv=None, failures=failures)
    metrics = [{metric.MetricName: metric.Value for metric in result.metrics} for result in folds]
    scores = [fold[VALIDATION_SCORE] for fold in metrics]
    cv = CvScores(
        mean=statistics.fmean(scores),
        std=statistics.pstdev(scores),
        folds=scores,
        train_mean=_mean_of(TRAIN_SCORE, metrics),
        fit_time_mean=_mean_of(FIT_TIME, metrics),
    )
    return HistoryEntry(**candidate.model_dump(), status="Completed", cv=cv, failures=[])


def fold_failure(result: CompletedFold | FailedFold) -> Failure | None:
    """Why a fold cannot be scored, or None when it has a finite validation score."""
    if isinstance(result, FailedFold):
        return Failure(
            fold=result.fold, job=result.job, error=_trim(result.error), cause=_trim(_reason(result.cause))
        )
    score = next((metric.Value for metric in result.metrics if metric.MetricName == VALIDATION_SCORE), None)
    if score is not None and math.isfinite(score):
        return None
    return Failure(
        fold=result.fold,
        job=result.job,
        error="MissingValidationScore",
        cause=f"the job reported no finite {VALIDATION_SCORE} (got {score}); check that it prints "
        f"'{VALIDATION_SCORE}=<float>' to its log",
    )


def _mean_of(name: str, metrics: list[dict[str, float]]) -> float | None:
    """Mean of a metric every fold reported, else None (a partial mean would mislead)."""
    values = [fold.get(name) for fold in metrics]
    return None if None in values else statistics.fmean(values)


def _reason(cause: str) -> str:
    # A failed .sync task's cause is the job's whole Describe response; its FailureReason is what matters.
    try:
        described: Any = json.loads(cause)
    except ValueError:
        return cause
    return str(described.get("FailureReason", cause)) if isinstance(described, dict) else cause


def _trim(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."
