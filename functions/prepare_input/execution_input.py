"""The execution input: one JSON document shared by the CLI, StartExecution and S3-triggered runs.

``normalise`` validates it, fills every default and adds what later states derive from it, so the rest
of the workflow reads one normalised config and never re-validates the user's document.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from typing import Annotated, Any, Literal, get_args

from allowlist import DEFAULT_PACKAGES, NotAllowedError, check_allowed
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StringConstraints,
    Tag,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

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

# Scorers whose best score is not 1 (0 for the neg_ ones, which negate an error or a loss).
UNBOUNDED_SCORERS = ("mutual_info_score", "positive_likelihood_ratio")

# The state machine gates on ``best >= baseline``; without a baseline every score must pass, and JSON has
# no infinity.
NO_BASELINE = -1e308
# SageMaker's limits on a processing job's environment: 100 variables of up to 256 characters each.
ENVIRONMENT_VALUE_LIMIT = 256
ENVIRONMENT_VARIABLE_LIMIT = 100
# One round's fold results travel in the state machine's payload (256 KiB at most), about 200 bytes each.
MAX_FOLD_JOBS_PER_ROUND = 400

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


class InvalidInputError(Exception):
    """The execution input is invalid; ``problems`` holds one ``json.path: what to do`` line per bad field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            f"invalid execution input ({len(problems)} problem{'s' if len(problems) > 1 else ''}); fix the "
            "fields below and start a new execution (schemas/execution-input.schema.json documents every field):\n"
            + "\n".join(f"  {problem}" for problem in problems)
        )
        self.problems = problems


class _Section(BaseModel):
    # Unknown keys are typos; JSON has real types, so "5" is not a number and true is not 1 (strict);
    # lookahead patterns need Python's regex engine.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, regex_engine="python-re")


class Dataset(_Section):
    """The CSV to cross-validate on."""

    uri: str = Field(pattern=S3_URI, description="s3://bucket/key of a CSV file with a header row")
    target: str = Field(min_length=1, description="name of the target column")


class CrossValidation(_Section):
    """How the rows are split into k folds; each row not held out is in exactly one test fold."""

    splitter: Literal["auto", "KFold", "StratifiedKFold"] = Field(
        "auto", description="auto: StratifiedKFold for classification, KFold for regression"
    )
    k: int = Field(5, ge=2, le=50, description="number of folds")
    seed: Seed = Field(0, description="shuffles the folds; also the estimator's random_state")
    holdout: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="fraction of rows held out from tuning, stratified for classifiers; the chosen candidate is "
        "scored on them once and the baseline gate uses that score",
    )
    return_train_score: bool = Field(
        False, description="also score each fold's training rows (costs about one more fit per fold)"
    )


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


_TAGGED = {"choice": Choice, "range": Range}


def _dimension_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "choice" if "values" in value else "range"
    # Serialising a validated model.
    return next((tag for tag, model in _TAGGED.items() if isinstance(value, model)), None)


Dimension = Annotated[
    Annotated[Choice, Tag("choice")] | Annotated[Range, Tag("range")],
    Discriminator(
        _dimension_kind,
        custom_error_type="search_dimension",
        custom_error_message='must be {"values": [...]} or {"type": "float" or "int", "low": ..., "high": ...}',
    ),
]


class Model(_Section):
    """The estimator and its hyperparameters: fixed in params, searched in search_space."""

    estimator: str = Field("SVC", pattern=ESTIMATOR, description="class name or dotted import path")
    params: dict[ParameterName, JsonValue] = Field(default_factory=dict, description="fixed hyperparameters")
    scaler: Literal["StandardScaler", "none"] = "StandardScaler"
    search_space: dict[ParameterName, Dimension] = Field(default_factory=dict)


