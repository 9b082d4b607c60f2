"""One declaration of each workflow document (functions/shared/workflow_documents), published as the
JSON Schemas in schemas/ and used by every function that reads the document."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
FUNCTIONS = ROOT / "functions"


def test_every_published_schema_is_generated_from_its_model(workflow_documents):
    documents = workflow_documents.schemas.DOCUMENTS
    published = {path.name.removesuffix(".schema.json") for path in SCHEMAS.glob("*.schema.json")}
    assert published == set(documents), "schemas/ holds a schema of no document, or misses one"
    stale = [
        name
        for name in documents
        if (SCHEMAS / f"{name}.schema.json").read_text() != workflow_documents.schemas.schema_text(name)
    ]
    assert not stale, f"schemas/ is stale for {', '.join(stale)}: run `make schemas`"


def test_no_function_declares_a_document_of_its_own(workflow_documents):
    declared = {name for name in workflow_documents.__all__ if name[0].isupper()} | {
        "Choice",
        "Range",
        "Model",
    }
    for path in FUNCTIONS.glob("*/*.py"):
        if path.parent.name == "shared":
            continue
        classes = {
            node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)
        }
        assert not classes & declared, f"{path.relative_to(ROOT)} re-declares {classes & declared}: import it"


def test_each_function_validates_its_input_with_the_shared_models(
    workflow_documents, propose_candidates, aggregate_scores, build_registration
):
    events = {
        "ProposeCandidates": propose_candidates.search_space.ProposeEvent,
        "AggregateScores": aggregate_scores.fold_scores.AggregateEvent,
        "BuildRegistration": build_registration.registration.RegistrationEvent,
    }
    for function, event in events.items():
        assert event.model_fields["config"].annotation is workflow_documents.Config, function
    assert aggregate_scores.fold_scores.AggregateEvent.model_fields["tuning"].annotation == (
        workflow_documents.Tuning | None
    )
    assert build_registration.registration.RegistrationEvent.model_fields["final"].annotation is (
        workflow_documents.FinalTraining
    )


def test_a_config_the_function_reads_is_refused_when_a_field_is_unknown(
    propose_candidates, make_config, lambda_context
):
    config = {**make_config(), "tunning": {}}
    with pytest.raises(ValidationError, match="tunning"):
        propose_candidates.app.lambda_handler({"config": config, "tuning": None}, lambda_context)


def test_what_the_functions_write_fits_the_published_schemas(
    prepare_input,
    propose_candidates,
    aggregate_scores,
    build_registration,
    make_config,
    dataset_info,
    lambda_context,
    evaluation_results,
):
    def assert_fits(document, name):
        jsonschema.validate(document, json.loads((SCHEMAS / f"{name}.schema.json").read_text()))

    config = {
        **make_config(cv={"k": 3}),
        "dataset_info": dataset_info(k=3),
        "data_uri": "s3://b/split",
        "split_job": "cv-x-split",
    }
    assert_fits(config, "config")
    proposal = propose_candidates.app.lambda_handler({"config": config, "tuning": None}, lambda_context)
    assert_fits(proposal, "proposal")
    metrics = [{"MetricName": "validation:score", "Value": 0.9, "Timestamp": 1.7e9}]
    evaluations = [
        [{"fold": fold, "job": f"j{fold}", "status": "Completed", "metrics": metrics} for fold in range(3)]
        for _ in proposal["candidates"]
    ]
    for folds in evaluations:
        for fold in folds:
            assert_fits(fold, "fold-result")
    event = {
        "config": config,
        "tuning": None,
        "candidates": proposal["candidates"],
        "results": evaluation_results(proposal["candidates"], evaluations),
    }
    tuning = aggregate_scores.app.lambda_handler(event, lambda_context)
    assert_fits(tuning, "tuning")
    assert_fits(tuning["best"], "candidate-result")
    final = {"job": "cv-x-final", "model_data_url": "s3://b/model.tar.gz"}
    assert_fits(final, "final-training")
    holdout = {"job": "cv-x-holdout", "score": []}
    assert_fits(holdout, "holdout-result")
    event = {"config": config, "tuning": tuning, "holdout": holdout, "final": final}
    assert_fits(build_registration.app.lambda_handler(event, lambda_context), "registration")
