"""SAM's own checks of the stack, as a user's `sam validate --lint` and `sam build` run them.

The SAM CLI pins boto3 and click exactly, so it lives in an environment of its own (`.venv-sam`, made
by `make test`). `sam build` builds the functions without Docker only with a Python of their runtime's
exact version (template.yaml's Globals): it is looked for on PATH, then among pyenv's versions.
Dependencies are cached under `.venv-sam` between runs (`--cached`); only a changed function pays.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cvpipe.integrations.template import Template

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAM_VENV = ROOT / ".venv-sam"
# A cold build installs every function's dependencies: minutes on a busy machine, never forever.
BUILD_TIMEOUT = 900


def sam() -> str:
    found = shutil.which("sam", path=str(SAM_VENV / "bin"))
    if not found:
        pytest.fail("the SAM CLI is not installed; run `make test`, which installs it in .venv-sam")
    return found


def function_settings(template: Template) -> dict[str, dict[str, Any]]:
    """Each function's properties with the Globals merged in, as SAM merges them."""
    defaults = template.body.get("Globals", {}).get("Function", {})
    return {
        name: {**defaults, **resource.get("Properties", {})}
        for name, resource in template.resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def runtime_version(template: Template) -> str:
    """``3.12`` for the functions' ``Runtime: python3.12`` (one runtime for all: one Python to find)."""
    (runtime,) = {settings["Runtime"] for settings in function_settings(template).values()}
    return str(runtime).removeprefix("python")


def python_bin_dir(version: str) -> Path | None:
    """The folder of a working ``python<version>``: the first on PATH that runs (a pyenv shim of a
    version that is not active does not), else one that pyenv has installed."""
    command = f"python{version}"
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder or ".") / command
        if candidate.is_file() and os.access(candidate, os.X_OK) and _runs(candidate, version):
            return _real_bin_dir(candidate)
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    pyenv = shutil.which("pyenv") or shutil.which("pyenv", path=str(pyenv_root / "bin"))
    if pyenv is None:
        return None
    listed = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, check=False)
    for name in sorted(listed.stdout.split(), reverse=True):  # the newest patch release first
        if name == version or name.startswith(f"{version}."):
            prefix = subprocess.run([pyenv, "prefix", name], capture_output=True, text=True, check=False)
            candidate = Path(prefix.stdout.strip()) / "bin" / command
            if prefix.returncode == 0 and _runs(candidate, version):
                return candidate.parent
    return None


def _runs(python: Path, version: str) -> bool:
    check = f"import sys; sys.exit(sys.version_info[:2] != {tuple(map(int, version.split('.')))})"
    try:
        return subprocess.run([str(python), "-c", check], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _real_bin_dir(python: Path) -> Path:
    """A shim's interpreter folder (pyenv's shims dispatch on the active version; sam needs the real one)."""
    executable = subprocess.run(
        [str(python), "-c", "import sys; print(sys.executable)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(executable).parent


@pytest.fixture(scope="module")
def sam_environment() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),  # validate needs one
        "SAM_CLI_TELEMETRY": "0",
    }


def test_sam_validate_lint_is_clean(sam_environment: dict[str, str]) -> None:
    result = subprocess.run(
        [sam(), "validate", "--lint", "--template-file", str(TEMPLATE)],
        capture_output=True,
        text=True,
        env=sam_environment,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_sam_build_builds_every_function_and_the_layer(sam_environment: dict[str, str]) -> None:
    template = Template(TEMPLATE)
    version = runtime_version(template)
    bin_dir = python_bin_dir(version)
    if bin_dir is None:
        message = (
            f"sam build needs Python {version} (the functions' Runtime in template.yaml) and found none on "
            f"PATH or among pyenv's versions: install it (`pyenv install {version}`, or your system's "
            f"python{version} package) and run `make test` again"
        )
        # A developer's machine may lack it (`make test` needs only Python 3.11+); CI must build.
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    build_dir = SAM_VENV / "build"
    SAM_VENV.joinpath("work").mkdir(exist_ok=True)
    result = subprocess.run(
        [
            sam(),
            "build",
            "--template-file",
            str(TEMPLATE),
            "--build-dir",
            str(build_dir),
            "--cache-dir",
            str(SAM_VENV / "cache"),
            "--cached",
            "--parallel",
        ],
        capture_output=True,
        text=True,
        env={**sam_environment, "PATH": f"{bin_dir}{os.pathsep}{sam_environment['PATH']}"},
        cwd=SAM_VENV / "work",  # sam keeps the cached dependencies under the working folder's .aws-sam/
        timeout=BUILD_TIMEOUT,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Build Succeeded" in result.stdout + result.stderr
    built = Template(build_dir / "template.yaml")
    architectures = {"arm64": "aarch64", "x86_64": "x86_64"}
    compiled = 0
    for name, settings in function_settings(template).items():
        code = build_dir / name
        assert built.resources[name]["Properties"]["CodeUri"] == name
        # Every module of the function's folder (links to shared modules included) is in its package.
        for module in (ROOT / settings["CodeUri"]).glob("*.py"):
            assert (code / module.name).read_bytes() == module.read_bytes(), f"{name}: {module.name}"
        assert (code / "aws_lambda_powertools").is_dir(), f"{name}: its requirements were not installed"
        # Compiled dependencies are those of the function's architecture, not this machine's.
        (architecture,) = settings["Architectures"]
        extensions = [path.name for path in code.rglob("*.cpython-*.so")]
        wrong = [found for found in extensions if f"-{architectures[architecture]}-linux" not in found]
        assert not wrong, f"{name} ({architecture}): {wrong[:3]}"
        compiled += len(extensions)
    assert compiled  # the check above saw the functions' compiled dependencies (pydantic-core, ...)
    for name, resource in template.resources.items():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            assert built.resources[name]["Properties"]["ContentUri"] == name
            assert (build_dir / name / "python" / "workflow_documents" / "__init__.py").is_file(), name
