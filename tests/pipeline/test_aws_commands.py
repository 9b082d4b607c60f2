"""`cvpipe start`, `cvpipe watch` and `cvpipe models list --aws` against AWS: moto for the stack, S3,
Step Functions and the Model Registry; botocore's Stubber for an execution's history, which replays
the AWS-shaped history of a real local run, so that watching it must print what `cvpipe run` printed."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from cvpipe.aws import executions
from cvpipe.aws.clients import Aws
from cvpipe.cli import main
from cvpipe.pipeline import aws_commands
from cvpipe.pipeline.history_file import read_history
from cvpipe.pipeline.progress import ProgressReporter
from cvpipe.pipeline.run_command import exit_status, print_summary

from .conftest import IRIS, ROOT

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
STACK = "cvpipe-test"
SMALL = {
    "dataset": {"uri": str(IRIS), "target": "species"},
    "cv": {"k": 3},
    "model": {"search_space": {"C": {"values": [0.1, 1.0, 10.0]}}},
    "tuning": {"batch_size": 2},
    "registry": {"group": "aws-commands-test"},
}
BUCKET = "cvpipe-test-artifactbucket-1a2b3c"
VALID_DATASET = ["--dataset", f"s3://{BUCKET}/data/k.csv", "--set", "dataset.target=y"]


@pytest.fixture
def aws_account(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


@pytest.fixture
def deploy_stack(aws_account, monkeypatch):
    """A stack with the outputs of template.yaml: DescribeStacks stubbed (moto's CloudFormation needs
    extras this project does not install), its state machine and bucket in moto."""
    cloudformation = boto3.client("cloudformation")
    stubber = Stubber(cloudformation)
    real_client = Aws.client
    monkeypatch.setattr(
        Aws,
        "client",
        lambda self, service: cloudformation if service == "cloudformation" else real_client(self, service),
    )

    def deploy(
        with_state_machine: bool | None = True, parameters: dict[str, str] | None = None
    ) -> tuple[str, str]:
        if with_state_machine is None:
            stubber.add_client_error(
                "describe_stacks", "ValidationError", f"Stack with id {STACK} does not exist", 400
            )
            stubber.activate()
            return "", ""
        machine = boto3.client("stepfunctions").create_state_machine(
            name="CrossValidationStateMachine",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/states",
        )["stateMachineArn"]
        bucket = BUCKET
        boto3.client("s3").create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        outputs = [{"OutputKey": "ArtifactBucketName", "OutputValue": bucket}]
        if with_state_machine:
            outputs.append({"OutputKey": "StateMachineArn", "OutputValue": machine})
        stack = {
            "StackName": STACK,
            "CreationTime": datetime(2026, 1, 1),
            "StackStatus": "CREATE_COMPLETE",
            "Outputs": outputs,
            "Parameters": [
                {"ParameterKey": key, "ParameterValue": value} for key, value in (parameters or {}).items()
            ],
        }
        for _ in range(3):  # one DescribeStacks per command
            stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": STACK})
        stubber.activate()
        return machine, bucket

    return deploy


def test_start_uploads_a_local_dataset_and_prints_the_execution_arn(deploy_stack, monkeypatch, capsys):
    machine, bucket = deploy_stack()
    monkeypatch.chdir(ROOT)  # the demo input names examples/iris.csv relative to the project

    code = main(
        ["start", "--stack", STACK, "--input", "examples/demo.json", "--set", "cv.k=3", "--name", "demo-1"]
    )

    out, err = capsys.readouterr()
    assert code == 0, err
    stepfunctions = boto3.client("stepfunctions")
    (listed,) = stepfunctions.list_executions(stateMachineArn=machine)["executions"]
    assert out == listed["executionArn"] + "\n"
    sent = json.loads(stepfunctions.describe_execution(executionArn=listed["executionArn"])["input"])
    demo = json.loads((ROOT / "examples" / "demo.json").read_text())
    uri = sent["dataset"]["uri"]
    assert sent == {**demo, "cv": {**demo["cv"], "k": 3}, "dataset": {**demo["dataset"], "uri": uri}}
    assert uri.startswith(f"s3://{bucket}/datasets/") and uri.endswith("/iris.csv")
    key = uri.removeprefix(f"s3://{bucket}/")
    assert boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == IRIS.read_bytes()


def test_start_with_an_s3_dataset_sends_it_unchanged(deploy_stack, capsys):
    machine, bucket = deploy_stack()
    uri = f"s3://{bucket}/houses/train.csv"

    code = main(["start", "--stack", STACK, "--dataset", uri, "--set", "dataset.target=price"])

    assert code == 0, capsys.readouterr().err
    (listed,) = boto3.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    sent = json.loads(
        boto3.client("stepfunctions").describe_execution(executionArn=listed["executionArn"])["input"]
    )
    assert sent == {"dataset": {"uri": uri, "target": "price"}}
    assert listed["name"].startswith("cv-")


@pytest.mark.parametrize(
    ("arguments", "deployed", "message"),
    [
        (VALID_DATASET, None, f"stack {STACK} does not exist in {REGION}"),
        (VALID_DATASET, False, "has no state machine yet"),
        (["--dataset", "missing.csv"], True, "dataset.uri missing.csv: no such file"),
        ([], True, "give the input"),
        ([*VALID_DATASET, "--name", "a b"], True, "execution name 'a b'"),
        (
            ["--dataset", "s3://my-data/houses.csv", "--set", "dataset.target=price"],
            True,
            f"the stack's jobs read only its bucket {BUCKET}: copy the dataset there "
            f"(aws s3 cp s3://my-data/houses.csv s3://{BUCKET}/datasets/houses.csv)",
        ),
    ],
)
def test_start_refuses_with_what_to_do(deploy_stack, capsys, arguments, deployed, message):
    deploy_stack(with_state_machine=deployed)
    assert main(["start", "--stack", STACK, *arguments]) == 2
    assert message in capsys.readouterr().err


def test_start_refuses_a_bad_field_before_any_aws_call(monkeypatch, tmp_path, capsys):
    """PrepareInput's own validation runs here first: a bad field costs no AWS call at all."""
    calls: list[str] = []
    stubbers = []

    def stubbed_client(self, service):
        client = boto3.client(service, region_name=REGION)
        client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
        stubber = Stubber(client)  # nothing queued: any call would be refused
        stubber.activate()
        stubbers.append(stubber)
        return client

    monkeypatch.setattr(Aws, "client", stubbed_client)
    document = tmp_path / "input.json"
    document.write_text(json.dumps({**SMALL, "cv": {"k": 1}, "tuning": {"batch_size": "two"}}))

    code = main(["start", "--stack", STACK, "--input", str(document)])

    err = capsys.readouterr().err
    assert code == 2
    assert "invalid execution input (2 problems)" in err
    assert "  cv.k: " in err and "  tuning.batch_size: " in err
    assert "Traceback" not in err
    assert calls == []
    for stubber in stubbers:
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(("allowed", "code"), [("", 2), ("xgboost", 0)])
def test_a_package_the_input_names_is_checked_against_the_stacks_setting(deploy_stack, capsys, allowed, code):
    machine, _ = deploy_stack(parameters={"AllowedPackages": allowed, "MaxParallelJobs": "2"})
    arguments = [*VALID_DATASET, "--set", "model.estimator=xgboost.XGBClassifier"]

    assert main(["start", "--stack", STACK, *arguments]) == code

    err = capsys.readouterr().err
    started = boto3.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    if code:
        assert "  model.estimator: " in err and "AllowedPackages" in err
        assert started == []
    else:
        assert len(started) == 1, err


