"""What the definition must do to survive SageMaker's bad days, read from the definition itself:
service errors caught before States.TaskFailed (whose cause is JSON only for a job that ran), quota
errors retried with long, jittered back-off, both Maps bounded, runtime limits apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cvpipe.integrations.sagemaker_api import service_error, service_model
from cvpipe.pipeline import contract

from .test_pipeline_contract import all_states

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
JOB_RESOURCE = "arn:aws:states:::sagemaker:create"
QUOTA_ERROR = "SageMaker.ResourceLimitExceededException"


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return json.loads((ROOT / contract.DEFINITION).read_text())


def job_tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: state
        for name, state in all_states(definition["States"]).items()
        if state.get("Resource", "").startswith(JOB_RESOURCE)
    }


def service_errors(resource: str) -> set[str]:
    """Every error name the optimized integration reports for a refused call of this operation."""
    action = resource.removeprefix("arn:aws:states:::sagemaker:").removesuffix(".sync")
    operation = action[0].upper() + action[1:]
    codes = [shape.name for shape in service_model().operation_model(operation).error_shapes]
    return {service_error(operation, code, "").error for code in [*codes, "ThrottlingException"]}


def test_the_definition_runs_sagemaker_jobs(definition: dict[str, Any]) -> None:
    assert len(job_tasks(definition)) >= 4


@pytest.mark.parametrize("name", ["SplitFolds", "TrainFold", "ScoreHoldout", "FitFinalModel"])
def test_service_errors_are_caught_before_the_job_failure_catcher(
    definition: dict[str, Any], name: str
) -> None:
    state = job_tasks(definition)[name]
    catchers = state["Catch"]
    wildcard = next(
        i for i, c in enumerate(catchers) if {"States.TaskFailed", "States.ALL"} & set(c["ErrorEquals"])
    )
    caught_first = {error for catcher in catchers[:wildcard] for error in catcher["ErrorEquals"]}
    missing = service_errors(state["Resource"]) - caught_first
    assert not missing, f"{name}: {sorted(missing)} would reach a catcher that parses the cause as JSON"


def test_failure_readers_are_reached_only_by_job_failures(definition: dict[str, Any]) -> None:
    """A state that parses $.failure.Cause as JSON is the target of States.TaskFailed catchers only."""
    states = all_states(definition["States"])
    readers = {
        name for name, state in states.items() if "States.StringToJson($.failure.Cause)" in json.dumps(state)
    }
    assert readers
    for name, state in job_tasks(definition).items():
        for catcher in state.get("Catch", []):
            if catcher["Next"] in readers:
                assert catcher["ErrorEquals"] == ["States.TaskFailed"], name


@pytest.mark.parametrize("name", ["SplitFolds", "TrainFold", "ScoreHoldout", "FitFinalModel"])
def test_quota_errors_are_retried_with_long_jittered_back_off(definition: dict[str, Any], name: str) -> None:
    retriers = job_tasks(definition)[name]["Retry"]
    (quota,) = [retrier for retrier in retriers if QUOTA_ERROR in retrier["ErrorEquals"]]
    assert quota["JitterStrategy"] == "FULL"
    assert quota["IntervalSeconds"] >= 60 and quota["MaxDelaySeconds"] >= 600
    waited = sum(
        min(quota["IntervalSeconds"] * quota["BackoffRate"] ** n, quota["MaxDelaySeconds"])
        for n in range(quota["MaxAttempts"])
    )
    assert waited >= 3600  # running jobs of an hour can end before the quota retrier gives up
    assert all(retrier["JitterStrategy"] == "FULL" for retrier in retriers)


def test_both_maps_are_bounded_by_the_inputs_parallel_jobs(definition: dict[str, Any]) -> None:
    states = all_states(definition["States"])
    outer, inner = states[contract.EVALUATE_CANDIDATES], states[contract.FOLD_MAP]
    assert outer["MaxConcurrencyPath"] == "$config.resources.parallel_candidates"
    # A candidate's child execution sees none of the parent's variables: the bound comes in its input.
    assert inner["MaxConcurrencyPath"] == "$.parallel_folds"
    assert outer["ItemSelector"]["parallel_folds.$"] == "$config.resources.parallel_folds"


def test_processing_and_training_have_their_own_runtime_limits(definition: dict[str, Any]) -> None:
    tasks = job_tasks(definition)
    split = tasks["SplitFolds"]["Parameters"]["StoppingCondition"]["MaxRuntimeInSeconds.$"]
    assert split == "$config.training.processing_max_runtime_seconds"
    # Every training job reads its StoppingCondition from the one training job description.
    assert {tasks[name]["Parameters"]["StoppingCondition.$"] for name in tasks if name != "SplitFolds"} == {
        "$training_job.StoppingCondition"
    }
    (training_job,) = [
        state["Assign"]["training_job"]
        for state in all_states(definition["States"]).values()
        if "training_job" in state.get("Assign", {})
    ]
    limit = training_job["StoppingCondition"]["MaxRuntimeInSeconds.$"]
    assert limit == "$config.training.max_runtime_seconds"


def test_registration_is_retried_long_only_on_the_errors_that_pass(definition: dict[str, Any]) -> None:
    register = definition["States"][contract.REGISTER_MODEL]
    retriers = {error: retrier for retrier in register["Retry"] for error in retrier["ErrorEquals"]}
    assert retriers[QUOTA_ERROR] is retriers["SageMaker.ConflictException"]
    assert retriers[QUOTA_ERROR]["MaxAttempts"] >= 5
    # CreateModelPackage models no other error: throttling, internal errors and ValidationException all
    # reach the definition as SageMakerException, so a refusal must not wait minutes to fail.
    unmodeled = retriers["SageMaker.SageMakerException"]
    waits = [
        unmodeled["IntervalSeconds"] * unmodeled["BackoffRate"] ** i for i in range(unmodeled["MaxAttempts"])
    ]
    assert sum(waits) <= 10
    assert "ClientToken.$" in register["Parameters"]  # so that a retried call registers once


def test_metrics_are_read_whether_or_not_the_job_reported_any(definition: dict[str, Any]) -> None:
    tasks = job_tasks(definition)
    assert tasks["TrainFold"]["ResultSelector"]["metrics.$"] == "$..FinalMetricDataList[*]"
    assert tasks["ScoreHoldout"]["ResultSelector"]["score.$"] == "$..FinalMetricDataList[*].Value"
