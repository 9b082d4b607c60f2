"""The registered model is deployable: the package names the job image and the final model artifact,
and the image's `serve` program, given that artifact, predicts what the model fitted locally predicts."""

from __future__ import annotations

import csv
import http.client
import json
import os
import socket
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .conftest import IRIS, ROOT

pytestmark = pytest.mark.e2e

INPUT = {
    "dataset": {"uri": str(IRIS), "target": "species"},
    "cv": {"k": 3, "seed": 7},
    "model": {"estimator": "SVC", "search_space": {"C": {"values": [0.5, 5.0]}}},
    "registry": {"group": "serving-test"},
}
TIMEOUT = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(port: int, body: bytes, content_type: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_for_ping(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            connection.request("GET", "/ping")
            assert connection.getresponse().status == 200
            connection.close()
            return
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "serve did not answer /ping within 60 s"
            time.sleep(0.1)


def test_the_registered_package_serves_the_local_models_predictions(pipeline, tmp_path):
    run = pipeline.run(INPUT, name="serving-1")
    assert run.status == "SUCCEEDED", run.cause
    package = pipeline.registry.describe_model_package(run.output["model_package_arn"])
    (container,) = package["InferenceSpecification"]["Containers"]
    assert container["Image"]  # the job image, which holds the serve program
    assert {"text/csv", "application/json"} <= set(package["InferenceSpecification"]["SupportedContentTypes"])

    # What SageMaker hosting does: extract ModelDataUrl into /opt/ml/model, run `<image> serve`.
    model_dir = tmp_path / "model"
    with tarfile.open(pipeline.store.path(container["ModelDataUrl"])) as archive:
        archive.extractall(model_dir, filter="data")
    port = free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "containers"),
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cvjobs.serve"], env=environment, stderr=subprocess.PIPE
    )
    try:
        wait_for_ping(port, process)
        with IRIS.open() as stream:
            records = list(csv.DictReader(stream))
        features = [name for name in records[0] if name != "species"]
        # The training CSV without its target: the header names the features in training order.
        table = [",".join(features)] + [",".join(record[name] for name in features) for record in records]
        status, body = post(port, "\n".join(table).encode(), "text/csv")
        assert status == 200, body
        served = body.decode().splitlines()
        status, body = post(port, IRIS.read_bytes(), "text/csv")  # the target is not a feature
        assert status == 400 and b"unexpected 'species'" in body, body
        instances = {"instances": [{name: float(record[name]) for name in features} for record in records]}
        status, body = post(port, json.dumps(instances).encode(), "application/json")
        assert status == 200, body
        assert json.loads(body)["predictions"] == served
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)

    # The local model: the best candidate refitted with scikit-learn on every row.
    best = run.output["best"]["params"]
    X = np.array([[float(record[name]) for name in features] for record in records])
    y = np.array([record["species"] for record in records])
    local = Pipeline([("scaler", StandardScaler()), ("estimator", SVC(**best, random_state=7))]).fit(X, y)
    assert served == local.predict(X).tolist()
