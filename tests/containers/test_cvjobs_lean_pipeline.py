"""A fold job on a numeric table fits its steps without the Pipeline and its ColumnTransformer (the
lean path): only when nothing needs the full pipeline, and then with the full pipeline's predictions
and scores, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from conftest import IRIS_COLUMNS, iris_rows
from sklearn.datasets import load_diabetes
from sklearn.feature_selection import VarianceThreshold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler
from sklearn.svm import SVC

from cvjobs import data, train

pytestmark = pytest.mark.unit

PREDICTIONS = ("predict", "decision_function", "predict_proba")


def diabetes_table() -> tuple[list[str], list[list[object]]]:
    bunch = load_diabetes(as_frame=False)
    rows = [[*map(float, x), float(t)] for x, t in zip(bunch.data, bunch.target, strict=True)]
    return [*bunch.feature_names, "progression"], rows


def with_gaps(rows: list[list[object]]) -> list[list[object]]:
    """Some feature cells missing: the lean pipeline keeps the imputer."""
    return [
        ["" if (i + j) % 9 == 0 and j < len(row) - 1 else v for j, v in enumerate(row)]
        for i, row in enumerate(rows)
    ]


def as_integers(rows: list[list[object]]) -> list[list[object]]:
    """Integer features (one dtype, not floats): the imputer stays, the scaler takes them as floats."""
    return [[*(round(float(v) * 10) for v in row[:-1]), row[-1]] for row in rows]


def two_classes(rows: list[list[object]]) -> list[list[object]]:
    return [row for row in rows if row[-1] != "setosa"]


def iris_table() -> tuple[list[str], list[list[object]]]:
    return list(IRIS_COLUMNS), iris_rows()


IRIS, DIABETES = iris_table, diabetes_table

# (table, rows transform, split settings, hyperparameters, metrics scored)
CASES = {
    "svc-standard": (IRIS, None, {}, {"cv_estimator": "SVC", "C": "3.0"}, ["accuracy", "f1_macro"]),
    "logistic-minmax-proba": (
        IRIS,
        None,
        {"CV_ESTIMATOR": "LogisticRegression"},
        {"cv_estimator": "LogisticRegression", "cv_scaler": "MinMaxScaler", "C": "0.3"},
        ["neg_log_loss", "roc_auc_ovr", "balanced_accuracy"],
    ),
    "knn-robust": (
        IRIS,
        None,
        {},
        {"cv_estimator": "KNeighborsClassifier", "cv_scaler": "RobustScaler"},
        ["accuracy"],
    ),
    "forest-unscaled": (
        IRIS,
        None,
        {},
        {"cv_estimator": "RandomForestClassifier", "cv_scaler": "none", "n_estimators": "7"},
        ["neg_log_loss", "accuracy"],
    ),
    "hist-gradient-boosting-takes-nan": (
        IRIS,
        with_gaps,
        {},
        {"cv_estimator": "HistGradientBoostingClassifier", "max_iter": "5"},
        ["accuracy", "neg_log_loss"],
    ),
    "linear-svc-maxabs-select": (
        IRIS,
        None,
        {},
        {
            "cv_estimator": "LinearSVC",
            "cv_scaler": "MaxAbsScaler",
            "cv_preprocessing": json.dumps({"select": "SelectPercentile"}),
        },
        ["accuracy"],
    ),
    "svc-imputed-gaps": (IRIS, with_gaps, {}, {"cv_estimator": "SVC"}, ["accuracy"]),
    "logistic-integer-features": (
        IRIS,
        as_integers,
        {},
        {
            "cv_estimator": "LogisticRegression",
            "cv_preprocessing": json.dumps({"numeric": {"impute": "median"}}),
        },
        ["neg_log_loss"],
    ),
    "binary-pos-label": (
        IRIS,
        two_classes,
        {"CV_POS_LABEL": '"versicolor"', "CV_METRICS": '["f1", "precision", "recall"]', "CV_REFIT": "f1"},
        {"cv_estimator": "LogisticRegression"},
        ["f1", "precision", "recall", "roc_auc"],
    ),
    "ridge-regression": (
        DIABETES,
        None,
        {"CV_TARGET": "progression", "CV_ESTIMATOR": "Ridge", "CV_SPLITTER": "KFold"},
        {"cv_estimator": "Ridge", "alpha": "0.5"},
        ["r2", "neg_mean_squared_error"],
    ),
    "sgd-regression-holdout": (
        DIABETES,
        None,
        {"CV_TARGET": "progression", "CV_ESTIMATOR": "Ridge", "CV_SPLITTER": "KFold", "CV_HOLDOUT": "0.2"},
        {"cv_estimator": "SGDRegressor", "cv_scaler": "RobustScaler", "cv_fold": "holdout"},
        ["neg_mean_absolute_error", "r2"],
    ),
    "linear-regression-unscaled": (
        DIABETES,
        None,
        {"CV_TARGET": "progression", "CV_ESTIMATOR": "Ridge", "CV_SPLITTER": "KFold"},
        {"cv_estimator": "LinearRegression", "cv_scaler": "none"},
        ["r2"],
    ),
}


def split_of(jobs, table, transform, settings) -> data.SplitData:
    header, rows = table()
    if transform:
        rows = transform(rows)
    split_job = jobs.split(header, rows, **{"CV_K": 4, **settings})
    assert split_job.code == 0, split_job.failure
    return data.load_split(split_job.root / "processing/output")


def outputs(fitted: train.FittedFold, rows: np.ndarray) -> dict[str, np.ndarray]:
    X = fitted.features(rows)
    return {name: getattr(fitted.model, name)(X) for name in PREDICTIONS if hasattr(fitted.model, name)}


def is_lean(fitted: train.FittedFold) -> bool:
    """Whether the model is the bare estimator, fitted on the array's columns after the transformers."""
    lean = not isinstance(fitted.model, Pipeline)
    assert lean == (fitted.columns is not None)
    assert lean or (fitted.transformers == [] and "preprocess" in fitted.model.named_steps)
    return lean


