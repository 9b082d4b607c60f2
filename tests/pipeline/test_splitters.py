"""End to end on the local engine: every splitter, groups and time order, text categories and missing
values give scikit-learn's cross_validate fold scores; several metrics are reported and registered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import model_selection
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import cross_validate
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cvpipe.pipeline.local import LocalPipeline

pytestmark = pytest.mark.e2e

NUMERIC, CATEGORICAL = ["height", "dose"], ["site"]


def table(n_rows: int) -> pd.DataFrame:
    """Patients with two or three rows each, days out of order, a missing number and text, a rare site."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "id": [f"row-{i}" for i in range(n_rows)],
            "patient": [f"p{i % (n_rows // 3)}" for i in range(n_rows)],
            "day": rng.permutation(n_rows),
            "height": rng.normal(170, 10, n_rows).round(1),
            "dose": rng.uniform(0, 5, n_rows).round(2),
            "site": rng.choice(["north", "south"], n_rows).astype(object),
            "outcome": np.where(rng.uniform(size=n_rows) > 0.5, "yes", "no"),
        }
    )
    frame.loc[1, "height"] = np.nan
    frame.loc[2, "site"] = np.nan
    frame.loc[n_rows - 1, "site"] = "west"
    return frame


def reference(estimator) -> Pipeline:
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    columns = ColumnTransformer([("numeric", numeric, NUMERIC), ("categorical", categorical, CATEGORICAL)])
    return Pipeline([("preprocess", columns), ("estimator", estimator)])


CASES = {
    "KFold": ({}, 24, model_selection.KFold(3, shuffle=True, random_state=4)),
    "StratifiedKFold": ({}, 24, model_selection.StratifiedKFold(3, shuffle=True, random_state=4)),
    "GroupKFold": ({}, 24, model_selection.GroupKFold(3, shuffle=True, random_state=4)),
    "StratifiedGroupKFold": ({}, 24, model_selection.StratifiedGroupKFold(3, shuffle=True, random_state=4)),
    "TimeSeriesSplit": (
        {"gap": 1, "max_train_size": 10, "test_size": 4},
        24,
        model_selection.TimeSeriesSplit(3, gap=1, max_train_size=10, test_size=4),
    ),
    "RepeatedKFold": (
        {"repeats": 2},
        24,
        model_selection.RepeatedKFold(n_splits=3, n_repeats=2, random_state=4),
    ),
    "RepeatedStratifiedKFold": (
        {"repeats": 2},
        24,
        model_selection.RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=4),
    ),
    "ShuffleSplit": (
        {"test_size": 0.25},
        24,
        model_selection.ShuffleSplit(3, test_size=0.25, random_state=4),
    ),
    "StratifiedShuffleSplit": (
        {"test_size": 0.3},
        24,
        model_selection.StratifiedShuffleSplit(3, test_size=0.3, random_state=4),
    ),
    "LeaveOneGroupOut": ({}, 15, model_selection.LeaveOneGroupOut()),
    "LeaveOneOut": ({}, 8, model_selection.LeaveOneOut()),
    "LeavePOut": ({"p": 2}, 6, model_selection.LeavePOut(2)),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tables")


@pytest.mark.parametrize("splitter", list(CASES))
def test_fold_scores_equal_cross_validate_for_every_splitter(
    pipeline: LocalPipeline, data_dir: Path, splitter: str
) -> None:
    settings, n_rows, cv = CASES[splitter]
    frame = table(n_rows)
    dataset = data_dir / f"{splitter}.csv"
    frame.to_csv(dataset, index=False)
    grouped = "Group" in splitter
    timed = splitter == "TimeSeriesSplit"
    run = pipeline.run(
        {
            "dataset": {
                "uri": str(dataset),
                "target": "outcome",
                "exclude": ["id"] + ([] if timed else ["day"]),
            },
            "cv": {
                "splitter": splitter,
                "k": 3,
                "seed": 4,
                **settings,
                **({"group_column": "patient"} if grouped else {}),
                **({"time_column": "day"} if timed else {}),
            },
            "model": {"estimator": "KNeighborsClassifier", "params": {"n_neighbors": 3}},
            # One candidate: the execution budgets count cv.max_folds jobs for each of max_candidates.
            "tuning": {"max_candidates": 1},
            "metric": "accuracy",
            "registry": {"group": f"tests-{splitter}"},
        },
        name=f"splitter-{splitter}",
    )
    assert run.status == "SUCCEEDED", run.cause

    ordered = frame.sort_values("day", kind="stable") if timed else frame
    features = ordered[NUMERIC + CATEGORICAL + ([] if grouped else ["patient"])]
    expected = cross_validate(
        _with_patient(reference(KNeighborsClassifier(n_neighbors=3)), grouped),
        features,
        ordered["outcome"].to_numpy(),
        groups=ordered["patient"] if grouped else None,
        cv=cv,
        scoring="accuracy",
    )["test_score"]
    assert run.document()["best"]["cv"]["folds"] == expected.tolist()


