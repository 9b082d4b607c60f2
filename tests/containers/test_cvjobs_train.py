"""The train entrypoint: fold scores equal scikit-learn's cross_validate, typing, models, failures."""

from __future__ import annotations

import os
import re

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import IRIS_COLUMNS, reference_pipeline
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import get_scorer
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from cvjobs import data, estimators, split, train
from cvjobs.job import UserError

pytestmark = pytest.mark.unit

SVC_HYPERPARAMETERS = {
    "cv_estimator": "SVC",
    "cv_metric": "accuracy",
    "cv_scaler": "StandardScaler",
    "cv_seed": "0",
    "C": "1.0",
    "kernel": '"rbf"',
    "gamma": "scale",
}
# A continuous score: equal floats mean the same rows, in the same order.
LOGISTIC_HYPERPARAMETERS = {"cv_estimator": "LogisticRegression", "cv_metric": "neg_log_loss", "C": "0.5"}
# The MetricDefinitions regexes of statemachine/cross_validation.asl.json.
NUMBER = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
METRIC_LINE = re.compile(
    rf"^(validation|train):(score|metric[0-9]+)=({NUMBER})$|^(fit|score)_time=([0-9]*\.?[0-9]+)$"
)


def run_folds(jobs, split_job, hyperparameters, k=5):
    """Each fold's validation scores and, asked for with cv_train_score, its train scores."""
    results = [jobs.train(split_job, {**hyperparameters, "cv_fold": str(fold)}) for fold in range(k)]
    for result in results:
        assert result.code == 0, result.failure
        lines = result.stdout.splitlines()
        names = [line.split("=")[0] for line in lines]
        assert names[0] == "validation:score" and names[-2:] == ["fit_time", "score_time"]
        assert ("train:score" in names) == (hyperparameters.get("cv_train_score") == "true")
        assert all(METRIC_LINE.match(line) for line in lines)
        assert result.files("model") == ["metadata.json"]  # a fold's model is not kept
    return [r.metrics()["validation:score"] for r in results], [
        r.metrics().get("train:score") for r in results
    ]


def test_svc_fold_scores_equal_cross_validate(jobs, iris):
    split_job = jobs.split_iris(CV_SPLITTER="StratifiedKFold")
    validation, training = run_folds(jobs, split_job, {**SVC_HYPERPARAMETERS, "cv_train_score": "true"})

    X, y = iris
    expected = cross_validate(
        Pipeline([("scaler", StandardScaler()), ("estimator", SVC(C=1.0, kernel="rbf", gamma="scale"))]),
        X,
        y,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        scoring="accuracy",
        return_train_score=True,
    )
    assert validation == expected["test_score"].tolist()
    assert training == expected["train_score"].tolist()


def logistic_pipeline() -> Pipeline:
    return reference_pipeline(LogisticRegression(C=0.5, random_state=0), IRIS_COLUMNS[:4])


def split_with_holdout(jobs):
    """Iris with a stratified fifth held out: the split job and the boolean mask of its holdout rows."""
    split_job = jobs.split_iris(CV_HOLDOUT=0.2)
    held_out = np.zeros(150, dtype=bool)
    held_out[data.load_split(split_job.root / "processing/output").folds["holdout"]] = True
    return split_job, held_out


def test_with_a_holdout_fold_scores_equal_cross_validate_on_the_other_rows(jobs, iris):
    split_job, held_out = split_with_holdout(jobs)
    split = data.load_split(split_job.root / "processing/output")
    for fold in range(5):
        used = np.zeros(150, dtype=bool)
        used[np.concatenate(train.rows_of(split, fold))] = True
        assert not used[held_out].any() and used[~held_out].all()
    validation, training = run_folds(jobs, split_job, {**LOGISTIC_HYPERPARAMETERS, "cv_train_score": "true"})

    X, y = iris
    X = pd.DataFrame(X, columns=IRIS_COLUMNS[:4])
    expected = cross_validate(
        logistic_pipeline(),
        X[~held_out],
        y[~held_out],
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        scoring="neg_log_loss",
        return_train_score=True,
    )
    assert validation == expected["test_score"].tolist()
    assert training == expected["train_score"].tolist()


