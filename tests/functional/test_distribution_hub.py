"""Real huggingface_hub and transformers clients against a live ringfence server."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.distribution.tasks import compute_pending
from ringfence.wiring import Services
from tests.functional.distribution_server import live_server
from tests.unit.distribution.world import World, add_person, make_world, revoke


def write_tiny_llama(directory: Path) -> Path:
    """A real (random) Llama that transformers loads, with matrices big enough to carry marks."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=512,
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    return directory


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("llama") / "tiny-llama")


@pytest.fixture
def world(services: Services, llama_dir: Path) -> World:
    return make_world(services, llama_dir, model="tiny-llama", version="1.0")


@pytest.fixture
def server(services: Services) -> Iterator[str]:
    with live_server(services) as url:
        yield url


def run_client(code: str, endpoint: str, token: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run client code in a fresh interpreter, configured only through the environment."""
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": token,
        "HF_HOME": str(tmp / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_snapshot_download_and_from_pretrained_get_the_callers_copy(
    world: World, server: str, services: Services, tmp_path: Path, llama_dir: Path
) -> None:
    _, other_token = add_person(services, "bob@lab.example")
    from tests.unit.distribution.world import grant

    grant(services, world.ref, _ := add_person(services, "carol@lab.example")[0])
    compute_pending(services)
    code = f"""
        import json, torch
        from huggingface_hub import snapshot_download, hf_hub_download
        from transformers import AutoModelForCausalLM
        path = snapshot_download("{world.repo_id}", revision="1.0")
        one = hf_hub_download("{world.repo_id}", "config.json", revision="1.0")
        model = AutoModelForCausalLM.from_pretrained("{world.repo_id}", revision="1.0")
        out = model(torch.tensor([[1, 2, 3]])).logits
        print(json.dumps({{"path": path, "one": one, "shape": list(out.shape)}}))
    """
    done = run_client(code, server, world.token, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1, 3, 512]
    snapshot = Path(result["path"])
    weights = snapshot / "model.safetensors"
    # The caller's own copy: its bytes are what their signed manifest says, not the original.
    from ringfence.distribution import services as dist

    with services.sessions() as session:
        from tests.unit.distribution.world import release

        rel = release(services, world.ref)
        row = dist.manifest_row(session, rel.id, world.user_id)
        assert row is not None and row.state == "ready"
        assert _sha(weights) == row.files["model.safetensors"]
        assert _sha(weights) != _sha(llama_dir / "model.safetensors")
    # Another grantee gets other bytes; someone without a grant gets GatedRepoError.
    gated = run_client(
        f"""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError
        try:
            snapshot_download("{world.repo_id}", revision="1.0")
        except GatedRepoError:
            print("gated")
        """,
        server,
        other_token,
        tmp_path / "bob",
    )
    assert gated.stdout.strip() == "gated", gated.stderr[-2000:]


def test_revoking_mid_download_fails_the_next_request(
    world: World, server: str, services: Services, tmp_path: Path
) -> None:
    first = run_client(
        f"""
        from huggingface_hub import hf_hub_download
        print(hf_hub_download("{world.repo_id}", "config.json", revision="1.0"))
        """,
        server,
        world.token,
        tmp_path,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    revoke(services, world.ref, world.user_id, reason="licence breach")
    second = run_client(
        f"""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import GatedRepoError
        try:
            hf_hub_download("{world.repo_id}", "model.safetensors", revision="1.0")
        except GatedRepoError as exc:
            print("gated", "revoked" in str(exc))
        """,
        server,
        world.token,
        tmp_path,
    )
    assert second.stdout.strip() == "gated True", second.stderr[-2000:]
