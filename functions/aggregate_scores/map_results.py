"""A round's fold results, read from what the evaluation's Distributed Map wrote to S3.

EvaluateCandidates runs each candidate as a child execution whose input holds the candidate and its
folds and whose output is the list of its fold results. Its ResultWriter writes a ``manifest.json``
that lists result files by status (``SUCCEEDED_n.json``, ``FAILED_n.json``, ``PENDING_n.json``), each
a JSON array of DescribeExecution-shaped entries (``Input`` and ``Output`` as JSON text, ``Error`` and
``Cause`` for a failed child). The Map tolerates failed children, so a child that failed as a whole (an
error no Catch inside it can take) fails its candidate here, each fold with the child's error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

ReadObject = Callable[[str, str], bytes]
"""(bucket, key) -> the object's bytes."""
UNFINISHED = "ExecutionUnfinished"
"""The error of a candidate whose child execution ended without an error of its own (aborted, never run)."""


class ResultLocation(BaseModel):
    """The Map's ``ResultWriterDetails``: where its manifest is."""

    Bucket: str
    Key: str


def fold_results(
    candidate_ids: list[int], location: ResultLocation, read: ReadObject
) -> list[list[dict[str, Any]]]:
    """The fold results of each candidate, in the order of ``candidate_ids``; a ValueError names a
    candidate the results leave out."""
    manifest = json.loads(read(location.Bucket, location.Key))
    bucket = manifest.get("DestinationBucket", location.Bucket)
    found: dict[int, list[dict[str, Any]]] = {}
    for status, files in manifest["ResultFiles"].items():
        for file in files:
            for entry in _entries(read(bucket, file["Key"])):
                child_input = json.loads(entry["Input"])
                found[child_input["candidate"]["id"]] = (
                    json.loads(entry["Output"]) if status == "SUCCEEDED" else _failed(child_input, entry)
                )
    missing = [candidate for candidate in candidate_ids if candidate not in found]
    if missing:
        raise ValueError(
            f"the evaluation results at s3://{location.Bucket}/{location.Key} lack candidates {missing}"
        )
    return [found[candidate] for candidate in candidate_ids]


def _entries(body: bytes) -> list[dict[str, Any]]:
    """A result file: a JSON array (OutputType JSON) or one entry per line (JSONL)."""
    text = body.decode("utf-8").strip()
    if text.startswith("["):
        entries: list[dict[str, Any]] = json.loads(text)
        return entries
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _failed(child_input: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Each fold of a child execution that failed, timed out, was aborted or never ran, as failed."""
    error = entry.get("Error") or UNFINISHED
    cause = entry.get("Cause") or f"the candidate's child execution ended {entry.get('Status', 'PENDING')}"
    return [
        {"fold": fold, "job": "", "status": "Failed", "error": error, "cause": cause}
        for fold in child_input["folds"]
    ]
