"""SageMaker's API as botocore models it: request validation and error names, shared by the local
SageMaker jobs and the local model registry."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import botocore.session
from botocore.exceptions import ParamValidationError
from botocore.model import ServiceModel
from botocore.validate import validate_parameters

from cvpipe.asl.errors import StatesError


@functools.cache
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("sagemaker")


def invalid_parameters(operation: str, params: Any) -> str | None:
    """botocore's report of what is wrong with a request (required members, types), or None."""
    try:
        validate_parameters(params, service_model().operation_model(operation).input_shape)
    except ParamValidationError as exc:
        return str(exc)
    return None


def service_error(operation: str, code: str, message: str, *, aws_sdk: bool = False) -> StatesError:
    """A SageMaker error code as Step Functions reports it.

    An error the API models for the operation (``ResourceInUse``) is named after the SDK's class
    for it: ``SageMaker.ResourceInUseException``. Any other code (``ValidationException``) raises
    the SDK's base class: ``SageMaker.AmazonSageMakerException`` in the optimized integrations
    (Java SDK v1), ``SageMaker.SageMakerException`` in ``aws-sdk:sagemaker:*`` (Java SDK v2).
    The cause is the SDK's message, which names the error code.
    """
    modeled = {shape.name for shape in service_model().operation_model(operation).error_shapes}
    request_id = uuid.uuid4()
    if aws_sdk:
        base = "SageMakerException"
        cause = f"{message} (Service: SageMaker, Status Code: 400, Request ID: {request_id})"
    else:
        base = "AmazonSageMakerException"
        cause = (
            f"{message} (Service: AmazonSageMaker; Status Code: 400; Error Code: {code}; "
            f"Request ID: {request_id}; Proxy: null)"
        )
    name = f"{code.removesuffix('Exception')}Exception" if code in modeled else base
    return StatesError(f"SageMaker.{name}", cause)
