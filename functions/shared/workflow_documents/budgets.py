"""What one execution of the workflow can hold, worked out before any job runs.

Step Functions fails an execution whose history would pass 25,000 events, and a state whose input or
output passes 256 KiB (``States.DataLimitExceeded``); neither can be caught. The fold jobs run in the
child executions of EvaluateCandidates, a Distributed Map (one child per candidate, each with a history
of its own), which writes their results to S3. So the parent's history grows per round, a child's per
fold job; the largest state (AggregateScores' request: config, the tuning history, the round's
candidates) grows with every candidate, and a child's output (its fold results) with every fold.
The budgets below count the worst case, every fold failing on its longest path, from the definition's
own numbers (tests/pipeline/test_service_faults.py holds them against local executions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

HISTORY_LIMIT = 25_000  # events in one execution's history
PAYLOAD_LIMIT = 256 * 1024  # bytes of one state's input or output, UTF-8 JSON

# -- history: events, from statemachine/cross_validation.asl.json --------------------------------
# A fold job's attempts: the first, then the quota retrier's 7 and the service retrier's 4.
FOLD_JOB_ATTEMPTS = 1 + 7 + 4
# Each attempt: TaskScheduled, TaskStarted, TaskFailed; once: TaskStateEntered/Exited, the
# RecordFoldError Pass state's two events and the Map iteration's two.
EVENTS_PER_FOLD = 3 * FOLD_JOB_ATTEMPTS + 6
# A candidate's child execution besides its folds: ExecutionStarted and its end, StartCandidate's two
# events and the fold Map's four.
EVENTS_PER_CHILD = 2 + 2 + 4
# A Lambda task with its retrier spent: TaskStateEntered/Exited, then TaskScheduled, TaskStarted and
# TaskFailed or TaskSucceeded for each of its 1 + 6 attempts.
EVENTS_PER_FUNCTION = 2 + 3 * (1 + 6)
# A round in the parent: AnyCandidates (2), EvaluateCandidates (MapStateEntered, MapStateStarted,
# MapRunStarted, MapRunSucceeded, MapStateSucceeded, MapStateExited), ProposeCandidates,
# AggregateScores, TuningDone (2).
EVENTS_PER_ROUND = 2 + 6 + 2 * EVENTS_PER_FUNCTION + 2
# Everything else (input, split, holdout, final fit, registration, the last proposal) with each
# job task's retries spent, and the execution's first and last events.
EVENTS_FIXED = 400

# -- payload: bytes of the documents the largest state holds ---------------------------------------
# A failed fold's record in a child's output: SageMaker keeps 1,024 characters of FailureReason
# (escaped in JSON, 2 to 3 bytes for non-ASCII), plus the fold, job name, status and error.
FAILED_FOLD_BYTES = 1_600
# A failed candidate's history entry keeps the cause of its first failure (functions/aggregate_scores:
# MAX_TEXT characters) and the fold, job name and error of the others.
FIRST_FAILURE_BYTES = 850
FURTHER_FAILURE_BYTES = 120
# A history entry's own fields (status, cv scores but the per-fold ones, names), and per fold score.
ENTRY_BYTES = 300
SCORE_BYTES = 25
# The split job's ExitMessage (at most 1,024 characters) joins the config as dataset_info, with the
# split's job name and data URI.
SPLIT_RESULT_BYTES = 1_500
# The hyperparameters' control keys the candidates carry besides their params.
CONTROL_BYTES = 250
# Ids, keys and separators of one candidate.
CANDIDATE_BYTES = 100
# A child execution's input besides its candidate: the folds, and training_job (the training jobs'
# shared description: 36 metric definitions, role, image, channel, resources).
CHILD_INPUT_BYTES = 6 * 1024
# Room for what the estimate leaves out (event wrappers do not count; the state's other keys do).
PAYLOAD_MARGIN = 8 * 1024


@dataclass(frozen=True)
class Search:
    """The numbers of a search that set its size."""

    k: int
    max_candidates: int
    batch_size: int
    candidate_bytes: int
    """The largest JSON of one candidate (params, and hyperparameters as strings)."""
    config_bytes: int
    """The normalised config's JSON."""


def candidate_bytes(params: dict[str, Any], search_space: dict[str, list[Any] | None]) -> int:
    """The largest candidate: the fixed params and, per searched name, its longest value (a range's
    value is a number: 24 characters at most). A candidate holds each value twice, as params and as a
    hyperparameter string (escaped)."""
    size = sum(len(name) + len(json.dumps(value)) + 6 for name, value in params.items())
    for name, values in search_space.items():
        longest = max((len(json.dumps(value)) for value in values), default=0) if values is not None else 24
        size += len(name) + longest + 6
    return CANDIDATE_BYTES + CONTROL_BYTES + 3 * size


def history_events(search: Search) -> int:
    """Events of the parent execution's history when every Lambda call is retried to the end."""
    rounds = -(-search.max_candidates // search.batch_size) + 1  # the last round finds none
    return EVENTS_FIXED + rounds * EVENTS_PER_ROUND


def child_history_events(search: Search) -> int:
    """Events of one candidate's child execution when every fold job is refused on every attempt."""
    return EVENTS_PER_CHILD + search.k * EVENTS_PER_FOLD


def history_entry_bytes(search: Search) -> int:
    failed = FIRST_FAILURE_BYTES + (search.k - 1) * FURTHER_FAILURE_BYTES
    completed = search.k * SCORE_BYTES
    return search.candidate_bytes + ENTRY_BYTES + max(failed, completed)


def child_bytes(search: Search) -> int:
    """The larger of a child execution's input and its output (its fold results, every fold failed)."""
    return max(CHILD_INPUT_BYTES + search.candidate_bytes, search.k * FAILED_FOLD_BYTES) + PAYLOAD_MARGIN


def round_bytes(search: Search, batch_size: int) -> int:
    """A round's candidates, as AggregateScores' request carries them (their fold results stay in S3)."""
    return batch_size * search.candidate_bytes


def largest_state_bytes(search: Search, batch_size: int | None = None) -> int:
    """AggregateScores' request in the last round, every fold failed: the config, the whole tuning
    history and the round's candidates."""
    return (
        search.config_bytes
        + SPLIT_RESULT_BYTES
        + search.max_candidates * history_entry_bytes(search)
        + round_bytes(search, search.batch_size if batch_size is None else batch_size)
        + PAYLOAD_MARGIN
    )


def largest_batch(search: Search) -> int:
    """The most candidates a round can evaluate within the payload limit (0 if none fits)."""
    room = PAYLOAD_LIMIT - largest_state_bytes(search, batch_size=0)
    return max(0, room // round_bytes(search, 1))
