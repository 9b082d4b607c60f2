"""``train``: the training job that fits one candidate on one fold (or on every row) and scores it.

Hyperparameters (``input/config/hyperparameters.json``, all strings): control keys ``cv_estimator``
(default: the split's estimator), ``cv_metric`` (default auto = the split's metric), ``cv_scaler``
(``StandardScaler`` | ``none``, default StandardScaler), ``cv_seed`` (default: the split's seed) and
``cv_fold`` (absent or ``null``: fit on every row, holdout included; a fold id f: fit on the other
folds, score fold f; ``holdout``: fit on every fold, score the holdout rows) and ``cv_train_score``
(default false: as in scikit-learn's ``cross_validate``, scoring the training rows costs about as much
as the fit, so fold jobs skip it unless asked). Every other key is an estimator parameter given as
JSON text, or as a plain string when it is not valid JSON.
Channel ``train``: the split job's output. Prints ``validation:score=``, ``train:score=`` and
``fit_time=`` lines; writes ``model/metadata.json``, ``output/data/metrics.json`` and, when fitting
on every row, ``model/model.joblib`` (a fold's model is never used, so it is not kept).
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.metrics import get_scorer

from cvjobs.data import HOLDOUT, HOLDOUT_FOLD, fold_masks, load_split_cached, resolve_metric, score
from cvjobs.estimators import SCALERS, make_estimator, make_pipeline, resolve_estimator
from cvjobs.job import Content, UserError, json_bytes, publish, quote_names, run_job

CONTROL_KEYS = ("cv_estimator", "cv_metric", "cv_scaler", "cv_seed", "cv_fold", "cv_train_score")


@dataclass(frozen=True)
class TrainConfig:
    estimator: str | None
    metric: str
    scaler: str
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


def _train(ml_root: Path) -> None:
    config = parse_hyperparameters(
        read_hyperparameters(ml_root / "input" / "config" / "hyperparameters.json")
    )
    split = load_split_cached(ml_root / "input" / "data" / "train")
    manifest = split.manifest
    spec = resolve_estimator(config.estimator or manifest["estimator"])
    if spec.task != manifest["task"]:
        raise UserError(
            f"estimator {spec.name} does a {spec.task} task but the split was made for "
            f"{manifest['task']}: use a matching estimator or split again"
        )
    metric = manifest["metric"] if config.metric == "auto" else resolve_metric(config.metric, spec.task)
    if config.fold == HOLDOUT_FOLD and not (split.folds == HOLDOUT).any():
        raise UserError(
            f"cv_fold={HOLDOUT_FOLD} but the split holds no rows out: split with cv.holdout above 0, or give a fold id"
        )
    if isinstance(config.fold, int) and config.fold >= manifest["k"]:
        raise UserError(
            f"cv_fold={config.fold} is out of range: the split has folds 0 to {manifest['k'] - 1}"
        )
    seed = manifest["seed"] if config.seed is None else config.seed

    estimator, params = make_estimator(spec, config.params, random_state=seed)
    pipeline = make_pipeline(estimator, config.scaler)
    train_rows, validation_rows = fold_masks(split.folds, config.fold)
    X_train, y_train = split.X[train_rows], split.y[train_rows]
    started = time.perf_counter()
    try:
        pipeline.fit(X_train, y_train)
    except ValueError as exc:  # sklearn's InvalidParameterError, or data the estimator cannot take
        raise UserError(f"estimator {spec.name} failed to fit with these hyperparameters: {exc}") from None
    fit_time = time.perf_counter() - started

    scorer = get_scorer(metric)
    scores = {}
    if config.fold is not None:
        scores["validation"] = score(
            scorer, metric, pipeline, split.X[validation_rows], split.y[validation_rows]
        )
        if not math.isfinite(scores["validation"]):
            where, fix = (
                ("the holdout", "raise cv.holdout")
                if config.fold == HOLDOUT_FOLD
                else (f"fold {config.fold}", "lower cv.k")
            )
            raise UserError(
                f"metric {metric!r} is undefined on {where}, whose {int(validation_rows.sum())} validation row(s) "
                f"scored {scores['validation']}: {fix} so that it has more rows, or choose another metric"
            )
    if config.fold is None or config.train_score:
        scores["train"] = score(scorer, metric, pipeline, X_train, y_train)

    metrics = {
        "fold": config.fold,
        "metric": metric,
        "validation_score": scores.get("validation"),
        "train_score": _finite(scores.get("train")),
        "fit_time": fit_time,
        "n_train_rows": int(train_rows.sum()),
        "n_validation_rows": int(validation_rows.sum()),
    }
    metadata = {
        "estimator": spec.name,
        "estimator_path": spec.path,
        "params": params,
        "scaler": config.scaler,
        "seed": seed,
        "task": manifest["task"],
        "feature_names": manifest["feature_names"],
        "target": manifest["target"],
        "classes": manifest["classes"],
        **metrics,
        "split_input_sha256": manifest["input"]["sha256"],
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
    }
    model_files: dict[str, Content] = {"metadata.json": json_bytes(metadata)}
    if config.fold is None:
        model_files["model.joblib"] = lambda stream: joblib.dump(pipeline, stream)
    publish(ml_root / "model", model_files)
    publish(ml_root / "output" / "data", {"metrics.json": json_bytes(metrics)})
    # The MetricDefinitions of the state machine parse these lines from the job's log.
    if "validation" in scores:
        print(f"validation:score={scores['validation']!r}", flush=True)
    if "train" in scores:
        print(f"train:score={scores['train']!r}", flush=True)
    print(f"fit_time={fit_time:.6f}", flush=True)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


if __name__ == "__main__":
    cli()
