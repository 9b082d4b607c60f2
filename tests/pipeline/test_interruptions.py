"""Fault injection: interrupts at each phase, killed workers and killed runs, then ``--resume``.

Each case must end as a clean run of the same input ends: the same best candidate and fold scores,
the same registered model, and exactly one model package for the execution.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cvpipe.asl import Event
from cvpipe.errors import UserError
from cvpipe.pipeline.local import Interrupts, LocalPipeline, PipelineRun, read_journal

from .conftest import IRIS, ROOT

pytestmark = pytest.mark.integration

GROUP = "tests-interruptions"
INPUT = {
    "dataset": {"uri": str(IRIS), "target": "species"},
    "cv": {"splitter": "StratifiedKFold", "k": 3, "seed": 5},
    "model": {
        "estimator": "SVC",
        "search_space": {"C": {"values": [0.05, 1.0]}, "kernel": {"values": ["linear", "rbf"]}},
    },
    "metric": "accuracy",
    "baseline": 0.8,
    "registry": {"group": GROUP},
}
# Where a run is interrupted: when this event of this state is seen for the n-th time; and a state
# the run is then stopped in.
PHASES = {
    "split": ("TaskStateEntered", "SplitFolds", 1, "SplitFolds"),
    "folds": ("TaskStateExited", "TrainFold", 4, "TrainFolds"),
    "final fit": ("TaskSubmitted", "FitFinalModel", 1, "FitFinalModel"),
    "before registration": ("TaskStateEntered", "PutStatistics", 1, "PutStatistics"),
}
# A train program that kills its own worker (SIGKILL, as the OOM killer would) the first time it
# runs fold 1 of the best candidate (3): a job lost with its worker.
FAULTY_TRAIN = """
import os, signal
from pathlib import Path

from cvjobs import train


def main(ml_root=Path("/opt/ml")):
    lost = "-c3-f1-" in os.environ["TRAINING_JOB_NAME"]
    if lost and "Retrying" not in (ml_root / "job.log").read_text():
        os.kill(os.getpid(), signal.SIGKILL)
    return train.main(ml_root)
