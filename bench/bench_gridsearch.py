"""cvpipe's local run against scikit-learn's GridSearchCV on the same work, measured in one go.

The work: digits (1,797 rows, 64 features), StandardScaler + SVC, a 20-point grid over C and gamma,
StratifiedKFold(k=5, shuffle, random_state=0), accuracy, and a refit of the best candidate on all rows.
Each side runs as the user runs it, a fresh command from start to end (interpreter start and imports
included): `cvpipe run --json` against a script calling GridSearchCV(n_jobs=WORKERS). Prints each wall
time (median of --repeat runs), the ratio, and whether both chose the same candidate with the same score.
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
from pathlib import Path

from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]
C_VALUES = [0.1, 1.0, 10.0, 100.0, 1000.0]
GAMMA_VALUES = ["scale", 0.0001, 0.001, 0.01]
K, SEED = 5, 0
GOAL = 1.15

GRIDSEARCH = """
import json, sys
import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
path, workers = sys.argv[1], int(sys.argv[2])
with open(path) as f:
    header = f.readline().strip().split(",")
data = np.loadtxt(path, delimiter=",", skiprows=1)
X, y = data[:, :-1], data[:, -1].astype(int)
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
        for row, target in zip(digits.data, digits.target, strict=False):
            writer.writerow([*(repr(float(v)) for v in row), int(target)])


def cvpipe_input(dataset: Path) -> dict:
    return {
        "dataset": {"uri": str(dataset), "target": "digit"},
        "cv": {"splitter": "StratifiedKFold", "k": K, "seed": SEED},
        "model": {
            "estimator": "SVC",
            "search_space": {"C": {"values": C_VALUES}, "gamma": {"values": GAMMA_VALUES}},
        },
        "tuning": {"strategy": "grid", "max_candidates": len(C_VALUES) * len(GAMMA_VALUES)},
        "metric": "accuracy",
        "registry": {"group": "cvpipe-bench-digits"},
    }


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; the median is reported")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel fits on each side")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cvpipe-bench-") as tmp:
        tmp_path = Path(tmp)
        dataset = tmp_path / "digits.csv"
        write_digits(dataset)
        input_file = tmp_path / "input.json"
        input_file.write_text(json.dumps(cvpipe_input(dataset)))
        script = tmp_path / "gridsearch.py"
        script.write_text(GRIDSEARCH % {"seed": SEED, "k": K, "c": C_VALUES, "gamma": GAMMA_VALUES})
        env = {**os.environ, "CVPIPE_HOME": str(tmp_path / "home")}

        cvpipe_times, grid_times = [], []
        for i in range(args.repeat):
            # Alternate the order so that neither side always runs on a cooler machine.
            runs = [
                ("grid", [sys.executable, str(script), str(dataset), str(args.workers)]),
                (
                    "cvpipe",
                    [
                        sys.executable,
                        "-m",
                        "cvpipe",
                        "run",
                        "--input",
                        str(input_file),
                        "--json",
                        "--workers",
                        str(args.workers),
                        "--name",
                        f"bench-{i}",
                    ],
                ),
            ]
            for side, command in runs if i % 2 == 0 else reversed(runs):
                elapsed, stdout = timed(command, env)
                if side == "grid":
                    grid_times.append(elapsed)
                    grid_best = json.loads(stdout)
                else:
                    cvpipe_times.append(elapsed)
                    cvpipe_best = json.loads(stdout)["best"]

    cvpipe_s, grid_s = statistics.median(cvpipe_times), statistics.median(grid_times)
    ratio = cvpipe_s / grid_s
    same = (
        cvpipe_best["params"] == grid_best["params"]
        and abs(cvpipe_best["cv"]["mean"] - grid_best["mean"]) < 1e-12
    )
    print(
        f"workload     digits, StandardScaler+SVC, {len(C_VALUES) * len(GAMMA_VALUES)} candidates x {K} folds + refit, {args.workers} workers"
    )
    print(f"GridSearchCV {grid_s:7.2f} s  (runs: {', '.join(f'{t:.2f}' for t in grid_times)})")
    print(f"cvpipe run   {cvpipe_s:7.2f} s  (runs: {', '.join(f'{t:.2f}' for t in cvpipe_times)})")
    print(f"ratio        {ratio:7.2f}x  (goal: at most {GOAL}x)")
    print(
        f"same choice  {'yes' if same else 'NO'}: cvpipe {cvpipe_best['params']} {cvpipe_best['cv']['mean']:.6f}; "
        f"GridSearchCV {grid_best['params']} {grid_best['mean']:.6f}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
