"""The whole workflow definition, run end to end on the local engine with small real data."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import accuracy_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from cvpipe.cli import main
from cvpipe.errors import UserError
from cvpipe.pipeline.history_file import CHILD_HISTORIES_FILE, HISTORY_FILE, read_history
from cvpipe.pipeline.local import LocalPipeline
from cvpipe.pipeline.run_command import print_summary

from .conftest import IRIS, ROOT, package_count

pytestmark = pytest.mark.e2e


def iris_input(**overrides) -> dict:
    document = {
        "dataset": {"uri": str(IRIS), "target": "species"},
        "cv": {"splitter": "StratifiedKFold", "k": 5, "seed": 3},
        "model": {
            "estimator": "SVC",
            "search_space": {"C": {"values": [0.1, 1.0]}, "kernel": {"values": ["linear", "rbf"]}},
        },
        "metric": "accuracy",
        "baseline": 0.8,
        "registry": {"group": "tests-iris"},
    }
    document.update(overrides)
    return document


def read_iris() -> tuple[np.ndarray, np.ndarray]:
    with IRIS.open() as f:
        rows = list(csv.reader(f))[1:]
    return np.array([[float(v) for v in row[:-1]] for row in rows]), np.array([row[-1] for row in rows])


def test_runs_register_successive_versions(pipeline: LocalPipeline, home: Path, capfd) -> None:
    first = pipeline.run(iris_input(registry={"group": "tests-versions"}), name="versions-1")
    second = pipeline.run(iris_input(registry={"group": "tests-versions"}), name="versions-2")

    assert (first.status, second.status) == ("SUCCEEDED", "SUCCEEDED")
    assert first.document()["model_package_version"] == 1
    assert second.document()["model_package_version"] == 2
    best = second.document()["best"]
    assert len(best["cv"]["folds"]) == 5
    assert best["cv"]["mean"] == pytest.approx(np.mean(best["cv"]["folds"]))
    assert best["cv"]["std"] == pytest.approx(np.std(best["cv"]["folds"]))

    capfd.readouterr()
    assert main(["models", "list", "--group", "tests-versions", "--json", "--home", str(home)]) == 0
    listed = json.loads(capfd.readouterr().out)["model_packages"]
    assert [row["version"] for row in listed] == [2, 1]
    assert listed[0]["cv_mean"] == pytest.approx(best["cv"]["mean"])
    # The run folder holds the folds, every job with its log, the history and the outcome.
    run_dir = Path(second.document()["run_dir"])
    assert {"split", "jobs", HISTORY_FILE, "execution.json"} <= {p.name for p in run_dir.iterdir()}
    assert json.loads((run_dir / "execution.json").read_text())["status"] == "SUCCEEDED"


def test_fixed_candidate_scores_equal_cross_validate(pipeline: LocalPipeline) -> None:
    params = {"C": 0.7, "kernel": "rbf", "gamma": 0.2}
    cv = {"k": 4, "seed": 11, "return_train_score": True}
    run = pipeline.run(iris_input(model={"estimator": "SVC", "params": params}, cv=cv), name="fixed-iris")

    X, y = read_iris()
    expected = cross_validate(
        Pipeline([("scaler", StandardScaler()), ("estimator", SVC(**params, random_state=11))]),
        X,
        y,
        cv=StratifiedKFold(4, shuffle=True, random_state=11),
        scoring="accuracy",
        return_train_score=True,
    )
    assert run.status == "SUCCEEDED"
    best = run.document()["best"]
    assert best["params"] == params
    assert best["cv"]["folds"] == list(expected["test_score"])
    assert best["cv"]["train_mean"] == pytest.approx(expected["train_score"].mean())


def test_regression_with_kfold_equals_cross_validate(pipeline: LocalPipeline, tmp_path: Path) -> None:
    data = load_diabetes()
    dataset = tmp_path / "diabetes.csv"
    with dataset.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*data.feature_names, "progression"])
        writer.writerows(
            [*map(repr, map(float, row)), repr(float(target))]
            for row, target in zip(data.data, data.target, strict=False)
        )
    run = pipeline.run(
        {
            "dataset": {"uri": str(dataset), "target": "progression"},
            "cv": {"k": 3, "seed": 5},
            "model": {"estimator": "Ridge", "params": {"alpha": 2.0}},
            "registry": {"group": "tests-diabetes"},
        },
        name="fixed-diabetes",
    )

    # The jobs fit on a DataFrame, as scikit-learn's Pipeline here does (a row-major array would make
    # BLAS sum in another order, changing the last bits).
    expected = cross_validate(
        Pipeline([("scaler", StandardScaler()), ("estimator", Ridge(alpha=2.0, random_state=5))]),
        pd.DataFrame(data.data, columns=data.feature_names),
        data.target,
        cv=KFold(3, shuffle=True, random_state=5),
        scoring="r2",
    )["test_score"]
    assert run.status == "SUCCEEDED", run.cause
    doc = run.document()
    assert doc["metric"] == "r2" and doc["dataset"]["splitter"] == "KFold"
    assert doc["best"]["cv"]["folds"] == list(expected)


def test_baseline_above_the_data_fails_and_registers_nothing(pipeline: LocalPipeline) -> None:
    before = package_count(pipeline)
    run = pipeline.run(iris_input(baseline=0.999), name="too-high")

    assert run.status == "FAILED"
    assert run.error == "BelowBaseline"
    best = run.document()["best"]["cv"]["mean"]
    assert str(best) in run.cause and "0.999" in run.cause
    assert run.document()["model_package_arn"] is None
    assert package_count(pipeline) == before


def test_failing_candidate_is_reported_and_the_others_go_on(pipeline: LocalPipeline) -> None:
    # A value only the data refuses: more neighbours than a fold's 120 training rows.
    space = {"n_neighbors": {"values": [5, 150]}}
    run = pipeline.run(
        iris_input(model={"estimator": "KNeighborsClassifier", "search_space": space}),
        name="too-many-neighbours",
    )

    assert run.status == "SUCCEEDED", run.cause
    history = run.document()["tuning"]["history"]
    failed = [entry for entry in history if entry["status"] == "Failed"]
    assert [entry["params"] for entry in failed] == [{"n_neighbors": 150}]
    assert len(failed[0]["failures"]) == 5
    # The tuning history keeps the first failure's reason and the start of the others' (payload budget).
    first, *others = failed[0]["failures"]
    assert "n_neighbors = 150" in first["cause"]
    assert all(first["cause"].startswith(failure["cause"].removesuffix("...")) for failure in others)
    assert run.document()["best"]["params"] == {"n_neighbors": 5}
    summary = io.StringIO()
    print_summary(run, summary)
    assert re.search(
        r"failed +candidate 1 \{\"n_neighbors\": 150\}: fold 0: .*n_neighbors = 150", summary.getvalue()
    )
    # The jobs' FailureReason is in the candidate's child execution history too.
    events = read_history(Path(run.document()["run_dir"]), CHILD_HISTORIES_FILE)
    job_failures = [
        e["taskFailedEventDetails"]
        for e in events
        if e["type"] == "TaskFailed" and e["taskFailedEventDetails"]["resource"] == "createTrainingJob.sync"
    ]
    assert len(job_failures) == 5
    assert all(
        "n_neighbors = 150" in json.loads(failure["cause"])["FailureReason"] for failure in job_failures
    )


def test_every_candidate_failing_ends_the_run(pipeline: LocalPipeline) -> None:
    before = package_count(pipeline)
    run = pipeline.run(
        iris_input(model={"estimator": "KNeighborsClassifier", "params": {"n_neighbors": 150}}),
        name="all-fail",
    )
    assert (run.status, run.error) == ("FAILED", "NoCandidateSucceeded")
    assert package_count(pipeline) == before


def test_invalid_input_names_the_field(pipeline: LocalPipeline) -> None:
    run = pipeline.run(iris_input(cv={"k": 1}), name="bad-k")
    assert (run.status, run.error) == ("FAILED", "InvalidInputError")
    assert "cv.k" in run.cause


def test_split_failure_names_the_column(pipeline: LocalPipeline) -> None:
    run = pipeline.run(iris_input(dataset={"uri": str(IRIS), "target": "colour"}), name="no-column")
    assert (run.status, run.error) == ("FAILED", "SplitFailed")
    assert "colour" in run.cause and "species" in run.cause


def test_missing_dataset_file_is_a_user_error_before_anything_runs(
    pipeline: LocalPipeline, tmp_path: Path
) -> None:
    with pytest.raises(UserError, match="no such file"):
        pipeline.run(
            iris_input(dataset={"uri": str(tmp_path / "nope.csv"), "target": "species"}), name="no-file"
        )
    assert not pipeline.run_dir("no-file").exists()


def test_cli_json_output(home: Path) -> None:
    # A process of its own, as users run it: nothing but the document may reach stdout.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cvpipe",
            "run",
            "--home",
            str(home),
            "--json",
            "--name",
            "cli-json",
            "--workers",
            "2",
            "--set",
            "tuning.max_candidates=2",
            "--set",
            "tuning.sample_grid=true",
            "--set",
            "cv.k=3",
            "--set",
            "registry.group=tests-cli",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {"best", "model_package_arn", "run_dir"} <= set(document)
    assert len(document["best"]["cv"]["folds"]) == 3
    assert document["model_package_arn"].endswith("/tests-cli/1")


def test_cli_rejects_bad_arguments_without_a_traceback(home: Path, tmp_path: Path, capfd) -> None:
    assert main(["run", "--home", str(home), "--input", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capfd.readouterr().err
    assert main(["run", "--home", str(home), "--set", "nonsense"]) == 2
    assert "KEY=VALUE" in capfd.readouterr().err
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cvpipe",
            "run",
            "--home",
            str(home),
            "--name",
            "cli-bad-k",
            "--set",
            "cv.k=1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "cv.k" in result.stderr and "Traceback" not in result.stderr


def test_holdout_gate_scores_the_choice_on_rows_no_fold_job_saw(pipeline: LocalPipeline) -> None:
    params = {"C": 0.7, "kernel": "rbf"}
    cv = {"k": 4, "seed": 2, "holdout": 0.2}
    run = pipeline.run(iris_input(model={"estimator": "SVC", "params": params}, cv=cv), name="holdout")
    assert run.status == "SUCCEEDED", run.cause

    X, y = read_iris()
    tuned, held = train_test_split(np.arange(len(y)), test_size=0.2, shuffle=True, random_state=2, stratify=y)
    tuned = np.sort(tuned)  # the folds are assigned to the remaining rows in file order
    pipe = Pipeline([("scaler", StandardScaler()), ("estimator", SVC(**params, random_state=2))])
    folds = cross_validate(
        pipe, X[tuned], y[tuned], cv=StratifiedKFold(4, shuffle=True, random_state=2), scoring="accuracy"
    )["test_score"]
    holdout_score = accuracy_score(y[held], pipe.fit(X[tuned], y[tuned]).predict(X[held]))
    doc = run.document()
    assert doc["best"]["cv"]["folds"] == list(folds)
    assert doc["holdout"]["score"] == [holdout_score]
    assert doc["dataset"]["holdout_rows"] == len(held)
    statistics = pipeline.store.get_bytes(
        pipeline.registry.describe_model_package(doc["model_package_arn"])["ModelMetrics"]["ModelQuality"][
            "Statistics"
        ]["S3Uri"]
    )
    assert json.loads(statistics)["holdout"] == {"value": holdout_score, "rows": len(held)}


def test_holdout_below_the_baseline_fails_with_both_scores(pipeline: LocalPipeline) -> None:
    before = package_count(pipeline)
    weak = {"estimator": "SVC", "params": {"C": 0.0001, "kernel": "linear"}}
    run = pipeline.run(
        iris_input(model=weak, cv={"k": 3, "seed": 2, "holdout": 0.25}, baseline=0.95), name="holdout-low"
    )
    assert (run.status, run.error) == ("FAILED", "BelowBaseline")
    assert "holdout rows" in run.cause and "0.95" in run.cause
    assert package_count(pipeline) == before
