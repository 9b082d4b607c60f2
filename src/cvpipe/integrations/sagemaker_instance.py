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
import json
import math
import os
import queue
import re
import shutil
import stat
import tarfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
    volumes, other processes' volumes on their way out, those of a process killed earlier), but the
    spare volumes of live workers."""

    def __init__(self, trash: Path) -> None:
        self.trash = trash
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
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
        if moved:
            self.later(functools.partial(_delete_all, moved))  # one hand-off per job: each wakes the thread

    def later(self, work: Callable[[], None]) -> None:
        """Do ``work`` on the discarder's thread, after the work given before."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="cvpipe-discard", daemon=True)
                self._thread.start()
        self._queue.put(work)

    def _work(self) -> None:
        while True:
            self._queue.get()()

    def drain(self) -> None:
        # Deleting a folder that the thread is deleting too is safe: each ignores what the other
        # removed first, and neither adds anything, so the folder is gone when either returns.
        with contextlib.suppress(FileNotFoundError):
            for path in self.trash.iterdir():
                if not _live_spare(path.name):
                    shutil.rmtree(path, ignore_errors=True)


def _delete_all(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


SPARE = "spare-"
"""The name of a worker's spare volume in the trash: ``spare-PID-...``."""


def _live_spare(name: str) -> bool:
    """Whether ``name`` is the spare volume of a process that is alive (a pid reused since keeps a
    spare of a dead worker until a later drain: never the other way round)."""
    if not name.startswith(SPARE):
        return False
    try:
        os.kill(int(name[len(SPARE) :].partition("-")[0]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class _Spare:
    """A worker's spare volume: the folders of its last completed training job, emptied of their
    files on the discarder's thread and put back in place for its next job. A fold job's volume
    has seven folders, and making and deleting folders costs a file system more than emptying them
    (each waits on the journal, a deletion on a disk mounted with ``discard`` longest). An emptied
    folder holds nothing but emptied folders with the mode that a new one gets; the job's layout
    removes those that it does not make itself (``Instance._fit_spare``)."""

    def __init__(self, trash: str, volume: tuple[str, ...]) -> None:
        self.root = os.path.join(trash, f"{SPARE}{os.getpid()}-{uuid.uuid4().hex}")
        self.volume = volume
        self.state = "empty"  # -> "emptying" (given a volume) -> "ready" (taken: "empty" again)
        self._lock = threading.Lock()
        self._mode = 0

    def take(self, folder: str) -> bool:
        """Put the emptied folders into the job's folder, if they are ready."""
        with self._lock:
            if self.state != "ready":
                return False
            self.state = "empty"
        for index, part in enumerate(self.volume):
            parent = os.path.dirname(part)
            if parent:
                os.makedirs(os.path.join(folder, parent), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # left out as it was not as new
                os.rename(os.path.join(self.root, str(index)), os.path.join(folder, part))
        return True

    def give(self, folder: str, discarder: VolumeDiscarder) -> bool:
        """Move a completed job's volume in and empty it later; False if the spare is taken."""
        with self._lock:
            if self.state != "empty":
                return False
            self.state = "emptying"
        try:
            if not self._mode:
                os.makedirs(self.root)
                self._mode = stat.S_IMODE(os.stat(self.root).st_mode)  # a new folder's
            for index, part in enumerate(self.volume):
                source = os.path.join(folder, part)
                try:
                    os.rename(source, os.path.join(self.root, str(index)))
                except FileNotFoundError:
                    if os.path.lexists(source):
                        raise  # the spare is gone
                    # the job removed that part: a new folder takes its place
        except OSError:  # another file system, say: what was not moved is discarded, no spare again
            self._give_up()
            return False
        discarder.later(self._empty)
        return True

    def _empty(self) -> None:
        try:
            for index in range(len(self.volume)):
                with contextlib.suppress(FileNotFoundError):  # a part the job removed
                    _empty_folder(os.path.join(self.root, str(index)), self._mode)
        except OSError:
            self._give_up()
            return
        with self._lock:
            self.state = "ready"

    def _give_up(self) -> None:
        with self._lock:
            self.state = GIVEN_UP
        shutil.rmtree(self.root, ignore_errors=True)


GIVEN_UP = "given up"
SPARES_PER_WORKER = 2  # one being emptied while the other is ready: emptying takes about a fold job's time
_spares: dict[tuple[str, tuple[str, ...]], list[_Spare]] = {}
"""The worker's spare volumes per trash folder and volume layout."""


def _empty_folder(path: str, mode: int) -> None:
    """Delete ``path`` if it is not a folder as a new one is, else the files under it and the
    folders in it that are not."""
    info = os.stat(path, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) != mode:
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return
    with os.scandir(path) as scan:
        entries = list(scan)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _empty_folder(entry.path, mode)
        else:
            os.unlink(entry.path)


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
            if self.volume and any(spare.take(folder) for spare in self._spares(store)):
                self._fit_spare()
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
                with store.writer(uri) as file:  # streamed: a final model may be large
                    pack(path, file)

    def _spares(self, store: LocalObjectStore) -> list[_Spare]:
        trash = str(store.root / DISCARDED)
        spares = _spares.get((trash, self.volume))
        if spares is None:  # made once: a spare given up stays so (the reason would stay too)
            spares = _spares[trash, self.volume] = [
                _Spare(trash, self.volume) for _ in range(SPARES_PER_WORKER)
            ]
        return spares

    def _fit_spare(self) -> None:
        """Delete the spare's folders that this job's layout does not make (another job's channels)."""
        laid_out = set(self.folders)
        for _, channel in self.inputs:  # download_prefix makes a channel's folder and its parents
            parts = channel.split("/")
            laid_out.update("/".join(parts[:end]) for end in range(1, len(parts) + 1))

        def fit(name: str) -> None:
            with os.scandir(os.path.join(self.folder, name)) as scan:
                inner = [(f"{name}/{entry.name}", entry.is_dir(follow_symlinks=False)) for entry in scan]
            for path, is_folder in inner:
                if is_folder and path in laid_out:
                    fit(path)
                elif is_folder:
                    shutil.rmtree(os.path.join(self.folder, path))
                else:  # a file, which an emptied spare does not hold: not this job's either
                    os.unlink(os.path.join(self.folder, path))

        for part in self.volume:
            with contextlib.suppress(FileNotFoundError):
                fit(part)

    def _discard_volume(self, store: LocalObjectStore) -> None:
        if not self.volume:
            return
        trash = str(store.root / DISCARDED)
        discarder = _discarders.get(trash) or _discarders.setdefault(trash, VolumeDiscarder(Path(trash)))
        if not any(spare.give(self.folder, discarder) for spare in self._spares(store)):
            discarder.discard([Path(self.folder, name) for name in self.volume])


def _has_entries(path: str) -> bool:
    with os.scandir(path) as entries:
        return any(True for _ in entries)


def pack(folder: str, file: IO[bytes]) -> None:
    """Write ``folder``'s contents to ``file`` as a gzipped tar with the files at its top level,
    entries in path order, as SageMaker packs ``/opt/ml/model`` into ``model.tar.gz``."""
    with tarfile.open(fileobj=file, mode="w:gz", compresslevel=6) as tar:

        def add(path: str, prefix: str) -> None:
            with os.scandir(path) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
            for entry in entries:
                name = prefix + entry.name
                tar.add(entry.path, arcname=name, recursive=False)
                if entry.is_dir(follow_symlinks=False):
                    add(entry.path, name + "/")

        add(folder, "")


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
