"""The Distributed Map's own work: reading items from an object store (ItemReader), batching them
(ItemBatcher), and writing the child executions' results back (ResultWriter), as Step Functions does.

Objects are reached through the ``ObjectStorage`` port the engine is given; the interpreter knows
no storage service. The shapes follow AWS's documentation: CSV rows become objects of strings
keyed by the header, an S3 inventory manifest lists CSV files (gzip or not) whose rows are keyed
by its ``fileSchema``, ``listObjectsV2`` items are ``{Etag, Key, LastModified, Size, StorageClass}``,
and ResultWriter writes ``manifest.json`` with ``SUCCEEDED_n.json``/``FAILED_n.json``/``PENDING_n.json``
under ``<Prefix>/<map run id>/``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import ITEM_READER_FAILED, RESULT_WRITER_FAILED, StatesError
from .history import to_json_text

GET_OBJECT = "arn:aws:states:::s3:getObject"
LIST_OBJECTS = "arn:aws:states:::s3:listObjectsV2"
PUT_OBJECT = "arn:aws:states:::s3:putObject"
INPUT_TYPES = ("CSV", "JSON", "JSONL", "MANIFEST")
MAX_CONCURRENCY = 10_000
"""AWS's bound on a Distributed Map's concurrent child executions (and its default)."""
MAX_BATCH_BYTES = 262_144
RESULT_FILE_BYTES = 5 * 1024 * 1024
"""ResultWriter starts a new SUCCEEDED_n/FAILED_n file past this size."""


class ObjectStorage(Protocol):
    """The object store a Distributed Map reads items from and writes results to (S3 in AWS)."""

    def get_object(self, bucket: str, key: str) -> bytes:
        """The object's bytes; KeyError if there is none, ValueError if a name is invalid."""

    def list_objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        """``{Key, Size, ETag, LastModified (epoch seconds), StorageClass}`` for every object under
        ``prefix``, in key order; ValueError if a name is invalid."""

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        """Store ``body``; ValueError if a name is invalid."""


def read_items(storage: ObjectStorage | None, reader: dict[str, Any], arguments: Any) -> list[Any]:
    """The items an ItemReader produces; ``arguments`` are its Parameters/Arguments, resolved."""
    if storage is None:
        raise StatesError(ITEM_READER_FAILED, "no object store was given to the engine for ItemReader")
    resource = reader["Resource"]
    config = reader.get("ReaderConfig", {})
    bucket = arguments.get("Bucket") if isinstance(arguments, dict) else None
    if not isinstance(bucket, str):
        raise StatesError(ITEM_READER_FAILED, "ItemReader needs a Bucket (in its Parameters or Arguments)")
    if resource == LIST_OBJECTS:
        items: list[Any] = [
            {
                "Etag": entry["ETag"],
                "Key": entry["Key"],
                "LastModified": entry["LastModified"],
                "Size": entry["Size"],
                "StorageClass": entry.get("StorageClass", "STANDARD"),
            }
            for entry in _list(storage, bucket, str(arguments.get("Prefix", "")))
        ]
    else:
        key = arguments.get("Key")
        if not isinstance(key, str):
            raise StatesError(ITEM_READER_FAILED, "ItemReader with s3:getObject needs a Key")
        body = _get(storage, bucket, key)
        input_type = config.get("InputType", "JSON")
        if input_type == "JSON":
            items = _json_array(body, key)
        elif input_type == "JSONL":
            items = _json_lines(body, key)
        elif input_type == "CSV":
            items = _csv_rows(body, key, config)
        else:
            items = _manifest_rows(storage, body, key)
    limit = config.get("MaxItems")
    return items[:limit] if isinstance(limit, int) and limit > 0 else items


def _get(storage: ObjectStorage, bucket: str, key: str) -> bytes:
    try:
        return storage.get_object(bucket, key)
    except KeyError:
        raise StatesError(
            ITEM_READER_FAILED, f"The specified key does not exist: s3://{bucket}/{key} (S3.NoSuchKey)"
        ) from None
    except ValueError as exc:
        raise StatesError(ITEM_READER_FAILED, str(exc)) from None


def _list(storage: ObjectStorage, bucket: str, prefix: str) -> list[dict[str, Any]]:
    try:
        return storage.list_objects(bucket, prefix)
    except ValueError as exc:
        raise StatesError(ITEM_READER_FAILED, str(exc)) from None


def _text(body: bytes, key: str) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise StatesError(ITEM_READER_FAILED, f"s3 object {key} is not UTF-8 text") from None


def _json_array(body: bytes, key: str) -> list[Any]:
    try:
        value = json.loads(_text(body, key))
    except ValueError as exc:
        raise StatesError(ITEM_READER_FAILED, f"s3 object {key} is not JSON: {exc}") from None
    if not isinstance(value, list):
        raise StatesError(ITEM_READER_FAILED, f"s3 object {key} must hold a JSON array for InputType JSON")
    return value


