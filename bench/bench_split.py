"""The split job against the seed article's method, on the same table, measured in one go.

The table: ROWS x 20 columns (19 float features, an integer class), written as CSV the way a user's
tool writes it (shortest round-trip floats). The article's method reads it into arrays and, for each of
k=5 KFold folds, writes train_x, train_y, test_x and test_y with np.savetxt. cvpipe's split job reads
the CSV once and writes it once as Parquet, with each split's row positions. Each side runs in a fresh
process; the bench prints the wall time of each and their ratio, the bytes each writes against the
input's size, and each one's peak memory above its baseline (after imports) against the table's size in
memory (rows x columns x 8 bytes).

    python bench/bench_split.py [--rows 500000]

Goals (issue 9): at least 20x faster, at most 1.1x the input's bytes written, peak under 3x the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

ROOT = Path(__file__).resolve().parents[1]
COLUMNS, K = 20, 5
GOALS = {"speedup": 20.0, "written": 1.1, "memory": 3.0}

# Both sides report their baseline RSS after imports and their peak RSS (ru_maxrss) at the end.
MEASURE = """
import json, resource, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
def report(started, baseline):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": time.perf_counter() - started, "peak": peak - baseline}))
"""

ARTICLE = (
    MEASURE
    + """
import os
import numpy as np
import pyarrow.csv as pa_csv
from sklearn.model_selection import KFold
path, base_dir, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
baseline, started = rss(), time.perf_counter()
# Read into arrays (with the fastest reader, so that the writing is what is compared).
table = pa_csv.read_csv(path)
X = np.column_stack([table.column(i).to_numpy() for i in range(table.num_columns - 1)])
y = table.column(table.num_columns - 1).to_numpy()
del table
# The article's save_kfold_datasets, as published.
kf = KFold(n_splits=k, random_state=23, shuffle=True)
fold_idx = 0
for train_index, test_index in kf.split(X, y=y, groups=None):
    X_train, X_test = X[train_index], X[test_index]
    y_train, y_test = y[train_index], y[test_index]
    os.makedirs(f'{base_dir}/train/{fold_idx}', exist_ok=True)
    np.savetxt(f'{base_dir}/train/{fold_idx}/train_x.csv', X_train, delimiter=',')
    np.savetxt(f'{base_dir}/train/{fold_idx}/train_y.csv', y_train, delimiter=',')
    os.makedirs(f'{base_dir}/test/{fold_idx}', exist_ok=True)
    np.savetxt(f'{base_dir}/test/{fold_idx}/test_x.csv', X_test, delimiter=',')
    np.savetxt(f'{base_dir}/test/{fold_idx}/test_y.csv', y_test, delimiter=',')
    fold_idx += 1
report(started, baseline)
"""
)

CVPIPE = (
    MEASURE
    + """
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from cvjobs import split
root = Path(sys.argv[1])
environ = {"CV_TARGET": "label", "CV_ESTIMATOR": "LogisticRegression", "CV_K": sys.argv[2], "CV_SPLITTER": "KFold"}
baseline, started = rss(), time.perf_counter()
code = split.main(root, environ)
assert code == 0, (root / "output" / "failure").read_text()
report(started, baseline)
"""
)


def write_table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    columns = {f"x{i}": rng.normal(size=rows) for i in range(COLUMNS - 1)}
    columns["label"] = rng.integers(0, 3, rows)
    pa_csv.write_csv(pa.table(columns), path)


def run(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=500_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        dataset = work / "job" / "processing" / "input" / "data.csv"
        dataset.parent.mkdir(parents=True)
        write_table(dataset, rows)
        input_bytes = dataset.stat().st_size
        table_bytes = rows * COLUMNS * 8

        ours = run(CVPIPE, str(work / "job"), str(K), str(ROOT / "containers"))
        ours["written"] = folder_bytes(work / "job" / "processing" / "output")
        article = run(ARTICLE, str(dataset), str(work / "article"), str(K))
        article["written"] = folder_bytes(work / "article")

    print(
        f"table: {rows:,} rows x {COLUMNS} columns, CSV {input_bytes / 1e6:.1f} MB, in memory {table_bytes / 1e6:.1f} MB"
    )
    for name, result in (("article (np.savetxt per fold)", article), ("cvpipe split", ours)):
        print(
            f"{name:<30} {result['seconds']:7.2f} s  written {result['written'] / 1e6:8.1f} MB "
            f"({result['written'] / input_bytes:5.2f}x input)  peak {result['peak'] / 1e6:7.1f} MB "
            f"({result['peak'] / table_bytes:4.2f}x table)"
        )
    checks = {
        "speedup": article["seconds"] / ours["seconds"],
        "written": ours["written"] / input_bytes,
        "memory": ours["peak"] / table_bytes,
    }
    print(
        f"split is {checks['speedup']:.1f}x faster (goal >= {GOALS['speedup']:g}x), writes "
        f"{checks['written']:.2f}x the input (goal <= {GOALS['written']:g}x), peaks at {checks['memory']:.2f}x the "
        f"table (goal < {GOALS['memory']:g}x)"
    )
    met = (
        checks["speedup"] >= GOALS["speedup"]
        and checks["written"] <= GOALS["written"]
        and checks["memory"] < GOALS["memory"]
    )
    print("all goals met" if met else "GOALS MISSED")


if __name__ == "__main__":
    main()
