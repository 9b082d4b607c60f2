"""Data logic shared by split and train: reading tables, the split files, fold indices, metrics, scoring.

The split job reads the dataset once into an Arrow table and writes it once as Parquet (columnar,
typed, missing values kept as nulls), next to the fold assignment: for every split, the row positions
of its training and test parts in scikit-learn's order, so a fold job fits on exactly the rows, in
exactly the order, that ``cross_validate`` would.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sklearn.metrics import get_scorer, get_scorer_names, make_scorer

from cvjobs.allowlist import NotAllowedError, allowed_packages, check_allowed
from cvjobs.job import UserError, json_bytes, publish, quote_names

# Cells read as missing values: pandas-style tokens a user is likely to have in a CSV.
MISSING_TOKENS = ("", "na", "n/a", "nan", "null", "none")
_MISSING_VALUES = sorted({form for token in MISSING_TOKENS for form in (token, token.upper(), token.title())})

DEFAULT_METRICS = {"classification": "accuracy", "regression": "r2"}

# Written in this order: the manifest last, so its presence means the others are complete.
SPLIT_FILES = ("table.parquet", "folds.npz", "manifest.json")

# The train job's cv_fold that trains on every tuning row and scores the holdout rows.
HOLDOUT_FOLD = "holdout"

PARQUET_MAGIC = b"PAR1"
ROW_GROUP_ROWS = 1 << 17
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class CsvOptions:
    """How a CSV is written: ``dataset.csv`` in the execution input."""

    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8"

    @classmethod
    def from_json(cls, text: str) -> CsvOptions:
        try:
            values = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            raise UserError(f"dataset.csv: CV_CSV={text!r} is not a JSON object: {exc}") from None
        unknown = sorted(set(values) - {"delimiter", "quotechar", "encoding"})
        if not isinstance(values, dict) or unknown:
            raise UserError(
                f"dataset.csv: unknown option(s) {quote_names(unknown)}: use delimiter, quotechar, encoding"
            )
        options = cls(**values)
        for name in ("delimiter", "quotechar"):
            value = getattr(options, name)
            if not isinstance(value, str) or len(value) != 1 or value in "\r\n":
                raise UserError(f"dataset.csv.{name}: {value!r} must be one character (not a line break)")
        return options


@dataclass(frozen=True)
class SplitData:
    """The split job's output, loaded: the table's columns, fold row positions and the manifest.

    A warm worker runs many jobs on one loaded split: what is derived from it is derived once."""

    frame: pd.DataFrame
    folds: Mapping[str, np.ndarray]  # train_<s>, test_<s>, holdout
    manifest: dict[str, Any]

    @cached_property
    def features(self) -> pd.DataFrame:
        return self.frame[self.manifest["feature_names"]]

    @cached_property
    def target(self) -> np.ndarray:
        return target_values(self.frame[self.manifest["target"]], self.manifest["task"])

    @cached_property
    def feature_array(self) -> np.ndarray | None:
        """The features as the one array scikit-learn makes of them, when they are all numbers of one
        dtype (``np.asarray`` of such a frame is exactly that); None for any other table."""
        dtypes = set(self.features.dtypes)
        if self.manifest["categorical_features"] or len(dtypes) != 1:
            return None
        dtype = dtypes.pop()
        if not (isinstance(dtype, np.dtype) and dtype.kind in "iuf"):
            return None
        return self.features.to_numpy()

    @cached_property
    def numeric_positions(self) -> list[int]:
        """The numeric features' positions among the features, in the manifest's order."""
        position = {name: index for index, name in enumerate(self.manifest["feature_names"])}
        return [position[name] for name in self.manifest["numeric_features"]]

    @cached_property
    def complete(self) -> bool:
        """Whether ``feature_array`` is floats without a missing value: what an imputer hands on as it is."""
        array = self.feature_array
        return array is not None and array.dtype.kind == "f" and not np.isnan(array).any()


def find_dataset(folder: Path) -> Path:
    """The dataset under ``folder``: its only file, whatever its name, or else its only CSV or Parquet file."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    tables = [p for p in files if p.name.lower().endswith((".csv", ".csv.gz", ".tsv", ".parquet", ".pq"))]
    found = files if len(files) == 1 else tables
    if len(found) != 1:
        listed = f": {quote_names([str(p.relative_to(folder)) for p in found])}" if found else ""
        raise UserError(
            f"dataset.uri: expected one CSV or Parquet file, found {len(found)} among the {len(files)} files under "
            f"it{listed}; point dataset.uri at a single file"
        )
    return found[0]


def read_table(path: Path, options: CsvOptions = CsvOptions()) -> pa.Table:
    """Read a Parquet file, or a CSV (gzipped or not) with a header row; blank lines are skipped."""
    with path.open("rb") as stream:
        magic = stream.read(4)
    if magic == PARQUET_MAGIC:
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"{path.name} is not a readable Parquet file: {exc}") from None
    else:
        table = _read_csv(path, options, gzipped=magic[:2] == GZIP_MAGIC)
    columns = [str(name) for name in table.column_names]
    _check_header(path, columns)
    if table.num_rows == 0:
        raise UserError(f"{path.name} has a header but no data rows")
    return table


