"""The split entrypoint: folds, outputs and its failure paths."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from cvjobs import split

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# The functions read the summary as this document (functions/shared/workflow_documents).
DATASET_INFO_SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "dataset-info.schema.json").read_text()
)
SPLIT_OUTPUTS = ["folds.npz", "manifest.json", "table.parquet"]


def test_iris_split_writes_folds_once_and_a_compact_summary(jobs, iris):
    job = jobs.split_iris()
    assert job.files("processing/output") == SPLIT_OUTPUTS
    X, y = iris

    table = pq.read_table(job.root / "processing/output/table.parquet")
    features = np.column_stack([table.column(name).to_numpy() for name in table.column_names[:4]])
    assert features.dtype == np.float64 and np.array_equal(features, X)
    labels = table.column("species").to_pylist()
    assert labels == [["setosa", "versicolor", "virginica"][t] for t in y]
    assert_same_splits(load_folds(job), StratifiedKFold(5, shuffle=True, random_state=0), X, y)

    message = job.read("output/message")
    assert len(message.encode()) < 1024
    assert json.loads(message) == {
        "task": "classification",
        "splitter": "StratifiedKFold",
        "metric": "accuracy",
        "metrics": ["accuracy"],
        "k": 5,
        "folds": [0, 1, 2, 3, 4],
        "n_rows": 150,
        "n_features": 4,
        "target": "species",
        "estimator": "SVC",
        "holdout_rows": 0,
    }
    jsonschema.validate(json.loads(message), DATASET_INFO_SCHEMA)
    manifest = job.json("processing/output/manifest.json")
    csv_bytes = (job.root / "processing/input/data.csv").read_bytes()
    assert manifest["feature_names"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert manifest["classes"] == ["setosa", "versicolor", "virginica"]
    assert manifest["test_rows_per_split"] == [30] * 5
    assert (manifest["holdout"], manifest["holdout_rows"]) == (0, 0)
    assert manifest["seed"] == 0
    assert manifest["input"] == {"file": "data.csv", "sha256": hashlib.sha256(csv_bytes).hexdigest()}
    assert not (job.root / "output/failure").exists()


def test_regression_auto_uses_kfold_and_r2(jobs, diabetes):
    X, y, header = diabetes
    rows = [[*map(float, x), float(t)] for x, t in zip(X, y, strict=True)]
    job = jobs.split(header, rows, CV_TARGET="progression", CV_ESTIMATOR="Ridge", CV_SEED=3)
    assert job.code == 0, job.failure
    summary = job.json("output/message")
    assert (summary["task"], summary["splitter"], summary["metric"]) == ("regression", "KFold", "r2")
    jsonschema.validate(summary, DATASET_INFO_SCHEMA)
    assert job.json("processing/output/manifest.json")["classes"] is None
    table = pq.read_table(job.root / "processing/output/table.parquet")
    assert np.array_equal(table.column("progression").to_numpy(), y)
    assert_same_splits(load_folds(job), KFold(5, shuffle=True, random_state=3), X, y)


def load_folds(job) -> dict[str, np.ndarray]:
    with np.load(job.root / "processing/output/folds.npz") as archive:
        return {name: archive[name] for name in archive.files}


def assert_same_splits(folds, splitter, X, y, groups=None, rows=None) -> None:
    """Every split's training and test row positions are scikit-learn's, in its order; ``rows`` maps
    the positions ``splitter`` sees to the table's (the tuning rows when some are held out)."""
    rows = np.arange(len(y)) if rows is None else rows
    splits = list(splitter.split(X, y, groups))
    assert len(folds) == 2 * len(splits) + 1
    for index, (train, test) in enumerate(splits):
        assert folds[f"train_{index}"].tolist() == rows[train].tolist()
        assert folds[f"test_{index}"].tolist() == rows[test].tolist()