def _with_patient(pipeline: Pipeline, grouped: bool) -> Pipeline:
    """Ungrouped, the patient column is one more text feature, as the user's table has it."""
    if not grouped:
        columns = pipeline.named_steps["preprocess"]
        columns.transformers[1] = ("categorical", columns.transformers[1][1], [*CATEGORICAL, "patient"])
    return pipeline


def test_grouped_patients_score_what_group_k_fold_scores_and_every_metric_is_registered(
    pipeline: LocalPipeline, data_dir: Path
) -> None:
    """40 patients x 15 near-identical rows, KNN: grouped folds give scikit-learn's grouped score, not
    the 1.0 of row-wise folds; several metrics are reported per fold and registered, refit chooses."""
    rng = np.random.default_rng(3)
    X = np.repeat(rng.normal(size=(40, 4)), 15, axis=0) + rng.normal(scale=0.01, size=(600, 4))
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)])
    frame["patient"] = np.repeat([f"patient-{i}" for i in range(40)], 15)
    frame["label"] = np.repeat(rng.integers(0, 2, 40), 15)
    dataset = data_dir / "patients.csv"
    frame.to_csv(dataset, index=False)
    metrics = ["accuracy", "balanced_accuracy", "f1"]
    run = pipeline.run(
        {
            "dataset": {"uri": str(dataset), "target": "label"},
            "cv": {"group_column": "patient", "k": 5, "return_train_score": True},
            "model": {
                "estimator": "KNeighborsClassifier",
                "search_space": {"n_neighbors": {"values": [1, 15]}},
            },
            "metrics": metrics,
            "refit": "balanced_accuracy",
            "registry": {"group": "tests-patients"},
        },
        name="patients",
    )
    assert run.status == "SUCCEEDED", run.cause
    doc = run.document()
    assert doc["dataset"]["splitter"] == "GroupKFold" and doc["metric"] == "balanced_accuracy"

    features = frame[[f"x{i}" for i in range(4)]]
    expected = {
        n: cross_validate(
            Pipeline(
                [
                    (
                        "preprocess",
                        ColumnTransformer(
                            [
                                (
                                    "numeric",
                                    Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
                                    list(features.columns),
                                )
                            ]
                        ),
                    ),
                    ("estimator", KNeighborsClassifier(n_neighbors=n)),
                ]
            ),
            features,
            frame["label"].to_numpy(),
            groups=frame["patient"],
            cv=model_selection.GroupKFold(5, shuffle=True, random_state=0),
            scoring=metrics,
            return_train_score=True,
        )
        for n in (1, 15)
    }
    for entry, n in zip(doc["tuning"]["history"], (1, 15), strict=True):
        for metric in metrics:
            scores = entry["cv"]["metrics"][metric]
            assert scores["folds"] == expected[n][f"test_{metric}"].tolist()
            assert scores["train_folds"] == expected[n][f"train_{metric}"].tolist()
        assert entry["cv"]["folds"] == expected[n]["test_balanced_accuracy"].tolist()
    best = max((1, 15), key=lambda n: (np.mean(expected[n]["test_balanced_accuracy"]), -n))
    assert doc["best"]["params"] == {"n_neighbors": best}
    assert doc["best"]["cv"]["mean"] < 0.8  # not the 1.0 a row-wise split reports

    # cv_results_, as GridSearchCV lays it out, in the output and the run folder.
    results = doc["cv_results"]
    assert results["param_n_neighbors"] == [1, 15]
    assert results["split0_test_f1"] == [expected[n]["test_f1"][0] for n in (1, 15)]
    assert results["rank_test_balanced_accuracy"][[1, 15].index(best)] == 1
    assert json.loads((run.run_dir / "cv_results.json").read_text()) == results

    described = pipeline.registry.describe_model_package(doc["model_package_arn"])
    metadata = described["CustomerMetadataProperties"]
    assert metadata["metric"] == "balanced_accuracy"
    assert {"cv_accuracy", "cv_f1"} <= set(metadata)
