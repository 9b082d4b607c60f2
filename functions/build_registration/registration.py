"""What the Model Registry records of a run: the statistics document (CV, holdout) and the model package fields."""

from __future__ import annotations

import json
import unicodedata
import uuid
from typing import Any

from pydantic import BaseModel, Field, JsonValue

# CreateModelPackage limits.
MAX_DESCRIPTION = 1024
MAX_METADATA_VALUE = 256
# CustomerMetadataProperties values may hold only letters, numbers, spaces and these.
METADATA_PUNCTUATION = set("_.:/=+-@")


class CvScores(BaseModel):
    mean: float
    std: float
    folds: list[float]


class Best(BaseModel):
    id: int
    params: dict[str, JsonValue]
    cv: CvScores


class TuningResult(BaseModel):
    best: Best


class DatasetInfo(BaseModel):
    """The split job's summary, which resolves the auto splitter and metric."""

    metric: str
    splitter: str
    k: int
    holdout_rows: int = 0


class CvSpec(BaseModel):
    splitter: str
    k: int


class ModelSpec(BaseModel):
    estimator: str


class Run(BaseModel):
    execution: str
    prefix: str  # s3://BUCKET/runs/EXECUTION


class Config(BaseModel):
    """The parts of the normalised config this function reads."""

    model: ModelSpec
    cv: CvSpec
    metric: str
    dataset_info: DatasetInfo | None = None
    run: Run


class FinalTraining(BaseModel):
    job: str  # its model_data_url goes to CreateModelPackage straight from the state


class HoldoutResult(BaseModel):
    """The job that scored the chosen candidate on the holdout rows."""

    job: str
    # The job's FinalMetricDataList values; it declares only validation:score, so that score or none.
    score: list[float] = Field(max_length=1)


class RegistrationEvent(BaseModel):
    config: Config
    tuning: TuningResult
    holdout: HoldoutResult | None = None  # null when the run held no rows out
    final: FinalTraining

    @property
    def holdout_score(self) -> float | None:
        return self.holdout.score[0] if self.holdout and self.holdout.score else None


def build_registration(event: RegistrationEvent) -> dict[str, Any]:
    """The statistics document, where it goes, and the CreateModelPackage fields drawn from the run."""
    config, best, final, holdout = event.config, event.tuning.best, event.final, event.holdout_score
    resolved = config.dataset_info or config.cv  # the split job's k and splitter, else the requested ones
    metric = config.dataset_info.metric if config.dataset_info else config.metric
    if metric == "auto":
        raise ValueError('metric is "auto" but config.dataset_info, the split job\'s summary, is missing')
    if holdout is not None and config.dataset_info is None:
        raise ValueError(
            "a holdout score but config.dataset_info, the split job's summary of the holdout, is missing"
        )
    bucket, _, run_key = config.run.prefix.removeprefix("s3://").partition("/")
    key = f"{run_key}/registry/statistics.json"
    statistics = {
        "version": 0.0,
        metric: {"value": best.cv.mean, "standard_deviation": best.cv.std},
        "cross_validation": {
            "k": resolved.k,
            "splitter": resolved.splitter,
            "folds": [{"fold": fold, "value": score} for fold, score in enumerate(best.cv.folds)],
            "candidate": best.id,
            "params": best.params,
        },
    }
    on_holdout = ""
    if holdout is not None:
        rows = config.dataset_info.holdout_rows
        statistics["holdout"] = {"value": holdout, "rows": rows}
        on_holdout = f", {holdout:.4f} on {rows} holdout rows"
    description = (
        f"{config.model.estimator}: {metric} {best.cv.mean:.4f} ± {best.cv.std:.4f} in {resolved.k}-fold "
        f"cross-validation ({resolved.splitter}){on_holdout}; final training job {final.job}"
    )
    metadata = {
        "execution": config.run.execution,
        "estimator": config.model.estimator,
        "metric": metric,
        "cv_mean": repr(best.cv.mean),
        "cv_std": repr(best.cv.std),
        "cv_folds": " ".join(f"{score:.6g}" for score in best.cv.folds),
        "k": str(resolved.k),
        "splitter": resolved.splitter,
        "params": " ".join(f"{name}={_text(value)}" for name, value in sorted(best.params.items())),
        "training_job": final.job,
    }
    if holdout is not None:
        metadata["holdout_score"] = repr(holdout)
    return {
        "statistics": statistics,
        "statistics_bucket": bucket,
        "statistics_key": key,
        "statistics_uri": f"s3://{bucket}/{key}",
        "description": _truncate(description, MAX_DESCRIPTION),
        "metadata": customer_metadata(metadata),
        # Stable across retries of the same execution, so a retried CreateModelPackage is not a second version.
        "client_token": str(uuid.uuid5(uuid.NAMESPACE_URL, config.run.prefix)),
    }


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
