"""Least privilege in the stack: every IAM statement of the template names the actions it needs on the
resources it touches, and checkov finds nothing but the documented exceptions."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvpipe.aws.executions import STAGING_PREFIX
from cvpipe.integrations.template import load_yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
# Services whose statements must name their actions and resources: the data, the jobs, the role.
GUARDED_PREFIXES = ("sagemaker:", "s3:", "iam:passrole")
# SAM policy templates are allowed only when they are scoped to one resource and grant no wildcard.
ALLOWED_POLICY_TEMPLATES = {"LambdaInvokePolicy"}
CHECKOV_VENV = ROOT / ".venv-checkov"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, statement) for every identity policy statement: IAM roles' inline policies and SAM
    resources' Policies."""
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                for i, statement in enumerate(_as_list(policy["PolicyDocument"]["Statement"])):
                    yield f"{name}.{policy['PolicyName']}[{i}]", statement
        elif resource["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            for j, policy in enumerate(_as_list(properties.get("Policies", []))):
                assert isinstance(policy, dict), f"{name}.Policies[{j}]: managed policy {policy!r}"
                if "Statement" in policy:
                    for i, statement in enumerate(_as_list(policy["Statement"])):
                        yield f"{name}.Policies[{j}][{i}]", statement
                else:
                    (template_name,) = policy
                    assert template_name in ALLOWED_POLICY_TEMPLATES, (
                        f"{name}.Policies[{j}]: SAM policy template {template_name} grants more than the "
                        "actions used; write the statement inline"
                    )


def problems(template: dict[str, Any]) -> list[str]:
    found = []
    for where, statement in statements(template):
        if statement.get("Effect") != "Allow":
            continue
        actions = [action.lower() for action in _as_list(statement["Action"])]
        resources = _as_list(statement["Resource"])
        found += [f"{where}: wildcard action {action}" for action in actions if "*" in action]
        guarded = [action for action in actions if action.startswith(GUARDED_PREFIXES)]
        if guarded and "*" in resources:
            found.append(f"{where}: {', '.join(guarded)} on every resource (*)")
    return found


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_yaml(TEMPLATE.read_text())


def test_no_statement_grants_wildcard_actions_or_every_resource(template):
    assert list(statements(template))
    assert problems(template) == []


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}, "wildcard action s3:*"),
        (
            {"Effect": "Allow", "Action": ["sagemaker:CreateTrainingJob"], "Resource": "*"},
            "on every resource",
        ),
        ({"Effect": "Allow", "Action": "iam:PassRole", "Resource": ["*"]}, "iam:passrole on every resource"),
        ({"Effect": "Allow", "Action": "ecr:Get*", "Resource": "arn:aws:ecr:x"}, "wildcard action ecr:get*"),
    ],
)
def test_the_check_finds_broad_statements(statement, problem):
    template = {
        "Resources": {
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Policies": [{"Statement": [statement]}]},
            }
        }
    }
    assert any(problem in found for found in problems(template))


def test_the_check_refuses_broad_policy_templates():
    template = {
        "Resources": {
            "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Policies": [{"S3CrudPolicy": {}}]}}
        }
    }
    with pytest.raises(AssertionError, match="S3CrudPolicy"):
        problems(template)


