"""Fingerprinted downloads over HTTP on loopback against plain files from the same server and
from nginx (sendfile), each over three runs with its spread; 50 parallel downloads of the demo
model (throughput, server peak RSS)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import ratio_row

TITLE = "Distribution: fingerprinted downloads over HTTP"
SECTION = "distribution"
SIZE_MIB = 256
RUNS = 3


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _plain_path() -> str:
    """How the same server sends a plain file: pathsend (sendfile) if uvicorn offers it."""
    import uvicorn

    from ringfence.distribution.sending import BlobFileResponse

    pathsend = any(
        "http.response.pathsend" in p.read_text()
        for p in Path(uvicorn.__file__).parent.rglob("*.py")
    )
    if pathsend:
        return "FileResponse by uvicorn's http.response.pathsend (sendfile)"
    size = BlobFileResponse.chunk_size // 1024
    return (
        f"FileResponse (src/ringfence/distribution/sending.py); uvicorn {uvicorn.__version__} "
        f"offers no http.response.pathsend, so Starlette reads it in {size} KiB chunks in a "
        "thread (behind nginx it is X-Accel-Redirect, i.e. sendfile)"
    )


def spread_row(
    name: str,
    values: list[float],
    baseline: str,
    baselines: list[float],
    *,
    goal: float,
    note: str,
) -> dict[str, Any]:
    """Medians of per-run throughputs, the median ratio against the goal, the min-max spread."""
    ratios = [v / b for v, b in zip(values, baselines, strict=True)]
    row = ratio_row(
        SECTION,
        name,
        statistics.median(values),
        "GB/s",
        baseline,
        statistics.median(baselines),
        higher_is_better=True,
        goal=goal,
    )
    median = statistics.median(ratios)
    row["ratio"] = median
    row["met"] = median >= goal
    row["runs"] = {"values": values, "baselines": baselines, "ratios": ratios}
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    # Both sides of a ratio starve alike on an overloaded machine, so a ratio near 1 there
    # says nothing about the stream: say so rather than let "met" stand alone.
    crowded = (
        f"UNRELIABLE: load average {load:.1f} on {cores} cores, every stream here was starved "
        "of CPU (compare the baselines with a quiet run); "
        if load > 2 * cores
        else ""
    )
    row["note"] = crowded + (
        f"median of {len(ratios)} runs, ratio {min(ratios):.2f}-{max(ratios):.2f}x "
        f"(fingerprinted {min(values):.2f}-{max(values):.2f}, baseline "
        f"{min(baselines):.2f}-{max(baselines):.2f} GB/s); "
        f"{'every run' if min(ratios) >= goal else 'not every run'} meets the goal; {note}"
    )
    return row


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _weights(directory: Path) -> Path:
    """Realistic bf16 weights (normal, std 0.02) in matrices that carry the fingerprint."""
    from ringfence.formats.safetensors import bf16_words, write_safetensors

    rng = np.random.default_rng(0)
    tensors = {}
    per = 16  # MiB per matrix: 4096 x 2048 bf16
    for i in range(SIZE_MIB // per):
        f32 = rng.normal(0, 0.02, (4096, 2048)).astype(np.float32)
        tensors[f"model.layers.{i}.mlp.up_proj.weight"] = bf16_words(f32)
    directory.mkdir(parents=True)
    path = directory / "model.safetensors"
    write_safetensors(path, tensors, dtypes={name: "BF16" for name in tensors})
    shutil.copy(path, directory / "plain.dat")  # the same bytes, served without fingerprinting
    (directory / "config.json").write_text('{"model_type": "llama"}')
    return directory


def _serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RINGFENCE_HOME": str(home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ringfence.cli.main import main; main()",
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import httpx

    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the ringfence server did not start")


def _curl(url: str, token: str | None = None) -> None:
    args = ["curl", "-sf", "-o", "/dev/null", url]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    subprocess.run(args, check=True)


def _nginx(root: Path, port: int, work: Path) -> subprocess.Popen[bytes] | None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "nginx"], capture_output=True, check=False
        )
    if not Path(nginx).exists():
        return None
    conf = work / "nginx.conf"
    conf.write_text(
        f"""daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/error.log;
