import json

import numpy as np
import pytest
from pydantic import ValidationError

pytestmark = pytest.mark.unit

CONFIG: dict = {}  # a normalised config, max_candidates 6 in rounds of 3: filled by the fixture below


@pytest.fixture(scope="module", autouse=True)
def normalised_config(prepare_input):
    document = {
        "dataset": {"uri": "s3://cvpipe-data/iris.csv", "target": "species"},
        "tuning": {"max_candidates": 6, "batch_size": 3},
    }
    CONFIG.update(prepare_input.execution_input.normalise(document, execution="exec-1", bucket="b"))


@pytest.fixture(scope="module")
def fold_scores(aggregate_scores):
    return aggregate_scores.fold_scores


def candidate(id_, **params):
    return {
        "id": id_,
        "params": params,
        "hyperparameters": {name: json.dumps(v) for name, v in params.items()},
    }


def completed(fold, score, train=0.99, fit_time=0.5):
    metrics = [
        {"MetricName": "validation:score", "Value": score, "Timestamp": "2024-01-01T00:00:00Z"},
        {"MetricName": "train:score", "Value": train},
        {"MetricName": "fit_time", "Value": fit_time},
    ]
    return {"fold": fold, "job": f"cv-job-f{fold}", "status": "Completed", "metrics": metrics}


def failed(fold, cause="AlgorithmError: boom"):
    return {
        "fold": fold,
        "job": f"cv-job-f{fold}",
        "status": "Failed",
        "error": "States.TaskFailed",
        "cause": cause,
    }


def scored(*scores):
    return [completed(fold, score) for fold, score in enumerate(scores)]


def aggregate(fold_scores, candidates, evaluations, tuning=None, config=CONFIG):
    event = {"config": config, "tuning": tuning, "candidates": candidates, "evaluations": evaluations}
    return fold_scores.aggregate(fold_scores.RoundResults.model_validate(event)).model_dump(mode="json")


def test_cv_mean_and_std_match_numpy(fold_scores):
    scores = [0.91, 0.87, 0.95, 0.9, 0.88]
    folds = [completed(i, s, train=1 - i / 100, fit_time=i) for i, s in enumerate(scores)]

    tuning = aggregate(fold_scores, [candidate(0, C=1.0)], [folds])

    cv = tuning["history"][0]["cv"]
    assert cv["mean"] == pytest.approx(np.mean(scores))
    assert cv["std"] == pytest.approx(np.std(scores))  # ddof=0, like scikit-learn's std_test_score
    assert cv["folds"] == scores
    assert cv["train_mean"] == pytest.approx(np.mean([1, 0.99, 0.98, 0.97, 0.96]))
    assert cv["fit_time_mean"] == pytest.approx(2.0)


def test_history_entry_shape(fold_scores):
    tuning = aggregate(fold_scores, [candidate(0, C=1.0)], [scored(0.8, 0.9)])

    assert tuning == {
        "round": 1,
        "history": [
            {
                "id": 0,
                "params": {"C": 1.0},
                "hyperparameters": {"C": "1.0"},
                "status": "Completed",
                "cv": {
                    "mean": pytest.approx(0.85),
                    "std": pytest.approx(0.05),
                    "folds": [0.8, 0.9],
                    "train_mean": 0.99,
                    "fit_time_mean": 0.5,
                    "stderr": pytest.approx(0.05),
                    "fit_time_std": 0.0,
                    "score_time_mean": None,
                    "score_time_std": None,
                    "metrics": {},  # the split's metric names come with config.dataset_info
                },
                "failures": [],
            }
        ],
        "best": tuning["history"][0],
        "evaluated": 1,
        "failed": 0,
        "done": True,
    }


