"""The execution input checked on this machine by the PrepareInput function itself, before anything
reaches AWS: run in a local Lambda execution environment as the local engine runs it, so that the
validation is PrepareInput's own code, never a copy.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

from ..asl.errors import StatesError
from ..errors import UserError
from ..integrations.lambda_ import LocalFunctions
from ..integrations.template import Template, TemplateError
from ..stdio import stdout_to
from . import contract
from .local import LOCAL_PARAMETERS

PREPARE_INPUT_FOLDER = "prepare_input"
# The stack parameter behind PrepareInput's allowlist of packages (CVPIPE_ALLOWED_PACKAGES).
ALLOWED_PACKAGES_PARAMETER = "AllowedPackages"
MAX_PARALLEL_JOBS_PARAMETER = "MaxParallelJobs"
# A dotted class name (package.module.Class): its package may be allowed by the stack.
_DOTTED_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def packages_named(document: Any) -> set[str]:
    """The top-level packages of every dotted name in the document (estimators, splitters, scorers)."""
    if isinstance(document, dict):
        return set().union(*map(packages_named, document.values()))
    if isinstance(document, list):
        return set().union(*map(packages_named, document))
    match = _DOTTED_NAME.match(document) if isinstance(document, str) else None
    return {match.group(1)} if match else set()


def check_input(
    root: Path, document: dict[str, Any], execution: str, parameters: dict[str, str] | None = None
) -> None:
    """Run PrepareInput on ``document`` as the execution ``execution`` would, with the stack's
    ``parameters`` (default: the template's); a refused input raises ``UserError`` (exit 2) listing
    every bad field."""
    try:
        template = Template(root / contract.TEMPLATE, parameters={**LOCAL_PARAMETERS, **(parameters or {})})
        functions = template.functions()
    except TemplateError as error:
        raise UserError(str(error)) from None
    folder = (root / "functions" / PREPARE_INPUT_FOLDER).resolve()
    (name,) = [name for name, spec in functions.items() if spec.code_uri == folder]
    # The payload the definition's first state sends (its ${MaxParallelJobs} arrives as text).
    event = {
        "input": document,
        "execution": execution,
        "started": "",
        "max_parallel_jobs": str(template.resolve({"Ref": MAX_PARALLEL_JOBS_PARAMETER})),
    }
    local = LocalFunctions({name: functions[name]}, root)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with stdout_to(devnull):  # the function's logs and metrics; its answer is what matters here
            local.invoke(name, event, str(uuid.uuid4()))
    except StatesError as error:
        cause = json.loads(error.cause or "{}")
        message = cause.get("errorMessage", error.cause)
        if error.error == contract.FUNCTION_INPUT_ERRORS[PREPARE_INPUT_FOLDER]:
            raise UserError(message) from None
        raise UserError(
            f"could not check the input with PrepareInput here ({error.error}: {message})", 1
        ) from None
    finally:
        local.close()
        os.close(devnull)
