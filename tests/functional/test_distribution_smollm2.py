"""Done-when: the real SmolLM2 through the Hub-compatible API, attributed to its downloader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ringfence.wiring import Services
from tests.functional.distribution_server import live_server
from tests.functional.test_distribution_hub import run_client
from tests.unit.distribution.world import add_person, grant, make_world, release, revoke


@pytest.mark.slow
def test_snapshot_download_and_from_pretrained_give_a_copy_traced_to_the_user(
    services: Services, tmp_path: Path
) -> None:
    from ringfence import demo
    from ringfence.fingerprint.services import detect_copy

    world = make_world(services, demo.demo_hf_dir(), model="smollm2", version="1.0")
    for i in range(3):  # other recipients the detector must not accuse
        grant(services, world.ref, add_person(services, f"other{i}@lab.example")[0])
    with live_server(services) as base:
        done = run_client(
            f"""
            import json, torch
            from huggingface_hub import snapshot_download
            from transformers import AutoModelForCausalLM
            path = snapshot_download("{world.repo_id}", revision="1.0")
            model = AutoModelForCausalLM.from_pretrained("{world.repo_id}", revision="1.0",
                                                         dtype=torch.bfloat16)
            print(json.dumps({{"path": path, "layers": model.config.num_hidden_layers}}))
            """,
            base,
            world.token,
            tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["layers"] == 30
        weights = Path(result["path"]) / "model.safetensors"
        rel = release(services, world.ref)
        with services.sessions() as session:
            ranked, _ = detect_copy(session, services.blobs, services.secrets, rel, weights)
        top, email = ranked[0]
        assert email == world.email and top.accused
        assert not any(a.accused for a, e in ranked[1:])
        # Revoked mid-download: the next request is refused with the Hub's gated answer.
        revoke(services, world.ref, world.user_id)
        again = run_client(
            f"""
            from huggingface_hub import hf_hub_download
            from huggingface_hub.errors import GatedRepoError
            try:
                print(hf_hub_download("{world.repo_id}", "model.safetensors", revision="1.0"))
            except GatedRepoError:
                print("gated")
            """,
            base,
            world.token,
            tmp_path / "fresh-cache",
        )
        assert again.stdout.strip() == "gated", again.stdout + again.stderr[-2000:]
