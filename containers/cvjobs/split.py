"""``split``: the processing job that reads the dataset once and writes it once, with its folds.

Environment (set from the execution input by PrepareInput; messages name the input's fields):
``CV_TARGET`` target column; ``CV_ESTIMATOR`` short name, dotted path or ``auto``; ``CV_TASK``
(``auto`` | ``classification`` | ``regression``); ``CV_SPLITTER`` a scikit-learn splitter name or
``auto``; ``CV_K``, ``CV_SEED``, ``CV_SHUFFLE``, ``CV_REPEATS``, ``CV_GAP``, ``CV_MAX_TRAIN_SIZE``,
``CV_TEST_SIZE``, ``CV_P``, ``CV_MAX_FOLDS``; ``CV_GROUP_COLUMN``, ``CV_TIME_COLUMN``; ``CV_FEATURES``
and ``CV_EXCLUDE`` (JSON lists of column names; values longer than SageMaker's 256 characters continue
in ``CV_FEATURES_1``, ``CV_FEATURES_2``...); ``CV_METRICS`` (JSON list) and ``CV_REFIT`` (or the older
single ``CV_METRIC``); ``CV_POS_LABEL`` (JSON); ``CV_CSV`` (JSON CSV options); ``CV_PARAMS``
(comma-separated hyperparameter names, checked against the estimator) and ``CV_VALUES`` (JSON
``{"params": fixed values, "search": {name: [values]}}``, checked by the estimator's own parameter
validation), both continued like ``CV_FEATURES``; ``CVPIPE_ALLOWED_PACKAGES`` (packages besides
scikit-learn that a dotted estimator name may come from); ``CV_HOLDOUT`` (fraction).

Input: one CSV (optionally gzipped) or Parquet file under ``processing/input/``. Output:
``processing/output/`` table.parquet (the feature and target columns, rows in time order when a
time column is given), folds.npz (``train_<s>``/``test_<s>`` row positions of every split in
scikit-learn's order, and ``holdout``) and manifest.json; a JSON summary in ``output/message``.

Everything that would fail every candidate is refused here, before any fit: the job is the first to
see the data next to the settings.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import sys
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn import model_selection
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.utils.multiclass import type_of_target

from cvjobs.allowlist import NotAllowedError, allowed_packages
from cvjobs.data import (
    CsvOptions,
    build_scorer,
    column_kind,
    find_dataset,
    is_custom_scorer,
    read_table,
    resolve_metric,
    save_split,
    target_values,
    to_frame,
)
from cvjobs.estimators import (
    AUTO_ESTIMATORS,
    EstimatorSpec,
    check_parameter_names,
    check_parameter_values,
    resolve_estimator,
)
from cvjobs.job import UserError, json_bytes, log, publish, quote_names, run_job

GROUPED = ("GroupKFold", "StratifiedGroupKFold", "LeaveOneGroupOut")
STRATIFIED = ("StratifiedKFold", "StratifiedGroupKFold", "RepeatedStratifiedKFold", "StratifiedShuffleSplit")
REPEATED = ("RepeatedKFold", "RepeatedStratifiedKFold")
SHUFFLED = ("KFold", "StratifiedKFold", "GroupKFold", "StratifiedGroupKFold")
EXHAUSTIVE = ("LeaveOneOut", "LeavePOut", "LeaveOneGroupOut")
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
# Each split is one training job per candidate, and the split list must fit the 1 KiB exit message.
MAX_FOLDS = 100
# Tuning keeps the larger part of the rows: the holdout only checks the chosen candidate.
MAX_HOLDOUT = 0.5
MESSAGE_LIMIT = 1024
MAX_METRICS = 16  # the definition declares validation:metric0..15 and train:metric0..15
# What to suggest when a metric cannot score the task's predictions.
METRICS_FOR = {
    "classification": ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_ovr"),
    "regression": ("r2", "neg_root_mean_squared_error", "neg_mean_absolute_error"),
}
ROLES = {"classification": "classifier", "regression": "regressor"}


@dataclass(frozen=True)
class SplitConfig:
    target: str
    k: int
    splitter: str
    seed: int
    estimator: EstimatorSpec | None  # None: "auto", chosen by the task the target shows
    metrics: list[str]
    refit: str
    holdout: float
    task: str = "auto"
    shuffle: bool = True
    repeats: int = 10
    gap: int = 0
    max_train_size: int | None = None
    test_size: int | float | None = None
    p: int = 2
    max_folds: int = 50
    group_column: str | None = None
    time_column: str | None = None
    features: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    pos_label: Any = None
    csv: CsvOptions = field(default_factory=CsvOptions)

    @property
    def metric(self) -> str:
        return self.refit


def main(ml_root: Path = Path("/opt/ml"), environ: Mapping[str, str] | None = None) -> int:
    ml_root = Path(ml_root)
    environ = os.environ if environ is None else environ
    return run_job("split", ml_root, lambda: _split(ml_root, environ))


def cli() -> None:
    sys.exit(main())


def read_config(environ: Mapping[str, str]) -> SplitConfig:
    """Check the whole environment before touching the data: configuration errors come first."""
    target = environ.get("CV_TARGET", "").strip()
    if not target:
        raise UserError("CV_TARGET is not set: name the target column of the table")
    estimator_name = environ.get("CV_ESTIMATOR", "").strip()
    if not estimator_name:
        raise UserError("CV_ESTIMATOR is not set: name the estimator, e.g. SVC, or auto")
    try:
        allowed = allowed_packages(environ)
    except NotAllowedError as exc:
        raise UserError(str(exc)) from None
    estimator = None if estimator_name.lower() == "auto" else resolve_estimator(estimator_name, allowed)
    task = environ.get("CV_TASK", "auto").strip() or "auto"
    if task not in ("auto", "classification", "regression"):
        raise UserError(f"task: CV_TASK={task!r} must be auto, classification or regression")
    if estimator and task not in ("auto", estimator.task):
        raise UserError(
            f"task: {task} was asked for but {estimator.name} is a {ROLES[estimator.task]}: choose a "
            f"{ROLES[task]} as model.estimator, or set task to auto"
        )
    max_folds = _int_setting(environ, "CV_MAX_FOLDS", "50", minimum=2, maximum=MAX_FOLDS)
    k = _int_setting(environ, "CV_K", "5", minimum=2, maximum=MAX_FOLDS)
    seed = _int_setting(environ, "CV_SEED", "0", minimum=0, maximum=2**32 - 1)
    holdout = _holdout_setting(environ)
    splitter = environ.get("CV_SPLITTER", "auto").strip()
    by_lower_name = {name.lower(): name for name in SPLITTERS}
    group_column = environ.get("CV_GROUP_COLUMN", "").strip() or None
    time_column = environ.get("CV_TIME_COLUMN", "").strip() or None
    if splitter != "auto":
        if splitter.lower() not in by_lower_name:
            close = difflib.get_close_matches(splitter, SPLITTERS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(
                f"cv.splitter: CV_SPLITTER={splitter!r} is not supported: {hint}use auto, {', '.join(SPLITTERS)}"
            )
        splitter = by_lower_name[splitter.lower()]
    metrics = _json_setting(environ, "CV_METRICS", None)
    if metrics is None:
        metrics = [environ.get("CV_METRIC", "auto")]
    if not (isinstance(metrics, list) and metrics and all(isinstance(m, str) for m in metrics)):
        raise UserError(
            f"metrics: CV_METRICS must be a non-empty JSON list of scorer names (got {metrics!r})"
        )
    if len(metrics) > MAX_METRICS or len(set(metrics)) != len(metrics):
        raise UserError(
            f"metrics: give at most {MAX_METRICS} distinct metrics (got {len(metrics)}: {metrics})"
        )
    refit = environ.get("CV_REFIT", "").strip() or metrics[0]
    if refit not in metrics:
        raise UserError(f"refit: {refit!r} is not one of metrics {quote_names(metrics)}: name one of them")
    test_size = _json_setting(environ, "CV_TEST_SIZE", None)
    if test_size is not None and (
        isinstance(test_size, bool)
        or not isinstance(test_size, int | float)
        or (isinstance(test_size, float) and not 0 < test_size < 1)
        or (test_size < 1 and isinstance(test_size, int))
    ):
        raise UserError(
            f"cv.test_size: {test_size!r} must be a fraction between 0 and 1, or a number of rows"
        )
    features = _json_setting(environ, "CV_FEATURES", None)
    exclude = _json_setting(environ, "CV_EXCLUDE", [])
    for name, names in (("dataset.features", features), ("dataset.exclude", exclude)):
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise UserError(f"{name}: must be a JSON list of column names (got {names!r})")
    if features is not None and exclude:
        raise UserError(
            "dataset.features and dataset.exclude are both set: give the columns to use, or those to leave out"
        )
    max_train_size = _int_setting(environ, "CV_MAX_TRAIN_SIZE", "0", minimum=0, maximum=2**62)
    config = SplitConfig(
        target=target,
        k=k,
        splitter=splitter,
        seed=seed,
        estimator=estimator,
        metrics=metrics,
        refit=refit,
        holdout=holdout,
        task=task,
        shuffle=_json_setting(environ, "CV_SHUFFLE", True) is not False,
        repeats=_int_setting(environ, "CV_REPEATS", "10", minimum=1, maximum=MAX_FOLDS),
        gap=_int_setting(environ, "CV_GAP", "0", minimum=0, maximum=2**62),
        max_train_size=max_train_size or None,
        test_size=test_size,
        p=_int_setting(environ, "CV_P", "2", minimum=1, maximum=MAX_FOLDS),
        max_folds=max_folds,
        group_column=group_column,
        time_column=time_column,
        features=features,
        exclude=exclude,
        pos_label=_json_setting(environ, "CV_POS_LABEL", None),
        csv=CsvOptions.from_json(environ.get("CV_CSV", "")),
    )
    if estimator:
        params = _chunked_setting(environ, "CV_PARAMS").split(",")
        check_parameter_names(estimator, [name for name in map(_estimator_parameter, params) if name])
        values = _json_setting(environ, "CV_VALUES", {})
        fixed, searched = (_estimator_parameters(values.get(part, {})) for part in ("params", "search"))
        check_parameter_values(estimator, fixed, searched)
    return config


def _estimator_parameter(name: str) -> str | None:
    """The estimator's own parameter that a hyperparameter name sets (``C``, ``estimator__C``), else None
    (a preprocessing step's, checked when the pipeline is built)."""
    name = name.strip().removeprefix("estimator__")
    return name if name and "__" not in name else None


def _estimator_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` of the estimator's own parameters, by their names on the estimator."""
    named = ((_estimator_parameter(name), value) for name, value in values.items())
    return {name: value for name, value in named if name}


def _chunked_setting(environ: Mapping[str, str], name: str) -> str:
    """A value continued in NAME_1, NAME_2... past SageMaker's 256 characters per value."""
    parts, index = [environ.get(name, "")], 1
    while f"{name}_{index}" in environ:
        parts.append(environ[f"{name}_{index}"])
        index += 1
    return "".join(parts)


def _json_setting(environ: Mapping[str, str], name: str, default: Any) -> Any:
    """A JSON value, continued in NAME_1, NAME_2... past SageMaker's 256 characters per value."""
    if not environ.get(name, "").strip():
        return default
    text = _chunked_setting(environ, name)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"{name}={_shorten(text)!r} is not valid JSON") from None


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_task(config: SplitConfig, y_column: pa.ChunkedArray) -> tuple[str, EstimatorSpec]:
    """The task (the estimator's, the one asked for, or what the target shows) and the estimator."""
    if config.estimator is not None:
        return config.estimator.task, config.estimator
    task = config.task
    if task == "auto":
        if column_kind(y_column) == "categorical":
            task = "classification"
        else:
            kind = type_of_target(y_column.to_numpy(zero_copy_only=False))
            task = "regression" if kind.startswith("continuous") else "classification"
    return task, resolve_estimator(AUTO_ESTIMATORS[task])


def check_metric_task(metric: str, estimator: EstimatorSpec) -> None:
    """Refuse a metric of the other task, or one that needs a prediction method the estimator lacks.

    A regression metric on class labels would score without complaint and mean nothing. The scorer's
    score function and response method are private attributes, stable since scikit-learn 1.4.
    """
    if is_custom_scorer(metric):
        return  # a custom scorer: the user's to match to the task
    from sklearn.metrics import get_scorer

    scorer = get_scorer(metric)
    metric_task = "regression" if scorer._score_func.__module__.endswith("._regression") else "classification"
    fix = f"set metrics to auto or to {other_metrics(estimator.task, metric)}"
    if metric_task != estimator.task:
        raise UserError(
            f"metric: {metric!r} scores {metric_task} but {estimator.name} is a {ROLES[estimator.task]}: {fix}"
        )
    methods = scorer._response_method
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    # Checked on the class: SVC's predict_proba depends on its probability parameter, checked at fit.
    if not any(hasattr(estimator.cls, method) for method in methods):
        raise UserError(
            f"metric: {metric!r} needs {' or '.join(methods)}, which {estimator.name} lacks: {fix}"
        )


def check_metric_target(config: SplitConfig, metric: str, task: str, y: np.ndarray) -> None:
    """Refuse a metric that cannot score this target, shown by scoring a constant model: a binary metric
    on three classes, a positive label the target lacks, a log error on negative values."""
    hint = ""
    if task == "classification":
        classes = np.unique(y)
        dummy, what = DummyClassifier(strategy="prior"), f"{len(classes)} classes"
        if len(classes) == 2 and config.pos_label is None and 1 not in classes.tolist():
            hint = f"; binary metrics score the class labelled 1 by default: set pos_label to one of {classes.tolist()}"
    else:
        dummy, what = DummyRegressor(), f"values from {y.min():g} to {y.max():g}"
    X = np.zeros((len(y), 1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant model's scores are often undefined: not the point
            build_scorer(metric, config.pos_label)(dummy.fit(X, y), X, y)
    except ValueError as exc:
        raise UserError(
            f"metric: {metric!r} cannot score target column {config.target!r} ({what}): {exc} - "
            f"set metrics to auto or to {other_metrics(task, metric)}{hint}"
        ) from None


def other_metrics(task: str, metric: str) -> str:
    names = [name for name in METRICS_FOR[task] if name != metric]
    return f"a {task} metric such as {', '.join(names[:-1])} or {names[-1]}"


def _int_setting(environ: Mapping[str, str], name: str, default: str, *, minimum: int, maximum: int) -> int:
    text = environ.get(name, default).strip() or default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        raise UserError(f"{name}={text!r} must be an integer from {minimum} to {maximum}")
    return value


def _holdout_setting(environ: Mapping[str, str]) -> float:
    text = environ.get("CV_HOLDOUT", "0").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # refused below with the same message
    if not 0 <= value < MAX_HOLDOUT:
        raise UserError(
            f"cv.holdout: CV_HOLDOUT={text!r} must be a number from 0 up to but not including {MAX_HOLDOUT}: "
            "the fraction of rows to hold out from tuning, 0 for none"
        )
    return value


def resolve_splitter(config: SplitConfig, task: str) -> str:
    """``auto``: grouped, time-ordered or stratified as the settings say; refuse a splitter that would
    ignore the group or time column the user named (the grouped leak this guards against is silent)."""
    if config.splitter == "auto":
        if config.group_column:
            return "GroupKFold"
        if config.time_column:
            return "TimeSeriesSplit"
        return "StratifiedKFold" if task == "classification" else "KFold"
    if config.splitter in STRATIFIED and task == "regression":
        raise UserError(
            f"cv.splitter: {config.splitter} needs class labels but the task is regression: set cv.splitter to "
            f"{config.splitter.replace('Stratified', '') or 'KFold'} or auto"
        )
    if config.splitter in GROUPED and not config.group_column:
        raise UserError(
            f"cv.group_column: {config.splitter} splits by group: name the column that holds each row's group"
        )
    if config.group_column and config.splitter not in GROUPED:
        raise UserError(
            f"cv.splitter: {config.splitter} ignores cv.group_column {config.group_column!r}, so rows of one group "
            "would be in training and test folds at once: use GroupKFold, StratifiedGroupKFold or LeaveOneGroupOut"
        )
    if config.time_column and config.splitter != "TimeSeriesSplit":
        raise UserError(
            f"cv.splitter: {config.splitter} does not keep time order, so cv.time_column {config.time_column!r} "
            "would be ignored: use TimeSeriesSplit, or leave cv.time_column out"
        )
    return config.splitter


def make_splitter(config: SplitConfig, name: str) -> Any:
    """The scikit-learn splitter ``name`` with the settings that apply to it."""
    cls = getattr(model_selection, name)
    seed = config.seed
    if name in SHUFFLED:
        return cls(n_splits=config.k, shuffle=config.shuffle, random_state=seed if config.shuffle else None)
    if name in REPEATED:
        return cls(n_splits=config.k, n_repeats=config.repeats, random_state=seed)
    if name == "TimeSeriesSplit":
        return cls(
            n_splits=config.k,
            max_train_size=config.max_train_size,
            test_size=config.test_size,
            gap=config.gap,
        )
    if name in ("ShuffleSplit", "StratifiedShuffleSplit"):
        return cls(n_splits=config.k, test_size=config.test_size, random_state=seed)
    if name == "LeavePOut":
        return cls(p=config.p)
    return cls()


def check_splittable(
    config: SplitConfig, splitter: str, task: str, y: np.ndarray, source: str, lower: str = "cv.k"
) -> None:
    """Refuse rows that cannot make ``config.k`` folds; ``lower`` names the settings that would help."""
    if splitter in (
        "KFold",
        "StratifiedKFold",
        "RepeatedKFold",
        "RepeatedStratifiedKFold",
    ) and config.k > len(y):
        raise UserError(
            f"cv.k: {config.k} folds need at least {config.k} rows but {source} has {len(y)}: lower {lower}"
        )
    if task == "classification":
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise UserError(
                f"{source}: target column {config.target!r} has a single class ({classes.tolist()[0]!r}): "
                "a classifier needs two or more"
            )
        if splitter in ("StratifiedKFold", "RepeatedStratifiedKFold"):
            small = [
                f"{label!r} ({count})"
                for label, count in zip(classes.tolist(), counts, strict=True)
                if count < config.k
            ]
            if small:
                # More classes than a fold has rows: likely a quantity read as class labels.
                quantity = (
                    f"; if {config.target!r} is a quantity rather than a class, choose a regressor"
                    if y.dtype.kind == "i" and len(classes) > len(y) / config.k
                    else ""
                )
                raise UserError(
                    f"cv.k: {splitter} with k={config.k} needs at least {config.k} rows of every class, "
                    f"but {source} has fewer for class(es) {', '.join(small[:20])}"
                    f"{' and more' if len(small) > 20 else ''}: lower {lower}, add rows, or merge or drop the rare "
                    f"classes{quantity}"
                )


def select_holdout(
    config: SplitConfig, task: str, y: np.ndarray, groups: np.ndarray | None, source: str
) -> np.ndarray:
    """Positions of the ``config.holdout`` fraction of rows set aside from tuning.

    Whole groups when the rows are grouped, the last rows when they are in time order, else a
    shuffled sample stratified for classifiers.
    """
    n = len(y)
    if config.time_column:
        return np.arange(n - math.ceil(config.holdout * n), n)
    if groups is not None:
        splitter = model_selection.GroupShuffleSplit(
            n_splits=1, test_size=config.holdout, random_state=config.seed
        )
        try:
            _, holdout = next(splitter.split(np.zeros(n), y, groups))
        except ValueError as exc:
            raise UserError(f"cv.holdout: {exc}: raise cv.holdout or set it to 0") from None
        return np.sort(holdout)
    stratify = y if task == "classification" else None
    if stratify is not None:
        classes, counts = np.unique(y, return_counts=True)
        single = [repr(label) for label, count in zip(classes.tolist(), counts, strict=True) if count < 2]
        if single:
            raise UserError(
                f"cv.holdout: a holdout stratified by class needs at least 2 rows of every class, but {source} has "
                f"one for class(es) {', '.join(single[:20])}{' and more' if len(single) > 20 else ''}: add rows, "
                "merge or drop the rare classes, or set cv.holdout to 0"
            )
        n_holdout = math.ceil(config.holdout * n)  # as train_test_split rounds a fractional test_size
        if n_holdout < len(classes):
            raise UserError(
                f"cv.holdout: {config.holdout:g} of the {n} rows of {source} is {n_holdout} rows, fewer than "
                f"the {len(classes)} classes that a stratified holdout needs one row of each: raise cv.holdout or "
                "set it to 0"
            )
    _, holdout = model_selection.train_test_split(
        np.arange(n), test_size=config.holdout, shuffle=True, random_state=config.seed, stratify=stratify
    )
    return holdout


def assign_folds(
    config: SplitConfig, splitter_name: str, task: str, y: np.ndarray, groups: np.ndarray | None, source: str
) -> dict[str, np.ndarray]:
    """Row positions of every split's training and test parts, and of the holdout.

    The splitter sees the tuning rows in table order, so without a holdout the splits are exactly those
    of ``splitter.split(X, y, groups)``, and with one those of ``splitter.split`` on the tuning rows.
    """
    n = len(y)
    holdout = (
        select_holdout(config, task, y, groups, source) if config.holdout else np.zeros(0, dtype=np.int64)
    )
    tuning = np.setdiff1d(np.arange(n), holdout, assume_unique=True)
    y_tuning = y[tuning]
    groups_tuning = None if groups is None else groups[tuning]
    lower = "cv.k or cv.holdout" if config.holdout else "cv.k"
    where = (
        f"{source} without its {len(holdout)} holdout rows (cv.holdout={config.holdout:g})"
        if config.holdout
        else source
    )
    check_splittable(config, splitter_name, task, y_tuning, where, lower)
    splitter = make_splitter(config, splitter_name)
    X = np.zeros((len(tuning), 1))  # splitters look only at the number of rows, y and groups
    try:
        n_splits = splitter.get_n_splits(X, y_tuning, groups_tuning)
        if n_splits > config.max_folds:
            raise UserError(
                f"cv.max_folds: {splitter_name} makes {n_splits} splits of {where}, more than cv.max_folds="
                f"{config.max_folds} (each split is one training job per candidate): choose a splitter with fewer "
                f"splits such as KFold or GroupKFold, or raise cv.max_folds (at most {MAX_FOLDS})"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # e.g. a class too rare for StratifiedKFold's k
            splits = list(splitter.split(X, y_tuning, groups_tuning))
    except (ValueError, UserWarning) as exc:
        raise UserError(f"cv.splitter: {splitter_name} cannot split {where}: {exc}") from None
    dtype = np.int32 if n < 2**31 else np.int64
    folds: dict[str, np.ndarray] = {"holdout": holdout.astype(dtype)}
    for index, (train, test) in enumerate(splits):
        if len(train) == 0 or len(test) == 0:
            raise UserError(
                f"cv.splitter: split {index} of {splitter_name} has no {'training' if len(test) else 'test'} rows"
            )
        folds[f"train_{index}"] = tuning[train].astype(dtype)
        folds[f"test_{index}"] = tuning[test].astype(dtype)
    return folds


def select_features(config: SplitConfig, columns: list[str], source: str) -> list[str]:
    """The feature columns: ``dataset.features``, or every column but the target, the group and time
    columns and ``dataset.exclude``."""
    named = {
        "dataset.target": [config.target],
        "dataset.exclude": config.exclude,
        "dataset.features": config.features or [],
    }
    named["cv.group_column"] = [config.group_column] if config.group_column else []
    named["cv.time_column"] = [config.time_column] if config.time_column else []
    for setting, names in named.items():
        unknown = [name for name in names if name not in columns]
        if unknown:
            hints = [
                f"{name!r}"
                + (
                    f" (did you mean {close[0]!r}?)"
                    if (close := difflib.get_close_matches(name, columns, n=1))
                    else ""
                )
                for name in unknown
            ]
            raise UserError(
                f"{setting}: column(s) {', '.join(hints)} not in {source}; its columns are {quote_names(columns, 50)}"
            )
    if config.features is not None:
        if config.target in config.features:
            raise UserError(f"dataset.features: lists the target column {config.target!r}: remove it")
        features = list(dict.fromkeys(config.features))
    else:
        left_out = {config.target, config.group_column, config.time_column, *config.exclude}
        features = [name for name in columns if name not in left_out]
    if not features:
        raise UserError(
            f"{source} has no feature columns besides the target {config.target!r} and the columns left out"
        )
    return features


def check_feature_kinds(table: pa.Table, features: list[str], source: str) -> dict[str, list[str]]:
    """Features by kind; refuse columns that are all empty or neither numbers nor text."""
    kinds: dict[str, list[str]] = {"numeric": [], "categorical": [], "empty": [], "other": []}
    for name in features:
        column = table.column(name)
        kind = column_kind(column)
        if kind != "empty" and column.null_count == len(column):
            kind = "empty"
        kinds[kind].append(name)
    if kinds["empty"]:
        raise UserError(
            f"{source}: feature column(s) {quote_names(kinds['empty'])} are empty: drop them or list them in dataset.exclude"
        )
    if kinds["other"]:
        described = ", ".join(f"{name!r} ({table.column(name).type})" for name in kinds["other"][:10])
        raise UserError(
            f"{source}: feature column(s) {described} are neither numbers nor text: convert them, list them in "
            "dataset.exclude, or name a date column as cv.time_column"
        )
    infinite = [
        (name, row) for name in kinds["numeric"] if (row := first_infinite(table.column(name))) is not None
    ]
    if infinite:
        name, row = infinite[0]
        raise UserError(
            f"{source}: feature column(s) {quote_names([name for name, _ in infinite])} hold infinite numbers (e.g. "
            f"{table.column(name)[row].as_py()!r} on data row {row + 1}): replace them with finite values or drop those rows"
        )
    return {"numeric": kinds["numeric"], "categorical": kinds["categorical"]}


def first_infinite(column: pa.ChunkedArray) -> int | None:
    """The row of the first infinite number ("inf", "1e999") in a numeric column, or None."""
    if not pa.types.is_floating(column.type):
        return None
    infinite = pc.fill_null(pc.is_inf(column), False)
    return pc.index(infinite, True).as_py() if pc.any(infinite).as_py() else None


def target_vector(table: pa.Table, config: SplitConfig, task: str, source: str) -> np.ndarray:
    column = table.column(config.target)
    if column.null_count:
        first = pc.index(pc.is_null(column), True).as_py()
        raise UserError(
            f"{source}: target column {config.target!r} is empty on {column.null_count} rows (first: data row "
            f"{first + 1}): drop those rows before the run"
        )
    kind = column_kind(column)
    row = first_infinite(column)
    if row is not None:
        raise UserError(
            f"{source}: target column {config.target!r} holds infinite numbers (e.g. {column[row].as_py()!r} on data "
            f"row {row + 1}): replace them with finite values or drop those rows"
        )
    if task == "regression" and kind != "numeric":
        example = column.drop_null()[0].as_py()
        raise UserError(
            f"{source}: target column {config.target!r} is not numeric (e.g. {example!r}) but the task is "
            "regression: choose a classifier or a numeric target"
        )
    if task == "classification" and kind == "numeric" and pa.types.is_floating(column.type):
        values = column.to_numpy()
        fractional = np.flatnonzero(values != np.round(values))
        if fractional.size:
            # Every distinct measurement would be a class of its own.
            raise UserError(
                f"{source}: target column {config.target!r} holds fractional numbers (e.g. {values[fractional[0]]!r} "
                f"on data row {fractional[0] + 1}) but the task is classification: choose a regressor, or give the "
                "classes as integers or text"
            )
    return target_values(to_frame(table.select([config.target]))[config.target], task)


def order_by_time(table: pa.Table, config: SplitConfig, source: str) -> pa.Table:
    """The rows sorted by ``cv.time_column``, ties kept in file order (a stable sort)."""
    column = table.column(config.time_column)
    if column.null_count:
        raise UserError(
            f"{source}: cv.time_column {config.time_column!r} is empty on {column.null_count} rows: fill or drop them"
        )
    order = np.argsort(column.to_numpy(zero_copy_only=False), kind="stable")
    return table.take(pa.array(order))


def group_labels(table: pa.Table, config: SplitConfig, source: str) -> np.ndarray | None:
    if not config.group_column:
        return None
    column = table.column(config.group_column)
    if column.null_count:
        raise UserError(
            f"{source}: cv.group_column {config.group_column!r} is empty on {column.null_count} rows: fill or drop them"
        )
    return column.to_numpy(zero_copy_only=False)


def _sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _split(ml_root: Path, environ: Mapping[str, str]) -> None:
    config = read_config(environ)
    path = find_dataset(ml_root / "processing" / "input")
    source = path.name
    # The input's digest is computed while pyarrow parses it (both release the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(_sha256, path)
        table = read_table(path, config.csv)
    columns = table.column_names
    if config.target not in columns:
        raise UserError(
            f"dataset.target: target column {config.target!r} is not in {source}; its columns are "
            f"{quote_names(columns, 50)}"
        )
    features = select_features(config, columns, source)
    kinds = check_feature_kinds(table, features, source)
    task, estimator = resolve_task(config, table.column(config.target))
    splitter_name = resolve_splitter(config, task)
    metrics = [resolve_metric(metric, task) for metric in config.metrics]
    refit = metrics[config.metrics.index(config.refit)]
    for metric in metrics:
        check_metric_task(metric, estimator)
    if config.time_column:
        table = order_by_time(table, config, source)
    y = target_vector(table, config, task, source)
    for metric in metrics:
        check_metric_target(config, metric, task, y)
    if (
        config.pos_label is not None
        and task == "classification"
        and config.pos_label not in np.unique(y).tolist()
    ):
        raise UserError(
            f"pos_label: {config.pos_label!r} is not a class of target column {config.target!r}; its classes are "
            f"{np.unique(y).tolist()[:20]}"
        )
    groups = group_labels(table, config, source)
    folds = assign_folds(config, splitter_name, task, y, groups, source)
    n_splits = (len(folds) - 1) // 2
    holdout_rows = len(folds["holdout"])

    summary = {
        "task": task,
        "splitter": splitter_name,
        "metric": refit,
        "metrics": metrics,
        "k": n_splits,
        "folds": list(range(n_splits)),
        "n_rows": table.num_rows,
        "n_features": len(features),
        "target": config.target,
        "estimator": estimator.name,
        "holdout_rows": holdout_rows,
    }
    message = json_bytes(summary, indent=None)
    if len(message) >= MESSAGE_LIMIT:
        raise UserError(
            f"the job summary is {len(message)} bytes, over SageMaker's {MESSAGE_LIMIT}: use fewer splits (cv.k) "
            "or metrics, or shorten the target column name or the estimator or scorer paths"
        )
    classes = np.unique(y).tolist() if task == "classification" else None
    manifest = {
        **summary,
        "feature_names": features,
        "numeric_features": kinds["numeric"],
        "categorical_features": kinds["categorical"],
        "classes": classes,
        "pos_label": config.pos_label,
        "seed": config.seed,
        "estimator_path": estimator.path,
        "holdout": config.holdout,
        "group_column": config.group_column,
        "time_column": config.time_column,
        "test_rows_per_split": [len(folds[f"test_{s}"]) for s in range(n_splits)],
        "input": {"file": str(path.relative_to(ml_root / "processing" / "input")), "sha256": digest.result()},
    }
    kept = table.select([*features, config.target])
    save_split(ml_root / "processing" / "output", kept, folds, manifest)
    publish(ml_root / "output", {"message": message})
    log(
        "split",
        f"{table.num_rows} rows x {len(features)} features ({len(kinds['categorical'])} categorical) -> "
        f"{n_splits} splits{f' + {holdout_rows} holdout rows' if holdout_rows else ''} "
        f"({splitter_name}, {task}, metrics {', '.join(metrics)}; refit {refit})",
    )


if __name__ == "__main__":
    cli()
