"""The SAM template, read locally: its state machines, their DefinitionSubstitutions, its functions.

CloudFormation short tags (``!Ref``, ``!GetAtt``, ``!Sub``, ...) load as their long forms
(``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``), and ``Template.resolve`` evaluates them with local
values: ARNs in the real format in the local account, parameter defaults, local bucket names.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import local_aws

STATE_MACHINE = "AWS::Serverless::StateMachine"
FUNCTIONS = ("AWS::Serverless::Function", "AWS::Lambda::Function")
LAYER = "AWS::Serverless::LayerVersion"
BUCKETS = ("AWS::S3::Bucket",)
LOCAL_BUCKETS = {"ArtifactBucket": "cvpipe-local-artifacts"}
STACK_NAME = "cvpipe-local"
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


class TemplateError(ValueError):
    """The template cannot be read or resolved locally; the message names what is missing."""


class _CloudFormationLoader(yaml.SafeLoader):
    """A SafeLoader that turns CloudFormation short tags into their long forms."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)  # type: ignore[arg-type]  # the remaining kind: a scalar
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _construct_tag)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_CloudFormationLoader)  # a SafeLoader subclass


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    definition_uri: Path
    """Absolute path of the definition file."""
    substitutions: dict[str, str]


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_uri: Path
    """Absolute path of the function's code folder."""
    handler: str
    environment: dict[str, str]
    timeout: int
    memory_size: int
    layers: tuple[Path, ...] = ()
    """Absolute paths of what the function's layers put under /opt/python, in the template's order."""


