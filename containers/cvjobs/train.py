"""``train``: the training job that fits one candidate on one fold (or on every row) and scores it.

Hyperparameters (``input/config/hyperparameters.json``, all strings): control keys ``cv_estimator``
(default: the split's estimator), ``cv_metric`` (the metric that chooses; default auto = the split's
refit metric), ``cv_scaler`` (the numeric scaler unless ``cv_preprocessing`` sets one),
``cv_preprocessing`` (JSON, see ``cvjobs.preprocessing``), ``cv_seed`` (default: the split's seed),
``cv_fold`` (absent or ``null``: fit on every row, holdout included; a split id s: fit on its training
rows, score its test rows; ``holdout``: fit on every tuning row, score the holdout rows) and
``cv_train_score`` (default false: as in scikit-learn's ``cross_validate``, scoring the training rows
costs about as much as the fit, so fold jobs skip it unless asked). Every other key is a
hyperparameter given as JSON text (or a plain string when it is not valid JSON): a bare name is the
estimator's, a ``step__param`` name is the pipeline's (``select__k``, ``preprocess__numeric__impute__strategy``).
Channel ``train``: the split job's output. Prints ``validation:score=`` and ``train:score=`` (the refit
metric), ``validation:metric<i>=`` and ``train:metric<i>=`` (the i-th of the split's other metrics),
``fit_time=`` and ``score_time=`` lines; writes ``model/metadata.json``, ``output/data/metrics.json``
and, when fitting on every row, ``model/model.joblib`` (a fold's model is never used, so it is not kept).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn

from cvjobs.allowlist import NotAllowedError, allowed_packages
from cvjobs.data import (
    HOLDOUT_FOLD,
    SplitData,
    build_scorer,
    is_custom_scorer,
    load_split_cached,
    resolve_metric,
    score,
)
from cvjobs.estimators import EstimatorSpec, make_estimator, resolve_estimator
from cvjobs.job import Content, UserError, json_bytes, publish, quote_names, run_job
from cvjobs.preprocessing import SCALERS, Preprocessing, build_pipeline, numeric_transformers

IMPUTER_PARAMS = "preprocess__numeric__impute"
CONTROL_KEYS = (
    "cv_estimator",
    "cv_metric",
    "cv_scaler",
    "cv_preprocessing",
    "cv_seed",
    "cv_fold",
    "cv_train_score",
)


@dataclass(frozen=True)
class TrainConfig:
    estimator: str | None
    metric: str
    scaler: str
    preprocessing: Preprocessing
    seed: int | None
    fold: int | str | None  # a fold id, HOLDOUT_FOLD, or None for every row
    train_score: bool
    params: dict[str, Any]


def main(ml_root: Path = Path("/opt/ml")) -> int:
    ml_root = Path(ml_root)
    return run_job("train", ml_root, lambda: _train(ml_root))


def cli() -> None:
    sys.exit(main())


def decode_value(text: Any) -> Any:
    """A hyperparameter value: JSON text when it parses (``"1.0"`` -> 1.0, ``"true"`` -> True,
    ``"null"`` -> None, ``'"rbf"'`` -> "rbf"), else the raw string, so console-typed ``rbf`` works."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_hyperparameters(raw: dict[str, Any]) -> TrainConfig:
    values = {key: decode_value(value) for key, value in raw.items()}
    unknown = sorted(key for key in values if key.startswith("cv_") and key not in CONTROL_KEYS)
    if unknown:
        raise UserError(
            f"unknown control hyperparameter(s) {quote_names(unknown)}: known are {', '.join(CONTROL_KEYS)}"
        )
    scaler = values.get("cv_scaler", "StandardScaler")
    scaler = "none" if scaler is None else str(scaler)
    matched = [name for name in SCALERS if name.lower() == scaler.lower()]
    if not matched:
        raise UserError(f"cv_scaler={raw['cv_scaler']!r} is not supported: use {' or '.join(SCALERS)}")
    return TrainConfig(
        estimator=_optional_text(values, "cv_estimator"),
        metric=_optional_text(values, "cv_metric") or "auto",
        scaler=matched[0],
        preprocessing=Preprocessing.parse(values.get("cv_preprocessing"), matched[0]),
        seed=_optional_int(values, raw, "cv_seed", maximum=2**32 - 1),
        fold=_fold(values, raw),
        train_score=_flag(values, raw, "cv_train_score"),
        params={key: value for key, value in values.items() if key not in CONTROL_KEYS},
    )


