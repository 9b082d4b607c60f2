"""The names the pipeline application relies on (cvpipe.pipeline.contract) exist in the definition."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from cvpipe.pipeline import contract

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def all_states(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of a definition, nested ones (Parallel branches, Map processors) included."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in states.items():
        found[name] = state
        for branch in state.get("Branches", []):
            found.update(all_states(branch["States"]))
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found.update(all_states(processor["States"]))
    return found


@pytest.fixture(scope="module")
def states() -> dict[str, dict[str, Any]]:
    return all_states(json.loads((ROOT / contract.DEFINITION).read_text())["States"])


def assigns(state: dict[str, Any], variable: str) -> bool:
    """Whether the state assigns ``variable`` (a JSONPath Assign names it ``variable`` or ``variable.$``)."""
    assign = state.get("Assign") or {}
    return variable in assign or f"{variable}.$" in assign


@pytest.mark.parametrize("name", sorted(contract.STATE_NAMES))
def test_every_state_the_pipeline_follows_is_in_the_definition(
    states: dict[str, dict[str, Any]], name: str
) -> None:
    assert name in states, f"state {name!r} (cvpipe.pipeline.contract) is not in {contract.DEFINITION}"


@pytest.mark.parametrize("name", sorted(contract.ASSIGNED_VARIABLES))
def test_states_assign_the_documents_the_pipeline_reads(states: dict[str, dict[str, Any]], name: str) -> None:
    variable = contract.ASSIGNED_VARIABLES[name]
    assert name in states, f"state {name!r} is not in {contract.DEFINITION}"
    assert assigns(states[name], variable), f"state {name!r} no longer assigns the variable {variable!r}"


def test_the_proposal_is_what_propose_candidates_outputs(states: dict[str, dict[str, Any]]) -> None:
    state = states[contract.PROPOSE_CANDIDATES]
    assert "ResultPath" not in state and "OutputPath" not in state
    assert tuple(key.removesuffix(".$") for key in state["ResultSelector"]) == contract.PROPOSAL_KEYS


def test_fold_map_is_a_map_inside_the_candidate_map(states: dict[str, dict[str, Any]]) -> None:
    inner = all_states(states[contract.EVALUATE_CANDIDATES]["ItemProcessor"]["States"])
    assert inner[contract.FOLD_MAP]["Type"] == "Map"
    fold_states = all_states(inner[contract.FOLD_MAP]["ItemProcessor"]["States"])
    assert set(fold_states) >= contract.FOLD_FAILURE_STATES


def test_candidates_are_evaluated_as_child_executions_with_results_in_the_run_folder(
    states: dict[str, dict[str, Any]],
) -> None:
    """The fold jobs are .sync tasks, which EXPRESS children cannot run; the results go to S3 under
    the run's prefix, where AggregateScores reads them; one failed child fails only its candidate."""
    evaluation = states[contract.EVALUATE_CANDIDATES]
    assert evaluation["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "STANDARD",
    }
    writer = evaluation["ResultWriter"]["Parameters"]
    assert writer["Bucket"] == "${ArtifactBucketName}"
    assert writer["Prefix.$"] == "States.Format('runs/{}/evaluations', $config.run.execution)"
    assert evaluation["ToleratedFailurePercentage"] == 100
    payload = states[contract.AGGREGATE_SCORES]["Parameters"]["Payload"]
    assert payload["results.$"] == f"{evaluation['ResultPath']}.ResultWriterDetails"


@pytest.mark.parametrize("error", sorted(contract.FAIL_STATE_ERRORS))
def test_every_error_the_cli_tells_apart_ends_a_fail_state(
    states: dict[str, dict[str, Any]], error: str
) -> None:
    errors = {state.get("Error") for state in states.values() if state["Type"] == "Fail"}
    assert error in errors, f"no Fail state of {contract.DEFINITION} ends with error {error!r}"


@pytest.mark.parametrize(("function", "error"), sorted(contract.FUNCTION_INPUT_ERRORS.items()))
def test_input_errors_are_classes_the_functions_raise(function: str, error: str) -> None:
    """Lambda names a function's error after the exception's class: the class must exist and be raised."""
    folder = ROOT / "functions" / function
    defined, raised = set(), set()
    for source in folder.glob("*.py"):
        tree = ast.parse(source.read_text())
        defined |= {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        raised |= {
            node.exc.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Raise)
            and isinstance(node.exc, ast.Call)
            and isinstance(node.exc.func, ast.Name)
        }
    assert error in defined, f"functions/{function} defines no exception class {error!r}"
    assert error in raised, f"functions/{function} never raises {error!r}"


def test_renaming_a_state_is_caught(states: dict[str, dict[str, Any]]) -> None:
    """The check above is not vacuous: a definition with a followed state renamed fails it."""
    renamed = {("Renamed" if name == contract.AGGREGATE_SCORES else name): s for name, s in states.items()}
    assert contract.AGGREGATE_SCORES not in renamed
    assert contract.STATE_NAMES - set(renamed) == {contract.AGGREGATE_SCORES}
