"""Publishing the demo release against sha256sum of the same bytes; header validation rate."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from common import best_of, ratio_row

TITLE = "Foundation: publish and validation"


def run() -> list[dict[str, Any]]:
    from ringfence import demo
    from ringfence.catalogue import services as catalogue
    from ringfence.db import transaction
    from ringfence.formats import safetensors as st
    from ringfence.settings import Settings
    from ringfence.wiring import build

    source = demo.demo_hf_dir()
    files = sorted(str(p) for p in source.iterdir() if p.is_file())
    total = sum(Path(f).stat().st_size for f in files)
    subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)  # warm the page cache

    def sha256sum() -> None:
        subprocess.run(["sha256sum", *files], stdout=subprocess.DEVNULL, check=True)

    baseline = best_of(sha256sum)

    def publish_once() -> float:
        with tempfile.TemporaryDirectory() as home:
            services = build(Settings(home=Path(home)))
            services.prepare()
            with transaction(services.sessions) as session:
                catalogue.init_organisation(session, "lab")
            started = time.perf_counter()
            with transaction(services.sessions) as session:
                catalogue.publish(session, services.blobs, source, model="smollm2", version="1.0")
            return time.perf_counter() - started

    publish = min(publish_once() for _ in range(3))
    rows = [
        ratio_row(
            "foundation",
            f"publish smollm2@1.0 ({total / 2**20:.0f} MiB, validate + store + record)",
            publish,
            "s",
            "sha256sum of the same files",
            baseline,
            higher_is_better=False,
            goal=2.0,
        )
    ]

    weights = source / "model.safetensors"
    with weights.open("rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = fh.read(n)
    count = 200
    started = time.perf_counter()
    for _ in range(count):
        st.read_index(weights)
    ours = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(count):
        with weights.open("rb") as fh:
            fh.read(8)
            json.loads(fh.read(n))
    plain = count / (time.perf_counter() - started)
    tensors = len(json.loads(header)) - 1
    rows.append(
        ratio_row(
            "foundation",
            f"safetensors header validation ({tensors} tensors, {n} B header)",
            ours,
            "headers/s",
            "open + json.loads of the same header",
            plain,
            higher_is_better=True,
            note="strict checks: dtypes, shapes, offsets, coverage",
        )
    )
    return rows
