"""boto3 clients, made on first use, and AWS's errors turned into messages that say what to do."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError

SERVICE_FAILURE = 1
"""Exit code when AWS refused or failed a call the user's configuration allowed."""


@dataclass
class Aws:
    """One boto3 session (profile, region), its clients made when first asked for."""

    region: str | None = None
    profile: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3  # here, not at module level: only AWS commands pay for it

            with aws_errors():
                session = boto3.Session(profile_name=self.profile, region_name=self.region)
                self._clients[service] = session.client(service)
        return self._clients[service]


def error_code(error: Exception) -> str | None:
    """The service error code of a botocore ClientError (``ExecutionDoesNotExist``, ...), else None."""
    response = getattr(error, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


@contextlib.contextmanager
def aws_errors() -> Iterator[None]:
    """Report missing configuration and AWS's refusals as a ``UserError``, never a traceback."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
        ProfileNotFound,
    )

    try:
        yield
    except NoRegionError:
        raise UserError("no AWS region: pass --region, or set AWS_REGION or a profile's region") from None
    except NoCredentialsError:
        raise UserError(
            "no AWS credentials: configure them (aws configure, AWS_PROFILE or --profile) and try again"
        ) from None
    except ProfileNotFound as error:
        raise UserError(f"{error}: pass an existing --profile") from None
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message") or str(error)
        raise UserError(
            f"AWS refused {error.operation_name}: {error_code(error)}: {message}", SERVICE_FAILURE
        ) from None
    except BotoCoreError as error:
        raise UserError(f"cannot reach AWS: {error}", SERVICE_FAILURE) from None
