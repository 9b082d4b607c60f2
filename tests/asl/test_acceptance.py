"""Issue 10's acceptance on definitions a user brings: Lambda tasks of a Parallel running at the same
time within their TimeoutSeconds, callback tasks answered (or left without heartbeats) by a handler,
and, through `cvpipe asl run` in a fresh process, a JSONata Distributed Map over a headerless CSV in the
local object store with variables and a ResultWriter."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from cvpipe.asl import Engine, RealClock, TaskRegistry
from cvpipe.integrations.lambda_ import register_lambda
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
      Timeout: 10
  Answerer:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/answerer
      Handler: app.lambda_handler
      Timeout: 10
"""

HANDLERS = {
    "functions/sleeper/app.py": """
        import os
        import time

        def lambda_handler(event, context):
            start = time.time()
            time.sleep(event["seconds"])
            return {"pid": os.getpid(), "start": start, "end": time.time()}
    """,
    "functions/answerer/app.py": """
        import json
        import time
        import boto3

        def lambda_handler(event, context):
            client = boto3.client("stepfunctions")
            for _ in range(event["beats"]):
                client.send_task_heartbeat(taskToken=event["token"])
                time.sleep(0.5)
            if event["answer"]:
                client.send_task_success(taskToken=event["token"], output=json.dumps({"got": event["value"]}))
            return "sent"
    """,
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine with the template's functions, each warmed in three execution environments: a cold
    start (an interpreter importing boto3 on a busy machine) counts against TimeoutSeconds and
    HeartbeatSeconds as Lambda's init does, and is not what these tests measure."""
    project = tmp_path_factory.mktemp("project")
    (project / "template.yaml").write_text(TEMPLATE)
    for name, text in HANDLERS.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(dedent(text))
    template = Template(project / "template.yaml")
    registry = TaskRegistry()
    functions = register_lambda(registry, template.functions(), project)
    warmed = Engine(registry, RealClock())
    warm_up = fan_out([invoke("Sleeper", {"seconds": 0}), invoke("Answerer", {"beats": 0, "answer": False})])
    assert warmed.run(warm_up, {}).status == "SUCCEEDED"
    yield warmed
    functions.close()


def invoke(function: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Arguments": {"FunctionName": function, "Payload": payload},
        "Output": "{% $states.result.Payload %}",
        "End": True,
        **fields,
    }


def fan_out(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSONata Parallel of three branches per task."""
    branches = [
        {"StartAt": f"Call {i}", "States": {f"Call {i}": task}}
        for i, task in enumerate(task for task in tasks for _ in range(3))
    ]
    return {
        "QueryLanguage": "JSONata",
        "StartAt": "Fan out",
        "States": {"Fan out": {"Type": "Parallel", "Branches": branches, "End": True}},
    }


def test_three_two_second_lambda_tasks_of_a_parallel_succeed_within_timeout_seconds_3(engine: Engine) -> None:
    # Run one after another they would need 6 s and the later ones would time out; run at once, in an
    # execution environment each (as Lambda runs concurrent invocations), they all succeed, and their
    # running times overlap.
    definition = fan_out([invoke("Sleeper", {"seconds": 2}, TimeoutSeconds=3)])
    result = engine.run(definition, {})
    assert result.status == "SUCCEEDED", result.cause
    runs = result.output
    assert len({run["pid"] for run in runs}) == 3
    assert max(run["start"] for run in runs) < min(run["end"] for run in runs)


def callback(beats: int, answer: bool) -> dict[str, Any]:
    return {
        "QueryLanguage": "JSONata",
        "StartAt": "Ask",
        "States": {
            "Ask": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Arguments": {
                    "FunctionName": "Answerer",
                    "Payload": {
                        "token": "{% $states.context.Task.Token %}",
                        "value": "{% $states.input.value %}",
                        "beats": beats,
                        "answer": answer,
                    },
                },
                "HeartbeatSeconds": 4,
                "TimeoutSeconds": 30,
                "End": True,
            }
        },
    }


def test_a_callback_task_succeeds_with_what_the_handler_sends_back(engine: Engine) -> None:
    # Heartbeats every 0.5 s keep it alive past its 4 s HeartbeatSeconds (a margin for a busy machine,
    # where making the handler's client alone can take a second), then the token comes back.
    result = engine.run(callback(beats=12, answer=True), {"value": 7})
    assert (result.status, result.output) == ("SUCCEEDED", {"got": 7}), result.cause


def test_a_callback_task_without_heartbeats_fails_with_states_heartbeat_timeout(engine: Engine) -> None:
    result = engine.run(callback(beats=0, answer=False), {"value": 7})
    assert (result.status, result.error) == ("FAILED", "States.HeartbeatTimeout"), result.cause


def asl_run(folder: Path, definition: dict[str, Any], *options: str) -> tuple[int, dict[str, Any]]:
    """``cvpipe asl run`` in a fresh process, as a user runs it: exit code and printed summary."""
    (folder / "machine.asl.json").write_text(json.dumps(definition))
    done = subprocess.run(
        [sys.executable, "-m", "cvpipe", "asl", "run", str(folder / "machine.asl.json"), *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


SCORES_MACHINE = {
    "QueryLanguage": "JSONata",
    "StartAt": "Configure",
    "States": {
        "Configure": {
            "Type": "Pass",
            "Assign": {"bucket": "{% $states.input.bucket %}", "pass_mark": 50},
            "Next": "Grade",
        },
        "Grade": {
            "Type": "Map",
            "Label": "Grade",
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {
                    "InputType": "CSV",
                    "CSVHeaderLocation": "GIVEN",
                    "CSVHeaders": ["student", "score"],
                },
                "Arguments": {"Bucket": "{% $bucket %}", "Key": "exams/scores.csv"},
            },
            "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"pass_mark": "{% $pass_mark %}"}},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Judge",
                "States": {
                    "Judge": {
                        "Type": "Pass",
                        "Output": (
                            "{% $states.input.Items.{'student': student, "
                            "'passed': $number(score) >= $states.input.BatchInput.pass_mark} %}"
                        ),
                        "End": True,
                    }
                },
            },
            "ResultWriter": {
                "WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSONL"},
                "Resource": "arn:aws:states:::s3:putObject",
                "Arguments": {"Bucket": "{% $bucket %}", "Prefix": "grades"},
            },
            "Assign": {"manifest": "{% $states.result.ResultWriterDetails.Key %}"},
            "Output": "{% $states.result.ResultWriterDetails.Bucket %}",
            "Next": "Report",
        },
        "Report": {
            "Type": "Pass",
            "Output": {"bucket": "{% $states.input %}", "manifest": "{% $manifest %}"},
            "End": True,
        },
    },
}


def test_a_jsonata_distributed_map_over_a_headerless_csv_writes_flattened_json_lines(tmp_path: Path) -> None:
    # AWS guide, ItemReader (CSVHeaderLocation GIVEN: every row is data, keyed by CSVHeaders, values as
    # strings), ItemBatcher (Items and BatchInput) and ResultWriter (FLATTEN splices each child's array
    # of results; JSONL writes one per line, in files named .json).
    store = tmp_path / "store"
    (store / "school" / "exams").mkdir(parents=True)
    (store / "school" / "exams" / "scores.csv").write_text("ada,91\nbob,42\ncy,50\n")
    code, summary = asl_run(
        tmp_path, SCORES_MACHINE, "--store", str(store), "--input", '{"bucket": "school"}'
    )
    assert (code, summary["status"]) == (0, "SUCCEEDED"), summary
    manifest_key = summary["output"]["manifest"]
    assert summary["output"]["bucket"] == "school" and manifest_key.startswith("grades/")
    manifest = json.loads((store / "school" / manifest_key).read_text())
    (succeeded,) = manifest["ResultFiles"]["SUCCEEDED"]
    assert manifest["ResultFiles"]["FAILED"] == [] and succeeded["Key"].endswith("/SUCCEEDED_0.json")
    lines = (store / "school" / succeeded["Key"]).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"student": "ada", "passed": True},
        {"student": "bob", "passed": False},
        {"student": "cy", "passed": True},
    ]


def test_an_invalid_bucket_name_fails_the_item_reader_naming_it(tmp_path: Path) -> None:
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:listObjectsV2",
                    "Parameters": {"Bucket": "in"},
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "P",
                    "States": {"P": {"Type": "Pass", "End": True}},
                },
                "End": True,
            }
        },
    }
    code, summary = asl_run(tmp_path, definition, "--store", str(tmp_path / "store"))
    assert (code, summary["error"]) == (1, "States.ItemReaderFailed")
    assert "invalid bucket name 'in'" in summary["cause"]
