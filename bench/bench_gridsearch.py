"""cvpipe's local run against scikit-learn's GridSearchCV on the same work, measured in one go.

Three workloads, StandardScaler + SVC, StratifiedKFold(shuffle, random_state=0), accuracy, and a
refit of the best candidate on all rows:

- digits (1,797 rows, 64 features), a 20-point grid over C and gamma, k=5: medium fits;
- iris, a 10 x 10 log grid over C and gamma, k=5: 500 small fits, where the cost per job shows;
- iris, a single candidate, k=2: the fixed cost of a run. Its floor is printed with it: a fresh
  interpreter importing what the fold jobs need (scikit-learn, with the scipy.stats and pandas it
  imports, and the job image's modules), which no local run can finish before.

Each side runs as the user runs it, a fresh command from start to end (interpreter start and imports
included): `cvpipe run --json` against a script calling GridSearchCV(n_jobs=WORKERS). The runs are
paired (A B, then B A, ...) so that both sides see the same machine load; the ratio is the median of
the pairs' ratios. Also printed: the bytes a run leaves in its run folder per fold job (file contents,
and the disk space it takes with directories and block rounding), and whether both sides chose the
same candidate with the same score. Exits non-zero if they did not.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from cvpipe.pipeline.project import CONTAINERS, WARM_MODULES

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
IRIS = ROOT / "examples" / "iris.csv"


@dataclass(frozen=True)
class Workload:
    name: str
    dataset: str  # "digits" or "iris"
    grid: dict[str, list]
    k: int
    goal: float
    repeat: int  # pairs of runs by default

    @property
    def candidates(self) -> int:
        return int(np.prod([len(values) for values in self.grid.values()]))


WORKLOADS = (
    Workload(
        "digits 20x5",
        "digits",
        {"C": [0.1, 1.0, 10.0, 100.0, 1000.0], "gamma": ["scale", 0.0001, 0.001, 0.01]},
        5,
        goal=0.85,
        repeat=3,
    ),
    Workload(
        "iris 100x5",
        "iris",
        {"C": np.logspace(-2, 3, 10).tolist(), "gamma": np.logspace(-4, 1, 10).tolist()},
        5,
        goal=1.0,
        repeat=5,
    ),
    Workload("iris 1x2", "iris", {"C": [1.0], "gamma": ["scale"]}, 2, goal=0.5, repeat=5),
)
FIXED_COST = "iris 1x2"

GRIDSEARCH = """
import json, sys
import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
path, workers = sys.argv[1], int(sys.argv[2])
data = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=str)
X, y = data[:, :-1].astype(float), np.unique(data[:, -1], return_inverse=True)[1]
search = GridSearchCV(
    Pipeline([("scaler", StandardScaler()), ("estimator", SVC(random_state=%(seed)d))]),
    {"estimator__C": %(c)r, "estimator__gamma": %(gamma)r},
    cv=StratifiedKFold(n_splits=%(k)d, shuffle=True, random_state=%(seed)d),
    scoring="accuracy", n_jobs=workers, refit=True,
)
search.fit(X, y)
best = {name.split("__")[1]: value for name, value in search.best_params_.items()}
print(json.dumps({"params": best, "mean": search.best_score_}))
"""


def write_digits(path: Path) -> None:
    digits = load_digits()
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"pixel_{i}" for i in range(digits.data.shape[1])] + ["digit"])
        for row, target in zip(digits.data, digits.target, strict=True):
            writer.writerow([*(repr(float(v)) for v in row), int(target)])


def cvpipe_input(workload: Workload, dataset: Path, target: str) -> dict:
    return {
        "dataset": {"uri": str(dataset), "target": target},
        "cv": {"splitter": "StratifiedKFold", "k": workload.k, "seed": SEED},
        "model": {
            "estimator": "SVC",
            "search_space": {name: {"values": values} for name, values in workload.grid.items()},
        },
        "tuning": {"strategy": "grid", "max_candidates": workload.candidates},
        "metric": "accuracy",
        "registry": {"group": f"cvpipe-bench-{workload.dataset}"},
    }


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


def run_folder_bytes(run_dir: Path) -> tuple[int, int]:
    """(bytes of file contents, bytes of disk space with directories) under ``run_dir``, counting
    a file with several links (a job's input linked to the split's output) once, as du does."""
    content = disk = 0
    seen = set()
    for folder, dirs, files in os.walk(run_dir):
        for name in [".", *dirs, *files] if folder == str(run_dir) else [*dirs, *files]:
            stat = os.lstat(os.path.join(folder, name))
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            seen.add((stat.st_dev, stat.st_ino))
            disk += stat.st_blocks * 512
            if name in files:
                content += stat.st_size
    return content, disk


@dataclass
class Result:
    workload: Workload
    grid_times: list[float]
    cvpipe_times: list[float]
    ratios: list[float]
    content_per_job: float
    disk_per_job: float
    same: bool
    detail: str


def measure(workload: Workload, tmp: Path, workers: int, repeat: int) -> Result:
    if workload.dataset == "digits":
        dataset, target = tmp / "digits.csv", "digit"
        if not dataset.exists():
            write_digits(dataset)
    else:
        dataset, target = IRIS, "species"
    slug = workload.name.replace(" ", "-")
    input_file = tmp / f"{slug}.json"
    input_file.write_text(json.dumps(cvpipe_input(workload, dataset, target)))
    script = tmp / f"{slug}.py"
    grid = workload.grid
    script.write_text(GRIDSEARCH % {"seed": SEED, "k": workload.k, "c": grid["C"], "gamma": grid["gamma"]})
    home = tmp / "home"
    env = {**os.environ, "CVPIPE_HOME": str(home)}
    grid_command = [sys.executable, str(script), str(dataset), str(workers)]

    grid_times, cvpipe_times, ratios = [], [], []
    for i in range(repeat):
        name = f"{slug}-{i}"
        cvpipe_command = [
            *(sys.executable, "-m", "cvpipe", "run", "--input", str(input_file), "--json"),
            *("--workers", str(workers), "--name", name),
        ]
        # Alternate the order so that neither side always runs on a cooler machine.
        sides = [("grid", grid_command), ("cvpipe", cvpipe_command)]
        times = {}
        for side, command in sides if i % 2 == 0 else reversed(sides):
            times[side], stdout = timed(command, env)
            if side == "grid":
                grid_best = json.loads(stdout)
            else:
                document = json.loads(stdout)
                cvpipe_best, run_dir = document["best"], Path(document["run_dir"])
        grid_times.append(times["grid"])
        cvpipe_times.append(times["cvpipe"])
        ratios.append(times["cvpipe"] / times["grid"])

    fold_jobs = workload.candidates * workload.k
    content, disk = run_folder_bytes(run_dir)
    same = (
        cvpipe_best["params"] == grid_best["params"]
        and abs(cvpipe_best["cv"]["mean"] - grid_best["mean"]) < 1e-12
    )
    detail = (
        f"cvpipe {cvpipe_best['params']} {cvpipe_best['cv']['mean']:.6f}; "
        f"GridSearchCV {grid_best['params']} {grid_best['mean']:.6f}"
    )
    return Result(
        workload, grid_times, cvpipe_times, ratios, content / fold_jobs, disk / fold_jobs, same, detail
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, help="pairs of runs per workload (default: 3 for digits, 5 for the others)"
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel fits on each side (default 2)")
    parser.add_argument(
        "--only", action="append", choices=[w.name for w in WORKLOADS], help="run only this workload"
    )
    args = parser.parse_args()
    workloads = [w for w in WORKLOADS if not args.only or w.name in args.only]

    print(f"cvpipe run against GridSearchCV(n_jobs={args.workers}), fresh processes, paired runs")
    print(
        f"{'workload':<12} {'GridSearchCV':>12} {'cvpipe':>8} {'ratio':>7} {'goal':>6}  "
        f"{'bytes/fold job':>14} {'disk/fold job':>13}  same choice"
    )
    failed = False
    results = {}
    with tempfile.TemporaryDirectory(prefix="cvpipe-bench-") as tmp:
        for workload in workloads:
            result = results[workload.name] = measure(
                workload, Path(tmp), args.workers, args.repeat or workload.repeat
            )
            ratio = statistics.median(result.ratios)
            print(
                f"{workload.name:<12} {statistics.median(result.grid_times):10.2f} s "
                f"{statistics.median(result.cvpipe_times):6.2f} s {ratio:6.2f}x {workload.goal:5.2f}x  "
                f"{result.content_per_job:12,.0f} B {result.disk_per_job:11,.0f} B  "
                f"{'yes' if result.same else 'NO: ' + result.detail}",
                flush=True,
            )
            print(
                f"{'':12} pairs (GridSearchCV s / cvpipe s): "
                + ", ".join(
                    f"{g:.2f}/{c:.2f}" for g, c in zip(result.grid_times, result.cvpipe_times, strict=True)
                ),
                flush=True,
            )
            failed |= not result.same
            if workload.name == FIXED_COST:
                print(import_floor(result, args.repeat or workload.repeat), flush=True)
    if {"iris 100x5", "iris 1x2"} <= results.keys():
        print(per_job_cost(results["iris 1x2"], results["iris 100x5"]))
    return 1 if failed else 0


def import_floor(result: Result, repeat: int) -> str:
    """How long a fresh interpreter takes to import what the fold jobs need, against the workload's
    GridSearchCV time: the job workers import it before the first fold job can start."""
    command = [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(ROOT / CONTAINERS)!r}); import {', '.join(WARM_MODULES)}",
    ]
    floor = statistics.median(timed(command, dict(os.environ))[0] for _ in range(repeat))
    grid = statistics.median(result.grid_times)
    return (
        f"{'':12} floor: importing what the fold jobs need takes {floor:.2f} s, "
        f"{floor / grid:.2f}x GridSearchCV's time; no local run ends before it"
    )


def per_job_cost(small: Result, large: Result) -> str:
    """The cost of one more fold job on each side: the slope between the two iris workloads."""
    jobs = large.workload.candidates * large.workload.k - small.workload.candidates * small.workload.k
    costs = [
        (statistics.median(large_times) - statistics.median(small_times)) / jobs * 1000
        for large_times, small_times in (
            (large.grid_times, small.grid_times),
            (large.cvpipe_times, small.cvpipe_times),
        )
    ]
    return (
        f"per fold job ({large.workload.name} minus {small.workload.name}, over {jobs} jobs): "
        f"GridSearchCV {costs[0]:.1f} ms, cvpipe {costs[1]:.1f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