def test_holdout_fold_fits_every_other_row_and_scores_the_holdout(jobs, iris):
    split_job, held_out = split_with_holdout(jobs)
    result = jobs.train(split_job, {**LOGISTIC_HYPERPARAMETERS, "cv_fold": "holdout"})
    assert result.code == 0, result.failure
    lines = result.stdout.splitlines()
    # The candidate's metric (neg_log_loss, appended to the split's list) and the split's (accuracy).
    assert [line.split("=")[0] for line in lines] == [
        "validation:score",
        "validation:metric0",
        "fit_time",
        "score_time",
    ]
    assert all(METRIC_LINE.match(line) for line in lines)
    assert result.files("model") == ["metadata.json"]

    X, y = iris
    X = pd.DataFrame(X, columns=IRIS_COLUMNS[:4])
    pipeline = logistic_pipeline().fit(X[~held_out], y[~held_out])
    assert result.metrics()["validation:score"] == get_scorer("neg_log_loss")(
        pipeline, X[held_out], y[held_out]
    )
    metrics = result.json("output/data/metrics.json")
    assert (metrics["fold"], metrics["n_train_rows"], metrics["n_validation_rows"]) == ("holdout", 120, 30)
    assert result.json("model/metadata.json")["fold"] == "holdout"
    # The final model learns from every row, the holdout included.
    final = jobs.train(split_job, LOGISTIC_HYPERPARAMETERS)
    assert final.json("output/data/metrics.json")["n_train_rows"] == 150


def test_ridge_fold_scores_equal_cross_validate(jobs, diabetes):
    X, y, header = diabetes
    rows = [[*map(float, x), float(t)] for x, t in zip(X, y, strict=True)]
    split_job = jobs.split(header, rows, CV_TARGET="progression", CV_ESTIMATOR="Ridge", CV_SPLITTER="KFold")
    assert split_job.code == 0, split_job.failure
    validation, training = run_folds(
        jobs, split_job, {"cv_estimator": "Ridge", "cv_metric": "auto", "alpha": "0.5"}
    )
    assert training == [None] * 5

    # The jobs fit on a DataFrame (pandas keeps it column-major), so the reference does too: with a
    # row-major array, BLAS sums in another order and the last bits of a linear model's scores differ.
    frame = pd.DataFrame(X, columns=header[:-1])
    expected = cross_validate(
        reference_pipeline(Ridge(alpha=0.5), header[:-1]),
        frame,
        y,
        cv=KFold(5, shuffle=True, random_state=0),
        scoring="r2",
    )
    assert validation == expected["test_score"].tolist()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.0", 1.0),
        ("3", 3),
        ('"rbf"', "rbf"),
        ("rbf", "rbf"),
        ("true", True),
        ("null", None),
        ("[10, 5]", [10, 5]),
        ('{"a": 2}', {"a": 2}),
        ("1e-3", 0.001),
        ("01", "01"),
    ],
)
def test_hyperparameter_values_are_json_or_raw_text(text, value):
    decoded = train.decode_value(text)
    assert decoded == value and type(decoded) is type(value)


