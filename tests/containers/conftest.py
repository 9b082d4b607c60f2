"""Job folders laid out like /opt/ml, and helpers that run the entrypoints in them."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CONTAINERS = Path(__file__).resolve().parents[2] / "containers"
if str(CONTAINERS) not in sys.path:  # the image installs cvjobs; here it is imported from source
    sys.path.insert(0, str(CONTAINERS))

from cvjobs import split, train  # noqa: E402


def reference_pipeline(
    estimator, numeric: list[str], categorical: list[str] = (), scale: bool = True, impute: str = "mean"
) -> Pipeline:
    """The pipeline the jobs fit, built here from scikit-learn alone: the reference for parity tests."""
    transformers = [
        (
            "numeric",
            Pipeline(
                [
                    ("impute", SimpleImputer(strategy=impute) if impute != "none" else "passthrough"),
                    ("scale", StandardScaler() if scale else "passthrough"),
                ]
            ),
            list(numeric),
        )
    ]
    if categorical:
        encode = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        transformers.append(
            (
                "categorical",
                Pipeline([("impute", SimpleImputer(strategy="most_frequent")), ("encode", encode)]),
                list(categorical),
            )
        )
    return Pipeline([("preprocess", ColumnTransformer(transformers)), ("estimator", estimator)])


IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def iris_rows() -> list[list[object]]:
    iris = load_iris(as_frame=False)
    # csv writes repr(float), which round-trips: the CSV holds sklearn's values bit for bit.
    return [[*map(float, x), str(iris.target_names[t])] for x, t in zip(iris.data, iris.target, strict=True)]


@dataclass
class JobResult:
    code: int
    root: Path
    stdout: str = ""

    def read(self, relative: str) -> str:
        return (self.root / relative).read_text()

    def json(self, relative: str) -> dict:
        return json.loads(self.read(relative))

    @property
    def failure(self) -> str:
        return self.read("output/failure")

    def files(self, relative: str) -> list[str]:
        """Every file under ``relative``, hidden temporaries included."""
        folder = self.root / relative
        return (
            sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
            if folder.exists()
            else []
        )

    def metrics(self) -> dict[str, float]:
        pairs = (line.rsplit("=", 1) for line in self.stdout.splitlines() if "=" in line)
        return {name: float(value) for name, value in pairs}


class Jobs:
    """Creates one job folder per call under ``tmp_path`` and runs an entrypoint in it."""

    def __init__(self, base: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.base = base
        self.capsys = capsys
        self.count = 0

    def _folder(self, kind: str) -> Path:
        self.count += 1
        root = self.base / f"{kind}-{self.count}"
        root.mkdir()
        return root

    def split(self, header: list[str], rows: list[list[object]], **environ: object) -> JobResult:
        return self.split_files({"data.csv": None}, header=header, rows=rows, **environ)

    def split_files(
        self,
        files: dict[str, bytes | None],
        header: list[str] | None = None,
        rows: list[list[object]] | None = None,
        **environ: object,
    ) -> JobResult:
        """Run split on ``files`` under processing/input (None: the CSV of ``header`` and ``rows``)."""
        root = self._folder("split")
        for name, content in files.items():
            path = root / "processing" / "input" / name
            if content is None:
                write_csv(path, header or [], rows or [])
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        environ = {"CV_TARGET": "species", "CV_ESTIMATOR": "SVC", "CV_K": 5, "CV_SEED": 0, **environ}
        return JobResult(split.main(root, environ={key: str(value) for key, value in environ.items()}), root)

    def split_iris(self, **environ: object) -> JobResult:
        result = self.split(IRIS_COLUMNS, iris_rows(), **environ)
        assert result.code == 0, result.failure
        return result

    def train(self, split_job: JobResult | Path, hyperparameters: dict[str, str]) -> JobResult:
        """Run train on a split job's output (or on a given folder) as channel ``train``."""
        root = self._folder("train")
        (root / "input" / "config").mkdir(parents=True)
        (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
        (root / "input" / "data").mkdir()
        # A symlink, as a local runner may do: every fold job then reads the same files.
        source = split_job if isinstance(split_job, Path) else split_job.root / "processing" / "output"
        (root / "input" / "data" / "train").symlink_to(source)
        self.capsys.readouterr()
        code = train.main(root)
        return JobResult(code, root, self.capsys.readouterr().out)


@pytest.fixture
def jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Jobs:
    return Jobs(tmp_path, capsys)


@pytest.fixture
def iris_table() -> tuple[list[str], list[list[object]]]:
    """Iris as CSV header and rows (string species labels), fresh for each test to modify."""
    return list(IRIS_COLUMNS), iris_rows()


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray]:
    data = load_iris(as_frame=False)
    return data.data, data.target


@pytest.fixture(scope="session")
def diabetes() -> tuple[np.ndarray, np.ndarray, list[str]]:
    data = load_diabetes(as_frame=False)
    return data.data, data.target, [*data.feature_names, "progression"]
