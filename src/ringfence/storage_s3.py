"""S3-compatible blob storage (boto3) behind the same `BlobStore` interface as the local one.

Chosen by settings: `RINGFENCE_STORAGE=s3` with `RINGFENCE_S3_BUCKET`, and optionally
`RINGFENCE_S3_ENDPOINT_URL` (MinIO, Ceph, moto), `RINGFENCE_S3_PREFIX` and the usual AWS
credential variables. Keys are `PREFIX sha256/ab/cd/<sha256>`, as on disk. Reads are ranged
GETs, so a download of any byte range streams without fetching the whole object. What boto3
raises (S3's refusals, an endpoint that does not answer, missing credentials) leaves this
module as one StorageUnavailable line naming the bucket.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from pydantic_settings import BaseSettings, SettingsConfigDict

from ringfence.errors import IntegrityError, InvalidInput, NotFound, StorageUnavailable
from ringfence.storage import CHUNK, BlobStore, LocalBlobStore


class StorageSettings(BaseSettings):
    """Which blob store to use and how to reach S3."""

    model_config = SettingsConfigDict(env_prefix="RINGFENCE_", extra="ignore")

    storage: str = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = ""
    s3_region: str | None = None


#: what to do about S3's error codes, when the code alone does not say
_HINTS = {
    "NoSuchBucket": "create the bucket, or set RINGFENCE_S3_BUCKET to an existing one",
    "AccessDenied": "give these credentials access to the bucket",
    "InvalidAccessKeyId": "check the AWS credentials",
    "SignatureDoesNotMatch": "check the AWS credentials",
}


def _refused(exc: Any, bucket: str) -> StorageUnavailable:
    """One line for S3's refusal (a botocore ClientError): its code, the call and the bucket."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "an error"))
    message = str(error.get("Message", "") or "").rstrip(".")
    return StorageUnavailable(
        f"S3 answered {code} to {exc.operation_name} on bucket {bucket}"
        + (f" ({message})" if message else ""),
        hint=_HINTS.get(code, "check RINGFENCE_S3_* and the bucket"),
    )


@contextmanager
def _s3_errors(bucket: str) -> Iterator[None]:
    """Within this block, what boto3 raises becomes one StorageUnavailable line."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        raise _refused(exc, bucket) from exc
    except S3UploadFailedError as exc:
        # boto3's transfer wraps S3's refusal; the refusal says more than the wrapper.
        if isinstance(exc.__context__, ClientError):
            raise _refused(exc.__context__, bucket) from exc
        raise StorageUnavailable(
            f"uploading to S3 bucket {bucket} failed: {exc}",
            hint="check RINGFENCE_S3_* and the bucket",
        ) from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(
            f"cannot use S3 bucket {bucket}: {exc}",
            hint="check RINGFENCE_S3_ENDPOINT_URL, the network and the AWS credentials",
        ) from exc


def _key(prefix: str, sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise NotFound(f"no blob {sha256!r}")
    return f"{prefix}sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class S3ObjectReader(io.RawIOBase):
    """A seekable, read-only file over one S3 object, reading by ranged GETs."""

    def __init__(self, client: Any, bucket: str, key: str, size: int) -> None:
        self._client, self._bucket, self._key, self._size = client, bucket, key, size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or not len(view):
            return 0
        end = min(self._pos + len(view), self._size)
        got = 0
        with _s3_errors(self._bucket):
            body = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-{end - 1}"
            )["Body"]
            for chunk in body.iter_chunks(CHUNK):
                view[got : got + len(chunk)] = chunk
                got += len(chunk)
        self._pos += got
        return got


class S3BlobStore:
    """Blobs in an S3-compatible bucket, content-addressed by sha256."""

    def __init__(self, bucket: str, *, client: Any = None, prefix: str = "") -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def put_file(self, source: Path) -> tuple[str, int]:
        """Hash first, then upload under the hash unless the bucket holds it already."""
        digest = hashlib.sha256()
        size = 0
        with source.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        sha = digest.hexdigest()
        if not self.exists(sha):
            with _s3_errors(self.bucket):
                self.client.upload_file(str(source), self.bucket, _key(self.prefix, sha))
        return sha, size

    def _head(self, sha256: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        key = _key(self.prefix, sha256)
        with _s3_errors(self.bucket):
            try:
                head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
                return head
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def size(self, sha256: str) -> int:
        head = self._head(sha256)
        if head is None:
            raise NotFound(f"blob {sha256} is missing from the bucket")
        return int(head["ContentLength"])

    def open(self, sha256: str) -> BinaryIO:
        head = self._head(sha256)
        if head is None:
            raise IntegrityError(
                f"blob {sha256} is recorded but missing from bucket {self.bucket}",
                hint="restore the bucket from backup",
            )
        raw = S3ObjectReader(
            self.client, self.bucket, _key(self.prefix, sha256), int(head["ContentLength"])
        )
        return io.BufferedReader(raw, buffer_size=CHUNK)

    def local_path(self, sha256: str) -> Path | None:
        return None


def make_blob_store(home_blob_dir: Path, settings: StorageSettings | None = None) -> BlobStore:
    """The blob store the settings choose: local (default) or S3."""
    settings = settings or StorageSettings()
    if settings.storage == "local":
        return LocalBlobStore(home_blob_dir)
    if settings.storage == "s3":
        if not settings.s3_bucket:
            raise InvalidInput("RINGFENCE_S3_BUCKET must be set when RINGFENCE_STORAGE=s3")
        import boto3

        client = boto3.client(
            "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region
        )
        return S3BlobStore(settings.s3_bucket, client=client, prefix=settings.s3_prefix)
    raise InvalidInput(
        f"RINGFENCE_STORAGE={settings.storage!r} is not a storage backend", hint="use local or s3"
    )
