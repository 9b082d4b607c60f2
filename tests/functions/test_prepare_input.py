import copy
import hashlib
import json
from pathlib import Path

import pytest
from sklearn.metrics import get_scorer_names

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"dataset": {"uri": "s3://cvpipe-data/iris.csv", "target": "species"}}


@pytest.fixture(scope="module")
def execution_input(prepare_input):
    return prepare_input.execution_input


def with_(**sections):
    """MINIMAL with sections merged one level deep, e.g. with_(cv={"k": 1})."""
    document = copy.deepcopy(MINIMAL)
    for name, value in sections.items():
        document[name] = (
            {**document[name], **value} if isinstance(value, dict) and name in document else value
        )
    return document


def problems_of(execution_input, document):
    with pytest.raises(execution_input.InvalidInputError) as raised:
        execution_input.validate(document)
    return raised.value.problems


def test_defaults_are_filled(execution_input):
    config = execution_input.normalise(MINIMAL, execution="exec-1", bucket="artifacts")

    run_id = hashlib.sha256(b"exec-1@").hexdigest()[:10]
    assert config == {
        "dataset": {
            "uri": "s3://cvpipe-data/iris.csv",
            "target": "species",
            "features": None,
            "exclude": [],
            "csv": {"delimiter": ",", "quotechar": '"', "encoding": "utf-8"},
        },
        "cv": {
            "splitter": "auto",
            "k": 5,
            "seed": 0,
            "shuffle": True,
            "repeats": 10,
            "gap": 0,
            "max_train_size": None,
            "test_size": None,
            "p": 2,
            "max_folds": 50,
            "group_column": None,
            "time_column": None,
            "holdout": 0.0,
            "return_train_score": False,
        },
        "model": {
            "estimator": "SVC",
            "params": {},
            "scaler": "StandardScaler",
            "preprocessing": {
                "numeric": {"impute": "auto", "scale": None},
                "categorical": {"impute": "most_frequent", "encode": "OneHotEncoder"},
                "select": "none",
            },
            "search_space": {},
        },
        "tuning": {
            "strategy": "grid",
            "max_candidates": 20,
            "batch_size": 20,
            "parallel_candidates": 0,
            "sample_grid": False,
            "seed": 0,
        },
        "task": "auto",
        "metric": "auto",
        "metrics": None,
        "refit": None,
        "pos_label": None,
        "baseline": -1e308,
        "baseline_given": False,
        "registry": {"group": "cvpipe-models", "approval_status": "PendingManualApproval"},
        "training": {
            "instance_type": "ml.m5.large",
            "instance_count": 1,
            "volume_gb": 10,
            "max_runtime_seconds": 3600,
            "processing_instance_type": "ml.t3.medium",
            "processing_max_runtime_seconds": 3600,
        },
        "resources": {"max_parallel_jobs": 2, "parallel_candidates": 2, "parallel_folds": 1},
        "run": {
            "execution": "exec-1",
            "id": run_id,
            "prefix": "s3://artifacts/runs/exec-1",
            "job_prefix": f"cv-{run_id}",
        },
        "split_environment": {
            "CV_TARGET": "species",
            "CV_K": "5",
            "CV_SPLITTER": "auto",
            "CV_SEED": "0",
            "CV_SHUFFLE": "true",
            "CV_REPEATS": "10",
            "CV_GAP": "0",
            "CV_P": "2",
            "CV_MAX_FOLDS": "50",
            "CV_ESTIMATOR": "SVC",
            "CV_TASK": "auto",
            "CV_REFIT": "auto",
            "CV_HOLDOUT": "0.0",
            "CV_CSV": '{"delimiter":",","quotechar":"\\"","encoding":"utf-8"}',
            "CV_METRICS": '["auto"]',
            "CVPIPE_ALLOWED_PACKAGES": "sklearn",
            "CV_PARAMS": "",
            "CV_VALUES": '{"params":{},"search":{}}',
        },
    }
    assert json.loads(json.dumps(config)) == config


