"""Every command handles a broken local state folder with one message and exit 2, never a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cvpipe.cli import main

pytestmark = pytest.mark.integration


def corrupt(home: Path) -> None:
    home.mkdir()
    (home / "registry.sqlite").write_bytes(b"this is not a database" * 100)


def a_file(home: Path) -> None:
    home.write_text("not a folder")


def store_is_a_file(home: Path) -> None:
    home.mkdir()
    (home / "s3").write_text("not a folder")


def runs_folder_is_a_file(home: Path) -> None:
    (home / "s3" / "cvpipe-local-artifacts").mkdir(parents=True)
    (home / "s3" / "cvpipe-local-artifacts" / "runs").write_text("not a folder")


BROKEN = {"corrupt-registry": corrupt, "home-is-a-file": a_file, "store-is-a-file": store_is_a_file}
COMMANDS = {"models-list": ["models", "list"], "models-list-json": ["models", "list", "--json"]}


@pytest.mark.parametrize("breaks", BROKEN.values(), ids=BROKEN.keys())
@pytest.mark.parametrize("command", [*COMMANDS.values(), ["run", "--workers", "1"]], ids=[*COMMANDS, "run"])
def test_a_broken_home_is_named_with_exit_2(tmp_path: Path, capfd, breaks, command: list[str]) -> None:
    home = tmp_path / "home"
    breaks(home)
    if command[0] == "models" and breaks is store_is_a_file:
        (home / "registry.sqlite").write_bytes(b"")  # an empty file is an empty database: lists nothing
        assert main([*command, "--home", str(home)]) == 0
        return
    assert main([*command, "--home", str(home)]) == 2
    err = capfd.readouterr().err
    assert f"local state folder {home}" in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_a_run_folder_that_cannot_be_made_is_named(tmp_path: Path, capfd) -> None:
    runs_folder_is_a_file(tmp_path)
    assert main(["run", "--workers", "1", "--home", str(tmp_path)]) == 2
    err = capfd.readouterr().err
    assert "cannot create the run folder" in err and "Traceback" not in err


def test_a_registry_that_cannot_be_read_is_named(tmp_path: Path, capfd, monkeypatch) -> None:
    # Read-only as any user (root ignores file modes): the database refuses to open.
    (tmp_path / "registry.sqlite").write_bytes(b"")

    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(sqlite3, "connect", refuse)
    assert main(["models", "list", "--home", str(tmp_path)]) == 2
    err = capfd.readouterr().err
    assert "cannot read the model registry registry.sqlite (attempt to write a readonly database)" in err


def test_a_missing_home_lists_nothing(tmp_path: Path, capfd) -> None:
    assert main(["models", "list", "--home", str(tmp_path / "nowhere")]) == 0
    assert "no model packages" in capfd.readouterr().out
    assert not (tmp_path / "nowhere").exists()  # listing creates nothing