def test_every_metric_is_reported_per_fold_with_mean_std_and_standard_error(fold_scores, dataset_info):
    """The refit metric is validation:score; the i-th of the split's other metrics validation:metric<i>."""
    info = dataset_info(k=3, metric="f1_macro", metrics=["accuracy", "f1_macro", "roc_auc_ovr"])
    folds = []
    for fold, (accuracy, f1, auc) in enumerate([(0.9, 0.8, 0.95), (0.7, 0.6, 0.85), (0.8, 0.7, 0.9)]):
        result = completed(fold, f1, train=0.99)
        result["metrics"] += [
            {"MetricName": "validation:metric0", "Value": accuracy},
            {"MetricName": "train:metric0", "Value": 1.0},
            {"MetricName": "validation:metric2", "Value": auc},
            {"MetricName": "score_time", "Value": 0.1 * (fold + 1)},
        ]
        folds.append(result)

    config = {**CONFIG, "dataset_info": info}
    cv = aggregate(fold_scores, [candidate(0, C=1.0)], [folds], config=config)["history"][0]["cv"]

    assert list(cv["metrics"]) == info["metrics"]
    accuracy = cv["metrics"]["accuracy"]
    assert accuracy["folds"] == [0.9, 0.7, 0.8]
    assert accuracy["mean"] == pytest.approx(0.8) and accuracy["std"] == pytest.approx(
        np.std([0.9, 0.7, 0.8])
    )
    assert accuracy["stderr"] == pytest.approx(np.std([0.9, 0.7, 0.8], ddof=1) / np.sqrt(3))
    assert (accuracy["train_folds"], accuracy["train_mean"]) == ([1.0, 1.0, 1.0], 1.0)
    assert cv["metrics"]["f1_macro"]["folds"] == cv["folds"] == [0.8, 0.6, 0.7]  # refit: the chosen score
    assert cv["metrics"]["roc_auc_ovr"]["train_folds"] is None
    assert cv["score_time_mean"] == pytest.approx(0.2)


def test_fold_scores_are_in_fold_order(fold_scores):
    folds = [completed(2, 0.3), completed(0, 0.1), completed(1, 0.2)]

    tuning = aggregate(fold_scores, [candidate(0)], [folds])

    assert tuning["history"][0]["cv"]["folds"] == [0.1, 0.2, 0.3]


def test_any_failed_fold_fails_the_candidate(fold_scores):
    folds = [completed(0, 0.9), failed(1), completed(2, 0.8)]

    tuning = aggregate(fold_scores, [candidate(0)], [folds])

    (entry,) = tuning["history"]
    assert entry["status"] == "Failed" and entry["cv"] is None
    assert entry["failures"] == [
        {"fold": 1, "job": "cv-job-f1", "error": "States.TaskFailed", "cause": "AlgorithmError: boom"}
    ]
    assert (tuning["best"], tuning["failed"]) == (None, 1)


def test_missing_or_non_finite_validation_score_fails_the_fold(fold_scores):
    no_score = completed(0, 0.9)
    no_score["metrics"] = [m for m in no_score["metrics"] if m["MetricName"] != "validation:score"]

    tuning = aggregate(fold_scores, [candidate(0), candidate(1)], [[no_score], [completed(0, float("nan"))]])

    for entry in tuning["history"]:
        assert entry["status"] == "Failed"
        (failure,) = entry["failures"]
        assert failure["error"] == "MissingValidationScore"
        assert "validation:score" in failure["cause"]


def test_failure_cause_is_the_failure_reason_trimmed(fold_scores):
    described = json.dumps({"TrainingJobName": "cv-job-f0", "FailureReason": "AlgorithmError: " + "x" * 5000})

    tuning = aggregate(
        fold_scores, [candidate(0), candidate(1)], [[failed(0, described)], [failed(0, "y" * 2000)]]
    )

    first, second = (entry["failures"][0]["cause"] for entry in tuning["history"])
    limit = fold_scores.MAX_TEXT
    assert first.startswith("AlgorithmError: xxx") and len(first) == limit and first.endswith("...")
    assert second == "y" * (limit - 3) + "..."


def test_a_candidate_keeps_its_first_failure_and_the_errors_of_the_others(fold_scores):
    """Every fold's whole cause is in its candidate's child execution history; the tuning history,
    which travels in the state machine's payload, keeps the cause of the first only."""
    causes = ["first " + "a" * 600, "second " + "b" * 600, "third"]

    tuning = aggregate(
        fold_scores, [candidate(0)], [[failed(fold, cause) for fold, cause in enumerate(causes)]]
    )

    failures = tuning["history"][0]["failures"]
    assert len(failures[0]["cause"]) == fold_scores.MAX_TEXT and failures[0]["cause"].startswith("first a")
    assert [(failure["fold"], failure["cause"]) for failure in failures[1:]] == [(1, ""), (2, "")]
    assert all(failure["error"] for failure in failures)


def test_train_mean_is_null_unless_every_fold_reports_it(fold_scores):
    partial = completed(1, 0.8)
    partial["metrics"] = partial["metrics"][:1]

    tuning = aggregate(fold_scores, [candidate(0)], [[completed(0, 0.9), partial]])

    assert tuning["history"][0]["cv"]["train_mean"] is None
    assert tuning["history"][0]["cv"]["fit_time_mean"] is None


