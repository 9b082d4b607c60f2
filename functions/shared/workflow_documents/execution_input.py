"""The execution input: one JSON document shared by the CLI, StartExecution and S3-triggered runs.

Its sections are also the sections of the normalised config (``config.Config``) that every later
state reads. Validating a user's document and explaining what is wrong is PrepareInput's work.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StringConstraints,
    Tag,
)
from pydantic_core import PydanticCustomError

from . import budgets

# scikit-learn 1.9's ``sklearn.metrics.get_scorer_names()``, kept here so the function needs no scikit-learn.
SCORERS = (
    "accuracy", "adjusted_mutual_info_score", "adjusted_rand_score", "average_precision", "balanced_accuracy",
    "completeness_score", "d2_absolute_error_score", "d2_brier_score", "d2_log_loss_score", "explained_variance",
    "f1", "f1_macro", "f1_micro", "f1_samples", "f1_weighted", "fowlkes_mallows_score", "homogeneity_score",
    "jaccard", "jaccard_macro", "jaccard_micro", "jaccard_samples", "jaccard_weighted", "matthews_corrcoef",
    "mutual_info_score", "neg_brier_score", "neg_log_loss", "neg_max_error", "neg_mean_absolute_error",
    "neg_mean_absolute_percentage_error", "neg_mean_gamma_deviance", "neg_mean_poisson_deviance",
    "neg_mean_squared_error", "neg_mean_squared_log_error", "neg_median_absolute_error",
    "neg_negative_likelihood_ratio", "neg_root_mean_squared_error", "neg_root_mean_squared_log_error",
    "normalized_mutual_info_score", "positive_likelihood_ratio", "precision", "precision_macro",
    "precision_micro", "precision_samples", "precision_weighted", "r2", "rand_score", "recall", "recall_macro",
    "recall_micro", "recall_samples", "recall_weighted", "roc_auc", "roc_auc_ovo", "roc_auc_ovo_weighted",
    "roc_auc_ovr", "roc_auc_ovr_weighted", "top_k_accuracy", "v_measure_score",
)  # fmt: skip


# SageMaker's bounds on StoppingCondition.MaxRuntimeInSeconds (botocore's model carries the processing one).
MAX_TRAINING_RUNTIME = 28 * 24 * 3600
MAX_PROCESSING_RUNTIME = 777_600
# Two nested inline Maps, each running at most 40 iterations at once.
MAX_PARALLEL_JOBS = 1600
# The default of template.yaml's MaxParallelJobs, which the definition passes on: a new account's
# quota of concurrent instances per type is often this small.
DEFAULT_MAX_PARALLEL_JOBS = 2
# What the normalised config adds to the input: run naming, the split's environment, concurrency.
CONFIG_EXTRA_BYTES = 1_000

S3_URI = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/.+$"
ESTIMATOR = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
# Estimator parameter names; the train job's control keys own the cv_ prefix.
PARAMETER = r"^(?!cv_)[A-Za-z_][A-Za-z0-9_]*$"
PACKAGE_GROUP = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
INSTANCE_TYPE = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"

# What to do when a string does not match its pattern, said better than the pattern itself.
PATTERN_HINTS = {
    S3_URI: "must be s3://bucket/key with a valid bucket name (3 to 63 lowercase letters, digits, dots or hyphens): "
    "upload the CSV to S3 first, or start the run with the cvpipe CLI, which stages a local file for you",
    ESTIMATOR: "must be a scikit-learn estimator class name such as SVC or RandomForestRegressor, "
    "or a dotted import path package.module.Class",
    PARAMETER: "must be an estimator parameter name (letters, digits and underscores; the cv_ prefix is reserved)",
    PACKAGE_GROUP: "must be 1 to 63 letters, digits or hyphens, starting and ending with a letter or digit",
    INSTANCE_TYPE: "must be a SageMaker instance type such as ml.m5.large",
}

ParameterName = Annotated[str, StringConstraints(pattern=PARAMETER)]
InstanceType = Annotated[str, StringConstraints(pattern=INSTANCE_TYPE)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what numpy and scikit-learn accept as random_state
ColumnName = Annotated[str, StringConstraints(min_length=1)]


class _Section(BaseModel):
    # Unknown keys are typos; JSON has real types, so "5" is not a number and true is not 1 (strict);
    # lookahead patterns need Python's regex engine.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, regex_engine="python-re")


class CsvOptions(_Section):
    """How the CSV is written (gzip, a UTF-8 byte order mark and Parquet files are recognised by themselves)."""

    delimiter: str = Field(",", min_length=1, max_length=1, description="field separator, e.g. ; or a tab")
    quotechar: str = Field('"', min_length=1, max_length=1, description="character that quotes fields")
    encoding: str = Field("utf-8", min_length=1, description="text encoding, e.g. utf-8 or latin-1")


class Dataset(_Section):
    """The table to cross-validate on: a CSV (optionally gzipped) or Parquet file."""

    uri: str = Field(
        pattern=S3_URI, description="s3://bucket/key of a CSV file with a header row, or a Parquet file"
    )
    target: str = Field(min_length=1, description="name of the target column")
    features: list[ColumnName] | None = Field(
        None,
        min_length=1,
        description="the feature columns, by name; default: every column but the target, cv.group_column, "
        "cv.time_column and dataset.exclude",
    )
    exclude: list[ColumnName] = Field(
        default_factory=list,
        description="columns that are not features, such as IDs (when features is not set)",
    )
    csv: CsvOptions = Field(default_factory=CsvOptions)


SPLITTERS = (
    "KFold",
    "StratifiedKFold",
    "GroupKFold",
    "StratifiedGroupKFold",
    "TimeSeriesSplit",
    "RepeatedKFold",
    "RepeatedStratifiedKFold",
    "ShuffleSplit",
    "StratifiedShuffleSplit",
    "LeaveOneGroupOut",
    "LeaveOneOut",
    "LeavePOut",
)
REPEATED_SPLITTERS = ("RepeatedKFold", "RepeatedStratifiedKFold")
# How many splits these make depends on the data: cv.max_folds bounds them.
DATA_SPLITTERS = ("LeaveOneGroupOut", "LeaveOneOut", "LeavePOut")
GROUP_SPLITTERS = ("GroupKFold", "StratifiedGroupKFold", "LeaveOneGroupOut")
MAX_FOLDS = 100


class CrossValidation(_Section):
    """How the rows are split: a scikit-learn splitter by its class name, seeded; each split is one job."""

    splitter: Literal["auto", *SPLITTERS] = Field(  # type: ignore[valid-type]
        "auto",
        description="auto: GroupKFold when group_column is set, TimeSeriesSplit when time_column is set, else "
        "StratifiedKFold for classification and KFold for regression",
    )
    k: int = Field(
        5, ge=2, le=50, description="number of folds (n_splits; for ShuffleSplit the number of splits)"
    )
    seed: Seed = Field(0, description="shuffles the folds; also the estimator's random_state")
    shuffle: bool = Field(
        True, description="shuffle rows before KFold, StratifiedKFold, GroupKFold or StratifiedGroupKFold"
    )
    repeats: int = Field(
        10, ge=1, le=50, description="n_repeats of RepeatedKFold and RepeatedStratifiedKFold"
    )
    gap: int = Field(
        0, ge=0, description="TimeSeriesSplit: rows left out between each training and test part"
    )
    max_train_size: int | None = Field(
        None, ge=1, description="TimeSeriesSplit: most rows in a training part"
    )
    test_size: Annotated[int, Field(ge=1)] | Annotated[float, Field(gt=0, lt=1)] | None = Field(
        None,
        description="TimeSeriesSplit: rows per test part; ShuffleSplit and StratifiedShuffleSplit: fraction or "
        "number of rows per test part (default 0.1)",
    )
    p: int = Field(2, ge=1, le=10, description="LeavePOut: rows left out per split")
    max_folds: int = Field(
        50,
        ge=2,
        le=MAX_FOLDS,
        description="most splits allowed (each is one training job per candidate): LeaveOneOut, LeavePOut and "
        "LeaveOneGroupOut are refused above it",
    )
    group_column: ColumnName | None = Field(
        None, description="column holding each row's group (e.g. a patient): rows of a group stay in one fold"
    )
    time_column: ColumnName | None = Field(
        None,
        description="column that orders the rows in time, for TimeSeriesSplit and a time-ordered holdout",
    )
    holdout: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="fraction of rows held out from tuning (whole groups when grouped, the last rows when time "
        "ordered, else stratified for classifiers); the chosen candidate is scored on them once and the baseline "
        "gate uses that score",
    )
    return_train_score: bool = Field(
        False, description="also score each fold's training rows (costs about one more fit per fold)"
    )

    @property
    def folds_per_candidate(self) -> int:
        """Training jobs per candidate (at most cv.max_folds when the data decides)."""
        if self.splitter in REPEATED_SPLITTERS:
            return self.k * self.repeats
        if self.splitter in DATA_SPLITTERS:
            return self.max_folds
        return self.k


class Choice(_Section):
    """Try each of these values."""

    values: list[JsonValue] = Field(min_length=1)


class Range(_Section):
    """A numeric interval: the grid takes steps evenly spaced points (geometric when log), random samples it."""

    type: Literal["float", "int"]
    low: float
    high: float
    log: bool = False
    steps: int | None = Field(
        None, ge=2, le=1000, description="number of grid points; required by the grid strategy"
    )

    def point(self, fraction: float) -> float:
        """The point ``fraction`` of the way from low to high (geometrically when log), finite for every
        finite range: ``low + (high - low) * f`` overflows when the range spans more than the largest float."""
        low, high = self.low, self.high
        if self.log:
            point = math.exp(math.log(low) * (1 - fraction) + math.log(high) * fraction)
        else:
            point = low * (1 - fraction) + high * fraction
        return min(max(point, low), high)  # never past an end by rounding

    def grid_points(self) -> list[float | int]:
        """The ``steps`` points of ``np.linspace`` (``np.geomspace`` when log) from low to high, distinct, in
        order, exactly: a user comparing with scikit-learn's GridSearchCV over the same numpy grid gets the
        same floats, bit for bit (numpy's log10 and power differ from the C library's in the last bit, so
        numpy computes them). Int ranges round those points; repeats collapse into one, and PrepareInput
        refuses such grids, naming the range."""
        assert self.steps is not None, "the input model requires steps for a grid"
        space = np.geomspace if self.log else np.linspace
        with np.errstate(over="ignore", invalid="ignore"):
            points: list[float] = space(self.low, self.high, self.steps).tolist()
        if not all(math.isfinite(point) for point in points):
            # A range wider than the largest float overflows numpy's step: the same points, computed finitely.
            points = [self.point(i / (self.steps - 1)) for i in range(self.steps)]
        # numpy's points of a range a few floats wide may fall past its end or out of order: kept inside, sorted.
        inside = [min(max(point, self.low), self.high) for point in points]
        return sorted({round(point) if self.type == "int" else point for point in inside})


DIMENSION_TAGS = {"choice": Choice, "range": Range}


def _dimension_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "choice" if "values" in value else "range"
    # Serialising a validated model.
    return next((tag for tag, model in DIMENSION_TAGS.items() if isinstance(value, model)), None)


Dimension = Annotated[
    Annotated[Choice, Tag("choice")] | Annotated[Range, Tag("range")],
    Discriminator(
        _dimension_kind,
        custom_error_type="search_dimension",
        custom_error_message='must be {"values": [...]} or {"type": "float" or "int", "low": ..., "high": ...}',
    ),
]


class NumericSteps(_Section):
    impute: Literal["auto", "mean", "median", "most_frequent", "constant", "none"] = Field(
        "auto", description="SimpleImputer strategy; auto: none for estimators that take NaN, else mean"
    )
    scale: Literal["StandardScaler", "MinMaxScaler", "RobustScaler", "MaxAbsScaler", "none"] | None = Field(
        None, description="scaler; default: model.scaler"
    )


class CategoricalSteps(_Section):
    impute: Literal["most_frequent", "constant", "none"] = Field(
        "most_frequent", description="SimpleImputer strategy for text columns (constant fills 'missing')"
    )
    encode: Literal["OneHotEncoder", "OrdinalEncoder"] = Field(
        "OneHotEncoder", description="encoder; levels unseen in a fold's training rows are ignored"
    )


class Preprocessing(_Section):
    """Steps fitted inside each fold on its training rows (a ColumnTransformer, then optional selection).
    Their parameters go in model.params or model.search_space by scikit-learn's step__param names:
    preprocess__numeric__impute__strategy, preprocess__categorical__encode__min_frequency, select__k."""

    numeric: NumericSteps = Field(default_factory=NumericSteps)
    categorical: CategoricalSteps = Field(default_factory=CategoricalSteps)
    select: Literal["none", "SelectKBest", "SelectPercentile", "VarianceThreshold"] = Field(
        "none",
        description="feature selection after encoding (SelectKBest and SelectPercentile score by the task)",
    )


class Model(_Section):
    """The estimator and its hyperparameters: fixed in params, searched in search_space. A bare name is the
    estimator's parameter (C); a step__param name is the pipeline's (select__k, estimator__C)."""

    estimator: str = Field(
        "SVC",
        pattern=ESTIMATOR,
        description="class name or dotted import path; auto: HistGradientBoostingClassifier or Regressor by task",
    )
    params: dict[ParameterName, JsonValue] = Field(default_factory=dict, description="fixed hyperparameters")
    scaler: Literal["StandardScaler", "none"] = Field(
        "StandardScaler", description="scaler of numeric columns (preprocessing.numeric.scale overrides it)"
    )
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    search_space: dict[ParameterName, Dimension] = Field(default_factory=dict)


class Tuning(_Section):
    """How candidates are proposed; each round evaluates up to batch_size of them."""

    strategy: Literal["grid", "random"] = "grid"
    # The tuning history travels in the state machine's payload and every fold job writes to the
    # execution's history: budgets.py says how far a search can go.
    max_candidates: int = Field(20, ge=1, le=100)
    batch_size: int | None = Field(
        None,
        ge=1,
        description="candidates per round; default: max_candidates, or fewer so that a round's results fit "
        "Step Functions' 256 KiB payload even when every fold fails",
    )
    parallel_candidates: int = Field(
        0,
        ge=0,
        description="at most this many candidates evaluated at once; 0: as many as resources.max_parallel_jobs "
        "allows (max_parallel_jobs // k, at least 1)",
    )
    sample_grid: bool = Field(
        False,
        description="grid larger than max_candidates: false refuses the run, true evaluates max_candidates of "
        "its points drawn without replacement (seeded)",
    )
    seed: Seed = 0


class Registry(_Section):
    """Where the final model is registered."""

    group: str = Field("cvpipe-models", pattern=PACKAGE_GROUP, description="SageMaker model package group")
    approval_status: Literal["Approved", "Rejected", "PendingManualApproval"] = "PendingManualApproval"


class Training(_Section):
    """SageMaker resources of the split, fold and final jobs."""

    instance_type: InstanceType = "ml.m5.large"
    instance_count: int = Field(1, ge=1, le=20)
    volume_gb: int = Field(10, ge=1, le=16384)
    max_runtime_seconds: int = Field(
        3600,
        ge=1,
        le=MAX_TRAINING_RUNTIME,
        description="each training job's limit (SageMaker allows 28 days)",
    )
    processing_instance_type: InstanceType = "ml.t3.medium"
    processing_max_runtime_seconds: int = Field(
        3600, ge=1, le=MAX_PROCESSING_RUNTIME, description="the split job's limit (SageMaker allows 9 days)"
    )


class Resources(_Section):
    """How much of the account a run may use at once."""

    max_parallel_jobs: int | None = Field(
        None,
        ge=1,
        le=MAX_PARALLEL_JOBS,
        description="SageMaker jobs running at once; keep it within the account's quota of instances of "
        "training.instance_type. Default: the stack's MaxParallelJobs parameter",
    )


CUSTOM_SCORER = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*[:.][A-Za-z_][A-Za-z0-9_]*$"


def _known_scorer(name: str) -> str:
    if name != "auto" and name not in SCORERS and not re.match(CUSTOM_SCORER, name):
        guess = difflib.get_close_matches(name, SCORERS, n=1)
        raise PydanticCustomError(
            "unknown_scorer",
            'unknown scorer: use "auto", a scikit-learn scorer name such as accuracy, f1_macro, roc_auc, r2 or '
            "neg_root_mean_squared_error, or a custom scorer by import path package.module:scorer"
            + (f" (did you mean {guess[0]!r}?)" if guess else ""),
        )
    return name


Scorer = Annotated[
    str,
    AfterValidator(_known_scorer),
    Field(json_schema_extra={"anyOf": [{"enum": ["auto", *SCORERS]}, {"pattern": CUSTOM_SCORER}]}),
]
# The definition declares validation:metric0..15 and train:metric0..15 (MetricDefinitions: 40 at most).
MAX_METRICS = 16


class ExecutionInput(_Section):
    """Input of a cvpipe execution: k-fold cross-validated hyperparameter search, then registration."""

    dataset: Dataset
    cv: CrossValidation = Field(default_factory=CrossValidation)
    model: Model = Field(default_factory=Model)
    tuning: Tuning = Field(default_factory=Tuning)
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: the estimator's kind, or (estimator auto) what the target holds"
    )
    metric: Scorer = Field(
        "auto",
        description="the one metric when metrics is not set. auto: accuracy for classifiers, r2 for regressors; else "
        "a scikit-learn scorer name or a custom scorer by import path (higher is better)",
    )
    metrics: list[Scorer] | None = Field(
        None,
        min_length=1,
        max_length=MAX_METRICS,
        description="several metrics, each reported per fold (mean, std, standard error) and registered",
    )
    refit: Scorer | None = Field(
        None,
        description="the metric of metrics that chooses the candidate and meets the baseline; default: the first",
    )
    pos_label: str | int | bool | None = Field(
        None,
        description="the positive class of binary metrics (f1, precision, recall, roc_auc...) on text labels",
    )
    baseline: float | None = Field(
        None,
        description="minimum score to register the model: the holdout score when cv.holdout is above 0, else the "
        "best CV mean; null: no gate",
    )
    registry: Registry = Field(default_factory=Registry)
    training: Training = Field(default_factory=Training)
    resources: Resources = Field(default_factory=Resources)

    def model_post_init(self, context: Any) -> None:
        if self.tuning.batch_size is None:
            fitting = budgets.largest_batch(search_size(self, batch_size=1))
            self.tuning.batch_size = max(1, min(self.tuning.max_candidates, fitting))

    @property
    def metric_list(self) -> list[str]:
        return list(self.metrics) if self.metrics else [self.metric]

    @property
    def refit_metric(self) -> str:
        return self.refit or self.metric_list[0]


def search_size(config: ExecutionInput, batch_size: int | None = None) -> budgets.Search:
    """The numbers of ``config`` that set how large its execution's history and states grow."""
    space = {
        name: dimension.values if isinstance(dimension, Choice) else None
        for name, dimension in config.model.search_space.items()
    }
    return budgets.Search(
        k=config.cv.folds_per_candidate,
        max_candidates=config.tuning.max_candidates,
        batch_size=batch_size or config.tuning.batch_size or 1,
        candidate_bytes=budgets.candidate_bytes(config.model.params, space),
        # The split job's environment repeats the model's params and searched values.
        config_bytes=len(config.model_dump_json()) + len(config.model.model_dump_json()) + CONFIG_EXTRA_BYTES,
    )