def test_control_keys_are_parsed_and_the_rest_are_params():
    config = train.parse_hyperparameters(
        {
            "cv_estimator": '"SVC"',
            "cv_scaler": "none",
            "cv_seed": "7",
            "cv_fold": "2",
            "C": "10",
            "shrinking": "false",
        }
    )
    assert (config.estimator, config.metric, config.scaler, config.seed, config.fold) == (
        "SVC",
        "auto",
        "none",
        7,
        2,
    )
    assert config.params == {"C": 10, "shrinking": False}
    assert train.parse_hyperparameters({"cv_fold": "holdout"}).fold == "holdout"
    assert train.parse_hyperparameters({"cv_fold": '"holdout"'}).fold == "holdout"
    defaults = train.parse_hyperparameters({"cv_fold": "null"})
    assert (defaults.estimator, defaults.scaler, defaults.seed, defaults.fold) == (
        None,
        "StandardScaler",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("hyperparameters", "fragment"),
    [
        ({"cv_folds": "1"}, "unknown control hyperparameter(s) 'cv_folds'"),
        ({"cv_fold": "1.5"}, "cv_fold='1.5' must be a non-negative integer or holdout"),
        ({"cv_fold": "-1"}, "cv_fold='-1' must be a non-negative integer or holdout"),
        ({"cv_fold": "Holdout"}, "cv_fold='Holdout' must be a non-negative integer or holdout"),
        ({"cv_scaler": "Normalizer"}, "cv_scaler='Normalizer' is not supported"),
        (
            {"cv_preprocessing": '{"numeric": {"scale": "Normalizer"}}'},
            "model.preprocessing.numeric.scale: 'Normalizer'",
        ),
        ({"cv_preprocessing": '{"numerics": {}}'}, "model.preprocessing: {'numerics': {}} must be an object"),
    ],
)
def test_bad_control_keys(hyperparameters, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        train.parse_hyperparameters(hyperparameters)


def test_full_fit_model_loads_and_predicts(jobs, iris):
    split_job = jobs.split_iris()
    result = jobs.train(split_job, {"C": "2.5", "shrinking": "false"})
    assert result.code == 0, result.failure
    assert [line.split("=")[0] for line in result.stdout.splitlines()] == [
        "train:score",
        "fit_time",
        "score_time",
    ]
    assert result.files("model") == ["metadata.json", "model.joblib"]

    model = joblib.load(result.root / "model/model.joblib")
    X, y = iris
    assert [name for name, _ in model.steps] == ["preprocess", "estimator"]
    assert model.get_params()["estimator__C"] == 2.5
    assert model.feature_names_in_.tolist() == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    X = pd.DataFrame(X, columns=model.feature_names_in_)
    predicted = model.predict(X)
    assert set(predicted) <= {"setosa", "versicolor", "virginica"}
    assert np.mean(predicted == np.array(["setosa", "versicolor", "virginica"])[y]) > 0.95
    assert model.decision_function(X[:2]).shape == (2, 3)
    # Columns are taken by name; new data with other or reordered columns is refused, naming them.
    with pytest.raises(UserError, match=r"in another order than the model's features \('sepal_length'"):
        data.check_columns(list(model.feature_names_in_), list(X.columns[::-1]))
    with pytest.raises(UserError, match=r"missing 'petal_width'; unexpected 'petal_wdth'"):
        data.check_columns(list(model.feature_names_in_), [*X.columns[:3], "petal_wdth"])

    metadata = result.json("model/metadata.json")
    assert metadata["estimator"] == "SVC" and metadata["estimator_path"] == "sklearn.svm.SVC"
    assert metadata["params"] == {"C": 2.5, "shrinking": False, "random_state": 0}
    assert metadata["classes"] == ["setosa", "versicolor", "virginica"]
    assert (metadata["metric"], metadata["fold"], metadata["validation_score"]) == ("accuracy", None, None)
    assert metadata["train_score"] == result.metrics()["train:score"]
    metrics = result.json("output/data/metrics.json")
    assert (metrics["fold"], metrics["n_train_rows"], metrics["n_validation_rows"]) == (None, 150, 0)


def test_scaler_none_and_user_random_state(jobs):
    split_job = jobs.split_iris()
    result = jobs.train(
        split_job,
        {
            "cv_estimator": "RandomForestClassifier",
            "cv_scaler": "none",
            "n_estimators": "5",
            "random_state": "11",
        },
    )
    assert result.code == 0, result.failure
    model = joblib.load(result.root / "model/model.joblib")
    assert (
        model.named_steps["preprocess"].named_transformers_["numeric"].named_steps["scale"] == "passthrough"
    )
    assert model.named_steps["estimator"].random_state == 11
    assert result.json("output/data/metrics.json")["n_train_rows"] == 150


def assert_user_error(result, *fragments: str) -> str:
    assert result.code == 1
    for fragment in fragments:
        assert fragment in result.failure
    assert result.stdout == ""
    assert result.files("model") == [] and result.files("output") == ["failure"]
    return result.failure


def test_rejected_hyperparameter_value(jobs, capsys):
    split_job = jobs.split_iris()
    result = jobs.train(split_job, {**SVC_HYPERPARAMETERS, "kernel": "banana", "cv_fold": "0"})
    failure = assert_user_error(result)
    assert failure.startswith(
        "estimator SVC failed to fit with these hyperparameters: The 'kernel' parameter of SVC"
    )
    assert failure.endswith("Got 'banana' instead.")
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("hyperparameters", "fragment"),
    [
        ({"colour": '"red"'}, "estimator SVC rejected hyperparameters: Invalid parameter 'colour'"),
        (
            {"cv_estimator": "Ridge"},
            "estimator Ridge does a regression task but the split was made for classification",
        ),
        ({"cv_fold": "5"}, "cv_fold=5 is out of range: the split has splits 0 to 4"),
        (
            {"cv_fold": "holdout"},
            "cv_fold=holdout but the split holds no rows out: split with cv.holdout above 0",
        ),
        (
            {"cv_metric": "neg_log_loss", "cv_fold": "0"},
            "metric 'neg_log_loss' needs a prediction method that the",
        ),
        ({"cv_metric": "r3"}, "unknown metric 'r3'"),
    ],
)
def test_user_errors(jobs, hyperparameters, fragment):
    assert_user_error(jobs.train(jobs.split_iris(), hyperparameters), fragment)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_a_score_undefined_on_a_small_fold_fails_the_fold_with_the_fix(jobs, diabetes):
    X, y, header = diabetes
    rows = [[*map(float, x), float(t)] for x, t in zip(X[:6], y[:6], strict=True)]
    split_job = jobs.split(header, rows, CV_TARGET="progression", CV_ESTIMATOR="Ridge", CV_K=6)
    assert split_job.code == 0, split_job.failure
    # r2 of one row is nan: a run would otherwise report a missing score.
    result = jobs.train(split_job, {"cv_fold": "0"})
    assert_user_error(
        result, "metric 'r2' is undefined on fold 0, whose 1 validation row(s) scored nan", "lower cv.k"
    )
    rows = [[*map(float, x), float(t)] for x, t in zip(X[:7], y[:7], strict=True)]
    split_job = jobs.split(
        header, rows, CV_TARGET="progression", CV_ESTIMATOR="Ridge", CV_K=2, CV_HOLDOUT=0.1
    )
    assert split_job.code == 0, split_job.failure
    result = jobs.train(split_job, {"cv_fold": "holdout"})
    assert_user_error(
        result, "metric 'r2' is undefined on the holdout, whose 1 validation row(s)", "raise cv.holdout"
    )


