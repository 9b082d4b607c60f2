"""A local stand-in for Amazon S3: ``s3://BUCKET/KEY`` is the file ``ROOT/BUCKET/KEY``.

Objects are plain files so that jobs, tests and people can read them without a client. Writes are
atomic (a temporary file renamed into place), so a reader never sees half an object. Two things S3
allows have no folder equivalent and are refused: key components that are empty, ``.`` or ``..``
(they would escape or alias the bucket folder), and an object whose key is also a "folder" of
other keys (``a`` next to ``a/b``), which the file system itself rejects.

``register_s3`` serves ``aws-sdk:s3:putObject`` and ``aws-sdk:s3:getObject`` from the store.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # job workers import this module for the store alone: the engine stays out of them
    from cvpipe.asl.errors import StatesError
    from cvpipe.asl.tasks import TaskRegistry, TaskRequest

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Dot-names are never valid bucket names, so these folders cannot collide with a bucket.
_STAGING = ".staging"
_CONTENT_TYPES = ".content-types"
DEFAULT_CONTENT_TYPE = "binary/octet-stream"  # what S3 reports for objects stored without one


class LocalObjectStore:
    """S3 buckets as folders under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    # -- addressing ---------------------------------------------------------------------------

    @staticmethod
    def parse_uri(uri: str) -> tuple[str, str]:
        """``s3://bucket/key`` -> ``(bucket, key)``; the key may be empty or a prefix."""
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise ValueError(f"not an S3 URI (expected s3://BUCKET/KEY): {uri!r}")
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"invalid bucket name {bucket!r} in {uri!r}")
        parts = key.split("/")
        # A trailing "/" (the last part empty) is fine for a prefix; any other empty part is not.
        if any(part in ("", ".", "..") for part in parts[:-1]) or parts[-1] in (".", ".."):
            raise ValueError(f"key {key!r} in {uri!r} has an empty, '.' or '..' component")
        return bucket, key

    def path(self, uri: str) -> Path:
        """The file that holds the object (or the prefix) ``uri``."""
        bucket, key = self.parse_uri(uri)
        return self.root / bucket / key

    def _object_path(self, uri: str) -> Path:
        bucket, key = self.parse_uri(uri)
        if not key or key.endswith("/"):
            raise ValueError(f"not an object URI (the key is empty or ends with '/'): {uri!r}")
        return self.root / bucket / key

    # -- objects ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, uri: str, content_type: str | None = None) -> Iterator[IO[bytes]]:
        """A binary file that becomes the object ``uri`` when the block ends without error."""
        target = self._object_path(uri)
        # Folders are made when missing rather than checked before each write: a run writes
        # thousands of small objects.
        staging = self.root / _STAGING
        try:
            fd, tmp = tempfile.mkstemp(dir=staging)
        except FileNotFoundError:
            staging.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=staging)
        try:
            with os.fdopen(fd, "wb") as file:
                yield file
            try:
                os.replace(tmp, target)
            except FileNotFoundError:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._set_content_type(uri, content_type)

    def put_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        with self.writer(uri, content_type) as file:
            file.write(data)

    def put_file(self, uri: str, local_path: Path) -> None:
        with open(local_path, "rb") as source, self.writer(uri) as file:
            shutil.copyfileobj(source, file)

    def get_bytes(self, uri: str) -> bytes:
        path = self._object_path(uri)
        if not path.is_file():
            raise FileNotFoundError(f"no such object: {uri}")
        return path.read_bytes()

    def exists(self, uri: str) -> bool:
        return self._object_path(uri).is_file()

    def content_type(self, uri: str) -> str:
        try:
            return self._content_type_path(uri).read_text()
        except FileNotFoundError:
            return DEFAULT_CONTENT_TYPE

    def _content_type_path(self, uri: str) -> Path:
        bucket, key = self.parse_uri(uri)
        return self.root / _CONTENT_TYPES / bucket / key

    def _set_content_type(self, uri: str, content_type: str | None) -> None:
        path = self._content_type_path(uri)
        if content_type is None:
            path.unlink(missing_ok=True)  # an overwrite drops the old object's type, as in S3
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content_type)

    # -- prefixes -----------------------------------------------------------------------------

    def list(self, prefix_uri: str) -> list[str]:
        """URIs of all objects whose key starts with the prefix's key, as a string (S3 semantics:
        ``runs/a`` matches ``runs/a/x`` and ``runs/ab``), in key order."""
        bucket, prefix = self.parse_uri(prefix_uri)
        folder, _, name_start = prefix.rpartition("/")
        base = self.root / bucket / folder
        keys: list[str] = []
        try:
            entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return []
        for entry in entries:
            if not entry.name.startswith(name_start):
                continue
            key = f"{folder}/{entry.name}" if folder else entry.name
            if entry.is_dir(follow_symlinks=False):
                keys.extend(_walk_keys(Path(entry.path), key))
            elif entry.is_file():
                keys.append(key)
        return [f"s3://{bucket}/{key}" for key in sorted(keys)]

    def download_prefix(self, prefix_uri: str, dest_dir: Path) -> builtins.list[Path]:
        """Copy every object under the prefix to ``dest_dir/<key after the prefix>``, as SageMaker
        fills a channel; an object whose key is the prefix itself lands at ``dest_dir/<basename>``.

        Files are hard-linked when possible: fast, and safe because the store replaces objects
        rather than rewriting them. A job must therefore not modify its input files in place.
        """
        _, prefix = self.parse_uri(prefix_uri)
        written: builtins.list[Path] = []
        folders: set[Path] = set()
        for uri in self.list(prefix_uri):
            key = self.parse_uri(uri)[1]
            relative = key[len(prefix) :].lstrip("/") or key.rpartition("/")[2]
            target = Path(dest_dir) / relative
            if target.parent not in folders:
                target.parent.mkdir(parents=True, exist_ok=True)
                folders.add(target.parent)
            try:
                _link_or_copy(self.path(uri), target)
            except FileExistsError:
                target.unlink()
                _link_or_copy(self.path(uri), target)
            written.append(target)
        return written

    def upload_dir(self, src_dir: Path, prefix_uri: str) -> builtins.list[str]:
        """Store every file under ``src_dir`` as ``<prefix>/<relative path>``."""
        src_dir = Path(src_dir)
        base = prefix_uri.rstrip("/")
        uploaded = []
        for path in sorted(p for p in src_dir.rglob("*") if p.is_file()):
            uri = f"{base}/{path.relative_to(src_dir).as_posix()}"
            self.put_file(uri, path)
            uploaded.append(uri)
        return uploaded

    def stage_file(self, local_path: Path, bucket: str) -> str:
        """Store a local file under a content address, ``s3://BUCKET/inputs/<sha256[:16]>/NAME``;
        staging the same content again is a no-op returning the same URI."""
        local_path = Path(local_path)
        digest = hashlib.sha256()
        with open(local_path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        uri = f"s3://{bucket}/inputs/{digest.hexdigest()[:16]}/{local_path.name}"
        if not self.exists(uri):
            self.put_file(uri, local_path)
        return uri


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target``, or copy it where linking is not possible (another file
    system); FileExistsError if ``target`` exists."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        shutil.copy2(source, target)


def _walk_keys(folder: Path, key: str) -> Iterator[str]:
    for entry in os.scandir(folder):
        child = f"{key}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_keys(Path(entry.path), child)
        elif entry.is_file():
            yield child


# -- aws-sdk:s3 ---------------------------------------------------------------------------------

PUT_OBJECT = "arn:aws:states:::aws-sdk:s3:putObject"
GET_OBJECT = "arn:aws:states:::aws-sdk:s3:getObject"


def _s3_error(error: str, message: str, status: int) -> StatesError:
    """Step Functions names a modeled S3 error ``S3.<Code>Exception`` (``S3.NoSuchKeyException``)
    and any other by the SDK's base class, ``S3.S3Exception``; the cause is the SDK's message."""
    from cvpipe.asl.errors import StatesError  # here, not at the top: see the imports

    return StatesError(error, f"{message} (Service: S3, Status Code: {status}, Request ID: {uuid.uuid4()})")


def _object_uri(parameters: Any) -> str:
    if not isinstance(parameters, dict):
        raise _s3_error("S3.S3Exception", "the parameters must be a JSON object", 400)
    for field in ("Bucket", "Key"):
        if not isinstance(parameters.get(field), str) or not parameters[field]:
            raise _s3_error("S3.S3Exception", f"{field} is required and must be a non-empty string", 400)
    uri = f"s3://{parameters['Bucket']}/{parameters['Key']}"
    try:
        LocalObjectStore.parse_uri(uri)
    except ValueError as exc:
        raise _s3_error("S3.S3Exception", str(exc), 400) from None
    return uri


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def register_s3(tasks: TaskRegistry, store: LocalObjectStore) -> None:
    def put_object(request: TaskRequest) -> dict[str, Any]:
        uri = _object_uri(request.parameters)
        body = request.parameters.get("Body", "")
        # Step Functions sends a JSON Body as its text; strings are stored as they are.
        text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        data = text.encode()
        store.put_bytes(uri, data, request.parameters.get("ContentType"))
        return {"ETag": _etag(data)}

    def get_object(request: TaskRequest) -> dict[str, Any]:
        uri = _object_uri(request.parameters)
        try:
            data = store.get_bytes(uri)
            modified = store.path(uri).stat().st_mtime
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise _s3_error("S3.NoSuchKeyException", "The specified key does not exist.", 404) from None
        return {
            "Body": data.decode("utf-8", errors="replace"),
            "ContentLength": len(data),
            "ContentType": store.content_type(uri),
            "ETag": _etag(data),
            "LastModified": aws_sdk_time(modified),
        }

    tasks.register(PUT_OBJECT, put_object)
    tasks.register(GET_OBJECT, get_object)


def aws_sdk_time(epoch_seconds: float) -> str:
    """A timestamp as aws-sdk integrations return it: ISO-8601 text in UTC."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StoreObjects:
    """The local object store as the engine's ``ObjectStorage``: where Distributed Maps read items
    (ItemReader) and write results (ResultWriter)."""

    def __init__(self, store: LocalObjectStore) -> None:
        self.store = store

    def get_object(self, bucket: str, key: str) -> bytes:
        try:
            return self.store.get_bytes(f"s3://{bucket}/{key}")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(f"s3://{bucket}/{key}") from None

    def list_objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        uris = self.store.list(f"s3://{bucket}/{prefix}")
        objects = []
        for uri in uris:
            path = self.store.path(uri)
            data = path.read_bytes()
            objects.append(
                {
                    "Key": self.store.parse_uri(uri)[1],
                    "Size": len(data),
                    "ETag": _etag(data),
                    "LastModified": int(path.stat().st_mtime),
                    "StorageClass": "STANDARD",
                }
            )
        return objects

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self.store.put_bytes(f"s3://{bucket}/{key}", body, "application/json")
