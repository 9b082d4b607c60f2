"""The S3 trigger: an upload under the trigger prefix starts exactly one execution, with the input
from its sidecar, validated before anything starts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from cvpipe.integrations.template import Template

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
BUCKET = "cvpipe-artifacts-test"
SIDECAR = {"dataset": {"target": "species"}, "cv": {"k": 3}, "tuning": {"max_candidates": 4}}


def rule_pattern() -> dict:
    """The EventBridge pattern of the template's trigger, resolved with this test's bucket name."""
    template = Template(ROOT / "template.yaml")
    events = template.resources["StartExecutionFunction"]["Properties"]["Events"]
    pattern = template.resolve(events["Upload"]["Properties"]["Pattern"])
    pattern["detail"]["bucket"]["name"] = [BUCKET]
    return pattern


@pytest.fixture
def aws(monkeypatch, start_execution):
    """Moto's S3 (EventBridge notifications on), the template's rule feeding an SQS queue that stands
    for the function, and a state machine; the handler's clients point at them."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="uploads")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events = boto3.client("events", region_name=REGION)
        events.put_rule(Name="uploads", EventPattern=json.dumps(rule_pattern()))
        events.put_targets(Rule="uploads", Targets=[{"Id": "starter", "Arn": queue_arn}])
        stepfunctions = boto3.client("stepfunctions", region_name=REGION)
        machine = stepfunctions.create_state_machine(
            name="cvpipe",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/cvpipe-states",
        )["stateMachineArn"]
        monkeypatch.setattr(start_execution.app, "s3", s3)
        monkeypatch.setattr(start_execution.app, "stepfunctions", stepfunctions)
        monkeypatch.setenv("STATE_MACHINE_ARN", machine)

        def delivered() -> list[dict]:
            """The events the rule delivered so far."""
            messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            found = [json.loads(message["Body"]) for message in messages]
            for event in found:  # moto spells the field eTag; S3 sends etag
                event["detail"]["object"]["etag"] = event["detail"]["object"].pop("eTag", "")
            return found

        yield {"s3": s3, "stepfunctions": stepfunctions, "machine": machine, "delivered": delivered}


def executions(aws) -> list[dict]:
    listed = aws["stepfunctions"].list_executions(stateMachineArn=aws["machine"])["executions"]
    return [aws["stepfunctions"].describe_execution(executionArn=e["executionArn"]) for e in listed]


def upload(aws, key: str, body: bytes) -> None:
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body)


def test_a_duplicated_event_starts_exactly_one_execution(aws, start_execution, lambda_context):
    upload(aws, "incoming/iris.csv.json", json.dumps(SIDECAR).encode())
    upload(aws, "incoming/iris.csv", b"a,species\n1,x\n")
    sidecar_event, data_event = aws["delivered"]()

    handler = start_execution.app.lambda_handler
    assert handler(sidecar_event, lambda_context)["status"] == "ignored"
    first = handler(data_event, lambda_context)
    second = handler(data_event, lambda_context)  # S3 delivers at least once

    # While it runs, Step Functions answers the same name and input with the same execution.
    assert first["status"] == second["status"] == "started"
    assert second["execution_arn"] == first["execution_arn"]
    (execution,) = executions(aws)
    assert execution["executionArn"] == first["execution_arn"]
    assert json.loads(execution["input"]) == {
        **SIDECAR,
        "dataset": {"target": "species", "uri": f"s3://{BUCKET}/incoming/iris.csv"},
    }


def test_an_event_for_a_started_object_counts_as_success(aws, start_execution, lambda_context):
    upload(aws, "incoming/iris.csv.json", json.dumps(SIDECAR).encode())
    upload(aws, "incoming/iris.csv", b"a,species\n1,x\n")
    data_event = aws["delivered"]()[-1]
    first = start_execution.app.lambda_handler(data_event, lambda_context)
    aws["stepfunctions"].stop_execution(executionArn=first["execution_arn"])

    # Once the execution has ended (or with another input), the name is refused: ExecutionAlreadyExists.
    again = start_execution.app.lambda_handler(data_event, lambda_context)

    assert again == {**first, "status": "duplicate"}
    assert len(executions(aws)) == 1