class Template:
    """A loaded ``template.yaml``; ``parameters`` override the Parameters' Defaults."""

    def __init__(
        self, path: Path | str, parameters: dict[str, str] | None = None, stack_name: str = STACK_NAME
    ) -> None:
        self.path = Path(path).resolve()
        try:
            self.body = load_yaml(self.path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise TemplateError(f"cannot read the template {self.path}: {exc}") from exc
        if not isinstance(self.body, dict) or not isinstance(self.body.get("Resources"), dict):
            raise TemplateError(f"{self.path} has no Resources")
        self.resources: dict[str, dict[str, Any]] = self.body["Resources"]
        self.parameters = parameters or {}
        self.stack_name = stack_name

    def _of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {name: resource for name, resource in self.resources.items() if resource.get("Type") in types}

    def state_machines(self) -> dict[str, StateMachineSpec]:
        machines = {}
        for name, resource in self._of_type(STATE_MACHINE).items():
            properties = resource.get("Properties", {})
            uri = properties.get("DefinitionUri")
            if not isinstance(uri, str):
                raise TemplateError(f"state machine {name}: only a local DefinitionUri file is supported")
            substitutions = {
                key: _text(self.resolve(value))
                for key, value in properties.get("DefinitionSubstitutions", {}).items()
            }
            machines[name] = StateMachineSpec(name, (self.path.parent / uri).resolve(), substitutions)
        return machines

    def functions(self) -> dict[str, FunctionSpec]:
        """Logical id -> code folder, handler, environment (Globals merged in), timeout, memory.

        Only functions with a local CodeUri folder and a Handler can run here; others (container
        images, inline code) are left out.
        """
        defaults = self.body.get("Globals", {}).get("Function", {})
        table = {}
        for name, resource in self._of_type(*FUNCTIONS).items():
            properties = {**defaults, **resource.get("Properties", {})}
            # SAM appends a function's own Layers to the global ones.
            layers = [*defaults.get("Layers", []), *resource.get("Properties", {}).get("Layers", [])]
            variables = {
                **defaults.get("Environment", {}).get("Variables", {}),
                **resource.get("Properties", {}).get("Environment", {}).get("Variables", {}),
            }
            if not isinstance(properties.get("CodeUri"), str) or "Handler" not in properties:
                continue
            table[name] = FunctionSpec(
                logical_id=name,
                code_uri=(self.path.parent / properties["CodeUri"]).resolve(),
                handler=properties["Handler"],
                environment={key: _text(self.resolve(value)) for key, value in variables.items()},
                timeout=int(self.resolve(properties.get("Timeout", 3))),
                memory_size=int(self.resolve(properties.get("MemorySize", 128))),
                layers=tuple(path for path in map(self._layer_python_path, layers) if path is not None),
            )
        return table

    def _layer_python_path(self, layer: Any) -> Path | None:
        """Where a layer of this template puts its Python code (Lambda's /opt/python), or None for a layer
        given by ARN, which cannot be fetched here: its modules must be installed in this environment.

        ``sam build`` builds a layer whose Metadata names a Python BuildMethod into python/ (its
        requirements.txt installed next to the code); any other layer is zipped as it is, so its
        python/ folder is what lands in /opt/python.
        """
        if not (isinstance(layer, dict) and set(layer) == {"Ref"}):
            return None
        resource = self.resources.get(layer["Ref"], {})
        content = resource.get("Properties", {}).get("ContentUri")
        if resource.get("Type") != LAYER or not isinstance(content, str):
            return None
        folder = (self.path.parent / content).resolve()
        built = str(resource.get("Metadata", {}).get("BuildMethod", "")).startswith("python")
        return folder if built else folder / "python"

    def resolve(self, value: Any) -> Any:
        """Evaluate CloudFormation intrinsic functions in ``value`` with local values."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Condition":
                return self._condition(argument)
            if key.startswith("Fn::"):
                function = getattr(self, "_fn_" + key[4:].lower(), None)
                if function is None:
                    raise TemplateError(f"{key} cannot be resolved locally")
                return function(argument)
        return {key: self.resolve(item) for key, item in value.items()}

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": local_aws.region(),
            "AWS::AccountId": local_aws.ACCOUNT_ID,
            "AWS::Partition": local_aws.PARTITION,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": local_aws.arn("cloudformation", f"stack/{self.stack_name}/local"),
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        parameter = self.body.get("Parameters", {}).get(name)
        if parameter is not None:
            if "Default" not in parameter:
                raise TemplateError(f"parameter {name} has no Default; give it a value")
            return parameter["Default"]
        resource_type = self.resources.get(name, {}).get("Type")
        if resource_type is None:
            raise TemplateError(f"!Ref {name}: no such parameter or resource")
        if resource_type in BUCKETS:
            return bucket_name(name)
        if resource_type == STATE_MACHINE:
            return local_aws.arn("states", f"stateMachine:{name}")
        return name  # functions, roles, ...: the logical id stands for the physical name

    def _fn_getatt(self, argument: list[str]) -> str:
        name, attribute = argument
        resource_type = self.resources.get(name, {}).get("Type", "")
        if attribute == "Arn":
            if resource_type in FUNCTIONS:
                return local_aws.arn("lambda", f"function:{name}")
            if resource_type == "AWS::IAM::Role":
                return local_aws.arn("iam", f"role/{name}", regional=False)
            if resource_type in BUCKETS:
                return f"arn:{local_aws.PARTITION}:s3:::{bucket_name(name)}"
            if resource_type == STATE_MACHINE:
                return self._ref(name)
        if resource_type == STATE_MACHINE and attribute == "Name":
            return name
        raise TemplateError(f"!GetAtt {name}.{attribute} cannot be resolved locally")

    def _fn_sub(self, argument: str | list[Any]) -> str:
        text, variables = (
            (argument, {}) if isinstance(argument, str) else (argument[0], self.resolve(argument[1]))
        )

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return self._fn_getatt(name.split(".", 1))
            return _text(self._ref(name))

        return PLACEHOLDER.sub(replace, text)

    def _fn_join(self, argument: list[Any]) -> str:
        delimiter, items = argument
        return delimiter.join(_text(item) for item in self.resolve(items))

    def _fn_select(self, argument: list[Any]) -> Any:
        index, items = self.resolve(argument)
        return items[int(index)]

    def _fn_split(self, argument: list[Any]) -> list[str]:
        delimiter, text = self.resolve(argument)
        return text.split(delimiter)

    def _fn_if(self, argument: list[Any]) -> Any:
        condition, when_true, when_false = argument
        return self.resolve(when_true if self._condition(condition) else when_false)

    def _fn_equals(self, argument: list[Any]) -> bool:
        left, right = self.resolve(argument)
        return left == right

    def _fn_and(self, argument: list[Any]) -> bool:
        return all(self.resolve(argument))

    def _fn_or(self, argument: list[Any]) -> bool:
        return any(self.resolve(argument))

    def _fn_not(self, argument: list[Any]) -> bool:
        return not self.resolve(argument)[0]

    def _fn_findinmap(self, argument: list[Any]) -> Any:
        mapping, key, name = self.resolve(argument)
        return self.body["Mappings"][mapping][key][name]

    def _fn_base64(self, argument: Any) -> str:
        return base64.b64encode(_text(self.resolve(argument)).encode()).decode()

    def _condition(self, name: str) -> bool:
        conditions = self.body.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"condition {name} is not defined")
        return bool(self.resolve(conditions[name]))


def bucket_name(logical_id: str) -> str:
    """The local name of a bucket resource."""
    return LOCAL_BUCKETS.get(logical_id, logical_id.lower())


def _text(value: Any) -> str:
    """A resolved value as CloudFormation turns it into a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def substitute(definition_text: str, substitutions: dict[str, str]) -> str:
    """Replace ``${Name}`` placeholders; TemplateError names every placeholder left without a value."""
    missing = sorted({name for name in PLACEHOLDER.findall(definition_text) if name not in substitutions})
    if missing:
        raise TemplateError(
            "no DefinitionSubstitutions value for " + ", ".join("${" + name + "}" for name in missing)
        )
    return PLACEHOLDER.sub(lambda match: substitutions[match.group(1)], definition_text)


def state_machine_for(template: Template, definition: Path) -> StateMachineSpec:
    """The template's state machine whose DefinitionUri is ``definition``, or its only one."""
    machines = template.state_machines()
    definition = definition.resolve()
    for machine in machines.values():
        if machine.definition_uri == definition:
            return machine
    if len(machines) == 1:
        return next(iter(machines.values()))
    raise TemplateError(
        f"{template.path} has {len(machines)} state machines and none has DefinitionUri {definition}"
    )
