"""The execution input: one JSON document shared by the CLI, StartExecution and S3-triggered runs.

``normalise`` validates it, fills every default and adds what later states derive from it, so the rest
of the workflow reads one normalised config and never re-validates the user's document.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from typing import Any, get_args

from allowlist import DEFAULT_PACKAGES, NotAllowedError, check_allowed
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from workflow_documents import NO_BASELINE, Config, ExecutionInput, budgets
from workflow_documents.execution_input import (
    DEFAULT_MAX_PARALLEL_JOBS,
    DIMENSION_TAGS,
    GROUP_SPLITTERS,
    PATTERN_HINTS,
    SCORERS,
    Choice,
    search_size,
)

# Scorers whose best score is not 1 (0 for the neg_ ones, which negate an error or a loss).
UNBOUNDED_SCORERS = ("mutual_info_score", "positive_likelihood_ratio")
# SageMaker's limits on a processing job's environment: 100 variables of up to 256 characters each.
ENVIRONMENT_VALUE_LIMIT = 256
ENVIRONMENT_VARIABLE_LIMIT = 100


class InvalidInputError(Exception):
    """The execution input is invalid; ``problems`` holds one ``json.path: what to do`` line per bad field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            f"invalid execution input ({len(problems)} problem{'s' if len(problems) > 1 else ''}); fix the "
            "fields below and start a new execution (schemas/execution-input.schema.json documents every field):\n"
            + "\n".join(f"  {problem}" for problem in problems)
        )
        self.problems = problems


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
    max_parallel_jobs: int = DEFAULT_MAX_PARALLEL_JOBS,
) -> dict[str, Any]:
    """The config every later state reads: the validated input with defaults, plus run naming.

    Job names must never repeat in an account, so the run id hashes the execution's name with its start
    time: a name reused by another state machine, or after 90 days, still gets new job names.
    ``max_parallel_jobs`` is the stack's default for ``resources.max_parallel_jobs``.
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
    if config.resources.max_parallel_jobs is None:
        config.resources.max_parallel_jobs = max_parallel_jobs
    run_id = hashlib.sha256(f"{execution}@{started}".encode()).hexdigest()[:10]
    normalised = Config.model_validate(
        {
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
            "resources": {"max_parallel_jobs": config.resources.max_parallel_jobs, **map_concurrency(config)},
        }
    )
    # What the split job resolves is merged in when tuning starts.
    return normalised.model_dump(mode="json", exclude={"split_job", "data_uri", "dataset_info"})


def map_concurrency(config: ExecutionInput) -> dict[str, int]:
    """MaxConcurrency of the candidate Map and of each candidate's fold Map, so that at most
    ``resources.max_parallel_jobs`` jobs run at once and as many as possible stay busy.

    A fold Map runs its k jobs in waves of its MaxConcurrency, and a wave's idle slots stay idle
    (5 folds 2 at a time leave one slot idle in the third wave), so the split chosen keeps the most
    jobs running on average: 2 jobs at k=5 run 2 candidates, each fold after fold.
    """
    jobs = config.resources.max_parallel_jobs or DEFAULT_MAX_PARALLEL_JOBS
    k = config.cv.folds_per_candidate  # a fold Map's jobs: k x repeats for the repeated splitters
    cap = config.tuning.parallel_candidates or jobs

    def candidates_with(folds: int) -> int:
        return min(jobs // folds, cap)

    def busy(folds: int) -> float:
        return candidates_with(folds) * k / -(-k // folds)

    folds = max(range(1, min(k, jobs) + 1), key=lambda f: (busy(f), f))
    candidates = candidates_with(folds)
    return {"parallel_candidates": candidates, "parallel_folds": folds}


def split_environment(
    config: ExecutionInput, allowed_packages: frozenset[str] = DEFAULT_PACKAGES
) -> dict[str, str]:
    """Environment of the split job, which resolves ``auto`` splitter and metric from the target and
    checks the settings against the data and the estimator before any candidate is fitted: the
    hyperparameter names (``CV_PARAMS``) and the values the search can set (``CV_VALUES``: the fixed
    params, each choice and each range's ends), the metrics and the column lists, each split over
    numbered variables when longer than SageMaker's limit on one value."""
    cv = config.cv
    environment = {
        "CV_TARGET": config.dataset.target,
        "CV_K": str(cv.k),
        "CV_SPLITTER": cv.splitter,
        "CV_SEED": str(cv.seed),
        "CV_SHUFFLE": json.dumps(cv.shuffle),
        "CV_REPEATS": str(cv.repeats),
        "CV_GAP": str(cv.gap),
        "CV_P": str(cv.p),
        "CV_MAX_FOLDS": str(cv.max_folds),
        "CV_ESTIMATOR": config.model.estimator,
        "CV_TASK": config.task,
        "CV_REFIT": config.refit_metric,
        "CV_HOLDOUT": str(cv.holdout),
        "CV_CSV": json.dumps(config.dataset.csv.model_dump(), separators=(",", ":")),
        "CVPIPE_ALLOWED_PACKAGES": ",".join(sorted(allowed_packages)),
    }
    optional = {
        "CV_MAX_TRAIN_SIZE": cv.max_train_size,
        "CV_TEST_SIZE": cv.test_size,
        "CV_GROUP_COLUMN": cv.group_column,
        "CV_TIME_COLUMN": cv.time_column,
        "CV_POS_LABEL": config.pos_label,
    }
    for name, value in optional.items():
        if value is not None:
            environment[name] = (
                value if isinstance(value, str) and name.endswith("COLUMN") else json.dumps(value)
            )
    lists = {
        "CV_METRICS": config.metric_list,
        "CV_FEATURES": config.dataset.features,
        "CV_EXCLUDE": config.dataset.exclude,
    }
    for name, names in lists.items():
        if names:
            environment |= chunked(name, json.dumps(names, separators=(",", ":")))
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


def grid_size(space: dict[str, Any]) -> int:
    """How many candidates the grid strategy makes of ``space``."""
    size = 1
    for dimension in space.values():
        if isinstance(dimension, Choice):
            size *= len({json.dumps(value, sort_keys=True) for value in dimension.values})
        elif (
            dimension.steps is not None
            and dimension.low < dimension.high
            and (dimension.low > 0 or not dimension.log)
        ):
            size *= len(dimension.grid_points())
    return size


def best_possible_score(metric: str) -> float:
    """The highest score ``metric`` can give (``auto`` is accuracy or r2: 1)."""
    if metric in UNBOUNDED_SCORERS:
        return math.inf
    return 0.0 if metric.startswith("neg_") else 1.0


def _consistency_problems(
    config: ExecutionInput, allowed_packages: frozenset[str]
) -> list[tuple[tuple[str, ...], str]]:
    problems: list[tuple[tuple[str, ...], str]] = []
    if "." in config.model.estimator:
        try:
            check_allowed(config.model.estimator, allowed_packages)
        except NotAllowedError as error:
            problems.append((("model", "estimator"), str(error)))
    # A custom scorer is imported by the jobs: its package must be allowed as an estimator's is.
    field = ("metrics",) if config.metrics else ("metric",)
    for index, scorer in enumerate(config.metric_list):
        if scorer not in SCORERS and scorer != "auto":
            try:
                check_allowed(scorer.split(":", 1)[0], allowed_packages)
            except NotAllowedError as error:
                problems.append(((*field, str(index)) if config.metrics else field, str(error)))
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
            distinct = len(dimension.grid_points())
            if dimension.steps is not None and distinct < dimension.steps:
                kind = "whole numbers" if dimension.type == "int" else "floats"
                fix = f"set steps to {distinct}" if distinct > 1 else f"fix {name} in model.params"
                problems.append(
                    (
                        (*at, "steps"),
                        f"only {distinct} of the {dimension.steps} grid points from {low!r} to {high!r} are distinct "
                        f"{kind}, so the grid would repeat candidates: {fix} or widen the range",
                    )
                )
    problems += _splitting_problems(config)
    best = best_possible_score(config.refit_metric)
    if config.baseline is not None and config.baseline > best:
        metric = "auto (accuracy or r2)" if config.refit_metric == "auto" else config.refit_metric
        problems.append(
            (
                ("baseline",),
                f"{config.baseline:g} is above the best possible score of metric {metric}, {best:g}, so no model "
                "could pass: lower it, or leave it out to register the best model whatever its score",
            )
        )
    batch_size = config.tuning.batch_size or 0  # ExecutionInput fills it in
    problems += _budget_problems(config)
    size = grid_size(config.model.search_space)
    if (
        config.tuning.strategy == "grid"
        and size > config.tuning.max_candidates
        and not config.tuning.sample_grid
    ):
        problems.append(
            (
                ("tuning", "max_candidates"),
                f"the grid has {size} candidates but max_candidates is {config.tuning.max_candidates}: raise "
                "max_candidates, make the grid smaller, or set tuning.sample_grid to true to evaluate a seeded "
                "sample of it",
            )
        )
    if batch_size > config.tuning.max_candidates:
        problems.append(
            (
                ("tuning", "batch_size"),
                f"must be at most max_candidates (got {batch_size} > {config.tuning.max_candidates})",
            )
        )
    return problems


def _budget_problems(config: ExecutionInput) -> list[tuple[tuple[str, ...], str]]:
    """The search must fit one execution even when every fold fails (budgets.py): a candidate's child
    execution (its history grows per fold job, its output holds its fold results), and the tuning
    history (in AggregateScores' request). The parent's history grows per round: it fits at every
    setting the input allows (tests/functions/test_prepare_input.py holds that)."""
    search = search_size(config)
    k, candidates = config.cv.folds_per_candidate, config.tuning.max_candidates
    child_events, child_bytes = budgets.child_history_events(search), budgets.child_bytes(search)
    if child_events > budgets.HISTORY_LIMIT or child_bytes > budgets.PAYLOAD_LIMIT:
        too_big = []
        if child_events > budgets.HISTORY_LIMIT:
            too_big.append(
                f"can write up to {child_events:,} events to a candidate's execution history when fold jobs "
                f"fail or are retried, more than the {budgets.HISTORY_LIMIT:,} Step Functions keeps for one "
                "execution (history limit)"
            )
        if child_bytes > budgets.PAYLOAD_LIMIT:
            too_big.append(
                f"can return {child_bytes:,} bytes of fold results from a candidate's execution when folds "
                f"fail, more than Step Functions' {budgets.PAYLOAD_LIMIT:,} (payload limit)"
            )
        most = max(
            n
            for n in range(1, k)
            if budgets.child_bytes(dataclasses.replace(search, k=n)) <= budgets.PAYLOAD_LIMIT
            and budgets.child_history_events(dataclasses.replace(search, k=n)) <= budgets.HISTORY_LIMIT
        )
        return [
            (
                ("cv", "k"),
                f"{k} folds per candidate " + " and ".join(too_big) + f": use at most {most} folds per "
                "candidate (cv.k, times cv.repeats for repeated splitters, cv.max_folds for splitters whose "
                "number of splits the data decides)",
            )
        ]
    if budgets.largest_batch(search) < 1:
        fitting = max(
            (n for n in range(1, candidates) if budgets.largest_batch(_with_candidates(search, n)) >= 1),
            default=0,
        )
        return [
            (
                ("tuning", "max_candidates"),
                f"{candidates} candidates x {k} folds can grow the tuning history to "
                f"{budgets.largest_state_bytes(search, batch_size=1):,} bytes in one state when folds fail, more "
                f"than Step Functions' {budgets.PAYLOAD_LIMIT:,} (payload limit): lower tuning.max_candidates"
                + (f" to {fitting} or less at k={k}" if fitting else "")
                + ", or cv.k, or shorten the values in model.params and model.search_space; run the rest of "
                "the search in another execution",
            )
        ]
    if budgets.largest_state_bytes(search) > budgets.PAYLOAD_LIMIT:
        return [
            (
                ("tuning", "batch_size"),
                f"{config.tuning.batch_size} candidates x {k} folds in one round can grow a state to "
                f"{budgets.largest_state_bytes(search):,} bytes when folds fail, more than Step Functions' "
                f"{budgets.PAYLOAD_LIMIT:,} (payload limit): lower tuning.batch_size to "
                f"{budgets.largest_batch(search)} or less (more rounds run the same search)",
            )
        ]
    return []


def _with_candidates(search: budgets.Search, max_candidates: int) -> budgets.Search:
    return dataclasses.replace(
        search, max_candidates=max_candidates, batch_size=min(search.batch_size, max_candidates)
    )


def _splitting_problems(config: ExecutionInput) -> list[tuple[tuple[str, ...], str]]:
    """Settings that contradict each other: a splitter that would ignore the groups or the time order
    named, columns both used and left out, metrics given twice."""
    cv, dataset = config.cv, config.dataset
    problems: list[tuple[tuple[str, ...], str]] = []
    if cv.splitter in GROUP_SPLITTERS and not cv.group_column:
        problems.append(
            (("cv", "group_column"), f"required by {cv.splitter}: name the column of each row's group")
        )
    if cv.group_column and cv.splitter not in ("auto", *GROUP_SPLITTERS):
        problems.append(
            (
                ("cv", "splitter"),
                f"{cv.splitter} ignores cv.group_column, so a group's rows would be in training and test parts at "
                "once: use auto, GroupKFold, StratifiedGroupKFold or LeaveOneGroupOut",
            )
        )
    if cv.time_column and cv.splitter not in ("auto", "TimeSeriesSplit"):
        problems.append(
            (
                ("cv", "splitter"),
                f"{cv.splitter} does not keep time order: use auto or TimeSeriesSplit with cv.time_column",
            )
        )
    if cv.group_column and cv.time_column:
        problems.append((("cv", "time_column"), "a split is grouped or time-ordered, not both: remove one"))
    if dataset.features is not None and dataset.exclude:
        problems.append(
            (
                ("dataset", "exclude"),
                "dataset.features is set: list the columns to use, or those to leave out",
            )
        )
    for column in (dataset.target, cv.group_column, cv.time_column):
        if column and column in (dataset.features or []) and column == dataset.target:
            problems.append((("dataset", "features"), f"lists the target column {column!r}: remove it"))
    if config.metrics and config.metric != "auto":
        problems.append(
            (("metric",), "metrics is set too: give the one metric in metrics, or use metric alone")
        )
    if config.refit and config.refit not in config.metric_list:
        problems.append(
            (("refit",), f"{config.refit!r} is not one of metrics {config.metric_list}: name one of them")
        )
    return problems


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
        close = difflib.get_close_matches(str(detail["input"]).lower(), choices, n=1)
        message = f"must be one of {', '.join(map(repr, choices.values()))}" + (
            f": did you mean {choices[close[0]]!r}?" if close else ""
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
        if part in DIMENSION_TAGS:
            section = DIMENSION_TAGS[part]
        else:
            field = getattr(section, "model_fields", {}).get(part)
            section = field.annotation if field else None
    return section


# The members of pydantic's JsonValue union, which it reports as path steps: model.params.C.float
_JSON_TAGS = frozenset({"list", "dict", "str", "bool", "int", "float"})


def _without_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # Pydantic reports the union tag of a search dimension as a path step: model.search_space.C.range.low
    if loc[:2] == ("model", "search_space") and len(loc) > 3 and loc[3] in DIMENSION_TAGS:
        loc = loc[:3] + loc[4:]
    if loc[:2] in (("model", "params"), ("model", "search_space")):
        loc = loc[:3] + tuple(part for part in loc[3:] if part not in _JSON_TAGS)
    return loc


def _path(loc: tuple[Any, ...]) -> str:
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    return path or "(input)"


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
