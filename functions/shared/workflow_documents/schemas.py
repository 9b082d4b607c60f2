"""The JSON Schemas of the workflow's documents, as published in schemas/.

``python -m workflow_documents.schemas schemas/`` (with functions/shared on the path) writes them;
a test fails when a published file differs from what the models generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from .config import Config, DatasetInfo
from .execution_input import ExecutionInput
from .tuning import CandidateResult, FinalTraining, HoldoutResult, Proposal, Registration, Tuning, fold_result

# File name in schemas/ -> (title, model) of each document that crosses a state boundary.
DOCUMENTS: dict[str, tuple[str, type[BaseModel] | TypeAdapter[Any]]] = {
    "execution-input": ("cvpipe execution input", ExecutionInput),
    "config": ("cvpipe config: the normalised execution input that every state reads", Config),
    "dataset-info": ("cvpipe dataset summary: the split job's result", DatasetInfo),
    "proposal": ("cvpipe proposal: a round's candidates", Proposal),
    "fold-result": ("cvpipe fold result: one training job of a candidate", fold_result),
    "candidate-result": ("cvpipe candidate result: a candidate's cross-validation scores", CandidateResult),
    "tuning": ("cvpipe tuning state: the history and the best candidate after a round", Tuning),
    "holdout-result": (
        "cvpipe holdout result: the chosen candidate scored on the holdout rows",
        HoldoutResult,
    ),
    "final-training": (
        "cvpipe final training: the chosen candidate fitted on all tuning rows",
        FinalTraining,
    ),
    "registration": ("cvpipe registration: the model package's statistics and fields", Registration),
}


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of document ``name`` (a key of ``DOCUMENTS``)."""
    title, model = DOCUMENTS[name]
    generated = model.json_schema() if isinstance(model, TypeAdapter) else model.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **generated, "title": title}


def schema_text(name: str) -> str:
    """The published file's text."""
    return json.dumps(json_schema(name), indent=2, sort_keys=True) + "\n"


def write(folder: Path) -> list[Path]:
    """Write every document's schema as ``folder/<name>.schema.json``."""
    written = []
    for name in DOCUMENTS:
        path = folder / f"{name}.schema.json"
        path.write_text(schema_text(name))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(path)
