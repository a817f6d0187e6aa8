"""Fault studies: kill -9 of `ringfence serve` during 1,000 mixed operations (SQLite, then
PostgreSQL), and a PostgreSQL restart under load.

kill -9: a client drives sign-ups (verified through the link the server left in its outbox
table), licence acceptances, access requests, approvals by a two-factor admin's token, link
creation, downloads and publishes through the CLI in a subprocess, while a killer thread
SIGKILLs the server at random moments and starts it again; now and then a publish subprocess
is SIGKILLed too. The client keeps what the server acknowledged (2xx, or the pages' 303) and
the audit events it was shown; at the end each must be in the database, every release row must
have all its artifacts with their blobs on disk, and `ringfence audit verify` must pass.

PostgreSQL restart: clients hammer two API routes while `pg_ctlcluster 15 main restart` runs;
each failure's status, body and duration is kept, and recovery is the first success after.
The restart is the last thing this module does, and it checks that PostgreSQL answers after.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

TITLE = "Faults: kill -9 during mixed operations, PostgreSQL restart under load"
SECTION = "faults"
ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = int(os.environ.get("RINGFENCE_FAULTS_OPERATIONS", "1000"))
KILLS = int(os.environ.get("RINGFENCE_FAULTS_KILLS", "5"))
ADMIN_URL = os.environ.get("RINGFENCE_TEST_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
CLUSTER = ("15", "main")
#: how long a request may take at most while PostgreSQL is down (the client's bound)
HANG_BOUND_S = 10.0


def _env(home: Path, url: str | None) -> dict[str, str]:
    from tests.conftest import TINY_CODE_ENV

    env = {
        **os.environ,
        **TINY_CODE_ENV,
        "PYTHONPATH": str(ROOT / "src"),
        "RINGFENCE_HOME": str(home),
        "RINGFENCE_MAIL_BACKEND": "none",
        # Sign-ups come from many people, as through the proxy: the limiter counts per address.
        "RINGFENCE_TRUSTED_PROXIES": "127.0.0.1",
    }
    if url:
        env["RINGFENCE_DATABASE_URL"] = url
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ringfence.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Server:
    """One `ringfence serve` subprocess that can be killed and started again."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{port}"

    def start(self) -> float:
        """Start and wait until it answers; returns the seconds it took."""
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ringfence.cli.main", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        for _ in range(600):
            try:
                httpx.get(f"{self.base}/api/v1/openapi.json", timeout=1)
                return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"the ringfence server did not start; see {self.log}")

    def kill(self) -> None:
        """SIGKILL, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """SIGINT and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)


def _setup(home: Path, url: str | None, model_dir: Path) -> tuple[Any, str, str]:
    """Data dir, organisation, research-circle release tiny@1.0, a two-factor admin's token."""
    from tests.fixtures_access import make_user

    from ringfence.access.licences import install_research_licence
    from ringfence.accounts import tokens
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.settings import Settings
    from ringfence.wiring import build

    services = build(Settings(home=home, database_url=url, mail_backend="none"))
    services.prepare()
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        install_research_licence(session, actor="bench")
        admin = make_user(session, "admin@lab.example", role="admin", secrets=services.secrets)
        raw = tokens.create_token(session, admin, "admin", actor="bench").raw
    env = _env(home, url)
    for args in (
        ("publish", str(model_dir), "--model", "tiny", "--version", "1.0"),
        ("licence", "set", "tiny@1.0", "research-only"),
        ("circle", "set", "tiny@1.0", "research", "--reason", "bench"),
    ):
        done = _cli(env, *args)
        if done.returncode:
            raise RuntimeError(f"{args}: {done.stdout}{done.stderr}")
    return services, raw, "admin@lab.example"


