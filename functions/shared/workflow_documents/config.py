"""The normalised config: the execution input with every default filled, the run's names, and, once the
split job has run, what it resolved (``dataset_info``). PrepareInput writes it; every later state reads it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .execution_input import ExecutionInput, Resources, Tuning

# The state machine gates on ``best >= baseline``; without a baseline every score must pass, and JSON has
# no infinity.
NO_BASELINE = -1e308


class Document(BaseModel):
    """A document the workflow passes between states: no field that its declaration does not name."""

    model_config = ConfigDict(extra="forbid")


class Run(Document):
    execution: str = Field(min_length=1, max_length=80, description="the execution's name")
    id: str = Field(description="hash of the execution's name and start time: job names never repeat")
    prefix: str = Field(description="s3://BUCKET/runs/EXECUTION: every file of the run is under it")
    job_prefix: str = Field(description="cv-ID: the start of every SageMaker job name of the run")


class DatasetInfo(Document):
    """The split job's summary (its ExitMessage): what it resolved from the data."""

    task: Literal["classification", "regression"]
    splitter: str = Field(description="the splitter that made the folds (auto resolved)")
    metric: str = Field(description="the scorer that ranks candidates (auto resolved)")
    metrics: list[str] = Field(
        min_length=1, description="every scorer the jobs report, the ranking one included"
    )
    k: int = Field(ge=2)
    folds: list[int] = Field(description="fold ids, one training job per fold and candidate")
    n_rows: int = Field(ge=1)
    n_features: int = Field(ge=1)
    target: str
    estimator: str
    holdout_rows: int = Field(ge=0, description="rows held out from tuning, scored once by the chosen model")


class NormalisedTuning(Tuning):
    batch_size: int = Field(ge=1, description="candidates per round")  # filled in from max_candidates and k


class NormalisedResources(Resources):
    max_parallel_jobs: int = Field(
        ge=1, description="SageMaker jobs running at once"
    )  # the stack's default filled in
    parallel_candidates: int = Field(ge=1, description="MaxConcurrency of the candidate Map")
    parallel_folds: int = Field(ge=1, description="MaxConcurrency of each candidate's fold Map")


class Config(ExecutionInput):
    """The config every state after PrepareInput reads."""

    tuning: NormalisedTuning
    resources: NormalisedResources
    baseline: float = Field(  # never null here: NO_BASELINE stands for none
        description=f"minimum score to register the model; {NO_BASELINE} when the input gave none"
    )
    baseline_given: bool
    run: Run
    split_environment: dict[str, str] = Field(description="environment of the split job")
    # Merged in from the split job's result when tuning starts.
    split_job: str | None = None
    data_uri: str | None = Field(None, description="where the split job wrote the folds")
    dataset_info: DatasetInfo | None = None

    @property
    def resolved_metric(self) -> str:
        """The metric the jobs report: the split job resolves ``auto``."""
        return self.dataset_info.metric if self.dataset_info else self.metric