def _read_csv(path: Path, options: CsvOptions, gzipped: bool) -> pa.Table:
    """Parsed with pyarrow straight into typed columns, block by block: the memory held is the table
    plus a block or two, not the parsed text of the whole file. The streaming reader takes each
    column's type from the first block; when a later block does not fit it (numbers, then text), the
    file is read again whole, with the types inferred from every row."""
    arguments = {
        "read_options": pa_csv.ReadOptions(encoding=options.encoding),
        "parse_options": pa_csv.ParseOptions(delimiter=options.delimiter, quote_char=options.quotechar),
        "convert_options": pa_csv.ConvertOptions(
            null_values=_MISSING_VALUES, strings_can_be_null=True, quoted_strings_can_be_null=True
        ),
    }
    try:
        try:
            with _open(path, gzipped) as source:
                table = pa_csv.open_csv(source, **arguments).read_all()
        except pa.ArrowInvalid as exc:
            if "conversion error" not in str(exc):
                raise
            with _open(path, gzipped) as source:
                table = pa_csv.read_csv(source, **arguments)
    except pa.ArrowInvalid as exc:
        text = str(exc).removeprefix("CSV parse error: ")
        if "Empty CSV file" in text:
            raise UserError(f"{path.name} is empty: expected a header row and data rows") from None
        compression = _compression(path)
        if compression:
            raise UserError(
                f"{path.name} is {compression}-compressed: decompress it, or give it as CSV, gzipped CSV or Parquet"
            ) from None
        if "UTF8" in text.replace("-", ""):
            raise UserError(
                f"{path.name} is not {options.encoding} text: save it as UTF-8, or set dataset.csv.encoding"
            ) from None
        raise UserError(
            f"{path.name} is not valid CSV with delimiter {options.delimiter!r}: {_shorten(text, 200)}; fix that row, "
            "or set dataset.csv.delimiter / dataset.csv.quotechar to how the file is written"
        ) from None
    _check_delimiter(path, [str(name) for name in table.column_names], options)
    return table.rename_columns([str(name).strip() for name in table.column_names])


