"""The run's history file: AWS-shaped events, compressed, readable after a run cut short."""

from __future__ import annotations

import json
import lzma
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cvpipe.asl import Event
from cvpipe.pipeline.history_file import HISTORY_FILE, HistoryWriter, read_history

pytestmark = pytest.mark.unit

MOMENT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def events(count: int) -> list[Event]:
    document = json.dumps({"candidate": {"C": 1.0}, "training": {"instance_type": "ml.m5.large"}})
    return [
        Event(i, "TaskStateEntered", MOMENT, i - 1, {"name": "TrainFold", "input": document})
        for i in range(1, count + 1)
    ]


def write(folder: Path, written: list[Event]) -> Path:
    writer = HistoryWriter(folder / HISTORY_FILE)
    for event in written:
        writer.append(event)
    writer.close()
    return folder / HISTORY_FILE


def test_events_read_back_as_aws_reports_them(tmp_path: Path) -> None:
    written = events(3)
    path = write(tmp_path, written)

    assert read_history(tmp_path) == [event.to_json() for event in written]
    first = read_history(tmp_path)[0]
    assert first["timestamp"] == "2026-01-02T03:04:05.678Z"
    assert first["stateEnteredEventDetails"]["name"] == "TrainFold"
    # Plain xz of one JSON document per line: xzcat and jq read it too.
    assert lzma.decompress(path.read_bytes()).decode().count("\n") == 3


def test_repeated_documents_compress(tmp_path: Path) -> None:
    written = events(500)
    path = write(tmp_path, written)

    plain = sum(len(json.dumps(event.to_json())) + 1 for event in written)
    assert path.stat().st_size * 50 < plain


def test_a_run_cut_short_keeps_the_events_written_before_the_cut(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / HISTORY_FILE)
    for event in events(5):
        writer.append(event)
    # Wait until the writer has flushed them, then lose the rest of the stream as a killed process would.
    deadline = time.monotonic() + 10
    while len(read_history(tmp_path)) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    flushed = (tmp_path / HISTORY_FILE).read_bytes()
    writer.close()
    (tmp_path / HISTORY_FILE).write_bytes(flushed + b"\x01\x02")  # a half-written block

    assert [event["id"] for event in read_history(tmp_path)] == [1, 2, 3, 4, 5]


def test_a_batch_cut_in_the_middle_loses_no_event_of_the_batches_before(tmp_path: Path) -> None:
    first = write(tmp_path, events(5)).read_bytes()
    written = events(500)[5:]
    path = write(tmp_path, written)
    whole = lzma.compress(b"".join(json.dumps(e.to_json()).encode() + b"\n" for e in written), preset=1)
    path.write_bytes(first + whole[: len(whole) // 2])  # killed while writing the second batch

    assert [event["id"] for event in read_history(tmp_path)][:5] == [1, 2, 3, 4, 5]


def test_events_after_close_are_dropped(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path / HISTORY_FILE)
    writer.append(events(1)[0])
    writer.close()
    writer.append(events(2)[1])  # from a handler thread abandoned when the run was stopped
    writer.close()

    assert [event["id"] for event in read_history(tmp_path)] == [1]
