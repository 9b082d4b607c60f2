"""Other datasets, estimators, metrics and CSV dialects, end to end: cvpipe picks the candidate that
scikit-learn's GridSearchCV picks, with the same fold scores, and its random search is reproducible."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_validate
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cvpipe.pipeline.local import LocalPipeline

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def write_csv(path: Path, header: list[str], rows, encoding: str = "utf-8", **dialect) -> Path:
    # repr(float) round-trips, so the CSV holds scikit-learn's values bit for bit.
    with path.open("w", newline="", encoding=encoding) as stream:
        writer = csv.writer(stream, **dialect)
        writer.writerow(header)
        writer.writerows(
            [repr(value) if isinstance(value, float) else value for value in row] for row in rows
        )
    return path


def run(pipeline: LocalPipeline, name: str, document: dict) -> dict:
    result = pipeline.run(document, name=name)
    assert result.status == "SUCCEEDED", result.cause
    return result.document()


def assert_same_search(doc: dict, search: GridSearchCV, fixed: dict | None = None) -> None:
    """cvpipe's candidates in grid order are GridSearchCV's: same fold scores each, same best."""
    history = doc["tuning"]["history"]
    assert len(history) == len(search.cv_results_["params"])
    n_folds = search.n_splits_
    for i, entry in enumerate(history):
        expected = [search.cv_results_[f"split{fold}_test_score"][i] for fold in range(n_folds)]
        assert entry["cv"]["folds"] == pytest.approx(expected, rel=1e-12, abs=1e-12), entry["params"]
    best = {name.removeprefix("estimator__"): value for name, value in search.best_params_.items()}
    assert doc["best"]["params"] == {**(fixed or {}), **best}
    assert doc["best"]["cv"]["mean"] == pytest.approx(search.best_score_, rel=1e-12)


def scaled(estimator) -> Pipeline:
    return Pipeline([("scaler", StandardScaler()), ("estimator", estimator)])


def test_wine_from_a_spreadsheet_style_csv_matches_grid_search_cv(
    pipeline: LocalPipeline, data_dir: Path
) -> None:
    """Integer classes in the first column, names with spaces, every field quoted, CRLF and a BOM."""
    wine = load_wine()
    header = ["wine class", *(name.replace("_", " ") for name in wine.feature_names)]
    rows = [[int(t), *map(float, x)] for x, t in zip(wine.data, wine.target, strict=False)]
    dataset = write_csv(data_dir / "wine.csv", header, rows, encoding="utf-8-sig", quoting=csv.QUOTE_ALL)
    assert dataset.read_bytes().startswith(b'\xef\xbb\xbf"wine class"') and b"\r\n" in dataset.read_bytes()

    doc = run(
        pipeline,
        "wine-grid",
        {
            "dataset": {"uri": str(dataset), "target": "wine class"},
            "cv": {"k": 3, "seed": 2},
            "model": {
                "estimator": "LogisticRegression",
                "search_space": {"C": {"type": "float", "low": 0.001, "high": 1, "log": True, "steps": 4}},
            },
            "metric": "f1_macro",
        },
    )

    assert doc["dataset"]["splitter"] == "StratifiedKFold"
    assert [entry["params"]["C"] for entry in doc["tuning"]["history"]] == [0.001, 0.01, 0.1, 1.0]
    search = GridSearchCV(
        scaled(LogisticRegression(random_state=2)),
        {"estimator__C": [0.001, 0.01, 0.1, 1.0]},
        cv=StratifiedKFold(3, shuffle=True, random_state=2),
        scoring="f1_macro",
    ).fit(wine.data, wine.target)
    assert_same_search(doc, search)


def test_binary_roc_auc_random_search_is_reproducible_across_rounds(
    pipeline: LocalPipeline, data_dir: Path
) -> None:
    cancer = load_breast_cancer()
    dataset = write_csv(
        data_dir / "cancer.csv",
        [*cancer.feature_names, "benign"],
        [[*map(float, x), int(t)] for x, t in zip(cancer.data, cancer.target, strict=False)],
    )
    document = {
        "dataset": {"uri": str(dataset), "target": "benign"},
        "cv": {"k": 3, "seed": 4},
        "model": {
            "estimator": "RandomForestClassifier",
            "params": {"n_estimators": 8},
            "search_space": {
                "max_depth": {"type": "int", "low": 1, "high": 16, "log": True},
                "max_features": {"type": "float", "low": 0.05, "high": 0.5},
            },
        },
        "tuning": {"strategy": "random", "max_candidates": 4, "batch_size": 2, "seed": 9},
        "metric": "roc_auc",
    }
    in_rounds = run(pipeline, "cancer-rounds", document)
    at_once = run(pipeline, "cancer-at-once", {**document, "tuning": {**document["tuning"], "batch_size": 4}})

    assert (in_rounds["tuning"]["rounds"], at_once["tuning"]["rounds"]) == (2, 1)
    # The seed alone decides the candidates and their scores, however the search is batched.
    assert [(e["params"], e["cv"]["folds"]) for e in in_rounds["tuning"]["history"]] == [
        (e["params"], e["cv"]["folds"]) for e in at_once["tuning"]["history"]
    ]
    assert len({str(entry["params"]) for entry in in_rounds["tuning"]["history"]}) == 4
    for entry in in_rounds["tuning"]["history"]:
        assert 1 <= entry["params"]["max_depth"] <= 16 and isinstance(entry["params"]["max_depth"], int)
        assert 0.05 <= entry["params"]["max_features"] <= 0.5
    best = in_rounds["best"]
    expected = cross_validate(
        scaled(RandomForestClassifier(**best["params"], random_state=4)),
        cancer.data,
        cancer.target,
        cv=StratifiedKFold(3, shuffle=True, random_state=4),
        scoring="roc_auc",
    )["test_score"]
    assert best["cv"]["folds"] == pytest.approx(list(expected), rel=1e-12)
    assert best["cv"]["mean"] == max(entry["cv"]["mean"] for entry in in_rounds["tuning"]["history"])


def test_regressor_by_import_path_with_two_folds_and_rmse(pipeline: LocalPipeline, data_dir: Path) -> None:
    diabetes = load_diabetes()
    dataset = write_csv(
        data_dir / "diabetes.csv",
        [*diabetes.feature_names, "progression"],
        [[*map(float, x), float(t)] for x, t in zip(diabetes.data, diabetes.target, strict=False)],
    )

    doc = run(
        pipeline,
        "diabetes-gbr",
        {
            "dataset": {"uri": str(dataset), "target": "progression"},
            "cv": {"k": 2, "seed": 1},
            "model": {
                "estimator": "sklearn.ensemble.GradientBoostingRegressor",
                "scaler": "none",
                "params": {"n_estimators": 15},
                "search_space": {"max_depth": {"type": "int", "low": 1, "high": 3, "steps": 3}},
            },
            "metric": "neg_root_mean_squared_error",
        },
    )

    assert (doc["dataset"]["splitter"], doc["dataset"]["k"]) == ("KFold", 2)
    search = GridSearchCV(
        Pipeline([("estimator", GradientBoostingRegressor(n_estimators=15, random_state=1))]),
        {"estimator__max_depth": [1, 2, 3]},
        cv=KFold(2, shuffle=True, random_state=1),
        scoring="neg_root_mean_squared_error",
    ).fit(diabetes.data, diabetes.target)
    assert_same_search(doc, search, fixed={"n_estimators": 15})
    assert doc["best"]["cv"]["mean"] < 0  # an error, negated: higher is better


def test_log_loss_of_digits_with_spaces_in_the_target_name(pipeline: LocalPipeline, data_dir: Path) -> None:
    digits = load_digits()
    X, y = digits.data[:300], digits.target[:300]
    dataset = write_csv(
        data_dir / "digits.csv",
        [*(f"pixel {i}" for i in range(64)), "the digit"],
        [[*map(int, x), int(t)] for x, t in zip(X, y, strict=False)],
    )

    doc = run(
        pipeline,
        "digits-knn",
        {
            "dataset": {"uri": str(dataset), "target": "the digit"},
            "cv": {"k": 3},
            "model": {
                "estimator": "KNeighborsClassifier",
                "scaler": "none",
                "search_space": {
                    "n_neighbors": {"values": [5, 15]},
                    "weights": {"values": ["uniform", "distance"]},
                },
            },
            "metric": "neg_log_loss",
        },
    )

    search = GridSearchCV(
        Pipeline([("estimator", KNeighborsClassifier())]),
        {"estimator__n_neighbors": [5, 15], "estimator__weights": ["uniform", "distance"]},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        scoring="neg_log_loss",
    ).fit(X.astype(float), y)
    assert_same_search(doc, search)
    assert np.isfinite(doc["best"]["cv"]["mean"])
