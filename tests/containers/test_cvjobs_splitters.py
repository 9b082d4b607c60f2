"""Every supported splitter, with groups, time order, text categories and missing values: the split and
fold jobs give scikit-learn's cross_validate scores fold for fold; preprocessing never sees test rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import reference_pipeline
from sklearn import model_selection
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_validate
from sklearn.neighbors import KNeighborsClassifier

from cvjobs import data, train

pytestmark = pytest.mark.unit

NUMERIC = ["height", "dose"]
CATEGORICAL = ["site"]
COLUMNS = ["patient", "day", *NUMERIC, *CATEGORICAL, "outcome"]


def table(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """Patients with several rows each, days out of order, missing numbers and text, a rare site."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "patient": [f"p{i % (n_rows // 3)}" for i in range(n_rows)],
            "day": rng.permutation(n_rows),
            "height": rng.normal(170, 10, n_rows).round(1),
            "dose": rng.uniform(0, 5, n_rows).round(2),
            "site": rng.choice(["north", "south", "east"], n_rows).astype(object),
            "outcome": np.where(rng.uniform(size=n_rows) > 0.5, "yes", "no"),
        }
    )
    frame.loc[[1, 7 % n_rows], "height"] = np.nan
    frame.loc[[2, 11 % n_rows], "site"] = np.nan
    frame.loc[n_rows - 1, "site"] = "west"  # a level only one fold's rows have
    return frame


def write(frame: pd.DataFrame) -> tuple[list[str], list[list[object]]]:
    rows = [["" if pd.isna(v) else v for v in row] for row in frame.itertuples(index=False)]
    return list(frame.columns), rows


CASES = [
    # (splitter, environment, rows, sklearn splitter, grouped, time-ordered, metrics)
    ("KFold", {}, 30, model_selection.KFold(3, shuffle=True, random_state=7), False, False),
    ("KFold", {"CV_SHUFFLE": "false"}, 30, model_selection.KFold(3), False, False),
    (
        "StratifiedKFold",
        {},
        30,
        model_selection.StratifiedKFold(3, shuffle=True, random_state=7),
        False,
        False,
    ),
    ("GroupKFold", {}, 30, model_selection.GroupKFold(3, shuffle=True, random_state=7), True, False),
    (
        "StratifiedGroupKFold",
        {},
        30,
        model_selection.StratifiedGroupKFold(3, shuffle=True, random_state=7),
        True,
        False,
    ),
    (
        "TimeSeriesSplit",
        {"CV_GAP": "1", "CV_MAX_TRAIN_SIZE": "12", "CV_TEST_SIZE": "5"},
        30,
        model_selection.TimeSeriesSplit(3, gap=1, max_train_size=12, test_size=5),
        False,
        True,
    ),
    (
        "RepeatedKFold",
        {"CV_REPEATS": "2"},
        30,
        model_selection.RepeatedKFold(n_splits=3, n_repeats=2, random_state=7),
        False,
        False,
    ),
    (
        "RepeatedStratifiedKFold",
        {"CV_REPEATS": "2"},
        30,
        model_selection.RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=7),
        False,
        False,
    ),
    (
        "ShuffleSplit",
        {"CV_TEST_SIZE": "0.25"},
        30,
        model_selection.ShuffleSplit(3, test_size=0.25, random_state=7),
        False,
        False,
    ),
    (
        "StratifiedShuffleSplit",
        {"CV_TEST_SIZE": "0.3"},
        30,
        model_selection.StratifiedShuffleSplit(3, test_size=0.3, random_state=7),
        False,
        False,
    ),
    ("LeaveOneGroupOut", {}, 30, model_selection.LeaveOneGroupOut(), True, False),
    ("LeaveOneOut", {}, 10, model_selection.LeaveOneOut(), False, False),
    ("LeavePOut", {"CV_P": "2"}, 7, model_selection.LeavePOut(2), False, False),
]


