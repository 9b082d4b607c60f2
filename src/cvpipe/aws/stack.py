"""A deployed cvpipe stack, found by name: its state machine and bucket from the stack's outputs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from .clients import Aws, aws_errors, error_code

# Output keys of template.yaml.
STATE_MACHINE_OUTPUT = "StateMachineArn"
BUCKET_OUTPUT = "ArtifactBucketName"


@dataclass(frozen=True)
class Stack:
    name: str
    state_machine_arn: str
    bucket: str
    parameters: dict[str, str] = field(default_factory=dict)
    """The template parameters it was deployed with (AllowedPackages, MaxParallelJobs, ...)."""


def find_stack(aws: Aws, name: str) -> Stack:
    """The stack's state machine and artifact bucket; a clear error when it has none (yet)."""
    from botocore.exceptions import ClientError

    cloudformation = aws.client("cloudformation")
    with aws_errors():
        try:
            (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
        except ClientError as error:
            if error_code(error) == "ValidationError" and "does not exist" in str(error):
                raise UserError(
                    f"stack {name} does not exist in {cloudformation.meta.region_name}: deploy it "
                    "(sam build && sam deploy --guided), or name another with --stack or --region"
                ) from None
            raise
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    if BUCKET_OUTPUT not in outputs:
        raise UserError(f"stack {name} is not a cvpipe stack: it has no {BUCKET_OUTPUT} output")
    if STATE_MACHINE_OUTPUT not in outputs:
        raise UserError(
            f"stack {name} has no state machine yet: it is created once the job image is set. Run "
            f"`make image STACK={name}` and deploy with the JobImageUri it prints"
        )
    parameters = {
        parameter["ParameterKey"]: parameter.get("ParameterValue", "")
        for parameter in stack.get("Parameters", [])
    }
    return Stack(name, outputs[STATE_MACHINE_OUTPUT], outputs[BUCKET_OUTPUT], parameters)
