"""A run's execution history on disk: ``history.jsonl.gz``.

One event per line, exactly as GetExecutionHistory returns it (``id``, ``type``, ``timestamp``,
``previousEventId`` and the ``...EventDetails`` object), gzip-compressed: the events repeat large
documents (a state's output is the next state's input, every fold job's request and description
look alike), so the file takes about a twentieth of the plain text. ``zcat history.jsonl.gz``
shows it as text.

The writer encodes and compresses on a thread of its own, so that the lanes of the execution, which
emit events under the history's lock, never wait for JSON encoding, compression or the disk. It
writes the events in batches (those of the last fifth of a second) and flushes the compressed
stream after each: a run cut short (a crash, a kill) leaves a file that ``read_history`` reads up
to the last batch written.
"""

from __future__ import annotations

import gzip
import json
import queue
import threading
import zlib
from pathlib import Path
from typing import Any

from ..asl import Event

HISTORY_FILE = "history.jsonl.gz"
BATCH_SECONDS = 0.2
"""How long the writer gathers events before it writes them: a run cut short loses at most that."""


class HistoryWriter:
    """Appends events to ``path`` in the background; ``close`` writes what is queued and ends.
    ``earlier`` events (as ``read_history`` returns them: a redriven run's first attempts) come first."""

    def __init__(self, path: Path, earlier: list[dict[str, Any]] | None = None) -> None:
        self._file = gzip.open(path, "wb", compresslevel=6)  # noqa: SIM115  # closed by close()
        if earlier:
            self._file.write("".join(json.dumps(event) + "\n" for event in earlier).encode())
            self._file.flush(zlib.Z_SYNC_FLUSH)
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._closed = False
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._write, name="history-writer", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, event: Event) -> None:
        if not self._closed:
            self._queue.put(event)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._closing.set()
        self._thread.join()
        self._file.close()

    def _write(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Gather the events of the next moment and write them at once: one wake-up, one
            # compression flush and one write per batch rather than per event.
            self._closing.wait(BATCH_SECONDS)
            while not self._queue.empty():
                batch.append(self._queue.get())
            events = [event for event in batch if event is not None]
            if events:
                lines = "".join(json.dumps(event.to_json()) + "\n" for event in events)
                self._file.write(lines.encode())
                self._file.flush(zlib.Z_SYNC_FLUSH)
            if len(events) < len(batch):
                return


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The events of a run's history, in id order; for a run cut short, those written before the cut."""
    events = []
    try:
        with gzip.open(Path(run_dir) / HISTORY_FILE, "rt", encoding="utf-8") as file:
            for line in file:
                if not line.endswith("\n"):
                    break  # the last line was being written when the run was cut short
                events.append(json.loads(line))
    except (EOFError, zlib.error):
        pass  # the end of the stream is missing: the run was cut short
    return events