def test_best_is_the_highest_mean_and_ties_go_to_the_lowest_id(fold_scores):
    candidates = [candidate(0), candidate(1), candidate(2)]
    evaluations = [scored(0.8, 0.9), scored(0.9, 0.8), scored(0.7, 0.9)]

    tuning = aggregate(fold_scores, candidates, evaluations)

    assert tuning["best"]["id"] == 0


def test_best_and_counts_span_rounds(fold_scores):
    first = aggregate(
        fold_scores, [candidate(0), candidate(1), candidate(2)], [scored(0.7), [failed(0)], scored(0.9)]
    )

    second = aggregate(
        fold_scores, [candidate(3), candidate(4), candidate(5)], [scored(0.8)] * 3, tuning=first
    )

    assert [entry["id"] for entry in second["history"]] == [0, 1, 2, 3, 4, 5]
    assert (second["round"], second["evaluated"], second["failed"]) == (2, 6, 1)
    assert second["best"]["id"] == 2
    assert (first["done"], second["done"]) == (False, True)  # max_candidates reached


def test_a_short_round_means_the_space_is_exhausted(fold_scores):
    full = aggregate(fold_scores, [candidate(0), candidate(1), candidate(2)], [scored(0.5)] * 3)
    short = aggregate(fold_scores, [candidate(3)], [scored(0.5)], tuning=full)
    empty = aggregate(fold_scores, [], [], tuning=full)

    assert (full["done"], short["done"], empty["done"]) == (False, True, True)
    assert empty["history"] == full["history"]


def test_evaluations_must_match_candidates(fold_scores):
    with pytest.raises(ValidationError, match="2 candidates but 1 evaluations"):
        aggregate(fold_scores, [candidate(0), candidate(1)], [scored(0.5)])


def test_handler_returns_tuning_and_publishes_metrics(
    aggregate_scores, lambda_context, published_metrics, evaluation_results
):
    candidates = [candidate(0, C=0.1), candidate(1, C=1.0)]
    results = evaluation_results(candidates, [scored(0.7, 0.8), [completed(0, 0.9), failed(1)]])
    event = {"config": CONFIG, "tuning": None, "candidates": candidates, "results": results}

    tuning = aggregate_scores.app.lambda_handler(event, lambda_context)

    assert tuning["best"]["id"] == 0 and tuning["failed"] == 1
    assert json.loads(json.dumps(tuning)) == tuning
    metrics = published_metrics()
    assert metrics["CandidatesEvaluated"] == [2]
    assert metrics["FoldFailures"] == [1]
    assert metrics["BestScore"] == [pytest.approx(0.75)]


def test_the_handler_reads_the_results_the_evaluation_wrote_in_candidate_order(
    aggregate_scores, lambda_context, evaluation_results
):
    """The Distributed Map lists its children by status, not in item order; a child execution that
    failed as a whole (an error nothing inside it caught) fails its candidate, every fold with its error."""
    candidates = [candidate(0, C=0.1), candidate(1, C=1.0), candidate(2, C=10.0)]
    evaluations = [scored(0.7, 0.8), scored(0.95, 0.9), scored(0.6, 0.9)]
    results = evaluation_results(
        candidates, evaluations, failed={1: ("States.Runtime", "history limit of the child")}
    )
    event = {"config": CONFIG, "tuning": None, "candidates": candidates, "results": results}

    tuning = aggregate_scores.app.lambda_handler(event, lambda_context)

    assert [entry["id"] for entry in tuning["history"]] == [0, 1, 2]
    assert [entry["status"] for entry in tuning["history"]] == ["Completed", "Failed", "Completed"]
    assert tuning["history"][1]["failures"][0] == {
        "fold": 0,
        "job": "",
        "error": "States.Runtime",
        "cause": "history limit of the child",
    }
    assert tuning["best"]["id"] == 0


def test_results_that_leave_out_a_candidate_are_refused(aggregate_scores):
    manifest = {"DestinationBucket": "b", "ResultFiles": {"SUCCEEDED": [{"Key": "r/SUCCEEDED_0.json"}]}}
    entry = {
        "Input": json.dumps({"candidate": candidate(0), "folds": [0]}),
        "Output": json.dumps(scored(0.5)),
    }
    objects = {
        "r/manifest.json": json.dumps(manifest).encode(),
        "r/SUCCEEDED_0.json": json.dumps([entry]).encode(),
    }
    location = aggregate_scores.map_results.ResultLocation(Bucket="b", Key="r/manifest.json")

    assert aggregate_scores.map_results.fold_results([0], location, lambda b, k: objects[k]) == [scored(0.5)]
    with pytest.raises(ValueError, match=r"lack candidates \[1\]"):
        aggregate_scores.map_results.fold_results([0, 1], location, lambda b, k: objects[k])
