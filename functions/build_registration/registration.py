"""What the Model Registry records of a run: the statistics document (CV, holdout) and the model package fields."""

from __future__ import annotations

import json
import unicodedata
import uuid

from pydantic import BaseModel, JsonValue, model_validator
from workflow_documents import (
    CandidateResult,
    Config,
    CvScores,
    FinalTraining,
    HoldoutResult,
    MetricScores,
    Registration,
    Tuning,
)

# CreateModelPackage limits.
MAX_DESCRIPTION = 1024
MAX_METADATA_VALUE = 256
MAX_METADATA_KEY = 128
# CustomerMetadataProperties values may hold only letters, numbers, spaces and these.
METADATA_PUNCTUATION = set("_.:/=+-@")
# What the statistics document records of each metric's scores.
SCORES = {"folds", "mean", "std", "stderr"}


class RegistrationEvent(BaseModel):
    config: Config
    tuning: Tuning
    holdout: HoldoutResult | None = None  # null when the run held no rows out
    final: FinalTraining

    @model_validator(mode="after")
    def _a_best_candidate(self) -> RegistrationEvent:
        self.best  # noqa: B018  # raises when there is none
        return self

    @property
    def best(self) -> tuple[CandidateResult, CvScores]:
        """The chosen candidate and its scores."""
        best = self.tuning.best
        if best is None or best.cv is None:
            raise ValueError("tuning.best: no completed candidate to register")
        return best, best.cv

    @property
    def holdout_score(self) -> float | None:
        return self.holdout.score[0] if self.holdout and self.holdout.score else None


def build_registration(event: RegistrationEvent) -> Registration:
    """The statistics document, where it goes, and the CreateModelPackage fields drawn from the run."""
    config, final, holdout = event.config, event.final, event.holdout_score
    best, cv = event.best
    resolved = config.dataset_info or config.cv  # the split job's k and splitter, else the requested ones
    metric = config.resolved_metric
    if metric == "auto":
        raise ValueError('metric is "auto" but config.dataset_info, the split job\'s summary, is missing')
    holdout_rows = config.dataset_info.holdout_rows if config.dataset_info else None
    if holdout is not None and holdout_rows is None:
        raise ValueError(
            "a holdout score but config.dataset_info, the split job's summary of the holdout, is missing"
        )
    bucket, _, run_key = config.run.prefix.removeprefix("s3://").partition("/")
    key = f"{run_key}/registry/statistics.json"
    every = cv.metrics or {metric: MetricScores(folds=cv.folds, mean=cv.mean, std=cv.std, stderr=cv.stderr)}
    statistics: dict[str, JsonValue] = {
        "version": 0.0,
        # Model Monitor's shape, one entry per metric: the refit metric's first.
        metric: {"value": cv.mean, "standard_deviation": cv.std},
        **{name: {"value": scores.mean, "standard_deviation": scores.std} for name, scores in every.items()},
        "cross_validation": {
            "k": resolved.k,
            "splitter": resolved.splitter,
            "refit": metric,
            "folds": [{"fold": fold, "value": score} for fold, score in enumerate(cv.folds)],
            "metrics": {name: scores.model_dump(include=SCORES) for name, scores in every.items()},
            "candidate": best.id,
            "params": best.params,
        },
    }
    on_holdout = ""
    if holdout is not None:
        statistics["holdout"] = {"value": holdout, "rows": holdout_rows}
        on_holdout = f", {holdout:.4f} on {holdout_rows} holdout rows"
    description = (
        f"{config.model.estimator}: {metric} {cv.mean:.4f} ± {cv.std:.4f} in {resolved.k}-fold "
        f"cross-validation ({resolved.splitter}){on_holdout}; final training job {final.job}"
    )
    metadata = {
        "execution": config.run.execution,
        "estimator": config.model.estimator,
        "metric": metric,
        "cv_mean": repr(cv.mean),
        "cv_std": repr(cv.std),
        "cv_folds": " ".join(f"{score:.6g}" for score in cv.folds),
        "k": str(resolved.k),
        "splitter": resolved.splitter,
        "params": " ".join(f"{name}={_text(value)}" for name, value in sorted(best.params.items())),
        "training_job": final.job,
        # Each other metric as mean and std (the refit one is cv_mean and cv_std above).
        **{
            f"cv_{name}"[:MAX_METADATA_KEY]: f"mean={scores.mean!r} std={scores.std!r}"
            for name, scores in every.items()
            if name != metric
        },
    }
    if holdout is not None:
        metadata["holdout_score"] = repr(holdout)
    return Registration(
        statistics=statistics,
        statistics_bucket=bucket,
        statistics_key=key,
        statistics_uri=f"s3://{bucket}/{key}",
        description=_truncate(description, MAX_DESCRIPTION),
        metadata=customer_metadata(metadata),
        # One per execution, the same in its retries and redrives (same name and start time): a repeated
        # CreateModelPackage returns the first one's package. A later execution reusing the name gets its own.
        client_token=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{config.run.prefix}#{config.run.id}")),
    )


def customer_metadata(properties: dict[str, str]) -> dict[str, str]:
    """``properties`` as CustomerMetadataProperties takes them: characters it refuses become spaces, long
    values are cut with "...", and empty ones are left out (it needs at least one character)."""
    cleaned = {key: _truncate(_metadata_text(value), MAX_METADATA_VALUE) for key, value in properties.items()}
    return {key: value for key, value in cleaned.items() if value}


def _metadata_text(text: str) -> str:
    allowed = (
        char if unicodedata.category(char)[0] in "LNZ" or char in METADATA_PUNCTUATION else " "
        for char in text
    )
    return " ".join("".join(allowed).split())


def _text(value: JsonValue) -> str:
    """A param value as it reads best in metadata: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
