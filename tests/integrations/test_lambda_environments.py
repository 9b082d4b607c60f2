"""Lambda execution environments: concurrent invocations, the function's Timeout, task tokens
sent back from a handler through boto3."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from cvpipe.asl import Engine, RealClock, TaskRegistry
from cvpipe.integrations.lambda_ import register_lambda
from cvpipe.integrations.store import LocalObjectStore, StoreObjects
from cvpipe.integrations.template import Template

pytestmark = pytest.mark.integration

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Sleeper:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sleeper
      Handler: app.lambda_handler
      Timeout: 4
  Gatherer:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/gatherer
      Handler: app.lambda_handler
      Timeout: 60
  Answerer:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/answerer
      Handler: app.lambda_handler
      Timeout: 10
"""

FILES = {
    "functions/sleeper/app.py": """
        import os
        import time

        def lambda_handler(event, context):
            time.sleep(event["seconds"])
            return {"pid": os.getpid(), "slept": event["seconds"]}
    """,
    "functions/gatherer/app.py": """
        import os
        import time
        from pathlib import Path

        def lambda_handler(event, context):
            # Returns once `count` invocations have arrived: run one after another, the first waits
            # until its Timeout.
            Path(event["room"], str(os.getpid())).touch()
            while len(os.listdir(event["room"])) < event["count"]:
                time.sleep(0.01)
            return {"pid": os.getpid()}
    """,
    "functions/answerer/app.py": """
        import json
        import time
        import boto3

        def lambda_handler(event, context):
            client = boto3.client("stepfunctions")
            for _ in range(event.get("beats", 0)):
                client.send_task_heartbeat(taskToken=event["token"])
                time.sleep(0.5)
            if event.get("fail"):
                client.send_task_failure(taskToken=event["token"], error="Answer.No", cause="refused")
            elif event.get("answer", True):
                client.send_task_success(taskToken=event["token"], output=json.dumps({"got": event["value"]}))
            try:
                client.send_task_success(taskToken="not-a-token", output="{}")
            except client.exceptions.ClientError as refused:
                return refused.response["Error"]["Code"]
            return "accepted"
    """,
}


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(dedent(text))
    registry = TaskRegistry()
    functions = register_lambda(registry, Template(tmp_path / "template.yaml").functions(), tmp_path)
    yield Engine(registry, RealClock())
    functions.close()


def sleeper(seconds: float, timeout: int, name: str = "Sleep") -> dict[str, Any]:
    return {
        "StartAt": name,
        "States": {
            name: {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "Sleeper", "Payload": {"seconds": seconds}},
                "ResultSelector": {"pid.$": "$.Payload.pid"},
                "TimeoutSeconds": timeout,
                "End": True,
            }
        },
    }


def test_lambda_tasks_of_a_parallel_run_at_the_same_time(engine: Engine, tmp_path: Path) -> None:
    # Each invocation waits for the other two to arrive: they can only all succeed if they overlap.
    room = tmp_path / "room"
    room.mkdir()

    def gather(name: str) -> dict[str, Any]:
        task = {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "Gatherer", "Payload": {"room": str(room), "count": 3}},
            "ResultSelector": {"pid.$": "$.Payload.pid"},
            "End": True,
        }
        return {"StartAt": name, "States": {name: task}}

    branches = [gather(f"Gather {i}") for i in range(3)]
    definition = {"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": branches, "End": True}}}
    result = engine.run(definition, {})
    assert result.status == "SUCCEEDED", result.cause
    assert len({branch["pid"] for branch in result.output}) == 3  # an environment per invocation


def test_map_iterations_reuse_warm_environments(engine: Engine) -> None:
    processor = sleeper(0, 10)
    definition = {
        "StartAt": "M",
        "States": {"M": {"Type": "Map", "MaxConcurrency": 1, "ItemProcessor": processor, "End": True}},
    }
    result = engine.run(definition, [1, 2, 3])
    assert result.status == "SUCCEEDED", result.cause
    assert len({item["pid"] for item in result.output}) == 1


def test_an_invocation_past_the_function_timeout_fails_as_lambda_reports_it(engine: Engine) -> None:
    result = engine.run(sleeper(6, 30), {})
    assert result.error == "Sandbox.Timedout"
    assert "Task timed out after 4.00 seconds" in json.loads(result.cause)["errorMessage"]


def test_a_task_timeout_stops_the_invocation_and_the_next_one_gets_a_fresh_environment(
    engine: Engine,
) -> None:
    assert engine.run(sleeper(3, 1), {}).error == "States.Timeout"
    assert engine.run(sleeper(0, 5), {}).status == "SUCCEEDED"


