"""The Lambda integration against small handler folders and a tiny template.yaml."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from cvpipe.asl import Engine, ExecutionResult, TaskRegistry, VirtualClock
from cvpipe.integrations.lambda_ import register_lambda
from cvpipe.integrations.template import Template

pytestmark = pytest.mark.integration

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Timeout: 20
    Environment:
      Variables:
        FROM_GLOBALS: g
Resources:
  ArtifactBucket:
    Type: AWS::S3::Bucket
  Echo:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/echo
      Handler: app.lambda_handler
      Environment:
        Variables:
          ARTIFACT_BUCKET: !Ref ArtifactBucket
  Other:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/other
      Handler: app.lambda_handler
  Broken:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/broken
      Handler: app.lambda_handler
"""

FILES = {
    "functions/echo/helpers.py": 'OWNER = "echo"\n',
    "functions/echo/app.py": """
        import os
        import helpers

        def lambda_handler(event, context):
            event["mutated"] = True
            if event.get("raise"):
                raise InvalidInputError("field 'x' is missing: add it")
            if event.get("unserialisable"):
                return {1, 2}
            return {
                "event": event,
                "helper": helpers.OWNER,
                "env": {key: os.environ.get(key) for key in (
                    "ARTIFACT_BUCKET", "FROM_GLOBALS", "POWERTOOLS_TRACE_DISABLED",
                    "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION")},
                "context": {
                    "function_name": context.function_name,
                    "function_version": context.function_version,
                    "invoked_function_arn": context.invoked_function_arn,
                    "memory_limit_in_mb": context.memory_limit_in_mb,
                    "log_group_name": context.log_group_name,
                    "request_id": context.aws_request_id,
                    "remaining": context.get_remaining_time_in_millis(),
                },
            }

        class InvalidInputError(ValueError):
            pass
    """,
    "functions/other/helpers.py": 'OWNER = "other"\n',
    "functions/other/app.py": """
        import helpers

        def lambda_handler(event, context):
            import late_sibling  # imported while running, from the function's own folder
            return {"helper": helpers.OWNER, "late": late_sibling.VALUE}
    """,
    "functions/other/late_sibling.py": "VALUE = 42\n",
    "functions/broken/app.py": "import not_a_module_anywhere\n",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(dedent(text))
    return tmp_path


def run_task(project: Path, state: dict[str, Any], data: Any = None) -> ExecutionResult:
    registry = TaskRegistry()
    register_lambda(registry, Template(project / "template.yaml").functions(), project)
    definition = {"StartAt": "T", "States": {"T": {"Type": "Task", "End": True, **state}}}
    return Engine(registry, VirtualClock()).run(definition, data)


def invoke(function_name: str, payload: Any = None) -> dict[str, Any]:
    return {
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function_name, "Payload": payload or {}},
    }


def test_lambda_invoke_result_shape_context_and_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARTIFACT_BUCKET", raising=False)
    result = run_task(project, invoke("Echo", {"x.$": "$.x"}), {"x": 1})
    assert result.status == "SUCCEEDED", result.cause
    output = result.output
    assert (output["ExecutedVersion"], output["StatusCode"]) == ("$LATEST", 200)
    assert output["SdkHttpMetadata"]["HttpStatusCode"] == 200
    payload = output["Payload"]
    assert payload["event"] == {"x": 1, "mutated": True}
    assert payload["helper"] == "echo"
    assert payload["env"] == {
        "ARTIFACT_BUCKET": "cvpipe-local-artifacts",
        "FROM_GLOBALS": "g",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "Echo",
        "AWS_REGION": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    context = payload["context"]
    assert context["function_name"] == "Echo" and context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"].endswith(":000000000000:function:Echo")
    assert context["memory_limit_in_mb"] == 128 and context["log_group_name"] == "/aws/lambda/Echo"
    assert context["request_id"] == output["SdkResponseMetadata"]["RequestId"]
    assert 0 < context["remaining"] <= 20_000
    assert "ARTIFACT_BUCKET" not in os.environ  # the function's environment is only set while it runs


@pytest.mark.parametrize(
    "function_name",
    [
        "Echo",
        "arn:aws:lambda:us-east-1:000000000000:function:Echo",
        "arn:aws:lambda:us-east-1:000000000000:function:Echo:$LATEST",
        "Echo:live",
    ],
)
def test_function_name_forms(project: Path, function_name: str) -> None:
    assert run_task(project, invoke(function_name)).output["Payload"]["helper"] == "echo"


def test_a_function_arn_as_resource_returns_the_handler_result(project: Path) -> None:
    state = {"Resource": "arn:aws:lambda:us-east-1:000000000000:function:Echo", "ResultPath": "$.result"}
    result = run_task(project, state, {"y": 2})
    assert result.output["y"] == 2 and "mutated" not in result.output  # the handler got a copy
    assert result.output["result"]["event"] == {"y": 2, "mutated": True}


def test_sibling_modules_do_not_leak_between_functions(project: Path) -> None:
    registry = TaskRegistry()
    register_lambda(registry, Template(project / "template.yaml").functions(), project)
    states = {
        "A": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "Echo"},
            "ResultSelector": {"h.$": "$.Payload.helper"},
            "ResultPath": "$.a",
            "Next": "B",
        },
        "B": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "Other"},
            "ResultSelector": {"h.$": "$.Payload.helper", "late.$": "$.Payload.late"},
            "ResultPath": "$.b",
            "Next": "C",
        },
        "C": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "Echo"},
            "ResultSelector": {"h.$": "$.Payload.helper"},
            "ResultPath": "$.c",
            "End": True,
        },
    }
    result = Engine(registry, VirtualClock()).run({"StartAt": "A", "States": states}, {})
    assert result.output == {"a": {"h": "echo"}, "b": {"h": "other", "late": 42}, "c": {"h": "echo"}}
    assert "helpers" not in sys.modules and "late_sibling" not in sys.modules


