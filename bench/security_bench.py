"""Security studies too slow for `make test`: sign-up timing, and schemathesis at depth.

- Sign-up of an address that already has an account must cost what a new one costs, or its
  time tells anyone who has an account (issue #10 saw 26 ms against 385 ms). Measured as the
  median of many sign-ups of each kind, through the service, on one database.
- schemathesis over the JSON and Hub APIs (tests/functional/test_api_fuzz.py) with many more
  examples per operation than the test suite's: any 5xx fails the row.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TITLE = "Security: sign-up timing and API fuzzing"
SIGNUPS = 40
FUZZ_EXAMPLES = 100
ROOT = Path(__file__).resolve().parent.parent


def _signup_times() -> tuple[float, float]:
    """Median seconds of a sign-up for a known address and for a new one."""
    from sqlalchemy import delete

    from ringfence.accounts import services as accounts
    from ringfence.accounts.models import RateLimitHit
    from ringfence.db import transaction
    from ringfence.settings import Settings
    from ringfence.wiring import build

    with tempfile.TemporaryDirectory() as tmp:
        services = build(Settings(home=Path(tmp), mail_backend="none"))
        services.prepare()
        password = "a long enough passphrase"  # noqa: S105 (a throwaway data dir)
        with transaction(services.sessions) as session:
            accounts.sign_up(
                session, services.secrets, "known@uni.example", password, ip=None, base_url="x"
            )
        known: list[float] = []
        new: list[float] = []
        for i in range(SIGNUPS):
            for address, times in (("known@uni.example", known), (f"n{i}@uni.example", new)):
                with transaction(services.sessions) as session:
                    # The per-address mail limit would skip the mail after 5: count it anew.
                    session.execute(delete(RateLimitHit))
                    started = time.perf_counter()
                    accounts.sign_up(
                        session, services.secrets, address, password, ip=None, base_url="x"
                    )
                    session.flush()
                    times.append(time.perf_counter() - started)
        return statistics.median(known), statistics.median(new)


def _fuzz() -> tuple[bool, str]:
    """Run the schemathesis test at depth; (passed, its last line)."""
    env = {**os.environ, "RINGFENCE_FUZZ_EXAMPLES": str(FUZZ_EXAMPLES)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/functional/test_api_fuzz.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return done.returncode == 0, lines[-1] if lines else done.stderr[-200:]


def run() -> Iterator[dict[str, Any]]:
    known, new = _signup_times()
    ratio = known / new
    yield {
        "section": "security",
        "name": "sign-up of a known address (median)",
        "value": known * 1000,
        "unit": "ms",
        "baseline": "sign-up of a new address",
        "baseline_value": new * 1000,
        "ratio": ratio,
        "goal": "0.8x-1.25x",
        "met": 0.8 <= ratio <= 1.25,
        "note": f"{SIGNUPS} of each; both hash the password with argon2id",
    }
    passed, summary = _fuzz()
    yield {
        "section": "security",
        "name": f"schemathesis, {FUZZ_EXAMPLES} examples per operation and principal",
        "value": 0 if passed else 1,
        "unit": "runs with a 5xx",
        "goal": "0",
        "met": passed,
        "note": summary,
    }