@pytest.mark.parametrize("case", list(CASES))
def test_the_lean_model_predicts_and_scores_as_the_full_pipeline_bit_for_bit(jobs, monkeypatch, case):
    table, transform, settings, hyperparameters, metrics = CASES[case]
    split = split_of(jobs, table, transform, settings)
    config = train.parse_hyperparameters({"cv_fold": "1", **hyperparameters})
    lean = train.fit_fold(split, config, as_array=True)
    assert is_lean(lean)
    on_frame = train.fit_fold(split, config, as_array=False)
    with monkeypatch.context() as patched:  # the ColumnTransformer on the very same array
        patched.setattr(train, "lean_columns", lambda *args: None)
        on_array = train.fit_fold(split, config, as_array=True)
    assert not is_lean(on_array) and not is_lean(on_frame)

    for rows in (lean.test, lean.train):
        expected = outputs(lean, rows)
        assert expected
        for other in (on_array, on_frame):
            got = outputs(other, rows)
            assert got.keys() == expected.keys()
            for name, values in expected.items():
                assert np.array_equal(values, got[name]), (case, name)
        for metric in metrics:
            scorer = data.build_scorer(metric, split.manifest["pos_label"])
            values = [
                data.score(scorer, metric, fitted.model, fitted.features(rows), split.target[rows])
                for fitted in (lean, on_array, on_frame)
            ]
            assert np.isfinite(values[0]) and values[1:] == values[:1] * 2, (case, metric, values)


