"""The definition's three CreateTrainingJob tasks (a fold, the holdout score, the final fit) train the
same way: what they share (image, role, environment, channel, output place, resources, time limit,
metric definitions) is one variable, ``training_job``, assigned once, and each task reads every part
of it from there. They differ only where documented below; a task that writes a shared field itself
fails naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cvpipe.pipeline import contract

from .test_pipeline_contract import all_states

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CREATE_TRAINING_JOB = "arn:aws:states:::sagemaker:createTrainingJob"
TRAINING_JOB = "training_job"

# What each job does differently, by design:
#  - TrainingJobName: each names its own job;
#  - HyperParameters: a fold adds its cv_fold to the candidate's, the holdout job adds cv_fold=holdout to
#    the best candidate's, the final fit takes the best candidate's as they are;
#  - the holdout job's AlgorithmSpecification declares only validation:score, so that its
#    FinalMetricDataList values are that score or nothing (BuildRegistration and CheckHoldout read score[0]).
OWN_FIELDS = {"TrainingJobName", "HyperParameters"}
HOLDOUT_METRICS = ["validation:score"]


def _states() -> dict[str, dict[str, Any]]:
    return all_states(json.loads((ROOT / contract.DEFINITION).read_text())["States"])


def training_job() -> dict[str, Any]:
    """The shared description: the template that a state assigns to ``training_job``."""
    templates = [
        state["Assign"][TRAINING_JOB]
        for state in _states().values()
        if TRAINING_JOB in state.get("Assign", {})
    ]
    assert len(templates) == 1, (
        f"{TRAINING_JOB} should be assigned once, it is assigned {len(templates)} times"
    )
    return templates[0]


def training_tasks() -> dict[str, dict[str, Any]]:
    """Each CreateTrainingJob task's Parameters, by state name."""
    tasks = {
        name: state["Parameters"]
        for name, state in _states().items()
        if state.get("Resource", "").startswith(CREATE_TRAINING_JOB)
    }
    assert {contract.SCORE_HOLDOUT, contract.FIT_FINAL_MODEL} < set(tasks), "a training job task is missing"
    assert len(tasks) == 3, f"expected a fold, the holdout and the final fit, found {sorted(tasks)}"
    return tasks


def not_shared(name: str, parameters: dict[str, Any], shared: dict[str, Any]) -> list[str]:
    """The fields of ``parameters`` that do not read the shared description, other than the task's own."""
    drifted = []
    for field in sorted(set(shared) | {key.removesuffix(".$") for key in parameters} - OWN_FIELDS):
        if name == contract.SCORE_HOLDOUT and field == "AlgorithmSpecification":
            continue  # checked below
        if parameters.get(f"{field}.$") != f"${TRAINING_JOB}.{field}":
            drifted.append(field)
    return drifted


def _differences(left: Any, right: Any, where: str = "") -> list[str]:
    """Dotted paths where ``left`` and ``right`` differ."""
    if isinstance(left, dict) and isinstance(right, dict):
        found = []
        for key in sorted(set(left) | set(right)):
            at = f"{where}.{key}" if where else key
            if key not in left or key not in right:
                found.append(f"{at} (only in {'the first' if key in left else 'the second'})")
            else:
                found += _differences(left[key], right[key], at)
        return found
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [
            diff
            for i, pair in enumerate(zip(left, right, strict=True))
            for diff in _differences(*pair, f"{where}[{i}]")
        ]
    return [] if left == right else [f"{where}: {json.dumps(left)} != {json.dumps(right)}"]


@pytest.mark.parametrize("name", ["fold", contract.SCORE_HOLDOUT, contract.FIT_FINAL_MODEL])
def test_each_training_job_reads_every_shared_field_from_the_one_description(name: str) -> None:
    tasks = training_tasks()
    if name == "fold":
        (name,) = set(tasks) - {contract.SCORE_HOLDOUT, contract.FIT_FINAL_MODEL}
    drifted = not_shared(name, tasks[name], training_job())
    assert not drifted, f"{name} does not take these from ${TRAINING_JOB}: {drifted}"


def test_the_holdout_job_declares_only_the_validation_score_as_the_folds_do() -> None:
    shared = training_job()["AlgorithmSpecification"]
    holdout = training_tasks()[contract.SCORE_HOLDOUT]["AlgorithmSpecification"]
    assert [metric["Name"] for metric in holdout["MetricDefinitions"]] == HOLDOUT_METRICS
    ours = {key: value for key, value in holdout.items() if key != "MetricDefinitions"}
    theirs = {key: value for key, value in shared.items() if key != "MetricDefinitions"}
    assert not _differences(theirs, ours), _differences(theirs, ours)
    fold_definitions = {metric["Name"]: metric for metric in shared["MetricDefinitions"]}
    assert holdout["MetricDefinitions"] == [fold_definitions["validation:score"]], (
        "the holdout job parses validation:score differently"
    )


def test_a_drift_is_reported_with_the_field_that_drifted() -> None:
    shared = training_job()
    final = dict(training_tasks()[contract.FIT_FINAL_MODEL])
    final.pop("ResourceConfig.$")
    final["ResourceConfig"] = {"InstanceType": "ml.m5.large"}
    final["VpcConfig.$"] = "$config.vpc"
    assert not_shared(contract.FIT_FINAL_MODEL, final, shared) == ["ResourceConfig", "VpcConfig"]
    changed = json.loads(json.dumps(shared["AlgorithmSpecification"]))
    changed["MetricDefinitions"][0]["Regex"] = "validation:score=(.*)"
    assert _differences(shared["AlgorithmSpecification"], changed) == [
        'MetricDefinitions[0].Regex: "validation:score=([-+]?[0-9]*\\\\.?[0-9]+'
        '(?:[eE][-+]?[0-9]+)?)" != "validation:score=(.*)"',
    ]