def test_only_sagemaker_of_this_account_assumes_the_job_role(template):
    trust = template["Resources"]["SageMakerExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def _actions_on(template: dict[str, Any], resource_name: str) -> dict[str, list[Any]]:
    """action -> the Resource values of the statements of ``resource_name`` granting it."""
    granted: dict[str, list[Any]] = {}
    for where, statement in statements(template):
        if where.startswith(resource_name + ".") and statement["Effect"] == "Allow":
            for action in _as_list(statement["Action"]):
                granted.setdefault(action, []).append(statement["Resource"])
    return granted


def test_sync_integrations_have_what_step_functions_needs(template):
    granted = _actions_on(template, "CrossValidationStateMachine")
    for action in ("Create", "Describe", "Stop"):
        assert f"sagemaker:{action}TrainingJob" in granted
        assert f"sagemaker:{action}ProcessingJob" in granted
    assert "sagemaker:ListTags" in granted
    assert {"events:PutTargets", "events:PutRule", "events:DescribeRule"} <= set(granted)


def test_writes_are_limited_to_the_runs_prefix(template):
    for machine_or_role in ("CrossValidationStateMachine", "SageMakerExecutionRole"):
        (resources,) = _actions_on(template, machine_or_role)["s3:PutObject"]
        assert resources == {"Fn::Sub": "${ArtifactBucket.Arn}/runs/*"}, machine_or_role


def test_jobs_pull_only_the_stacks_image_repository(template):
    granted = _actions_on(template, "SageMakerExecutionRole")
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
        assert granted[action] == [{"Fn::GetAtt": ["JobRepository", "Arn"]}], action


def _checkov() -> str:
    found = shutil.which("checkov", path=str(CHECKOV_VENV / "bin")) or shutil.which(
        "checkov", path=str(Path(sys.executable).parent)
    )
    if not found:
        pytest.fail("checkov is not installed; run `make test`, which installs it in .venv-checkov")
    return found


@pytest.mark.integration  # checkov, in an environment of its own: out of make test-fast
def test_checkov_passes_with_only_documented_skips(template):
    result = subprocess.run(
        [
            _checkov(),
            "--file",
            str(TEMPLATE),
            "--framework",
            "cloudformation",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=300,
    )
    report = json.loads(result.stdout)
    failed = [
        f"{check['check_id']} {check['resource']}: {check['check_name']}"
        for check in report["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0
    # Every skip says why, in the template next to the resource it excuses.
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "").split()) >= 5, f"{name}: skip {skip['id']} has no reason"
    skipped = {
        (check["check_id"], check["resource"].split(".", 1)[1])
        for check in report["results"]["skipped_checks"]
    }
    declared = {
        (skip["id"], name)
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    assert declared == skipped, f"skips that excuse nothing: {sorted(declared - skipped)}"


def test_the_trigger_prefix_excludes_the_prefixes_the_pipeline_writes(template):
    """Outputs under runs/ and datasets staged by `cvpipe start` must never start runs themselves."""
    pattern = re.compile(template["Parameters"]["TriggerPrefix"]["AllowedPattern"])
    assert pattern.match(template["Parameters"]["TriggerPrefix"]["Default"])
    assert pattern.match("uploads/team-a/")
    for refused in ("runs/", "datasets/", "runs/x/", "", "incoming"):
        assert not pattern.match(refused), refused
    assert f"{STAGING_PREFIX}/" == "datasets/"


# -- what the definition calls, the state machine's role may do -----------------------------------

# aws-sdk API names whose IAM action has another name.
IAM_ACTION_OF_API = {"s3:ListObjectsV2": "s3:ListBucket"}
# What a Distributed Map does besides its items' tasks (Step Functions' IAM guide for Distributed Map).
# A Distributed Map starts, describes and stops its child executions; redriving an execution redrives
# its Map Runs' unsuccessful children, with the state machine's role.
DISTRIBUTED_MAP_ACTIONS = {
    "states:StartExecution",
    "states:DescribeExecution",
    "states:StopExecution",
    "states:RedriveExecution",
}
# What SageMaker's .sync integrations need besides Create/Describe/Stop: tags on the jobs they start.
SYNC_EXTRAS = {"sagemaker:AddTags", "sagemaker:ListTags"}
RESULT_WRITER_ACTIONS = {
    "s3:PutObject",
    "s3:GetObject",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
}


def _all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _all_states(processor["States"])
        for branch in state.get("Branches", []):
            yield from _all_states(branch["States"])


def _api_action(resource: str) -> str:
    """``arn:aws:states:::aws-sdk:s3:getObject`` or ``arn:aws:states:::s3:getObject`` -> ``s3:GetObject``."""
    service, api = resource.removeprefix("arn:aws:states:::").removeprefix("aws-sdk:").split(":")[:2]
    api = api.split(".")[0]
    action = f"{service}:{api[0].upper()}{api[1:]}"
    return IAM_ACTION_OF_API.get(action, action)


def required_actions(definition: dict[str, Any]) -> dict[str, set[str]]:
    """IAM action (or ``lambda:${Placeholder}``) -> the states that need it."""
    needs: dict[str, set[str]] = {}
    for name, state in _all_states(definition["States"]):
        wanted: set[str] = set()
        resource = state.get("Resource", "")
        if state.get("Type") == "Task":
            if resource == "arn:aws:states:::lambda:invoke":
                arguments = state.get("Parameters") or state.get("Arguments") or {}
                wanted.add(f"lambda:{arguments['FunctionName']}")
            elif resource.startswith("arn:aws:states:::aws-sdk:") or resource.startswith(
                "arn:aws:states:::sagemaker:"
            ):
                wanted.add(_api_action(resource))
                if resource.endswith(".sync"):
                    noun = _api_action(resource).removeprefix("sagemaker:Create")
                    wanted |= {f"sagemaker:Describe{noun}", f"sagemaker:Stop{noun}"}
            else:
                pytest.fail(f"{name}: {resource}: add the IAM actions this integration needs to this test")
        processor = state.get("ItemProcessor", {})
        if processor.get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED":
            wanted |= DISTRIBUTED_MAP_ACTIONS
        if "ItemReader" in state:
            wanted.add(_api_action(state["ItemReader"]["Resource"]))
        if "ResultWriter" in state:
            wanted |= RESULT_WRITER_ACTIONS
        for action in wanted:
            needs.setdefault(action, set()).add(name)
    return needs


def test_the_state_machine_may_do_everything_its_definition_calls(template):
    """The local engine never answers AccessDenied: a call the role lacks would fail only on AWS."""
    machine = template["Resources"]["CrossValidationStateMachine"]["Properties"]
    definition = json.loads((ROOT / machine["DefinitionUri"]).read_text())
    granted = set(_actions_on(template, "CrossValidationStateMachine"))
    for policy in machine["Policies"]:
        if "LambdaInvokePolicy" in policy:
            function = policy["LambdaInvokePolicy"]["FunctionName"]["Ref"]
            granted |= {
                f"lambda:${{{placeholder}}}"
                for placeholder, value in machine["DefinitionSubstitutions"].items()
                if value == {"Fn::GetAtt": [function, "Arn"]}
            }

    needs = required_actions(definition)
    missing = {action: sorted(states) for action, states in needs.items() if action not in granted}
    unused = sorted(
        action
        for action in granted
        if action.startswith(("sagemaker:", "s3:", "states:"))
        and action not in needs
        and action not in SYNC_EXTRAS
    )

    assert needs, "no task found: the check reads nothing"
    assert not missing, f"actions the state machine's role lacks (action: states): {missing}"
    assert not unused, f"actions granted that no state uses: {unused}"


def test_the_check_finds_what_a_distributed_map_needs():
    definition = {
        "States": {
            "Each": {
                "Type": "Map",
                "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {}},
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Fit",
                    "States": {
                        "Fit": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
                        }
                    },
                },
                "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {}},
            }
        }
    }
    needs = required_actions(definition)
    assert (
        set(needs)
        == {
            "s3:ListBucket",
            "sagemaker:CreateTrainingJob",
            "sagemaker:DescribeTrainingJob",
            "sagemaker:StopTrainingJob",
        }
        | DISTRIBUTED_MAP_ACTIONS
        | RESULT_WRITER_ACTIONS
    )
    assert needs["sagemaker:CreateTrainingJob"] == {"Fit"}
