import itertools
import json
import math

import numpy as np
import pytest

pytestmark = pytest.mark.unit

SPACE = {
    "kernel": {"values": ["linear", "rbf"]},
    "C": {"type": "float", "low": 0.01, "high": 1, "log": True, "steps": 3},
    "degree": {"type": "int", "low": 2, "high": 3, "steps": 2},
}


@pytest.fixture(scope="module")
def search_space(propose_candidates):
    return propose_candidates.search_space


def propose(search_space, config, tuning=None):
    event = search_space.ProposeEvent.model_validate({"config": config, "tuning": tuning})
    return search_space.propose(event).model_dump(mode="json")


def tuning_after(round_, history):
    """The tuning state after ``round_`` as the aggregate reports it, every candidate failed."""
    failed = [{**candidate, "status": "Failed", "cv": None, "failures": []} for candidate in history]
    return {
        "round": round_,
        "history": failed,
        "best": None,
        "evaluated": len(failed),
        "failed": len(failed),
        "done": False,
    }


def propose_all(search_space, config):
    """Every round until nothing is left, recording each round's candidates as the aggregate would."""
    rounds, history, tuning = [], [], None
    while candidates := (proposal := propose(search_space, config, tuning))["candidates"]:
        rounds.append(candidates)
        history += candidates
        tuning = tuning_after(proposal["round"], history)
    return rounds


def params_of(rounds):
    return [candidate["params"] for candidate in itertools.chain.from_iterable(rounds)]


def dimension(search_space, **fields):
    return search_space.Range.model_validate(fields) if "type" in fields else search_space.Choice(**fields)


def test_grid_is_the_cartesian_product_in_sorted_name_order(search_space, make_config):
    config = make_config(model={"params": {"probability": True}, "search_space": SPACE})

    proposal = propose(search_space, config)

    expected = [
        {"probability": True, "C": c, "degree": degree, "kernel": kernel}
        for c, degree, kernel in itertools.product([0.01, 0.1, 1.0], [2, 3], ["linear", "rbf"])
    ]
    assert proposal["round"] == 1
    assert [candidate["params"] for candidate in proposal["candidates"]] == expected
    assert [candidate["id"] for candidate in proposal["candidates"]] == list(range(12))


def test_a_grid_larger_than_max_candidates_is_sampled_only_when_asked(
    search_space, make_config, prepare_input
):
    with pytest.raises(
        prepare_input.execution_input.InvalidInputError, match="the grid has 12 candidates but"
    ):
        make_config(model={"search_space": SPACE}, tuning={"max_candidates": 5})
    sampled = {"max_candidates": 5, "batch_size": 2, "sample_grid": True}
    config = make_config(model={"search_space": SPACE}, tuning=sampled)

    rounds = propose_all(search_space, config)

    assert [[candidate["id"] for candidate in candidates] for candidates in rounds] == [[0, 1], [2, 3], [4]]
    one_round = make_config(model={"search_space": SPACE}, tuning={**sampled, "batch_size": 5})
    assert params_of(rounds) == params_of([propose(search_space, one_round)["candidates"]])
    full = [
        c["params"] for c in propose(search_space, make_config(model={"search_space": SPACE}))["candidates"]
    ]
    chosen = params_of(rounds)
    assert len({json.dumps(p, sort_keys=True) for p in chosen}) == 5
    assert chosen == [params for params in full if params in chosen]  # grid points, in grid order


