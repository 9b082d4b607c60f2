import copy
import json
import re
import unicodedata

import pytest

pytestmark = pytest.mark.unit

BEST = {
    "id": 3,
    "params": {"C": 1.0, "kernel": "rbf", "class_weight": None},
    "hyperparameters": {"cv_estimator": "SVC", "C": "1.0", "kernel": '"rbf"', "class_weight": "null"},
    "status": "Completed",
    "cv": {"mean": 0.95, "std": 0.02, "folds": [0.93, 0.97, 0.95], "train_mean": 0.99, "fit_time_mean": 0.1},
    "failures": [],
}
FINAL = {"job": "cv-0123456789-final", "model_data_url": "s3://artifacts/runs/exec-1/jobs/final/model.tar.gz"}
# The ScoreHoldout job as the state machine passes it: its validation:score picked by a JSONPath filter.
HOLDOUT = {"job": "cv-0123456789-holdout-a0", "score": [0.9333333333333333]}


@pytest.fixture(scope="module")
def registration(build_registration):
    return build_registration.registration


@pytest.fixture
def event(make_config, dataset_info):
    config = {**make_config(cv={"k": 3}), "dataset_info": dataset_info(k=3)}
    tuning = {"round": 1, "history": [BEST], "best": BEST, "evaluated": 1, "failed": 0, "done": True}
    return {"config": config, "tuning": tuning, "final": FINAL}


def build(registration, event):
    return registration.build_registration(registration.RegistrationEvent.model_validate(event)).model_dump(
        mode="json"
    )


def metadata_value_is_valid(value):
    # CustomerMetadataProperties: [\p{L}\p{Z}\p{N}_.:/=+\-@]{1,256}
    return 1 <= len(value) <= 256 and all(
        unicodedata.category(char)[0] in "LNZ" or char in "_.:/=+-@" for char in value
    )


def test_statistics_document(registration, event):
    result = build(registration, event)

    assert result["statistics"] == {
        "version": 0.0,
        "accuracy": {"value": 0.95, "standard_deviation": 0.02},
        "cross_validation": {
            "k": 3,
            "splitter": "StratifiedKFold",
            "refit": "accuracy",
            "folds": [{"fold": 0, "value": 0.93}, {"fold": 1, "value": 0.97}, {"fold": 2, "value": 0.95}],
            "metrics": {"accuracy": {"folds": [0.93, 0.97, 0.95], "mean": 0.95, "std": 0.02, "stderr": 0.0}},
            "candidate": 3,
            "params": {"C": 1.0, "kernel": "rbf", "class_weight": None},
        },
    }


def test_every_metric_is_registered_with_its_folds(registration, event):
    event = copy.deepcopy(event)
    event["tuning"]["best"]["cv"]["metrics"] = {
        "accuracy": {"folds": [0.93, 0.97, 0.95], "mean": 0.95, "std": 0.02, "stderr": 0.0115},
        "f1_macro": {"folds": [0.9, 0.96, 0.93], "mean": 0.93, "std": 0.0245, "stderr": 0.0173},
    }
    result = build(registration, event)
    statistics = result["statistics"]
    assert statistics["f1_macro"] == {"value": 0.93, "standard_deviation": 0.0245}
    assert statistics["accuracy"] == {"value": 0.95, "standard_deviation": 0.02}
    assert statistics["cross_validation"]["metrics"]["f1_macro"]["folds"] == [0.9, 0.96, 0.93]
    assert result["metadata"]["cv_f1_macro"] == "mean=0.93 std=0.0245"
    assert "cv_accuracy" not in result["metadata"]  # the refit metric is cv_mean and cv_std
    assert result["statistics_bucket"] == "cvpipe-artifacts"
    assert result["statistics_key"] == "runs/exec-1/registry/statistics.json"
    assert result["statistics_uri"] == "s3://cvpipe-artifacts/runs/exec-1/registry/statistics.json"


def test_metric_and_folds_come_from_the_split_summary_over_the_request(registration, event):
    event["config"]["metric"] = "f1_macro"  # as requested; the split summary is what actually ran
    assert "accuracy" in build(registration, event)["statistics"]

    del event["config"]["dataset_info"]
    result = build(registration, event)
    assert result["statistics"]["f1_macro"] == {"value": 0.95, "standard_deviation": 0.02}
    assert result["statistics"]["cross_validation"]["splitter"] == "auto"


def test_auto_metric_without_split_summary_is_an_error(registration, event):
    del event["config"]["dataset_info"]

    with pytest.raises(ValueError, match="dataset_info"):
        build(registration, event)


def test_description(registration, event):
    description = build(registration, event)["description"]

    assert description == (
        "SVC: accuracy 0.9500 ± 0.0200 in 3-fold cross-validation (StratifiedKFold); "
        "final training job cv-0123456789-final"
    )


def test_description_is_cut_to_1024_characters(registration, event):
    event["config"]["model"]["estimator"] = "package." * 200 + "Estimator"

    description = build(registration, event)["description"]

    assert len(description) == 1024 and description.endswith("...")