def test_a_taken_execution_name_is_reported(deploy_stack, capsys):
    deploy_stack()
    arguments = ["start", "--stack", STACK, *VALID_DATASET, "--name", "same"]
    assert main(arguments) == 0
    assert main([*arguments, "--set", "cv.k=3"]) == 2
    assert "execution name 'same' is taken" in capsys.readouterr().err


# -- watch ---------------------------------------------------------------------------------------


def aws_history(run_dir: Path) -> list[dict]:
    """The local run's history as GetExecutionHistory returns it through boto3 (datetimes)."""
    events = read_history(run_dir)
    for event in events:
        event["timestamp"] = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    return events


def stub_execution(stubber: Stubber, arn: str, run, history: list[dict], page: int) -> None:
    """Two polls: the first sees the history up to the middle of a page while the run is going, the
    second reads on from that page once the run has ended; then the final DescribeExecution."""
    described = {
        "executionArn": arn,
        "stateMachineArn": arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0],
        "name": run.name,
        "startDate": history[0]["timestamp"],
    }
    ended = {**described, "status": run.status}
    if run.status == "SUCCEEDED":
        ended["output"] = json.dumps(run.output)
    else:
        ended.update(error=run.error, cause=run.cause)
    pages = [history[i : i + page] for i in range(0, len(history), page)]
    middle = len(pages) // 2

    def respond(first: int, last_events: list[dict] | None = None) -> None:
        """Pages ``first``.. (the last one cut to ``last_events`` when given), page i fetched with token page-i."""
        shown = pages[first : middle + 1] if last_events is not None else pages[first:]
        for i, events in enumerate(shown, start=first):
            final = i == first + len(shown) - 1
            expected = {"executionArn": arn, "maxResults": page, **({"nextToken": f"page-{i}"} if i else {})}
            response = {"events": last_events if final and last_events is not None else events}
            if not final:
                response["nextToken"] = f"page-{i + 1}"
            stubber.add_response("get_execution_history", response, expected)

    stubber.add_response("describe_execution", {**described, "status": "RUNNING"}, {"executionArn": arn})
    respond(0, last_events=pages[middle][: max(1, len(pages[middle]) // 2)])
    stubber.add_response("describe_execution", ended, {"executionArn": arn})
    respond(middle)
    stubber.add_response("describe_execution", ended, {"executionArn": arn})


def watch_replay(run, monkeypatch, capsys, page: int = 40) -> tuple[int, str, str]:
    arn = f"arn:aws:states:{REGION}:123456789012:execution:CrossValidationStateMachine:{run.name}"
    client = boto3.client(
        "stepfunctions", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setattr(executions, "HISTORY_PAGE", page)
    monkeypatch.setattr(Aws, "client", lambda self, service: client)
    monkeypatch.setattr(executions.time, "sleep", lambda seconds: None)
    with Stubber(client) as stubber:
        stub_execution(stubber, arn, run, aws_history(run.run_dir), page)
        code = main(["watch", arn, "--poll", "0"])
        stubber.assert_no_pending_responses()
    out, err = capsys.readouterr()
    return code, out, err


def local_report(run) -> tuple[int, str, str]:
    """What `cvpipe run` printed for the same run: its summary, progress and exit code."""
    summary, progress = io.StringIO(), io.StringIO()
    print_summary(run, summary)
    reporter = ProgressReporter(progress)
    for event in read_history(run.run_dir):
        reporter(executions.event_from_aws(event))
    reporter.close()
    return exit_status(run, "cvpipe run"), summary.getvalue(), progress.getvalue()


def without_artifacts(summary: str) -> list[str]:
    return [line for line in summary.splitlines() if not line.startswith("artifacts")]


def test_watch_shows_the_progress_summary_and_exit_code_of_cvpipe_run(pipeline, monkeypatch, capsys):
    run = pipeline.run(copy.deepcopy(SMALL), name="aws-watch-ok")
    assert run.status == "SUCCEEDED", run.cause
    local_code, local_summary, local_progress = local_report(run)
    capsys.readouterr()

    code, out, err = watch_replay(run, monkeypatch, capsys)

    assert code == local_code == 0
    assert without_artifacts(out) == without_artifacts(local_summary)
    assert f"artifacts   s3://{pipeline.bucket}/runs/aws-watch-ok" in out
    assert err == local_progress
    assert "round 2: fold jobs 9/9, best so far" in err


def test_watch_of_a_refused_input_exits_as_cvpipe_run_does(pipeline, monkeypatch, capsys):
    run = pipeline.run({**copy.deepcopy(SMALL), "cv": {"k": 1}}, name="aws-watch-refused")
    assert run.status == "FAILED"
    local_code, local_summary, _ = local_report(run)
    capsys.readouterr()

    code, out, err = watch_replay(run, monkeypatch, capsys)

    assert code == local_code == 2
    assert without_artifacts(out) == without_artifacts(local_summary)
    assert "cvpipe watch: execution FAILED: InvalidInputError:" in err
    assert "cv.k" in err


def test_watch_refuses_what_is_not_an_execution_arn(capsys):
    assert main(["watch", "arn:aws:states:eu-west-1:123456789012:stateMachine:cvpipe"]) == 2
    assert "is not an execution ARN" in capsys.readouterr().err


# -- models list --aws ---------------------------------------------------------------------------


def test_models_list_aws_reads_the_sagemaker_registry(aws_account, capsys):
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName="houses")
    for mean in ("0.81", "0.84"):
        sagemaker.create_model_package(
            ModelPackageGroupName="houses",
            ModelApprovalStatus="PendingManualApproval",
            CustomerMetadataProperties={
                "metric": "r2",
                "cv_mean": mean,
                "cv_std": "0.02",
                "estimator": "Ridge",
                "execution": f"run-{mean}",
            },
        )

    assert main(["models", "list", "--aws", "--group", "houses", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["model_packages"]

    assert [(row["group"], row["version"], row["cv_mean"], row["execution"]) for row in rows] == [
        ("houses", 2, 0.84, "run-0.84"),
        ("houses", 1, 0.81, "run-0.81"),
    ]
    assert all(row["arn"].startswith("arn:aws:sagemaker:") and row["created"] for row in rows)
    assert main(["models", "list", "--aws"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["GROUP", "VER", "APPROVAL"]
    assert len(table) == 3


def test_models_list_aws_without_credentials_says_what_to_do(monkeypatch, capsys, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["models", "list", "--aws", "--region", REGION]) == 2
    assert "no AWS credentials" in capsys.readouterr().err


def test_local_commands_do_not_import_boto3():
    code = "import sys, cvpipe.cli; cvpipe.cli.build_parser(); print('boto3' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "False\n"
    )
    assert aws_commands.EXECUTION_ARN.match(
        "arn:aws:states:eu-west-1:123456789012:execution:CrossValidationStateMachine:cv-1"
    )


def test_a_local_run_starts_only_the_functions_the_state_machine_invokes(pipeline):
    """The S3 trigger's function runs on AWS only: no local environment is spent on it."""
    assert "StartExecutionFunction" not in pipeline.functions.functions
    assert set(pipeline.functions.functions) == {
        "PrepareInputFunction",
        "ProposeCandidatesFunction",
        "AggregateScoresFunction",
        "BuildRegistrationFunction",
    }


# -- start --redrive ------------------------------------------------------------------------------

REDRIVEN = f"arn:aws:states:{REGION}:123456789012:execution:CrossValidationStateMachine:cv-20260101-a1b2c3"


def stubbed_stepfunctions(monkeypatch) -> Stubber:
    client = boto3.client(
        "stepfunctions", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setattr(Aws, "client", lambda self, service: client)
    return Stubber(client)


def test_start_redrive_calls_redrive_execution_and_prints_the_arn(monkeypatch, capsys):
    with stubbed_stepfunctions(monkeypatch) as stubber:
        stubber.add_response(
            "redrive_execution",
            {"redriveDate": datetime(2026, 1, 1)},
            {"executionArn": REDRIVEN},
        )
        assert main(["start", "--redrive", REDRIVEN]) == 0
        stubber.assert_no_pending_responses()
    assert capsys.readouterr().out.strip() == REDRIVEN


def test_start_redrive_of_an_execution_that_cannot_be_redriven_says_why(monkeypatch, capsys):
    with stubbed_stepfunctions(monkeypatch) as stubber:
        stubber.add_client_error(
            "redrive_execution", "ExecutionNotRedrivable", "Execution has already succeeded", 400
        )
        assert main(["start", "--redrive", REDRIVEN]) == 2
    err = capsys.readouterr().err
    assert "cannot be redriven (ExecutionNotRedrivable: Execution has already succeeded)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--redrive", REDRIVEN, "--stack", STACK], "--redrive continues an execution with its own input"),
        (["--redrive", "cv-20260101-a1b2c3"], "is not an execution ARN"),
        (["--dataset", "s3://b/k.csv"], "give the deployed stack: --stack NAME"),
    ],
)
def test_start_redrive_refuses_with_what_to_do(capsys, arguments, message):
    assert main(["start", *arguments]) == 2
    assert message in capsys.readouterr().err