@pytest.mark.parametrize("holdout", [None, "0", "0.0", " 0 "])
def test_no_holdout_gives_the_splitters_folds_bit_for_bit(jobs, iris, holdout):
    job = jobs.split_iris(**({} if holdout is None else {"CV_HOLDOUT": holdout}))
    X, y = iris
    folds = load_folds(job)
    assert_same_splits(folds, StratifiedKFold(5, shuffle=True, random_state=0), X, y)
    assert folds["holdout"].size == 0
    assert job.json("output/message")["holdout_rows"] == 0


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_holdout_rows_come_from_train_test_split_and_the_rest_from_the_splitter(jobs, iris, diabetes, task):
    if task == "classification":
        (X, y), splitter, stratify = iris, StratifiedKFold(5, shuffle=True, random_state=4), iris[1]
        job = jobs.split_iris(CV_HOLDOUT=0.2, CV_SEED=4)
    else:
        X, y, header = diabetes
        splitter, stratify = KFold(5, shuffle=True, random_state=4), None
        rows = [[*map(float, x), float(t)] for x, t in zip(X, y, strict=True)]
        job = jobs.split(
            header, rows, CV_TARGET="progression", CV_ESTIMATOR="Ridge", CV_HOLDOUT=0.2, CV_SEED=4
        )
        assert job.code == 0, job.failure
    folds = load_folds(job)

    _, holdout = train_test_split(
        np.arange(len(y)), test_size=0.2, shuffle=True, random_state=4, stratify=stratify
    )
    assert folds["holdout"].tolist() == holdout.tolist()
    tuning = np.setdiff1d(np.arange(len(y)), holdout)
    assert_same_splits(folds, splitter, X[tuning], y[tuning], rows=tuning)
    if stratify is not None:  # the holdout keeps the class proportions
        assert np.bincount(y[holdout]).tolist() == [10, 10, 10]

    n_holdout = len(holdout)
    summary = job.json("output/message")
    assert summary["holdout_rows"] == n_holdout and summary["n_rows"] == len(y)
    assert summary["folds"] == [0, 1, 2, 3, 4]
    manifest = job.json("processing/output/manifest.json")
    assert (manifest["holdout"], manifest["holdout_rows"]) == (0.2, n_holdout)
    assert (
        sum(manifest["test_rows_per_split"]) == len(y) - n_holdout
        and len(manifest["test_rows_per_split"]) == 5
    )


def test_integer_labels_stay_integers(jobs, iris):
    X, y = iris
    job = jobs.split(
        ["a", "b", "c", "d", "label"],
        [[*map(float, x), int(t)] for x, t in zip(X, y, strict=True)],
        CV_TARGET="label",
        CV_ESTIMATOR="logisticregression",
        CV_METRIC="f1_macro",
    )
    assert job.code == 0, job.failure
    assert pq.read_table(job.root / "processing/output/table.parquet").column("label").type == pa.int64()
    manifest = job.json("processing/output/manifest.json")
    assert (manifest["classes"], manifest["estimator"], manifest["metric"]) == (
        [0, 1, 2],
        "LogisticRegression",
        "f1_macro",
    )


def assert_user_error(job, capsys, *fragments: str) -> str:
    """Exit code 1, a failure file with every fragment, one log line without a traceback, no outputs."""
    assert job.code == 1
    for fragment in fragments:
        assert fragment in job.failure
    errors = capsys.readouterr().err
    assert "Traceback" not in errors and errors.count("\n") == 1 and errors.startswith("split: error: ")
    assert job.files("processing/output") == []
    assert job.files("output") == ["failure"]
    return job.failure


def test_missing_target_column_lists_the_columns(jobs, capsys, iris_table):
    job = jobs.split(*iris_table, CV_TARGET="variety")
    assert_user_error(
        job, capsys, "target column 'variety' is not in data.csv", "'sepal_length'", "'species'"
    )


def test_text_features_are_categorical_and_missing_values_are_kept(jobs, iris_table):
    header, rows = iris_table
    colors = ["red", "green", "blue"]
    rows = [[*row, colors[i % 3]] for i, row in enumerate(rows)]
    rows[4][1] = ""
    rows[9][3] = "NA"
    rows[7][5] = "null"
    job = jobs.split([*header, "color"], rows)
    assert job.code == 0, job.failure
    manifest = job.json("processing/output/manifest.json")
    assert manifest["numeric_features"] == header[:4] and manifest["categorical_features"] == ["color"]
    table = pq.read_table(job.root / "processing/output/table.parquet")
    assert table.column("sepal_width").null_count == 1 and table.column("color").null_count == 1


