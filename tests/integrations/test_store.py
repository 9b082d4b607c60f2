"""The local object store and its aws-sdk:s3 tasks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from cvpipe.asl.errors import StatesError
from cvpipe.asl.tasks import TaskRegistry, TaskRequest
from cvpipe.integrations.store import DEFAULT_CONTENT_TYPE, LocalObjectStore, register_s3

pytestmark = pytest.mark.unit

B = "s3://cvpipe-local-artifacts"


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "s3")


def fill(store: LocalObjectStore, *keys: str) -> None:
    for key in keys:
        store.put_bytes(f"{B}/{key}", key.encode())


def test_uris_map_to_files(store: LocalObjectStore) -> None:
    assert LocalObjectStore.parse_uri(f"{B}/runs/a/x.csv") == ("cvpipe-local-artifacts", "runs/a/x.csv")
    assert LocalObjectStore.parse_uri(f"{B}") == ("cvpipe-local-artifacts", "")
    store.put_bytes(f"{B}/runs/a/x.csv", b"1,2\n")
    assert store.path(f"{B}/runs/a/x.csv").read_bytes() == b"1,2\n"
    assert store.get_bytes(f"{B}/runs/a/x.csv") == b"1,2\n"
    assert store.exists(f"{B}/runs/a/x.csv") and not store.exists(f"{B}/runs/a/y.csv")
    with pytest.raises(FileNotFoundError, match="no such object"):
        store.get_bytes(f"{B}/runs/a/y.csv")


@pytest.mark.parametrize(
    "uri, message",
    [
        ("/tmp/data.csv", "not an S3 URI"),
        ("https://bucket/key", "not an S3 URI"),
        ("s3://", "invalid bucket name"),
        ("s3://Upper/key", "invalid bucket name"),
        ("s3://.staging/key", "invalid bucket name"),
        (f"{B}/runs/../../etc/passwd", "'..'"),
        (f"{B}/../other-bucket/key", "'..'"),
        (f"{B}//absolute/key", "empty"),
        (f"{B}/a/./b", "'.'"),
    ],
)
def test_bad_uris_and_traversal_are_rejected(store: LocalObjectStore, uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.put_bytes(uri, b"x")
    assert not any(store.root.rglob("*key*")) and not any(store.root.rglob("passwd"))


def test_object_uris_need_a_key(store: LocalObjectStore) -> None:
    with pytest.raises(ValueError, match="not an object URI"):
        store.put_bytes(f"{B}/folder/", b"x")


def test_put_is_atomic(store: LocalObjectStore) -> None:
    uri = f"{B}/runs/a/result.json"
    store.put_bytes(uri, b"old")
    with pytest.raises(RuntimeError), store.writer(uri) as file:
        file.write(b"half of the new")
        raise RuntimeError("the writer died")
    assert store.get_bytes(uri) == b"old"  # readers never see a partial object
    assert not os.listdir(store.root / ".staging")  # and no temporary file is left
    assert store.list(f"{B}/") == [uri]


def test_list_uses_plain_string_prefixes(store: LocalObjectStore) -> None:
    fill(store, "runs/a/x", "runs/a/y/z", "runs/ab", "runs/b", "top")
    assert store.list(f"{B}/runs/a") == [f"{B}/runs/a/x", f"{B}/runs/a/y/z", f"{B}/runs/ab"]
    assert store.list(f"{B}/runs/a/") == [f"{B}/runs/a/x", f"{B}/runs/a/y/z"]
    assert store.list(f"{B}/runs/a/x") == [f"{B}/runs/a/x"]
    assert store.list(f"{B}") == [
        f"{B}/runs/a/x",
        f"{B}/runs/a/y/z",
        f"{B}/runs/ab",
        f"{B}/runs/b",
        f"{B}/top",
    ]
    assert store.list(f"{B}/nothing") == [] and store.list("s3://other-bucket/") == []


def test_download_prefix_mirrors_keys_after_the_prefix(store: LocalObjectStore, tmp_path: Path) -> None:
    fill(store, "data/train/a.csv", "data/train/sub/b.csv", "data/trainer.csv")
    written = store.download_prefix(f"{B}/data/train/", tmp_path / "channel")
    assert sorted(p.relative_to(tmp_path / "channel").as_posix() for p in written) == ["a.csv", "sub/b.csv"]
    assert (tmp_path / "channel" / "sub" / "b.csv").read_bytes() == b"data/train/sub/b.csv"
    # Without the slash the prefix is a plain string prefix, as in S3.
    loose = store.download_prefix(f"{B}/data/train", tmp_path / "loose")
    assert sorted(p.relative_to(tmp_path / "loose").as_posix() for p in loose) == [
        "a.csv",
        "er.csv",
        "sub/b.csv",
    ]


def test_download_of_a_single_object_uses_its_basename(store: LocalObjectStore, tmp_path: Path) -> None:
    fill(store, "data/train/data.csv")
    written = store.download_prefix(f"{B}/data/train/data.csv", tmp_path / "input")
    assert written == [tmp_path / "input" / "data.csv"]
    assert written[0].read_bytes() == b"data/train/data.csv"
    # Hard-linked: the same file, no copy (the store replaces objects, never edits them).
    assert os.path.samefile(written[0], store.path(f"{B}/data/train/data.csv"))
    store.put_bytes(f"{B}/data/train/data.csv", b"new")
    assert written[0].read_bytes() == b"data/train/data.csv"


def test_upload_dir_and_stage_file(store: LocalObjectStore, tmp_path: Path) -> None:
    (tmp_path / "out" / "nested").mkdir(parents=True)
    (tmp_path / "out" / "X.npy").write_bytes(b"x")
    (tmp_path / "out" / "nested" / "m.json").write_bytes(b"{}")
    assert store.upload_dir(tmp_path / "out", f"{B}/runs/a/split/") == [
        f"{B}/runs/a/split/X.npy",
        f"{B}/runs/a/split/nested/m.json",
    ]

    (tmp_path / "iris.csv").write_bytes(b"a,b\n")
    uri = store.stage_file(tmp_path / "iris.csv", "cvpipe-local-artifacts")
    assert uri == f"{B}/inputs/{hashlib.sha256(b'a,b' + bytes([10])).hexdigest()[:16]}/iris.csv"
    assert store.stage_file(tmp_path / "iris.csv", "cvpipe-local-artifacts") == uri
    assert store.get_bytes(uri) == b"a,b\n"


def call(tasks: TaskRegistry, action: str, parameters: Any) -> Any:
    resource = f"arn:aws:states:::aws-sdk:s3:{action}"
    return tasks.resolve(resource)(TaskRequest(resource=resource, parameters=parameters, context={}))


def test_s3_tasks_put_and_get(store: LocalObjectStore) -> None:
    tasks = TaskRegistry()
    register_s3(tasks, store)
    body = {"best": {"C": 1.0}, "score": 0.9}
    put = call(
        tasks,
        "putObject",
        {
            "Bucket": "cvpipe-local-artifacts",
            "Key": "runs/a/best.json",
            "Body": body,
            "ContentType": "application/json",
        },
    )
    text = '{"best":{"C":1.0},"score":0.9}'
    assert put == {"ETag": f'"{hashlib.md5(text.encode()).hexdigest()}"'}
    got = call(tasks, "getObject", {"Bucket": "cvpipe-local-artifacts", "Key": "runs/a/best.json"})
    assert got["Body"] == text and got["ContentLength"] == len(text) and got["ETag"] == put["ETag"]
    assert got["ContentType"] == "application/json"
    assert got["LastModified"].endswith("Z")

    call(tasks, "putObject", {"Bucket": "cvpipe-local-artifacts", "Key": "runs/a/best.json", "Body": "plain"})
    got = call(tasks, "getObject", {"Bucket": "cvpipe-local-artifacts", "Key": "runs/a/best.json"})
    assert (got["Body"], got["ContentType"]) == ("plain", DEFAULT_CONTENT_TYPE)


def test_s3_task_errors(store: LocalObjectStore) -> None:
    tasks = TaskRegistry()
    register_s3(tasks, store)
    with pytest.raises(StatesError) as caught:
        call(tasks, "getObject", {"Bucket": "cvpipe-local-artifacts", "Key": "missing.json"})
    assert caught.value.error == "S3.NoSuchKeyException"
    assert "Status Code: 404" in caught.value.cause
    with pytest.raises(StatesError) as caught:
        call(tasks, "putObject", {"Bucket": "cvpipe-local-artifacts", "Key": "../escape", "Body": "x"})
    assert caught.value.error == "S3.S3Exception"
