"""Each test module runs its executions in a home of its own, with one warm job pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvpipe.pipeline.local import LocalPipeline
from cvpipe.pipeline.project import find_project_root

ROOT = find_project_root(Path(__file__).parent)
IRIS = ROOT / "examples" / "iris.csv"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def pipeline(home: Path):
    with LocalPipeline(ROOT, home=home, workers=2) as pipeline:
        yield pipeline


def package_count(pipeline: LocalPipeline) -> int:
    return len(pipeline.registry.list_model_packages()["ModelPackageSummaryList"])