def test_dates_empty_columns_and_a_missing_target_are_refused(jobs, capsys):
    job = jobs.split_files({"data.csv": b"day,x,species\n2024-01-01,1,a\n2024-01-02,2,b\n"})
    assert_user_error(
        job, capsys, "feature column(s) 'day' (date32[day]) are neither numbers nor text", "cv.time_column"
    )
    job = jobs.split_files({"data.csv": b"empty,x,species\n,1,a\n,2,b\n"})
    assert_user_error(job, capsys, "feature column(s) 'empty' are empty", "dataset.exclude")
    job = jobs.split_files({"data.csv": b"x,species\n1,a\n2,\n3,b\n"})
    assert_user_error(job, capsys, "target column 'species' is empty on 1 rows (first: data row 2)")


def test_too_few_rows_of_a_class_for_stratified_folds(jobs, capsys, iris_table):
    header, rows = iris_table
    rows = rows[:100] + rows[100:103]  # three virginica rows for five folds
    job = jobs.split(header, rows)
    fragments = (
        "cv.k: StratifiedKFold with k=5 needs at least 5 rows of every class",
        "'virginica' (3)",
        "lower cv.k",
    )
    assert_user_error(job, capsys, *fragments)


def test_more_folds_than_rows(jobs, capsys, iris_table):
    header, rows = iris_table
    job = jobs.split(
        header[:4],
        [row[:4] for row in rows[:8]],
        CV_ESTIMATOR="KNeighborsRegressor",
        CV_TARGET="sepal_length",
        CV_K=10,
    )
    assert_user_error(job, capsys, "cv.k: 10 folds need at least 10 rows but data.csv has 8: lower cv.k")


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"CV_TARGET": ""}, "CV_TARGET is not set"),
        ({"CV_K": "1"}, "CV_K='1' must be an integer from 2 to 100"),
        ({"CV_K": "five"}, "CV_K='five' must be an integer"),
        ({"CV_SEED": "-1"}, "CV_SEED='-1' must be an integer from 0"),
        (
            {"CV_SPLITTER": "GroupKFlod"},
            "CV_SPLITTER='GroupKFlod' is not supported: did you mean 'GroupKFold'?",
        ),
        ({"CV_SPLITTER": "GroupKFold"}, "cv.group_column: GroupKFold splits by group: name the column"),
        (
            {"CV_GROUP_COLUMN": "species", "CV_SPLITTER": "KFold"},
            "cv.splitter: KFold ignores cv.group_column",
        ),
        ({"CV_TIME_COLUMN": "sepal_length", "CV_SPLITTER": "KFold"}, "KFold does not keep time order"),
        ({"CV_GROUP_COLUMN": "patient"}, "cv.group_column: column(s) 'patient' not in data.csv"),
        (
            {"CV_EXCLUDE": '["petal_lenght"]'},
            "dataset.exclude: column(s) 'petal_lenght' (did you mean 'petal_length'?)",
        ),
        ({"CV_FEATURES": '["species"]'}, "dataset.features: lists the target column 'species'"),
        (
            {"CV_METRICS": '["accuracy"]', "CV_REFIT": "f1_macro"},
            "refit: 'f1_macro' is not one of metrics 'accuracy'",
        ),
        (
            {"CV_SPLITTER": "LeaveOneOut"},
            "cv.max_folds: LeaveOneOut makes 150 splits of data.csv, more than cv.max_folds=50",
        ),
        ({"CV_SPLITTER": "LeavePOut", "CV_MAX_FOLDS": "100"}, "LeavePOut makes 11175 splits"),
        ({"CV_TASK": "regression"}, "task: regression was asked for but SVC is a classifier"),
        (
            {"CV_POS_LABEL": '"daisy"', "CV_METRIC": "accuracy"},
            "pos_label: 'daisy' is not a class of target column 'species'",
        ),
        ({"CV_METRIC": "acuracy"}, "unknown metric 'acuracy': did you mean 'accuracy'"),
        ({"CV_ESTIMATOR": "SVX"}, "unknown estimator 'SVX'"),
        ({"CV_ESTIMATOR": "Ridge", "CV_SPLITTER": "StratifiedKFold"}, "StratifiedKFold needs class labels"),
        ({"CV_ESTIMATOR": "Ridge"}, "target column 'species' is not numeric (e.g. 'setosa')"),
        *(
            (
                {"CV_HOLDOUT": value},
                f"cv.holdout: CV_HOLDOUT={value!r} must be a number from 0 up to but not including 0.5",
            )
            for value in ("0.5", "-0.1", "a fifth", "nan", "inf", "")
        ),
    ],
)
def test_configuration_errors(jobs, capsys, iris_table, environ, fragment):
    assert_user_error(jobs.split(*iris_table, **environ), capsys, fragment)


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        (
            {"CV_PARAMS": "C,kernal,colour"},
            "SVC has no parameter(s) 'kernal' (did you mean 'kernel'?), 'colour': its",
        ),
        (
            {"CV_METRIC": "r2"},
            "metric: 'r2' scores regression but SVC is a classifier: set metrics to auto or to a",
        ),
        ({"CV_METRIC": "roc_auc"}, "metric: 'roc_auc' cannot score target column 'species' (3 classes)"),
        (
            {"CV_METRIC": "f1"},
            "metric: 'f1' cannot score target column 'species' (3 classes): Target is multiclass",
        ),
        (
            {"CV_METRIC": "neg_log_loss", "CV_ESTIMATOR": "LinearSVC"},
            "metric: 'neg_log_loss' needs predict_proba, which LinearSVC lacks",
        ),
    ],
)
def test_what_would_fail_every_candidate_is_refused_before_any_fit(
    jobs, capsys, iris_table, environ, fragment
):
    assert_user_error(jobs.split(*iris_table, **environ), capsys, fragment)


