"""Load: 200 concurrent clients against `ringfence serve --workers 2` behind nginx on PostgreSQL.

The deployment is the shipped one (deploy/nginx/ringfence.conf, X-Accel-Redirect for plain
files, trusted proxy on loopback) on a fresh PostgreSQL database. The load generator is plain
asyncio + httpx (no new dependency), split over processes so one Python process's event loop
is not the bottleneck, on loopback only, bounded both in time and in request count:

- RINGFENCE_BENCH_LOAD_SECONDS (default 60; the issue's goal is 600 in a full bench run),
- RINGFENCE_BENCH_LOAD_REQUESTS (default 1,000,000: a cap that a short run never reaches),
- RINGFENCE_BENCH_LOAD_CLIENTS (default 200), RINGFENCE_BENCH_LOAD_PROCESSES (default 2),
- RINGFENCE_BENCH_DATABASE_URL (default postgresql://root@127.0.0.1:5432/test: the server
  on which a fresh database is created, and dropped afterwards).

Each client picks from a fixed mix: Hub metadata, grants, link issuance, access requests,
small downloads (a plain config through nginx's sendfile, the fingerprinted tiny weights) and
anonymous page browsing. Where a goal is missed, one request type (Hub metadata) is profiled
on the live workers with py-spy (RINGFENCE_BENCH_PYSPY, or py-spy on PATH; pip-installable
into any venv) to say where a request's time goes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

TITLE = "Load: 200 clients, two workers behind nginx, PostgreSQL"
SECTION = "load"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MODEL, VERSION = "tiny", "1.0"
ASKED = "other"  # a model nobody holds a grant for: the access requests ask for it
GRANTEES = 50  # clients share grantees: the tiny code carries at most 100 recipients
#: the cheapest authorised call of the mix: its server CPU per request sets the ceiling
CHEAPEST = "hub revision info"

#: (kind, weight, method, path, authorised API call, JSON body)
MIX: list[tuple[str, int, str, str, bool, dict[str, Any] | None]] = [
    ("hub model info", 30, "GET", f"/api/models/lab/{MODEL}", True, None),
    ("hub revision info", 15, "GET", f"/api/models/lab/{MODEL}/revision/{VERSION}", True, None),
    ("my grants", 5, "GET", "/api/v1/access/grants", True, None),
    (
        "link issuance",
        10,
        "POST",
        "/api/v1/distribution/links",
        True,
        {"release": f"{MODEL}@{VERSION}"},
    ),
    (
        "access request",
        8,
        "POST",
        f"/api/v1/access/releases/{ASKED}/{VERSION}/requests",
        True,
        {
            "answers": {
                "affiliation": "Lab",
                "country": "GB",
                "intended_use": "Research",
                "no_redistribution": True,
            }
        },
    ),
    ("plain download", 10, "GET", f"/lab/{MODEL}/resolve/{VERSION}/config.json", True, None),
    (
        "fingerprinted download",
        2,
        "GET",
        f"/lab/{MODEL}/resolve/{VERSION}/model.safetensors",
        True,
        None,
    ),
    ("catalogue page", 12, "GET", "/", False, None),
    ("release page", 8, "GET", f"/models/{ASKED}/{VERSION}", False, None),
]


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# ---- the load generator (a child process: python bench/load_bench.py --generate SPEC) ----


async def _client(
    http: Any, tokens: list[str], deadline: float, budget: list[int], out: dict[str, Any]
) -> None:
    rng = random.Random()
    only = out.get("only")
    kinds = [m for m in MIX if only is None or m[0] == only]
    weights = [m[1] for m in kinds]
    token = rng.choice(tokens)
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        kind, _, method, path, authorised, body = rng.choices(kinds, weights)[0]
        headers = {"Authorization": f"Bearer {token}"} if authorised else {}
        started = time.perf_counter()
        try:
            r = await http.request(method, path, headers=headers, json=body)
            await r.aread()
            ok = r.status_code < 400
            status = str(r.status_code)
        except Exception as exc:  # a refused or reset connection is an error of the run
            ok, status = False, type(exc).__name__
        elapsed = time.perf_counter() - started
        out["latencies"].setdefault(kind, []).append(elapsed)
        if not ok:
            out["errors"][f"{kind}: {status}"] = out["errors"].get(f"{kind}: {status}", 0) + 1
        elif authorised:
            out["authorised_ok"] += 1


async def _generate(spec: dict[str, Any]) -> dict[str, Any]:
    import httpx

    out: dict[str, Any] = {
        "latencies": {},
        "errors": {},
        "authorised_ok": 0,
        "only": spec.get("only"),
    }
    limits = httpx.Limits(
        max_connections=spec["clients"], max_keepalive_connections=spec["clients"]
    )
    budget = [spec["requests"]]
    async with httpx.AsyncClient(base_url=spec["url"], limits=limits, timeout=30) as http:
        deadline = time.monotonic() + spec["seconds"]
        started = time.perf_counter()
        await asyncio.gather(
            *(_client(http, spec["tokens"], deadline, budget, out) for _ in range(spec["clients"]))
        )
        out["elapsed"] = time.perf_counter() - started
    out["cpu"] = time.process_time()  # the generator's own CPU: it shares the server's cores
    return out


# ---- the deployment ----


def _rss_mib(pid: int) -> float:
    """Resident memory of `pid` and its children (the uvicorn supervisor and its workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _database(admin: str) -> tuple[str, str]:
    """A fresh database on the server at `admin`: (its SQLAlchemy URL, its name)."""
    import psycopg

    name = f"rf_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", name


def _drop(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def _world(home: Path, url: str, tmp: Path) -> tuple[Any, list[str]]:
    """A published release with GRANTEES grantees (their tokens) and one release to ask for."""
    from tests.conftest import TINY_CODE, write_tiny_model
    from tests.unit.distribution.world import add_person, grant, publish

    from ringfence.access import circles
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.settings import Settings
    from ringfence.wiring import build

    services = build(Settings(home=home, database_url=url))
    services.prepare()
    model = write_tiny_model(tmp / "tiny")
    publish(services, model, MODEL, VERSION)
    with transaction(services.sessions) as session:
        catalogue.publish(
            session, services.blobs, model, model=ASKED, version=VERSION, fingerprint=TINY_CODE
        )
    with transaction(services.sessions) as session:
        # A research release is listed to everyone: its page is what anonymous visitors browse.
        release = catalogue.get_release(session, f"{ASKED}@{VERSION}")
        circles.set_circle(session, release, "research", actor="bench")
    tokens = []
    for i in range(GRANTEES):
        uid, token = add_person(services, f"load{i}@lab.example")
        grant(services, f"{MODEL}@{VERSION}", uid)
        tokens.append(token)
    return services, tokens


def _tree(pid: int) -> list[int]:
    """`pid` and its children (the uvicorn supervisor and its workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    return pids


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server's processes so far."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


LIBRARIES = (
    ("/ringfence/", "ringfence"),
    ("/sqlalchemy/", "sqlalchemy"),
    ("/psycopg", "psycopg (driver)"),
    ("/starlette/", "starlette"),
    ("/fastapi/", "fastapi"),
    ("/pydantic", "pydantic"),
    ("/uvicorn/", "uvicorn"),
    ("/anyio/", "anyio"),
    ("/asyncio/", "asyncio"),
    ("/jinja2/", "jinja2"),
    ("/logging/", "logging"),
)


def _pyspy(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the server and its workers, when py-spy is installed."""
    spy = os.environ.get("RINGFENCE_BENCH_PYSPY") or shutil.which("py-spy")
    if not spy:
        return None
    return subprocess.Popen(
        [
            *(spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking"),
            *("--full-filenames", "-d", str(seconds), "-f", "raw", "-o", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _profile_table(raw: str, handler: str = "model_info (") -> tuple[str, int, str]:
    """Where the workers' samples inside one request handler go, by library and function."""
    libraries: dict[str, int] = {}
    functions: dict[str, int] = {}
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if handler not in stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        leaf = stack.split(";")[-1]
        label = next((lab for needle, lab in LIBRARIES if needle in leaf), "other")
        libraries[label] = libraries.get(label, 0) + n
        name = leaf.split(" (", 1)[0] + " (" + leaf.rsplit("/", 1)[-1]
        functions[name] = functions.get(name, 0) + n
    if not samples:
        return "", 0, ""
    top, top_n = max(libraries.items(), key=lambda kv: kv[1])
    summary = f"{top_n / samples:.0%} of them in {top}"
    table = ["| library (leaf frame) | share of samples |", "|---|---|"]
    for label, n in sorted(libraries.items(), key=lambda kv: -kv[1]):
        table.append(f"| {label} | {n / samples:.0%} |")
    table += ["", "| function (leaf frame) | share of samples |", "|---|---|"]
    for name, n in sorted(functions.items(), key=lambda kv: -kv[1])[:10]:
        table.append(f"| `{name}` | {n / samples:.0%} |")
    return "\n".join(table), samples, summary


def run() -> list[dict[str, Any]]:
    """Start the deployment, load it, and report throughput, latency, errors and memory."""
    sys.path.insert(0, str(REPO))
    from tests.functional.test_workers_nginx import NGINX

    seconds = _env_int("RINGFENCE_BENCH_LOAD_SECONDS", 60)
    cap = _env_int("RINGFENCE_BENCH_LOAD_REQUESTS", 1_000_000)
    clients = _env_int("RINGFENCE_BENCH_LOAD_CLIENTS", 200)
    processes = _env_int("RINGFENCE_BENCH_LOAD_PROCESSES", 2)
    admin = os.environ.get("RINGFENCE_BENCH_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
    if NGINX is None:
        raise RuntimeError("nginx is not installed (make nginx)")
    url, dbname = _database(admin)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            home = tmp / "home"
            services, tokens = _world(home, url, tmp)
            rows = _load(services, tokens, tmp, url, seconds, cap, clients, processes)
            services.engine.dispose()
    finally:
        _drop(admin, dbname)
    return rows


def _load(
    services: Any,
    tokens: list[str],
    tmp: Path,
    url: str,
    seconds: int,
    cap: int,
    clients: int,
    processes: int,
) -> list[dict[str, Any]]:
    import httpx
    from tests.functional.test_workers_nginx import NGINX, _wait_for, nginx_conf
    from tests.live import free_port

    app_port, proxy_port = free_port(), free_port()
    base = f"http://127.0.0.1:{proxy_port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "RINGFENCE_HOME": str(services.settings.home),
        "RINGFENCE_DATABASE_URL": url,
        "RINGFENCE_BASE_URL": base,
        "RINGFENCE_MAIL_BACKEND": "none",
        "RINGFENCE_TRUSTED_PROXIES": "127.0.0.1",
        "RINGFENCE_ACCEL_REDIRECT": "/_blobs/",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "ringfence.cli.main", "serve", "--workers=2", f"--port={app_port}"],
        env=env,
        cwd=tmp,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "server.log").open("wb"),
    )
    nginx_dir = tmp / "nginx"
    nginx_dir.mkdir()
    conf = nginx_conf(nginx_dir, proxy_port, app_port, services.settings.blob_dir)
    # 200 clients keep 200 connections open, each with its upstream keepalive connection.
    conf.write_text(conf.read_text().replace("worker_connections 128;", "worker_connections 2048;"))
    conf.write_text(
        conf.read_text().replace(f"access_log {nginx_dir}/access.log;", "access_log off;")
    )
    assert NGINX is not None
    proxy = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(nginx_dir), "-g", "daemon off;"],
        start_new_session=True,
        stderr=(nginx_dir / "stderr.log").open("wb"),
    )
    memory: list[float] = []
    try:
        _wait_for(f"http://127.0.0.1:{app_port}/", server)
        _wait_for(f"{base}/", proxy)
        # Every grantee's fingerprinted copy is made once (manifest job) before the clock runs.
        # So is each grantee's access request: clients share grantees, and two clients of one
        # grantee asking at the same instant for the first time race to create one row (the
        # loser reads 409); once it exists, asking again answers with it.
        ask = next(m for m in MIX if m[0] == "access request")
        for token in tokens:
            auth = {"Authorization": f"Bearer {token}"}
            httpx.get(
                f"{base}/lab/{MODEL}/resolve/{VERSION}/model.safetensors",
                headers=auth,
                timeout=120,
            ).raise_for_status()
            httpx.post(f"{base}{ask[3]}", headers=auth, json=ask[5], timeout=60).raise_for_status()
        # A short phase below the database pool's size first: the server's own pace, before
        # 200 clients queue on it.
        low_clients = _env_int("RINGFENCE_BENCH_LOAD_LOW_CLIENTS", 10)
        low_seconds = max(5, min(30, seconds // 4))
        low_gens = _generators(base, tokens, low_clients, 1, low_seconds, cap)
        # The profiler samples this phase: where a request's time goes when none waits.
        raw = tmp / "pyspy.txt"
        spy = _pyspy(server.pid, max(1, low_seconds - 2), raw)
        low = _collect(low_gens)
        if spy is not None:
            spy.wait(timeout=60)
        profile = _profile_table(raw.read_text() if raw.exists() else "")
        # The server's own CPU per request on the cheapest authorised call: what one core
        # can serve at best, whatever the pool, the queue or the generator do.
        cpu_start = _cpu_seconds(server.pid)
        cheap = _summary(
            _collect(_generators(base, tokens, low_clients, 1, low_seconds, cap, only=CHEAPEST))
        )
        ceiling = (_cpu_seconds(server.pid) - cpu_start, cheap, low_seconds)
        memory.append(_rss_mib(server.pid))
        cpu_before = _cpu_seconds(server.pid)
        load = [os.getloadavg()[0]]
        generators = _generators(base, tokens, clients, processes, seconds, cap)
        # Memory every tenth of the run: a leak shows as a climb, not as one number.
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(seconds / 10):
                memory.append(_rss_mib(server.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        outputs = _collect(generators)
        stop.set()
        sampler.join()
        memory.append(_rss_mib(server.pid))
        cpu = _cpu_seconds(server.pid) - cpu_before
        load.append(os.getloadavg()[0])
        log = (tmp / "server.log").read_text()
        starved = log.count("QueuePool limit") + log.count("no database connection free")
        proxy_log = nginx_dir / "error.log"
        upstream = [
            line.split("] ", 1)[-1][:160]
            for line in (proxy_log.read_text().splitlines() if proxy_log.exists() else [])
            if "upstream" in line
        ]
        races = log.count("UniqueViolation")
        if os.environ.get("RINGFENCE_BENCH_SERVER_LOG"):
            shutil.copy(tmp / "server.log", os.environ["RINGFENCE_BENCH_SERVER_LOG"])
    except Exception:
        # The server's own account of a failure is in its log, which goes with the temp dir.
        print((tmp / "server.log").read_text()[-4000:], file=sys.stderr)
        raise
    finally:
        _stop(proxy)
        _stop(server)
    shape = (seconds, cap, clients, processes)
    found = (low_clients, starved, races, upstream)
    return _rows(outputs, memory, (cpu, load), profile, shape, low, found, ceiling)


def _generators(
    base: str,
    tokens: list[str],
    clients: int,
    processes: int,
    seconds: int,
    cap: int,
    only: str | None = None,
) -> list[subprocess.Popen[bytes]]:
    """Load generator processes sharing `clients` clients, started now (`only`: one kind)."""
    per = [clients // processes + (i < clients % processes) for i in range(processes)]
    spec = {"url": base, "seconds": seconds, "tokens": tokens, "only": only}
    return [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--generate",
                json.dumps({**spec, "clients": n, "requests": cap * n // clients}),
            ],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        for n in per
        if n
    ]


def _collect(generators: list[subprocess.Popen[bytes]]) -> list[dict[str, Any]]:
    return [json.loads(g.communicate()[0]) for g in generators]


def _summary(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput, latencies and errors of one phase, across its generator processes."""
    elapsed = max(o["elapsed"] for o in outputs)
    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    for o in outputs:
        for kind, values in o["latencies"].items():
            latencies.setdefault(kind, []).extend(values)
        for key, n in o["errors"].items():
            errors[key] = errors.get(key, 0) + n
    every = sorted(v for values in latencies.values() for v in values)
    return {
        "elapsed": elapsed,
        "latencies": latencies,
        "errors": errors,
        "total": len(every),
        "authorised": sum(o["authorised_ok"] for o in outputs) / elapsed,
        "generator_cpu": sum(o.get("cpu", 0.0) for o in outputs),
        "p50": _pct(every, 50) * 1000,
        "p99": _pct(every, 99) * 1000,
    }


def _rows(
    outputs: list[dict[str, Any]],
    memory: list[float],
    usage: tuple[float, list[float]],
    profile: tuple[str, int, str],
    shape: tuple[int, int, int, int],
    low_outputs: list[dict[str, Any]],
    found: tuple[int, int, int, list[str]],
    ceiling: tuple[float, dict[str, Any], int],
) -> list[dict[str, Any]]:
    seconds, cap, clients, processes = shape
    cpu, load = usage  # the server's CPU seconds; the load average at the start and the end
    cheap_cpu, cheap, cheap_seconds = ceiling
    cheap_ms = cheap_cpu / max(1, cheap["total"]) * 1000
    per_core = 1000 / cheap_ms if cheap_ms else float("nan")
    low_clients, starved, races, upstream = found
    low = _summary(low_outputs)
    main = _summary(outputs)
    elapsed, latencies, errors, total = (
        main["elapsed"],
        main["latencies"],
        main["errors"],
        main["total"],
    )
    authorised, p50, p99 = main["authorised"], main["p50"], main["p99"]
    nerrors = sum(errors.values())
    shape = (
        f"{clients} clients in {processes} generator processes, {elapsed:.0f} s "
        f"(bound {seconds} s / {cap:,} requests), {total:,} requests; server: "
        f"2 uvicorn workers behind nginx, PostgreSQL, on the same {os.cpu_count()} cores as "
        "the generator"
    )
    cpu_ms = cpu / total * 1000
    cores = os.cpu_count() or 1
    ceiling = cores * 1000 / cpu_ms
    cpu_text = (
        f"the server's processes spent {cpu:.0f} s of CPU on {total:,} requests, "
        f"{cpu_ms:.1f} ms each (from /proc): {cores} cores could serve at most "
        f"~{ceiling:,.0f} requests/s even if the load generator, nginx and PostgreSQL used "
        f"none; the generator itself spent {main['generator_cpu']:.0f} s of CPU, and the "
        f"machine's load average was {load[0]:.1f} at the start and {load[1]:.1f} at the end "
        "(other engineers' processes share the same cores)"
    )
    low_text = (
        f"below the pool's size ({low_clients} clients, {low['elapsed']:.0f} s) the same "
        f"deployment serves {low['authorised']:,.0f} authorised requests/s, p50 "
        f"{low['p50']:.0f} ms, p99 {low['p99']:.0f} ms, {sum(low['errors'].values())} errors"
        + "".join(f", {k} x{n}" for k, n in sorted(low["errors"].items())[:6])
    )
    ceiling_text = (
        f"the cheapest authorised call ({CHEAPEST}, {cheap['total']:,} calls by "
        f"{low_clients} clients in {cheap_seconds} s) costs {cheap_ms:.1f} ms of CPU in the "
        f"server's processes (from /proc), i.e. at most {per_core:,.0f} requests/s per core "
        f"and {per_core * cores:,.0f}/s on all {cores} cores even with nothing else running "
        f"(the generator, nginx and PostgreSQL share them); 1000 req/s at that cost needs "
        f"{1000 / per_core:.1f} cores for the server alone"
    )
    if starved:
        cause = (
            f"cause: {starved} requests found no free database connection within the pool's "
            f"timeout; {ceiling_text}; {cpu_text}; {low_text}"
        )
    else:
        cause = f"cause: CPU. {ceiling_text}; under the mix, {cpu_text}; {low_text}"
    rate = total / elapsed
    little = (
        f"{clients} clients each send their next request when the last is answered: at "
        f"{rate:,.0f} requests/s the mean latency is {clients} / {rate:,.0f} = "
        f"{clients / rate * 1000:,.0f} ms (Little's law), so a p99 under 50 ms with {clients} "
        f"clients needs over {clients / 0.05:,.0f} requests/s"
    )
    thr_met = authorised >= 1000
    p99_met = p99 < 50
    # Steady: after the first tenth of the run (the thread pools, pooled connections, nginx's
    # keepalive connections and the per-process caches fill once), memory stays within 5% or
    # 20 MiB; the rise of that first tenth is shown beside it, not hidden.
    warm = memory[1:] if len(memory) > 2 else memory
    steady = max(warm) - min(warm)
    rise = warm[0] - memory[0]
    half = memory[len(memory) // 2 :]
    slope = (half[-1] - half[0]) / max(1e-9, elapsed * (len(half) - 1) / (len(memory) - 1) / 60)
    rows: list[dict[str, Any]] = [
        {
            "section": SECTION,
            "name": "authorised API requests/s (token-bearing API, Hub and downloads, 2xx/3xx)",
            "value": authorised,
            "unit": "req/s",
            "goal": ">= 1000",
            "met": thr_met,
            "note": shape + ("" if thr_met else f"; {cause}"),
        },
        {
            "section": SECTION,
            "name": f"server CPU ceiling: the cheapest authorised call ({CHEAPEST})",
            "value": per_core,
            "unit": "req/s per core",
            "note": f"{cheap_ms:.1f} ms of CPU per call in the server's processes; "
            f"{cheap['authorised']:,.0f} calls/s served to {low_clients} clients, p50 "
            f"{cheap['p50']:.0f} ms, p99 {cheap['p99']:.0f} ms, "
            f"{sum(cheap['errors'].values())} errors",
        },
        {
            "section": SECTION,
            "name": "latency p50, all requests",
            "value": p50,
            "unit": "ms",
            "note": "client-side, request sent to body read",
        },
        {
            "section": SECTION,
            "name": "latency p99, all requests",
            "value": p99,
            "unit": "ms",
            "goal": "< 50",
            "met": p99_met,
            "note": "" if p99_met else f"{little}; {cause}",
        },
        {
            "section": SECTION,
            "name": "errors (status >= 400 or a failed connection)",
            "value": nerrors,
            "unit": "",
            "goal": "0",
            "met": nerrors == 0,
            "note": "; ".join(
                [f"{k} x{n}" for k, n in sorted(errors.items())[:8]]
                + ([f"server log: {starved} pool timeouts"] if starved else [])
                + (
                    [f"nginx error log: {len(upstream)} upstream errors, e.g. {upstream[0]}"]
                    if upstream
                    else []
                )
                + (
                    [
                        f"server log: {races} UniqueViolation on "
                        "uq_fingerprint_recipients_release_id (the resolve path and the "
                        "manifest job of the other worker registering one recipient at once)"
                    ]
                    if races
                    else []
                )
            ),
        },
        {
            "section": SECTION,
            "name": "server memory over the run (RSS, supervisor + 2 workers)",
            "value": memory[-1],
            "unit": "MiB",
            "baseline": "start",
            "baseline_value": memory[0],
            "goal": "steady",
            "met": steady <= max(0.05 * warm[0], 20),
            "note": " / ".join(f"{m:.0f}" for m in memory)
            + f" MiB: before the load, then every tenth of the run; after the first tenth "
            f"they stay within {steady:.0f} MiB (goal: 5% or 20 MiB), the first tenth rose "
            f"{rise:.0f} MiB (40 threads and up to 24 pooled connections per worker, nginx's "
            f"keepalive connections, caches filling once); over the second half "
            f"{slope:+.1f} MiB per minute",
        },
    ]
    table = ["| request | share | count | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for kind, *_ in MIX:
        values = sorted(latencies.get(kind, []))
        if values:
            table.append(
                f"| {kind} | {len(values) / total:.0%} | {len(values):,} | "
                f"{_pct(values, 50) * 1000:.1f} | {_pct(values, 99) * 1000:.1f} |"
            )
    rows.append({"section": SECTION, "name": "by request type", "table": "\n".join(table)})
    table_text, samples, summary = profile
    if not (thr_met and p99_met) and samples:
        rows.append(
            {
                "section": SECTION,
                "name": "profile of one request type: Hub model info (GET /api/models/lab/tiny)",
                "table": table_text,
                "note": f"py-spy on the live workers during the phase below the pool's size "
                f"({low_clients} clients): {samples:,} samples inside the handler's thread, "
                f"by leaf frame; {summary} (psycopg: a PostgreSQL round trip, sending a "
                "query and waiting for its answer).",
            }
        )
    elif not (thr_met and p99_met):
        rows.append(
            {
                "section": SECTION,
                "name": "profile",
                "table": "",
                "note": "py-spy is not installed (RINGFENCE_BENCH_PYSPY=path/to/py-spy): "
                "no per-library profile this run.",
            }
        )
    return rows


def _pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


if __name__ == "__main__" and sys.argv[1:2] == ["--generate"]:
    print(json.dumps(asyncio.run(_generate(json.loads(sys.argv[2])))))