def test_only_a_model_that_is_scored_and_has_no_pipeline_hyperparameter_is_lean(jobs):
    split = split_of(jobs, IRIS, None, {})

    def lean(as_array: bool = True, **hyperparameters: str) -> list[type] | None:
        """The lean model's transformers, or None for the full pipeline."""
        config = train.parse_hyperparameters({"cv_fold": "0", **hyperparameters})
        fitted = train.fit_fold(split, config, as_array=as_array)
        if not is_lean(fitted):
            return None
        assert fitted.columns == [0, 1, 2, 3] and isinstance(fitted.model, SVC)
        return [type(transformer) for transformer in fitted.transformers]

    assert lean() == [StandardScaler]
    assert lean(cv_scaler="none") == []
    assert lean(cv_preprocessing=json.dumps({"select": "VarianceThreshold"})) == [
        StandardScaler,
        VarianceThreshold,
    ]
    assert lean(cv_preprocessing=json.dumps({"numeric": {"impute": "median", "scale": "RobustScaler"}})) == [
        RobustScaler
    ]  # iris has no missing value to impute
    assert not lean(as_array=False)
    # Any step__param names a step of the full pipeline, the estimator's included.
    assert not lean(preprocess__numeric__impute__strategy='"median"')
    assert not lean(preprocess__numeric__scale__with_mean="false")
    assert not lean(cv_preprocessing=json.dumps({"select": "SelectKBest"}), select__k="2")
    assert not lean(estimator__C="2.0")


@pytest.mark.parametrize(
    ("header", "row"),
    [
        (["x", "colour", "y"], lambda i: [float(i % 5), "rgb"[i % 3], "ab"[i % 2]]),  # categorical
        (["x", "n", "y"], lambda i: [float(i % 5), i % 7, "ab"[i % 2]]),  # floats and integers
    ],
)
def test_a_table_with_text_or_mixed_dtypes_keeps_the_column_transformer(jobs, header, row):
    split_job = jobs.split(
        header, [row(i) for i in range(40)], CV_TARGET="y", CV_K=3, CV_ESTIMATOR="LogisticRegression"
    )
    assert split_job.code == 0, split_job.failure
    split = data.load_split(split_job.root / "processing/output")
    config = train.parse_hyperparameters({"cv_fold": "0"})
    fitted = train.fit_fold(split, config, as_array=True)
    assert not is_lean(fitted)


def custom_scorer_package(tmp_path: Path, monkeypatch) -> str:
    package = tmp_path / "leanscoring"
    package.mkdir()
    (package / "__init__.py").write_text(
        "def by_name(estimator, X, y):\n"
        "    # A custom scorer may look at the columns by name: it is given the DataFrame.\n"
        "    return float(list(X.columns) == ['sepal_length', 'sepal_width', 'petal_length', 'petal_width'])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CVPIPE_ALLOWED_PACKAGES", "leanscoring")
    return "leanscoring:by_name"


def test_the_jobs_take_the_lean_pipeline_for_fold_and_holdout_scores_only(jobs, tmp_path, monkeypatch):
    built: list[str] = []
    for name in ("numeric_transformers", "build_pipeline"):
        original = getattr(train, name)
        monkeypatch.setattr(
            train, name, lambda *args, _name=name, _original=original: built.append(_name) or _original(*args)
        )
    split_job = jobs.split_iris(CV_HOLDOUT=0.2)

    def pipeline_of(**hyperparameters: str) -> str:
        built.clear()
        result = jobs.train(split_job, {"cv_estimator": "SVC", **hyperparameters})
        assert result.code == 0, result.failure
        assert len(built) == 1
        return built[0]

    assert pipeline_of(cv_fold="2") == "numeric_transformers"
    assert pipeline_of(cv_fold="holdout") == "numeric_transformers"
    assert pipeline_of(cv_fold="2", cv_train_score="true") == "numeric_transformers"
    assert pipeline_of(cv_fold="2", preprocess__numeric__impute__strategy='"median"') == "build_pipeline"
    # The final model is kept, and serve needs its feature names.
    assert pipeline_of() == "build_pipeline"
    model = joblib.load(split_job.root.parent / f"train-{jobs.count}" / "model" / "model.joblib")
    assert list(model.feature_names_in_) == IRIS_COLUMNS[:4]
    scorer = custom_scorer_package(tmp_path, monkeypatch)
    assert pipeline_of(cv_fold="2", cv_metric=scorer) == "build_pipeline"
    assert jobs.train(split_job, {"cv_fold": "2", "cv_metric": scorer}).metrics()["validation:score"] == 1.0
