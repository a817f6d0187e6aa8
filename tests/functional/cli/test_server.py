"""`serve` as an operator starts it: a real process on a free port, one page, then stopped;
and the refused inputs of the commands that start or prepare things (serve, demo, convert)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

import ringfence
from ringfence.demo import cache_dir
from tests.conftest import CliRunner
from tests.functional.cli.checks import ok, refused
from tests.functional.cli.conftest import Lab, lab_env
from tests.live import free_port

#: how long a server process may take to answer its first request
START_S = 30.0


def test_serve_answers_then_stops(cli: CliRunner, lab: Lab, tmp_path: Path) -> None:
    lab_key = ok(cli, "manifests", "key").out
    port = free_port()
    env = {
        **os.environ,
        **lab_env(lab.home, lab.database_url),
        "PYTHONPATH": str(Path(ringfence.__file__).parents[1]),
        "RINGFENCE_BASE_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("RINGFENCE_DATABASE_URL", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "ringfence.cli.main", "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            page = _first_answer(server, f"http://127.0.0.1:{port}/", log)
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            key = httpx.get(f"http://127.0.0.1:{port}/api/v1/distribution/signing-key.pem")
            assert key.text == lab_key  # it serves this data dir
        finally:
            server.send_signal(signal.SIGINT)
            try:
                code = server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                raise
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def _first_answer(server: subprocess.Popen[bytes], url: str, log: Path) -> httpx.Response:
    deadline = time.monotonic() + START_S
    while True:
        if server.poll() is not None:
            raise AssertionError(f"serve exited with {server.returncode}: {log.read_text()}")
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"serve did not answer in {START_S} s: {log.read_text()}"
                ) from None
            time.sleep(0.2)


def test_serve_refused(cli: CliRunner) -> None:
    refused(cli, "serve", "--port", "eighty", usage=True)


def test_demo_refused(cli: CliRunner) -> None:
    # The demo itself is `make demo`; it serves the real model, which the fast suite never loads.
    refused(cli, "demo", "run", "--port", "eighty", usage=True)
    refused(cli, "demo", "prepare", "--bogus", usage=True)


def test_demo_prepare_is_quiet_once_cached(cli: CliRunner) -> None:
    if not (cache_dir() / "smollm2-hf" / "model.safetensors").exists():
        import pytest

        pytest.skip("the demo model is not cached; the slow tests prepare it")
    assert ok(cli, "demo", "prepare", "--quiet").out == ""


def test_convert_refused(cli: CliRunner, tmp_path: Path) -> None:
    # Converting the real model is tests/functional/test_convert.py (slow).
    out = tmp_path / "out"
    refused(cli, "convert", "gguf-to-hf", str(tmp_path / "none.gguf"), str(out), says="not a file")
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused(cli, "convert", "gguf-to-hf", str(gguf), str(out), says="not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