@pytest.mark.integration  # a split and k training jobs per splitter: out of make test-fast
@pytest.mark.parametrize(("name", "environ", "n_rows", "reference", "grouped", "timed"), CASES)
def test_fold_scores_equal_cross_validate_for_every_splitter(
    jobs, name, environ, n_rows, reference, grouped, timed
):
    frame = table(n_rows)
    settings = {
        "CV_TARGET": "outcome",
        "CV_ESTIMATOR": "KNeighborsClassifier" if name.startswith("Leave") else "LogisticRegression",
        "CV_SPLITTER": name,
        "CV_K": "3",
        "CV_SEED": "7",
        "CV_METRICS": '["accuracy"]',
        **({"CV_GROUP_COLUMN": "patient"} if grouped else {"CV_EXCLUDE": '["patient"]'}),
        **(
            {"CV_TIME_COLUMN": "day"}
            if timed
            else {"CV_EXCLUDE": '["patient", "day"]'}
            if not grouped
            else {}
        ),
        **environ,
    }
    if grouped:
        settings["CV_EXCLUDE"] = '["day"]'
    split_job = jobs.split(*write(frame), **settings)
    assert split_job.code == 0, split_job.failure
    n_splits = split_job.json("output/message")["k"]

    # Fold jobs: the test score of each split, and the train score (a continuous log loss there shows
    # that the fit saw the very same rows).
    # Leaving rows or groups out makes many small test parts of a single class, where log loss is
    # undefined: those splitters run a cheap KNN scored by accuracy.
    exhaustive = name.startswith("Leave")
    hyperparameters = {
        "cv_train_score": "true",
        **({"n_neighbors": "3"} if exhaustive else {"C": "0.7", "cv_metric": "neg_log_loss"}),
    }
    results = [jobs.train(split_job, {**hyperparameters, "cv_fold": str(s)}) for s in range(n_splits)]
    for result in results:
        assert result.code == 0, result.failure
    accuracy = [r.json("output/data/metrics.json")["test_scores"]["accuracy"] for r in results]
    train_score = [r.metrics()["train:score"] for r in results]

    expected_frame = frame.sort_values("day", kind="stable") if timed else frame
    X = expected_frame[NUMERIC + CATEGORICAL]
    groups = expected_frame["patient"] if grouped else None
    expected = cross_validate(
        reference_pipeline(
            KNeighborsClassifier(n_neighbors=3) if exhaustive else LogisticRegression(C=0.7, random_state=7),
            NUMERIC,
            CATEGORICAL,
        ),
        X,
        expected_frame["outcome"].to_numpy(),
        groups=groups,
        cv=reference,
        scoring=["accuracy"] if exhaustive else ["accuracy", "neg_log_loss"],
        return_train_score=True,
    )
    assert n_splits == len(expected["test_accuracy"])
    assert accuracy == expected["test_accuracy"].tolist()
    assert train_score == expected["train_accuracy" if exhaustive else "train_neg_log_loss"].tolist()


