"""Cross-validation scores of a round's candidates, folded into the tuning history."""

from __future__ import annotations

import json
import math
import statistics
from typing import Annotated, Any

from map_results import ResultLocation
from pydantic import BaseModel, Field, model_validator
from workflow_documents import (
    Candidate,
    CandidateResult,
    CompletedFold,
    Config,
    CvScores,
    DatasetInfo,
    FailedFold,
    Failure,
    FoldResult,
    MetricScores,
    Tuning,
)

VALIDATION_SCORE = "validation:score"
TRAIN_SCORE = "train:score"
FIT_TIME = "fit_time"
SCORE_TIME = "score_time"
# Errors and causes are trimmed so that the history of a search of 100 candidates x 5 folds, every
# fold failed, fits the state machine's payload (workflow_documents/budgets.py): a failed candidate
# keeps the start of its first failure's cause, and the error of the others. Each fold's whole
# FailureReason is in its candidate's child execution history.
MAX_TEXT = 512


class AggregateEvent(BaseModel):
    """The function's event: the round's candidates and where the evaluation wrote their results."""

    config: Config
    tuning: Tuning | None = None
    candidates: list[Candidate]
    results: ResultLocation


class RoundResults(BaseModel):
    """A round's candidates with their fold results, as ``aggregate`` takes them."""

    config: Config
    tuning: Tuning | None = None
    candidates: list[Candidate]
    # evaluations[i]: the fold results of candidates[i]
    evaluations: list[Annotated[list[FoldResult], Field(min_length=1)]]

    @model_validator(mode="after")
    def _one_evaluation_per_candidate(self) -> RoundResults:
        if len(self.evaluations) != len(self.candidates):
            raise ValueError(f"{len(self.candidates)} candidates but {len(self.evaluations)} evaluations")
        return self


def aggregate(event: RoundResults) -> Tuning:
    """The tuning state after this round: history, best candidate so far, and whether to stop."""
    previous = event.tuning.history if event.tuning else []
    info = event.config.dataset_info
    history = previous + [
        evaluate(c, folds, info) for c, folds in zip(event.candidates, event.evaluations, strict=False)
    ]
    completed = [entry for entry in history if entry.status == "Completed"]
    spec = event.config.tuning
    return Tuning(
        round=(event.tuning.round if event.tuning else 0) + 1,
        history=history,
        best=max(completed, key=lambda entry: (cv_mean(entry), -entry.id), default=None),
        evaluated=len(history),
        failed=len(history) - len(completed),
        # A round short of batch_size means the search space ran out.
        done=len(history) >= spec.max_candidates or len(event.candidates) < spec.batch_size,
    )


def evaluate(
    candidate: Candidate, folds: list[CompletedFold | FailedFold], info: DatasetInfo | None = None
) -> CandidateResult:
    """One candidate's CV scores; any failed fold fails it, as partial scores are not comparable."""
    folds = sorted(folds, key=lambda result: result.fold)
    failures = [failure for result in folds if (failure := fold_failure(result))]
    for failure in failures[1:]:
        failure.cause = ""
    if failures:
        return CandidateResult(**candidate.model_dump(), status="Failed", cv=None, failures=failures)
    completed = [result for result in folds if isinstance(result, CompletedFold)]  # all of them
    metrics = [{metric.MetricName: metric.Value for metric in result.metrics} for result in completed]
    refit = metric_scores(metrics, VALIDATION_SCORE, TRAIN_SCORE)
    fit_times, score_times = _all_of(FIT_TIME, metrics), _all_of(SCORE_TIME, metrics)
    cv = CvScores(
        mean=refit.mean,
        std=refit.std,
        folds=refit.folds,
        stderr=refit.stderr,
        train_mean=refit.train_mean,
        fit_time_mean=fit_times and statistics.fmean(fit_times),
        fit_time_std=fit_times and statistics.pstdev(fit_times),
        score_time_mean=score_times and statistics.fmean(score_times),
        score_time_std=score_times and statistics.pstdev(score_times),
        metrics=_every_metric(metrics, info),
    )
    return CandidateResult(**candidate.model_dump(), status="Completed", cv=cv, failures=[])


def cv_mean(entry: CandidateResult) -> float:
    """The candidate's mean CV score; -inf for a failed one."""
    return entry.cv.mean if entry.cv else -math.inf


def _every_metric(metrics: list[dict[str, float]], info: DatasetInfo | None) -> dict[str, MetricScores]:
    """Each of the split's metrics by name: the refit one is reported as validation:score, the i-th
    other as validation:metric<i>; a metric some fold lacks is left out rather than half reported."""
    if info is None:
        return {}
    scores = {}
    for index, name in enumerate(info.metrics or [info.metric]):
        test, train = (
            (VALIDATION_SCORE, TRAIN_SCORE)
            if name == info.metric
            else (f"validation:metric{index}", f"train:metric{index}")
        )
        if all(test in fold for fold in metrics):
            scores[name] = metric_scores(metrics, test, train)
    return scores


def metric_scores(metrics: list[dict[str, float]], test: str, train: str) -> MetricScores:
    folds = [fold[test] for fold in metrics]
    train_folds = _all_of(train, metrics)
    return MetricScores(
        folds=folds,
        mean=statistics.fmean(folds),
        std=statistics.pstdev(folds),
        stderr=statistics.stdev(folds) / math.sqrt(len(folds)) if len(folds) > 1 else 0.0,
        train_folds=train_folds,
        train_mean=train_folds and statistics.fmean(train_folds),
        train_std=train_folds and statistics.pstdev(train_folds),
    )


def _all_of(name: str, metrics: list[dict[str, float]]) -> list[float] | None:
    """A value every fold reported, per fold, else None (a partial mean would mislead)."""
    values = [fold.get(name) for fold in metrics]
    return None if None in values else [value for value in values if value is not None]


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


def _reason(cause: str) -> str:
    # A failed .sync task's cause is the job's whole Describe response; its FailureReason is what matters.
    try:
        described: Any = json.loads(cause)
    except ValueError:
        return cause
    return str(described.get("FailureReason", cause)) if isinstance(described, dict) else cause


def _trim(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
