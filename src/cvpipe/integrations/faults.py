"""The local account's limits and injected faults: AWS's bad days, rehearsed on one machine.

``AccountLimits`` holds the account's quotas of concurrent instances per instance type (SageMaker
counts training and processing jobs against separate quotas, ``ml.m5.large for training job usage``
and ``... for processing job usage``; one number per type here sets both) and the fault rules read
from a file (``cvpipe run --faults FILE``)::

    {"rules": [{"action": "CreateTrainingJob", "match": "-c0-f3-", "error": "ResourceLimitExceeded",
                "times": null}],
     "quotas": {"ml.m5.large": 2}}

A rule answers calls of ``action`` whose job name (or whole request, as JSON) contains ``match``
with the service error ``error`` (``ResourceLimitExceeded``, ``ThrottlingException``, ...), or, for
the job actions, lets the job start and end ``Failed`` or ``Stopped``. ``times`` is how many matching
calls it answers (null: all of them); ``message`` replaces the service's usual message.
"""

from __future__ import annotations

import difflib
import json
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from .sagemaker_api import service_model

# A new account's quota of concurrent instances per type is often 0 to a few; 2 lets the
# pipeline's default settings (resources.max_parallel_jobs = 2) run.
DEFAULT_QUOTA = 2
JOB_ENDS = ("Failed", "Stopped")
# What SageMaker answers with each error code when nothing more specific is known.
SERVICE_MESSAGES = {
    "ThrottlingException": "Rate exceeded",
    "ValidationException": "The request was refused by a fault rule",
    "InternalFailure": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Service Unavailable",
    "ResourceLimitExceeded": "The account-level service limit for this resource has been reached. Please use "
    "AWS Service Quotas to request an increase for this quota.",
    "ResourceInUse": "The resource is in use",
    "ResourceNotFound": "The resource was not found",
    "ConflictException": "The request conflicts with the resource's current state",
}
ERROR_CODES = frozenset(SERVICE_MESSAGES)
JOB_FAILURE_REASON = "InternalServerError: We encountered an internal error. Please try again."


class FaultsError(ValueError):
    """The faults file is invalid; the message names the field and what to do."""


@dataclass
class FaultRule:
    action: str
    match: str
    error: str
    times: int | None
    message: str | None
    hits: int = 0

    def applies(self, action: str, name: str, request: Any) -> bool:
        if action != self.action or (self.times is not None and self.hits >= self.times):
            return False
        return self.match in name or self.match in json.dumps(request, sort_keys=True)


@dataclass(frozen=True)
class Fault:
    """What an injected rule answers: a service error (``code``) or the end state of a job."""

    code: str
    message: str

    @property
    def job_end(self) -> str | None:
        return self.code if self.code in JOB_ENDS else None


@dataclass
class AccountLimits:
    """Quotas and fault rules of one local account; safe to use from any thread."""

    rules: list[FaultRule] = field(default_factory=list)
    quotas: dict[str, int] = field(default_factory=dict)
    default_quota: int = DEFAULT_QUOTA
    _in_use: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(
        self, action: str, name: str, request: Any, instances: tuple[str, str, int] | None = None
    ) -> Fault | None:
        """The first rule that answers this call, counted as one of its ``times``; None if none does.
        ``instances`` (usage, instance type, count) words a job's ResourceLimitExceeded as its quota's."""
        with self._lock:
            rule = next((rule for rule in self.rules if rule.applies(action, name, request)), None)
            if rule is None:
                return None
            rule.hits += 1
            used = self._in_use.get(instances[:2], 0) if instances else 0
        if rule.message is not None:
            return Fault(rule.error, rule.message)
        if rule.error in JOB_ENDS:
            return Fault(rule.error, JOB_FAILURE_REASON)
        if rule.error == "ResourceLimitExceeded" and instances:
            usage, instance_type, count = instances
            return Fault(rule.error, _quota_message(usage, instance_type, used, used, count))
        return Fault(rule.error, SERVICE_MESSAGES[rule.error])

    def acquire(self, usage: str, instance_type: str, count: int) -> str | None:
        """Take ``count`` instances of ``instance_type`` for a job of ``usage`` (training job, processing
        job); the quota's ResourceLimitExceeded message when they would exceed it."""
        quota = self.quotas.get(instance_type, self.default_quota)
        with self._lock:
            used = self._in_use.get((usage, instance_type), 0)
            if used + count > quota:
                return _quota_message(usage, instance_type, quota, used, count)
            self._in_use[(usage, instance_type)] = used + count
        return None

    def release(self, usage: str, instance_type: str, count: int) -> None:
        with self._lock:
            self._in_use[(usage, instance_type)] -= count

    @classmethod
    def from_document(
        cls, document: Any, actions: Collection[str], job_actions: Collection[str]
    ) -> AccountLimits:
        """``actions``: the API names the local services answer; ``job_actions``: those that start a
        job, which may also be told to end Failed or Stopped."""
        _expect(isinstance(document, dict), "(file)", "must be a JSON object with rules and/or quotas")
        _known_keys(document, {"rules", "quotas"}, "(file)")
        rules = document.get("rules", [])
        _expect(isinstance(rules, list), "rules", "must be a list of rule objects")
        quotas = document.get("quotas", {})
        _expect(isinstance(quotas, dict), "quotas", 'must be an object such as {"ml.m5.large": 2}')
        for instance_type, quota in quotas.items():
            at = f"quotas.{instance_type}"
            _expect(
                instance_type.startswith("ml."), at, "must be a SageMaker instance type such as ml.m5.large"
            )
            _expect(
                _is_int(quota) and quota >= 0,
                at,
                f"must be a whole number of instances, 0 or more (got {quota!r})",
            )
        return cls(
            [_rule(rule, f"rules[{i}]", actions, job_actions) for i, rule in enumerate(rules)], dict(quotas)
        )


