"""Data logic shared by split and train: CSV parsing, the split files, fold masks, metrics, scoring."""

from __future__ import annotations

import csv
import difflib
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import get_scorer_names

from cvjobs.job import UserError, json_bytes, publish, quote_names

# Cells read as missing values: pandas-style tokens a user is likely to have in a CSV.
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})

DEFAULT_METRICS = {"classification": "accuracy", "regression": "r2"}

# Written in this order: the manifest last, so its presence means the arrays are complete.
SPLIT_FILES = ("X.npy", "y.npy", "folds.npy", "manifest.json")

# Fold id in folds.npy of the rows held out from tuning (cv.holdout), and the train job's cv_fold that scores them.
HOLDOUT = -1
HOLDOUT_FOLD = "holdout"


@dataclass(frozen=True)
class Table:
    """A CSV as text: file name, column names, one tuple of stripped cells per column, source line per row."""

    name: str
    columns: list[str]
    cells: dict[str, tuple[str, ...]]
    lines: list[int]

    @property
    def n_rows(self) -> int:
        return len(self.lines)


@dataclass(frozen=True)
class SplitData:
    """The split job's output: features, target, fold id per row and the manifest."""

    X: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    manifest: dict[str, Any]


def find_csv(folder: Path) -> Path:
    """The dataset under ``folder``: its only file, whatever its name, or else its only .csv file."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    found = files if len(files) == 1 else [p for p in files if p.suffix.lower() == ".csv"]
    if len(found) != 1:
        listed = f": {quote_names([str(p.relative_to(folder)) for p in found])}" if found else ""
        raise UserError(
            f"dataset.uri: expected one CSV file, found {len(found)} .csv files among the {len(files)} files under "
            f"it{listed}; point dataset.uri at a single .csv file"
        )
    return found[0]


def read_table(path: Path) -> Table:
    """Read a CSV with a header row; blank lines are skipped, every other row must be complete."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            if header is None:
                raise UserError(f"{path.name} is empty: expected a header row and data rows")
            columns = [name.strip() for name in header]
            _check_delimiter(path, columns)
            _check_header(path, columns)
            rows: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(columns):
                    raise UserError(
                        f"{path.name} line {reader.line_num} has {len(row)} fields, "
                        f"the header has {len(columns)}: fix or remove that row"
                    )
                rows.append([cell.strip() for cell in row])
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path.name} is not UTF-8 text ({exc.reason}): save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise UserError(f"{path.name} is not valid CSV: {exc}") from None
    if not rows:
        raise UserError(f"{path.name} has a header but no data rows")
    cells = dict(zip(columns, zip(*rows, strict=True), strict=True))
    return Table(name=path.name, columns=columns, cells=cells, lines=lines)


def _check_delimiter(path: Path, columns: list[str]) -> None:
    separator = next((sep for sep in ";\t|" if sep in columns[0]), None) if len(columns) == 1 else None
    if separator:
        raise UserError(
            f"{path.name}: the header is one column, {_shorten(columns[0])!r}, and looks separated by {separator!r}: "
            "save the file with commas between the fields"
        )


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_header(path: Path, columns: list[str]) -> None:
    unnamed = [str(i + 1) for i, name in enumerate(columns) if not name]
    if unnamed:
        raise UserError(f"{path.name}: header column(s) {', '.join(unnamed)} have no name: name every column")
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise UserError(f"{path.name}: duplicate column name(s) {quote_names(duplicated)}: make them unique")


@dataclass(frozen=True)
class _Parsed:
    values: np.ndarray  # float64; NaN where missing or bad
    missing: list[int]  # row indices
    bad: list[int]  # row indices of non-numeric or infinite cells


def _parse_numbers(cells: Sequence[str]) -> _Parsed:
    try:  # fast path: numpy parses a clean column in one call
        values = np.array(cells, dtype=np.float64)
        if np.isfinite(values).all():
            return _Parsed(values, [], [])
    except ValueError:
        pass
    values = np.full(len(cells), np.nan)
    missing, bad = [], []
    for i, cell in enumerate(cells):
        if cell.lower() in MISSING_TOKENS:
            missing.append(i)
            continue
        try:
            value = float(cell)
        except ValueError:
            bad.append(i)
            continue
        if math.isfinite(value):
            values[i] = value
        else:
            bad.append(i)
    return _Parsed(values, missing, bad)


def feature_matrix(table: Table, features: list[str]) -> np.ndarray:
    """The features as a float64 matrix; every non-numeric or incomplete column is reported at once."""
    parsed = {name: _parse_numbers(table.cells[name]) for name in features}
    problems = []
    bad = [name for name in features if parsed[name].bad]
    if bad:
        first = parsed[bad[0]].bad[0]
        example = f"{table.cells[bad[0]][first]!r} on line {table.lines[first]}"
        problems.append(
            f"{table.name}: feature column(s) {quote_names(bad)} are not numeric (e.g. {example}): "
            "encode them as numbers (e.g. one-hot) or drop them from the CSV"
        )
    missing = [name for name in features if parsed[name].missing]
    if missing:
        counts = ", ".join(
            f"{name!r} ({len(parsed[name].missing)} rows, first on line {table.lines[parsed[name].missing[0]]})"
            for name in missing[:20]
        )
        problems.append(
            f"{table.name}: feature column(s) {counts} have missing values: "
            "impute them or drop those rows before the run"
        )
    if problems:
        raise UserError("; ".join(problems))
    return np.column_stack([parsed[name].values for name in features])