class Client:
    """The mixed-operations driver; keeps what the server acknowledged."""

    def __init__(self, base: str, services: Any, admin_token: str, env: dict[str, str]) -> None:
        self.base, self.services, self.env = base, services, env
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.rng = random.Random(12)
        self.users: list[dict[str, Any]] = []
        self.acked: Counter[str] = Counter()
        self.tried: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.signed_up: list[str] = []
        self.verified: list[str] = []
        self.acceptances: list[tuple[str, str]] = []  # (email, accepted_at)
        self.approvals: list[int] = []  # request ids the server said it approved
        self.publishes: list[str] = []  # versions the CLI said it published
        self.events_seen: dict[int, str] = {}  # seq -> hash, shown by the audit API
        self.version = 1
        self.killed_publishes = 0
        self.model_dir: Path | None = None

    def _http(self, method: str, path: str, **kw: Any) -> httpx.Response | None:
        try:
            return httpx.request(method, self.base + path, timeout=30, **kw)
        except httpx.HTTPError:
            return None

    def _ok(self, kind: str, r: httpx.Response | None, pages: bool = False) -> bool:
        self.tried[kind] += 1
        good = r is not None and (200 <= r.status_code < 300 or (pages and r.status_code == 303))
        if good:
            self.acked[kind] += 1
        else:
            self.failed[kind] += 1
        return good

    def signup(self) -> None:
        n = len(self.users) + self.failed["sign-up"]
        email = f"user{n}@uni.example"
        forwarded = {"X-Forwarded-For": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}
        with httpx.Client(base_url=self.base, timeout=30, headers=forwarded) as c:
            try:
                page = c.get("/signup")
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
                r: httpx.Response | None = c.post(
                    "/signup",
                    data={
                        "email": email,
                        "password": "correct horse battery",
                        "csrf_token": csrf.group(1) if csrf else "",
                    },
                )
            except httpx.HTTPError:
                r = None
        if self._ok("sign-up", r, pages=True):
            self.users.append({"email": email, "stage": "signed-up"})
            self.signed_up.append(email)

    def verify(self, user: dict[str, Any]) -> None:
        from sqlalchemy import select

        from ringfence.mail.models import Mail

        with self.services.sessions() as session:
            bodies = session.scalars(select(Mail.body).where(Mail.to == user["email"])).all()
        link = next((m for b in bodies if (m := re.search(r"/verify\?token=(\S+)", b))), None)
        if link is None:
            return
        r = self._http("GET", "/verify", params={"token": link.group(1)})
        if self._ok("verification", r, pages=True):
            from ringfence.accounts import tokens
            from ringfence.accounts.models import User
            from ringfence.db import transaction

            # The user's own API token, made through the database as an operator would.
            with transaction(self.services.sessions) as session:
                u = session.scalars(select(User).where(User.email == user["email"])).one()
                raw = tokens.create_token(session, u, "download", actor="bench").raw
            user.update(stage="verified", headers={"Authorization": f"Bearer {raw}"})
            self.verified.append(user["email"])

    def accept(self, user: dict[str, Any]) -> None:
        r = self._http("GET", "/api/v1/access/releases/tiny/1.0", headers=user["headers"])
        if r is None or r.status_code != 200:
            self._ok("licence acceptance", None)
            return
        sha = r.json()["licence"]["sha256"]
        r = self._http(
            "POST",
            "/api/v1/access/releases/tiny/1.0/licence",
            headers=user["headers"],
            json={"sha256": sha},
        )
        if self._ok("licence acceptance", r):
            assert r is not None
            self.acceptances.append((user["email"], r.json()["accepted_at"]))
            user.update(stage="accepted", sha=sha)

    def request(self, user: dict[str, Any]) -> None:
        r = self._http(
            "POST",
            "/api/v1/access/releases/tiny/1.0/requests",
            headers=user["headers"],
            json={
                "answers": {
                    "affiliation": "Uni",
                    "country": "FR",
                    "intended_use": "Research",
                    "no_redistribution": True,
                },
                "licence_sha256": user["sha"],
            },
        )
        if self._ok("access request", r):
            assert r is not None
            user.update(stage="requested", request_id=r.json()["id"])

    def approve(self, user: dict[str, Any]) -> None:
        r = self._http(
            "POST",
            "/api/v1/access/review/decisions",
            headers=self.admin,
            json={"request_ids": [user["request_id"]], "approve": True, "reason": "bench"},
        )
        if self._ok("approval", r):
            assert r is not None
            outcome = r.json()[0]
            if outcome["state"] == "approved":
                self.approvals.append(user["request_id"])
                user.update(stage="granted")

    def link_and_download(self, user: dict[str, Any]) -> None:
        r = self._http(
            "POST",
            "/api/v1/distribution/links",
            headers=user["headers"],
            json={"release": "tiny@1.0"},
        )
        if not self._ok("link creation", r):
            return
        assert r is not None
        path = httpx.URL(r.json()["url"]).path
        r = self._http("GET", f"{path}/f/config.json")
        self._ok("download", r)

    def publish(self) -> None:
        assert self.model_dir is not None
        version = f"1.{self.version}"
        self.version += 1
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ringfence.cli.main",
                "publish",
                str(self.model_dir),
                "--model",
                "tiny",
                "--version",
                version,
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if self.rng.random() < 0.5:  # kill the publisher itself part-way
            time.sleep(self.rng.uniform(0.3, 2.0))
            proc.send_signal(signal.SIGKILL)
            self.killed_publishes += 1
        self.tried["publish (CLI)"] += 1
        if proc.wait() == 0:
            self.acked["publish (CLI)"] += 1
            self.publishes.append(version)
        else:
            self.failed["publish (CLI)"] += 1

    def audit_snapshot(self) -> None:
        r = self._http("GET", "/api/v1/audit/events", headers=self.admin, params={"limit": 200})
        if self._ok("audit listing", r):
            assert r is not None
            for e in r.json():
                self.events_seen[int(e["seq"])] = e["hash"]

    def step(self) -> None:
        """One operation, chosen among what the users' stages allow."""
        by_stage: dict[str, list[dict[str, Any]]] = {}
        for u in self.users:
            by_stage.setdefault(u["stage"], []).append(u)
        choices: list[tuple[float, Any]] = [(1.0, self.signup), (0.04, self.publish)]
        choices.append((0.1, self.audit_snapshot))
        for stage, weight, action in (
            ("signed-up", 1.0, self.verify),
            ("verified", 1.0, self.accept),
            ("accepted", 1.0, self.request),
            ("requested", 1.0, self.approve),
            ("granted", 1.5, self.link_and_download),
        ):
            if by_stage.get(stage):
                user = self.rng.choice(by_stage[stage])
                choices.append((weight, lambda a=action, u=user: a(u)))
        total = sum(w for w, _ in choices)
        pick = self.rng.uniform(0, total)
        for w, fn in choices:
            pick -= w
            if pick <= 0:
                fn()
                return
        choices[-1][1]()