@pytest.mark.parametrize(
    ("fields", "points"),
    [
        ({"type": "float", "low": 0, "high": 1, "steps": 5}, [0.0, 0.25, 0.5, 0.75, 1.0]),
        ({"type": "float", "low": 0.001, "high": 10, "log": True, "steps": 5}, [0.001, 0.01, 0.1, 1.0, 10.0]),
        ({"type": "float", "low": 0.1, "high": 0.3, "steps": 3}, np.linspace(0.1, 0.3, 3).tolist()),
        ({"type": "float", "low": 0.1, "high": 1, "steps": 10}, np.linspace(0.1, 1, 10).tolist()),
        (
            {"type": "float", "low": 1e-4, "high": 3, "log": True, "steps": 7},
            np.geomspace(1e-4, 3, 7).tolist(),
        ),
        ({"type": "int", "low": 1, "high": 10, "steps": 4}, [1, 4, 7, 10]),
        ({"type": "int", "low": 1, "high": 1000, "log": True, "steps": 4}, [1, 10, 100, 1000]),
        ({"type": "int", "low": 1, "high": 3, "steps": 10}, [1, 2, 3]),
        ({"type": "int", "low": 1, "high": 100, "log": True, "steps": 5}, [1, 3, 10, 32, 100]),
        ({"values": ["a", 1, "a", None, [1, 2], [1, 2]]}, ["a", 1, None, [1, 2]]),
    ],
)
def test_grid_points(search_space, fields, points):
    """Exactly numpy's points: 0.1 + 2 steps of 0.1 is 0.30000000000000004, as GridSearchCV would try."""
    assert search_space.grid_points(dimension(search_space, **fields)) == points


def test_int_grid_points_are_ints(search_space):
    points = search_space.grid_points(dimension(search_space, type="int", low=1.0, high=9.0, steps=3))
    assert all(type(point) is int for point in points)


def test_random_is_reproducible_from_the_seed_regardless_of_batch_size(search_space, make_config):
    space = {**SPACE, "gamma": {"type": "float", "low": 1e-4, "high": 1, "log": True}}

    def sequence(batch_size, seed=3):
        tuning = {"strategy": "random", "max_candidates": 12, "batch_size": batch_size, "seed": seed}
        return params_of(propose_all(search_space, make_config(model={"search_space": space}, tuning=tuning)))

    assert sequence(12) == sequence(5) == sequence(1)
    assert len(sequence(12)) == 12
    assert sequence(12) != sequence(12, seed=4)


def test_random_samples_within_each_dimension(search_space, make_config):
    space = {
        "C": {"type": "float", "low": 0.001, "high": 1000, "log": True},
        "alpha": {"type": "float", "low": -1, "high": 1},
        "depth": {"type": "int", "low": 1, "high": 4},
        "leaves": {"type": "int", "low": 1, "high": 1000, "log": True},
        "kernel": {"values": ["linear", "rbf", "poly"]},
    }
    tuning = {"strategy": "random", "max_candidates": 100, "batch_size": 5}
    config = make_config(model={"search_space": space}, tuning=tuning, cv={"k": 2})

    params = params_of(propose_all(search_space, config))

    assert len(params) == 100
    assert all(0.001 <= p["C"] <= 1000 and -1 <= p["alpha"] <= 1 for p in params)
    assert {p["depth"] for p in params} == {1, 2, 3, 4}
    assert all(type(p["leaves"]) is int and 1 <= p["leaves"] <= 1000 for p in params)
    assert {p["kernel"] for p in params} == {"linear", "rbf", "poly"}
    # Log-uniform: about as many of the 100 draws in each of the 6 decades.
    decades = [math.floor(math.log10(p["C"])) for p in params]
    assert all(8 <= decades.count(decade) <= 28 for decade in range(-3, 3)), decades


def test_random_exhausts_a_small_discrete_space_without_duplicates(search_space, make_config):
    space = {"kernel": {"values": ["linear", "rbf"]}, "degree": {"type": "int", "low": 2, "high": 3}}
    tuning = {"strategy": "random", "max_candidates": 20, "batch_size": 3}

    rounds = propose_all(search_space, make_config(model={"search_space": space}, tuning=tuning))

    assert [len(candidates) for candidates in rounds] == [3, 1]
    params = params_of(rounds)
    assert sorted(json.dumps(p, sort_keys=True) for p in params) == sorted(
        json.dumps({"degree": degree, "kernel": kernel}, sort_keys=True)
        for degree, kernel in itertools.product([2, 3], ["linear", "rbf"])
    )


def test_random_ends_when_a_float_range_holds_too_few_distinct_values(search_space, make_config):
    # Only three floats lie in [1, 1 + 2 ulp]: the draws run out instead of looping forever.
    space = {"tol": {"type": "float", "low": 1.0, "high": 1.0000000000000004}}
    tuning = {"strategy": "random", "max_candidates": 5}

    params = params_of(propose_all(search_space, make_config(model={"search_space": space}, tuning=tuning)))

    assert sorted(p["tol"] for p in params) == [1.0, 1.0000000000000002, 1.0000000000000004]