def target_vector(table: Table, target: str, task: str) -> np.ndarray:
    """The target: float64 for regression; labels (int64 if all integers, else strings) for classification."""
    cells = table.cells[target]
    parsed = _parse_numbers(cells)
    if parsed.missing:
        lines = ", ".join(str(table.lines[i]) for i in parsed.missing[:10])
        raise UserError(
            f"{table.name}: target column {target!r} is empty on {len(parsed.missing)} rows (lines {lines}"
            f"{', ...' if len(parsed.missing) > 10 else ''}): drop those rows before the run"
        )
    if not parsed.bad:
        if task == "regression":
            return parsed.values
        fractional = np.flatnonzero(parsed.values != np.round(parsed.values))
        if fractional.size:
            # Every distinct measurement would be a class of its own.
            first = fractional[0]
            raise UserError(
                f"{table.name}: target column {target!r} holds fractional numbers (e.g. {cells[first]!r} on line "
                f"{table.lines[first]}) but the estimator is a classifier: choose a regressor, or give the classes "
                "as integers or text"
            )
        return parsed.values.astype(np.int64)
    if task == "regression":
        first = parsed.bad[0]
        raise UserError(
            f"{table.name}: target column {target!r} is not numeric (e.g. {cells[first]!r} on line "
            f"{table.lines[first]}) but the estimator is a regressor: choose a classifier or a numeric target"
        )
    return np.array(cells, dtype=np.str_)


def fold_masks(folds: np.ndarray, fold: int | str | None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, validation) row masks for ``fold``.

    ``None`` trains on every row, holdout included (the final model); ``"holdout"`` trains on every
    tuning row and validates on the holdout; fold ``f`` trains on the other folds, never on the holdout.
    """
    if fold is None:
        return np.ones(len(folds), dtype=bool), np.zeros(len(folds), dtype=bool)
    validation = folds == (HOLDOUT if fold == HOLDOUT_FOLD else fold)
    return (folds != HOLDOUT) & ~validation, validation


def resolve_metric(metric: str, task: str) -> str:
    """``auto`` -> the task's default; otherwise a scikit-learn scorer name, checked."""
    metric = metric.strip()
    if metric == "auto":
        return DEFAULT_METRICS[task]
    names = get_scorer_names()
    if metric not in names:
        close = difflib.get_close_matches(metric, names, n=3)
        hint = f"did you mean {quote_names(close)}? " if close else ""
        raise UserError(
            f"unknown metric {metric!r}: {hint}use 'auto' or a name from sklearn.metrics.get_scorer_names()"
        )
    return metric


def score(scorer: Any, metric: str, estimator: Any, X: np.ndarray, y: np.ndarray) -> float:
    """``scorer(estimator, X, y)`` as a float.

    Failures here are the user's: a metric the model cannot produce (no predict_proba, a binary-only
    metric on three classes) or hyperparameters that only fail at predict time (n_neighbors > rows).
    """
    try:
        return float(scorer(estimator, X, y))
    except ValueError as exc:
        raise UserError(f"scoring the fitted model with metric {metric!r} failed: {exc}") from None
    except AttributeError as exc:
        raise UserError(
            f"metric {metric!r} needs a prediction method that the model lacks with these hyperparameters "
            f"({exc}): choose another metric, or set the parameter that provides it, such as SVC's probability"
        ) from None


def save_split(directory: Path, split: SplitData) -> None:
    publish(
        directory,
        {
            "X.npy": lambda stream: np.save(stream, split.X, allow_pickle=False),
            "y.npy": lambda stream: np.save(stream, split.y, allow_pickle=False),
            "folds.npy": lambda stream: np.save(stream, split.folds, allow_pickle=False),
            "manifest.json": json_bytes(split.manifest),
        },
    )


def load_split(directory: Path) -> SplitData:
    """Memory-mapped, read-only arrays: loading is cheap and the page cache is shared by workers."""
    missing = [name for name in SPLIT_FILES if not (directory / name).is_file()]
    if missing:
        raise UserError(
            f"the train channel {directory} lacks {', '.join(missing)}: it must hold the split job's output"
        )
    # np.asarray drops the memmap subclass, so row selections are plain in-memory arrays.
    X, y, folds = (
        np.asarray(np.load(directory / name, mmap_mode="r", allow_pickle=False)) for name in SPLIT_FILES[:3]
    )
    manifest = json.loads((directory / "manifest.json").read_text())
    if not (len(X) == len(y) == len(folds) and X.shape[1] == len(manifest["feature_names"])):
        raise UserError(f"the split output in {directory} is inconsistent: run the split job again")
    return SplitData(X=X, y=y, folds=folds, manifest=manifest)


_CACHE: OrderedDict[tuple, SplitData] = OrderedDict()
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()


def load_split_cached(directory: Path) -> SplitData:
    """``load_split``, remembered per worker process for the many jobs that read the same split.

    Keyed by each file's identity (device, inode, mtime, size) rather than its path string, so a
    channel that links to the same files hits the cache and a rewritten file never does.
    """
    try:
        key = tuple(_identity(directory / name) for name in SPLIT_FILES)
    except FileNotFoundError:
        return load_split(directory)  # reports which files are missing
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        split = load_split(directory)
        _CACHE[key] = split
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return split


def _identity(path: Path) -> tuple[int, int, int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size
