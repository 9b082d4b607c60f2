"""Load each Lambda function as it runs when deployed: its folder and the shared layer on sys.path, its
modules importable.

Each folder is imported under a unique name with its folder on sys.path only while importing; its
sibling modules are then taken out of sys.modules, so one function's tests cannot import another's code.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from cvpipe.asl.distributed import ChildExecution, MapRun, write_results

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
# The layer every function gets: in Lambda its content is under /opt/python, after the function's folder.
SHARED = FUNCTIONS / "shared"


@dataclass
class FakeLambdaContext:
    function_name: str = "test-function"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:test-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


def load_function(name: str) -> SimpleNamespace:
    """``functions/<name>``: ``.app`` and each sibling module by its own name."""
    folder = FUNCTIONS / name
    before = set(sys.modules)
    sys.path[:0] = [str(folder), str(SHARED)]
    try:
        spec = importlib.util.spec_from_file_location(f"functions_{name}_app", folder / "app.py")
        app = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = app  # pydantic resolves the handler's annotations through sys.modules
        spec.loader.exec_module(app)
    finally:
        sys.path.remove(str(folder))
        sys.path.remove(str(SHARED))
    siblings = {
        module_name: sys.modules.pop(module_name)
        for module_name in set(sys.modules) - before
        if _is_in(sys.modules[module_name], folder)
    }
    return SimpleNamespace(app=app, **siblings)


def _is_in(module: ModuleType, folder: Path) -> bool:
    # Unresolved: a module linked into the folder from elsewhere is part of this function too.
    return Path(getattr(module, "__file__", None) or "/").absolute().parent == folder


@pytest.fixture(scope="session", autouse=True)
def powertools_environment():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
        patch.setenv("POWERTOOLS_METRICS_NAMESPACE", "cvpipe-tests")
        patch.setenv("POWERTOOLS_SERVICE_NAME", "cvpipe-tests")
        yield


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(scope="session")
def prepare_input(powertools_environment) -> SimpleNamespace:
    return load_function("prepare_input")


@pytest.fixture(scope="session")
def propose_candidates(powertools_environment) -> SimpleNamespace:
    return load_function("propose_candidates")


@pytest.fixture(scope="session")
def aggregate_scores(powertools_environment) -> SimpleNamespace:
    return load_function("aggregate_scores")


class _Objects(dict[tuple[str, str], bytes]):
    """An object store in memory, for the engine's ResultWriter."""

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self[bucket, key] = body


def child_input(candidate: dict[str, Any], folds: list[dict[str, Any]]) -> dict[str, Any]:
    """What EvaluateCandidates gives a candidate's child execution (the parts AggregateScores reads)."""
    return {"candidate": candidate, "folds": [fold["fold"] for fold in folds]}


@pytest.fixture
def evaluation_results(aggregate_scores) -> Iterator[Callable[..., dict[str, str]]]:
    """``write(candidates, evaluations, failed={})``: the round's results written as the evaluation's
    Distributed Map writes them (the engine's ResultWriter, AWS's layout), served to AggregateScores'
    S3 client by botocore's Stubber; returns the ``results`` location of its event. ``failed`` maps a
    candidate's position to the (error, cause) its whole child execution failed with."""
    stubber = Stubber(aggregate_scores.app.s3)

    def write(
        candidates: list[dict[str, Any]],
        evaluations: list[list[dict[str, Any]]],
        failed: dict[int, tuple[str, str]] | None = None,
    ) -> dict[str, str]:
        run = MapRun("arn:aws:states:us-east-1:000000000000:mapRun:M/Candidates:run-1", "Candidates")
        for index, (candidate, folds) in enumerate(zip(candidates, evaluations, strict=True)):
            child = ChildExecution(f"child-{index}", f"arn:child-{index}", child_input(candidate, folds))
            if index in (failed or {}):
                child.status, (child.error, child.cause) = "FAILED", (failed or {})[index]
            else:
                child.status, child.output = "SUCCEEDED", folds
            run.executions.append(child)
        objects = _Objects()
        writer = {"Resource": "arn:aws:states:::s3:putObject"}
        output = write_results(objects, writer, {"Bucket": "b", "Prefix": "runs/x/evaluations"}, run, "arn:m")
        location = output["ResultWriterDetails"]
        keys = [location["Key"], *(key for _, key in objects if key != location["Key"])]
        for key in keys:  # the manifest first, then the result files in the order it lists them
            body = objects["b", key]
            response = {"Body": StreamingBody(io.BytesIO(body), len(body))}
            stubber.add_response("get_object", response, {"Bucket": "b", "Key": key})
        return dict(location)

    with stubber:
        yield write
    stubber.assert_no_pending_responses()


@pytest.fixture(scope="session")
def build_registration(powertools_environment) -> SimpleNamespace:
    return load_function("build_registration")


@pytest.fixture(scope="session")
def workflow_documents() -> ModuleType:
    """The shared layer's package, with its ``schemas`` module."""
    sys.path.insert(0, str(SHARED))
    try:
        importlib.import_module("workflow_documents.schemas")
        return importlib.import_module("workflow_documents")
    finally:
        sys.path.remove(str(SHARED))


@pytest.fixture(scope="session")
def dataset_info():
    """A split job's summary (150 rows of iris in 5 stratified folds), with ``fields`` changed."""

    def make(**fields) -> dict:
        k = fields.get("k", 5)
        return {
            "task": "classification",
            "splitter": "StratifiedKFold",
            "metric": fields.get("metric", "accuracy"),
            "metrics": [fields.get("metric", "accuracy")],
            "k": k,
            "folds": list(range(k)),
            "n_rows": 150,
            "n_features": 4,
            "target": "species",
            "estimator": "SVC",
            "holdout_rows": 0,
            **fields,
        }

    return make


@pytest.fixture
def make_config(prepare_input):
    """A normalised config, as prepare_input returns it, for an input with these sections."""

    def make(**sections) -> dict:
        document = {"dataset": {"uri": "s3://cvpipe-data/iris.csv", "target": "species"}, **sections}
        return prepare_input.execution_input.normalise(
            document, execution="exec-1", bucket="cvpipe-artifacts"
        )

    return make


@pytest.fixture
def published_metrics(capsys):
    """The metrics the handlers printed so far as CloudWatch embedded metric format: name -> values."""

    def read() -> dict[str, list[float]]:
        published = {}
        for line in capsys.readouterr().out.splitlines():
            document = json.loads(line) if line.startswith("{") else {}
            for definition in document.get("_aws", {}).get("CloudWatchMetrics", []):
                published.update(
                    {metric["Name"]: document[metric["Name"]] for metric in definition["Metrics"]}
                )
        return published

    return read


@pytest.fixture(scope="session")
def start_execution(powertools_environment) -> SimpleNamespace:
    # The handler creates its boto3 clients at import, as deployed; tests swap in their own.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return load_function("start_execution")
