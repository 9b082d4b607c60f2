"""User mistakes end to end: one clear message naming the field or the file, the right exit code, and
nothing half written. What the split job and PrepareInput check is tested with them
(tests/containers, tests/functions); here, that it reaches the user as it should."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cvpipe.asl import Execution
from cvpipe.cli import main
from cvpipe.errors import UserError
from cvpipe.pipeline.history_file import HISTORY_FILE
from cvpipe.pipeline.local import JOURNAL, LocalPipeline, PipelineRun
from cvpipe.pipeline.run_command import build_input, explain_failure

from .conftest import IRIS, ROOT, package_count

pytestmark = pytest.mark.e2e

# What a run folder holds when the run stopped before any candidate was trained.
REFUSED_RUN_FILES = {HISTORY_FILE, "execution.json", "functions.log", JOURNAL}


def iris_input(**sections) -> dict:
    return {"dataset": {"uri": str(IRIS), "target": "species"}, "cv": {"k": 3}, **sections}


def run_files(pipeline: LocalPipeline, name: str) -> set[str]:
    return {path.name for path in pipeline.run_dir(name).iterdir()}


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two rows of class b: too few for three stratified folds."""
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    path.write_text("x,species\n" + "".join(f"{i},{'a' if i < 5 else 'b'}\n" for i in range(7)))
    return path


@pytest.mark.parametrize(
    ("name", "sections", "fragments"),
    [
        (
            "stratified-regressor",
            lambda _: {"cv": {"splitter": "StratifiedKFold"}, "model": {"estimator": "Ridge"}},
            ["cv.splitter: StratifiedKFold needs class labels but the task is regression"],
        ),
        (
            "multiclass-roc-auc",
            lambda _: {"metric": "roc_auc"},
            ["metric: 'roc_auc' cannot score target column 'species'"],
        ),
        (
            "unknown-parameter",
            lambda _: {"model": {"search_space": {"kernal": {"values": ["rbf"]}}}},
            ["SVC has no parameter(s) 'kernal' (did you mean 'kernel'?)"],
        ),
        (
            "too-many-folds",
            lambda tiny: {"dataset": {"uri": str(tiny), "target": "species"}},
            ["cv.k: StratifiedKFold with k=3 needs at least 3 rows of every class, but tiny.csv has fewer"],
        ),
        (
            "unknown-estimator",
            lambda _: {"model": {"estimator": "RandomForest"}},
            ["model.estimator: unknown estimator 'RandomForest': did you mean 'RandomForestRegressor' or"],
        ),
    ],
)
def test_settings_the_data_refuses_fail_the_split_and_leave_nothing_half_written(
    pipeline: LocalPipeline, tiny_csv: Path, name: str, sections, fragments: list[str]
) -> None:
    before = package_count(pipeline)

    run = pipeline.run(iris_input(**sections(tiny_csv)), name=name)

    assert (run.status, run.error, run.input_rejected) == ("FAILED", "SplitFailed", True)
    for fragment in fragments:
        assert fragment in run.cause
    assert run_files(pipeline, name) == REFUSED_RUN_FILES | {
        "jobs"
    }  # the split's job folder, no split output
    assert json.loads((pipeline.run_dir(name) / "execution.json").read_text())["status"] == "FAILED"
    assert package_count(pipeline) == before


@pytest.mark.parametrize(
    ("sections", "fragment"),
    [
        ({"baseline": 1.2}, "baseline: 1.2 is above the best possible score of metric auto"),
        ({"cv": {"k": "3"}}, "cv.k: input should be a valid integer (got '3')"),
        ({"registry": {"group": "my models!"}}, "registry.group: must be 1 to 63 letters, digits or hyphens"),
        (
            {"registry": {"approval_status": "approved"}},
            "registry.approval_status: must be one of 'Approved', 'Rej",
        ),
        ({"tuning": {"stratgy": "random"}}, "tuning.stratgy: unknown field: did you mean 'strategy'?"),
    ],
)
def test_invalid_input_is_refused_before_any_job(
    pipeline: LocalPipeline, sections: dict, fragment: str
) -> None:
    name = "invalid-" + fragment.split(":", maxsplit=1)[0].replace(".", "-")
    run = pipeline.run(iris_input(**sections), name=name)
    assert (run.status, run.error, run.input_rejected) == ("FAILED", "InvalidInputError", True)
    assert fragment in explain_failure(run)
    assert run_files(pipeline, name) == REFUSED_RUN_FILES