def _optional_text(values: dict[str, Any], key: str) -> str | None:
    value = values.get(key)
    return None if value is None else str(value).strip()


def _optional_int(
    values: dict[str, Any], raw: dict[str, Any], key: str, maximum: int | None, alternative: str = ""
) -> int | None:
    value = values.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (maximum and value > maximum):
        raise UserError(f"{key}={raw[key]!r} must be a non-negative integer{alternative}")
    return value


def _fold(values: dict[str, Any], raw: dict[str, Any]) -> int | str | None:
    if values.get("cv_fold") == HOLDOUT_FOLD:
        return HOLDOUT_FOLD
    return _optional_int(values, raw, "cv_fold", maximum=None, alternative=f" or {HOLDOUT_FOLD}")


def _flag(values: dict[str, Any], raw: dict[str, Any], key: str) -> bool:
    value = values.get(key, False)
    if not isinstance(value, bool):
        raise UserError(f"{key}={raw[key]!r} must be true or false")
    return value


def read_hyperparameters(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}  # SageMaker always writes it; a local run without hyperparameters may not
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path.name} must hold a JSON object of hyperparameters")
    return raw


@dataclass
class FittedFold:
    """A fitted model and the rows it was fitted on (``train``) and is scored on (``test``)."""

    model: Any  # what is scored (and kept): the fitted pipeline, or the lean path's estimator
    spec: EstimatorSpec
    X: Any  # the features it was fitted on and is scored on: a DataFrame, or their array
    train: np.ndarray
    test: np.ndarray | None
    params: dict[str, Any]
    fit_time: float
    # The lean path's: the array's columns it starts from, and its fitted steps before the estimator.
    columns: list[int] | None = None
    transformers: list[Any] = field(default_factory=list)

    def features(self, rows: np.ndarray) -> Any:
        """The features of these rows, as ``model`` takes them."""
        if self.columns is None:
            return take(self.X, rows)
        X = take(self.X, rows)[:, self.columns]
        for transformer in self.transformers:
            X = transformer.transform(X)
        return X


