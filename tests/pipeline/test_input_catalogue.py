"""The bad-input catalogue: every mistake knowable from the input, the data and the estimator's parameters
is refused before any training job, through the command line, with exit 2, one message naming the field or
the file, no traceback, and the registry as it was."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cvpipe.cli import main

from .conftest import IRIS

pytestmark = pytest.mark.e2e

TRAP = "cvpipe_trap"
TRAP_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")
from sklearn.svm import SVC as Model
"""


@pytest.fixture
def trap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package that leaves a marker file when imported (one per test); returns where the marker would be."""
    folder = tmp_path_factory.mktemp("trap")
    marker = folder / "imported.marker"
    (folder / TRAP).mkdir()
    (folder / TRAP / "__init__.py").write_text(TRAP_MODULE.format(marker=str(marker)))
    return marker


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose registry holds one model, so that "unchanged" means something."""
    home = tmp_path_factory.mktemp("home")
    arguments = ["run", "--home", str(home), "--workers", "1", "--name", "seed", "--set", "cv.k=2"]
    assert main([*arguments, "--set", "tuning.max_candidates=1", "--set", "tuning.sample_grid=true"]) == 0
    return home


@pytest.fixture
def on_path(trap: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The trap package importable here and in every worker the command starts."""
    monkeypatch.syspath_prepend(str(trap.parent))
    monkeypatch.setenv("PYTHONPATH", str(trap.parent))
    return trap


def registry_rows(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "registry.sqlite") as db:
        return db.execute("SELECT arn, version, request FROM model_packages ORDER BY arn").fetchall()


def training_jobs(home: Path) -> list[str]:
    runs = home / "s3" / "cvpipe-local-artifacts" / "runs"
    return sorted(
        job.name
        for job in runs.glob("*/jobs/*")
        if job.parent.parent.name != "seed" and "-split-" not in job.name
    )


def csv_with(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def zipped_iris(tmp: Path) -> Path:
    path = tmp / "iris.csv"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(IRIS, "iris.csv")
    return path


def big_input(tmp: Path) -> Path:
    weights = {str(i): 1.0 for i in range(30_000)}
    document = {
        "dataset": {"uri": str(IRIS), "target": "species"},
        "model": {"params": {"class_weight": weights}},
    }
    path = tmp / "big.json"
    path.write_text(json.dumps(document))
    return path


# id, arguments after `cvpipe run --home H --workers 1` ({tmp}: a fresh folder), what the message names.
CATALOGUE: list[tuple[str, Callable[[Path], list[str]], list[str]]] = [
    (
        "estimator-outside-allowlist",
        lambda tmp: ["--set", f"model.estimator={TRAP}.Model"],
        ["model.estimator:", f"package {TRAP!r}, which is not allowed", "CVPIPE_ALLOWED_PACKAGES"],
    ),
    (
        "twenty-unknown-hyperparameters",
        lambda tmp: ["--set", "model.params=" + json.dumps({f"parameter_{i:02}": i for i in range(20)})],
        ["SVC has no parameter(s) 'parameter_00'", "'parameter_19'"],
    ),
    (
        "invalid-fixed-value",
        lambda tmp: ["--set", 'model.params={"decision_function_shape": "banana"}'],
        ["model.params: SVC refuses it", "'decision_function_shape' parameter of SVC", "Got 'banana'"],
    ),
    (
        "invalid-searched-value",
        lambda tmp: ["--set", 'model.search_space={"C": {"values": [1.0, -1.0]}}'],
        ["model.search_space.C: SVC refuses it", "Got -1.0"],
    ),
    (
        "non-finite-value",
        lambda tmp: ["--set", "model.params.C=Infinity"],
        ["model.params.C: input should be a finite number"],
    ),
    (
        "grid-narrower-than-float-resolution",
        lambda tmp: [
            "--set",
            'model.search_space={"C": {"type": "float", "low": 1, "high": 1.0000000000000002, "steps": 5}}',
        ],
        ["model.search_space.C.steps: only 2 of the 5 grid points", "set steps to 2"],
    ),
    (
        "input-over-the-payload-limit",
        lambda tmp: ["--input", str(big_input(tmp))],
        ["execution input:", "more than the 262144 bytes (256 KiB) Step Functions accepts"],
    ),
    (
        "infinite-feature",
        lambda tmp: [
            "--dataset",
            str(
                csv_with(
                    tmp,
                    "inf.csv",
                    "x,y\n" + "".join(f"{'inf' if i == 3 else i},{i % 2}\n" for i in range(20)),
                )
            ),
            "--set",
            "dataset.target=y",
        ],
        ["inf.csv: feature column(s) 'x' hold infinite numbers (e.g. inf on data row 4)"],
    ),
    (
        "zip-file",
        lambda tmp: ["--dataset", str(zipped_iris(tmp)), "--set", "dataset.target=species"],
        ["iris.csv is zip-compressed: decompress it"],
    ),
    (
        "not-a-regular-file",
        lambda tmp: ["--dataset", "/dev/zero", "--set", "dataset.target=species"],
        ["dataset.uri /dev/zero: not a regular file"],
    ),
]


@pytest.mark.parametrize(
    ("arguments", "fragments"), [case[1:] for case in CATALOGUE], ids=[case[0] for case in CATALOGUE]
)
def test_each_mistake_exits_2_before_any_job_naming_the_field(
    home: Path, tmp_path: Path, on_path: Path, capfd: pytest.CaptureFixture[str], arguments, fragments
) -> None:
    before = registry_rows(home)
    capfd.readouterr()

    code = main(["run", "--home", str(home), "--workers", "1", *arguments(tmp_path)])

    err = capfd.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    assert training_jobs(home) == []
    assert registry_rows(home) == before
    assert not on_path.exists(), "the refused estimator's package was imported"


def test_a_malformed_local_allowlist_is_refused_naming_the_setting(
    home: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CVPIPE_ALLOWED_PACKAGES", "xgboost; rm -rf")
    assert main(["run", "--home", str(home), "--workers", "1"]) == 2
    err = capfd.readouterr().err
    assert "CVPIPE_ALLOWED_PACKAGES='xgboost;rm-rf': list top-level Python package names" in err
    assert "Traceback" not in err


def test_the_local_setting_extends_the_allowlist(
    home: Path, on_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The control for the marker: allowed, the package is imported, by the jobs only, and its estimator runs."""
    monkeypatch.setenv("CVPIPE_ALLOWED_PACKAGES", TRAP)
    arguments = ["--name", "allowed", "--set", f"model.estimator={TRAP}.Model", "--set", "cv.k=2"]
    code = main(
        [
            "run",
            "--home",
            str(home),
            "--workers",
            "1",
            *arguments,
            "--set",
            "tuning.max_candidates=1",
            "--set",
            "tuning.sample_grid=true",
        ]
    )
    assert code == 0, capfd.readouterr().err
    assert on_path.read_text() == "imported"
