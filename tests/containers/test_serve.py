"""`serve`: SageMaker's inference contract (GET /ping, POST /invocations on one port) for the model a
final training job wrote, answered over real HTTP on localhost."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from cvjobs import serve, split, train

CONTAINERS = Path(serve.__file__).resolve().parents[1]

pytestmark = pytest.mark.integration

IRIS = load_iris()
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
TIMEOUT = 10  # seconds, for every request


def iris_rows() -> list[list[object]]:
    return [[*map(float, x), str(IRIS.target_names[t])] for x, t in zip(IRIS.data, IRIS.target, strict=True)]


def fit_final_model(
    root: Path, header: list[str], rows: list[list[object]], target: str, estimator: str
) -> Path:
    """The final model (fitted on every row), as the split and train jobs write it into /opt/ml/model."""
    data = root / "split" / "processing" / "input" / "data.csv"
    data.parent.mkdir(parents=True)
    data.write_bytes(csv_text(rows, header))
    environ = {"CV_TARGET": target, "CV_ESTIMATOR": estimator, "CV_K": "5", "CV_SEED": "0"}
    assert split.main(root / "split", environ=environ) == 0, (
        root / "split" / "output" / "failure"
    ).read_text()
    config = root / "train" / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"C": "3.0"}))
    (root / "train" / "input" / "data").mkdir()
    (root / "train" / "input" / "data" / "train").symlink_to(root / "split" / "processing" / "output")
    assert train.main(root / "train") == 0, (root / "train" / "output" / "failure").read_text()
    return root / "train" / "model"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return fit_final_model(
        tmp_path_factory.mktemp("jobs"), [*FEATURES, "species"], iris_rows(), "species", "SVC"
    )


@pytest.fixture(scope="module")
def endpoint(model_dir):
    """The server on a free port of localhost, stopped after the module."""
    server = serve.make_server(serve.load_model(model_dir), port=0, host="127.0.0.1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def request(port: int, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request(
            method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def rows_and_expected(model_dir: Path) -> tuple[list[list[float]], list[str]]:
    rows = [row[:-1] for row in iris_rows()]
    expected = joblib.load(model_dir / "model.joblib").predict(pd.DataFrame(rows, columns=FEATURES)).tolist()
    return rows, expected


def csv_text(rows: list[list[object]], header: list[str] | None = None) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def test_ping_answers_200(endpoint):
    status, _, body = request(endpoint, "GET", "/ping")
    assert (status, body) == (200, b"")


def test_csv_without_a_header_in_training_order(endpoint, model_dir):
    rows, expected = rows_and_expected(model_dir)
    status, content_type, body = request(
        endpoint, "POST", "/invocations", csv_text(rows), Content_Type="text/csv"
    )
    assert (status, content_type) == (200, "text/csv")
    assert body.decode().splitlines() == expected


def test_csv_with_a_header_in_training_order(endpoint, model_dir):
    rows, expected = rows_and_expected(model_dir)
    status, _, body = request(
        endpoint,
        "POST",
        "/invocations",
        csv_text(rows, FEATURES),
        Content_Type="text/csv",
        Accept="application/json",
    )
    assert status == 200
    assert json.loads(body) == {"predictions": expected}


@pytest.mark.parametrize(
    ("header", "named"),
    [
        (list(reversed(FEATURES)), "another order"),
        ([*FEATURES, "species"], "unexpected 'species'"),
        (FEATURES[1:], f"missing '{FEATURES[0]}'"),
    ],
)
def test_csv_with_other_or_reordered_columns_is_refused_with_the_columns_named(
    endpoint, model_dir, header, named
):
    rows, _ = rows_and_expected(model_dir)
    table = [[row[FEATURES.index(name)] if name in FEATURES else "?" for name in header] for row in rows]
    status, _, body = request(
        endpoint, "POST", "/invocations", csv_text(table, header), Content_Type="text/csv"
    )
    assert status == 400
    assert named in body.decode()


def test_json_instances_by_name_and_by_position(endpoint, model_dir):
    rows, expected = rows_and_expected(model_dir)
    by_name = {"instances": [dict(zip(FEATURES, row, strict=True)) for row in rows[:10]]}
    by_position = rows[10:20]
    for document, wanted in ((by_name, expected[:10]), (by_position, expected[10:20])):
        status, content_type, body = request(
            endpoint, "POST", "/invocations", json.dumps(document).encode(), Content_Type="application/json"
        )
        assert (status, content_type) == (200, "application/json")
        assert json.loads(body)["predictions"] == wanted


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"sepal_length,sepal_width,petal_length\n1,2,3\n", "text/csv", 400, "'petal_width'"),
        (b"1,2,3\n", "text/csv", 400, "sepal_length, sepal_width, petal_length, petal_width"),
        (b"1,2,x,4\n", "text/csv", 400, "row 1, column 'petal_length': 'x' is not a number"),
        (b'{"instances": [{"sepal_length": 1}]}', "application/json", 400, "lacks the training column"),
        (b"{broken", "application/json", 400, "not valid JSON"),
        (b"", "text/csv", 400, "no rows"),
        (b"1,2,3,4", "application/x-parquet", 415, "send text/csv or application/json"),
    ],
)
def test_bad_requests_are_answered_with_what_to_send(endpoint, body, content_type, status, message):
    answer_status, _, answer = request(endpoint, "POST", "/invocations", body, Content_Type=content_type)
    assert answer_status == status
    assert message in answer.decode()


def test_unknown_paths_and_accept_types(endpoint):
    assert request(endpoint, "GET", "/nope")[0] == 404
    status, _, _ = request(
        endpoint, "POST", "/invocations", b"1,2,3,4\n", Content_Type="text/csv", Accept="image/png"
    )
    assert status == 406


def test_text_features_and_missing_values_reach_the_pipeline_as_in_training(tmp_path):
    """A table with a text column (one-hot encoded in the pipeline) and gaps (imputed): the server
    rebuilds the table the model was fitted on, so its answers equal the model's own."""
    rng = np.random.default_rng(0)
    colours = rng.choice(["red", "green", "blue"], size=120)
    size = rng.normal(size=120)
    label = np.where((colours == "red") | (size > 0.5), "yes", "no")
    rows = [
        [f"{s:.6f}" if i % 9 else "", c, lab]
        for i, (s, c, lab) in enumerate(zip(size, colours, label, strict=True))
    ]
    model_dir = fit_final_model(
        tmp_path, ["size", "colour", "label"], rows, target="label", estimator="LogisticRegression"
    )
    served = serve.load_model(model_dir)
    assert served.categorical == {"colour"}
    server = serve.make_server(served, port=0, host="127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        instances = [
            {"size": None if i % 9 == 0 else float(s), "colour": c}
            for i, (s, c) in enumerate(zip(size, colours, strict=True))
        ]
        status, _, body = request(
            server.server_address[1],
            "POST",
            "/invocations",
            json.dumps({"instances": instances}).encode(),
            Content_Type="application/json",
        )
        table = pd.DataFrame(
            {
                "size": [np.nan if i % 9 == 0 else s for i, s in enumerate(size)],
                "colour": colours.astype(object),
            }
        )
        assert status == 200, body
        assert (
            json.loads(body)["predictions"] == joblib.load(model_dir / "model.joblib").predict(table).tolist()
        )
        status, _, body = request(
            server.server_address[1],
            "POST",
            "/invocations",
            b"size,colour\n0.1,purple\n,red\n",
            Content_Type="text/csv",
        )
        assert status == 200, body  # an unseen category is ignored by the encoder, a gap imputed
        assert len(body.decode().splitlines()) == 2
    finally:
        server.shutdown()
        server.server_close()


def test_the_serve_program_starts_on_the_port_sagemaker_names(model_dir):
    """`serve` as SageMaker starts it: its own process, the model folder, the port from the environment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "PYTHONPATH": str(CONTAINERS),
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cvjobs.serve"], env=environment, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert request(port, "GET", "/ping")[0] == 200
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "serve did not answer /ping within 60 s"
                time.sleep(0.1)
        rows, expected = rows_and_expected(model_dir)
        status, _, body = request(port, "POST", "/invocations", csv_text(rows[:5]), Content_Type="text/csv")
        assert (status, body.decode().splitlines()) == (200, expected[:5])
    finally:
        process.terminate()  # SageMaker's stop: SIGTERM
        assert process.wait(timeout=TIMEOUT) == 0


def test_a_missing_model_stops_serve_with_a_message(tmp_path, capsys):
    assert serve.main(tmp_path, port=0) == 1
    assert "cannot load the model" in capsys.readouterr().err