events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; tcp_nopush on; client_body_temp_path {work};
  proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work};
  scgi_temp_path {work};
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
"""
    )
    proc = subprocess.Popen([nginx, "-c", str(conf)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc


def _wait_for_manifest(port: int, ref: str, token: str, timeout: float = 300) -> None:
    """Block until the server's background worker has hashed the recipient's copy.

    The first request of a recipient queues their manifest: a worker thread fingerprints and
    hashes every file of the release. Timing downloads while it runs would charge that work to
    whichever download runs first (the plain baseline, here).
    """
    import httpx

    url = f"http://127.0.0.1:{port}/api/v1/distribution/releases/{ref}/manifest"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the manifest of {ref} was not ready after {timeout:.0f} s")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run() -> list[dict[str, Any]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.unit.distribution.world import add_person, grant

    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.settings import Settings
    from ringfence.wiring import build

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        services = build(Settings(home=home))
        services.prepare()
        model = _weights(tmp / "bench-model")
        with transaction(services.sessions) as session:
            catalogue.init_organisation(session, "lab")
            catalogue.publish(session, services.blobs, model, model="bench", version="1.0")
        user_id, token = add_person(services, "bench@lab.example")
        grant(services, "bench@1.0", user_id)
        nbytes = (model / "model.safetensors").stat().st_size
        port, nport = _port(), _port()
        server = _serve(home, port)
        nginx = _nginx(model, nport, tmp)
        base = f"http://127.0.0.1:{port}/lab/bench/resolve/1.0"
        ngx_url = f"http://127.0.0.1:{nport}/plain.dat"
        runs: list[tuple[float, float, float | None]] = []  # seconds: plain, marked, nginx
        try:
            _curl(f"{base}/plain.dat", token)  # warm caches and the recipient row
            _wait_for_manifest(port, "bench@1.0", token)
            _curl(f"{base}/model.safetensors", token)
            if nginx is not None:
                _curl(ngx_url)
            # Each run times the three downloads back to back, so a ratio compares streams
            # that met the same state of the (shared) machine; the spread shows how much
            # that state moves between runs.
            load = [os.getloadavg()[0]]
            for _ in range(RUNS):
                plain = _timed(lambda: _curl(f"{base}/plain.dat", token))
                marked = _timed(lambda: _curl(f"{base}/model.safetensors", token))
                ngx = _timed(lambda: _curl(ngx_url)) if nginx is not None else None
                runs.append((plain, marked, ngx))
            load.append(os.getloadavg()[0])
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
            if nginx is not None:
                nginx.terminate()
                nginx.wait(timeout=10)
        gbps = nbytes / 1e9
        name = f"fingerprinted download, {SIZE_MIB} MiB bf16, one stream (throughput)"
        rows.append(
            spread_row(
                name,
                [gbps / m for _, m, _ in runs],
                "same server, plain file",
                [gbps / p for p, _, _ in runs],
                goal=0.9,
                note=f"plain file path: {_plain_path()}; fingerprinted: Python stream from "
                "the same uvicorn, each chunk made in a worker thread while the one before "
                "it is sent (distribution.sending.read_ahead); curl over loopback, hub "
                "resolve endpoint, after the recipient's manifest worker finished; load "
                f"average {load[0]:.1f} at the start, {load[1]:.1f} at the end (other "
                f"processes share these {os.cpu_count()} cores)",
            )
        )
        if nginx is not None:
            rows.append(
                spread_row(
                    name,
                    [gbps / m for _, m, _ in runs],
                    "nginx sendfile, plain file",
                    [gbps / n for _, _, n in runs if n is not None],
                    goal=0.8,
                    note="nginx 1 worker, `sendfile on; tcp_nopush on;`, a static file of "
                    "the same bytes (the kernel copies page cache to the socket); the gap's "
                    "cause: sendfile moves the bytes once, inside the kernel, where a "
                    "fingerprinted copy cannot be made at all (its bytes exist nowhere "
                    "before the request), so the Python stream passes over them three times "
                    "(read into a buffer, marked into a new one, copied into the socket) "
                    "plus a thread hop per 2 MiB chunk; making the next chunk while the "
                    "last is sent hides the marking only where a core is free",
                )
            )
        rows += _parallel(tmp)
    return rows


def _parallel(tmp: Path, clients: int = 50) -> list[dict[str, Any]]:
    """50 grantees download the demo model at once, each their own fingerprinted copy."""
    from tests.unit.distribution.world import add_person, grant

    from ringfence import demo
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.settings import Settings
    from ringfence.wiring import build

    source = demo.demo_hf_dir()
    home = tmp / "home50"
    services = build(Settings(home=home))
    services.prepare()
    with transaction(services.sessions) as session:
        catalogue.init_organisation(session, "lab")
        catalogue.publish(session, services.blobs, source, model="smollm2", version="1.0")
    tokens = []
    for i in range(clients):
        uid, tok = add_person(services, f"user{i}@lab.example")
        grant(services, "smollm2@1.0", uid)
        tokens.append(tok)
    size = (source / "model.safetensors").stat().st_size
    port = _port()
    server = _serve(home, port)
    url = f"http://127.0.0.1:{port}/lab/smollm2/resolve/1.0/model.safetensors"
    try:
        _curl(url, tokens[0])
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                ["curl", "-sf", "-o", "/dev/null", url, "-H", f"Authorization: Bearer {t}"]
            )
            for t in tokens
        ]
        codes = [p.wait() for p in procs]
        elapsed = time.perf_counter() - started
        peak = _peak_rss_mib(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    return [
        ratio_row(
            SECTION,
            f"{clients} parallel fingerprinted downloads of the demo model (aggregate)",
            clients * size / elapsed / 1e9,
            "GB/s",
            "one download's size / total time",
            size / elapsed / 1e9,
            higher_is_better=True,
            note=f"{sum(c == 0 for c in codes)}/{clients} complete, {elapsed:.1f} s, "
            f"{size / 2**20:.0f} MiB each",
        ),
        ratio_row(
            SECTION,
            f"server peak RSS during {clients} parallel downloads",
            peak,
            "MiB",
            "one copy of the weights file",
            size / 2**20,
            higher_is_better=False,
            note="VmHWM of the uvicorn process; constant-memory streaming keeps it flat",
        ),
    ]
