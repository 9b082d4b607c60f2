"""`cvpipe models list`: the model packages in the local model registry."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, Protocol

from ..errors import UserError
from ..integrations.registry import LocalModelRegistry
from ..integrations.store import LocalObjectStore
from .local import local_home


class Registry(Protocol):
    """What the listing reads: the local registry, or SageMaker's (cvpipe.aws.registry)."""

    def list_model_packages(self, group: str | None = None) -> dict[str, Any]: ...

    def describe_model_package(self, name_or_arn: str) -> dict[str, Any]: ...


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="the model registry (local, or SageMaker's with --aws)")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list registered model packages, newest first")
    listing.add_argument("--group", help="only this model package group")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.add_argument("--home", type=Path, help="local state folder (default: $CVPIPE_HOME or ./.cvpipe)")
    listing.add_argument("--aws", action="store_true", help="the SageMaker Model Registry of the AWS account")
    listing.add_argument("--region", help="with --aws: AWS region (default: the profile's, or AWS_REGION)")
    listing.add_argument("--profile", help="with --aws: AWS profile")
    listing.set_defaults(handler=list_command)


def model_rows(registry: Registry, group: str | None) -> list[dict[str, Any]]:
    rows = []
    for summary in registry.list_model_packages(group)["ModelPackageSummaryList"]:
        package = registry.describe_model_package(summary["ModelPackageArn"])
        metadata = package.get("CustomerMetadataProperties", {})
        rows.append(
            {
                "group": package["ModelPackageGroupName"],
                "version": package["ModelPackageVersion"],
                "arn": package["ModelPackageArn"],
                "approval_status": package["ModelApprovalStatus"],
                "created": package["CreationTime"],
                "metric": metadata.get("metric"),
                "cv_mean": _number(metadata.get("cv_mean")),
                "cv_std": _number(metadata.get("cv_std")),
                "estimator": metadata.get("estimator"),
                "execution": metadata.get("execution"),
            }
        )
    return rows


def _number(text: str | None) -> float | None:
    return None if text is None else float(text)


def read_rows(home: Path, group: str | None) -> list[dict[str, Any]]:
    """The registry's rows; a home that is missing or has no registry yet holds none."""
    database = home / "registry.sqlite"
    if home.exists() and not home.is_dir():
        raise UserError(f"local state folder {home} is not a folder: choose another --home or $CVPIPE_HOME")
    if not database.exists():
        return []
    try:
        return model_rows(LocalModelRegistry(database, LocalObjectStore(home / "s3")), group)
    except (OSError, sqlite3.Error) as error:
        raise UserError(
            f"local state folder {home}: cannot read the model registry {database.name} ({error}): check that the "
            "folder and the file are readable and writable, or move a damaged file aside (the next run starts a "
            "new registry)"
        ) from None


def list_command(args: argparse.Namespace) -> int:
    if args.aws:
        from ..aws.clients import Aws
        from ..aws.registry import SageMakerRegistry

        where = "the SageMaker Model Registry"
        try:
            rows = model_rows(SageMakerRegistry(Aws(args.region, args.profile)), args.group)
        except UserError as error:
            print(f"cvpipe models list: {error}", file=sys.stderr)
            return error.exit_code
    else:
        home = local_home(args.home)
        where = str(home / "registry.sqlite")
        try:
            rows = read_rows(home, args.group)
        except UserError as error:
            print(f"cvpipe models list: {error}", file=sys.stderr)
            return error.exit_code
    if args.json:
        json.dump({"model_packages": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print(f"no model packages in {f'group {args.group!r}' if args.group else where}")
        return 0
    # Columns as wide as their longest value, so long group or metric names keep the table aligned.
    scores = [
        "-" if row["cv_mean"] is None else f"{row['cv_mean']:.4f} ± {row['cv_std']:.4f}" for row in rows
    ]
    group_width = max(len("GROUP"), *(len(row["group"]) for row in rows))
    metric_width = max(len("METRIC"), *(len(row["metric"] or "-") for row in rows))
    score_width = max(len("CV MEAN ± STD"), *map(len, scores))
    print(
        f"{'GROUP':<{group_width}} {'VER':>3}  {'APPROVAL':<22} {'METRIC':<{metric_width}} "
        f"{'CV MEAN ± STD':<{score_width}} ARN"
    )
    for row, score in zip(rows, scores, strict=False):
        print(
            f"{row['group']:<{group_width}} {row['version']:>3}  {row['approval_status']:<22} "
            f"{row['metric'] or '-':<{metric_width}} {score:<{score_width}} {row['arn']}"
        )
    return 0
