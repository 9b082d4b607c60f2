"""The local stand-ins for an AWS account: its id, region and ARNs in the real formats."""

from __future__ import annotations

import os

ACCOUNT_ID = "000000000000"
PARTITION = "aws"


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def arn(service: str, resource: str, *, regional: bool = True) -> str:
    """``arn:aws:SERVICE:REGION:ACCOUNT:RESOURCE`` (IAM ARNs have no region)."""
    return f"arn:{PARTITION}:{service}:{region() if regional else ''}:{ACCOUNT_ID}:{resource}"