def _check(client: Client, services: Any, env: dict[str, str], model_dir: Path) -> dict[str, Any]:
    """What the server acknowledged against what the database holds."""
    from sqlalchemy import func, select

    from ringfence.access.models import AccessRequest, Grant, LicenceAcceptance
    from ringfence.accounts.models import User
    from ringfence.audit.models import AuditEvent
    from ringfence.catalogue.models import Artifact, Model, Release

    files = sum(1 for p in model_dir.rglob("*") if p.is_file())
    with services.sessions() as session:
        grants = {
            rid
            for (rid,) in session.execute(
                select(Grant.request_id).where(Grant.state == "active")
            ).all()
        }
        found_grants = sum(rid in grants for rid in client.approvals)
        approved = {
            rid
            for (rid,) in session.execute(
                select(AccessRequest.id).where(AccessRequest.state == "approved")
            ).all()
        }
        acc_rows = session.execute(
            select(User.email, LicenceAcceptance.accepted_at).join(
                User, User.id == LicenceAcceptance.user_id
            )
        ).all()
        accepted = {(e, a.isoformat(timespec="seconds")) for e, a in acc_rows}
        found_acc = sum(a in accepted for a in client.acceptances)
        events = dict(session.execute(select(AuditEvent.seq, AuditEvent.hash)).all())
        found_events = sum(events.get(s) == h for s, h in client.events_seen.items())
        releases = session.execute(
            select(Release.id, Release.version).join(Model).where(Model.name == "tiny")
        ).all()
        versions = {v for _, v in releases}
        half = 0
        for rid, _ in releases:
            arts = session.scalars(select(Artifact).where(Artifact.release_id == rid)).all()
            if len(arts) != files or not all(services.blobs.exists(a.sha256) for a in arts):
                half += 1
        people = dict(session.execute(select(User.email, User.email_verified_at)).all())
        found_signups = sum(e in people for e in client.signed_up)
        found_verified = sum(people.get(e) is not None for e in client.verified)
        total_events = session.scalar(select(func.count()).select_from(AuditEvent))
    verify = _cli(env, "audit", "verify")
    return {
        "sign-ups": (len(client.signed_up), found_signups),
        "verified addresses": (len(client.verified), found_verified),
        "grants": (len(client.approvals), found_grants),
        "approved requests": (len(client.approvals), sum(r in approved for r in client.approvals)),
        "acceptances": (len(client.acceptances), found_acc),
        "audit events": (len(client.events_seen), found_events),
        "publishes": (len(client.publishes), sum(v in versions for v in client.publishes)),
        "half": half,
        "releases": len(releases),
        "total_events": total_events,
        "chain_ok": verify.returncode == 0,
        "chain_text": (verify.stdout + verify.stderr).strip().splitlines()[-1:],
    }