def test_holdout_that_stratification_or_the_folds_cannot_take(jobs, capsys, iris_table, diabetes):
    header, rows = iris_table
    job = jobs.split(header, rows[:101], CV_SPLITTER="KFold", CV_HOLDOUT=0.2)  # one virginica row
    assert_user_error(
        job,
        capsys,
        "cv.holdout: a holdout stratified by class needs at least 2 rows of every class, but data.csv",
        "for class(es) 'virginica'",
        "set cv.holdout to 0",
    )
    job = jobs.split(header, rows, CV_HOLDOUT=0.01)
    assert_user_error(
        job, capsys, "cv.holdout: 0.01 of the 150 rows of data.csv is 2 rows, fewer than the 3 classes"
    )
    # Six virginica rows make five stratified folds, but not once a stratified 40% of them is held out.
    job = jobs.split(header, rows[:106], CV_HOLDOUT=0.4)
    assert_user_error(
        job,
        capsys,
        "cv.k: StratifiedKFold with k=5 needs at least 5 rows of every class, but data.csv without its 43 "
        "holdout rows (cv.holdout=0.4) has fewer for class(es) 'virginica'",
        "lower cv.k or cv.holdout",
    )
    X, y, header = diabetes
    rows = [[*map(float, x), float(t)] for x, t in zip(X[:8], y[:8], strict=True)]
    job = jobs.split(header, rows, CV_TARGET="progression", CV_ESTIMATOR="Ridge", CV_HOLDOUT=0.4)
    assert_user_error(
        job,
        capsys,
        "cv.k: 5 folds need at least 5 rows but data.csv without its 4 holdout rows (cv.holdout=0.4) has "
        "4: lower cv.k or cv.holdout",
    )


def test_known_parameters_pass(jobs):
    assert jobs.split_iris(CV_PARAMS="C,gamma,kernel,random_state").code == 0


def test_text_labels_with_a_binary_metric_say_which_class_is_positive(jobs, capsys, iris_table):
    header, rows = iris_table
    job = jobs.split(header, rows[:100], CV_METRIC="precision")
    assert_user_error(job, capsys, "pos_label=1", "set pos_label to one of ['setosa', 'versicolor']")
    job = jobs.split(header, rows[:100], CV_METRIC="precision", CV_POS_LABEL='"versicolor"')
    assert job.code == 0, job.failure
    assert job.json("processing/output/manifest.json")["pos_label"] == "versicolor"