def test_a_raising_handler_fails_with_its_exception_name_and_lambda_error_cause(project: Path) -> None:
    result = run_task(project, invoke("Echo", {"raise": True}))
    assert (result.status, result.error) == ("FAILED", "InvalidInputError")
    cause = json.loads(result.cause)
    assert cause["errorType"] == "InvalidInputError"
    assert cause["errorMessage"] == "field 'x' is missing: add it"
    assert isinstance(cause["stackTrace"], list) and "lambda_handler" in cause["stackTrace"][0]
    assert "requestId" in cause


def test_the_exception_name_can_be_caught(project: Path) -> None:
    state = {
        **invoke("Echo", {"raise": True}),
        "Catch": [{"ErrorEquals": ["InvalidInputError"], "ResultPath": "$.error", "Next": "Done"}],
    }
    registry = TaskRegistry()
    register_lambda(registry, Template(project / "template.yaml").functions(), project)
    definition = {
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Next": "Done", **state}, "Done": {"Type": "Succeed"}},
    }
    result = Engine(registry, VirtualClock()).run(definition, {})
    assert result.output["error"]["Error"] == "InvalidInputError"


def test_a_non_json_return_is_a_marshal_error(project: Path) -> None:
    result = run_task(project, invoke("Echo", {"unserialisable": True}))
    assert result.error == "Runtime.MarshalError"
    assert json.loads(result.cause)["errorMessage"].startswith("Unable to marshal response:")


def test_an_import_failure_is_reported_as_the_python_runtime_does(project: Path) -> None:
    result = run_task(project, invoke("Broken"))
    assert result.error == "Runtime.ImportModuleError"
    assert "Unable to import module 'app'" in json.loads(result.cause)["errorMessage"]


def test_an_unknown_function_is_a_runtime_error_naming_it(project: Path) -> None:
    result = run_task(project, {"Resource": "arn:aws:lambda:us-east-1:000000000000:function:Nope"})
    assert result.error == "States.Runtime"
    assert "'arn:aws:lambda:us-east-1:000000000000:function:Nope'" in result.cause and "Echo" in result.cause


LAYERED = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Layers:
      - !Ref Built
Resources:
  Built:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/built/
    Metadata:
      BuildMethod: python3.12
  Zipped:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layers/zipped/
  Uses:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/uses
      Handler: app.lambda_handler
      Layers:
        - !Ref Zipped
        - arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:7
"""

LAYERED_FILES = {
    "layers/built/from_built.py": 'WHERE = "built"\n',
    "layers/built/shadowed.py": 'WHERE = "layer"\n',
    "layers/zipped/python/from_zipped.py": 'WHERE = "zipped"\n',
    "functions/uses/shadowed.py": 'WHERE = "function"\n',
    "functions/uses/app.py": """
        import from_built
        import from_zipped
        import shadowed

        def lambda_handler(event, context):
            return [from_built.WHERE, from_zipped.WHERE, shadowed.WHERE]
    """,
}


def test_layers_are_on_the_path_after_the_function_folder(tmp_path: Path) -> None:
    # A layer that sam build builds (a Python BuildMethod) is its folder in /opt/python; one zipped as
    # it is brings its python/ folder. The function's own modules come first, as /var/task does.
    (tmp_path / "template.yaml").write_text(LAYERED)
    for name, text in LAYERED_FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(dedent(text))
    result = run_task(tmp_path, invoke("Uses"))
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["Payload"] == ["built", "zipped", "function"]
