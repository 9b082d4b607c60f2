"""What SageMaker does on a job's instance around the container's program, done in the job's worker.

On SageMaker the control plane validates a request and reports the job's status; the instance
lays out ``/opt/ml``, downloads the inputs, runs the container, packs and uploads what it wrote
and emits its metrics. Here the instance's part runs in the worker process that runs the program
(``Instance`` is the ``host`` of ``JobPool.run``), beside the other workers, so that the process
that runs the engine only decides and records each job's end.

Workers import this module: it imports nothing heavy (no botocore, no engine).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import queue
import re
import shutil
import tarfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store import LocalObjectStore

DISCARDED = ".discarded"
"""The store's folder where completed jobs' volumes wait to be deleted (not an S3 bucket: hidden)."""
TAR = "tar"  # an output folder stored as one gzipped tar, its files at the top level
TAR_IF_ANY = "tar-if-any"  # the same, only when the folder has something in it
FILES = "files"  # an output folder stored file by file under a prefix


class VolumeDiscarder:
    """Deletes the volumes of completed jobs off the job's path: SageMaker frees an instance's volume
    after the job, not within it. A volume is moved out of the job folder at once (a rename), and
    deleted on a thread of its own: removing a folder can take milliseconds of waiting on the disk
    (a file system mounted with ``discard``), time a fold job would otherwise spend before the next
    could start. ``drain`` deletes what is in the trash now, whoever put it there (this discarder's
    volumes, other processes' volumes on their way out, those of a process killed earlier)."""

    def __init__(self, trash: Path) -> None:
        self.trash = trash
        self._queue: queue.SimpleQueue[list[Path]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def discard(self, paths: list[Path]) -> None:
        moved = []
        for path in paths:
            target = self.trash / uuid.uuid4().hex
            try:
                try:
                    os.rename(path, target)
                except FileNotFoundError:
                    if not path.exists():
                        continue  # the job did not make it
                    self.trash.mkdir(parents=True, exist_ok=True)
                    os.rename(path, target)
            except OSError:  # another file system, say: delete it here
                shutil.rmtree(path, ignore_errors=True)
                continue
            moved.append(target)
        if not moved:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._delete, name="cvpipe-discard", daemon=True)
                self._thread.start()
        self._queue.put(moved)  # one hand-off per job: each wakes the thread

    def _delete(self) -> None:
        while True:
            for path in self._queue.get():
                shutil.rmtree(path, ignore_errors=True)

    def drain(self) -> None:
        # Deleting a folder that the thread is deleting too is safe: each ignores what the other
        # removed first, and neither adds anything, so the folder is gone when either returns.
        with contextlib.suppress(FileNotFoundError):
            for path in self.trash.iterdir():
                shutil.rmtree(path, ignore_errors=True)


_discarders: dict[str, VolumeDiscarder] = {}
"""The worker's discarder per trash folder: one set of deletion threads per worker process."""


@dataclass(frozen=True)
class Report:
    """How the instance's part went, for the job's description."""

    missing: str | None = None
    """An input prefix without objects: the job fails with a ClientError, its program never ran."""
    error: str | None = None
    """Moving the job's data failed (OSError): the job fails with a ClientError."""
    metrics: tuple[tuple[str, float], ...] = ()
    """``FinalMetricDataList``'s names and values, from the job's log."""


@dataclass(frozen=True)
class Instance:
    """A job's instance, as ``JobPool.run``'s ``host``: paths are relative to the job folder
    (``/opt/ml``), S3 URIs name objects of the local store at ``store``. Picklable."""

    folder: str
    store: str
    folders: tuple[str, ...] = ()
    """Made in this order, before anything else (a folder that exists is fine)."""
    documents: tuple[tuple[str, Any], ...] = ()
    """JSON files written: (path, document)."""
    inputs: tuple[tuple[str, str], ...] = ()
    """Channels filled: (S3 prefix, folder), as ``LocalObjectStore.download_prefix`` does."""
    outputs: tuple[tuple[str, str, str], ...] = ()
    """What a job that completed stores: (folder, S3 URI, TAR / TAR_IF_ANY / FILES)."""
    metric_definitions: tuple[tuple[str, str], ...] = ()
    """(Name, Regex): what ``Report.metrics`` reads from the job's log."""
    volume: tuple[str, ...] = ()
    """The container-only parts of the folder, discarded once the job completed."""

    def __call__(self, run: Callable[[], int]) -> tuple[int, Report]:
        """Lay out the folder, fetch the inputs, ``run()`` the program; if it completed (exit code
        0), store the outputs and discard the volume. Returns the exit code (0 when the program did
        not run) and the report."""
        store = LocalObjectStore(Path(self.store))
        folder = self.folder
        try:
            for name in self.folders:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(os.path.join(folder, name))
            for name, document in self.documents:
                with open(os.path.join(folder, name), "w") as file:
                    file.write(json.dumps(document))
            for uri, name in self.inputs:
                if not store.download_prefix(uri, Path(folder, name)):
                    return 0, Report(missing=uri)
        except OSError as exc:
            return 0, Report(error=str(exc))
        exit_code = run()
        error = None
        if exit_code == 0:
            try:
                self._store_outputs(store)
            except OSError as exc:
                error = str(exc)
            else:
                self._discard_volume(store)
        metrics = metric_values(self.metric_definitions, os.path.join(folder, "job.log"))
        return exit_code, Report(error=error, metrics=metrics)

    def _store_outputs(self, store: LocalObjectStore) -> None:
        for name, uri, how in self.outputs:
            path = os.path.join(self.folder, name)
            if how == FILES:
                store.upload_dir(Path(path), uri)
            elif how == TAR or _has_entries(path):
                store.put_bytes(uri, packed(path))

    def _discard_volume(self, store: LocalObjectStore) -> None:
        if not self.volume:
            return
        trash = str(store.root / DISCARDED)
        discarder = _discarders.get(trash) or _discarders.setdefault(trash, VolumeDiscarder(Path(trash)))
        discarder.discard([Path(self.folder, name) for name in self.volume])


def _has_entries(path: str) -> bool:
    with os.scandir(path) as entries:
        return any(True for _ in entries)


def packed(folder: str) -> bytes:
    """``folder``'s contents as a gzipped tar with the files at its top level, entries in path
    order, as SageMaker packs ``/opt/ml/model`` into ``model.tar.gz``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:

        def add(path: str, prefix: str) -> None:
            with os.scandir(path) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
            for entry in entries:
                name = prefix + entry.name
                tar.add(entry.path, arcname=name, recursive=False)
                if entry.is_dir(follow_symlinks=False):
                    add(entry.path, name + "/")

        add(folder, "")
    return buffer.getvalue()


def metric_values(definitions: tuple[tuple[str, str], ...], log_path: str) -> tuple[tuple[str, float], ...]:
    """``FinalMetricDataList``'s names and values from a job log: per definition, the first capture
    group of the last line that its Regex matches with a finite number there."""
    try:
        with open(log_path, errors="replace") as log:
            lines = log.read().splitlines()
    except FileNotFoundError:
        return ()
    metrics = []
    for name, pattern in _compiled(definitions):
        value = None
        for line in lines:
            match = pattern.search(line)
            if match is None:
                continue
            try:
                number = float(match.group(1))
            except (IndexError, TypeError, ValueError):  # no group, group unmatched, not a number
                continue
            if math.isfinite(number):
                value = number
        if value is not None:
            metrics.append((name, value))
    return tuple(metrics)


@functools.lru_cache(maxsize=64)
def _compiled(definitions: tuple[tuple[str, str], ...]) -> list[tuple[str, re.Pattern[str]]]:
    """The definitions' patterns, compiled once per set of definitions (a search has one)."""
    return [(name, re.compile(regex)) for name, regex in definitions]