def _json_lines(body: bytes, key: str) -> list[Any]:
    items = []
    for number, line in enumerate(_text(body, key).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except ValueError as exc:
            raise StatesError(
                ITEM_READER_FAILED, f"s3 object {key}, line {number} is not JSON: {exc}"
            ) from None
    return items


def _csv_rows(body: bytes, key: str, config: dict[str, Any]) -> list[dict[str, str]]:
    """Rows as objects of strings: the header is the first row (FIRST_ROW) or CSVHeaders (GIVEN)."""
    delimiter = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "SPACE": " ", "TAB": "\t"}.get(
        config.get("CSVDelimiter", "COMMA"), ","
    )
    rows = list(csv.reader(io.StringIO(_text(body, key)), delimiter=delimiter))
    if config.get("CSVHeaderLocation", "FIRST_ROW") == "GIVEN":
        header = list(config.get("CSVHeaders", []))
    elif rows:
        header, rows = rows[0], rows[1:]
    else:
        header = []
    items = []
    for number, row in enumerate(rows, start=1):
        if not row:
            continue
        if len(row) != len(header):
            raise StatesError(
                ITEM_READER_FAILED,
                f"s3 object {key}: row {number} has {len(row)} fields, the header {len(header)}",
            )
        items.append(dict(zip(header, row, strict=True)))
    return items


def _manifest_rows(storage: ObjectStorage, body: bytes, key: str) -> list[dict[str, str]]:
    """An S3 inventory manifest.json: the rows of its CSV ``files``, keyed by its ``fileSchema``."""
    try:
        manifest = json.loads(_text(body, key))
        schema = [name.strip() for name in manifest["fileSchema"].split(",")]
        files = [entry["key"] for entry in manifest["files"]]
        bucket = manifest["destinationBucket"].rpartition(":")[2]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StatesError(
            ITEM_READER_FAILED, f"s3 object {key} is not an S3 inventory manifest: {exc}"
        ) from None
    if manifest.get("fileFormat", "CSV") != "CSV":
        raise StatesError(ITEM_READER_FAILED, "only CSV inventory files can be read (fileFormat CSV)")
    items: list[dict[str, str]] = []
    for file_key in files:
        data = _get(storage, bucket, file_key)
        if file_key.endswith(".gz"):
            data = gzip.decompress(data)
        config = {"CSVHeaderLocation": "GIVEN", "CSVHeaders": schema}
        items += _csv_rows(data, file_key, config)
    return items


def batches(items: list[Any], batcher: dict[str, Any]) -> list[dict[str, Any]]:
    """ItemBatcher: ``{"Items": [...], "BatchInput": ...}`` per batch, bounded by MaxItemsPerBatch
    and MaxInputBytesPerBatch (the batch's JSON text)."""
    most = batcher.get("MaxItemsPerBatch") or len(items) or 1
    budget = batcher.get("MaxInputBytesPerBatch") or MAX_BATCH_BYTES
    extra = {"BatchInput": batcher["BatchInput"]} if "BatchInput" in batcher else {}
    result: list[dict[str, Any]] = []
    current: list[Any] = []
    for item in items:
        candidate = [*current, item]
        if current and (len(candidate) > most or _size({"Items": candidate, **extra}) > budget):
            result.append({"Items": current, **extra})
            candidate = [item]
        if _size({"Items": candidate, **extra}) > budget:
            raise StatesError(
                "States.DataLimitExceeded",
                f"an item is larger than MaxInputBytesPerBatch ({budget} bytes) on its own",
            )
        current = candidate
    if current:
        result.append({"Items": current, **extra})
    return result


def _size(value: Any) -> int:
    return len(to_json_text(value).encode("utf-8"))


@dataclass
class ChildExecution:
    """One child workflow execution of a Map Run, with a history of its own."""

    name: str
    arn: str
    input: Any
    status: str = "PENDING"
    """PENDING until it starts, then RUNNING, then how it ended."""
    output: Any = None
    error: str | None = None
    cause: str | None = None
    start_date: str = ""
    stop_date: str = ""
    history: list[Any] = field(default_factory=list)
    input_text: str = ""
    output_text: str = ""
    """The compact JSON texts of the input and output, once the history has them."""

    def record(self, state_machine_arn: str) -> dict[str, Any]:
        """The entry ResultWriter writes for this execution (DescribeExecution's shape)."""
        entry: dict[str, Any] = {
            "ExecutionArn": self.arn,
            "Input": _ascii_json(self.input, self.input_text),
            "InputDetails": {"Included": True},
            "Name": self.name,
            "RedriveCount": 0,
            "RedriveStatus": "NOT_REDRIVABLE",
            "RedriveStatusReason": f"Execution is {self.status} and cannot be redriven",
            "StartDate": self.start_date,
            "StateMachineArn": state_machine_arn,
            "Status": self.status,
            "StopDate": self.stop_date,
        }
        if self.status == "SUCCEEDED":
            entry["Output"] = _ascii_json(self.output, self.output_text)
            entry["OutputDetails"] = {"Included": True}
        else:
            entry.update(
                {key: value for key, value in (("Error", self.error), ("Cause", self.cause)) if value}
            )
        return entry


