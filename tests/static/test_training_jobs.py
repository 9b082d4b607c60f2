"""The definition's three CreateTrainingJob tasks (a fold, the holdout score, the final fit) train the
same way: same image, role, environment, channel, output place, resources, time limit and metric
definitions. They differ only where documented below; a drift fails naming the field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cvpipe.pipeline import contract

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CREATE_TRAINING_JOB = "arn:aws:states:::sagemaker:createTrainingJob"

# What each job does differently, by design:
#  - TrainingJobName: each names its own job;
#  - HyperParameters: a fold adds its cv_fold to the candidate's, the holdout job adds cv_fold=holdout to
#    the best candidate's, the final fit takes the best candidate's as they are;
#  - MetricDefinitions: the holdout job declares only validation:score, so that its FinalMetricDataList
#    values are that score or nothing (BuildRegistration and CheckHoldout read score[0]).
OWN_FIELDS = ("TrainingJobName", "HyperParameters")
METRICS = ("AlgorithmSpecification", "MetricDefinitions")
HOLDOUT_METRICS = ["validation:score"]

_PATH = re.compile(r"^\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)$")


def _definition() -> dict[str, Any]:
    return json.loads((ROOT / contract.DEFINITION).read_text())


def _fold_task(fold_map: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    tasks = [
        (name, state)
        for name, state in fold_map["ItemProcessor"]["States"].items()
        if state.get("Resource", "").startswith(CREATE_TRAINING_JOB)
    ]
    assert len(tasks) == 1, f"{contract.FOLD_MAP} should run one CreateTrainingJob task, it has {len(tasks)}"
    return tasks[0]


def _through(selector: dict[str, Any], expression: str) -> str:
    """``expression``, a path into the items that ``selector`` (an ItemSelector) builds, as the
    expression on the Map's own input that it reads."""
    match = _PATH.match(expression)
    if not match:
        return expression  # an intrinsic or $$ reference: nothing to translate
    first, *rest = match.group(1).lstrip(".").split(".")
    source = selector.get(f"{first}.$")
    if source is None:
        return expression
    if not rest:
        return str(source)
    assert _PATH.match(source), f"cannot follow {expression} through {source}"
    return ".".join([source, *rest])


def _as_top_level(value: Any, selectors: list[dict[str, Any]]) -> Any:
    """Parameters with every ``.$`` path rewritten as read from the execution's state (through the
    ItemSelectors of the Maps around the task, innermost first)."""
    if isinstance(value, dict):
        rewritten = {}
        for key, item in value.items():
            if key.endswith(".$") and isinstance(item, str):
                expression = item
                for selector in selectors:
                    expression = _through(selector, expression)
                rewritten[key] = expression
            else:
                rewritten[key] = _as_top_level(item, selectors)
        return rewritten
    if isinstance(value, list):
        return [_as_top_level(item, selectors) for item in value]
    return value


def _without(parameters: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {key: value for key, value in parameters.items() if key.removesuffix(".$") not in fields}


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


def training_tasks() -> dict[str, dict[str, Any]]:
    """Each CreateTrainingJob task's Parameters as read from the execution's state, by state name."""
    states = _definition()["States"]
    candidates = states[contract.EVALUATE_CANDIDATES]
    fold_map = candidates["ItemProcessor"]["States"][contract.FOLD_MAP]
    fold_name, fold = _fold_task(fold_map)
    selectors = [fold_map["ItemSelector"], candidates["ItemSelector"]]
    tasks = {fold_name: _as_top_level(fold["Parameters"], selectors)}
    for name in (contract.SCORE_HOLDOUT, contract.FIT_FINAL_MODEL):
        assert states[name]["Resource"].startswith(CREATE_TRAINING_JOB), f"{name} is no longer a training job"
        tasks[name] = states[name]["Parameters"]
    return tasks


def _metric_names(parameters: dict[str, Any]) -> list[str]:
    return [metric["Name"] for metric in parameters["AlgorithmSpecification"]["MetricDefinitions"]]


def test_the_three_training_jobs_are_configured_alike() -> None:
    (fold_name, fold), *others = training_tasks().items()
    for name, parameters in others:
        ours = _without(fold, *OWN_FIELDS)
        theirs = _without(parameters, *OWN_FIELDS)
        if name == contract.SCORE_HOLDOUT:  # its metric definitions are checked below
            ours["AlgorithmSpecification"] = _without(ours["AlgorithmSpecification"], METRICS[1])
            theirs["AlgorithmSpecification"] = _without(theirs["AlgorithmSpecification"], METRICS[1])
        drifted = _differences(ours, theirs)
        assert not drifted, f"{name} differs from {fold_name} in: " + "; ".join(drifted)


def test_the_holdout_job_declares_only_the_validation_score_as_the_folds_do() -> None:
    tasks = training_tasks()
    fold = next(iter(tasks.values()))
    holdout = tasks[contract.SCORE_HOLDOUT]
    assert _metric_names(holdout) == HOLDOUT_METRICS
    (definition,) = holdout["AlgorithmSpecification"]["MetricDefinitions"]
    fold_definitions = {
        metric["Name"]: metric for metric in fold["AlgorithmSpecification"]["MetricDefinitions"]
    }
    assert definition == fold_definitions["validation:score"], (
        "the holdout job parses validation:score differently"
    )


def test_a_drift_is_reported_with_the_field_that_drifted() -> None:
    (_, fold), *_ = training_tasks().items()
    changed = json.loads(json.dumps(fold))
    changed["ResourceConfig"]["VolumeSizeInGB.$"] = "$.config.training.volume"
    changed["AlgorithmSpecification"]["MetricDefinitions"][0]["Regex"] = "validation:score=(.*)"
    assert _differences(fold, changed) == [
        'AlgorithmSpecification.MetricDefinitions[0].Regex: "validation:score=([-+]?[0-9]*\\\\.?[0-9]+'
        '(?:[eE][-+]?[0-9]+)?)" != "validation:score=(.*)"',
        'ResourceConfig.VolumeSizeInGB.$: "$.config.training.volume_gb" != "$.config.training.volume"',
    ]