def _kill_study(label: str, tmp: Path, url: str | None) -> tuple[list[dict[str, Any]], str]:
    from tests.conftest import write_tiny_model
    from tests.live import free_port

    home = tmp / f"home-{label}"
    model_dir = write_tiny_model(tmp / f"model-{label}")
    services, admin_token, _ = _setup(home, url, model_dir)
    env = _env(home, url)
    server = Server(env, free_port(), tmp / f"serve-{label}.log")
    server.start()
    client = Client(server.base, services, admin_token, env)
    client.model_dir = model_dir
    rng = random.Random(7)
    kill_at = sorted(rng.sample(range(50, OPERATIONS - 50), KILLS))
    restarts: list[float] = []
    lock = threading.Lock()
    in_flight_kills = 0

    def killer(delay: float) -> None:
        nonlocal in_flight_kills
        time.sleep(delay)
        with lock:
            server.kill()
            in_flight_kills += 1

    started = time.perf_counter()
    try:
        for i in range(OPERATIONS):
            if kill_at and i == kill_at[0]:
                kill_at.pop(0)
                # SIGKILL while the next few operations are in flight, at a random moment.
                t = threading.Thread(target=killer, args=(rng.uniform(0.0, 0.5),))
                t.start()
                for _ in range(3):
                    client.step()
                t.join()
                restarts.append(server.start())
            client.step()
        elapsed = time.perf_counter() - started
        client.audit_snapshot()
    finally:
        server.stop()
    result = _check(client, services, env, model_dir)
    services.engine.dispose()
    ops = sum(client.tried.values())
    lost_total = 0
    table = [
        "| record | acknowledged | found | lost |",
        "|---|---|---|---|",
    ]
    for name in (
        "sign-ups",
        "verified addresses",
        "grants",
        "approved requests",
        "acceptances",
        "audit events",
        "publishes",
    ):
        acked, found = result[name]
        lost_total += acked - found
        table.append(f"| {name} | {acked} | {found} | {acked - found} |")
    table.append(
        f"| releases with missing artifacts or blobs | - | {result['half']} of "
        f"{result['releases']} | - |"
    )
    mix = ", ".join(
        f"{k} {client.acked[k]}/{client.tried[k]}" for k in sorted(client.tried, key=str)
    )
    note = (
        f"{ops} operations in {elapsed:.0f} s (acknowledged/tried: {mix}); {KILLS} server "
        f"SIGKILLs with operations in flight ({sum(client.failed.values())} operations got no "
        f"acknowledgement), restarts took "
        f"{min(restarts):.1f}-{max(restarts):.1f} s; {client.killed_publishes} publish "
        f"subprocesses SIGKILLed part-way; audit events in the log at the end: "
        f"{result['total_events']}; `ringfence audit verify`: {' '.join(result['chain_text'])}"
    )
    rows = [
        {
            "section": SECTION,
            "name": f"kill -9 ({label}): acknowledged records lost",
            "value": lost_total,
            "unit": "",
            "goal": "0",
            "met": lost_total == 0,
            "note": "sign-ups, verifications, grants, approvals, licence acceptances, audit "
            "events shown by the API, CLI publishes",
        },
        {
            "section": SECTION,
            "name": f"kill -9 ({label}): half-published releases",
            "value": result["half"],
            "unit": "",
            "goal": "0",
            "met": result["half"] == 0,
            "note": f"{result['releases']} release rows, each checked for all its artifacts "
            "and their blobs",
        },
        {
            "section": SECTION,
            "name": f"kill -9 ({label}): audit chain verifies",
            "value": "yes" if result["chain_ok"] else "no",
            "unit": "",
            "goal": "yes",
            "met": result["chain_ok"],
            "note": "`ringfence audit verify` after the last restart",
        },
        {"section": SECTION, "name": f"kill -9 ({label})", "table": "\n".join(table), "note": note},
    ]
    return rows, str(home)