def test_metadata(registration, event):
    metadata = build(registration, event)["metadata"]

    assert metadata == {
        "execution": "exec-1",
        "estimator": "SVC",
        "metric": "accuracy",
        "cv_mean": "0.95",
        "cv_std": "0.02",
        "cv_folds": "0.93 0.97 0.95",
        "k": "3",
        "splitter": "StratifiedKFold",
        "params": "C=1.0 class_weight=null kernel=rbf",
        "training_job": "cv-0123456789-final",
    }


def test_metadata_respects_customer_metadata_limits(registration, event):
    best = copy.deepcopy(BEST)
    best["params"] = {
        "hidden_layer_sizes": [100, 50],
        "note": "a\tb{c}",
        **{f"p{i}": i / 7 for i in range(40)},
    }
    best["cv"]["folds"] = [0.123456789] * 50
    event["tuning"]["best"] = best

    metadata = build(registration, event)["metadata"]

    assert len(metadata) <= 50
    assert all(1 <= len(key) <= 128 for key in metadata)
    assert all(metadata_value_is_valid(value) for value in metadata.values()), metadata
    assert metadata["params"].startswith(
        "hidden_layer_sizes= 100 50 note=a b c p0=0.0 p1=0.14285714285714285 "
    )
    assert metadata["params"].endswith("...") and len(metadata["params"]) == 256
    assert metadata["cv_folds"].startswith("0.123457 0.123457") and len(metadata["cv_folds"]) == 256


def test_empty_params_are_left_out_of_metadata(registration, event):
    event["tuning"]["best"] = {**BEST, "params": {}}

    assert "params" not in build(registration, event)["metadata"]


def test_client_token_is_stable_per_execution(registration, event):
    token = build(registration, event)["client_token"]
    retried = build(registration, copy.deepcopy(event))["client_token"]
    event["config"]["run"] = {**event["config"]["run"], "execution": "exec-2", "prefix": "s3://b/runs/exec-2"}

    assert token == retried != build(registration, event)["client_token"]
    assert re.fullmatch(r"[a-zA-Z0-9-]{1,36}", token)
    # The same name started again later (Step Functions frees a name after 90 days) is another execution.
    later = copy.deepcopy(event)
    later["config"]["run"]["id"] = "fedcba9876"
    assert build(registration, later)["client_token"] != build(registration, event)["client_token"]


@pytest.fixture
def holdout_event(event):
    event["config"]["dataset_info"]["holdout_rows"] = 30
    return {**event, "holdout": HOLDOUT}


@pytest.mark.parametrize("holdout", ["absent", None, {"job": "cv-0123456789-holdout-a0", "score": []}])
def test_no_holdout_score_leaves_the_registration_as_without_a_holdout(registration, event, holdout):
    without = build(registration, event)
    if holdout != "absent":
        event["holdout"] = holdout

    result = build(registration, event)

    assert result == without and "holdout" not in result["statistics"]
    assert "holdout_score" not in result["metadata"] and "holdout" not in result["description"]


def test_holdout_score_is_in_statistics_metadata_and_description(registration, event, holdout_event):
    without = build(registration, event)

    result = build(registration, holdout_event)

    assert result["statistics"] == {
        **without["statistics"],
        "holdout": {"value": 0.9333333333333333, "rows": 30},
    }
    assert result["metadata"] == {**without["metadata"], "holdout_score": "0.9333333333333333"}
    assert result["description"] == (
        "SVC: accuracy 0.9500 ± 0.0200 in 3-fold cross-validation (StratifiedKFold), 0.9333 on 30 holdout rows; "
        "final training job cv-0123456789-final"
    )


@pytest.mark.parametrize("score", [-12.5, 1e-05, -3.0e-300])
def test_holdout_score_metadata_keeps_to_the_allowed_characters(registration, holdout_event, score):
    holdout_event["holdout"] = {**HOLDOUT, "score": [score]}

    value = build(registration, holdout_event)["metadata"]["holdout_score"]

    assert metadata_value_is_valid(value) and float(value) == score


def test_holdout_event_shape_is_checked(registration, holdout_event):
    holdout_event["holdout"] = {**HOLDOUT, "score": [0.9, 0.8]}
    with pytest.raises(ValueError, match="holdout.score"):
        build(registration, holdout_event)

    holdout_event["holdout"] = HOLDOUT
    del holdout_event["config"]["dataset_info"]
    holdout_event["config"]["metric"] = "accuracy"
    with pytest.raises(ValueError, match="holdout score but config.dataset_info"):
        build(registration, holdout_event)


def test_handler_builds_the_registration(build_registration, event, lambda_context, published_metrics):
    result = build_registration.app.lambda_handler(event, lambda_context)

    assert set(result) == {
        "statistics", "statistics_bucket", "statistics_key", "statistics_uri", "description", "metadata",
        "client_token",
    }  # fmt: skip
    assert json.loads(json.dumps(result)) == result
    assert published_metrics()["RegisteredScore"] == [0.95]


def test_handler_publishes_the_holdout_score(
    build_registration, holdout_event, lambda_context, published_metrics
):
    result = build_registration.app.lambda_handler(holdout_event, lambda_context)

    assert result["statistics"]["holdout"] == {"value": 0.9333333333333333, "rows": 30}
    assert published_metrics()["HoldoutScore"] == [0.9333333333333333]
