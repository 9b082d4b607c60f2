"""`cvpipe asl run`: one JSON object on stdout, exit codes, clear messages for bad arguments."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cvpipe.commands import asl

pytestmark = pytest.mark.integration

# Only the `asl` command is wired here, so these tests do not depend on the other commands' modules.
LAUNCHER = """
import argparse, sys
from cvpipe.commands import asl
parser = argparse.ArgumentParser(prog="cvpipe")
asl.add_parser(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args()
sys.exit(args.handler(args))
"""

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Noisy:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/noisy
      Handler: app.lambda_handler
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: machine.asl.json
      DefinitionSubstitutions:
        NoisyArn: !GetAtt Noisy.Arn
"""

NOISY_HANDLER = """\
import logging, sys
def lambda_handler(event, context):
    print("handler chatter on stdout")
    sys.stdout.flush()
    logging.getLogger().warning("a log line")
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"doubled": event["n"] * 2}
"""

DEFINITION = {
    "StartAt": "Call",
    "States": {
        "Call": {"Type": "Task", "Resource": "${NoisyArn}", "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 3600, "End": True},
    },
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "functions" / "noisy").mkdir(parents=True)
    (tmp_path / "functions" / "noisy" / "app.py").write_text(NOISY_HANDLER)
    (tmp_path / "machine.asl.json").write_text(json.dumps(DEFINITION))
    return tmp_path


def cvpipe(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LAUNCHER, *arguments], capture_output=True, text=True, timeout=60
    )


def test_stdout_is_exactly_one_json_object_despite_handler_output(project: Path) -> None:
    done = cvpipe(
        "asl",
        "run",
        str(project / "machine.asl.json"),
        "--template",
        str(project / "template.yaml"),
        "--input",
        '{"n": 21}',
        "--virtual-clock",
        "--name",
        "cli-test",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "status": "SUCCEEDED",
        "output": {"doubled": 42},
        "error": None,
        "cause": None,
    }
    assert "handler chatter on stdout" in done.stderr


def test_a_failed_execution_exits_1_with_its_error(project: Path) -> None:
    (project / "input.json").write_text('{"n": 1, "fail": true}')
    done = cvpipe(
        "asl",
        "run",
        str(project / "machine.asl.json"),
        "--template",
        str(project / "template.yaml"),
        "--input",
        str(project / "input.json"),
        "--virtual-clock",
    )
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert (summary["status"], summary["output"], summary["error"]) == ("FAILED", None, "RuntimeError")
    assert json.loads(summary["cause"])["errorMessage"] == "asked to fail"


def run_in_process(*arguments: str) -> int:
    parser = argparse.ArgumentParser(prog="cvpipe")
    asl.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(arguments))
    return args.handler(args)


def test_an_invalid_definition_exits_2_with_the_problems_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.json").write_text(
        json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}}})
    )
    assert run_in_process("asl", "run", str(tmp_path / "bad.json")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "States.A: Next 'B' does not exist" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("{not json", "--input '{not json' is neither JSON text nor an existing file"),
        ("missing-file.json", "--input 'missing-file.json' is neither JSON text nor an existing file"),
    ],
)
def test_bad_input_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argument: str, message: str
) -> None:
    (tmp_path / "ok.json").write_text(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}))
    assert run_in_process("asl", "run", str(tmp_path / "ok.json"), "--input", argument) == 2
    assert message in capsys.readouterr().err


def test_an_input_file_that_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.json").write_text(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}))
    (tmp_path / "input.json").write_text("nope")
    assert (
        run_in_process("asl", "run", str(tmp_path / "ok.json"), "--input", str(tmp_path / "input.json")) == 2
    )
    assert f"--input file {tmp_path / 'input.json'} is not JSON" in capsys.readouterr().err


def test_placeholders_without_a_template_exit_2_naming_them(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_in_process("asl", "run", str(project / "machine.asl.json")) == 2
    assert "${NoisyArn}" in capsys.readouterr().err


def test_a_missing_definition_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_in_process("asl", "run", str(tmp_path / "nowhere.json")) == 2
    assert "cannot read the definition" in capsys.readouterr().err


RATINGS_MACHINE = {
    "QueryLanguage": "JSONata",
    "StartAt": "Configure",
    "States": {
        "Configure": {
            "Type": "Pass",
            "Assign": {"bucket": "{% $states.input.bucket %}", "threshold": 4},
            "Next": "Ratings",
        },
        "Ratings": {
            "Type": "Map",
            "ItemReader": {
                "Resource": "arn:aws:states:::s3:getObject",
                "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
                "Arguments": {"Bucket": "{% $bucket %}", "Key": "data/ratings.csv"},
            },
            "ItemSelector": {
                "movie": "{% $states.context.Map.Item.Value.movieId %}",
                "rating": "{% $number($states.context.Map.Item.Value.rating) %}",
                "threshold": "{% $threshold %}",
            },
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Judge",
                "States": {
                    "Judge": {
                        "Type": "Pass",
                        "Output": {
                            "movie": "{% $states.input.movie %}",
                            "liked": "{% $states.input.rating >= $states.input.threshold %}",
                        },
                        "End": True,
                    }
                },
            },
            "Assign": {"liked": "{% $states.result[liked].movie %}"},
            "Output": "{% $count($states.result) %}",
            "Next": "Report",
        },
        "Report": {
            "Type": "Pass",
            "Output": {"rows": "{% $states.input %}", "liked": "{% $liked %}"},
            "End": True,
        },
    },
}


def test_jsonata_variables_and_a_distributed_map_over_a_csv_in_the_store(tmp_path: Path) -> None:
    # CSV rows reach the children as objects of strings keyed by the header row (AWS guide, ItemReader).
    store = tmp_path / "store"
    (store / "ratings-bucket" / "data").mkdir(parents=True)
    (store / "ratings-bucket" / "data" / "ratings.csv").write_text(
        "rating,movieId,userId\n3.5,307,1\n4,481,1\n5,1091,2\n"
    )
    (tmp_path / "ratings.asl.json").write_text(json.dumps(RATINGS_MACHINE))
    done = cvpipe(
        "asl",
        "run",
        str(tmp_path / "ratings.asl.json"),
        "--store",
        str(store),
        "--input",
        '{"bucket": "ratings-bucket"}',
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["output"] == {"rows": 3, "liked": ["481", "1091"]}


def test_a_nested_execution_of_a_named_definition(tmp_path: Path) -> None:
    child = {
        "StartAt": "Double",
        "States": {
            "Double": {
                "Type": "Pass",
                "QueryLanguage": "JSONata",
                "Output": "{% $states.input.n * 2 %}",
                "End": True,
            }
        },
    }
    parent = {
        "StartAt": "Start",
        "States": {
            "Start": {
                "Type": "Task",
                "Resource": "arn:aws:states:::states:startExecution.sync:2",
                "Parameters": {
                    "StateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:Child",
                    "Input.$": "$",
                },
                "OutputPath": "$.Output",
                "End": True,
            }
        },
    }
    (tmp_path / "child.asl.json").write_text(json.dumps(child))
    (tmp_path / "parent.asl.json").write_text(json.dumps(parent))
    done = cvpipe(
        "asl",
        "run",
        str(tmp_path / "parent.asl.json"),
        "--state-machine",
        f"Child={tmp_path / 'child.asl.json'}",
        "--input",
        '{"n": 5}',
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == 10
