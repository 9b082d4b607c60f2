"""The four handlers chained as the state machine chains them, with fake SageMaker jobs in between."""

import importlib
import json
import sys

import pytest

pytestmark = pytest.mark.unit

FOLDS = 3


def fake_fold_results(candidate, job_prefix):
    """What the fold Map returns: the score peaks at C=1 and a degree-3 fit always fails."""
    params = candidate["params"]
    results = []
    for fold in range(FOLDS):
        job = f"{job_prefix}-c{candidate['id']}-f{fold}"
        if params.get("degree") == 3:
            results.append(
                {"fold": fold, "job": job, "status": "Failed", "error": "States.TaskFailed", "cause": "x"}
            )
            continue
        score = 0.9 - abs(params["C"] - 1) / 100 + fold / 1000
        metrics = [
            {"MetricName": "validation:score", "Value": score},
            {"MetricName": "fit_time", "Value": 0.1},
        ]
        results.append({"fold": fold, "job": job, "status": "Completed", "metrics": metrics})
    return results


def test_functions_do_not_see_each_others_modules(
    prepare_input, propose_candidates, aggregate_scores, build_registration
):
    for module in ("execution_input", "search_space", "fold_scores", "registration"):
        assert module not in sys.modules
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(module)


def test_a_run_from_input_to_registration(
    prepare_input,
    propose_candidates,
    aggregate_scores,
    build_registration,
    lambda_context,
    monkeypatch,
    dataset_info,
    evaluation_results,
):
    monkeypatch.setenv("ARTIFACT_BUCKET", "cvpipe-local-artifacts")
    document = {
        "dataset": {"uri": "s3://cvpipe-data/iris.csv", "target": "species"},
        "cv": {"k": FOLDS},
        "model": {
            "params": {"kernel": "poly"},
            "search_space": {
                "C": {"type": "float", "low": 0.01, "high": 100, "log": True, "steps": 5},
                "degree": {"values": [2, 3]},
            },
        },
        "tuning": {"max_candidates": 8, "batch_size": 3, "sample_grid": True},
        "baseline": 0.5,
    }
    config = prepare_input.app.lambda_handler({"input": document, "execution": "exec-1"}, lambda_context)
    # The split job's summary, as the state machine stores it in the config.
    config["dataset_info"] = dataset_info(k=3)

    tuning, rounds = None, 0
    while not (tuning and tuning["done"]):
        proposal = propose_candidates.app.lambda_handler({"config": config, "tuning": tuning}, lambda_context)
        evaluations = [fake_fold_results(c, config["run"]["job_prefix"]) for c in proposal["candidates"]]
        event = {
            "config": config,
            "tuning": tuning,
            "candidates": proposal["candidates"],
            "results": evaluation_results(proposal["candidates"], evaluations),
        }
        tuning = aggregate_scores.app.lambda_handler(event, lambda_context)
        rounds += 1
        assert len(json.dumps(tuning)) < 256 * 1024  # Step Functions' payload limit

    assert (rounds, tuning["evaluated"], tuning["failed"]) == (3, 8, 4)
    assert tuning["best"]["params"] == {"kernel": "poly", "C": 1.0, "degree": 2}
    assert tuning["best"]["hyperparameters"]["cv_metric"] == "accuracy"
    assert tuning["best"]["cv"]["mean"] >= config["baseline"]

    final = {"job": f"{config['run']['job_prefix']}-final", "model_data_url": "s3://x/model.tar.gz"}
    registration = build_registration.app.lambda_handler(
        {"config": config, "tuning": tuning, "final": final}, lambda_context
    )

    assert registration["statistics"]["accuracy"]["value"] == tuning["best"]["cv"]["mean"]
    assert (
        registration["statistics_uri"] == "s3://cvpipe-local-artifacts/runs/exec-1/registry/statistics.json"
    )
    assert registration["metadata"]["params"] == "C=1.0 degree=2 kernel=poly"
