"""PrepareInput refuses an estimator from outside the allowed packages before any job, importing nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DATASET = {"uri": "s3://cvpipe-data/iris.csv", "target": "species"}


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    marker = tmp_path / "imported.marker"
    (tmp_path / "inputtrap").mkdir()
    (tmp_path / "inputtrap" / "__init__.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("inputtrap", None)


@pytest.mark.parametrize("estimator", ["inputtrap.Model", "inputtrap.deep.module.Model", "test.__main__.X"])
def test_outside_the_allowlist_is_refused_without_importing(
    prepare_input, trap: Path, estimator: str
) -> None:
    execution_input = prepare_input.execution_input
    with pytest.raises(execution_input.InvalidInputError) as raised:
        execution_input.validate({"dataset": DATASET, "model": {"estimator": estimator}})
    (problem,) = raised.value.problems
    assert problem.startswith(
        f"model.estimator: {estimator!r} is in package {estimator.split('.', maxsplit=1)[0]!r}"
    )
    assert "stack parameter AllowedPackages" in problem and "CVPIPE_ALLOWED_PACKAGES" in problem
    assert not trap.exists() and "inputtrap" not in sys.modules


def test_the_stacks_setting_extends_it_and_reaches_the_split_job(prepare_input) -> None:
    execution_input, allowlist = prepare_input.execution_input, prepare_input.allowlist
    allowed = allowlist.allowed_packages({"CVPIPE_ALLOWED_PACKAGES": "xgboost, lightgbm"})
    config = execution_input.normalise(
        {"dataset": DATASET, "model": {"estimator": "xgboost.XGBClassifier"}},
        execution="e",
        bucket="b",
        allowed_packages=allowed,
    )
    assert config["split_environment"]["CVPIPE_ALLOWED_PACKAGES"] == "lightgbm,sklearn,xgboost"


def test_the_input_cannot_extend_it(prepare_input) -> None:
    execution_input = prepare_input.execution_input
    document = {"dataset": DATASET, "model": {"estimator": "os.system"}, "allowed_packages": ["os"]}
    with pytest.raises(execution_input.InvalidInputError) as raised:
        execution_input.validate(document)
    assert [problem.split(":")[0] for problem in raised.value.problems] == ["allowed_packages"]
    with pytest.raises(execution_input.InvalidInputError, match="package 'os', which is not allowed"):
        execution_input.validate({"dataset": DATASET, "model": {"estimator": "os.system"}})


def test_short_names_are_left_to_the_jobs_table(prepare_input) -> None:
    assert prepare_input.execution_input.validate({"dataset": DATASET, "model": {"estimator": "SVC"}})