def callback(payload: dict[str, Any], heartbeat: int | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "Answerer", "Payload": {"token.$": "$$.Task.Token", **payload}},
        "TimeoutSeconds": 20,
        "End": True,
    }
    if heartbeat is not None:
        state["HeartbeatSeconds"] = heartbeat
    return {"StartAt": "Wait for answer", "States": {"Wait for answer": state}}


def test_a_handler_sends_the_token_back_and_the_task_succeeds_with_its_output(engine: Engine) -> None:
    result = engine.run(callback({"value.$": "$.v"}), {"v": 7})
    assert (result.status, result.output) == ("SUCCEEDED", {"got": 7}), result.cause
    submitted = [e for e in result.history if e.type == "TaskSubmitted"]
    # The invocation's own answer: a second SendTaskSuccess with an unknown token was refused.
    assert json.loads(submitted[0].details["output"])["Payload"] == "InvalidToken"


def test_a_handler_sends_a_failure(engine: Engine) -> None:
    result = engine.run(callback({"fail": True}), {})
    assert (result.status, result.error, result.cause) == ("FAILED", "Answer.No", "refused")


def test_heartbeats_keep_the_task_alive_and_their_absence_times_it_out(engine: Engine) -> None:
    # A first invocation warms the environment, so that a slow cold start (boto3's import on a busy
    # machine) cannot eat the heartbeat window; then beats every 0.5 s carry the task past 2 s.
    assert engine.run(callback({"value": 0}), {}).status == "SUCCEEDED"
    result = engine.run(callback({"beats": 6, "value": 1}, heartbeat=2), {})
    assert result.status == "SUCCEEDED", result.cause
    result = engine.run(callback({"answer": False}, heartbeat=1), {})
    assert (result.status, result.error) == ("FAILED", "States.HeartbeatTimeout")
    assert [e.type for e in result.history][-2:] == ["TaskTimedOut", "ExecutionFailed"]


READER = """
import boto3

s3 = boto3.client("s3")


def lambda_handler(event, context):
    try:
        return s3.get_object(Bucket=event["bucket"], Key=event["key"])["Body"].read().decode()
    except s3.exceptions.NoSuchKey as missing:
        return missing.response["Error"]["Code"]
"""


def test_a_handlers_s3_get_object_reads_the_local_object_store(tmp_path: Path) -> None:
    """As in Lambda, a function reads what the run wrote to S3 with boto3: locally, from the store."""
    (tmp_path / "template.yaml").write_text(
        "Resources:\n  Reader:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {CodeUri: reader, Handler: app.lambda_handler}\n"
    )
    (tmp_path / "reader").mkdir()
    (tmp_path / "reader" / "app.py").write_text(READER)
    store = LocalObjectStore(tmp_path / "s3")
    store.put_bytes("s3://bucket-a/runs/x/manifest.json", b'{"ok": true}')
    registry = TaskRegistry()
    functions = register_lambda(
        registry, Template(tmp_path / "template.yaml").functions(), tmp_path, StoreObjects(store)
    )

    def read(key: str) -> dict[str, Any]:
        task = {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "Reader", "Payload": {"bucket": "bucket-a", "key": key}},
            "OutputPath": "$.Payload",
            "End": True,
        }
        return {"StartAt": "Read", "States": {"Read": task}}

    try:
        engine = Engine(registry, RealClock())
        assert engine.run(read("runs/x/manifest.json"), {}).output == '{"ok": true}'
        assert engine.run(read("runs/x/missing.json"), {}).output == "NoSuchKey"
    finally:
        functions.close()


def test_a_function_that_brings_its_own_copy_of_a_shared_module_imports_its_own(tmp_path: Path) -> None:
    """Environments start from a process that imported boto3 and its dependencies (jmespath among
    them); a function whose folder has a module of one of those names still imports its own, as in
    Lambda, and the others still get the installed one."""
    (tmp_path / "template.yaml").write_text(
        "Resources:\n"
        "  Own:\n    Type: AWS::Serverless::Function\n    Properties: {CodeUri: own, Handler: app.lambda_handler}\n"
        "  Plain:\n    Type: AWS::Serverless::Function\n    Properties: {CodeUri: plain, Handler: app.lambda_handler}\n"
    )
    handler = "import jmespath\n\ndef lambda_handler(event, context):\n    return jmespath.__file__\n"
    for name in ("own", "plain"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(handler)
    (tmp_path / "own" / "jmespath.py").write_text("")
    functions = register_lambda(TaskRegistry(), Template(tmp_path / "template.yaml").functions(), tmp_path)
    try:
        functions.start()
        assert functions.invoke("Own", {}, "request-1") == str((tmp_path / "own" / "jmespath.py").resolve())
        assert "site-packages" in functions.invoke("Plain", {}, "request-2")
    finally:
        functions.close()