def test_missing_split_output(jobs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(jobs.train(empty, {}), "lacks table.parquet, folds.npz, manifest.json")


def test_split_cache_reuses_loaded_arrays_until_a_file_changes(jobs):
    output = jobs.split_iris().root / "processing/output"
    first = data.load_split_cached(output)
    assert data.load_split_cached(output) is first
    stat = os.stat(output / "folds.npz")
    os.utime(output / "folds.npz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert data.load_split_cached(output) is not first


def test_a_fold_of_a_one_dtype_numeric_table_is_fitted_on_its_array_with_the_frames_scores(jobs):
    split = data.load_split(jobs.split_iris().root / "processing/output")
    assert isinstance(split.feature_array, np.ndarray)
    assert np.array_equal(split.feature_array, np.asarray(split.features))
    config = train.parse_hyperparameters({"C": "3.0", "cv_fold": "1"})
    on_array, on_frame = (train.fit_fold(split, config, as_array=flag) for flag in (True, False))
    assert isinstance(on_array.X, np.ndarray) and isinstance(on_frame.X, pd.DataFrame)
    decisions = [
        fitted.model.decision_function(fitted.features(fitted.test)) for fitted in (on_array, on_frame)
    ]
    assert np.array_equal(*decisions)
    # Iris has no missing value: the model that is only scored does without the imputer...
    imputer = "preprocess__numeric__impute"
    assert [type(step) for step in on_array.transformers] == [StandardScaler]
    assert on_frame.model.get_params()[imputer] != "passthrough"
    scaled = train.parse_hyperparameters({"cv_fold": "1", "preprocess__numeric__scale__with_std": "true"})
    assert train.fit_fold(split, scaled, as_array=True).model.get_params()[imputer] == "passthrough"
    # ...unless its parameters are searched.
    searched = train.parse_hyperparameters({"cv_fold": "1", f"{imputer}__strategy": '"median"'})
    assert train.fit_fold(split, searched, as_array=True).model.get_params()[imputer].strategy == "median"


def test_tables_of_mixed_dtypes_or_text_are_fitted_as_frames(jobs):
    rows = [[float(i), i % 7, "ab"[i % 2], "yes" if i % 3 else "no"] for i in range(30)]
    for header in (["x", "n", "t", "y"], ["x", "n", "y"]):
        columns = [[*row[: len(header) - 1], row[-1]] for row in rows]
        split_job = jobs.split(header, columns, CV_TARGET="y", CV_K=3, CV_ESTIMATOR="LogisticRegression")
        assert split_job.code == 0, split_job.failure
        assert data.load_split(split_job.root / "processing/output").feature_array is None


def test_short_names_and_dotted_paths():
    for name, path in estimators.ESTIMATORS.items():
        spec = estimators.resolve_estimator(name.lower())
        assert (spec.name, spec.path, spec.cls.__name__) == (name, path, name)
    spec = estimators.resolve_estimator("sklearn.linear_model.Perceptron")
    assert (spec.name, spec.task) == ("sklearn.linear_model.Perceptron", "classification")
    assert estimators.resolve_estimator("Lasso").task == "regression"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("collections.OrderedDict", "in package 'collections', which is not allowed (allowed: sklearn)"),
        ("sklearn.base.TransformerMixin", "'sklearn.base.TransformerMixin' is not a scikit-learn estimator"),
        ("sklearn.nowhere.Model", "cannot import estimator 'sklearn.nowhere.Model'"),
        ("sklearn.cluster.KMeans", "neither a classifier nor a regressor"),
        ("RandomForest", "unknown estimator 'RandomForest': did you mean 'RandomForestRegressor' or"),
        ("Forest", "unknown estimator 'Forest': use one of 'DecisionTreeClassifier'"),
    ],
)
def test_estimator_resolution_errors(name, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        estimators.resolve_estimator(name)


@pytest.mark.parametrize("module", [split, train])
def test_console_scripts_exit_with_the_code_of_main(module, monkeypatch):
    monkeypatch.setattr(module, "main", lambda: 3)
    with pytest.raises(SystemExit) as exited:
        module.cli()
    assert exited.value.code == 3


def test_a_worker_builds_each_scorer_once_per_metric_and_pos_label():
    assert data.build_scorer("f1", "virginica") is data.build_scorer("f1", "virginica")
    assert data.build_scorer("f1", "virginica") is not data.build_scorer("f1", "setosa")
    # pos_label True is not the class 1, and a pos_label that is no JSON scalar is built each time.
    assert data.build_scorer("f1", True)._kwargs["pos_label"] is True
    assert data.build_scorer("f1", 1)._kwargs["pos_label"] == 1
    assert data.build_scorer("f1", 1)._kwargs["pos_label"] is not True
    assert data.build_scorer("r2", ["x"]) is not data.build_scorer("r2", ["x"])


def test_an_estimator_is_built_with_its_hyperparameters_and_the_seed():
    spec = estimators.resolve_estimator("SVC")
    built, params = estimators.make_estimator(spec, {"C": 2.0, "kernel": "linear"}, random_state=7)
    assert params == {"C": 2.0, "kernel": "linear", "random_state": 7}
    assert built.get_params() == SVC(C=2.0, kernel="linear", random_state=7).get_params()
    kept, _ = estimators.make_estimator(spec, {"random_state": 3}, random_state=7)
    assert kept.random_state == 3
    linear = estimators.resolve_estimator("LinearRegression")
    unseeded, params = estimators.make_estimator(linear, {"fit_intercept": False}, 7)
    assert (
        params == {"fit_intercept": False}
        and unseeded.get_params() == LinearRegression(fit_intercept=False).get_params()
    )
    with pytest.raises(UserError, match="estimator SVC rejected hyperparameters: Invalid parameter 'colour'"):
        estimators.make_estimator(spec, {"colour": "red"}, random_state=7)