def test_given_values_are_kept(execution_input):
    document = with_(
        cv={"splitter": "KFold", "k": 3, "seed": 7, "holdout": 0.25},
        model={
            "estimator": "sklearn.linear_model.Ridge",
            "params": {"fit_intercept": False},
            "scaler": "none",
            "search_space": {
                "alpha": {"type": "float", "low": 0.01, "high": 10, "log": True, "steps": 4},
                "solver": {"values": ["auto", "svd"]},
            },
        },
        tuning={"max_candidates": 8, "batch_size": 3, "parallel_candidates": 2},
        metric="neg_root_mean_squared_error",
        baseline=-1.5,
    )

    config = execution_input.normalise(document, execution="nightly", bucket="artifacts")

    assert config["model"]["search_space"]["alpha"] == {
        "type": "float", "low": 0.01, "high": 10.0, "log": True, "steps": 4,
    }  # fmt: skip
    assert config["tuning"] == {
        "strategy": "grid", "max_candidates": 8, "batch_size": 3, "parallel_candidates": 2, "sample_grid": False, "seed": 0,
    }  # fmt: skip
    assert (config["baseline"], config["baseline_given"]) == (-1.5, True)
    assert config["split_environment"] == {
        "CV_TARGET": "species",
        "CV_K": "3",
        "CV_SPLITTER": "KFold",
        "CV_SEED": "7",
        "CV_SHUFFLE": "true",
        "CV_REPEATS": "10",
        "CV_GAP": "0",
        "CV_P": "2",
        "CV_MAX_FOLDS": "50",
        "CV_ESTIMATOR": "sklearn.linear_model.Ridge",
        "CV_TASK": "auto",
        "CV_REFIT": "neg_root_mean_squared_error",
        "CV_HOLDOUT": "0.25",
        "CV_CSV": '{"delimiter":",","quotechar":"\\"","encoding":"utf-8"}',
        "CV_METRICS": '["neg_root_mean_squared_error"]',
        "CVPIPE_ALLOWED_PACKAGES": "sklearn",
        "CV_PARAMS": "alpha,fit_intercept,solver",
        "CV_VALUES": '{"params":{"fit_intercept":false},"search":{"alpha":[0.01,10.0],"solver":["auto","svd"]}}',
    }


def test_run_id_is_ten_hex_chars_stable_per_execution(execution_input):
    def run_id(name, started):
        return execution_input.normalise(MINIMAL, execution=name, bucket="b", started=started)["run"]["id"]

    first = run_id("a", "2026-01-01T00:00:00Z")
    assert first == run_id("a", "2026-01-01T00:00:00Z")  # a retried PrepareInput names the same jobs
    assert first != run_id("b", "2026-01-01T00:00:00Z")
    assert first != run_id("a", "2026-04-01T00:00:00Z")  # the name reused later: new job names
    assert len(first) == 10 and set(first) <= set("0123456789abcdef")


def test_rounds_are_sized_so_that_failed_folds_stay_within_the_payload_limit(execution_input):
    budgets = execution_input.budgets
    document = with_(cv={"k": 8}, tuning={"max_candidates": 100})
    config = execution_input.normalise(document, execution="a", bucket="b")

    batch = config["tuning"]["batch_size"]
    search = execution_input.search_size(execution_input.validate(document))
    assert 1 <= batch < 100
    assert budgets.largest_state_bytes(search) <= budgets.PAYLOAD_LIMIT
    too_many = with_(cv={"k": 8}, tuning={"max_candidates": 100, "batch_size": batch + 1})
    (problem,) = problems_of(execution_input, too_many)
    assert problem.startswith(f"tuning.batch_size: {batch + 1} candidates x 8 folds")
    assert "(payload limit): lower tuning.batch_size to" in problem


@pytest.mark.parametrize(("k", "candidates"), [(50, 100), (20, 100), (10, 100)])
def test_searches_beyond_one_execution_are_refused_naming_the_limit(execution_input, k, candidates):
    document = with_(cv={"k": k}, tuning={"max_candidates": candidates})

    (problem,) = problems_of(execution_input, document)

    assert problem.startswith(f"tuning.max_candidates: {candidates} candidates x {k} folds")
    assert "(payload limit)" in problem and "lower tuning.max_candidates to" in problem
    fitting = int(problem.split("lower tuning.max_candidates to ")[1].split()[0])
    execution_input.validate(with_(cv={"k": k}, tuning={"max_candidates": fitting}))  # what it names fits
    assert problems_of(execution_input, with_(cv={"k": k}, tuning={"max_candidates": fitting + 1}))


def test_the_schemas_largest_search_at_five_folds_fits_one_execution(execution_input):
    """The evaluation's results go to S3, so 100 candidates x 5 folds fit, every fold failing."""
    document = json.loads((ROOT / "examples" / "demo.json").read_text())
    document["dataset"]["uri"] = "s3://cvpipe-data/iris.csv"
    document["tuning"] = {"strategy": "random", "max_candidates": 100}
    document["model"]["search_space"]["C"] = {"type": "float", "low": 0.1, "high": 100, "log": True}
    search = execution_input.search_size(execution_input.validate(document))  # refuses nothing
    assert execution_input.budgets.largest_state_bytes(search) <= execution_input.budgets.PAYLOAD_LIMIT


