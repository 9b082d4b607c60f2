"""AWS's bad days rehearsed on the local engine: refused and throttled jobs, the account's instance
quotas, jobs that end Failed or Stopped, and searches too large for one execution.

Retry back-off is the definition's own (minutes, as on AWS); the virtual clock makes it cost nothing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cvpipe.asl import VirtualClock
from cvpipe.errors import UserError
from cvpipe.integrations.faults import AccountLimits
from cvpipe.integrations.registry import OPERATIONS as REGISTRY_OPERATIONS
from cvpipe.integrations.sagemaker import JOB_OPERATIONS
from cvpipe.pipeline.contract import DEFINITION, EVALUATE_CANDIDATES, FOLD_MAP
from cvpipe.pipeline.history_file import CHILD_HISTORIES_FILE, read_history
from cvpipe.pipeline.local import LocalPipeline, PipelineRun
from cvpipe.pipeline.run_command import build_input, read_faults

from .conftest import IRIS, ROOT

pytestmark = pytest.mark.e2e

QUOTA_ERROR = "SageMaker.ResourceLimitExceededException"
QUOTA_MESSAGE = re.compile(
    r"^The account-level service limit 'ml\.m5\.large for training job usage' is \d+ Instances, with current "
    r"utilization of \d+ Instances and a request delta of 1 Instances\. Please use AWS Service Quotas"
)


@pytest.fixture(scope="module")
def account() -> AccountLimits:
    return AccountLimits()


@pytest.fixture(scope="module")
def pipeline(home: Path, account: AccountLimits):
    with LocalPipeline(ROOT, home=home, workers=2, clock=VirtualClock(), limits=account) as pipeline:
        yield pipeline


@pytest.fixture
def rehearse(account: AccountLimits):
    """Give the local account the rules and quotas of a faults file, for one test."""

    def load(document: dict[str, Any]) -> None:
        parsed = AccountLimits.from_document(
            document, (*JOB_OPERATIONS, *REGISTRY_OPERATIONS), JOB_OPERATIONS
        )
        account.rules, account.quotas = parsed.rules, parsed.quotas

    yield load
    load({})


def search(group: str, k: int = 4, values: tuple[float, ...] = (0.1, 1.0, 10.0)) -> dict[str, Any]:
    return {
        "dataset": {"uri": str(IRIS), "target": "species"},
        "cv": {"k": k, "seed": 3},
        "model": {"estimator": "LogisticRegression", "search_space": {"C": {"values": list(values)}}},
        "registry": {"group": group},
    }


def history(pipeline: LocalPipeline, run: PipelineRun) -> list[dict[str, Any]]:
    """The events of the execution and of its child executions (where the fold jobs run)."""
    run_dir = pipeline.run_dir(run.name)
    return read_history(run_dir) + read_history(run_dir, CHILD_HISTORIES_FILE)


def scheduled_jobs(events: list[dict[str, Any]]) -> list[str]:
    """The job name of every CreateTrainingJob call, in order."""
    return [
        json.loads(event["taskScheduledEventDetails"]["parameters"])["TrainingJobName"]
        for event in events
        if event["type"] == "TaskScheduled"
        and event["taskScheduledEventDetails"]["resource"] == "createTrainingJob.sync"
    ]


def entries(run: PipelineRun) -> dict[int, dict[str, Any]]:
    return {entry["id"]: entry for entry in run.document()["tuning"]["history"]}


def scores(run: PipelineRun) -> dict[int, list[float] | None]:
    """Each candidate's fold scores (None: failed); fit times differ from run to run."""
    return {i: entry["cv"]["folds"] if entry["cv"] else None for i, entry in entries(run).items()}