def test_every_candidate_failing_is_a_run_failure_that_says_why(pipeline: LocalPipeline) -> None:
    # Valid values that only fail against the data: more neighbours than a fold's training rows.
    before = package_count(pipeline)
    space = {"n_neighbors": {"values": [150, 200]}}
    run = pipeline.run(
        iris_input(model={"estimator": "KNeighborsClassifier", "search_space": space}), name="all-failing"
    )

    assert (run.status, run.error, run.input_rejected) == ("FAILED", "NoCandidateSucceeded", False)
    explained = explain_failure(run)
    assert 'candidate 0 {"n_neighbors": 150}: fold 0: ' in explained, explained
    assert 'candidate 1 {"n_neighbors": 200}' in explained and "n_neighbors" in explained
    assert package_count(pipeline) == before


def test_a_baseline_the_best_misses_registers_nothing(pipeline: LocalPipeline) -> None:
    before = package_count(pipeline)
    run = pipeline.run(iris_input(baseline=0.9999, metric="accuracy"), name="below-baseline")
    assert (run.status, run.error, run.input_rejected) == ("FAILED", "BelowBaseline", False)
    doc = run.document()
    assert (doc["metric"], doc["baseline"], doc["model_package_arn"]) == ("accuracy", 0.9999, None)
    assert "registry" not in run_files(pipeline, "below-baseline")
    assert package_count(pipeline) == before


def test_no_baseline_is_reported_as_none(pipeline: LocalPipeline) -> None:
    run = pipeline.run(iris_input(model={"estimator": "LogisticRegression"}), name="no-baseline")
    assert run.status == "SUCCEEDED", run.cause
    assert run.document()["baseline"] is None  # not the config's stand-in for minus infinity


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda folder: folder, "is a folder; point it at one CSV file"),
        (lambda folder: folder / "missing.csv", "no such file"),
    ],
)
def test_a_dataset_that_is_not_a_file_is_refused_before_the_run(
    pipeline: LocalPipeline, tmp_path: Path, make, fragment: str
) -> None:
    with pytest.raises(UserError, match=fragment):
        pipeline.run(iris_input(dataset={"uri": str(make(tmp_path)), "target": "species"}), name="not-a-file")
    assert not pipeline.run_dir("not-a-file").exists()


def test_an_interrupted_run_is_recorded_as_aborted(pipeline: LocalPipeline, monkeypatch) -> None:
    waits = []

    def interrupted_once(execution, timeout=None):
        waits.append(execution.name)
        if len(waits) == 1:
            raise KeyboardInterrupt
        return original(execution, timeout)

    original = Execution.wait
    monkeypatch.setattr(Execution, "wait", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(iris_input(), name="interrupted")
    recorded = json.loads((pipeline.run_dir("interrupted") / "execution.json").read_text())
    assert (recorded["status"], recorded["error"]) == ("ABORTED", "Interrupted")


@pytest.mark.parametrize(
    ("error", "rejected"),
    [
        ("InvalidInputError", True),
        ("HyperparameterLimitError", True),  # ProposeCandidates: values beyond SageMaker's limits
        ("SplitFailed", True),  # the split job refused the data or the settings
        ("FinalFitFailed", False),
        ("NoCandidateSucceeded", False),
        ("BelowBaseline", False),
    ],
)
def test_exit_code_2_is_for_what_the_user_gave(error: str, rejected: bool) -> None:
    run = PipelineRun("x", "FAILED", None, error, "cause", Path("runs/x"))
    assert run.input_rejected is rejected


def test_dataset_flag_without_input_starts_from_the_defaults() -> None:
    document = build_input(ROOT, None, "data.csv", ["dataset.target=price", "model.estimator=Ridge"])
    # Not the demo's: its StratifiedKFold, accuracy and baseline are Iris's.
    assert document == {"dataset": {"uri": "data.csv", "target": "price"}, "model": {"estimator": "Ridge"}}
    demo = build_input(ROOT, None, None, [])
    assert Path(demo["dataset"]["uri"]) == IRIS and demo["baseline"] == 0.9


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["cv"], "--set 'cv': expected KEY=VALUE"),
        ([".k=3"], "--set '.k=3': expected KEY=VALUE with a dotted KEY"),
        (["dataset=3", "dataset.uri=x"], "cannot set dataset.uri: dataset is not an object in the input"),
    ],
)
def test_bad_set_syntax_is_named(overrides: list[str], fragment: str) -> None:
    with pytest.raises(UserError, match=re.escape(fragment)):
        build_input(ROOT, None, "data.csv", overrides)


