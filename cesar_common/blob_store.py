"""Where audio lives when it is not in the database: any S3-compatible object store (AWS S3, MinIO,
SeaweedFS, Ceph's RGW), named by ``CESAR_BLOB_URL=s3://bucket/prefix``.

The database is the default store of audio (``job_audio`` rows, :mod:`cesar_common.db.audio_chunks`); with
an object store, the bytes of an upload, a split part or a piece of a live session go into an object and
the database keeps a row naming it (key, size, sha256). The object is always written first and the row
second, so a row never names an object that is not there; an object whose row never came (a crash between
the two) or whose row is gone (the job ended, was deleted or retained away) is deleted by the workers'
sweep once it is older than ``CESAR_BLOB_GRACE_SECONDS`` and no row names it (:meth:`JobStore.sweep_objects`).

Keys say what they hold and whose: ``<prefix>uploads/<job id>/<token>``,
``<prefix>parts/<job id>/<seq>-<token>`` and ``<prefix>live/<job id>/<token>``; the token makes every write
a new object, so a reader never sees an object change under it (a retried split, a move back and forth).

boto3 is imported only here, and only when an object store is configured.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cesar_common.errors import CesarError, InvalidInputError, ObjectStoreError, StoredAudioError

if TYPE_CHECKING:
    from cesar_common.settings import Settings

__all__ = ["KINDS", "PART_SIZE", "BlobStore", "StoredObject", "open_blob_store", "parse_blob_url"]

log = logging.getLogger(__name__)

#: bytes per part of a multipart upload (S3's least is 5 MiB, bar the last): what an upload holds in memory
PART_SIZE = 8 * 1024 * 1024
#: bytes handed on per piece of an object being read
READ_PIECE = 1024 * 1024
#: times a read that broke off resumes where it stopped (a ranged GET) before the store counts as away
READ_RESUMES = 3
#: the key prefixes Cesar writes under (and the only ones its sweep deletes from)
KINDS = ("uploads", "parts", "live")
#: keys deleted per request (S3's most)
DELETE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object as the database names it."""

    key: str
    size: int
    sha256: str