def test_metric_of_the_wrong_task_for_a_regressor(jobs, capsys, diabetes):
    X, y, header = diabetes
    rows = [[*map(float, x), float(t)] for x, t in zip(X, y, strict=True)]
    job = jobs.split(header, rows, CV_TARGET="progression", CV_ESTIMATOR="Ridge", CV_METRIC="accuracy")
    assert_user_error(job, capsys, "metric: 'accuracy' scores classification but Ridge is a regressor", "r2")


def test_a_quantity_given_to_a_classifier(jobs, capsys, diabetes):
    X, y, header = diabetes
    job = jobs.split(header, [[*map(float, x), float(t)] for x, t in zip(X, y, strict=True)], CV_TARGET="bmi")
    assert_user_error(
        job, capsys, "data.csv: target column 'bmi' holds fractional numbers", "choose a regressor"
    )
    # Whole numbers are class labels, but this many classes hint at a quantity.
    job = jobs.split(
        header, [[*map(float, x), float(t)] for x, t in zip(X, y, strict=True)], CV_TARGET="progression"
    )
    assert_user_error(
        job, capsys, "lower cv.k", "if 'progression' is a quantity rather than a class, choose a regressor"
    )


def test_a_single_class_is_named(jobs, capsys, iris_table):
    header, rows = iris_table
    job = jobs.split(header, rows[:50])
    assert_user_error(job, capsys, "data.csv: target column 'species' has a single class ('setosa')")


def test_input_must_be_one_file_or_exactly_one_csv(jobs, capsys, iris_table):
    job = jobs.split_files({"notes.txt": b"x,y\n1,2\n", "more.txt": b""})
    assert_user_error(job, capsys, "dataset.uri: expected one CSV or Parquet file, found 0 among the 2 files")
    job = jobs.split_files({"a/one.csv": b"x,species\n1,a\n", "b/two.csv": b"x,species\n1,a\n"})
    assert_user_error(job, capsys, "found 2 among the 2 files under it: 'a/one.csv', 'b/two.csv'")
    # A single file is the dataset whatever its name, as a dataset URI naming one object brings just it.
    header, rows = iris_table
    job = jobs.split_files({"notes.txt": None}, header=header, rows=rows)
    assert job.code == 0, job.failure


def test_other_delimiters_are_named(jobs, capsys):
    job = jobs.split_files({"data.csv": b"x;y;species\n1;2;a\n"})
    assert_user_error(
        job,
        capsys,
        "data.csv: the header is one column, 'x;y;species', and looks separated by ';'",
        "set dataset.csv.delimiter to ';'",
    )
    job = jobs.split_files(
        {"data.csv": b"x;y;species\n1;2;a\n3;4;b\n5;6;a\n7;8;b\n"}, CV_CSV='{"delimiter": ";"}', CV_K=2
    )
    assert job.code == 0, job.failure


def test_ragged_row_names_its_line(jobs, capsys):
    job = jobs.split_files({"data.csv": b"x,species\n1,a\n\n2,b,extra\n"})
    assert_user_error(
        job, capsys, "data.csv is not valid CSV with delimiter ',': Expected 2 columns, got 3: 2,b,extra"
    )


def test_unexpected_error_exits_2_with_type_and_message(jobs, capsys, iris_table, monkeypatch):
    def broken(*args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(split, "assign_folds", broken)
    job = jobs.split(*iris_table)
    assert job.code == 2
    assert job.failure == "RuntimeError: disk on fire"
    assert "Traceback" in capsys.readouterr().err
    assert job.files("processing/output") == []


def test_failed_write_leaves_no_partial_output(jobs, iris_table, monkeypatch):
    def failing_save(stream, allow_pickle, **arrays):
        stream.write(b"partial")
        raise OSError("no space left on device")

    monkeypatch.setattr(np, "savez", failing_save)
    job = jobs.split(*iris_table)
    assert job.code == 2 and "no space left" in job.failure
    assert job.files("processing/output") == []
    assert not (job.root / "output/message").exists()


def test_example_iris_csv_is_sklearn_iris(iris):
    X, y = iris
    with (EXAMPLES / "iris.csv").open(newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    assert len(rows) == 151
    assert np.array_equal(np.array([[float(v) for v in row[:4]] for row in rows[1:]]), X)
    assert [row[4] for row in rows[1:]] == [["setosa", "versicolor", "virginica"][t] for t in y]
