"""Reading template.yaml: CloudFormation tags, DefinitionSubstitutions, the functions table."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvpipe.integrations.template import (
    Template,
    TemplateError,
    load_yaml,
    state_machine_for,
    substitute,
)

pytestmark = pytest.mark.unit

TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
  Flavour:
    Type: String
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Globals:
  Function:
    Runtime: python3.11
    Timeout: 60
    MemorySize: 512
    Environment:
      Variables:
        LOG_LEVEL: INFO
        SHARED: globals
Resources:
  ArtifactBucket:
    Type: AWS::S3::Bucket
  DataBucket:
    Type: AWS::S3::Bucket
  PipelineRole:
    Type: AWS::IAM::Role
  PrepareInput:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/prepare_input
      Handler: app.lambda_handler
      Timeout: 30
      Environment:
        Variables:
          SHARED: own
          ARTIFACT_BUCKET: !Ref ArtifactBucket
  Aggregate:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/aggregate
      Handler: app.lambda_handler
  ImageFunction:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      ImageUri: 000000000000.dkr.ecr.us-east-1.amazonaws.com/fn:latest
  Pipeline:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionUri: statemachine/pipeline.asl.json
      DefinitionSubstitutions:
        PrepareInputArn: !GetAtt PrepareInput.Arn
        Bucket: !Ref ArtifactBucket
        Data: !Ref DataBucket
        RoleArn: !GetAtt PipelineRole.Arn
        Stage: !Ref Stage
        Where: !Sub "${AWS::Region}/${AWS::AccountId}/${AWS::Partition}/${AWS::StackName}/${Stage}"
        Joined: !Join ["-", [a, !Ref Stage, c]]
        Chosen: !If [IsProd, big, small]
        Image: !Sub
          - "${Account}.dkr.ecr.${AWS::Region}.amazonaws.com/cv:${Tag}"
          - Account: !Ref AWS::AccountId
            Tag: latest
        Literal: !Sub "${!NotReplaced}"
        FnArn: !Sub "${PrepareInput.Arn}"
"""


@pytest.fixture
def template(tmp_path: Path) -> Template:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return Template(tmp_path / "template.yaml")


def test_short_tags_load_as_long_forms() -> None:
    loaded = load_yaml(
        "a: !Ref X\nb: !GetAtt Fn.Arn\nc: !Sub 'x'\nd: !Join [',', [1, 2]]\ne: !GetAtt [R, Arn]\nf: !Condition C\n"
    )
    assert loaded == {
        "a": {"Ref": "X"},
        "b": {"Fn::GetAtt": ["Fn", "Arn"]},
        "c": {"Fn::Sub": "x"},
        "d": {"Fn::Join": [",", [1, 2]]},
        "e": {"Fn::GetAtt": ["R", "Arn"]},
        "f": {"Condition": "C"},
    }


def test_definition_substitutions_resolve_locally(
    template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    machine = template.state_machines()["Pipeline"]
    assert machine.definition_uri == template.path.parent / "statemachine" / "pipeline.asl.json"
    assert machine.substitutions == {
        "PrepareInputArn": "arn:aws:lambda:eu-west-1:000000000000:function:PrepareInput",
        "Bucket": "cvpipe-local-artifacts",
        "Data": "databucket",
        "RoleArn": "arn:aws:iam::000000000000:role/PipelineRole",
        "Stage": "dev",
        "Where": "eu-west-1/000000000000/aws/cvpipe-local/dev",
        "Joined": "a-dev-c",
        "Chosen": "small",
        "Image": "000000000000.dkr.ecr.eu-west-1.amazonaws.com/cv:latest",
        "Literal": "${NotReplaced}",
        "FnArn": "arn:aws:lambda:eu-west-1:000000000000:function:PrepareInput",
    }


def test_parameter_overrides(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    machine = Template(tmp_path / "template.yaml", parameters={"Stage": "prod"}).state_machines()["Pipeline"]
    assert (machine.substitutions["Stage"], machine.substitutions["Chosen"]) == ("prod", "big")


def test_a_parameter_without_default_needs_a_value(template: Template) -> None:
    with pytest.raises(TemplateError, match="Flavour has no Default"):
        template.resolve({"Ref": "Flavour"})


def test_functions_table_merges_globals(template: Template) -> None:
    functions = template.functions()
    prepare = functions["PrepareInput"]
    assert prepare.code_uri == template.path.parent / "functions" / "prepare_input"
    assert prepare.handler == "app.lambda_handler"
    assert prepare.environment == {
        "LOG_LEVEL": "INFO",
        "SHARED": "own",
        "ARTIFACT_BUCKET": "cvpipe-local-artifacts",
    }
    assert (prepare.timeout, prepare.memory_size) == (30, 512)
    assert functions["Aggregate"].environment == {"LOG_LEVEL": "INFO", "SHARED": "globals"}
    assert functions["Aggregate"].timeout == 60
    assert "ImageFunction" not in functions  # no local code to run


def test_layers_of_a_function_globals_first_and_only_local_ones(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        """\
Globals:
  Function:
    Layers: [!Ref Shared]
Resources:
  Shared:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: shared/}
    Metadata: {BuildMethod: python3.12}
  Plain:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: plain}
  F:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: f/
      Handler: app.h
      Layers: [!Ref Plain, "arn:aws:lambda:us-east-1:123456789012:layer:elsewhere:1"]
"""
    )
    layers = Template(tmp_path / "template.yaml").functions()["F"].layers
    assert layers == (tmp_path / "shared", tmp_path / "plain" / "python")


def test_substitute_replaces_placeholders_and_names_the_missing_ones() -> None:
    text = '{"Resource": "${Fn}", "Bucket": "${Bucket}"}'
    assert substitute(text, {"Fn": "arn:x", "Bucket": "b"}) == '{"Resource": "arn:x", "Bucket": "b"}'
    with pytest.raises(TemplateError, match=r"\$\{Bucket\}, \$\{Fn\}"):
        substitute(text, {})


def test_state_machine_for_a_definition_file(template: Template, tmp_path: Path) -> None:
    assert (
        state_machine_for(template, tmp_path / "statemachine" / "pipeline.asl.json").logical_id == "Pipeline"
    )
    assert state_machine_for(template, tmp_path / "other.json").logical_id == "Pipeline"  # the only one


def test_unreadable_template(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot read the template"):
        Template(tmp_path / "missing.yaml")
