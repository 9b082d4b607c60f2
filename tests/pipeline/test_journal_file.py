"""The run's task journal on disk: whole entries survive a process killed while writing one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cvpipe.asl.redrive import TaskJournal
from cvpipe.pipeline.local import JOURNAL, open_journal, read_journal

pytestmark = pytest.mark.unit

TUNING = {"history": [{"candidate": i, "params": {"C": 10.0**i}, "cv": {"mean": 0.9}} for i in range(50)]}


def record(journal: TaskJournal, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        journal.record(f"/AggregateScores#{i}", {"round": i}, {"result": {"tuning": TUNING, "round": i}})


def test_outcomes_read_back_in_order_and_compress(tmp_path: Path) -> None:
    with (tmp_path / JOURNAL).open("a+b") as file:
        record(open_journal(file), 20)

    entries = read_journal(tmp_path)
    assert [entry["place"] for entry in entries] == [f"/AggregateScores#{i}" for i in range(20)]
    assert entries[3]["outcome"]["result"]["tuning"] == TUNING
    plain = gzip.decompress((tmp_path / JOURNAL).read_bytes())  # zcat reads it: one JSON line each
    assert [json.loads(line) for line in plain.splitlines()] == entries
    assert (tmp_path / JOURNAL).stat().st_size * 5 < len(plain)


def test_an_entry_cut_short_is_dropped_and_the_next_attempt_writes_after_the_last_whole_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / JOURNAL
    with path.open("a+b") as file:
        record(open_journal(file), 3)
    whole = path.read_bytes()
    with path.open("a+b") as file:
        record(open_journal(file), 1, first=3)
    path.write_bytes(path.read_bytes()[:-7])  # killed while writing the fourth

    assert len(read_journal(tmp_path)) == 3
    with path.open("a+b") as file:
        journal = open_journal(file)
        assert journal.recall("/AggregateScores#2", {"round": 2}) is not None
        assert journal.recall("/AggregateScores#3", {"round": 3}) is None
        assert path.read_bytes() == whole
        record(journal, 2, first=3)
    assert [entry["outcome"]["result"]["round"] for entry in read_journal(tmp_path)] == [0, 1, 2, 3, 4]


def test_a_folder_without_a_journal_has_no_entries(tmp_path: Path) -> None:
    assert read_journal(tmp_path) == []