def _ascii_json(value: Any, text: str) -> str:
    """``value`` as compact JSON text with characters past ``~`` escaped; ``text`` is its compact text
    with them kept (or "" if unknown), the same when it has none."""
    if text and text.isascii() and "\x7f" not in text:
        return text
    return json.dumps(value, separators=(",", ":"))


@dataclass
class MapRun:
    """A Distributed Map's run: its ARN, label, and child executions (in item order)."""

    arn: str
    label: str
    executions: list[ChildExecution] = field(default_factory=list)
    status: str = "RUNNING"

    @property
    def id(self) -> str:
        return self.arn.rsplit(":", 1)[-1]


TRANSFORMATIONS = ("NONE", "COMPACT", "FLATTEN")
OUTPUT_TYPES = ("JSON", "JSONL")


def writer_config(writer: dict[str, Any] | None) -> tuple[str, str]:
    """ResultWriter's (Transformation, OutputType) with AWS's defaults: NONE when results are
    exported to the object store without a WriterConfig, COMPACT when there is no ResultWriter."""
    writer = writer or {}
    config = writer.get("WriterConfig") or {}
    default = "NONE" if "Resource" in writer else "COMPACT"
    return str(config.get("Transformation", default)), str(config.get("OutputType", "JSON"))


def transform(executions: list[ChildExecution], transformation: str, state_machine_arn: str) -> list[Any]:
    """The child executions' results as ``transformation`` shapes them, in item order: NONE keeps
    every execution's record (ARN, input, output, status ...); COMPACT keeps the outputs; FLATTEN
    also splices an output that is an array into the list. A failed execution's record is kept
    whole by every transformation."""
    results: list[Any] = []
    for execution in executions:
        if transformation == "NONE" or execution.status != "SUCCEEDED":
            results.append(execution.record(state_machine_arn))
        elif transformation == "FLATTEN" and isinstance(execution.output, list):
            results += execution.output
        else:
            results.append(execution.output)
    return results


def write_results(
    storage: ObjectStorage | None,
    writer: dict[str, Any],
    arguments: Any,
    run: MapRun,
    state_machine_arn: str,
) -> Any:
    """ResultWriter: the Map's output. With a Resource, the result files and manifest.json are
    written to the object store and their location is the output; with a WriterConfig alone, the
    transformed results are."""
    transformation, output_type = writer_config(writer)
    if "Resource" not in writer:
        return transform(run.executions, transformation, state_machine_arn)
    if storage is None:
        raise StatesError(RESULT_WRITER_FAILED, "no object store was given to the engine for ResultWriter")
    bucket = arguments.get("Bucket") if isinstance(arguments, dict) else None
    if not isinstance(bucket, str):
        raise StatesError(
            RESULT_WRITER_FAILED, "ResultWriter needs a Bucket (in its Parameters or Arguments)"
        )
    prefix = str(arguments.get("Prefix", "")).strip("/")
    folder = f"{prefix}/{run.id}" if prefix else run.id
    groups = {
        "FAILED": [e for e in run.executions if e.status in ("FAILED", "TIMED_OUT", "ABORTED")],
        "PENDING": [e for e in run.executions if e.status in ("RUNNING", "PENDING")],
        "SUCCEEDED": [e for e in run.executions if e.status == "SUCCEEDED"],
    }
    files: dict[str, list[dict[str, Any]]] = {}
    for status, chosen in groups.items():
        files[status] = []
        for number, chunk in enumerate(_chunks(transform(chosen, transformation, state_machine_arn))):
            # AWS names the files .json whatever the OutputType.
            key = f"{folder}/{status}_{number}.json"
            body = _encode(chunk, output_type == "JSONL")
            _put(storage, bucket, key, body)
            files[status].append({"Key": key, "Size": len(body)})
    manifest = {
        "DestinationBucket": bucket,
        "MapRunArn": run.arn,
        "ResultFiles": files,
    }
    _put(storage, bucket, f"{folder}/manifest.json", json.dumps(manifest).encode())
    return {"MapRunArn": run.arn, "ResultWriterDetails": {"Bucket": bucket, "Key": f"{folder}/manifest.json"}}


def _put(storage: ObjectStorage, bucket: str, key: str, body: bytes) -> None:
    try:
        storage.put_object(bucket, key, body)
    except ValueError as exc:
        raise StatesError(RESULT_WRITER_FAILED, str(exc)) from None


def _chunks(entries: list[Any]) -> list[list[Any]]:
    chunks: list[list[Any]] = []
    size = 0
    for entry in entries:
        entry_size = _size(entry)
        if not chunks or size + entry_size > RESULT_FILE_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += entry_size
    return chunks


def _encode(entries: list[Any], lines: bool) -> bytes:
    if lines:
        return "".join(json.dumps(entry) + "\n" for entry in entries).encode()
    return json.dumps(entries).encode()
