"""Signed manifests: our own verifier, tampering, and OpenSSF model-signing's verifier."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ringfence.distribution import manifests
from ringfence.errors import IntegrityError
from ringfence.secrets import LocalSecretStore


@pytest.fixture
def secrets(tmp_path: Path) -> LocalSecretStore:
    return LocalSecretStore(tmp_path / "secrets")


def _model(directory: Path) -> dict[str, str]:
    directory.mkdir()
    (directory / "config.json").write_text('{"a": 1}')
    (directory / "sub").mkdir()
    (directory / "sub" / "w.bin").write_bytes(bytes(range(256)) * 10)
    return {
        p.relative_to(directory).as_posix(): manifests.sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_the_signing_key_is_stable_and_p256(secrets: LocalSecretStore) -> None:
    assert manifests.public_key_pem(secrets) == manifests.public_key_pem(secrets)
    assert manifests.signing_key(secrets).curve.name == "secp256r1"


def test_sign_then_verify(secrets: LocalSecretStore, tmp_path: Path) -> None:
    files = _model(tmp_path / "m")
    bundle = manifests.sign(secrets, "lab/m@1", files)
    signed = manifests.verify_bundle(bundle, manifests.public_key_pem(secrets))
    assert signed.files == files
    assert signed.name == "lab/m@1"
    assert manifests.check_directory(tmp_path / "m", signed).ok


def test_a_tampered_payload_fails(secrets: LocalSecretStore, tmp_path: Path) -> None:
    files = _model(tmp_path / "m")
    doc = json.loads(manifests.sign(secrets, "lab/m@1", files))
    payload = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    payload["predicate"]["resources"][0]["digest"] = "0" * 64
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(IntegrityError, match="signature"):
        manifests.verify_bundle(json.dumps(doc), manifests.public_key_pem(secrets))


def test_another_key_fails(secrets: LocalSecretStore, tmp_path: Path) -> None:
    files = _model(tmp_path / "m")
    bundle = manifests.sign(secrets, "lab/m@1", files)
    other = LocalSecretStore(tmp_path / "other")
    with pytest.raises(IntegrityError):
        manifests.verify_bundle(bundle, manifests.public_key_pem(other))


def test_a_changed_file_is_named(secrets: LocalSecretStore, tmp_path: Path) -> None:
    files = _model(tmp_path / "m")
    signed = manifests.verify_bundle(
        manifests.sign(secrets, "m", files), manifests.public_key_pem(secrets)
    )
    (tmp_path / "m" / "config.json").write_text('{"a": 2}')
    (tmp_path / "m" / "extra.txt").write_text("x")
    check = manifests.check_directory(tmp_path / "m", signed)
    assert check.mismatched == ["config.json"]
    assert check.unexpected == ["extra.txt"]
    assert not check.ok


def test_model_signing_verify_key_accepts_our_bundle(
    secrets: LocalSecretStore, tmp_path: Path
) -> None:
    tool = shutil.which("model_signing") or str(
        Path(__import__("sys").executable).parent / "model_signing"
    )
    if not Path(tool).exists():
        pytest.skip("model-signing is not installed")
    files = _model(tmp_path / "m")
    (tmp_path / "m" / manifests.SIGNATURE_NAME).write_text(manifests.sign(secrets, "m", files))
    (tmp_path / "lab.pem").write_bytes(manifests.public_key_pem(secrets))
    args = [
        tool,
        "verify",
        "key",
        "--signature",
        str(tmp_path / "m" / "model.sig"),
        "--public_key",
        str(tmp_path / "lab.pem"),
        str(tmp_path / "m"),
    ]
    ok = subprocess.run(args, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (tmp_path / "m" / "sub" / "w.bin").write_bytes(b"changed")
    bad = subprocess.run(args, capture_output=True, text=True, check=False)
    assert bad.returncode != 0