def test_keys_arrive_as_stored_not_url_encoded(aws, start_execution, lambda_context):
    """EventBridge's "Object Created" detail carries the key as stored (AWS's own samples show raw ':'),
    unlike S3's classic notifications (URL-encoded, '+' for a space): no decoding, or '+' and '%41'
    would name other objects."""
    key = "incoming/health check/2023-08-08T14:03:40.532432+v2 50%41.csv"
    upload(aws, key + ".json", json.dumps(SIDECAR).encode())
    upload(aws, key, b"a,species\n1,x\n")
    data_event = aws["delivered"]()[-1]
    assert data_event["detail"]["object"]["key"] == key

    result = start_execution.app.lambda_handler(data_event, lambda_context)

    assert result["status"] == "started"  # the sidecar was found under the raw key
    (execution,) = executions(aws)
    assert json.loads(execution["input"])["dataset"]["uri"] == f"s3://{BUCKET}/{key}"
    assert re.fullmatch(r"s3-2023-08-08T14-03-40-532432-v2-50-41-csv-[0-9a-f]{20}", result["execution_name"])


def test_a_new_version_of_the_object_is_a_new_run(aws, start_execution, lambda_context):
    upload(aws, "incoming/data.csv.json", json.dumps(SIDECAR).encode())
    upload(aws, "incoming/data.csv", b"a,species\n1,x\n")
    upload(aws, "incoming/data.csv", b"a,species\n2,y\n")
    data_events = [event for event in aws["delivered"]() if event["detail"]["object"]["key"].endswith(".csv")]

    results = [start_execution.app.lambda_handler(event, lambda_context) for event in data_events]

    assert [result["status"] for result in results] == ["started", "started"]
    assert len({result["execution_name"] for result in results}) == 2
    assert len(executions(aws)) == 2


def test_uploads_outside_the_prefix_are_not_delivered(aws):
    upload(aws, "runs/exec-1/jobs/model.tar.gz", b"x")
    upload(aws, "datasets/iris.csv", b"x")
    assert aws["delivered"]() == []


def test_a_sidecar_with_a_bad_field_is_refused_with_the_field_named(aws, start_execution, lambda_context):
    upload(aws, "incoming/iris.csv.json", json.dumps({**SIDECAR, "cv": {"k": 1}}).encode())
    upload(aws, "incoming/iris.csv", b"a,species\n1,x\n")
    data_event = aws["delivered"]()[-1]

    result = start_execution.app.lambda_handler(data_event, lambda_context)

    assert result["status"] == "refused"
    (problem,) = result["problems"]
    assert problem.startswith(f"s3://{BUCKET}/incoming/iris.csv.json: cv.k:")
    assert executions(aws) == []


def test_without_a_sidecar_the_defaults_apply_and_the_missing_target_is_named(
    aws, start_execution, lambda_context
):
    upload(aws, "incoming/iris.csv", b"a,species\n1,x\n")
    result = start_execution.app.lambda_handler(aws["delivered"]()[-1], lambda_context)

    assert result["status"] == "refused"
    assert any(
        "dataset.target" in problem and "no sidecar found" in problem for problem in result["problems"]
    )
    assert executions(aws) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must hold a JSON object"),
        (
            json.dumps({"dataset": {"uri": "s3://elsewhere/x.csv", "target": "y"}}).encode(),
            "dataset.uri: set by",
        ),
    ],
)
def test_malformed_sidecars_are_refused(start_execution, body, message):
    starter = start_execution.starter
    data = starter.Upload("bucket-a", "incoming/x.csv", "v1", "etag")
    with pytest.raises(starter.RefusedUpload, match=re.escape(message)):
        starter.build_input(data, starter.parse_sidecar(data, body))


def test_execution_names_are_valid_stable_and_distinct(start_execution):
    starter = start_execution.starter
    long_key = "incoming/" + "a very long file name with spaces and ünïcode " * 4 + ".csv"
    uploads = [
        starter.Upload("bucket-a", "incoming/iris.csv", "v1", "e1"),
        starter.Upload("bucket-a", "incoming/iris.csv", "v2", "e1"),  # another version
        starter.Upload("bucket-b", "incoming/iris.csv", "v1", "e1"),  # another bucket
        starter.Upload("bucket-a", "incoming/other/iris.csv", "v1", "e1"),  # same file name elsewhere
        starter.Upload("bucket-a", "incoming/iris.csv", None, '"e2"'),  # unversioned: the ETag
        starter.Upload("bucket-a", long_key, None, "e3"),
        starter.Upload("bucket-a", "incoming/%%%.csv", None, "e4"),
    ]
    names = [starter.execution_name(item) for item in uploads]

    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,80}", name) for name in names), names
    assert len(set(names)) == len(names)
    assert names == [starter.execution_name(item) for item in uploads]
    assert names[0].startswith("s3-iris-csv-")
    assert len(names[5]) == 80


def test_folder_markers_are_ignored(start_execution):
    starter = start_execution.starter
    assert starter.ignored_because(starter.Upload("b", "incoming/", None, "e"))
    assert starter.ignored_because(starter.Upload("b", "incoming/x.csv", None, "e")) is None