"""
NOT_COMPARED = {
    "job",
    "fit_time_mean",
    "fit_time_std",
    "score_time_mean",
    "score_time_std",
    "mean_fit_time",
    "std_fit_time",
    "mean_score_time",
    "std_score_time",
    "model_data_url",
    "artifacts",
    "run_dir",
    "model_package_arn",
    "model_package_version",
}


def comparable(value: Any) -> Any:
    """A run document without what differs between equal runs: job names, paths, timings, ARNs."""
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items() if key not in NOT_COMPARED}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def packages_of(pipeline: LocalPipeline, execution: str) -> list[dict[str, Any]]:
    summaries = pipeline.registry.list_model_packages(GROUP)["ModelPackageSummaryList"]
    described = [pipeline.registry.describe_model_package(item["ModelPackageArn"]) for item in summaries]
    return [item for item in described if item["CustomerMetadataProperties"]["execution"] == execution]


def registered(pipeline: LocalPipeline, execution: str) -> dict[str, Any]:
    """The execution's one model package: its statistics and metadata, job names left out."""
    (package,) = packages_of(pipeline, execution)
    statistics = pipeline.store.get_bytes(package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"])
    metadata = dict(package["CustomerMetadataProperties"])
    for key in ("execution", "training_job"):
        metadata.pop(key)
    return {"statistics": json.loads(statistics), "metadata": metadata}


def interrupt_at(
    interrupts: Interrupts, event_type: str, state: str, nth: int, signals: tuple[int, ...] = (signal.SIGINT,)
) -> Callable[[Event], None]:
    """A history hook that delivers ``signals`` at an event, as a signal handler would, and holds the
    lane that emitted it until the run has acted on them."""
    seen: Counter[str] = Counter()
    entered: list[str] = []

    def hook(event: Event) -> None:
        name = event.details.get("name")
        if event.type.endswith("StateEntered"):
            entered.append(name)
        # TaskSubmitted names no state: it belongs to the task state entered last on its lane.
        if event.type != event_type or (name or entered[-1]) != state:
            return
        seen[state] += 1
        if seen[state] == nth:
            for number in signals:
                interrupts(number)
            time.sleep(0.5)

    return hook


def completed_jobs(run: PipelineRun) -> Counter[str]:
    """How often each job (by its name without the attempt) completed in the run folder."""
    done: Counter[str] = Counter()
    for describe in (run.run_dir / "jobs").glob("*/describe.json"):
        description = json.loads(describe.read_text())
        if description.get("TrainingJobStatus", description.get("ProcessingJobStatus")) == "Completed":
            name = describe.parent.name
            done[name.rsplit("-r", 1)[0]] += 1
    return done


@pytest.fixture(scope="module")
def clean(pipeline: LocalPipeline) -> dict[str, Any]:
    run = pipeline.run(INPUT, name="clean")
    assert run.status == "SUCCEEDED"
    return {"document": comparable(run.document()), "registered": registered(pipeline, "clean")}


@pytest.mark.parametrize("phase", sorted(PHASES))
def test_an_interrupt_at_each_phase_then_resume_ends_as_a_clean_run(
    pipeline: LocalPipeline, clean: dict[str, Any], phase: str
) -> None:
    name = "interrupted-" + phase.replace(" ", "-")
    interrupts = Interrupts()
    event_type, state, nth, stopped_in = PHASES[phase]
    stopped = pipeline.run(
        INPUT, name=name, on_event=interrupt_at(interrupts, event_type, state, nth), interrupts=interrupts
    )

    assert (stopped.status, stopped.error) == ("ABORTED", "Interrupted")
    record = json.loads((stopped.run_dir / "execution.json").read_text())
    assert record["status"] == "ABORTED" and stopped_in in record["stopped_in"]
    assert packages_of(pipeline, name) == []  # nothing registered

    resumed = pipeline.resume(name)
    assert resumed.status == "SUCCEEDED" and resumed.redrive_count == 1
    assert comparable(resumed.document()) == clean["document"]
    assert registered(pipeline, name) == clean["registered"]  # one package, the clean run's model
    assert json.loads((stopped.run_dir / "execution.json").read_text())["redrive_count"] == 1
    # What completed before the interrupt was reused, not run again.
    assert max(completed_jobs(resumed).values()) == 1


def test_an_interrupt_while_registering_lets_the_registration_finish(
    pipeline: LocalPipeline, clean: dict[str, Any]
) -> None:
    interrupts = Interrupts()
    hook = interrupt_at(interrupts, "TaskStateEntered", "RegisterModel", 1, (signal.SIGINT, signal.SIGINT))
    run = pipeline.run(INPUT, name="interrupted-registering", on_event=hook, interrupts=interrupts)

    assert run.status == "SUCCEEDED" and interrupts.received == [signal.SIGINT, signal.SIGINT]
    assert json.loads((run.run_dir / "execution.json").read_text())["status"] == "SUCCEEDED"
    assert registered(pipeline, "interrupted-registering") == clean["registered"]
    with pytest.raises(UserError, match="succeeded: there is nothing to resume"):
        pipeline.resume("interrupted-registering")


def test_a_second_interrupt_hurries_but_the_run_is_recorded(pipeline: LocalPipeline) -> None:
    interrupts = Interrupts()
    hook = interrupt_at(interrupts, "TaskStateExited", "TrainFold", 2, (signal.SIGINT, signal.SIGINT))
    run = pipeline.run(INPUT, name="interrupted-twice", on_event=hook, interrupts=interrupts)
    assert run.status == "ABORTED"
    assert json.loads((run.run_dir / "execution.json").read_text())["status"] == "ABORTED"
    assert pipeline.resume("interrupted-twice").status == "SUCCEEDED"
    assert len(packages_of(pipeline, "interrupted-twice")) == 1


def test_resume_refuses_unknown_and_live_runs(pipeline: LocalPipeline) -> None:
    with pytest.raises(UserError, match="no execution 'never-ran'"):
        pipeline.resume("never-ran")
    held = threading.Event()
    release = threading.Event()

    def hold(event: Event) -> None:
        if event.type == "TaskStateEntered" and event.details.get("name") == "SplitFolds":
            held.set()
            release.wait(10)

    worker = threading.Thread(target=pipeline.run, args=(INPUT,), kwargs={"name": "live", "on_event": hold})
    worker.start()
    try:
        assert held.wait(30)
        with pytest.raises(UserError, match="is running in another process"):
            pipeline.resume("live")
    finally:
        release.set()
        worker.join()


# -- a worker killed mid-job ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def faulty_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    programs = tmp_path_factory.mktemp("programs")
    (programs / "cvtest_faulty_train.py").write_text(FAULTY_TRAIN)
    sys.path.insert(0, str(programs))  # spawned workers start with the parent's sys.path
    try:
        pipeline = LocalPipeline(ROOT, home=tmp_path_factory.mktemp("faulty-home"), workers=2)
        pipeline.pool.programs["train"] = "cvtest_faulty_train:main"
        with pipeline:
            yield pipeline
    finally:
        sys.path.remove(str(programs))


def test_a_job_lost_with_its_worker_is_retried_and_the_result_is_the_clean_one(
    faulty_pipeline: LocalPipeline, clean: dict[str, Any]
) -> None:
    run = faulty_pipeline.run(INPUT, name="clean")  # the same name: the same metadata as the clean run
    assert run.status == "SUCCEEDED"
    assert comparable(run.document()) == clean["document"]
    assert registered(faulty_pipeline, "clean") == clean["registered"]
    # Fold 1 of the best candidate lost its worker once and ran again; no other job did.
    (log,) = run.run_dir.glob("jobs/*-c3-f1-*/job.log")
    text = log.read_text()
    assert "worker process exited unexpectedly with code -9" in text
    assert "InternalServerError" in text and "Retrying the job (retry 1 of 2)" in text
    assert sum("Retrying" in other.read_text() for other in run.run_dir.glob("jobs/*/job.log")) == 1


# -- the real process: signals and a kill ---------------------------------------------------------


def start_cli(home: Path, name: str, tmp_path: Path) -> subprocess.Popen[str]:
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps(INPUT))
    command = [
        sys.executable,
        "-m",
        "cvpipe",
        "run",
        "--input",
        str(input_file),
        "--name",
        name,
        "--workers",
        "1",
    ]
    env = {**os.environ, "CVPIPE_HOME": str(home)}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_jobs(run_dir: Path, count: int, process: subprocess.Popen[str]) -> None:
    """Until ``count`` tasks have finished (journal entries): the split and some folds."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if len(read_journal(run_dir)) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run did not reach {count} tasks: {process.communicate()}")


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def descendants_of(pid: int) -> list[int]:
    """Its children, theirs (the job workers are forks of a child), and so on."""
    found = children_of(pid)
    for child in list(found):
        found += descendants_of(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def gone(pids: list[int], seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_the_cli_is_recorded_and_leaves_no_process(
    pipeline: LocalPipeline, tmp_path: Path
) -> None:
    name = "terminated"
    process = start_cli(pipeline.home, name, tmp_path)
    wait_for_jobs(pipeline.run_dir(name), 3, process)
    workers = descendants_of(process.pid)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 143
    assert "Traceback" not in stderr
    assert f"continue it with: cvpipe run --resume {name}" in stderr.splitlines()[-1]
    record = json.loads((pipeline.run_dir(name) / "execution.json").read_text())
    assert (record["status"], record["error"]) == ("ABORTED", "Terminated")
    assert workers and gone(workers)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_run_is_resumed_to_the_clean_result(
    pipeline: LocalPipeline, clean: dict[str, Any], tmp_path: Path
) -> None:
    process = start_cli(pipeline.home, "killed", tmp_path)
    wait_for_jobs(pipeline.run_dir("killed"), 4, process)
    workers = descendants_of(process.pid)
    process.kill()
    process.communicate()
    assert gone(workers)  # the workers follow their pool
    assert json.loads((pipeline.run_dir("killed") / "execution.json").read_text())["status"] == "RUNNING"

    resumed = pipeline.resume("killed")
    assert resumed.status == "SUCCEEDED"
    assert comparable(resumed.document()) == clean["document"]
    assert registered(pipeline, "killed") == clean["registered"]
