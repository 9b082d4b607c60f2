"""The jobs enforce the allowlist themselves (defense in depth): a dotted estimator name outside it is
refused before anything is imported, whoever started the job."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cvjobs import data, estimators
from cvjobs.allowlist import allowed_packages
from cvjobs.job import UserError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable package ``jobtrap`` that leaves a marker file when imported."""
    marker = tmp_path / "imported.marker"
    (tmp_path / "jobtrap").mkdir()
    (tmp_path / "jobtrap" / "__init__.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\nfrom sklearn.linear_model import Ridge\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("jobtrap", None)


def test_the_function_and_the_image_carry_the_same_rule() -> None:
    deployed = [
        ROOT / "functions" / "prepare_input" / "allowlist.py",
        ROOT / "containers" / "cvjobs" / "allowlist.py",
    ]
    assert deployed[0].read_bytes() == deployed[1].read_bytes()


@pytest.mark.parametrize("name", ["jobtrap.Ridge", "jobtrap.sub.Model", " jobtrap.Ridge"])
def test_a_name_outside_the_allowlist_is_refused_and_never_imported(trap: Path, name: str) -> None:
    with pytest.raises(UserError, match="package 'jobtrap', which is not allowed .*CVPIPE_ALLOWED_PACKAGES"):
        estimators.resolve_estimator(name, allowed_packages({}))
    assert not trap.exists() and "jobtrap" not in sys.modules


def test_the_split_job_refuses_it_as_a_user_error(trap: Path, jobs) -> None:
    result = jobs.split(["x", "species"], [[1, "a"]] * 10, CV_ESTIMATOR="jobtrap.Ridge")
    assert result.code == 1
    assert "model.estimator: 'jobtrap.Ridge' is in package 'jobtrap', which is not allowed" in result.failure
    assert not trap.exists()


def test_the_train_job_refuses_it_too(trap: Path, jobs) -> None:
    split = jobs.split_iris()
    result = jobs.train(split, {"cv_estimator": "jobtrap.Ridge", "cv_fold": "0"})
    assert result.code == 1 and "not allowed" in result.failure
    assert not trap.exists()


def test_the_jobs_environment_extends_the_list(trap: Path) -> None:
    spec = estimators.resolve_estimator(
        "jobtrap.Ridge", allowed_packages({"CVPIPE_ALLOWED_PACKAGES": "jobtrap"})
    )
    assert (spec.task, trap.exists()) == ("regression", True)


@pytest.mark.parametrize("setting", ["xgboost lightgbm", "os.path", "a;b", "-x"])
def test_a_malformed_setting_is_refused_naming_it(setting: str) -> None:
    with pytest.raises(ValueError, match="CVPIPE_ALLOWED_PACKAGES: .* are not top-level package names"):
        allowed_packages({"CVPIPE_ALLOWED_PACKAGES": setting})


def test_a_custom_scorer_outside_the_allowlist_is_refused_and_never_imported(trap: Path) -> None:
    with pytest.raises(
        UserError, match="metrics: 'jobtrap.scoring' is in package 'jobtrap', which is not allowed"
    ):
        data.load_custom_scorer("jobtrap.scoring:score")
    assert not trap.exists() and "jobtrap" not in sys.modules
