"""The console script exits without the interpreter's finalization: what the command printed and its
exit status arrive whole all the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MACHINE = {
    "StartAt": "Choose",
    "States": {
        "Choose": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Fail"}],
            "Default": "Echo",
        },
        "Echo": {"Type": "Pass", "Parameters": {"rows.$": "$.rows"}, "End": True},
        "Fail": {"Type": "Fail", "Error": "Asked", "Cause": "the input asked to fail"},
    },
}


def cvpipe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Buffered as a user's terminal or pipe is (an unflushed buffer would be lost by the exit).
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-m", "cvpipe", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        check=False,
    )


@pytest.mark.parametrize(("fail", "status"), [(False, 0), (True, 1)])
def test_the_output_and_the_exit_status_arrive_whole(tmp_path: Path, fail: bool, status: int) -> None:
    (tmp_path / "machine.asl.json").write_text(json.dumps(MACHINE))
    rows = [f"row {index} " + "x" * 100 for index in range(2000)]  # more than a pipe's buffer
    (tmp_path / "input.json").write_text(json.dumps({"fail": fail, "rows": rows}))
    result = cvpipe("asl", "run", "machine.asl.json", "--input", "input.json", cwd=tmp_path)
    assert result.returncode == status, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == ("FAILED" if fail else "SUCCEEDED")
    assert summary["output"] == (None if fail else {"rows": rows})


def test_a_refused_command_keeps_its_status_and_message(tmp_path: Path) -> None:
    result = cvpipe("run", "--home", str(tmp_path / "home"), "--input", "missing.json", cwd=tmp_path)
    assert result.returncode == 2
    assert "--input missing.json: no such file" in result.stderr


def test_a_usage_error_exits_as_argparse_says(tmp_path: Path) -> None:
    result = cvpipe("run", "--workers", "two", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid int value: 'two'" in result.stderr


def test_what_a_command_printed_to_stdout_is_flushed_before_the_exit(tmp_path: Path) -> None:
    result = cvpipe("models", "list", "--json", "--home", str(tmp_path / "home"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == json.dumps({"model_packages": []}, indent=2) + "\n"
