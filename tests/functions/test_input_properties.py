"""Properties of the input validator and the search-space sampler, over generated inputs (seeded)."""

from __future__ import annotations

import itertools
import json
import math
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

PROPERTY = settings(
    derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

DATASET = {"uri": "s3://cvpipe-data/iris.csv", "target": "species"}
json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
finite = st.floats(allow_nan=False, allow_infinity=False)
ranges = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["float", "int"]),
        "low": finite | st.integers(-50, 50),
        "high": finite | st.integers(-50, 50),
    },
    optional={"log": st.booleans(), "steps": st.integers(-1, 60) | json_scalars},
)
dimensions = ranges | st.fixed_dictionaries({"values": st.lists(json_values, max_size=4)}) | json_values
names = st.sampled_from(["C", "gamma", "kernel", "cv_fold", "1bad", "alpha", ""])
models = st.fixed_dictionaries(
    {},
    optional={
        "estimator": st.sampled_from(["SVC", "sklearn.svm.SVC", "os.system", "x..y", ""]) | json_scalars,
        "params": st.dictionaries(names, json_values, max_size=3) | json_scalars,
        "search_space": st.dictionaries(names, dimensions, max_size=3) | json_scalars,
        "scaler": st.sampled_from(["StandardScaler", "none", "MinMax"]),
    },
)
documents = st.fixed_dictionaries(
    {"dataset": st.just(DATASET) | json_values},
    optional={
        "model": models | json_values,
        "cv": st.fixed_dictionaries(
            {}, optional={"k": st.integers(-2, 60) | json_scalars, "holdout": finite}
        ),
        "tuning": st.fixed_dictionaries(
            {},
            optional={
                "strategy": st.sampled_from(["grid", "random", "bayes"]),
                "max_candidates": st.integers(-1, 120),
                "batch_size": st.integers(-1, 120) | st.none(),
            },
        ),
        "metric": st.sampled_from(["auto", "accuracy", "acc", "r2"]) | json_scalars,
        "baseline": finite | st.none() | json_scalars,
        "extra": json_values,
    },
)


@PROPERTY
@given(documents)
def test_the_validator_accepts_or_lists_problems_and_never_fails_otherwise(prepare_input, document) -> None:
    execution_input = prepare_input.execution_input
    try:
        config = execution_input.normalise(document, execution="e", bucket="artifacts")
    except execution_input.InvalidInputError as error:
        assert error.problems
        for problem in error.problems:
            path, _, message = problem.partition(": ")
            assert path and message and "\n" not in problem
        return
    # A valid input normalises to strict JSON (no NaN or Infinity), and its defaults-filled form is a fixed point.
    assert json.loads(json.dumps(config, allow_nan=False)) == config
    validated = execution_input.validate(document)
    assert execution_input.validate(validated.model_dump(mode="json")) == validated


@st.composite
def grid_ranges(draw) -> dict:
    """Valid ranges, from extreme (±1e308, narrower than float resolution) to ordinary."""
    kind = draw(st.sampled_from(["float", "int"]))
    low = draw(st.floats(-1e308, 1e308) | st.floats(1e-300, 10) | st.floats(-5, 5))
    width = draw(st.floats(1e-300, 1e308) | st.floats(1e-15, 1e-9) | st.floats(0.5, 1000))
    if kind == "int":
        low = float(math.floor(max(min(low, 1e6), -1e6)))
        high = low + max(1, math.floor(min(width, 1e6)))
    else:
        high = min(low + width, sys.float_info.max)
    assume(low < high)
    return {
        "type": kind,
        "low": low,
        "high": high,
        "log": draw(st.booleans()) and low > 0,
        "steps": draw(st.integers(2, 40)),
    }


@PROPERTY
@given(grid_ranges())
def test_grid_points_are_finite_distinct_ordered_and_agree_with_prepare_input(
    prepare_input, propose_candidates, fields
) -> None:
    dimension = propose_candidates.search_space.Range.model_validate(fields)
    points = propose_candidates.search_space.grid_points(dimension)

    assert all(math.isfinite(point) for point in points)
    assert points == sorted(set(points))
    assert fields["low"] <= points[0] and points[-1] <= fields["high"]
    # PrepareInput refuses exactly the ranges whose points would collapse: an accepted grid has `steps`.
    execution_input = prepare_input.execution_input
    try:
        execution_input.validate(
            # A grid of more than max_candidates points is refused unless sampled: not what this checks.
            {"dataset": DATASET, "model": {"search_space": {"C": fields}}, "tuning": {"sample_grid": True}}
        )
        accepted = True
    except execution_input.InvalidInputError as error:
        assert error.problems == [error.problems[0]] and error.problems[0].startswith(
            "model.search_space.C.steps"
        )
        accepted = False
    assert accepted == (len(points) == fields["steps"])


@PROPERTY
@given(grid_ranges(), st.integers(0, 2**32 - 1))
def test_random_draws_are_finite_in_range_distinct_and_seeded(propose_candidates, fields, seed) -> None:
    search_space = propose_candidates.search_space
    space = {"x": search_space.Range.model_validate(fields)}

    draws = list(itertools.islice(search_space.random_search(space, seed, max_candidates=8), 8))

    values = [draw["x"] for draw in draws]
    assert all(math.isfinite(value) and fields["low"] <= value <= fields["high"] for value in values)
    assert len(set(values)) == len(values)
    assert draws == list(itertools.islice(search_space.random_search(space, seed, max_candidates=8), 8))