# Signatures of compressed files other than gzip (which is read as CSV).
COMPRESSED = {b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


def _compression(path: Path) -> str | None:
    with path.open("rb") as stream:
        start = stream.read(8)
    return next((name for magic, name in COMPRESSED.items() if start.startswith(magic)), None)


def _open(path: Path, gzipped: bool) -> Any:
    return pa.input_stream(str(path), compression="gzip" if gzipped else None)


def _check_delimiter(path: Path, columns: list[str], options: CsvOptions) -> None:
    others = "".join(sep for sep in ",;\t|" if sep != options.delimiter)
    separator = next((sep for sep in others if sep in columns[0]), None) if len(columns) == 1 else None
    if separator:
        raise UserError(
            f"{path.name}: the header is one column, {_shorten(columns[0])!r}, and looks separated by {separator!r}: "
            f"set dataset.csv.delimiter to {separator!r}"
        )


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_header(path: Path, columns: list[str]) -> None:
    unnamed = [str(i + 1) for i, name in enumerate(columns) if not name.strip()]
    if unnamed:
        raise UserError(f"{path.name}: header column(s) {', '.join(unnamed)} have no name: name every column")
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise UserError(f"{path.name}: duplicate column name(s) {quote_names(duplicated)}: make them unique")


def column_kind(column: pa.ChunkedArray | pa.Array) -> str:
    """``numeric``, ``categorical`` (text, booleans) or ``other`` (dates, nested values)."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "numeric"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind):
        return "categorical"
    if pa.types.is_dictionary(kind):
        return "categorical"
    if pa.types.is_null(kind):
        return "empty"
    return "other"


def target_values(column: pd.Series, task: str) -> np.ndarray:
    """The target as scikit-learn takes it: float64 for regression; int64 or str labels for classification."""
    if task == "regression":
        return column.to_numpy(dtype=np.float64)
    values = column.to_numpy()
    if values.dtype.kind == "f":
        return values.astype(np.int64)
    if values.dtype.kind in "iub":
        return values.astype(np.int64) if values.dtype.kind != "b" else values
    return values.astype(np.str_)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas as scikit-learn takes it: numbers as float64 or int64 columns, text (and booleans)
    as object columns of str with NaN where missing."""
    frame = table.to_pandas()
    for name in table.column_names:
        if column_kind(table.column(name)) == "categorical":
            values = frame[name].astype(object)
            present = values.notna()
            frame[name] = values.astype(str).where(present, np.nan).astype(object)
    return frame


def resolve_metric(metric: str, task: str) -> str:
    """``auto`` -> the task's default; a scikit-learn scorer name or an import path, checked."""
    metric = metric.strip()
    if metric == "auto":
        return DEFAULT_METRICS[task]
    if is_custom_scorer(metric):
        load_custom_scorer(metric)
        return metric
    names = get_scorer_names()
    if metric not in names:
        close = difflib.get_close_matches(metric, names, n=3)
        hint = f"did you mean {quote_names(close)}? " if close else ""
        raise UserError(
            f"unknown metric {metric!r}: {hint}use 'auto', a name from sklearn.metrics.get_scorer_names(), or a "
            "custom scorer by import path (package.module:scorer)"
        )
    return metric


def is_custom_scorer(metric: str) -> bool:
    """Whether ``metric`` names a custom scorer by import path rather than a scikit-learn scorer."""
    return ":" in metric or "." in metric


def load_custom_scorer(path: str) -> Any:
    """A scorer ``scorer(estimator, X, y) -> float`` by import path ``package.module:name`` (or dotted)."""
    module_name, _, attribute = path.rpartition(":") if ":" in path else path.rpartition(".")
    try:  # checked before anything is imported, as estimators are
        check_allowed(module_name, allowed_packages(os.environ))
    except NotAllowedError as exc:
        raise UserError(f"metrics: {exc}") from None
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UserError(f"metrics: cannot import custom scorer {path!r}: {exc}") from None
    if not callable(found):
        raise UserError(
            f"metrics: {path!r} is not callable: give a scorer(estimator, X, y) such as make_scorer(...)"
        )
    return found


def build_scorer(metric: str, pos_label: Any = None) -> Any:
    """The scorer of ``metric``; ``pos_label`` is passed to binary metrics that take one (f1, precision...)."""
    if is_custom_scorer(metric):
        return load_custom_scorer(metric)  # checked against the allowlist of each job's environment
    if isinstance(pos_label, Hashable):  # a JSON scalar; a list or an object is built every time
        return _sklearn_scorer(metric, pos_label)
    return _sklearn_scorer.__wrapped__(metric, pos_label)


@functools.lru_cache(maxsize=64, typed=True)  # typed: pos_label True is not 1
def _sklearn_scorer(metric: str, pos_label: Any) -> Any:
    """A scikit-learn scorer, built once per worker: building one copies the registered scorer (and,
    for pos_label, inspects its function), while calling one changes nothing in it."""
    scorer = get_scorer(metric)
    if pos_label is None or not takes_pos_label(scorer):
        return scorer
    return make_scorer(
        scorer._score_func,
        response_method=scorer._response_method,
        greater_is_better=scorer._sign > 0,
        **{**scorer._kwargs, "pos_label": pos_label},
    )


def takes_pos_label(scorer: Any) -> bool:
    """Whether a scorer scores one class as positive: its function takes pos_label and averages as binary."""
    function = getattr(scorer, "_score_func", None)
    if function is None or "pos_label" not in inspect.signature(function).parameters:
        return False
    return scorer._kwargs.get("average", "binary") == "binary"


def score(scorer: Any, metric: str, estimator: Any, X: Any, y: np.ndarray) -> float:
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


def check_columns(expected: list[str], given: list[str]) -> None:
    """Refuse data whose columns differ from those the model was fitted on, naming the difference."""
    if list(given) == list(expected):
        return
    missing = [name for name in expected if name not in given]
    extra = [name for name in given if name not in expected]
    if missing or extra:
        parts = [
            f"missing {quote_names(missing)}" if missing else "",
            f"unexpected {quote_names(extra)}" if extra else "",
        ]
        raise UserError(
            f"the data's columns differ from the model's features: {'; '.join(p for p in parts if p)}"
        )
    moved = [name for name, other in zip(expected, given, strict=True) if name != other]
    raise UserError(
        f"the data's columns are in another order than the model's features ({quote_names(moved)} moved): "
        f"give them as {quote_names(expected, 50)}"
    )


def save_split(
    directory: Path, table: pa.Table, folds: dict[str, np.ndarray], manifest: dict[str, Any]
) -> None:
    # Numbers are written plain (random floats do not compress, and encoding them costs more than the
    # rest of the split); text columns get dictionary pages and compression, where both pay.
    text = [name for name in table.column_names if column_kind(table.column(name)) == "categorical"]
    publish(
        directory,
        {
            "table.parquet": lambda stream: pq.write_table(
                table,
                stream,
                use_dictionary=text,
                compression={name: "snappy" if name in text else "none" for name in table.column_names},
                write_statistics=False,
                row_group_size=ROW_GROUP_ROWS,  # the writer holds one row group in memory
            ),
            "folds.npz": lambda stream: np.savez(stream, allow_pickle=False, **folds),
            "manifest.json": json_bytes(manifest),
        },
    )


def load_split(directory: Path) -> SplitData:
    missing = [name for name in SPLIT_FILES if not (directory / name).is_file()]
    if missing:
        raise UserError(
            f"the train channel {directory} lacks {', '.join(missing)}: it must hold the split job's output"
        )
    manifest = json.loads((directory / "manifest.json").read_text())
    columns = [*manifest["feature_names"], manifest["target"]]
    frame = to_frame(pq.read_table(directory / "table.parquet", columns=columns))
    with np.load(directory / "folds.npz", allow_pickle=False) as archive:
        folds = {name: archive[name] for name in archive.files}
    if len(folds.get("holdout", ())) and folds["holdout"].max() >= len(frame):
        raise UserError(f"the split output in {directory} is inconsistent: run the split job again")
    return SplitData(frame=frame, folds=folds, manifest=manifest)


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