def rows_of(split: SplitData, fold: int | str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Row positions to fit on and to score, in scikit-learn's order.

    ``None`` fits on every row, holdout included (the final model); ``"holdout"`` fits on every
    tuning row and scores the holdout; split ``s`` fits on its training rows and scores its test rows.
    """
    n_rows = len(split.frame)
    if fold is None:
        return np.arange(n_rows), None
    holdout = split.folds["holdout"]
    if fold == HOLDOUT_FOLD:
        return np.setdiff1d(np.arange(n_rows), holdout, assume_unique=True), holdout
    return split.folds[f"train_{fold}"], split.folds[f"test_{fold}"]


def fit_fold(split: SplitData, config: TrainConfig, as_array: bool = False) -> FittedFold:
    """Build the candidate's pipeline and fit it on the fold's training rows only.

    ``as_array``: when the features are one numeric array (``SplitData.feature_array``), fit on it
    rather than on the DataFrame, with the columns given by position: scikit-learn converts the frame
    to that very array, so the scores are the same, without pandas' indexing and feature-name checks
    in every step (most of a small fit's time). The fitted pipeline then has no feature names, so it
    is for a model that is only scored, never for one that is kept.

    Such a model is then also lean, unless a ``step__param`` hyperparameter addresses a step of the
    full pipeline: the transformers of ``numeric_transformers`` and the estimator are fitted one
    after the other as a Pipeline would, without the Pipeline and its ColumnTransformer (their
    validation is most of a small job's time), and ``FittedFold.features`` hands the estimator what
    they make of a fold's rows: the same numbers, bit for bit, as the full pipeline's."""
    manifest = split.manifest
    spec = _estimator_spec(split, config)
    seed = manifest["seed"] if config.seed is None else config.seed
    estimator_params = {key: value for key, value in config.params.items() if "__" not in key}
    pipeline_params = {key: value for key, value in config.params.items() if "__" in key}
    estimator, params = make_estimator(spec, estimator_params, random_state=seed)
    X: Any = split.features
    numeric: list[str] | list[int] = manifest["numeric_features"]
    preprocessing = config.preprocessing
    columns: list[int] | None = None
    if as_array and split.feature_array is not None:
        X = split.feature_array
        numeric = split.numeric_positions
        if split.complete and not any(key.startswith(IMPUTER_PARAMS) for key in pipeline_params):
            # Nothing to impute: the imputer would hand the values on unchanged, so a model that is
            # only scored does without it (its parameters, when searched, keep it in).
            preprocessing = replace(preprocessing, numeric_impute="none")
        columns = lean_columns(split, pipeline_params)
    model: Any = estimator
    transformers: list[Any] = []
    if columns is not None:
        transformers = numeric_transformers(estimator, preprocessing, manifest["task"])
    else:
        model = build_pipeline(
            estimator, preprocessing, numeric, manifest["categorical_features"], manifest["task"]
        )
        try:
            model.set_params(**pipeline_params)
        except ValueError as exc:
            raise UserError(
                f"the pipeline rejected hyperparameters {quote_names(sorted(pipeline_params))}: {exc}"
            ) from None
    train_rows, test_rows = rows_of(split, config.fold)
    X_train, y_train = take(X, train_rows), split.target[train_rows]
    started = time.perf_counter()
    try:
        if columns is not None:
            X_train = X_train[:, columns]
            for transformer in transformers:
                X_train = transformer.fit_transform(X_train, y_train)
        model.fit(X_train, y_train)
    except ValueError as exc:  # sklearn's InvalidParameterError, or data the estimator cannot take
        raise UserError(f"estimator {spec.name} failed to fit with these hyperparameters: {exc}") from None
    fit_time = time.perf_counter() - started
    return FittedFold(
        model, spec, X, train_rows, test_rows, {**params, **pipeline_params}, fit_time, columns, transformers
    )


def lean_columns(split: SplitData, pipeline_params: dict[str, Any]) -> list[int] | None:
    """The columns of ``split.feature_array`` that the lean pipeline takes, or None when the full
    pipeline is needed: a ``step__param`` hyperparameter names one of its steps."""
    if pipeline_params or not split.numeric_positions:
        return None
    return split.numeric_positions


def _estimator_spec(split: SplitData, config: TrainConfig) -> EstimatorSpec:
    """The candidate's estimator, checked against the split: its task and the fold it names."""
    manifest = split.manifest
    name = (
        config.estimator if config.estimator and config.estimator.lower() != "auto" else manifest["estimator"]
    )
    try:
        allowed = allowed_packages(os.environ)
    except NotAllowedError as exc:
        raise UserError(str(exc)) from None
    spec = resolve_estimator(name, allowed)
    if spec.task != manifest["task"]:
        raise UserError(
            f"estimator {spec.name} does a {spec.task} task but the split was made for "
            f"{manifest['task']}: use a matching estimator or split again"
        )
    if config.fold == HOLDOUT_FOLD and not len(split.folds["holdout"]):
        raise UserError(
            f"cv_fold={HOLDOUT_FOLD} but the split holds no rows out: split with cv.holdout above 0, or give a fold id"
        )
    if isinstance(config.fold, int) and config.fold >= manifest["k"]:
        raise UserError(
            f"cv_fold={config.fold} is out of range: the split has splits 0 to {manifest['k'] - 1}"
        )
    return spec


def take(X: Any, rows: np.ndarray) -> Any:
    """The rows at these positions, of a DataFrame or an array."""
    return X.iloc[rows] if isinstance(X, pd.DataFrame) else X[rows]


def _train(ml_root: Path) -> None:
    config = parse_hyperparameters(
        read_hyperparameters(ml_root / "input" / "config" / "hyperparameters.json")
    )
    split = load_split_cached(ml_root / "input" / "data" / "train")
    manifest = split.manifest
    metrics_list = list(manifest.get("metrics") or [manifest["metric"]])
    refit = manifest["metric"] if config.metric == "auto" else resolve_metric(config.metric, manifest["task"])
    if refit not in metrics_list:
        metrics_list.append(refit)
    # Only the model fitted on every row is kept; the others are scored and dropped. A custom scorer
    # may look at the columns by name, so it is always given the DataFrame.
    as_array = config.fold is not None and not any(is_custom_scorer(m) for m in metrics_list)
    fitted = fit_fold(split, config, as_array)
    scorers = {metric: build_scorer(metric, manifest.get("pos_label")) for metric in metrics_list}
    y = split.target

    test_scores: dict[str, float] = {}
    train_scores: dict[str, float] = {}
    started = time.perf_counter()
    if fitted.test is not None:
        X_test, y_test = fitted.features(fitted.test), y[fitted.test]
        test_scores = {m: score(scorers[m], m, fitted.model, X_test, y_test) for m in metrics_list}
        undefined = [m for m, value in test_scores.items() if not math.isfinite(value)]
        if undefined:
            where, fix = (
                ("the holdout", "raise cv.holdout")
                if config.fold == HOLDOUT_FOLD
                else (f"fold {config.fold}", "lower cv.k")
            )
            raise UserError(
                f"metric {undefined[0]!r} is undefined on {where}, whose {len(fitted.test)} validation row(s) "
                f"scored {test_scores[undefined[0]]}: {fix} so that it has more rows, or choose another metric"
            )
    score_time = time.perf_counter() - started
    if config.fold is None or config.train_score:
        X_train, y_train = fitted.features(fitted.train), y[fitted.train]
        train_scores = {m: score(scorers[m], m, fitted.model, X_train, y_train) for m in metrics_list}

    metrics = {
        "fold": config.fold,
        "metric": refit,
        "metrics": metrics_list,
        "validation_score": test_scores.get(refit),
        "train_score": _finite(train_scores.get(refit)),
        "test_scores": test_scores,
        "train_scores": {m: _finite(v) for m, v in train_scores.items()},
        "fit_time": fitted.fit_time,
        "score_time": score_time,
        "n_train_rows": len(fitted.train),
        "n_validation_rows": 0 if fitted.test is None else len(fitted.test),
    }
    spec = fitted.spec
    metadata = {
        "estimator": spec.name,
        "estimator_path": spec.path,
        "params": fitted.params,
        "scaler": config.scaler,
        "preprocessing": config.preprocessing.as_dict(),
        "seed": manifest["seed"] if config.seed is None else config.seed,
        "task": manifest["task"],
        "feature_names": manifest["feature_names"],
        # What `serve` needs to rebuild the table from a request: which features are text.
        "categorical_features": manifest["categorical_features"],
        "target": manifest["target"],
        "classes": manifest["classes"],
        **metrics,
        "split_input_sha256": manifest["input"]["sha256"],
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
    }
    # A fold's files go to programs, in the job's archives: compact JSON, written by the C encoder
    # (indenting takes json's Python one, a tenth of a millisecond a job). The kept model's are indented.
    indent = 2 if config.fold is None else None
    model_files: dict[str, Content] = {"metadata.json": json_bytes(metadata, indent=indent)}
    if config.fold is None:
        model_files["model.joblib"] = lambda stream: joblib.dump(fitted.model, stream)
    publish(ml_root / "model", model_files)
    publish(ml_root / "output" / "data", {"metrics.json": json_bytes(metrics, indent=indent)})
    lines = metric_lines(refit, metrics_list, test_scores, train_scores)
    print("\n".join([*lines, f"fit_time={fitted.fit_time:.6f}", f"score_time={score_time:.6f}"]), flush=True)


def metric_lines(
    refit: str, metrics: list[str], test_scores: dict[str, float], train_scores: dict[str, float]
) -> list[str]:
    """The score lines of the job's log, which the MetricDefinitions of the state machine parse."""
    lines = []
    if refit in test_scores:
        lines.append(f"validation:score={test_scores[refit]!r}")
    if refit in train_scores:
        lines.append(f"train:score={train_scores[refit]!r}")
    for index, metric in enumerate(metrics):
        if metric == refit:
            continue  # reported as validation:score / train:score
        if metric in test_scores:
            lines.append(f"validation:metric{index}={test_scores[metric]!r}")
        if metric in train_scores:
            lines.append(f"train:metric{index}={train_scores[metric]!r}")
    return lines


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


if __name__ == "__main__":
    cli()
