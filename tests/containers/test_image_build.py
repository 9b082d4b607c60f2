"""`make image`: the job image built for linux/amd64, run as root, pushed to the stack's repository and
named by digest. No Docker here: docker and the AWS CLI are stand-ins that record their arguments."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/cvpipe-jobrepository-abc"
DIGEST = "sha256:" + "ab" * 32

# Stand-ins: each appends its arguments to $CALLS; ECR lists the image once `docker push` has run.
FAKE_DOCKER = """#!/bin/sh
echo "docker $*" >> "$CALLS"
case "$1" in push) touch "$STATE/pushed";; login) cat > "$STATE/password";; esac
"""
FAKE_AWS = """#!/bin/sh
echo "aws $*" >> "$CALLS"
case "$2" in
  describe-stacks) echo "${STACK_OUTPUT}";;
  describe-images) if [ -e "$STATE/pushed" ]; then echo "DIGEST"; else echo "ImageNotFoundException" >&2; exit 254; fi;;
  get-login-password) echo secret;;
esac
""".replace("DIGEST", DIGEST)


def _bin(folder: Path, tools: dict[str, str]) -> Path:
    folder.mkdir()
    for name, script in tools.items():
        path = folder / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    # What the Makefile and the script use besides docker and aws.
    for tool in ("sh", "bash", "cat", "find", "sort", "sha256sum", "cut", "dirname", "touch", "make"):
        found = shutil.which(tool)
        assert found, tool
        (folder / tool).symlink_to(found)
    return folder


def make_image(tmp_path: Path, tools: dict[str, str], stack_output: str = REPOSITORY, **variables: str):
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    env = {
        "PATH": str(_bin(tmp_path / "bin", tools)),
        "CALLS": str(tmp_path / "calls"),
        "STATE": str(state),
        "STACK_OUTPUT": stack_output,
        "HOME": str(tmp_path),
    }
    arguments = [f"{name}={value}" for name, value in variables.items()]
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "image", *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return result, calls


def test_without_docker_it_fails_clearly_and_runs_nothing(tmp_path):
    result, calls = make_image(tmp_path, {"aws": FAKE_AWS})
    assert result.returncode != 0
    assert "docker is not installed" in result.stderr
    assert calls == []


def test_it_builds_for_amd64_pushes_and_prints_the_uri_by_digest(tmp_path):
    result, calls = make_image(tmp_path, {"docker": FAKE_DOCKER, "aws": FAKE_AWS}, STACK="my-stack")

    assert result.returncode == 0, result.stderr
    assert f"JobImageUri={REPOSITORY}@{DIGEST}" in result.stdout.splitlines()
    assert any(call.startswith("aws cloudformation describe-stacks --stack-name my-stack") for call in calls)
    (build,) = [call for call in calls if call.startswith("docker build")]
    assert "--platform linux/amd64" in build
    assert "--provenance=false" in build
    tag = re.search(r"--tag (\S+)", build).group(1)
    assert tag.startswith(REPOSITORY + ":")
    assert f"docker push {tag}" in calls
    assert any(
        call == "docker login --username AWS --password-stdin " + REPOSITORY.split("/", maxsplit=1)[0]
        for call in calls
    )
    assert calls.index(build) < calls.index(f"docker push {tag}")
    assert (tmp_path / "state" / "password").read_text() == "secret\n"  # on stdin, never in arguments


def test_an_image_already_pushed_is_not_built_again(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "pushed").touch()
    result, calls = make_image(tmp_path, {"docker": FAKE_DOCKER, "aws": FAKE_AWS})

    assert result.returncode == 0, result.stderr
    assert f"JobImageUri={REPOSITORY}@{DIGEST}" in result.stdout
    assert not [call for call in calls if call.startswith(("docker build", "docker push"))]


def test_a_stack_without_the_repository_is_reported(tmp_path):
    result, calls = make_image(tmp_path, {"docker": FAKE_DOCKER, "aws": FAKE_AWS}, stack_output="None")
    assert result.returncode != 0
    assert "has no JobRepositoryUri output" in result.stderr
    assert not [call for call in calls if call.startswith("docker build")]


def dry_run_tag() -> str:
    """The IMAGE_TAG that `make -n image` (make's dry run) would pass to the script."""
    dry_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), "image"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (tag,) = re.findall(r"IMAGE_TAG=([0-9a-f]{16}) ", dry_run)
    return tag


def test_the_tag_is_a_hash_of_the_image_sources():
    """Same sources, same tag (ECR tags are immutable here), so an unchanged image is not pushed again."""
    assert dry_run_tag() == dry_run_tag()


def test_the_image_runs_as_root_on_amd64_with_every_program():
    dockerfile = (ROOT / "containers" / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1) for line in dockerfile.splitlines() if line and not line.startswith("#")
    ]
    users = [
        argument.strip() for keyword, *argument in instructions if keyword == "USER" for argument in argument
    ]
    assert set(users) <= {"root", "0", "0:0"}, users
    (base,) = [argument for keyword, *argument in instructions if keyword == "FROM"]
    assert "--platform=linux/amd64" in base[0]
    scripts = tomllib.loads((ROOT / "containers" / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"train", "split", "serve"} <= set(scripts)
    assert os.access(ROOT / "containers" / "push-image.sh", os.X_OK)
