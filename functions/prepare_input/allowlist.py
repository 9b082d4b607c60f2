"""Which packages an execution input may name classes from (estimators, splitters, scorers).

A dotted name is checked against the allowed top-level packages before anything is imported:
importing ``package.module`` runs the top-level code of ``package`` and ``package.module``, so a
name from an execution input must never reach ``importlib`` unchecked. scikit-learn is always
allowed; the stack parameter ``AllowedPackages`` (locally, the environment variable
``CVPIPE_ALLOWED_PACKAGES`` of ``cvpipe run``) adds packages that the job image ships. The input
itself can never extend the list.

The same file is deployed with the PrepareInput function and the job image (neither may import the
other); a test keeps the two copies identical.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

ALLOWED_PACKAGES_VARIABLE = "CVPIPE_ALLOWED_PACKAGES"
DEFAULT_PACKAGES = frozenset({"sklearn"})
HOW_TO_EXTEND = (
    f"to allow another package that the job image ships, add its top-level name to the stack parameter "
    f"AllowedPackages (locally: the environment variable {ALLOWED_PACKAGES_VARIABLE}, comma-separated)"
)
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NotAllowedError(ValueError):
    """A name outside the allowed packages, or a malformed list of packages."""


def allowed_packages(environ: Mapping[str, str]) -> frozenset[str]:
    """scikit-learn plus the comma-separated top-level package names in ``CVPIPE_ALLOWED_PACKAGES``."""
    names = {name.strip() for name in environ.get(ALLOWED_PACKAGES_VARIABLE, "").split(",") if name.strip()}
    bad = sorted(name for name in names if not _PACKAGE.match(name))
    if bad:
        raise NotAllowedError(
            f"{ALLOWED_PACKAGES_VARIABLE}: {', '.join(map(repr, bad))} are not top-level package names: "
            "list names such as xgboost,lightgbm, separated by commas"
        )
    return DEFAULT_PACKAGES | names


def check_allowed(dotted_name: str, allowed: frozenset[str]) -> None:
    """Refuse ``dotted_name`` unless its top-level package is in ``allowed``; imports nothing."""
    package = dotted_name.strip().split(".", 1)[0]
    if package not in allowed:
        raise NotAllowedError(
            f"{dotted_name!r} is in package {package!r}, which is not allowed (allowed: "
            f"{', '.join(sorted(allowed))}): {HOW_TO_EXTEND}"
        )