def test_the_parents_history_fits_at_the_most_rounds_the_input_allows(execution_input):
    """The parent's history grows per round: at most max_candidates rounds of one candidate each."""
    budgets = execution_input.budgets
    most = budgets.Search(k=5, max_candidates=100, batch_size=1, candidate_bytes=4_000, config_bytes=0)
    assert budgets.history_events(most) <= budgets.HISTORY_LIMIT


def test_more_folds_than_a_candidates_execution_holds_are_refused_naming_the_limit(execution_input):
    document = with_(cv={"splitter": "RepeatedKFold", "k": 10, "repeats": 20}, tuning={"max_candidates": 1})

    (problem,) = problems_of(execution_input, document)

    assert problem.startswith("cv.k: 200 folds per candidate can return")
    assert "(payload limit)" in problem
    most = int(problem.split("use at most ")[1].split()[0])
    assert 100 <= most < 200
    fits = with_(
        cv={"splitter": "RepeatedKFold", "k": 10, "repeats": most // 10}, tuning={"max_candidates": 1}
    )
    execution_input.validate(fits)  # refuses nothing


def test_the_history_budget_counts_every_fold_job_failing_after_its_retries(execution_input):
    budgets = execution_input.budgets
    search = budgets.Search(k=5, max_candidates=20, batch_size=20, candidate_bytes=500, config_bytes=3000)
    assert budgets.child_history_events(search) >= 5 * 3 * budgets.FOLD_JOB_ATTEMPTS


def test_random_strategy_needs_no_steps(execution_input):
    document = with_(
        model={"search_space": {"C": {"type": "float", "low": 0.1, "high": 10, "log": True}}},
        tuning={"strategy": "random"},
    )
    assert execution_input.validate(document).model.search_space["C"].steps is None


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({}, "dataset: required"),
        (with_(dataset={"uri": "data/iris.csv"}), "dataset.uri: must be s3://bucket/key"),
        (with_(dataset={"uri": "https://example.com/iris.csv"}), "dataset.uri: must be s3://bucket/key"),
        ({"dataset": {"uri": "s3://cvpipe-data/iris.csv"}}, "dataset.target: required"),
        (with_(dataset={"target": ""}), "dataset.target: string should have at least 1 character"),
        (
            with_(tuning={"max_candidate": 5}),
            "tuning.max_candidate: unknown field: did you mean 'max_candidates'?",
        ),
        (with_(colour="blue"), "colour: unknown field: remove it (allowed: dataset, cv, model"),
        (
            with_(cv={"splitter": "GroupKFlod"}),
            "cv.splitter: must be one of 'auto', 'KFold', 'StratifiedKFold', 'GroupKFold'",
        ),
        (with_(cv={"k": 1}), "cv.k: input should be greater than or equal to 2 (got 1)"),
        (with_(cv={"k": 51}), "cv.k: input should be less than or equal to 50 (got 51)"),
        (with_(cv={"seed": -1}), "cv.seed: input should be greater than or equal to 0"),
        (with_(cv={"holdout": -0.1}), "cv.holdout: input should be greater than or equal to 0 (got -0.1)"),
        (with_(cv={"holdout": 0.5}), "cv.holdout: input should be less than 0.5 (got 0.5)"),
        (with_(cv={"holdout": 20}), "cv.holdout: input should be less than 0.5 (got 20)"),
        (
            with_(model={"estimator": "sklearn..SVC"}),
            "model.estimator: must be a scikit-learn estimator class name",
        ),
        (with_(model={"scaler": "MinMaxScaler"}), "model.scaler: must be one of 'StandardScaler', 'none'"),
        (
            with_(model={"params": {"cv_seed": 1}}),
            "model.params.cv_seed: invalid name: must be an estimator param",
        ),
        (with_(model={"search_space": {"C": [1, 10]}}), 'model.search_space.C: must be {"values": [...]} or'),
        (
            with_(model={"search_space": {"C": {"values": []}}}),
            "model.search_space.C.values: must not be empty",
        ),
        (
            with_(model={"search_space": {"C": {"values": [1], "log": True}}}),
            "model.search_space.C.log: unknown field: remove it (allowed: values)",
        ),
        (
            with_(model={"search_space": {"C": {"type": "double", "low": 1, "high": 2, "steps": 2}}}),
            "model.search_space.C.type: must be one of 'float', 'int' (got 'double')",
        ),
        (
            with_(model={"search_space": {"range": {"type": "float", "low": 1, "hgh": 2, "steps": 2}}}),
            "model.search_space.range.hgh: unknown field: did you mean 'high'?",
        ),
        (
            with_(model={"search_space": {"C": {"type": "float", "high": 2, "steps": 2}}}),
            "model.search_space.C.low: required",
        ),
        (
            with_(model={"search_space": {"C": {"type": "float", "low": 10, "high": 1, "steps": 3}}}),
            "model.search_space.C.low: must be below high (got low=10, high=1)",
        ),
        (
            with_(
                model={"search_space": {"C": {"type": "float", "low": 0, "high": 1, "log": True, "steps": 3}}}
            ),
            "model.search_space.C.low: must be above 0 when log is true (got low=0)",
        ),
        (
            with_(model={"search_space": {"n": {"type": "int", "low": 1, "high": 9.5, "steps": 3}}}),
            "model.search_space.n.high: must be a whole number in an int range (got 9.5)",
        ),
        (
            with_(model={"search_space": {"C": {"type": "float", "low": 1, "high": 2, "steps": 1}}}),
            "model.search_space.C.steps: input should be greater than or equal to 2",
        ),
        (
            with_(model={"search_space": {"C": {"type": "float", "low": 1, "high": 2}}}),
            'model.search_space.C.steps: required by the grid strategy: set it, or use tuning.strategy "random"',
        ),
        (
            with_(model={"params": {"C": 1}, "search_space": {"C": {"values": [1, 10]}}}),
            "model.search_space.C: also set in model.params",
        ),
        (with_(tuning={"strategy": "bayesian"}), "tuning.strategy: must be one of 'grid', 'random'"),
        (
            with_(tuning={"max_candidates": 0}),
            "tuning.max_candidates: input should be greater than or equal to 1",
        ),
        (
            with_(tuning={"max_candidates": 5, "batch_size": 6}),
            "tuning.batch_size: must be at most max_candidates (got 6 > 5)",
        ),
        (with_(metric="acuracy"), 'metric: unknown scorer: use "auto", a scikit-learn scorer name'),
        (with_(baseline="high"), "baseline: input should be a valid number"),
        (
            with_(registry={"group": "my_models"}),
            "registry.group: must be 1 to 63 letters, digits or hyphens",
        ),
        (with_(registry={"group": "a" * 64}), "registry.group: must be 1 to 63 letters, digits or hyphens"),
        (
            with_(registry={"approval_status": "approved"}),
            "registry.approval_status: must be one of 'Approved', 'Rejected', 'PendingManualApproval': did you mean "
            "'Approved'? (got 'approved')",
        ),
        (
            with_(training={"instance_type": "m5.large"}),
            "training.instance_type: must be a SageMaker instance type",
        ),
        (
            with_(training={"instance_count": 0}),
            "training.instance_count: input should be greater than or equal",
        ),
        ([MINIMAL], "(input): must be a JSON object"),
    ],
)
def test_each_invalid_field_is_named_with_what_to_do(execution_input, document, expected):
    assert any(problem.startswith(expected) for problem in problems_of(execution_input, document)), expected


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        # JSON has types: a number in quotes or a boolean is a mistake, not a value to coerce.
        (with_(cv={"k": "3"}), "cv.k: input should be a valid integer (got '3')"),
        (with_(cv={"k": True}), "cv.k: input should be a valid integer (got True)"),
        (with_(cv={"return_train_score": "yes"}), "cv.return_train_score: input should be a valid boolean"),
        (with_(cv={"holdout": "0.2"}), "cv.holdout: input should be a valid number (got '0.2')"),
        (with_(cv={"holdout": True}), "cv.holdout: input should be a valid number (got True)"),
        (with_(baseline=True), "baseline: input should be a valid number (got True)"),
        (
            with_(baseline=1.5),
            "baseline: 1.5 is above the best possible score of metric auto (accuracy or r2), 1, so no model could pass",
        ),
        (
            with_(metric="neg_log_loss", baseline=0.1),
            "baseline: 0.1 is above the best possible score of metric neg_",
        ),
    ],
)
def test_wrong_types_and_impossible_baselines_are_named(execution_input, document, expected):
    assert any(problem.startswith(expected) for problem in problems_of(execution_input, document)), expected


