"""Settings from the environment (RINGFENCE_*) with embedded defaults under one data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where ringfence keeps its state and how it reaches its services."""

    model_config = SettingsConfigDict(env_prefix="RINGFENCE_", extra="ignore")

    #: the data dir: SQLite database, blob store and secrets live under it
    home: Path = Path(".ringfence")
    #: overrides the SQLite file under `home` (e.g. postgresql+psycopg://...)
    database_url: str | None = None
    #: public base URL of this server, used in mails and links
    base_url: str = "http://127.0.0.1:8000"
    #: "smtp" sends mails; "none" keeps them queued (a warning at start) until SMTP is set up
    mail_backend: str = "smtp"
    #: development only: keep every mail in the database and show it to admins at /outbox
    #: (the demo turns it on; the server warns at start while it is on)
    dev_outbox: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    mail_from: str = "ringfence@localhost"
    #: who a takedown notice names as the lab's contact (default: mail_from)
    lab_contact: str = ""
    #: what a new release's fingerprint withstands (each release keeps the values it was
    #: published with): recipients, colluders pooling copies, false accusations per trace
    fingerprint_max_recipients: int = 10**6
    fingerprint_max_colluders: int = 8
    fingerprint_false_accusation: float = 1e-9
    #: a pending access request nobody decided expires after this many days (mailed, audited)
    request_lifetime_days: int = 30
    #: how often grants and requests that are due are expired (seconds; a periodic job)
    expiry_interval_s: float = 3600.0
    #: whether each server process also runs a background job worker (off: run
    #: `ringfence worker` processes instead)
    serve_jobs: bool = True
    #: a running job whose worker sent no heartbeat for this long is run again (seconds)
    job_stale_after_s: float = 120.0
    #: server logs: "text" for a person at a terminal, "json" (one object per line, with the
    #: request id) for a log collector
    log_format: Literal["text", "json"] = "text"
    #: the bearer token a Prometheus scraper sends to GET /metrics; unset, only a scraper on
    #: this machine (a loopback peer, not through a proxy) reads the metrics
    metrics_token: SecretStr | None = None
    #: the reverse proxies whose X-Forwarded-For names the client (comma-separated addresses
    #: or CIDR networks, e.g. "127.0.0.1"); empty: none, the peer's address is the client's
    trusted_proxies: str = ""
    #: nginx's `internal` location over the blob directory (e.g. "/_blobs/"): plain files
    #: (configs, tokenizers, cards) then leave through nginx's sendfile via X-Accel-Redirect;
    #: empty: the server sends them itself (see deploy/nginx/ringfence.conf)
    accel_redirect: str = ""
    #: development and tests only: let webhooks of people outside the lab use plain http and
    #: private addresses (otherwise https to a public address only; admins' are never limited)
    webhooks_allow_insecure: bool = False
    #: how often due webhooks are delivered, due schedule steps taken and reviewers told of
    #: new requests (seconds; periodic jobs on the job queue)
    downstream_interval_s: float = 30.0
    #: CPU threads of the embedded inference backend (0: torch's default, one per core);
    #: on a shared machine 1 avoids the threads spinning against each other
    hosted_threads: int = 0
    #: requests one server process runs at once; its database pool holds as many connections
    #: (plus half again for sessions closing after their response), so none waits for one
    max_in_flight: int = 16
    #: requests one server process lets wait for a turn; beyond, it answers 503 + Retry-After
    max_queued: int = 512
    #: the gate policy file (YAML) mapping provenance and gate figures to the widest circle;
    #: unset: RINGFENCE_HOME/gates-policy.yaml when it exists, else the shipped default
    gates_policy: Path | None = None

    @property
    def resolved_database_url(self) -> str:
        """The database URL in force: the override, or the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'ringfence.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        """Content-addressed blob store of the local storage backend."""
        return self.home / "blobs"

    @property
    def secrets_dir(self) -> Path:
        """Server-side secrets (never part of a release)."""
        return self.home / "secrets"
