"""What the workflow definition promises about its SageMaker jobs, checked on local executions:
k reaches both the split and the fold Map, job names are valid and never repeat (across folds,
candidates, attempts and executions), and the Map results stay small."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from cvpipe.asl import StatesError, TaskRegistry, TaskRequest, VirtualClock
from cvpipe.pipeline.history_file import read_history
from cvpipe.pipeline.local import LocalPipeline

from .conftest import IRIS, ROOT

pytestmark = pytest.mark.integration

JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
FOLD_JOB = re.compile(r"^cv-[0-9a-f]{10}-c(?P<candidate>\d+)-f(?P<fold>\d+)-r\d+-a\d+$")
TRAIN = "arn:aws:states:::sagemaker:createTrainingJob.sync"


@pytest.fixture(scope="module")
def pipeline(home: Path):
    # Retry back-off of the definition (seconds) costs nothing on a virtual clock.
    with LocalPipeline(ROOT, home=home, workers=2, clock=VirtualClock()) as pipeline:
        yield pipeline


def run_input(k: int) -> dict:
    return {
        "dataset": {"uri": str(IRIS), "target": "species"},
        "cv": {"k": k, "seed": 1},
        "model": {"estimator": "LogisticRegression", "search_space": {"C": {"values": [0.5, 5.0]}}},
        "registry": {"group": "tests-definition"},
    }


def job_names(pipeline: LocalPipeline, execution: str) -> list[str]:
    return sorted(path.name for path in (pipeline.run_dir(execution) / "jobs").iterdir())


def history(pipeline: LocalPipeline, execution: str) -> list[dict]:
    return read_history(pipeline.run_dir(execution))


def test_k_reaches_the_split_and_the_fold_map(pipeline: LocalPipeline) -> None:
    run = pipeline.run(run_input(k=3), name="k-three")
    assert run.status == "SUCCEEDED", run.cause

    manifest = json.loads((pipeline.run_dir("k-three") / "split" / "manifest.json").read_text())
    assert manifest["k"] == 3 and len(manifest["test_rows_per_split"]) == 3
    folds = [FOLD_JOB.match(name) for name in job_names(pipeline, "k-three")]
    per_candidate = Counter(match["candidate"] for match in folds if match)
    assert list(per_candidate.values()) == [3, 3]  # 2 candidates x 3 folds, one job each
    assert all(len(entry["cv"]["folds"]) == 3 for entry in run.document()["tuning"]["history"])


def test_job_names_are_valid_and_unique_across_executions(pipeline: LocalPipeline) -> None:
    pipeline.run(run_input(k=2), name="names-a")
    pipeline.run(run_input(k=2), name="names-b")
    first, second = job_names(pipeline, "names-a"), job_names(pipeline, "names-b")

    assert all(JOB_NAME.match(name) and len(name) <= 63 for name in first + second)
    assert len(set(first)) == len(first) == 2 * 2 + 2  # folds, the split and the final fit
    assert not set(first) & set(second)


def test_a_retried_job_gets_a_new_name(pipeline: LocalPipeline) -> None:
    """A throttled CreateTrainingJob is retried by the definition, under the next attempt's name."""
    original = pipeline.engine.tasks
    throttled: list[str] = []

    def flaky_training(request: TaskRequest):
        name = request.parameters["TrainingJobName"]
        if not throttled and "-f0-" in name:
            throttled.append(name)
            raise StatesError("SageMaker.ResourceLimitExceededException", "account limit for ml.m5.large")
        return original.resolve(request.resource)(request)

    flaky = TaskRegistry()
    flaky.register(TRAIN, flaky_training)
    flaky.register(re.compile(".*"), lambda request: original.resolve(request.resource)(request))
    pipeline.engine.tasks = flaky
    try:
        run = pipeline.run(run_input(k=2), name="throttled")
    finally:
        pipeline.engine.tasks = original

    assert run.status == "SUCCEEDED", run.cause
    assert throttled and throttled[0].endswith("-a0")
    assert throttled[0][:-1] + "1" in job_names(pipeline, "throttled")
    assert run.document()["tuning"]["failed"] == 0


def test_fold_results_stay_out_of_the_state_and_small(pipeline: LocalPipeline) -> None:
    """The evaluation's results go to the run's folder in S3 (ResultWriter): the state holds where."""
    pipeline.run(run_input(k=4), name="small-results")
    exited = [
        e["stateExitedEventDetails"]
        for e in history(pipeline, "small-results")
        if e["type"] == "MapStateExited" and e["stateExitedEventDetails"]["name"] == "EvaluateCandidates"
    ]
    evaluation = json.loads(exited[0]["output"])["evaluations"]
    assert set(evaluation) == {"MapRunArn", "ResultWriterDetails"}
    location = evaluation["ResultWriterDetails"]
    assert location["Key"].startswith("runs/small-results/evaluations/")
    bucket = location["Bucket"]
    manifest = json.loads(pipeline.store.get_bytes(f"s3://{bucket}/{location['Key']}"))
    (results,) = manifest["ResultFiles"]["SUCCEEDED"]
    entries = json.loads(pipeline.store.get_bytes(f"s3://{bucket}/{results['Key']}"))
    folds = [fold for entry in entries for fold in json.loads(entry["Output"])]
    assert len(folds) == 2 * 4
    assert max(len(json.dumps(fold)) for fold in folds) < 400  # job name, status and metrics only
