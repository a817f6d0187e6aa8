"""Shared fixtures: an isolated data dir, services, the CLI in-process, small real models."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ringfence.fingerprint.code import CodeParams
from ringfence.settings import Settings
from ringfence.wiring import Services, build
from tests import databases


def pytest_configure(config: pytest.Config) -> None:
    """The caller's own database setting never reaches a test (functional tests choose)."""
    import os

    os.environ.pop("RINGFENCE_DATABASE_URL", None)
    config.addinivalue_line(
        "markers", "shared_database: the module builds one world of its own per database"
    )
    config.addinivalue_line("markers", "no_database: the module's tests touch no database")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop the PostgreSQL template this run made."""
    databases.close()


#: the gate policies tests use: other areas' tests widen releases freely under the open one
GATES_DATA = Path(__file__).parent / "data" / "gates"
OPEN_GATES_POLICY = GATES_DATA / "open-policy.yaml"
SMALL_GATES_POLICY = GATES_DATA / "small-policy.yaml"


@pytest.fixture(scope="session", autouse=True)
def _open_gates() -> Iterator[None]:
    """Gates allow every circle unless a test chooses a policy (the gates' own tests do):
    the other areas' tests widen releases that never went through the gates. Session-wide,
    so module-scoped worlds built before any test see it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RINGFENCE_GATES_POLICY", str(OPEN_GATES_POLICY))
        yield


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh RINGFENCE_HOME (SQLite file + blob store) for one test."""
    from ringfence.cli import context

    path = tmp_path / "home"
    monkeypatch.setenv("RINGFENCE_HOME", str(path))
    context.services.cache_clear()
    yield path
    context.services.cache_clear()


@pytest.fixture
def services(home: Path) -> Services:
    """Services on the fresh data dir, schema migrated."""
    built = build(Settings(home=home))
    built.prepare()
    return built


@dataclass
class CliResult:
    """What one CLI invocation did."""

    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


CliRunner = Callable[..., CliResult]


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run `ringfence ARGS...` in-process, exactly as the console script does."""
    from ringfence.cli.main import run

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


#: fingerprint parameters small enough for the tiny models (a real release uses 10^6, 8, 1e-9)
TINY_CODE = CodeParams(max_recipients=100, max_colluders=1, false_accusation=1e-3)
#: the same as settings, for commands that publish tiny models
TINY_CODE_ENV = {
    "RINGFENCE_FINGERPRINT_MAX_RECIPIENTS": "100",
    "RINGFENCE_FINGERPRINT_MAX_COLLUDERS": "1",
    "RINGFENCE_FINGERPRINT_FALSE_ACCUSATION": "1e-3",
}


def write_tiny_model(
    directory: Path, *, seed: int = 0, hidden: int = 64, layers: int = 4, intermediate: int = 1024
) -> Path:
    """A small Hugging Face-layout model: config, tokenizer files and F32 safetensors weights.

    Its MLP matrices (intermediate x hidden >= 65,536 weights) carry a TINY_CODE fingerprint.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": rng.normal(0, 0.02, (256, hidden)).astype(np.float32),
        "model.norm.weight": np.ones(hidden, dtype=np.float32),
    }
    for i in range(layers):
        for name, shape in (
            ("self_attn.q_proj.weight", (hidden, hidden)),
            ("self_attn.k_proj.weight", (hidden, hidden)),
            ("mlp.up_proj.weight", (intermediate, hidden)),
            ("mlp.down_proj.weight", (hidden, intermediate)),
        ):
            tensors[f"model.layers.{i}.{name}"] = rng.normal(0, 0.02, shape).astype(np.float32)
        tensors[f"model.layers.{i}.input_layernorm.weight"] = np.ones(hidden, dtype=np.float32)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(
        json.dumps({"model_type": "llama", "hidden_size": hidden})
    )
    (directory / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {}}))
    (directory / "README.md").write_text("# tiny\nA model made by the test suite.\n")
    return directory


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A small HF-layout model directory with real safetensors weights."""
    return write_tiny_model(tmp_path / "tiny")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    server = databases.postgres_server()
    url = server.create(migrated=False)
    yield url
    server.drop(url)