def load_budgets() -> Any:
    spec = importlib.util.spec_from_file_location(
        "workflow_budgets", ROOT / "functions/shared/workflow_documents/budgets.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clean_run(pipeline: LocalPipeline) -> PipelineRun:
    run = pipeline.run(search("faults-clean"), name="clean")
    assert run.status == "SUCCEEDED", run.cause
    return run


def test_a_fold_refused_on_every_attempt_fails_its_candidate_and_the_run_goes_on(
    pipeline: LocalPipeline, rehearse, clean_run: PipelineRun
) -> None:
    rule = {
        "action": "CreateTrainingJob",
        "match": "-c0-f3-",
        "error": "ResourceLimitExceeded",
        "times": None,
    }
    rehearse({"rules": [rule]})
    run = pipeline.run(search("faults-refused"), name="refused")
    events = history(pipeline, run)

    assert run.status == "SUCCEEDED", run.cause
    refused = entries(run)[0]
    assert refused["status"] == "Failed"
    (failure,) = refused["failures"]
    assert (failure["fold"], failure["error"]) == (3, "SageMaker.ResourceLimitExceededException")
    assert QUOTA_MESSAGE.match(failure["cause"]) and "Error Code: ResourceLimitExceeded" in failure["cause"]
    # Retried with the definition's long back-off (a new name each time), then given up.
    attempts = [name for name in scheduled_jobs(events) if "-c0-f3-" in name]
    assert [name.rsplit("-a", 1)[1] for name in attempts] == [str(n) for n in range(8)]
    # The best of the others is registered, scored as in a clean run.
    others = {i: entry for i, entry in entries(clean_run).items() if i != 0}
    best = max(others.values(), key=lambda entry: (entry["cv"]["mean"], -entry["id"]))
    assert run.document()["best"]["id"] == best["id"]
    assert scores(run) == {**scores(clean_run), 0: None}
    assert run.document()["model_package_arn"]


def test_a_throttled_job_is_retried_and_the_run_equals_a_clean_one(
    pipeline: LocalPipeline, rehearse, clean_run: PipelineRun
) -> None:
    rule = {"action": "CreateTrainingJob", "match": "-c1-f2-", "error": "ThrottlingException", "times": 1}
    rehearse({"rules": [rule]})
    run = pipeline.run(search("faults-throttled"), name="throttled")
    events = history(pipeline, run)

    assert run.status == "SUCCEEDED", run.cause
    failed = [event["taskFailedEventDetails"] for event in events if event["type"] == "TaskFailed"]
    assert [detail["error"] for detail in failed] == ["SageMaker.AmazonSageMakerException"]
    assert "Rate exceeded" in failed[0]["cause"] and "Error Code: ThrottlingException" in failed[0]["cause"]
    assert [name for name in scheduled_jobs(events) if "-c1-f2-" in name][-1].endswith("-a1")
    assert scores(run) == scores(clean_run)
    assert run.document()["best"]["id"] == clean_run.document()["best"]["id"]


def test_jobs_told_to_fail_or_stop_fail_their_candidates_with_the_reason(
    pipeline: LocalPipeline, rehearse
) -> None:
    rules = [
        {"action": "CreateTrainingJob", "match": "-c0-f1-", "error": "Failed", "times": None},
        {"action": "CreateTrainingJob", "match": "-c2-f0-", "error": "Stopped", "times": None},
    ]
    rehearse({"rules": rules})
    run = pipeline.run(search("faults-ended"), name="ended")

    assert run.status == "SUCCEEDED", run.cause
    history_entries = entries(run)
    (failed,) = history_entries[0]["failures"]
    assert (failed["fold"], failed["error"]) == (1, "TrainingJobFailed")
    assert failed["cause"].startswith("InternalServerError: We encountered an internal error")
    (stopped,) = history_entries[2]["failures"]
    assert (stopped["fold"], stopped["error"]) == (0, "TrainingJobStopped")
    assert run.document()["best"]["id"] == 1


def test_a_refused_registration_is_retried(pipeline: LocalPipeline, rehearse) -> None:
    rule = {
        "action": "CreateModelPackage",
        "match": "faults-registry",
        "error": "ThrottlingException",
        "times": 2,
    }
    rehearse({"rules": [rule]})
    run = pipeline.run(search("faults-registry", k=2, values=(1.0,)), name="registry")
    versions = pipeline.registry.list_model_packages("faults-registry")["ModelPackageSummaryList"]

    assert run.status == "SUCCEEDED", run.cause
    assert len(versions) == 1  # one package, though the call was made three times


def test_a_registration_refused_as_invalid_fails_in_seconds(pipeline: LocalPipeline, rehearse) -> None:
    """The aws-sdk integration names every error SageMaker does not model SageMakerException, a
    ValidationException as much as throttling: the definition gives those two quick attempts only."""
    rule = {
        "action": "CreateModelPackage",
        "match": "faults-invalid",
        "error": "ValidationException",
        "times": None,
    }
    rehearse({"rules": [rule]})
    run = pipeline.run(search("faults-invalid", k=2, values=(1.0,)), name="registry-invalid")
    events = history(pipeline, run)
    attempts = [
        event
        for event in events
        if event["type"] == "TaskFailed"
        and event["taskFailedEventDetails"]["resource"] == "createModelPackage"
    ]

    assert (run.status, run.error) == ("FAILED", "SageMaker.SageMakerException")
    assert len(attempts) == 3  # the call and two retries
    waited = datetime.fromisoformat(attempts[-1]["timestamp"]) - datetime.fromisoformat(
        attempts[0]["timestamp"]
    )
    assert waited.total_seconds() <= 2 + 4  # the retrier's back-off at most, not minutes
    assert not pipeline.registry.list_model_packages("faults-invalid")["ModelPackageSummaryList"]


def test_the_demo_runs_within_a_quota_of_two_jobs(pipeline: LocalPipeline, rehearse) -> None:
    quotas = {"quotas": {"ml.m5.large": 2, "ml.t3.medium": 1}}
    rehearse(quotas)
    run = pipeline.run(build_input(ROOT, None, None, []), name="demo-quota")
    events = history(pipeline, run)
    described = [
        json.loads(path.read_text()) for path in (pipeline.run_dir(run.name) / "jobs").glob("*/describe.json")
    ]

    assert run.status == "SUCCEEDED", run.cause
    assert not [event for event in events if event["type"] == "TaskFailed"]  # never refused
    spans = [
        (job["TrainingStartTime"], job["TrainingEndTime"]) for job in described if "TrainingStartTime" in job
    ]
    assert len(spans) == 16 * 5 + 1
    most_at_once = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    assert most_at_once <= 2


def test_more_jobs_than_the_quota_are_refused_as_aws_refuses_them(pipeline: LocalPipeline) -> None:
    document = {**search("faults-quota", k=4), "resources": {"max_parallel_jobs": 8}}
    run = pipeline.run(document, name="over-quota")

    refusals = [
        failure
        for entry in entries(run).values()
        for failure in entry["failures"]
        if failure["error"] == "SageMaker.ResourceLimitExceededException"
    ]
    # A failed candidate keeps the cause of its first failure (the others' are in its child execution's history).
    causes = [failure["cause"] for failure in refusals if failure["cause"]]
    assert causes and all(" is 2 Instances" in cause for cause in causes)


def test_the_history_budget_holds_when_every_fold_job_is_refused(pipeline: LocalPipeline, rehearse) -> None:
    budgets = load_budgets()
    rule = {"action": "CreateTrainingJob", "match": "-f", "error": "ResourceLimitExceeded", "times": None}
    document = search("faults-budget", k=2, values=(0.5, 5.0))
    rehearse({"rules": [rule]})
    run = pipeline.run(document, name="all-refused")
    events = history(pipeline, run)
    parent = read_history(pipeline.run_dir(run.name))
    children = Counter(event["executionArn"] for event in events if "executionArn" in event)

    assert run.error == "NoCandidateSucceeded"
    definition = json.loads((ROOT / DEFINITION).read_text())
    fold_task = definition["States"][EVALUATE_CANDIDATES]["ItemProcessor"]["States"][FOLD_MAP][
        "ItemProcessor"
    ]
    retriers = fold_task["States"]["TrainFold"]["Retry"]
    assert 1 + sum(retrier["MaxAttempts"] for retrier in retriers) == budgets.FOLD_JOB_ATTEMPTS
    quota_retries = next(r["MaxAttempts"] for r in retriers if r["ErrorEquals"] == [QUOTA_ERROR])
    assert len(scheduled_jobs(events)) == 2 * 2 * (1 + quota_retries)
    worst = budgets.Search(k=2, max_candidates=2, batch_size=2, candidate_bytes=0, config_bytes=0)
    assert len(parent) <= budgets.history_events(worst)
    assert len(children) == 2 and max(children.values()) <= budgets.child_history_events(worst)
    # A child's events, each fold refused on every attempt of the quota retrier: as the budget counts them.
    fold_events = 3 * (1 + quota_retries) + budgets.EVENTS_PER_FOLD - 3 * budgets.FOLD_JOB_ATTEMPTS
    assert set(children.values()) == {budgets.EVENTS_PER_CHILD + 2 * fold_events}


@pytest.mark.parametrize(
    ("cv", "tuning", "fix"),
    [
        ({"k": 50}, {"max_candidates": 100}, "lower tuning.max_candidates to"),
        ({"splitter": "RepeatedKFold", "k": 10, "repeats": 20}, {"max_candidates": 1}, "use at most"),
    ],
)
def test_a_search_too_large_for_one_execution_is_refused_before_any_job(
    pipeline: LocalPipeline, cv: dict[str, Any], tuning: dict[str, Any], fix: str
) -> None:
    document = {**search("faults-too-large"), "cv": {"seed": 3, **cv}, "tuning": tuning}
    run = pipeline.run(document, name=f"too-large-k{cv['k']}-{tuning['max_candidates']}")
    ran_jobs = (pipeline.run_dir(run.name) / "jobs").exists()

    assert (run.status, run.error, run.input_rejected) == ("FAILED", "InvalidInputError", True)
    assert "(payload limit)" in run.cause and fix in run.cause
    assert not ran_jobs


def test_cli_refuses_a_bad_faults_file_naming_the_field(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"rules": [{"action": "CreateTrainingJob", "error": "Throttled"}]}))

    result = subprocess.run(
        [sys.executable, "-m", "cvpipe", "run", "--faults", str(faults), "--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )

    assert result.returncode == 2
    assert f"--faults {faults}: rules[0].error: unknown error 'Throttled'" in result.stderr
    assert "ThrottlingException" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "s3").exists()


def test_faults_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^--faults .*missing\.json: no such file"):
        read_faults(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(UserError, match=r"^--faults .*broken\.json: not valid JSON"):
        read_faults(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"quotas": {"ml.m5.large": "2"}}))
    with pytest.raises(
        UserError, match=r"^--faults .*wrong\.json: quotas\.ml\.m5\.large: must be a whole number"
    ):
        read_faults(wrong)