@pytest.mark.parametrize(
    ("metric", "baseline"), [("auto", 1.0), ("neg_log_loss", 0), ("mutual_info_score", 3)]
)
def test_a_reachable_baseline_is_kept(execution_input, metric, baseline):
    assert execution_input.validate(with_(metric=metric, baseline=baseline)).baseline == baseline


@pytest.mark.parametrize(
    ("holdout", "environment"), [(0, "0.0"), (0.2, "0.2"), (1e-3, "0.001"), (0.499, "0.499")]
)
def test_holdout_fraction_reaches_the_split_job(execution_input, holdout, environment):
    config = execution_input.normalise(with_(cv={"holdout": holdout}), execution="e", bucket="artifacts")
    assert config["cv"]["holdout"] == holdout and isinstance(config["cv"]["holdout"], float)
    assert config["split_environment"]["CV_HOLDOUT"] == environment
    assert float(environment) == holdout  # the split job parses it back exactly


def test_a_misspelt_required_field_is_one_problem(execution_input):
    document = with_(model={"search_space": {"C": {"typ": "float", "low": 1, "high": 2, "steps": 2}}})
    assert problems_of(execution_input, document) == [
        "model.search_space.C.typ: unknown field: did you mean 'type'?"
    ]
    assert problems_of(execution_input, {"datset": MINIMAL["dataset"]}) == [
        "datset: unknown field: did you mean 'dataset'?"
    ]


