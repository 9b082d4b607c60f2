"""A run's execution history on disk: ``history.jsonl.xz``; and its child executions' (a Distributed
Map's, each with a history of its own) in ``child_histories.jsonl.xz``, each event with its execution's
``executionArn``.

One event per line, exactly as GetExecutionHistory returns it (``id``, ``type``, ``timestamp``,
``previousEventId`` and the ``...EventDetails`` object), xz-compressed: the events repeat large
documents (a state's output is the next state's input, the tuning state is written again each
round with one more round in it, every fold job's request and description look alike), and xz's
long-distance matching stores each repeat as a reference: the file takes about a hundredth of the
plain text, a third to a fifth of what gzip's 32 KiB window leaves. ``xzcat history.jsonl.xz`` shows
it as text.

The writer encodes and compresses on a thread of its own, so that the lanes of the execution, which
emit events under the history's lock, never wait for JSON encoding, compression or the disk. It
writes the events in batches (those of half a second), each batch a complete xz stream appended to
the file (a file of several streams is one text to xz and to ``lzma``): a run cut short (a crash, a
kill) leaves a file that ``read_history`` reads up to the last batch written.
"""

from __future__ import annotations

import json
import lzma
import queue
import threading
from pathlib import Path
from typing import Any

from ..asl import Event

HISTORY_FILE = "history.jsonl.xz"
CHILD_HISTORIES_FILE = "child_histories.jsonl.xz"
BATCH_SECONDS = 0.5
"""How long the writer gathers events before it writes them: a run cut short loses at most that. A
batch is compressed on its own, so longer batches compress better (repeats across batches are not
found)."""
PRESET = 0
"""xz's fastest preset: on a run's child histories (10 MB of text for 500 fold jobs) it takes half the
CPU of preset 1 for a file a tenth larger (150 KB), still a fifth of gzip's."""


class HistoryWriter:
    """Appends events to ``path`` in the background; ``close`` writes what is queued and ends.
    ``earlier`` events (as ``read_history`` returns them: a redriven run's first attempts) come first."""

    def __init__(self, path: Path, earlier: list[dict[str, Any]] | None = None) -> None:
        self._file = open(path, "wb")  # noqa: SIM115  # closed by close()
        if earlier:
            self._write_batch("".join(json.dumps(event) + "\n" for event in earlier))
        self._queue: queue.SimpleQueue[tuple[Event, str | None] | None] = queue.SimpleQueue()
        self._closed = False
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._write, name="history-writer", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, event: Event, execution_arn: str | None = None) -> None:
        """Queue ``event``; with ``execution_arn``, the line names the (child) execution it belongs to."""
        if not self._closed:
            self._queue.put((event, execution_arn))

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
            # compressed stream and one write per batch rather than per event.
            self._closing.wait(BATCH_SECONDS)
            while not self._queue.empty():
                batch.append(self._queue.get())
            events = [item for item in batch if item is not None]
            if events:
                self._write_batch("".join(json.dumps(_line(*item)) + "\n" for item in events))
            if len(events) < len(batch):
                return

    def _write_batch(self, lines: str) -> None:
        self._file.write(lzma.compress(lines.encode(), preset=PRESET))
        self._file.flush()


def _line(event: Event, execution_arn: str | None) -> dict[str, Any]:
    line = event.to_json()
    return line if execution_arn is None else {"executionArn": execution_arn, **line}


def read_history(run_dir: Path, file_name: str = HISTORY_FILE) -> list[dict[str, Any]]:
    """The events of a run's history (or of its child executions', ``CHILD_HISTORIES_FILE``), in the
    order written; for a run cut short, those written before the cut."""
    events: list[dict[str, Any]] = []
    path = Path(run_dir) / file_name
    if file_name != HISTORY_FILE and not path.exists():
        return events  # a run without child executions
    try:
        with lzma.open(path, "rt", encoding="utf-8") as file:
            for line in file:
                if not line.endswith("\n"):
                    break  # the last line was being written when the run was cut short
                events.append(json.loads(line))
    except (EOFError, lzma.LZMAError):
        pass  # the end of the last stream is missing or damaged: the run was cut short
    return events
