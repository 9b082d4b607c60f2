"""The SageMaker Model Registry of an account, read through the calls the local registry answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .clients import Aws, aws_errors


def _text_times(document: dict[str, Any]) -> dict[str, Any]:
    """boto3 gives datetimes; the local registry, like the aws-sdk integrations, ISO-8601 text."""
    return {
        key: value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if isinstance(value, datetime)
        else value
        for key, value in document.items()
    }


class SageMakerRegistry:
    """``list_model_packages`` and ``describe_model_package`` as ``LocalModelRegistry`` has them."""

    def __init__(self, aws: Aws) -> None:
        self._sagemaker = aws.client("sagemaker")

    def list_model_packages(self, group: str | None = None) -> dict[str, Any]:
        """Versioned packages, newest first: of one group, or of every group."""
        request: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending"}
        if group:
            request["ModelPackageGroupName"] = group
        else:
            request["ModelPackageType"] = "Versioned"
        summaries = []
        with aws_errors():
            for page in self._sagemaker.get_paginator("list_model_packages").paginate(**request):
                summaries += [_text_times(summary) for summary in page["ModelPackageSummaryList"]]
        return {"ModelPackageSummaryList": summaries}

    def describe_model_package(self, arn: str) -> dict[str, Any]:
        with aws_errors():
            return _text_times(self._sagemaker.describe_model_package(ModelPackageName=arn))