def test_split_job_gets_every_parameter_name_and_value_however_long(execution_input):
    space = {"gamma": {"values": [1, "scale"]}, "degree": {"type": "int", "low": 2, "high": 5, "steps": 2}}
    config = execution_input.normalise(
        with_(model={"params": {"C": 1}, "search_space": space}), execution="e", bucket="artifacts"
    )
    environment = config["split_environment"]
    assert environment["CV_PARAMS"] == "C,degree,gamma"
    assert json.loads(environment["CV_VALUES"]) == {
        "params": {"C": 1}, "search": {"degree": [2, 5], "gamma": [1, "scale"]},
    }  # fmt: skip
    # SageMaker takes 256 characters per environment value: longer settings continue in numbered variables.
    many = {f"parameter_{i:03}": i for i in range(30)}
    environment = execution_input.normalise(with_(model={"params": many}), execution="e", bucket="artifacts")[
        "split_environment"
    ]
    assert all(len(value) <= 256 for value in environment.values())
    names = environment["CV_PARAMS"] + "".join(environment[f"CV_PARAMS_{i}"] for i in range(1, 2))
    assert names.split(",") == sorted(many)
    assert "CV_PARAMS_2" not in environment


def test_a_search_space_past_the_split_jobs_environment_is_refused(execution_input):
    space = {"kernel": {"values": ["x" * 2000 + str(i) for i in range(20)]}}
    with pytest.raises(execution_input.InvalidInputError, match="(?s)model: its params and search space"):
        # Few candidates, so that the payload budget (which these long values also strain) lets it through.
        document = with_(model={"search_space": space}, tuning={"max_candidates": 2, "sample_grid": True})
        execution_input.normalise(document, execution="e", bucket="artifacts")


def test_every_bad_field_is_reported_at_once(execution_input):
    document = with_(dataset={"uri": "iris.csv"}, cv={"k": 0}, tuning={"strategy": "bayes"}, metric="acc")

    problems = problems_of(execution_input, document)

    assert [problem.split(":")[0] for problem in problems] == [
        "dataset.uri",
        "cv.k",
        "tuning.strategy",
        "metric",
    ]


def test_cross_field_problems_are_reported_together(execution_input):
    space = {
        "C": {"type": "float", "low": 10, "high": 1, "steps": 3},
        "gamma": {"type": "float", "low": 0.1, "high": 1},
    }
    document = with_(
        model={"params": {"C": 1}, "search_space": space}, tuning={"max_candidates": 2, "batch_size": 3}
    )

    problems = problems_of(execution_input, document)

    assert [problem.split(":")[0] for problem in problems] == [
        "model.search_space.C",
        "model.search_space.C.low",
        "model.search_space.gamma.steps",
        "tuning.batch_size",
    ]


def test_error_message_lists_problems_and_says_what_to_do(execution_input):
    with pytest.raises(execution_input.InvalidInputError) as raised:
        execution_input.validate(with_(dataset={"uri": "iris.csv"}))

    message = str(raised.value)
    assert "dataset.uri" in message and "upload the CSV to S3" in message and "cvpipe CLI" in message
    assert "(got 'iris.csv')" in message