def parse_blob_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> ``(bucket, "prefix/")`` (the prefix empty, or ending in one slash)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise InvalidInputError(
            f"CESAR_BLOB_URL must look like s3://bucket or s3://bucket/prefix, not {url!r}"
        )
    bucket = parts.netloc
    if not (3 <= len(bucket) <= 63) or not all(c.isalnum() or c in ".-_" for c in bucket):
        raise InvalidInputError(f"{bucket!r} in CESAR_BLOB_URL is not an S3 bucket name")
    prefix = parts.path.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class BlobStore:
    """An S3-compatible bucket (or a prefix of one) holding audio. Thread-safe: one per process."""

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.url = url
        self.bucket, self.prefix = parse_blob_url(url)
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
        )
        config = Config(
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
            # a few quick tries within one call; a store away for longer is the caller's to wait out
            retries={"mode": "standard", "max_attempts": 3},
            # MinIO, SeaweedFS and Ceph serve buckets by path; AWS takes either
            s3={"addressing_style": "path"} if endpoint_url else {},
            # checksums only where S3 requires them: several S3-compatible stores refuse the newer
            # headers; what Cesar reads back is checked against the sha256 the database holds
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            region_name=region or session.region_name or "us-east-1",
        )
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.endpoint = str(self._client.meta.endpoint_url)

    def __repr__(self) -> str:
        return f"BlobStore({self.url!r} at {self.endpoint})"

    # --- keys --------------------------------------------------------------------------------------
    def new_key(self, kind: str, job_id: str, name: str = "") -> str:
        """A key no object has had: ``<prefix><kind>/<job id>/<name>-<token>``."""
        assert kind in KINDS
        token = secrets.token_hex(8)
        stem = f"{name}-{token}" if name else token
        return f"{self.prefix}{kind}/{job_id}/{stem}"

    def job_of(self, key: str) -> str | None:
        """The job a key of :meth:`new_key`'s names (None for any other key)."""
        parts = key[len(self.prefix) :].split("/") if key.startswith(self.prefix) else []
        return parts[1] if len(parts) == 3 and parts[0] in KINDS else None

    # --- writing ------------------------------------------------------------------------------------
    def write(
        self, key: str, chunks: Iterable[bytes], *, on_part: Callable[[], None] | None = None
    ) -> StoredObject:
        """Stream ``chunks`` into the object ``key`` (a multipart upload past :data:`PART_SIZE`, so no more
        than a part is ever held); its size and sha256. ``on_part`` runs after each part is sent (a
        pending upload kept alive, a lease extended); an exception from it or from ``chunks`` aborts the
        upload and goes on up."""
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                buffer += chunk
                while len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        upload_id = self._call("create_multipart_upload", Bucket=self.bucket, Key=key)[
                            "UploadId"
                        ]
                    parts.append(self._send_part(key, upload_id, len(parts) + 1, bytes(buffer[:PART_SIZE])))
                    del buffer[:PART_SIZE]
                    if on_part is not None:
                        on_part()
            if upload_id is None:
                self._call("put_object", Bucket=self.bucket, Key=key, Body=bytes(buffer))
            else:
                if buffer or not parts:
                    parts.append(self._send_part(key, upload_id, len(parts) + 1, bytes(buffer)))
                self._call(
                    "complete_multipart_upload",
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):  # the sweep aborts what is left when this fails too
                    self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        return StoredObject(key, size, digest.hexdigest())

    def put(self, key: str, data: bytes) -> StoredObject:
        """A small object in one request."""
        self._call("put_object", Bucket=self.bucket, Key=key, Body=data)
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest())

    def _send_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        answer = self._call(
            "upload_part", Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    # --- reading ------------------------------------------------------------------------------------
    def read(self, stored: StoredObject, *, offset: int = 0) -> Iterator[bytes]:
        """The object's bytes from ``offset`` on, a piece at a time (ranged GETs: a read that breaks off
        resumes where it stopped). Read whole, its size and sha256 are checked against ``stored``:
        StoredAudioError when missing or different; ObjectStoreError when the store is away."""
        digest = hashlib.sha256() if offset == 0 else None
        position = offset
        resumes = 0
        while position < stored.size:
            try:
                answer = self._call(
                    "get_object",
                    Bucket=self.bucket,
                    Key=stored.key,
                    Range=f"bytes={position}-",
                    reading=stored,
                )
                for piece in answer["Body"].iter_chunks(READ_PIECE):
                    if position + len(piece) > stored.size:
                        raise _changed(stored, "is longer than was stored")
                    position += len(piece)
                    if digest is not None:
                        digest.update(piece)
                    yield piece
            except CesarError:  # the store away, or the object not what was stored
                raise
            except Exception as exc:  # the connection broke off mid-body: go on from where it stopped
                resumes += 1
                if resumes > READ_RESUMES:
                    raise ObjectStoreError(
                        f"reading {stored.key} from {self.endpoint} broke off {resumes} times: {exc}"
                    ) from exc
                time.sleep(0.2 * resumes)
                continue
            if position < stored.size:
                raise _changed(stored, "is shorter than was stored")
        if digest is not None and digest.hexdigest() != stored.sha256:
            raise _changed(stored, "is not what was stored (its sha256 differs)")

    # --- housekeeping -------------------------------------------------------------------------------
    def old_keys(self, before: datetime) -> Iterator[list[str]]:
        """Keys under Cesar's prefixes last written before ``before``, a page (up to 1,000) at a time."""
        paginator = self._client.get_paginator("list_objects_v2")
        for kind in KINDS:
            pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}{kind}/"))
            while True:
                try:
                    page = next(pages)
                except StopIteration:
                    break
                except Exception as exc:
                    raise self._translate(exc, "list") from exc
                keys = [item["Key"] for item in page.get("Contents", ()) if item["LastModified"] < before]
                if keys:
                    yield keys

    def abort_stale_uploads(self, before: datetime) -> int:
        """Abort multipart uploads begun before ``before`` and never finished (a process killed mid-upload):
        their parts cost storage while invisible. How many."""
        answer = self._call("list_multipart_uploads", Bucket=self.bucket, Prefix=self.prefix)
        aborted = 0
        for upload in answer.get("Uploads", ()):
            ours = any(upload["Key"].startswith(f"{self.prefix}{kind}/") for kind in KINDS)
            if ours and upload["Initiated"] < before:
                with contextlib.suppress(Exception):
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted

    def delete(self, keys: Iterable[str]) -> int:
        """Delete these objects (a missing one is no error); how many were asked."""
        batch: list[str] = []
        count = 0
        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                count += self._delete_batch(batch)
                batch = []
        if batch:
            count += self._delete_batch(batch)
        return count

    def _delete_batch(self, keys: list[str]) -> int:
        self._call(
            "delete_objects",
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
        )
        return len(keys)

    def check(self, *, write: bool = False) -> None:
        """ObjectStoreError unless the bucket is there and the credentials are taken (``write``: a probe
        object is written and deleted too, what `cesar serve`, `cesar api` and `cesar worker` do before
        taking work)."""
        self._call("head_bucket", Bucket=self.bucket)
        if write:
            probe = f"{self.prefix}.cesar-probe/{socket.gethostname()}-{secrets.token_hex(4)}"
            self._call("put_object", Bucket=self.bucket, Key=probe, Body=b"")
            self._call("delete_object", Bucket=self.bucket, Key=probe)

    def close(self) -> None:
        self._client.close()

    # --- errors -------------------------------------------------------------------------------------
    def _call(self, operation: str, *, reading: StoredObject | None = None, **params: Any) -> Any:
        try:
            return getattr(self._client, operation)(**params)
        except Exception as exc:
            raise self._translate(exc, operation, reading) from exc

    def _translate(self, exc: Exception, operation: str, reading: StoredObject | None = None) -> CesarError:
        from botocore.exceptions import ClientError, NoCredentialsError

        where = f"s3://{self.bucket} at {self.endpoint}"
        if isinstance(exc, NoCredentialsError):
            return ObjectStoreError(
                f"no credentials for the object store {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or CESAR_BLOB_ACCESS_KEY_ID and CESAR_BLOB_SECRET_ACCESS_KEY)"
            )
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if reading is not None and (code in ("NoSuchKey", "404", "NotFound") or status == 404):
                return _changed(reading, "is missing")
            if reading is not None and (code == "InvalidRange" or status == 416):
                return _changed(reading, "is shorter than was stored")
            if code == "NoSuchBucket" or (operation == "head_bucket" and status == 404):
                return ObjectStoreError(f"the bucket of CESAR_BLOB_URL does not exist: {where}")
            if code in _REFUSED or status == 403:
                return ObjectStoreError(
                    f"the object store {where} refused Cesar's credentials ({code or status}): check "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or CESAR_BLOB_ACCESS_KEY_ID and "
                    "CESAR_BLOB_SECRET_ACCESS_KEY) and the bucket's policy"
                )
            message = error.get("Message") or code or status
            return ObjectStoreError(f"the object store {where} answered {operation} with {message}")
        return ObjectStoreError(f"the object store {where} cannot be reached ({operation}): {exc}")


_REFUSED = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "403"}
)


def _changed(stored: StoredObject, what: str) -> StoredAudioError:
    return StoredAudioError(f"the stored audio {stored.key} {what}: it cannot be transcribed")


def open_blob_store(settings: Settings) -> BlobStore | None:
    """The object store ``settings`` name (None: audio stays in the database)."""
    if not settings.blob_url:
        return None
    secret = settings.blob_secret_access_key
    return BlobStore(
        settings.blob_url,
        endpoint_url=settings.blob_endpoint_url,
        region=settings.blob_region,
        access_key_id=settings.blob_access_key_id,
        secret_access_key=None if secret is None else secret.get_secret_value(),
        timeout_seconds=settings.blob_timeout_seconds,
    )
