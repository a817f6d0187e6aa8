"""The S3 blob store against moto's S3 server on loopback, and the settings that choose it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.errors import IntegrityError, NotFound, StorageUnavailable
from ringfence.storage import LocalBlobStore
from ringfence.storage_s3 import S3BlobStore, StorageSettings, make_blob_store

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from tests.live import free_port

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def store(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3BlobStore:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("RINGFENCE_STORAGE", "s3")
    monkeypatch.setenv("RINGFENCE_S3_BUCKET", "weights")
    monkeypatch.setenv("RINGFENCE_S3_ENDPOINT_URL", endpoint)
    client = boto3.client("s3", endpoint_url=endpoint)
    if "weights" not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket="weights")
    built = make_blob_store(Path("unused"))
    assert isinstance(built, S3BlobStore)
    return built


def test_put_open_seek_and_ranges(store: S3BlobStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000
    (tmp_path / "w.bin").write_bytes(data)
    sha, size = store.put_file(tmp_path / "w.bin")
    assert size == len(data) and store.exists(sha) and store.size(sha) == size
    assert store.put_file(tmp_path / "w.bin") == (sha, size)
    with store.open(sha) as fh:
        fh.seek(1000)
        assert fh.read(10) == data[1000:1010]
        fh.seek(-5, 2)
        assert fh.read() == data[-5:]
    assert store.local_path(sha) is None


def test_missing_blobs(store: S3BlobStore) -> None:
    missing = "0" * 64
    assert not store.exists(missing)
    with pytest.raises(NotFound):
        store.size(missing)
    with pytest.raises(IntegrityError):
        store.open(missing)


def test_distribution_streams_from_s3(store: S3BlobStore, tmp_path: Path) -> None:
    from ringfence.settings import Settings
    from ringfence.wiring import build
    from tests.conftest import write_tiny_model
    from tests.unit.distribution.world import make_world, release

    services = build(Settings(home=tmp_path / "home"))
    services.prepare()
    assert isinstance(services.blobs, S3BlobStore)
    world = make_world(services, write_tiny_model(tmp_path / "tiny"))
    from fastapi.testclient import TestClient

    from ringfence.web.app import create_app

    client = TestClient(create_app(services))
    r = client.get(
        f"/{world.repo_id}/resolve/1.0/config.json",
        headers={"Range": "bytes=0-4", "Authorization": f"Bearer {world.token}"},
    )
    assert r.status_code == 206
    assert r.content == (tmp_path / "tiny" / "config.json").read_bytes()[:5]
    assert release(services, world.ref).artifacts


def test_local_is_the_default(tmp_path: Path) -> None:
    assert isinstance(make_blob_store(tmp_path, StorageSettings(storage="local")), LocalBlobStore)


def test_a_missing_bucket_is_one_line_naming_it(
    store: S3BlobStore, endpoint: str, tmp_path: Path
) -> None:
    (tmp_path / "w.bin").write_bytes(b"weights")
    missing = S3BlobStore("no-such-bucket", client=boto3.client("s3", endpoint_url=endpoint))
    with pytest.raises(StorageUnavailable) as raised:
        missing.put_file(tmp_path / "w.bin")
    assert "no-such-bucket" in raised.value.diagnostics()
    assert "\n" not in raised.value.diagnostics()


def test_an_endpoint_that_refuses_is_one_line(
    store: S3BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.config import Config

    from tests.live import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    client = boto3.client(
        "s3", endpoint_url=closed, config=Config(retries={"max_attempts": 1}, connect_timeout=2)
    )
    with pytest.raises(StorageUnavailable, match="cannot use S3 bucket weights"):
        S3BlobStore("weights", client=client).exists("0" * 64)


def test_publish_to_a_missing_bucket_fails_as_one_line(
    store: S3BlobStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ringfence.cli import context
    from ringfence.cli.main import run
    from tests.conftest import TINY_CODE_ENV, write_tiny_model

    monkeypatch.setenv("RINGFENCE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RINGFENCE_S3_BUCKET", "no-such-bucket")
    for name, value in TINY_CODE_ENV.items():
        monkeypatch.setenv(name, value)
    context.services.cache_clear()
    try:
        assert run(["init", "--org", "lab"]) == 0
        capsys.readouterr()
        code = run(
            ["publish", str(write_tiny_model(tmp_path / "tiny")), "--model", "t", "--version", "1"]
        )
    finally:
        context.services.cache_clear()
    err = capsys.readouterr().err
    assert code == 4, err
    assert "S3 answered NoSuchBucket" in err and "bucket no-such-bucket" in err
    assert len(err.strip().splitlines()) == 1
