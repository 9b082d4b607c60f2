"""The functions' and the image's dependencies are locked: exact versions with hashes, what a
vulnerability scan (pip-audit, see README.md) reads, and what sam build and docker build install."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\]+) \\$")


def locked(path: Path) -> dict[str, str]:
    """name -> version of a pip-compile --generate-hashes file; every pin must carry hashes."""
    lines = path.read_text().splitlines()
    versions = {}
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            match = PIN.match(line)
            assert match, f"{path.name}: {line!r} is not an exact pin"
            assert lines[i + 1].strip().startswith("--hash=sha256:"), f"{path.name}: {line!r} has no hash"
            versions[match[1].lower().replace("_", "-")] = match[2]
    return versions


def names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[\[<>=!~ ;]", line.strip(), maxsplit=1)[0].lower() for line in requirements if line.strip()
    }


def test_every_function_installs_the_lock() -> None:
    # The functions, and the layer of workflow documents they share.
    folders = [folder for folder in FUNCTIONS.iterdir() if (folder / "requirements.txt").exists()]
    assert {"prepare_input", "shared"} <= {folder.name for folder in folders}
    for folder in folders:
        assert (folder / "requirements.txt").resolve() == FUNCTIONS / "requirements.txt", folder.name


def test_the_functions_lock_pins_every_requirement_with_hashes() -> None:
    wanted = names(
        [
            line
            for line in (FUNCTIONS / "requirements.in").read_text().splitlines()
            if not line.startswith("#")
        ]
    )
    assert wanted <= set(locked(FUNCTIONS / "requirements.txt"))


def test_the_image_lock_pins_what_the_image_and_the_tests_run() -> None:
    versions = locked(ROOT / "containers" / "requirements.lock")
    constraints = dict(
        line.split("==")
        for line in (ROOT / "containers" / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    assert {name.lower(): version for name, version in constraints.items()} == versions
    dockerfile = (ROOT / "containers" / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "requirements.lock" in dockerfile
