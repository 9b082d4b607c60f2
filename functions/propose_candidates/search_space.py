"""Candidates of the search space: a deterministic grid, or a seeded random sample.

Both strategies define one fixed sequence of distinct candidates per config; round r takes the next
``batch_size`` of it after those already proposed, so the candidates depend only on the seed and
never on how the search is batched.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, JsonValue
from workflow_documents import Candidate, Config, Proposal, Tuning
from workflow_documents.execution_input import Choice, Dimension, Range

# SageMaker's HyperParameters limits; the Map adds cv_fold to each fold's map, hence one key fewer.
MAX_HYPERPARAMETERS = 99
MAX_KEY_LENGTH = 256
MAX_VALUE_LENGTH = 2500

# Random sampling stops after this many draws per wanted candidate, so a continuous range too narrow to
# hold that many distinct floats ends the search instead of looping.
DRAWS_PER_CANDIDATE = 100


class HyperparameterLimitError(ValueError):
    """A candidate's hyperparameters exceed SageMaker's limits."""


class ProposeEvent(BaseModel):
    config: Config
    tuning: Tuning | None = None


def propose(event: ProposeEvent) -> Proposal:
    """The next round's candidates; an empty list means the search is over."""
    config, tuning = event.config, event.config.tuning
    proposed = len(event.tuning.history) if event.tuning else 0
    stop = min(proposed + tuning.batch_size, tuning.max_candidates)
    candidates = [
        Candidate(id=proposed + offset, params=params, hyperparameters=hyperparameters(config, params))
        for offset, params in enumerate(itertools.islice(candidate_params(config), proposed, stop))
    ]
    return Proposal(round=(event.tuning.round if event.tuning else 0) + 1, candidates=candidates)


def candidate_params(config: Config) -> Iterator[dict[str, JsonValue]]:
    """Every candidate's params in proposal order: the fixed params merged with the searched values."""
    space, tuning = config.model.search_space, config.tuning
    if tuning.strategy == "random":
        searched = random_search(space, tuning.seed, tuning.max_candidates)
    elif tuning.sample_grid:
        searched = sampled_grid(space, tuning.seed, tuning.max_candidates)
    else:
        searched = grid(space)
    for values in searched:
        yield {**config.model.params, **values}


def grid(space: dict[str, Dimension]) -> Iterator[dict[str, JsonValue]]:
    """The cartesian product of the grid points, the first name in sorted order varying slowest.

    Each dimension's points are distinct, so the candidates are too.
    """
    names = sorted(space)
    for values in itertools.product(*(grid_points(space[name]) for name in names)):
        yield dict(zip(names, values, strict=False))


def sampled_grid(space: dict[str, Dimension], seed: int, count: int) -> Iterator[dict[str, JsonValue]]:
    """``count`` points of the grid drawn without replacement (seeded), in grid order; the whole grid
    when it has no more than ``count`` points."""
    names = sorted(space)
    axes = [grid_points(space[name]) for name in names]
    size = math.prod(len(axis) for axis in axes)
    chosen = sorted(random.Random(seed).sample(range(size), count)) if size > count else range(size)
    for index in chosen:
        values, rest = [], index
        for axis in reversed(axes):  # the last name varies fastest, as in itertools.product
            rest, position = divmod(rest, len(axis))
            values.append(axis[position])
        yield dict(zip(names, reversed(values), strict=True))


def grid_points(dimension: Dimension) -> list[JsonValue]:
    """Distinct values in given order, or a range's grid points (``Range.grid_points``: numpy's exact ones)."""
    if isinstance(dimension, Choice):
        return _distinct(dimension.values)
    return list(dimension.grid_points())


def random_search(
    space: dict[str, Dimension], seed: int, max_candidates: int
) -> Iterator[dict[str, JsonValue]]:
    """Distinct seeded draws, one value per name in sorted order; ends once a discrete space is exhausted."""
    rng = random.Random(seed)
    names = sorted(space)
    size = math.prod(space_size(dimension) for dimension in space.values())
    seen: set[str] = set()
    for _ in range(max_candidates * DRAWS_PER_CANDIDATE):
        draw = {name: _draw(space[name], rng) for name in names}
        key = json.dumps(draw, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        yield draw
        if len(seen) == size:
            return


def space_size(dimension: Dimension) -> float:
    """How many distinct values a dimension holds (infinite for a float range)."""
    if isinstance(dimension, Choice):
        return len(_distinct(dimension.values))
    return int(dimension.high - dimension.low) + 1 if dimension.type == "int" else math.inf


def hyperparameters(config: Config, params: dict[str, JsonValue]) -> dict[str, str]:
    """SageMaker HyperParameters of a candidate: the train job's control keys, then each param as JSON."""
    values = {
        "cv_estimator": config.model.estimator,
        "cv_metric": config.resolved_metric,
        "cv_scaler": config.model.scaler,
        "cv_preprocessing": json.dumps(
            config.model.preprocessing.model_dump(mode="json"), separators=(",", ":")
        ),
        "cv_seed": str(config.cv.seed),
        "cv_train_score": json.dumps(config.cv.return_train_score),
        **{name: json.dumps(value) for name, value in sorted(params.items())},
    }
    if len(values) > MAX_HYPERPARAMETERS:
        raise HyperparameterLimitError(
            f"{len(values)} hyperparameters ({len(values) - len(params)} control keys and {len(params)} params) "
            "exceed SageMaker's 100 with the cv_fold key each fold job adds: fix or search fewer params"
        )
    for name, value in values.items():
        if len(name) > MAX_KEY_LENGTH:
            raise HyperparameterLimitError(
                f"hyperparameter name {name[:40]!r}... is {len(name)} characters; SageMaker takes {MAX_KEY_LENGTH}"
            )
        if len(value) > MAX_VALUE_LENGTH:
            raise HyperparameterLimitError(
                f"hyperparameter {name!r} is {len(value)} characters as JSON; SageMaker takes {MAX_VALUE_LENGTH}: "
                "shorten its value in model.params or model.search_space"
            )
    return values


def _draw(dimension: Dimension, rng: random.Random) -> JsonValue:
    if isinstance(dimension, Choice):
        return rng.choice(_distinct(dimension.values))
    return _sample(dimension, rng)


def _sample(dimension: Range, rng: random.Random) -> float | int:
    low, high = dimension.low, dimension.high
    if dimension.type == "int":
        if not dimension.log:
            return rng.randint(int(low), int(high))
        # Log-uniform over [low, high + 1) floored, so every integer in [low, high] can be drawn.
        return min(int(math.exp(rng.uniform(math.log(low), math.log(high + 1)))), int(high))
    return dimension.point(rng.random())


def _distinct(values: list[Any]) -> list[Any]:
    """``values`` without repeats, in first-seen order (JSON values need not be hashable)."""
    unique: dict[str, Any] = {}
    for value in values:
        unique.setdefault(json.dumps(value, sort_keys=True), value)
    return list(unique.values())