def _pg_running() -> bool:
    done = subprocess.run(
        ["psql", ADMIN_URL, "-tAc", "select 1"], capture_output=True, text=True, timeout=15
    )
    return done.returncode == 0 and done.stdout.strip() == "1"


def _ensure_pg() -> None:
    """Bring PostgreSQL back if it is down, whatever happened."""
    for _ in range(3):
        if _pg_running():
            return
        subprocess.run(["pg_ctlcluster", *CLUSTER, "start"], capture_output=True, timeout=60)
        time.sleep(1)
    if not _pg_running():
        subprocess.run(["service", "postgresql", "start"], capture_output=True, timeout=60)


def _restart_study(tmp: Path, url: str) -> list[dict[str, Any]]:
    from tests.fixtures_access import make_user
    from tests.live import free_port

    from ringfence.accounts import tokens
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.settings import Settings
    from ringfence.wiring import build

    home = tmp / "home-restart"
    services = build(Settings(home=home, database_url=url, mail_backend="none"))
    services.prepare()
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        user = make_user(session, "reader@uni.example")
        raw = tokens.create_token(session, user, "read", actor="bench").raw
    services.engine.dispose()  # the server holds the only pool during the restart
    server = Server(_env(home, url), free_port(), tmp / "serve-restart.log")
    server.start()
    headers = {"Authorization": f"Bearer {raw}"}
    routes = ["/api/v1/releases", "/api/v1/access/grants", "/api/v1/access/requests"]
    results: list[tuple[float, float, int | str, str]] = []  # (start, seconds, status, body)
    stop = threading.Event()
    t0 = time.perf_counter()

    def hammer(i: int) -> None:
        with httpx.Client(base_url=server.base, timeout=HANG_BOUND_S, headers=headers) as c:
            n = 0
            while not stop.is_set():
                route = routes[(i + n) % len(routes)]
                n += 1
                s = time.perf_counter()
                try:
                    r = c.get(route)
                    status: int | str = r.status_code
                    body = r.text
                except httpx.HTTPError as exc:
                    status, body = type(exc).__name__, ""
                results.append((s - t0, time.perf_counter() - s, status, body))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    outage = (0.0, 0.0)
    try:
        time.sleep(3)
        down = time.perf_counter() - t0
        subprocess.run(["pg_ctlcluster", *CLUSTER, "restart"], check=True, timeout=120)
        up = time.perf_counter() - t0
        outage = (down, up)
        time.sleep(8)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        _ensure_pg()
        server.stop()
    down, up = outage
    failures = [r for r in results if r[2] != 200]
    during = [r for r in results if down <= r[0] <= up]
    last_fail = max((r[0] + r[1] for r in failures), default=None)
    recovered = min(
        (r[0] for r in results if r[2] == 200 and last_fail is not None and r[0] >= last_fail),
        default=None,
    )
    kinds = Counter(
        f"{s} {json.loads(b).get('error', {}).get('type', '')}"
        if _clean(b)
        else f"{s} (no JSON error)"
        for _, _, s, b in failures
    )
    one_line = all(isinstance(s, int) and _clean(b) for _, _, s, b in failures)
    statuses_5xx = all(isinstance(s, int) and 500 <= s < 600 for _, _, s, _ in failures)
    longest = max((d for _, d, _, _ in failures), default=0.0)
    examples = sorted({b.strip()[:140] for _, _, s, b in failures if isinstance(s, int)})[:1]
    log = (tmp / "serve-restart.log").read_text(errors="replace")
    unhandled = log.count("unhandled error on")
    note = (
        f"{len(results)} requests by 4 clients over 3 routes; `pg_ctlcluster 15 main restart` "
        f"took {up - down:.1f} s; {len(during)} requests started while it ran; failures: "
        f"{dict(kinds) or 'none'}; example: {examples[0] if examples else '-'}; "
        f"unhandled errors (tracebacks) in the server log: {unhandled}"
    )
    return [
        {
            "section": SECTION,
            "name": "PostgreSQL restart: requests while it restarted",
            "value": len(during),
            "unit": "",
            "note": note,
        },
        {
            "section": SECTION,
            "name": "PostgreSQL restart: requests that failed",
            "value": len(failures),
            "unit": "",
            "goal": "5xx, one-line JSON",
            "met": (statuses_5xx and one_line) if failures else None,
            "note": "a request whose connection the server dropped counts as not clean"
            if failures
            else "none failed: the pool reconnected before any request needed it",
        },
        {
            "section": SECTION,
            "name": "PostgreSQL restart: slowest failed request",
            "value": longest,
            "unit": "s",
            "goal": f"< {HANG_BOUND_S:.0f} s",
            "met": longest < HANG_BOUND_S,
            "note": "no hang beyond the bound",
        },
        {
            "section": SECTION,
            "name": "PostgreSQL restart: from the restart's start to steady success",
            "value": (recovered - down) if recovered is not None else float("nan"),
            "unit": "s",
            "goal": "by itself",
            "met": recovered is not None or not failures,
            "note": "the first success after the last failure; ringfence itself was not "
            "restarted (the pool's pre-ping reconnects)",
        },
    ]


def _is_json(body: str) -> bool:
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False


def _clean(body: str) -> bool:
    """One line of JSON with an error, no traceback."""
    return _is_json(body) and "\n" not in body.strip() and "Traceback" not in body


def run() -> list[dict[str, Any]]:
    """kill -9 on SQLite, then PostgreSQL; the PostgreSQL restart last."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "src"))
    from tests.databases import PostgresServer

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows += _kill_study("SQLite", tmp, None)[0]
        pg = PostgresServer(ADMIN_URL)
        url = pg.create(migrated=False)
        try:
            rows += _kill_study("PostgreSQL", tmp, url)[0]
        finally:
            pg.drop(url)
        url = pg.create(migrated=False)
        try:
            rows += _restart_study(tmp, url)
        finally:
            _ensure_pg()
            pg.drop(url)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows
