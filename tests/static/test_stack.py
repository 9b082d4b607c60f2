"""Static checks of the stack: the template and the definitions lint clean, placeholders match
their substitutions, and every AWS API call in a definition is valid for botocore's service model."""

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

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters

from cvpipe.asl import DefinitionError
from cvpipe.asl.validate import validate
from cvpipe.integrations.template import Template, state_machine_for, substitute

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DEFINITIONS = sorted((ROOT / "statemachine").glob("*.asl.json"))
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:]+)\}")

# Task resources this project may use, and the API operation each one calls.
SERVICE_OPERATIONS = {
    "arn:aws:states:::sagemaker:createProcessingJob.sync": ("sagemaker", "CreateProcessingJob"),
    "arn:aws:states:::sagemaker:createTrainingJob.sync": ("sagemaker", "CreateTrainingJob"),
    "arn:aws:states:::aws-sdk:sagemaker:createModelPackageGroup": ("sagemaker", "CreateModelPackageGroup"),
    "arn:aws:states:::aws-sdk:sagemaker:createModelPackage": ("sagemaker", "CreateModelPackage"),
    "arn:aws:states:::aws-sdk:s3:putObject": ("s3", "PutObject"),
    "arn:aws:states:::lambda:invoke": ("lambda", "Invoke"),
}


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; run `make test`, which installs it")
    return found


def _state_machines() -> list[dict[str, Any]]:
    template = Template(TEMPLATE).body
    return [
        resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::StateMachine"
    ]


def _task_states(states: dict[str, Any], where: str = "States") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        path = f"{where}.{name}"
        if state["Type"] == "Task":
            yield path, state
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from _task_states(state[key]["States"], f"{path}.{key}.States")
        for i, branch in enumerate(state.get("Branches", [])):
            yield from _task_states(branch["States"], f"{path}.Branches[{i}].States")


def test_template_lints_clean() -> None:
    result = subprocess.run(
        [_tool("cfn-lint"), str(TEMPLATE)],
        capture_output=True,
        text=True,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


VARIABLE = re.compile(r"(?<![$\w])\$([A-Za-z_][A-Za-z0-9_]*)")
"""A variable reference in a JSONPath path or intrinsic (``$config.run``), not ``$.x`` or ``$$.x``."""


UNKNOWN_TO_STATELINT = ("Assign", "Label")


def _path_field(key: str) -> bool:
    return key.endswith((".$", "Path")) or key == "Variable"


def for_statelint(value: Any, key: str = "") -> Any:
    """The definition as statelint can read it. statelint predates variables and the Distributed
    Map's ``Label``: it refuses ``Assign``, ``Label`` and ``$name`` references. Those two fields are
    left out (the engine's creation checks above cover them, and that each variable is assigned before
    it is read), and each ``$name`` is read as ``$.name``, so that statelint still checks every path
    and intrinsic around it."""
    if isinstance(value, dict):
        return {k: for_statelint(item, k) for k, item in value.items() if k not in UNKNOWN_TO_STATELINT}
    if isinstance(value, list):
        return [for_statelint(item, key) for item in value]
    if isinstance(value, str) and _path_field(key):
        return VARIABLE.sub(r"$.\1", value)
    return value


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda p: p.name)
def test_definition_lints_clean(definition: Path, tmp_path: Path) -> None:
    linted = tmp_path / definition.name
    linted.write_text(json.dumps(for_statelint(json.loads(definition.read_text()))))
    # Placeholders stand in Resource fields until deployment, so statelint's URI check is off.
    result = subprocess.run([_tool("statelint"), "--ignore=URI", str(linted)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_statelint_still_sees_paths_that_read_variables(tmp_path: Path) -> None:
    """Reading variables as paths keeps statelint's checks: a broken path that reads one is refused."""
    translated = for_statelint({"Assign": {"x": 1}, "Parameters": {"a.$": "States.Format('{}', $config.x)"}})
    assert translated == {"Parameters": {"a.$": "States.Format('{}', $.config.x)"}}
    broken = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Parameters": {"a.$": "$config..[x"}, "Assign": {"y": 1}, "End": True}
        },
    }
    linted = tmp_path / "broken.asl.json"
    linted.write_text(json.dumps(for_statelint(broken)))
    result = subprocess.run([_tool("statelint"), str(linted)], capture_output=True, text=True)
    assert result.returncode != 0 and "a.$" in result.stdout + result.stderr


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda p: p.name)
def test_definition_passes_the_engines_creation_checks(definition: Path) -> None:
    # What statelint does not know: JSONata fields and expressions, variables read before any state
    # assigns them, the bounds AWS checks at creation, the Distributed Map's fields.
    machine = state_machine_for(Template(TEMPLATE), definition)
    try:
        validate(json.loads(substitute(definition.read_text(), machine.substitutions)))
    except DefinitionError as refused:
        pytest.fail(f"{definition.name}:\n" + "\n".join(refused.problems))


def test_every_definition_belongs_to_a_state_machine() -> None:
    used = {(ROOT / sm["DefinitionUri"]).resolve() for sm in _state_machines()}
    assert set(DEFINITIONS) <= used, f"definitions no state machine deploys: {set(DEFINITIONS) - used}"


def test_placeholders_match_definition_substitutions() -> None:
    template = Template(TEMPLATE).body
    for machine in _state_machines():
        text = (ROOT / machine["DefinitionUri"]).read_text()
        placeholders = set(PLACEHOLDER.findall(text))
        substitutions = machine.get("DefinitionSubstitutions", {})
        assert placeholders == set(substitutions), (
            f"{machine['DefinitionUri']}: without a substitution: {sorted(placeholders - set(substitutions))}; "
            f"substituted but unused: {sorted(set(substitutions) - placeholders)}"
        )
        # cfn-lint does not look inside DefinitionSubstitutions: check what they reference exists.
        for name, value in substitutions.items():
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                logical_id, attribute = value["Fn::GetAtt"]
                assert logical_id in template["Resources"], f"{name}: no resource {logical_id}"
                assert attribute == "Arn", f"{name}: expected the Arn of {logical_id}"
            if isinstance(value, dict) and "Ref" in value:
                ref = value["Ref"]
                assert ref in template["Resources"] or ref in template.get("Parameters", {}), (
                    f"{name}: no {ref}"
                )


def _example(shape: Any) -> Any:
    """A smallest value of a botocore shape, standing in for a value only known at run time."""
    kind = shape.type_name
    if kind == "string":
        return shape.enum[0] if shape.enum else "x" * max(shape.metadata.get("min", 1), 1)
    if kind in ("integer", "long"):
        return max(shape.metadata.get("min", 1), 1)
    if kind in ("float", "double"):
        return float(max(shape.metadata.get("min", 1), 1))
    if kind == "boolean":
        return True
    if kind == "blob":
        return b"x"
    if kind == "timestamp":
        return 0
    if kind == "list":
        return [_example(shape.member)] * max(shape.metadata.get("min", 0), 1)
    if kind == "map":
        return {_example(shape.key): _example(shape.value)}
    return {name: _example(shape.members[name]) for name in shape.required_members}


def _concrete(parameters: Any, shape: Any, where: str) -> Any:
    """Parameters with every ``key.$`` replaced by an example value of that member's shape."""
    if isinstance(parameters, list):
        return [_concrete(item, shape.member, f"{where}[{i}]") for i, item in enumerate(parameters)]
    if not isinstance(parameters, dict) or shape.type_name != "structure":
        return parameters
    concrete = {}
    for key, value in parameters.items():
        name = key[:-2] if key.endswith(".$") else key
        assert name in shape.members, f"{where}.{name}: not a member of {shape.name}"
        member = shape.members[name]
        concrete[name] = (
            _example(member) if key.endswith(".$") else _concrete(value, member, f"{where}.{name}")
        )
    return concrete


def templates_assigned(states: dict[str, Any]) -> dict[str, Any]:
    """Variables that some state assigns an object template (``{"RoleArn": "...", "X.$": "$.x"}``),
    by name, nested states included."""
    found: dict[str, Any] = {}
    for state in states.values():
        for name, value in state.get("Assign", {}).items():
            if isinstance(value, dict):
                found[name] = value
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                found.update(templates_assigned(state[key]["States"]))
        for branch in state.get("Branches", []):
            found.update(templates_assigned(branch["States"]))
    return found


READ_VARIABLE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")


def with_variables_inlined(parameters: Any, templates: dict[str, Any]) -> Any:
    """Parameters with each ``"Key.$": "$name.a.b"`` that reads an assigned template replaced by
    ``"Key": <that part of the template>``, so that what a task takes from a variable is checked too."""
    if isinstance(parameters, list):
        return [with_variables_inlined(item, templates) for item in parameters]
    if not isinstance(parameters, dict):
        return parameters
    inlined = {}
    for key, value in parameters.items():
        match = READ_VARIABLE.match(value) if key.endswith(".$") and isinstance(value, str) else None
        if match and match.group(1) in templates:
            part: Any = templates[match.group(1)]
            for step in match.group(2).split(".")[1:]:
                if not isinstance(part, dict) or step not in part:
                    part = None  # a value only known at run time
                    break
                part = part[step]
            if part is not None:
                inlined[key[:-2]] = with_variables_inlined(part, templates)
                continue
        inlined[key] = with_variables_inlined(value, templates) if isinstance(value, dict | list) else value
    return inlined


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda p: p.name)
def test_service_task_parameters_match_botocore(definition: Path) -> None:
    session = botocore.session.get_session()
    # Placeholders filled as a deployment fills them (with the template's local values).
    machine = state_machine_for(Template(TEMPLATE), definition)
    states = json.loads(substitute(definition.read_text(), machine.substitutions))["States"]
    tasks = list(_task_states(states))
    templates = templates_assigned(states)
    assert tasks
    for where, state in tasks:
        resource = state["Resource"]
        assert resource in SERVICE_OPERATIONS, f"{where}: unknown or misspelt resource {resource}"
        service, operation = SERVICE_OPERATIONS[resource]
        if service == "lambda":
            assert set(state["Parameters"]) == {"FunctionName", "Payload"}, where
            continue
        input_shape = session.get_service_model(service).operation_model(operation).input_shape
        params = _concrete(with_variables_inlined(state["Parameters"], templates), input_shape, where)
        try:
            validate_parameters(params, input_shape)
        except ParamValidationError as error:
            pytest.fail(f"{where} ({operation}): {error}")


def test_parameters_taken_from_a_variable_are_checked_as_written_there() -> None:
    templates = {"job": {"RoleArn": "arn", "ResourceConfig": {"InstanceType.$": "$.type"}}}
    parameters = {"RoleArn.$": "$job.RoleArn", "ResourceConfig.$": "$job.ResourceConfig", "X.$": "$job.Y"}
    assert with_variables_inlined(parameters, templates) == {
        "RoleArn": "arn",
        "ResourceConfig": {"InstanceType.$": "$.type"},
        "X.$": "$job.Y",
    }


def test_the_botocore_check_catches_misspelt_and_missing_parameters() -> None:
    input_shape = (
        botocore.session.get_session()
        .get_service_model("sagemaker")
        .operation_model("CreateTrainingJob")
        .input_shape
    )
    with pytest.raises(AssertionError, match="TrainingJobNam: not a member"):
        _concrete({"TrainingJobNam.$": "$.name"}, input_shape, "States.Train")
    with pytest.raises(ParamValidationError, match="RoleArn"):
        validate_parameters(
            _concrete({"TrainingJobName.$": "$.name"}, input_shape, "States.Train"), input_shape
        )