def _quota_message(usage: str, instance_type: str, quota: int, used: int, count: int) -> str:
    return (
        f"The account-level service limit '{instance_type} for {usage} usage' is {quota} Instances, "
        f"with current utilization of {used} Instances and a request delta of {count} Instances. "
        "Please use AWS Service Quotas to request an increase for this quota. If AWS Service Quotas "
        "is not available, contact AWS support to request an increase for this quota."
    )


def _rule(rule: Any, at: str, actions: Collection[str], job_actions: Collection[str]) -> FaultRule:
    _expect(isinstance(rule, dict), at, "must be an object with action, match, error and times")
    _known_keys(rule, {"action", "match", "error", "times", "message"}, at)
    action, match, error = rule.get("action"), rule.get("match", ""), rule.get("error")
    times, message = rule.get("times"), rule.get("message")
    _expect(
        isinstance(action, str), f"{at}.action", "required: a SageMaker API name such as CreateTrainingJob"
    )
    if action not in actions:
        known = action in service_model().operation_names
        _expect(
            False,
            f"{at}.action",
            (f"{action} is not answered by the local services" if known else f"unknown action {action!r}")
            + _hint(action, actions)
            + f" (one of: {', '.join(sorted(actions))})",
        )
    _expect(isinstance(match, str), f"{at}.match", "must be a string found in the job name or the request")
    allowed = sorted(ERROR_CODES | set(JOB_ENDS) if action in job_actions else ERROR_CODES)
    _expect(isinstance(error, str), f"{at}.error", f"required: one of {', '.join(allowed)}")
    if error not in allowed:
        end_only = error in JOB_ENDS
        _expect(
            False,
            f"{at}.error",
            (f"{error} ends a job: {action} starts none" if end_only else f"unknown error {error!r}")
            + _hint(error, allowed)
            + f" (one of: {', '.join(allowed)})",
        )
    _expect(
        times is None or (_is_int(times) and times >= 1),
        f"{at}.times",
        f"must be a whole number of calls, 1 or more, or null for every call (got {times!r})",
    )
    _expect(message is None or isinstance(message, str), f"{at}.message", "must be a string")
    return FaultRule(action, match, error, times, message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hint(value: str, choices: Collection[str]) -> str:
    guess = difflib.get_close_matches(value, list(choices), n=1)
    return f": did you mean {guess[0]!r}?" if guess else ""


def _known_keys(document: dict[str, Any], allowed: set[str], at: str) -> None:
    for key in document:
        if key not in allowed:
            where = key if at == "(file)" else f"{at}.{key}"
            _expect(
                False, where, f"unknown field{_hint(key, allowed)} (allowed: {', '.join(sorted(allowed))})"
            )


def _expect(condition: bool, at: str, message: str) -> None:
    if not condition:
        raise FaultsError(f"{at}: {message}")
