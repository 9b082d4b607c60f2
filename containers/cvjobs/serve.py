"""``serve``: SageMaker's inference contract for the model a final training job wrote.

SageMaker hosting runs ``<image> serve`` with the model artifact (``model.tar.gz``) extracted into
``/opt/ml/model``, and sends ``GET /ping`` (healthy: 200) and ``POST /invocations`` to port 8080
(``SAGEMAKER_BIND_TO_PORT`` when it says otherwise). The image that trained the model serves it, so the
model is unpickled by the same scikit-learn and numpy versions that fitted it.

Requests hold rows of the training features:
- ``text/csv``: with a header naming exactly the training columns in their order (other, missing or
  reordered columns are refused with the columns named), or without one, the features in training order;
- ``application/json``: ``{"instances": [...]}`` (or the bare list), each instance an object keyed by
  column name or a list of the features in training order.
Numeric features take numbers, text features any value (read as its text); an empty cell or null is a
missing value, which the model's pipeline imputes as it did in training. The answer is one prediction
per row: ``text/csv`` (one per line) or ``application/json``
(``{"predictions": [...]}``), as the ``Accept`` header asks, else in the request's content type.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from cvjobs.data import MISSING_TOKENS, check_columns
from cvjobs.job import UserError, log, quote_names

DEFAULT_PORT = 8080
# SageMaker real-time endpoints take at most 6 MB per request.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
CSV = "text/csv"
JSON = "application/json"


class BadRequest(Exception):
    """A request the model cannot answer; the message says what to send instead."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServedModel:
    estimator: Any
    features: list[str]
    categorical: frozenset[str]
    """Features read as text (one-hot or ordinal encoded by the pipeline); the others are numbers."""
    target: str

    def predict(self, rows: list[list[Any]]) -> list[Any]:
        return [_plain(value) for value in self.estimator.predict(self.frame(rows))]

    def frame(self, rows: list[list[Any]]) -> pd.DataFrame:
        """The rows as the table the pipeline was fitted on: numbers as float64, text as str, NaN where
        missing (the pipeline imputes, or its estimator takes NaN, or it refuses)."""
        if not rows:
            raise BadRequest("no rows: send at least one row of features")
        columns = {
            name: [
                (_text if name in self.categorical else _number)(row[j], name, i)
                for i, row in enumerate(rows)
            ]
            for j, name in enumerate(self.features)
        }
        frame = pd.DataFrame(columns, columns=self.features)
        for name in self.categorical:
            frame[name] = frame[name].astype(object)
        return frame


def load_model(model_dir: Path) -> ServedModel:
    """The final training job's model: ``model.joblib`` and ``metadata.json`` (the training columns)."""
    metadata = json.loads((model_dir / "metadata.json").read_text())
    return ServedModel(
        joblib.load(model_dir / "model.joblib"),
        metadata["feature_names"],
        frozenset(metadata.get("categorical_features", [])),
        metadata["target"],
    )


