"""``split``: the processing job that assigns every row of the dataset to one of k folds, once.

Environment: ``CV_TARGET`` (target column), ``CV_ESTIMATOR`` (short name or dotted path; decides
classification vs regression), ``CV_K`` (default 5), ``CV_SPLITTER`` (``auto`` | ``KFold`` |
``StratifiedKFold``, default auto), ``CV_SEED`` (default 0), ``CV_METRIC`` (``auto`` or a scorer
name, default auto), ``CV_PARAMS`` (comma-separated names of the hyperparameters the search sets,
checked against the estimator; default none), ``CV_HOLDOUT`` (fraction of rows held out from every
fold, fold id -1; default 0). Input: one CSV under ``processing/input/``. Output:
``processing/output/`` {X,y,folds}.npy + manifest.json, and a JSON summary in ``output/message``.

Everything that would fail every candidate is refused here, before any fit: the job is the first to
see the data next to the settings. Its messages name the execution input's fields (``cv.k``), which
set these variables.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.metrics import get_scorer
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from cvjobs.data import (
    HOLDOUT,
    SplitData,
    feature_matrix,
    find_csv,
    read_table,
    resolve_metric,
    save_split,
    target_vector,
)
from cvjobs.estimators import EstimatorSpec, check_parameter_names, resolve_estimator
from cvjobs.job import UserError, json_bytes, log, publish, quote_names, run_job

SPLITTERS = {"KFold": KFold, "StratifiedKFold": StratifiedKFold}
# Each fold is one training job per candidate, and the fold list must fit the 1 KiB exit message.
MAX_K = 100
# Tuning keeps the larger part of the rows: the holdout only checks the chosen candidate.
MAX_HOLDOUT = 0.5
MESSAGE_LIMIT = 1024
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
    estimator: EstimatorSpec
    metric: str
    holdout: float


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
        raise UserError("CV_TARGET is not set: name the target column of the CSV")
    estimator_name = environ.get("CV_ESTIMATOR", "").strip()
    if not estimator_name:
        raise UserError("CV_ESTIMATOR is not set: name the estimator, e.g. SVC")
    estimator = resolve_estimator(estimator_name)
    k = _int_setting(environ, "CV_K", "5", minimum=2, maximum=MAX_K)
    seed = _int_setting(environ, "CV_SEED", "0", minimum=0, maximum=2**32 - 1)
    holdout = _holdout_setting(environ)
    splitter = environ.get("CV_SPLITTER", "auto").strip()
    by_lower_name = {name.lower(): name for name in SPLITTERS}
    if splitter == "auto":
        splitter = "StratifiedKFold" if estimator.task == "classification" else "KFold"
    elif splitter.lower() in by_lower_name:
        splitter = by_lower_name[splitter.lower()]
    else:
        raise UserError(f"CV_SPLITTER={splitter!r} is not supported: use auto, {', '.join(SPLITTERS)}")
    if splitter == "StratifiedKFold" and estimator.task == "regression":
        raise UserError(
            f"cv.splitter: StratifiedKFold needs class labels but {estimator.name} is a regressor: "
            "set cv.splitter to KFold or auto"
        )
    check_parameter_names(estimator, filter(None, environ.get("CV_PARAMS", "").split(",")))
    metric = resolve_metric(environ.get("CV_METRIC", "auto"), estimator.task)
    check_metric_task(metric, estimator)
    return SplitConfig(target, k, splitter, seed, estimator, metric, holdout)


def check_metric_task(metric: str, estimator: EstimatorSpec) -> None:
    """Refuse a metric of the other task, or one that needs a prediction method the estimator lacks.

    A regression metric on class labels would score without complaint and mean nothing. The scorer's
    score function and response method are private attributes, stable since scikit-learn 1.4.
    """
    scorer = get_scorer(metric)
    metric_task = "regression" if scorer._score_func.__module__.endswith("._regression") else "classification"
    fix = f"set metric to auto or to {other_metrics(estimator.task, metric)}"
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


def check_metric_target(config: SplitConfig, y: np.ndarray) -> None:
    """Refuse a metric that cannot score this target, shown by scoring a constant model: a binary metric
    on three classes, pos_label=1 with text labels, a log error on negative values."""
    hint = ""
    if config.estimator.task == "classification":
        classes = np.unique(y)
        dummy, what = DummyClassifier(strategy="prior"), f"{len(classes)} classes"
        if len(classes) == 2 and 1 not in classes.tolist():
            hint = "; binary metrics score the class labelled 1: label the positive class 1 and the other 0"
    else:
        dummy, what = DummyRegressor(), f"values from {y.min():g} to {y.max():g}"
    X = np.zeros((len(y), 1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant model's scores are often undefined: not the point
            get_scorer(config.metric)(dummy.fit(X, y), X, y)
    except ValueError as exc:
        raise UserError(
            f"metric: {config.metric!r} cannot score target column {config.target!r} ({what}): {exc} - "
            f"set metric to auto or to {other_metrics(config.estimator.task, config.metric)}{hint}"
        ) from None


def other_metrics(task: str, metric: str) -> str:
    names = [name for name in METRICS_FOR[task] if name != metric]
    return f"a {task} metric such as {', '.join(names[:-1])} or {names[-1]}"


def _int_setting(environ: Mapping[str, str], name: str, default: str, *, minimum: int, maximum: int) -> int:
    text = environ.get(name, default).strip()
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


def check_splittable(y: np.ndarray, config: SplitConfig, source: str, lower: str = "cv.k") -> None:
    """Refuse rows that cannot make ``config.k`` folds; ``lower`` names the settings that would help."""
    if config.k > len(y):
        raise UserError(
            f"cv.k: {config.k} folds need at least {config.k} rows but {source} has {len(y)}: lower {lower}"
        )
    if config.estimator.task == "classification":
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise UserError(
                f"{source}: target column {config.target!r} has a single class ({classes.tolist()[0]!r}): "
                "a classifier needs two or more"
            )
        if config.splitter == "StratifiedKFold":
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
                    f"cv.k: StratifiedKFold with k={config.k} needs at least {config.k} rows of every class, "
                    f"but {source} has fewer for class(es) {', '.join(small[:20])}"
                    f"{' and more' if len(small) > 20 else ''}: lower {lower}, add rows, or merge or drop the rare "
                    f"classes{quantity}"
                )


def select_holdout(config: SplitConfig, y: np.ndarray, source: str) -> np.ndarray:
    """Indices of the ``config.holdout`` fraction of rows set aside from tuning, stratified for classifiers.

    Refused when stratifying is impossible or the rows left cannot make ``config.k`` folds.
    """
    stratify = y if config.estimator.task == "classification" else None
    if stratify is not None:
        classes, counts = np.unique(y, return_counts=True)
        single = [repr(label) for label, count in zip(classes.tolist(), counts, strict=True) if count < 2]
        if single:
            raise UserError(
                f"cv.holdout: a holdout stratified by class needs at least 2 rows of every class, but {source} has "
                f"one for class(es) {', '.join(single[:20])}{' and more' if len(single) > 20 else ''}: add rows, "
                "merge or drop the rare classes, or set cv.holdout to 0"
            )
        n_holdout = math.ceil(config.holdout * len(y))  # as train_test_split rounds a fractional test_size
        if n_holdout < len(classes):
            raise UserError(
                f"cv.holdout: {config.holdout:g} of the {len(y)} rows of {source} is {n_holdout} rows, fewer than "
                f"the {len(classes)} classes that a stratified holdout needs one row of each: raise cv.holdout or "
                "set it to 0"
            )
    tuning, holdout = train_test_split(
        np.arange(len(y)), test_size=config.holdout, shuffle=True, random_state=config.seed, stratify=stratify
    )
    check_splittable(
        y[tuning],
        config,
        f"{source} without its {len(holdout)} holdout rows (cv.holdout={config.holdout:g})",
        lower="cv.k or cv.holdout",
    )
    return holdout


def assign_folds(config: SplitConfig, X: np.ndarray, y: np.ndarray, source: str) -> np.ndarray:
    """Fold id per row: row i is in the validation part of fold ``folds[i]``, or in the holdout (``HOLDOUT``).

    The splitter sees the tuning rows in file order, so without a holdout the folds are exactly those
    of ``splitter.split(X, y)``, and with one those of ``splitter.split`` on the tuning rows.
    """
    folds = np.zeros(len(y), dtype=np.int64)
    if config.holdout:
        folds[select_holdout(config, y, source)] = HOLDOUT
    tuning = np.flatnonzero(folds != HOLDOUT)
    splitter = SPLITTERS[config.splitter](n_splits=config.k, shuffle=True, random_state=config.seed)
    for fold, (_, validation) in enumerate(splitter.split(X[tuning], y[tuning])):
        folds[tuning[validation]] = fold
    return folds


def _split(ml_root: Path, environ: Mapping[str, str]) -> None:
    config = read_config(environ)
    path = find_csv(ml_root / "processing" / "input")
    table = read_table(path)
    if config.target not in table.columns:
        raise UserError(
            f"dataset.target: target column {config.target!r} is not in {path.name}; its columns are "
            f"{quote_names(table.columns, 50)}"
        )
    features = [name for name in table.columns if name != config.target]
    if not features:
        raise UserError(f"{path.name} has no feature columns besides the target {config.target!r}")
    X = feature_matrix(table, features)
    y = target_vector(table, config.target, config.estimator.task)
    check_splittable(y, config, path.name)
    check_metric_target(config, y)
    folds = assign_folds(config, X, y, path.name)
    holdout_rows = int(np.count_nonzero(folds == HOLDOUT))

    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    classes = np.unique(y).tolist() if config.estimator.task == "classification" else None
    summary = {
        "task": config.estimator.task,
        "splitter": config.splitter,
        "metric": config.metric,
        "k": config.k,
        "folds": list(range(config.k)),
        "n_rows": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "target": config.target,
        "estimator": config.estimator.name,
        "holdout_rows": holdout_rows,
    }
    message = json_bytes(summary, indent=None)
    if len(message) >= MESSAGE_LIMIT:
        raise UserError(
            f"the job summary is {len(message)} bytes, over SageMaker's {MESSAGE_LIMIT}: "
            "shorten the target column name or the estimator path"
        )
    manifest = {
        **summary,
        "feature_names": features,
        "classes": classes,
        "seed": config.seed,
        "estimator_path": config.estimator.path,
        "holdout": config.holdout,
        "rows_per_fold": np.bincount(folds[folds != HOLDOUT], minlength=config.k).tolist(),
        "input": {"file": str(path.relative_to(ml_root / "processing" / "input")), "sha256": digest},
    }
    save_split(ml_root / "processing" / "output", SplitData(X=X, y=y, folds=folds, manifest=manifest))
    publish(ml_root / "output", {"message": message})
    log(
        "split",
        f"{summary['n_rows']} rows x {summary['n_features']} features -> {config.k} folds"
        f"{f' + {holdout_rows} holdout rows' if holdout_rows else ''} "
        f"({config.splitter}, {config.estimator.task}, metric {config.metric})",
    )


if __name__ == "__main__":
    cli()