class Tuning(_Section):
    """How candidates are proposed; each round evaluates up to batch_size of them."""

    strategy: Literal["grid", "random"] = "grid"
    # The tuning history travels in the state machine's payload, which Step Functions caps at 256 KiB:
    # 100 entries with 50 fold scores each take about 170 KB.
    max_candidates: int = Field(20, ge=1, le=100)
    batch_size: int | None = Field(
        None,
        ge=1,
        description=f"candidates per round; default: max_candidates, or fewer so that a round runs at most "
        f"{MAX_FOLD_JOBS_PER_ROUND} fold jobs",
    )
    parallel_candidates: int = Field(
        0, ge=0, description="candidates evaluated at once, each running k training jobs; 0: no limit"
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
    max_runtime_seconds: int = Field(3600, ge=1, le=28 * 24 * 3600)
    processing_instance_type: InstanceType = "ml.t3.medium"


def _known_scorer(name: str) -> str:
    if name != "auto" and name not in SCORERS:
        guess = difflib.get_close_matches(name, SCORERS, n=1)
        raise PydanticCustomError(
            "unknown_scorer",
            'unknown scorer: use "auto" or a scikit-learn scorer name such as accuracy, f1_macro, roc_auc, r2 or '
            "neg_root_mean_squared_error" + (f" (did you mean {guess[0]!r}?)" if guess else ""),
        )
    return name


class ExecutionInput(_Section):
    """Input of a cvpipe execution: k-fold cross-validated hyperparameter search, then registration."""

    dataset: Dataset
    cv: CrossValidation = Field(default_factory=CrossValidation)
    model: Model = Field(default_factory=Model)
    tuning: Tuning = Field(default_factory=Tuning)
    metric: Annotated[str, AfterValidator(_known_scorer)] = Field(
        "auto",
        json_schema_extra={"enum": ["auto", *SCORERS]},
        description="auto: accuracy for classifiers, r2 for regressors; else a scikit-learn scorer name "
        "(higher is better)",
    )
    baseline: float | None = Field(
        None,
        description="minimum score to register the model: the holdout score when cv.holdout is above 0, else the "
        "best CV mean; null: no gate",
    )
    registry: Registry = Field(default_factory=Registry)
    training: Training = Field(default_factory=Training)

    def model_post_init(self, context: Any) -> None:
        if self.tuning.batch_size is None:
            self.tuning.batch_size = max(
                1, min(self.tuning.max_candidates, MAX_FOLD_JOBS_PER_ROUND // self.cv.k)
            )


def input_json_schema() -> dict[str, Any]:
    """The JSON Schema of the execution input, as published in ``schemas/execution-input.schema.json``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **ExecutionInput.model_json_schema(),
        "title": "cvpipe execution input",
    }


def validate(document: Any, allowed_packages: frozenset[str] = DEFAULT_PACKAGES) -> ExecutionInput:
    """Validate the execution input, raising ``InvalidInputError`` that lists every bad field.

    ``allowed_packages`` (the stack's setting, never the input's) are those a dotted estimator name may
    come from."""
    try:
        config = ExecutionInput.model_validate(document)
    except ValidationError as error:
        details = error.errors()
        # A misspelt required field is one problem: the typo, with its correction.
        misspelt = {
            (*detail["loc"][:-1], _suggestion(detail["loc"]))
            for detail in details
            if detail["type"] == "extra_forbidden"
        }
        raise InvalidInputError(
            [
                _describe(detail)
                for detail in details
                if not (detail["type"] == "missing" and detail["loc"] in misspelt)
            ]
        ) from None
    # Checks across fields run once every field is well-formed.
    problems = [
        f"{_path(loc)}: {message}" for loc, message in _consistency_problems(config, allowed_packages)
    ]
    if problems:
        raise InvalidInputError(problems)
    return config


def normalise(
    document: Any,
    execution: str,
    bucket: str,
    started: str = "",
    allowed_packages: frozenset[str] = DEFAULT_PACKAGES,
) -> dict[str, Any]:
    """The config every later state reads: the validated input with defaults, plus run naming.

    Job names must never repeat in an account, so the run id hashes the execution's name with its start
    time: a name reused by another state machine, or after 90 days, still gets new job names.
    """
    config = validate(document, allowed_packages)
    environment = split_environment(config, allowed_packages)
    if len(environment) > ENVIRONMENT_VARIABLE_LIMIT:
        size = sum(map(len, environment.values()))
        raise InvalidInputError(
            [
                f"model: its params and search space take {size} characters, more than the split job's environment "
                f"carries ({ENVIRONMENT_VARIABLE_LIMIT} variables of {ENVIRONMENT_VALUE_LIMIT} characters) to check "
                "them before any training: search fewer or shorter values"
            ]
        )
    run_id = hashlib.sha256(f"{execution}@{started}".encode()).hexdigest()[:10]
    return {
        **config.model_dump(mode="json"),
        "baseline": NO_BASELINE if config.baseline is None else config.baseline,
        "baseline_given": config.baseline is not None,
        "run": {
            "execution": execution,
            "id": run_id,
            "prefix": f"s3://{bucket}/runs/{execution}",
            "job_prefix": f"cv-{run_id}",
        },
        "split_environment": environment,
    }


def split_environment(
    config: ExecutionInput, allowed_packages: frozenset[str] = DEFAULT_PACKAGES
) -> dict[str, str]:
    """Environment of the split job, which resolves ``auto`` splitter and metric from the target and
    checks the settings against the data and the estimator before any candidate is fitted: the
    hyperparameter names (``CV_PARAMS``) and the values the search can set (``CV_VALUES``: the fixed
    params, each choice and each range's ends), each split over numbered variables when longer than
    SageMaker's limit on one value."""
    environment = {
        "CV_TARGET": config.dataset.target,
        "CV_K": str(config.cv.k),
        "CV_SPLITTER": config.cv.splitter,
        "CV_SEED": str(config.cv.seed),
        "CV_ESTIMATOR": config.model.estimator,
        "CV_METRIC": config.metric,
        "CV_HOLDOUT": str(config.cv.holdout),
        "CVPIPE_ALLOWED_PACKAGES": ",".join(sorted(allowed_packages)),
    }
    model = config.model
    searched = {
        name: dimension.values
        if isinstance(dimension, Choice)
        else [int(end) if dimension.type == "int" else end for end in (dimension.low, dimension.high)]
        for name, dimension in model.search_space.items()
    }
    values = {"params": model.params, "search": searched}
    environment |= chunked("CV_PARAMS", ",".join(sorted({*model.params, *model.search_space})))
    environment |= chunked("CV_VALUES", json.dumps(values, sort_keys=True, separators=(",", ":")))
    return environment


def chunked(name: str, text: str) -> dict[str, str]:
    """``text`` as ``name``, ``name_1``, ``name_2``... of at most ENVIRONMENT_VALUE_LIMIT characters each."""
    parts = [text[i : i + ENVIRONMENT_VALUE_LIMIT] for i in range(0, len(text), ENVIRONMENT_VALUE_LIMIT)] or [
        ""
    ]
    return {name if i == 0 else f"{name}_{i}": part for i, part in enumerate(parts)}


def best_possible_score(metric: str) -> float:
    """The highest score ``metric`` can give (``auto`` is accuracy or r2: 1)."""
    if metric in UNBOUNDED_SCORERS:
        return math.inf
    return 0.0 if metric.startswith("neg_") else 1.0


def _consistency_problems(
    config: ExecutionInput, allowed_packages: frozenset[str]
) -> list[tuple[tuple[str, ...], str]]:
    problems = []
    if "." in config.model.estimator:
        try:
            check_allowed(config.model.estimator, allowed_packages)
        except NotAllowedError as error:
            problems.append((("model", "estimator"), str(error)))
    for name, dimension in config.model.search_space.items():
        at = ("model", "search_space", name)
        if name in config.model.params:
            problems.append(
                (at, "also set in model.params: a hyperparameter is either fixed or searched, remove one")
            )
        if isinstance(dimension, Choice):
            continue
        low, high = dimension.low, dimension.high
        if low >= high:
            problems.append(((*at, "low"), f"must be below high (got low={low:g}, high={high:g})"))
        if dimension.log and low <= 0:
            problems.append(((*at, "low"), f"must be above 0 when log is true (got low={low:g})"))
        if dimension.type == "int":
            problems += [
                ((*at, bound), f"must be a whole number in an int range (got {value:g})")
                for bound, value in (("low", low), ("high", high))
                if not value.is_integer()
            ]
        if config.tuning.strategy == "grid" and dimension.steps is None:
            problems.append(
                ((*at, "steps"), 'required by the grid strategy: set it, or use tuning.strategy "random"')
            )
        elif config.tuning.strategy == "grid" and low < high and (low > 0 or not dimension.log):
            distinct = distinct_grid_points(dimension)
            if distinct < dimension.steps:
                kind = "whole numbers" if dimension.type == "int" else "values at 12 significant digits"
                fix = f"set steps to {distinct}" if distinct > 1 else f"fix {name} in model.params"
                problems.append(
                    (
                        (*at, "steps"),
                        f"only {distinct} of the {dimension.steps} grid points from {low!r} to {high!r} are distinct "
                        f"{kind}, so the grid would repeat candidates: {fix} or widen the range",
                    )
                )
    best = best_possible_score(config.metric)
    if config.baseline is not None and config.baseline > best:
        metric = "auto (accuracy or r2)" if config.metric == "auto" else config.metric
        problems.append(
            (
                ("baseline",),
                f"{config.baseline:g} is above the best possible score of metric {metric}, {best:g}, so no model "
                "could pass: lower it, or leave it out to register the best model whatever its score",
            )
        )
    if config.tuning.batch_size * config.cv.k > MAX_FOLD_JOBS_PER_ROUND:
        problems.append(
            (
                ("tuning", "batch_size"),
                f"{config.tuning.batch_size} candidates x {config.cv.k} folds is more than the "
                f"{MAX_FOLD_JOBS_PER_ROUND} fold jobs a round can report within Step Functions' 256 KiB payload: "
                "lower batch_size (more rounds run the same search)",
            )
        )
    if config.tuning.batch_size > config.tuning.max_candidates:
        problems.append(
            (
                ("tuning", "batch_size"),
                f"must be at most max_candidates (got {config.tuning.batch_size} > {config.tuning.max_candidates})",
            )
        )
    return problems


def distinct_grid_points(dimension: Range) -> int:
    """How many distinct values the grid of ``dimension`` has, as ProposeCandidates computes it: ``steps``
    points evenly (or geometrically) spaced, rounded to whole numbers or to 12 significant digits."""
    assert dimension.steps is not None
    points = set()
    for i in range(dimension.steps):
        fraction = i / (dimension.steps - 1)
        if dimension.log:
            point = math.exp(math.log(dimension.low) * (1 - fraction) + math.log(dimension.high) * fraction)
        else:
            point = dimension.low * (1 - fraction) + dimension.high * fraction
        point = min(max(point, dimension.low), dimension.high)
        if dimension.type == "float":
            point = min(max(float(f"{point:.12g}"), dimension.low), dimension.high)
        points.add(round(point) if dimension.type == "int" else point)
    return len(points)


def _describe(detail: ErrorDetails) -> str:
    """One pydantic error as ``json.path: what is wrong and what to do``."""
    loc, kind = detail["loc"], detail["type"]
    if kind == "missing":
        message = "required: add this field"
    elif kind == "extra_forbidden":
        guess = _suggestion(loc)
        message = "unknown field: " + (
            f"did you mean {guess!r}?"
            if guess
            else "remove it (allowed: " + ", ".join(_fields_at(loc[:-1])) + ")"
        )
    elif kind == "too_short":
        message = "must not be empty: list at least one value"
    elif kind in ("model_type", "dict_type"):
        message = "must be a JSON object"
    elif kind == "string_pattern_mismatch":
        message = PATTERN_HINTS[detail["ctx"]["pattern"]]
    elif kind == "literal_error":
        choices = {str(choice).lower(): str(choice) for choice in get_args(_annotation_at(loc))}
        guess = difflib.get_close_matches(str(detail["input"]).lower(), choices, n=1)
        message = f"must be one of {', '.join(map(repr, choices.values()))}" + (
            f": did you mean {choices[guess[0]]!r}?" if guess else ""
        )
    else:
        message = detail["msg"][0].lower() + detail["msg"][1:]
    if loc and loc[-1] == "[key]":
        loc, message = loc[:-1], f"invalid name: {message}"
    value = detail["input"]
    if kind not in ("missing", "extra_forbidden") and isinstance(
        value, str | int | float | bool | type(None)
    ):
        message += f" (got {_shorten(repr(value))})"
    return f"{_path(_without_tags(loc))}: {message}"


def _suggestion(loc: tuple[Any, ...]) -> str | None:
    """The allowed field that the unknown key at ``loc`` most likely misspells."""
    guess = difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1]), n=1)
    return guess[0] if guess else None


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields allowed in the object at ``loc``."""
    return list(getattr(_annotation_at(loc), "model_fields", {}))


def _annotation_at(loc: tuple[Any, ...]) -> Any:
    """The type of the value at ``loc`` (search space tags included in ``loc``), or None."""
    section: Any = ExecutionInput
    for part in loc:
        if part in _TAGGED:
            section = _TAGGED[part]
        else:
            field = getattr(section, "model_fields", {}).get(part)
            section = field.annotation if field else None
    return section


# The members of pydantic's JsonValue union, which it reports as path steps: model.params.C.float
_JSON_TAGS = frozenset({"list", "dict", "str", "bool", "int", "float"})


def _without_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # Pydantic reports the union tag of a search dimension as a path step: model.search_space.C.range.low
    if loc[:2] == ("model", "search_space") and len(loc) > 3 and loc[3] in _TAGGED:
        loc = loc[:3] + loc[4:]
    if loc[:2] in (("model", "params"), ("model", "search_space")):
        loc = loc[:3] + tuple(part for part in loc[3:] if part not in _JSON_TAGS)
    return loc


def _path(loc: tuple[Any, ...]) -> str:
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    return path or "(input)"


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