def _plain(value: Any) -> Any:
    """A numpy scalar as the JSON value it stands for."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _missing(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and cell.strip().lower() in MISSING_TOKENS)


def _number(cell: Any, column: str, row: int) -> float:
    if _missing(cell):
        return math.nan
    if isinstance(cell, bool):
        raise BadRequest(f"row {row + 1}, column {column!r}: {cell!r} is not a number")
    try:
        value = float(cell)
    except (TypeError, ValueError):
        raise BadRequest(f"row {row + 1}, column {column!r}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"row {row + 1}, column {column!r}: {cell!r} is not a finite number")
    return value


def _text(cell: Any, column: str, row: int) -> Any:
    if _missing(cell):
        return math.nan
    if isinstance(cell, dict | list):
        raise BadRequest(f"row {row + 1}, column {column!r}: expected a single value, got {cell!r}")
    # As the split read the table: booleans and numbers in a text column are their text.
    return cell.strip() if isinstance(cell, str) else str(cell)


def _by_position(rows: list[list[Any]], features: list[str]) -> list[list[Any]]:
    for i, row in enumerate(rows):
        if len(row) != len(features):
            raise BadRequest(
                f"row {i + 1} has {len(row)} values, the model takes {len(features)} features in this order: "
                f"{', '.join(features)} (or send a header naming them)"
            )
    return rows


def _by_name(header: list[str], rows: list[list[Any]], features: list[str]) -> list[list[Any]]:
    """Rows under a header: the header must name the training columns, in their order, and no others,
    so that data laid out differently is refused rather than silently realigned."""
    try:
        check_columns(features, header)
    except UserError as exc:
        raise BadRequest(str(exc)) from None
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise BadRequest(f"row {i + 1} has {len(row)} values, the header has {len(header)}")
    return rows


def parse_csv(text: str, features: list[str]) -> list[list[Any]]:
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    header = [cell.strip() for cell in rows[0]] if rows else []
    if set(features) & set(header):  # a first row naming a training column is a header
        return _by_name(header, rows[1:], features)
    return _by_position(rows, features)


def parse_json(document: Any, features: list[str]) -> list[list[Any]]:
    instances = document.get("instances") if isinstance(document, dict) else document
    if not isinstance(instances, list):
        raise BadRequest('send {"instances": [...]}: a list of objects keyed by column, or of feature lists')
    rows = []
    for i, instance in enumerate(instances):
        if isinstance(instance, dict):
            missing = [name for name in features if name not in instance]
            if missing:
                raise BadRequest(f"instance {i + 1} lacks the training column(s) {quote_names(missing)}")
            rows.append([instance[name] for name in features])
        elif isinstance(instance, list):
            rows.append(_by_position([instance], features)[0])
        else:
            raise BadRequest(f"instance {i + 1} must be an object keyed by column or a list of features")
    return rows


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def invoke(
    model: ServedModel, body: bytes, content_type: str | None, accept: str | None
) -> tuple[bytes, str]:
    """Answer one ``/invocations`` request: (response body, its content type)."""
    kind = _media_type(content_type) or CSV
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text") from None
    if kind == CSV:
        rows = parse_csv(text, model.features)
    elif kind == JSON:
        try:
            rows = parse_json(json.loads(text), model.features)
        except json.JSONDecodeError as error:
            raise BadRequest(f"the request body is not valid JSON ({error})") from None
    else:
        raise BadRequest(f"content type {kind!r}: send {CSV} or {JSON}", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
    answer = _answer_type(accept, kind)
    predictions = model.predict(rows)
    if answer == JSON:
        return json.dumps({"predictions": predictions}).encode(), JSON
    lines = io.StringIO()
    csv.writer(lines, lineterminator="\n").writerows([prediction] for prediction in predictions)
    return lines.getvalue().encode(), CSV


def _answer_type(accept: str | None, request_type: str) -> str:
    wanted = [_media_type(part) for part in (accept or "").split(",") if part.strip()]
    for media_type in wanted or ["*/*"]:
        if media_type in (CSV, JSON):
            return media_type
        if media_type in ("*/*", "text/*", "application/*"):
            return request_type
    raise BadRequest(f"Accept {accept!r}: the model answers in {CSV} or {JSON}", HTTPStatus.NOT_ACCEPTABLE)


def make_server(model: ServedModel, port: int, host: str = "") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._reply(HTTPStatus.OK, b"", "text/plain")
            elif self.path == "/execution-parameters":  # batch transform asks how to batch
                parameters = {
                    "MaxConcurrentTransforms": os.cpu_count() or 1,
                    "BatchStrategy": "MULTI_RECORD",
                    "MaxPayloadInMB": MAX_REQUEST_BYTES // (1024 * 1024),
                }
                self._reply(HTTPStatus.OK, json.dumps(parameters).encode(), JSON)
            else:
                self._reply(
                    HTTPStatus.NOT_FOUND, b"not found: GET /ping or POST /invocations\n", "text/plain"
                )

        def do_POST(self) -> None:
            if self.path != "/invocations":
                self._reply(HTTPStatus.NOT_FOUND, b"not found: POST /invocations\n", "text/plain")
                return
            try:
                length = int(self.headers.get("Content-Length") or "")
            except ValueError:
                self._reply(HTTPStatus.LENGTH_REQUIRED, b"Content-Length required\n", "text/plain")
                return
            if length > MAX_REQUEST_BYTES:
                self.close_connection = True
                message = f"{length} bytes: send at most {MAX_REQUEST_BYTES} per request\n"
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message.encode(), "text/plain")
                return
            body = self.rfile.read(length)
            try:
                answer, content_type = invoke(
                    model, body, self.headers.get("Content-Type"), self.headers.get("Accept")
                )
            except BadRequest as error:
                self._reply(error.status, (str(error) + "\n").encode(), "text/plain")
                return
            except ValueError as error:  # what the estimator itself refuses
                self._reply(
                    HTTPStatus.BAD_REQUEST, f"the model refused the rows: {error}\n".encode(), "text/plain"
                )
                return
            self._reply(HTTPStatus.OK, answer, content_type)

        def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # the base class names it format
            log("serve", format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(model_dir: Path | None = None, port: int | None = None) -> int:
    # SM_MODEL_DIR as SageMaker's framework images read it; a local `serve` points it at a model.
    model_dir = model_dir or Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    port = port if port is not None else int(os.environ.get("SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT))
    try:
        model = load_model(Path(model_dir))
    except (OSError, KeyError, ValueError) as error:
        log("serve", f"error: cannot load the model from {model_dir}: {error}")
        return 1
    server = make_server(model, port)
    # SageMaker stops a container with SIGTERM: finish the requests in flight, then exit.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log("serve", f"serving {model_dir} ({len(model.features)} features -> {model.target}) on port {port}")
    with server:
        server.serve_forever()
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
