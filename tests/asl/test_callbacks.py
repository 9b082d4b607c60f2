"""Callback tasks (.waitForTaskToken) answered through the engine's API, and HeartbeatSeconds.

AWS guide, "Wait for a Callback with Task Token" (docs.aws.amazon.com/step-functions/latest/dg/
connect-to-resource.html#connect-wait-token): the task passes $$.Task.Token on, pauses until
SendTaskSuccess or SendTaskFailure names the token, and fails with States.HeartbeatTimeout when no
SendTaskHeartbeat arrives within HeartbeatSeconds; a token of an ended task is refused (TaskTimedOut),
an unknown one is InvalidToken.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from cvpipe.asl import DefinitionError, Engine, RealClock, TaskRequest, TokenError
from cvpipe.asl.validate import validate

from .helpers import machine, registry

pytestmark = pytest.mark.unit

PATIENCE = 10


def callback_state(**fields: Any) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"MessageBody": {"token.$": "$$.Task.Token", "n.$": "$.n"}},
        "End": True,
        **fields,
    }


def start(handler: Any, state: dict[str, Any], data: Any) -> tuple[Engine, Any]:
    engine = Engine(registry({"arn:aws:states:::sqs:sendMessage": handler}), RealClock())
    return engine, engine.start(machine({"Ask": state}), data)


def test_the_token_sent_back_through_the_api_completes_the_task() -> None:
    sent: list[dict[str, Any]] = []
    handed = threading.Event()

    def send_message(request: TaskRequest) -> Any:
        sent.append(request.parameters["MessageBody"])
        handed.set()
        return {"MessageId": "1"}

    engine, execution = start(send_message, callback_state(ResultPath="$.answer"), {"n": 3})
    assert handed.wait(PATIENCE)
    token = sent[0]["token"]
    with pytest.raises(TokenError) as bad:
        engine.send_task_success(token, "not json")
    assert bad.value.code == "InvalidOutput"
    engine.send_task_heartbeat(token)
    engine.send_task_success(token, json.dumps({"doubled": sent[0]["n"] * 2}))
    result = execution.wait(PATIENCE)
    assert (result.status, result.output) == ("SUCCEEDED", {"n": 3, "answer": {"doubled": 6}})
    types = [event.type for event in result.history]
    assert types.index("TaskStarted") < types.index("TaskSubmitted") < types.index("TaskSucceeded")
    with pytest.raises(TokenError) as late:
        engine.send_task_success(token, "{}")
    assert late.value.code == "TaskTimedOut"  # the task has ended: its token is no longer valid
    with pytest.raises(TokenError) as unknown:
        engine.send_task_failure("nobody's token", "E", "c")
    assert unknown.value.code == "InvalidToken"


def test_send_task_failure_fails_the_task_with_its_error_which_catch_can_name() -> None:
    def send_message(request: TaskRequest) -> Any:
        engine.send_task_failure(request.parameters["MessageBody"]["token"], "Review.Rejected", "no")
        return {}

    state = callback_state(Catch=[{"ErrorEquals": ["Review.Rejected"], "Next": "Rejected"}])
    del state["End"]
    state["Next"] = "Rejected"
    engine = Engine(registry({"arn:aws:states:::sqs:sendMessage": send_message}), RealClock())
    definition = machine({"Ask": state, "Rejected": {"Type": "Pass", "End": True}})
    result = engine.run(definition, {"n": 1})
    assert result.output == {"Error": "Review.Rejected", "Cause": "no"}


def test_without_heartbeats_the_task_fails_with_heartbeat_timeout() -> None:
    _, execution = start(lambda request: {}, callback_state(HeartbeatSeconds=1, TimeoutSeconds=60), {"n": 1})
    result = execution.wait(PATIENCE)
    assert (result.status, result.error) == ("FAILED", "States.HeartbeatTimeout")
    assert result.history[-2].type == "TaskTimedOut"
    assert result.history[-2].details["error"] == "States.HeartbeatTimeout"


def test_a_callback_task_must_pass_its_token_on() -> None:
    # Step Functions refuses a .waitForTaskToken task whose Parameters do not reference $$.Task.Token.
    state = callback_state()
    state["Parameters"] = {"MessageBody": {"n.$": "$.n"}}
    with pytest.raises(DefinitionError, match=r"reference \$\$\.Task\.Token in Parameters"):
        validate(machine({"Ask": state}))
    jsonata = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Arguments": {"MessageBody": "{% $states.context.Task.Token %}"},
        "End": True,
    }
    validate(machine({"Ask": jsonata}, QueryLanguage="JSONata"))


def test_a_jsonata_callback_task_reads_the_token_from_states_context() -> None:
    received: list[str] = []

    def send_message(request: TaskRequest) -> Any:
        received.append(request.parameters["token"])
        engine.send_task_success(request.parameters["token"], json.dumps({"ok": True}))
        return {}

    engine = Engine(registry({"arn:aws:states:::sqs:sendMessage": send_message}), RealClock())
    state = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Arguments": {"token": "{% $states.context.Task.Token %}"},
        "Output": "{% $states.result.ok %}",
        "End": True,
    }
    result = engine.run(machine({"Ask": state}, QueryLanguage="JSONata"), {})
    assert (result.status, result.output) == ("SUCCEEDED", True) and len(received[0]) > 100