def test_cli_exits_2_for_a_refused_dataset_and_1_for_a_failed_search(
    home: Path, tmp_path: Path, capfd
) -> None:
    # In-process, as the CLI runs: stderr has one line of cause and no traceback.
    text = tmp_path / "days.csv"
    text.write_text("x,day,species\n" + "".join(f"{i},2024-01-{i + 1:02},{'ab'[i % 2]}\n" for i in range(10)))
    assert (
        main(
            [
                "run",
                "--home",
                str(home),
                "--workers",
                "1",
                "--dataset",
                str(text),
                "--set",
                "dataset.target=species",
                "--set",
                "cv.k=2",
            ]
        )
        == 2
    )
    captured = capfd.readouterr()
    assert "days.csv: feature column(s) 'day' (date32[day]) are neither numbers nor text" in captured.err
    assert "Traceback" not in captured.err and "registered  nothing" in captured.out

    assert (
        main(
            [
                "run",
                "--home",
                str(home),
                "--workers",
                "1",
                "--dataset",
                str(IRIS),
                "--set",
                "dataset.target=species",
                "--set",
                "cv.k=2",
                "--set",
                "model.estimator=KNeighborsClassifier",
                "--set",
                'model.params={"n_neighbors": 120}',
            ]
        )
        == 1
    )
    captured = capfd.readouterr()
    assert "execution FAILED: NoCandidateSucceeded" in captured.err
    assert 'candidate 0 {"n_neighbors": 120}: fold 0: ' in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--name", "bad name"], "execution name 'bad name': use 1 to 80 letters"),
        (["--input", "{missing}"], "no such file"),
        (["--input", "{not_json}"], "not valid JSON"),
        (["--input", "{a_list}"], "the execution input must be a JSON object"),
    ],
)
def test_cli_argument_mistakes_exit_2(
    home: Path, tmp_path: Path, capfd, arguments: list[str], fragment: str
) -> None:
    (tmp_path / "not.json").write_text("{bad")
    (tmp_path / "list.json").write_text("[1]")
    paths = {
        "missing": tmp_path / "nope.json",
        "not_json": tmp_path / "not.json",
        "a_list": tmp_path / "list.json",
    }
    arguments = [argument.format(**paths) for argument in arguments]
    assert main(["run", "--home", str(home), *arguments]) == 2
    assert fragment in capfd.readouterr().err


def test_execution_names_are_not_reused(pipeline: LocalPipeline) -> None:
    first = pipeline.run(iris_input(baseline=1.01), name="reused-name")  # refused at once: above any score
    before = {
        path: path.read_bytes() for path in pipeline.run_dir("reused-name").rglob("*") if path.is_file()
    }

    with pytest.raises(UserError, match="execution name 'reused-name' is taken"):
        pipeline.run(iris_input(), name="reused-name")
    assert first.status == "FAILED"
    after = {path: path.read_bytes() for path in pipeline.run_dir("reused-name").rglob("*") if path.is_file()}
    assert after == before  # the first run's folder is left as it was