def test_grouped_patients_score_what_group_k_fold_scores_not_one(jobs):
    """40 patients x 15 near-identical rows each: row-wise folds let KNN find each patient's twin."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 5))
    labels = rng.integers(0, 2, 40)
    X = np.repeat(centres, 15, axis=0) + rng.normal(scale=0.01, size=(600, 5))
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    frame["patient"] = np.repeat([f"patient-{i}" for i in range(40)], 15)
    frame["label"] = np.repeat(labels, 15)
    header, rows = list(frame.columns), frame.values.tolist()
    common = {"CV_TARGET": "label", "CV_ESTIMATOR": "KNeighborsClassifier", "CV_K": "5"}

    grouped = jobs.split(header, rows, **common, CV_GROUP_COLUMN="patient")
    assert grouped.code == 0, grouped.failure
    assert grouped.json("output/message")["splitter"] == "GroupKFold"
    scores = [jobs.train(grouped, {"cv_fold": str(s)}).metrics()["validation:score"] for s in range(5)]

    features = frame[[f"x{i}" for i in range(5)]]
    expected = cross_validate(
        reference_pipeline(KNeighborsClassifier(), list(features.columns)),
        features,
        frame["label"].to_numpy(),
        groups=frame["patient"],
        cv=model_selection.GroupKFold(5, shuffle=True, random_state=0),  # cv.shuffle defaults to true
        scoring="accuracy",
    )["test_score"]
    assert scores == expected.tolist()
    assert np.mean(scores) < 0.8  # far from the 1.0 a row-wise split reports
    ungrouped = jobs.split(header, rows, **common, CV_EXCLUDE='["patient"]')
    leaky = [jobs.train(ungrouped, {"cv_fold": str(s)}).metrics()["validation:score"] for s in range(5)]
    assert np.mean(leaky) == 1.0


def test_a_grouped_or_timed_holdout_keeps_groups_whole_and_takes_the_last_rows(jobs):
    frame = table(30)
    header, rows = write(frame)
    grouped = jobs.split(
        header, rows, CV_TARGET="outcome", CV_GROUP_COLUMN="patient", CV_HOLDOUT="0.2", CV_ESTIMATOR="SVC"
    )
    assert grouped.code == 0, grouped.failure
    split = data.load_split(grouped.root / "processing/output")
    held = set(frame["patient"].iloc[split.folds["holdout"]])
    assert held and not held & set(
        frame["patient"].iloc[np.concatenate([split.folds[f"train_{s}"] for s in range(5)])]
    )
    timed = jobs.split(
        header,
        rows,
        CV_TARGET="outcome",
        CV_TIME_COLUMN="day",
        CV_HOLDOUT="0.2",
        CV_ESTIMATOR="SVC",
        CV_K="3",
    )
    assert timed.code == 0, timed.failure
    split = data.load_split(timed.root / "processing/output")
    assert split.folds["holdout"].tolist() == list(range(24, 30))  # rows are stored in time order
    expected = frame.sort_values("day", kind="stable")["height"].to_numpy()
    assert np.array_equal(split.frame["height"].to_numpy(), expected, equal_nan=True)


def test_preprocessing_learns_from_the_training_rows_only(jobs):
    """Each fitted statistic (means, scales, imputed values, categories) comes from the training part: a
    test fold with extreme values and a level of its own leaves it unchanged."""
    frame = table(30)
    header, rows = write(frame)
    split_job = jobs.split(
        header,
        rows,
        CV_TARGET="outcome",
        CV_ESTIMATOR="LogisticRegression",
        CV_EXCLUDE='["patient", "day"]',
        CV_K="3",
    )
    split = data.load_split(split_job.root / "processing/output")
    config = train.parse_hyperparameters({"cv_fold": "0"})
    fitted = train.fit_fold(split, config)
    test = split.folds["test_0"]

    poisoned = split.frame.copy()
    poisoned.loc[test, "height"] = 1e9
    poisoned.loc[test, "dose"] = np.nan
    poisoned.loc[test, "site"] = "only-in-test"
    refitted = train.fit_fold(data.SplitData(poisoned, split.folds, split.manifest), config)

    for model in (fitted.model, refitted.model):
        numeric = model.named_steps["preprocess"].named_transformers_["numeric"]
        categorical = model.named_steps["preprocess"].named_transformers_["categorical"]
        training = frame.iloc[fitted.train]
        assert numeric.named_steps["impute"].statistics_.tolist() == training[NUMERIC].mean().tolist()
        imputed = training[NUMERIC].fillna(training[NUMERIC].mean())
        assert np.allclose(numeric.named_steps["scale"].mean_, imputed.mean(), rtol=1e-12)
        categories = categorical.named_steps["encode"].categories_[0].tolist()
        assert categories == sorted(training["site"].dropna().unique())
        assert "only-in-test" not in categories
    assert np.array_equal(
        fitted.model.named_steps["estimator"].coef_, refitted.model.named_steps["estimator"].coef_
    )
    # Unknown levels are ignored when scoring, as handle_unknown="ignore" promises.
    result = jobs.train(split_job, {"cv_fold": "2"})
    assert result.code == 0, result.failure