@pytest.mark.parametrize("strategy", ["grid", "random"])
def test_empty_search_space_proposes_the_fixed_params_once(search_space, make_config, strategy):
    config = make_config(model={"params": {"C": 2.0}}, tuning={"strategy": strategy})

    rounds = propose_all(search_space, config)

    assert params_of(rounds) == [{"C": 2.0}]


def test_nothing_left_proposes_no_candidates(search_space, make_config):
    config = make_config(model={"search_space": SPACE}, tuning={"max_candidates": 2, "sample_grid": True})
    history = propose(search_space, config)["candidates"]

    assert propose(search_space, config, tuning_after(1, history)) == {"round": 2, "candidates": []}


def test_hyperparameters_are_control_keys_and_json_text(search_space, make_config):
    config = make_config(
        model={"params": {"gamma": "scale", "shrinking": False, "class_weight": None}, "search_space": SPACE},
        cv={"seed": 42},
        metric="f1_macro",
    )

    (candidate, *_) = propose(search_space, config)["candidates"]

    assert candidate["hyperparameters"] == {
        "cv_estimator": "SVC",
        "cv_metric": "f1_macro",
        "cv_scaler": "StandardScaler",
        "cv_preprocessing": '{"numeric":{"impute":"auto","scale":null},"categorical":{"impute":"most_frequent",'
        '"encode":"OneHotEncoder"},"select":"none"}',
        "cv_seed": "42",
        "cv_train_score": "false",
        "C": "0.01",
        "class_weight": "null",
        "degree": "2",
        "gamma": '"scale"',
        "kernel": '"linear"',
        "shrinking": "false",
    }
    assert {
        name: json.loads(value) for name, value in candidate["hyperparameters"].items() if name[:3] != "cv_"
    } == (candidate["params"])


def test_metric_resolved_by_the_split_job_is_passed_on(search_space, make_config, dataset_info):
    config = {**make_config(), "dataset_info": dataset_info(task="regression", metric="r2", splitter="KFold")}

    (candidate,) = propose(search_space, config)["candidates"]

    assert candidate["hyperparameters"]["cv_metric"] == "r2"


def test_too_long_hyperparameter_is_a_clear_error(search_space, make_config):
    # Few candidates: the payload budget of PrepareInput would refuse many of this size first.
    config = make_config(model={"params": {"classes": ["x" * 50] * 50}}, tuning={"max_candidates": 4})

    with pytest.raises(search_space.HyperparameterLimitError, match="'classes' is .* characters as JSON"):
        propose(search_space, config)


def test_too_many_hyperparameters_is_a_clear_error(search_space, make_config):
    config = make_config(model={"params": {f"p{i}": i for i in range(94)}})

    with pytest.raises(
        search_space.HyperparameterLimitError,
        match="100 hyperparameters .* exceed SageMaker's 100 with the cv_fold key",
    ):
        propose(search_space, config)


def test_handler_proposes_the_first_round(propose_candidates, make_config, lambda_context, published_metrics):
    config = make_config(model={"search_space": SPACE}, tuning={"max_candidates": 4, "sample_grid": True})

    proposal = propose_candidates.app.lambda_handler({"config": config, "tuning": None}, lambda_context)

    assert proposal["round"] == 1
    assert [candidate["id"] for candidate in proposal["candidates"]] == [0, 1, 2, 3]
    assert json.loads(json.dumps(proposal)) == proposal
    assert published_metrics()["CandidatesProposed"] == [4]


def test_handler_counts_candidates_beyond_the_limits(
    propose_candidates, make_config, lambda_context, published_metrics
):
    # Few candidates: the payload budget of PrepareInput would refuse many of this size first.
    config = make_config(model={"params": {"classes": ["x" * 50] * 50}}, tuning={"max_candidates": 4})

    # Step Functions names the error by the exception's class; cvpipe run reports it as the user's mistake.
    with pytest.raises(Exception) as raised:
        propose_candidates.app.lambda_handler({"config": config, "tuning": None}, lambda_context)

    assert type(raised.value).__name__ == "HyperparameterLimitError"
    assert published_metrics()["InvalidCandidates"] == [1]  # and no warning that no metric was published