def test_unknown_scorer_suggests_the_closest_name(execution_input):
    (problem,) = problems_of(execution_input, with_(metric="acuracy"))
    assert "did you mean 'accuracy'?" in problem


def test_scorer_names_are_scikit_learn_scorers(workflow_documents):
    scorers = workflow_documents.execution_input.SCORERS
    assert set(scorers) <= set(get_scorer_names())
    assert {"accuracy", "r2", "roc_auc", "neg_mean_squared_error"} <= set(scorers)


def test_json_schema_describes_the_input(workflow_documents):
    schema = workflow_documents.schemas.json_schema("execution-input")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "cvpipe execution input"
    assert schema["required"] == ["dataset"]
    assert schema["additionalProperties"] is False
    assert "neg_log_loss" in schema["properties"]["metric"]["anyOf"][0]["enum"]
    holdout = schema["$defs"]["CrossValidation"]["properties"]["holdout"]
    assert (holdout["type"], holdout["default"], holdout["minimum"], holdout["exclusiveMaximum"]) == (
        "number",
        0,
        0,
        0.5,
    )
    assert "baseline gate uses that score" in holdout["description"]


def test_handler_returns_the_normalised_config(prepare_input, lambda_context, monkeypatch, published_metrics):
    monkeypatch.setenv("ARTIFACT_BUCKET", "cvpipe-local-artifacts")

    config = prepare_input.app.lambda_handler({"input": MINIMAL, "execution": "exec-1"}, lambda_context)

    assert config["run"]["prefix"] == "s3://cvpipe-local-artifacts/runs/exec-1"
    assert config["tuning"]["batch_size"] == 20
    assert published_metrics()["ExecutionsPrepared"] == [1]


def test_handler_raises_invalid_input_error(prepare_input, lambda_context, monkeypatch, published_metrics):
    monkeypatch.setenv("ARTIFACT_BUCKET", "cvpipe-local-artifacts")
    event = {"input": with_(cv={"k": 100}), "execution": "exec-1"}

    # Step Functions matches the Lambda error by the exception's class name.
    with pytest.raises(Exception) as raised:
        prepare_input.app.lambda_handler(event, lambda_context)

    assert type(raised.value).__name__ == "InvalidInputError"
    assert "cv.k" in str(raised.value)
    assert published_metrics()["InvalidInputs"] == [1]


@pytest.mark.parametrize(
    ("k", "jobs", "cap", "expected"),
    [
        (5, 2, 0, (2, 1)),  # two candidates fold after fold: no idle slot in a third wave
        (5, 10, 0, (2, 5)),  # whole candidates at once
        (4, 2, 0, (1, 2)),  # two waves of two: as busy as two serial candidates, and sooner per candidate
        (5, 2, 1, (1, 2)),  # one candidate at a time: its folds take both slots
        (3, 7, 0, (7, 1)),  # seven candidates fold after fold use all seven slots; 2 x 3 would use six
    ],
)
def test_map_concurrency_keeps_the_most_jobs_busy(execution_input, k, jobs, cap, expected) -> None:
    config = execution_input.validate(
        {
            "dataset": {"uri": "s3://bucket/data.csv", "target": "y"},
            "cv": {"k": k},
            "tuning": {"parallel_candidates": cap},
            "resources": {"max_parallel_jobs": jobs},
        }
    )
    concurrency = execution_input.map_concurrency(config)
    assert (concurrency["parallel_candidates"], concurrency["parallel_folds"]) == expected
    assert concurrency["parallel_candidates"] * concurrency["parallel_folds"] <= jobs


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"metric": "evil.metrics:score"}, "metric"),
        ({"metrics": ["accuracy", "evil.metrics:score"]}, "metrics.1"),
    ],
)
def test_a_custom_scorer_outside_the_allowed_packages_is_refused(execution_input, document, field):
    (problem,) = problems_of(execution_input, {**MINIMAL, **document})
    assert problem.startswith(f"{field}: ") and "'evil'" in problem and "CVPIPE_ALLOWED_PACKAGES" in problem


def test_a_custom_scorer_in_an_allowed_package_is_accepted(execution_input):
    config = execution_input.validate({**MINIMAL, "metric": "sklearn.metrics:accuracy_score"})
    assert config.metric_list == ["sklearn.metrics:accuracy_score"]
