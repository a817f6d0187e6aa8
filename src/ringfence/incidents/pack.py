"""The evidence pack: one zip archive signed with the lab's manifest key, verifiable offline.

The archive holds `incident.json` (the incident, its evidence with chains of custody, the
recipients implicated, the actions), `hashes.txt` (every suspect file's sha256, in
`sha256sum` format), `audit.jsonl` (the audit events about the incident, each with its chain
hash), `notice.txt` when drafted, `lab.pem` (the public key) and `model.sig`: an OpenSSF
model-signing bundle over the other files, signed with the key that signs recipients'
manifests. Anyone checks it offline, without ringfence's server:

    unzip pack.zip -d pack && ringfence verify pack --public-key lab.pem

(or `model_signing verify key --signature pack/model.sig --public_key lab.pem pack`), with
the lab's key obtained beforehand from `/api/v1/distribution/signing-key.pem`: the copy of
the key inside the archive is a convenience and proves nothing by itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ringfence.audit.services import event_row, record
from ringfence.audit.tags import EventTag
from ringfence.distribution import manifests
from ringfence.errors import IntegrityError, InvalidInput
from ringfence.incidents.actions import subject_of
from ringfence.incidents.models import Incident
from ringfence.incidents.services import audit_excerpt, custody_step, show
from ringfence.secrets import SecretStore

#: the most a pack's archive may hold when read back (it holds text, never weights)
MAX_PACK = 64 << 20


def _files(session: Session, incident: Incident, public_pem: bytes) -> dict[str, bytes]:
    hashes = "".join(
        f"{f['sha256']}  {f['name']}\n"
        for e in incident.evidence
        if e.kind == "suspect"
        for f in e.payload.get("files", [])
    )
    audit = "".join(
        json.dumps(event_row(e), sort_keys=True, default=str) + "\n"
        for e in audit_excerpt(session, incident)
    )
    files = {
        "incident.json": (
            json.dumps(show(session, incident), indent=2, default=str) + "\n"
        ).encode(),
        "hashes.txt": hashes.encode(),
        "audit.jsonl": audit.encode(),
        "lab.pem": public_pem,
    }
    if incident.notice:
        files["notice.txt"] = incident.notice.encode()
    return files


def export(
    session: Session, secrets: SecretStore, incident: Incident, *, actor: str, ip: str | None = None
) -> bytes:
    """The signed evidence archive (zip bytes); each suspect's custody records the export."""
    public_pem = manifests.public_key_pem(secrets)
    for evidence in incident.evidence:
        custody_step(session, evidence, "exported", actor=actor, ip=ip, sha256=evidence.sha256)
    files = _files(session, incident, public_pem)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    signature = manifests.sign(secrets, f"incident-{incident.id}", digests)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(name, files[name])
        archive.writestr(manifests.SIGNATURE_NAME, signature)
    data = buffer.getvalue()
    record(
        session,
        EventTag.Incident.PackExported,
        actor=actor,
        subject=subject_of(incident),
        ip=ip,
        payload={"sha256": hashlib.sha256(data).hexdigest(), "files": digests},
    )
    return data


@dataclass(frozen=True)
class PackCheck:
    """What verifying a pack found."""

    name: str
    files: dict[str, str]

    def summary(self) -> dict[str, Any]:
        """One JSON object."""
        return {"ok": True, "name": self.name, "files": self.files}


def verify(data: bytes, public_pem: bytes) -> PackCheck:
    """Check an evidence archive against the lab's public key (offline); raise if it fails."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if sum(i.file_size for i in infos) > MAX_PACK:
                raise InvalidInput("the archive is larger than an evidence pack can be")
            contents = {i.filename: archive.read(i) for i in infos if not i.is_dir()}
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"not a zip archive: {exc}") from None
    bundle = contents.pop(manifests.SIGNATURE_NAME, None)
    if bundle is None:
        raise IntegrityError("the archive has no model.sig", hint="it is not an evidence pack")
    signed = manifests.verify_bundle(bundle.decode("utf-8", "replace"), public_pem)
    actual = {name: hashlib.sha256(body).hexdigest() for name, body in contents.items()}
    if actual != signed.files:
        changed = ", ".join(sorted({n for n, _ in set(actual.items()) ^ set(signed.files.items())}))
        raise IntegrityError(
            f"the archive does not match its signature: {changed}",
            hint="a file was altered, added or removed after the lab signed it",
        )
    return PackCheck(signed.name, signed.files)
