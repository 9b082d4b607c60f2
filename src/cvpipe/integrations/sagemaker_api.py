"""SageMaker's API as botocore models it: request validation and error names, shared by the local
SageMaker jobs and the local model registry.

botocore's own ``validate_parameters`` checks what an SDK checks before it sends a request (shapes,
types, required members); the service checks more: lengths, value ranges, patterns and enums, all of
which the model carries. ``invalid_parameters`` checks both, and words the service's findings as
SageMaker does (``1 validation error detected: Value '...' at 'stoppingCondition.maxRuntimeInSeconds'
failed to satisfy constraint: ...``).
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import botocore.session
import regex
from botocore.exceptions import ParamValidationError
from botocore.model import ServiceModel, Shape, StructureShape
from botocore.validate import ParamValidator, validate_parameters

from cvpipe.asl.errors import StatesError

MAX_REPORTED = 10  # violations listed in one message, as the service caps its list
_VALID_MEMBERS_KEPT = 1024
_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "structure": dict,
    "map": dict,
    "list": list,
    "string": str,
    "integer": int,
    "long": int,
    "float": (int, float),
    "double": (int, float),
    "boolean": bool,
    "blob": (bytes, bytearray, str),
}
_NUMBERS = frozenset({"integer", "long", "float", "double"})


_model_lock = threading.Lock()


def service_model() -> ServiceModel:
    """botocore's model of SageMaker's API, loaded once; ``load_service_model`` starts loading it."""
    with _model_lock:  # a load under way is waited for, not repeated
        return _loaded_service_model()


@functools.cache
def _loaded_service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("sagemaker")


def load_service_model() -> None:
    """Load the model on a thread of its own (a tenth of a second), for the first request not to
    wait for it: a run's first job comes after its input is checked, while this process waits."""
    threading.Thread(target=service_model, name="cvpipe-sagemaker-model", daemon=True).start()


def invalid_parameters(operation: str, params: Any) -> str | None:
    """What SageMaker would refuse in a request (required members, types, lengths, ranges,
    patterns, enums), as its ValidationException words it, or None."""
    shape = service_model().operation_model(operation).input_shape
    if _valid_member_by_member(operation, shape, params):
        return None
    violations = list(constraint_violations(params, shape))
    if violations:
        count = len(violations)
        return f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(
            violations[:MAX_REPORTED]
        )
    try:
        validate_parameters(params, shape)
    except ParamValidationError as exc:
        return str(exc)
    return None


_valid_members: OrderedDict[tuple[str, str, str], None] = OrderedDict()
"""(operation, member, repr of a value) of member values found valid, the most recently used last."""
_valid_members_lock = threading.Lock()


def _valid_member_by_member(operation: str, shape: StructureShape, params: Any) -> bool:
    """Whether the request is valid, judged member by member, each member value's verdict kept:
    the requests of a workflow repeat most members (a training job's algorithm, channels and
    resources) and differ in a few (its name and hyperparameters).

    A request is valid exactly when it is an object with its required members and only known ones,
    and each member is valid on its own: botocore's checks and the service's constraints of a member
    depend on its value and its shape alone. So this answers as the whole check would. A value's
    ``repr`` is its key, which tells apart what the checks tell apart (``True``, ``1`` and ``1.0``;
    a list and a tuple; text and bytes). False means "not known to be valid": the whole check then
    says what is wrong."""
    if not isinstance(params, dict) or shape.is_tagged_union:
        return False
    members = shape.members
    if any(name not in members for name in params) or any(
        name not in params for name in shape.required_members
    ):
        return False
    for name, value in params.items():
        key = (operation, name, repr(value))
        with _valid_members_lock:
            if key in _valid_members:
                _valid_members.move_to_end(key)
                continue
        member = members[name]
        if (
            next(constraint_violations(value, member), None) is not None
            or ParamValidator().validate(value, member).has_errors()
        ):
            return False
        with _valid_members_lock:
            _valid_members[key] = None
            if len(_valid_members) > _VALID_MEMBERS_KEPT:
                _valid_members.popitem(last=False)
    return True


def constraint_violations(value: Any, shape: Shape, path: str = "") -> Iterator[str]:
    """Each constraint of the model that ``value`` breaks, in the service's words. Values of the
    wrong type are skipped: botocore's own check reports them."""
    if isinstance(value, bool) and shape.type_name in _NUMBERS:
        # botocore takes True for a number (a bool is an int in Python); the service's JSON does not.
        yield f"Value {_shown(value)} at '{path}' failed to satisfy constraint: Member must be a number"
        return
    if not _well_typed(value, shape):
        return
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            if name in value:
                yield from constraint_violations(value[name], member, _join(path, _member(name)))
        return
    rules = list(_member_rules(value, shape))
    if rules:
        yield f"Value {_shown(value)} at '{path}' failed to satisfy constraint: {rules[0]}"
    if shape.type_name == "list":
        for index, item in enumerate(value, start=1):
            yield from constraint_violations(item, shape.member, f"{path}.{index}.member")
    elif shape.type_name == "map":
        for kind, shape_of, items in (
            ("keys", shape.key, value.keys()),
            ("value", shape.value, value.values()),
        ):
            broken = sorted(
                {
                    rule
                    for item in items
                    if _well_typed(item, shape_of)
                    for rule in _member_rules(item, shape_of)
                }
            )
            if broken:
                yield (
                    f"Value {_shown(value)} at '{path}' failed to satisfy constraint: "
                    f"Map {kind} must satisfy constraint: [{', '.join(broken)}]"
                )


def _well_typed(value: Any, shape: Shape) -> bool:
    python_type = _PYTHON_TYPES.get(shape.type_name, object)
    return isinstance(value, python_type) and isinstance(value, bool) == (shape.type_name == "boolean")


def _member_rules(value: Any, shape: Shape) -> Iterator[str]:
    """The rules of a scalar, list or map shape that ``value`` breaks (not those of its items)."""
    meta = shape.metadata
    if shape.type_name in ("string", "list", "map", "blob"):
        size = len(value)
        if "min" in meta and size < meta["min"]:
            yield f"Member must have length greater than or equal to {meta['min']}"
        if "max" in meta and size > meta["max"]:
            yield f"Member must have length less than or equal to {meta['max']}"
    elif shape.type_name in ("integer", "long", "float", "double"):
        if "min" in meta and value < meta["min"]:
            yield f"Member must have value greater than or equal to {meta['min']}"
        if "max" in meta and value > meta["max"]:
            yield f"Member must have value less than or equal to {meta['max']}"
    if shape.type_name == "string":
        if shape.enum and value not in shape.enum:
            yield f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"
        if "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):
            yield f"Member must satisfy regular expression pattern: {meta['pattern']}"


@functools.cache
def _pattern(java_pattern: str) -> regex.Pattern[str]:
    """A pattern of the model (Java syntax: ``\\p{L}``, surrogate pairs, a quantified ``$``) as
    ``regex`` reads it; the service matches the whole value."""
    pattern = java_pattern.replace(r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF")
    pattern = regex.sub(r"\$\{\d+,\d+\}", "$", pattern)
    return regex.compile(pattern)


def _member(name: str) -> str:
    """``MaxRuntimeInSeconds`` -> ``maxRuntimeInSeconds``: the service names members in camel case."""
    return name[:1].lower() + name[1:]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return f"'{text if len(text) <= 256 else text[:253] + '...'}'"


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
