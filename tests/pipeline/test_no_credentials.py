"""No log line or artifact of a run holds a credential: a run started with (fake) AWS credentials in its
environment leaves none of them, nor anything shaped like one, in its run folder (history, functions.log,
job logs and outputs, model archive), the registry's rows, or what the command prints."""

from __future__ import annotations

import gzip
import lzma
import re
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvpipe.cli import main

pytestmark = pytest.mark.e2e

# Shaped like real ones (AWS's documented formats), random enough to match nothing else.
FAKE = {
    "AWS_ACCESS_KEY_ID": "AKIAQ7ZX3K5W2M9R4T6Y",
    "AWS_SECRET_ACCESS_KEY": "q8Wv/3nZr+T5yLk2Hj7Pc9Xm4Bd6Fs1Ga0Ne8Uik",
    "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD" + "x" * 80,
}
SHAPES = {
    "access key id": re.compile(rb"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}\b"),
    "secret access key": re.compile(rb"(?i)aws_?secret_?access_?key\W{0,4}[A-Za-z0-9/+]{40}"),
    "session token": re.compile(rb"(?i)aws_?session_?token\W{0,4}[A-Za-z0-9/+=]{40,}"),
}


def contents(home: Path) -> Iterator[tuple[str, bytes]]:
    """(where, bytes) of every file under ``home``, compressed ones also unpacked, and every registry row."""
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield str(path.relative_to(home)), data
        if data[:6] == b"\xfd7zXZ\x00":
            yield f"{path.relative_to(home)} (unxzed)", lzma.decompress(data)
        if data[:2] == b"\x1f\x8b":
            unpacked = gzip.decompress(data)
            yield f"{path.relative_to(home)} (gunzipped)", unpacked
            if path.name.endswith(".tar.gz"):
                with tarfile.open(path) as archive:
                    for member in archive.getmembers():
                        stream = archive.extractfile(member)
                        if stream:
                            yield f"{path.relative_to(home)}:{member.name}", stream.read()
    with sqlite3.connect(home / "registry.sqlite") as db:
        for table in ("model_package_groups", "model_packages"):
            for row in db.execute(f"SELECT * FROM {table}"):
                yield f"registry {table}", repr(row).encode()


def test_a_run_leaves_no_credential_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    for name, value in FAKE.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "home"
    common = ["run", "--home", str(home), "--workers", "1", "--set", "cv.k=2"]

    # A registered model, and a run refused by its split job: both paths write logs.
    assert (
        main(
            [
                *common,
                "--name",
                "good",
                "--set",
                "tuning.max_candidates=2",
                "--set",
                "tuning.sample_grid=true",
            ]
        )
        == 0
    )
    assert main([*common, "--name", "refused", "--set", "dataset.target=colour"]) == 2
    printed = capfd.readouterr()

    found = [("stdout", printed.out.encode()), ("stderr", printed.err.encode()), *contents(home)]
    assert any(where.endswith("functions.log") for where, _ in found)
    assert any("/jobs/" in where for where, _ in found)
    assert any(where.startswith("registry model_packages") for where, _ in found)
    leaks = [
        f"{where}: {what}"
        for where, data in found
        for what, shape in {
            **SHAPES,
            **{name: re.compile(re.escape(v.encode())) for name, v in FAKE.items()},
        }.items()
        if shape.search(data)
    ]
    assert leaks == []


@pytest.mark.parametrize(
    "line",
    [
        f"key={FAKE['AWS_ACCESS_KEY_ID']}",
        f"aws_secret_access_key = {FAKE['AWS_SECRET_ACCESS_KEY']}",
        f'"AWS_SESSION_TOKEN": "{FAKE["AWS_SESSION_TOKEN"]}"',
    ],
)
def test_the_shapes_find_what_they_look_for(line: str) -> None:
    assert any(shape.search(line.encode()) for shape in SHAPES.values())
