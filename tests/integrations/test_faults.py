"""Faults files: what `cvpipe run --faults FILE` accepts, and how it says what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from cvpipe.integrations.faults import AccountLimits, FaultsError

pytestmark = pytest.mark.unit

JOBS = ("CreateTrainingJob", "CreateProcessingJob")
ACTIONS = (*JOBS, "CreateModelPackage")


def parse(document: Any) -> AccountLimits:
    return AccountLimits.from_document(document, ACTIONS, JOBS)


def test_the_documented_example_is_read() -> None:
    limits = parse(
        {
            "rules": [
                {
                    "action": "CreateTrainingJob",
                    "match": "-c0-f3-",
                    "error": "ResourceLimitExceeded",
                    "times": None,
                }
            ],
            "quotas": {"ml.m5.large": 2},
        }
    )
    assert limits.quotas == {"ml.m5.large": 2}
    assert limits.fault("CreateTrainingJob", "cv-1-c0-f3-a0", {}) is not None
    assert limits.fault("CreateTrainingJob", "cv-1-c0-f2-a0", {}) is None
    assert limits.fault("CreateProcessingJob", "cv-1-c0-f3-a0", {}) is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "(file): must be a JSON object with rules and/or quotas"),
        ({"rule": []}, "rule: unknown field: did you mean 'rules'?"),
        ({"rules": {}}, "rules: must be a list of rule objects"),
        (
            {"rules": [{"action": "CreateTrainingJobs", "error": "Failed"}]},
            "rules[0].action: unknown action 'CreateTrainingJobs': did you mean 'CreateTrainingJob'?",
        ),
        (
            {"rules": [{"action": "CreateEndpoint", "error": "Failed"}]},
            "rules[0].action: CreateEndpoint is not answered by the local services",
        ),
        ({"rules": [{"error": "Failed"}]}, "rules[0].action: required"),
        ({"rules": [{"action": "CreateTrainingJob"}]}, "rules[0].error: required: one of"),
        (
            {"rules": [{"action": "CreateTrainingJob", "error": "Throttling"}]},
            "rules[0].error: unknown error 'Throttling': did you mean 'ThrottlingException'?",
        ),
        (
            {"rules": [{"action": "CreateModelPackage", "error": "Failed"}]},
            "rules[0].error: Failed ends a job: CreateModelPackage starts none",
        ),
        (
            {"rules": [{"action": "CreateTrainingJob", "error": "Failed", "times": 0}]},
            "rules[0].times: must be a whole number of calls, 1 or more, or null",
        ),
        (
            {"rules": [{"action": "CreateTrainingJob", "error": "Failed", "match": 3}]},
            "rules[0].match: must be a string",
        ),
        (
            {"rules": [{"action": "CreateTrainingJob", "error": "Failed", "time": 1}]},
            "rules[0].time: unknown field: did you mean 'times'?",
        ),
        ({"quotas": {"m5.large": 2}}, "quotas.m5.large: must be a SageMaker instance type"),
        (
            {"quotas": {"ml.m5.large": -1}},
            "quotas.ml.m5.large: must be a whole number of instances, 0 or more",
        ),
        ({"quotas": {"ml.m5.large": True}}, "quotas.ml.m5.large: must be a whole number of instances"),
    ],
)
def test_mistakes_are_refused_naming_the_field(document: Any, message: str) -> None:
    with pytest.raises(FaultsError) as raised:
        parse(document)
    assert str(raised.value).startswith(message)


def test_a_rule_answers_as_many_calls_as_its_times_then_lets_them_through() -> None:
    limits = parse(
        {
            "rules": [
                {
                    "action": "CreateModelPackage",
                    "match": "group-a",
                    "error": "ThrottlingException",
                    "times": 2,
                }
            ]
        }
    )
    request = {"ModelPackageGroupName": "group-a"}  # matched in the request, for calls without a job name

    answers = [limits.fault("CreateModelPackage", "", request) for _ in range(3)]

    assert [answer.code if answer else None for answer in answers] == ["ThrottlingException"] * 2 + [None]
    assert answers[0].message == "Rate exceeded"


def test_quotas_count_instances_per_type_and_usage() -> None:
    limits = AccountLimits(quotas={"ml.m5.large": 2})

    assert limits.acquire("training job", "ml.m5.large", 2) is None
    refused = limits.acquire("training job", "ml.m5.large", 1)
    assert refused and refused.startswith(
        "The account-level service limit 'ml.m5.large for training job usage' is 2"
    )
    assert limits.acquire("processing job", "ml.m5.large", 1) is None  # a quota of its own
    assert limits.acquire("training job", "ml.c5.xlarge", 2) is None  # the default, a new account's
    assert limits.acquire("training job", "ml.c5.xlarge", 1) is not None
    limits.release("training job", "ml.m5.large", 1)
    assert limits.acquire("training job", "ml.m5.large", 1) is None
