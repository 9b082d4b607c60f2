"""What a deployed stack hands to the tools that use it: the outputs `cvpipe start` and `make image` read,
and the parameters `cvpipe start` checks an input against."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cvpipe.aws.stack import BUCKET_OUTPUT, STATE_MACHINE_OUTPUT
from cvpipe.integrations.template import load_yaml
from cvpipe.pipeline.input_check import ALLOWED_PACKAGES_PARAMETER, MAX_PARALLEL_JOBS_PARAMETER

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_yaml((ROOT / "template.yaml").read_text())


def test_the_outputs_the_cli_reads_name_the_stacks_resources(template):
    outputs = template["Outputs"]
    assert outputs[STATE_MACHINE_OUTPUT]["Value"] == {"Ref": "CrossValidationStateMachine"}
    # The state machine exists only once the image is set; its output must share that condition.
    assert (
        outputs[STATE_MACHINE_OUTPUT]["Condition"]
        == template["Resources"]["CrossValidationStateMachine"]["Condition"]
    )
    assert outputs[BUCKET_OUTPUT]["Value"] == {"Ref": "ArtifactBucket"}
    assert "Condition" not in outputs[BUCKET_OUTPUT]


def test_the_output_make_image_reads_is_the_job_repository(template):
    (read,) = re.findall(r"OutputKey=='(\w+)'", (ROOT / "containers" / "push-image.sh").read_text())
    assert template["Outputs"][read]["Value"] == {"Fn::GetAtt": ["JobRepository", "RepositoryUri"]}
    assert "Condition" not in template["Outputs"][read]  # there before the image: the first deploy makes it


def test_the_parameters_cvpipe_start_checks_against_reach_prepare_input(template):
    """`cvpipe start` runs PrepareInput with the stack's AllowedPackages and MaxParallelJobs: they must be
    what the deployed function and definition receive."""
    parameters = template["Parameters"]
    assert {ALLOWED_PACKAGES_PARAMETER, MAX_PARALLEL_JOBS_PARAMETER} <= set(parameters)
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["CVPIPE_ALLOWED_PACKAGES"] == {"Ref": ALLOWED_PACKAGES_PARAMETER}
    substitutions = template["Resources"]["CrossValidationStateMachine"]["Properties"][
        "DefinitionSubstitutions"
    ]
    assert substitutions[MAX_PARALLEL_JOBS_PARAMETER] == {"Ref": MAX_PARALLEL_JOBS_PARAMETER}
