"""`ringfence trace` on leaked copies of the real SmolLM2: the CI subset of the robustness suite.

One data dir per module: the demo model published, two recipients' fingerprinted copies made
exactly as they would download them, and a thousand simulated recipients as the crowd of
innocents. Each test leaks a copy in some way and checks whom the trace accuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from bench.attacks import formats, transforms

from ringfence.cli.main import run
from ringfence.settings import Settings
from ringfence.wiring import Services, build

pytestmark = [pytest.mark.slow, pytest.mark.shared_database]

REF = "smollm2@1.0"
ALICE = "alice@example.org"
BOB = "bob@example.org"


@dataclass
class Lab:
    home: Path
    services: Services
    copies: dict[str, Path]
    cfg: dict[str, int]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None) -> Iterator[Lab]:
    from ringfence.catalogue import services as catalogue
    from ringfence.cli import context
    from ringfence.db import transaction
    from ringfence.demo import demo_hf_dir
    from ringfence.fingerprint import services as fingerprint
    from ringfence.fingerprint.services import simulate_recipients

    root = tmp_path_factory.mktemp("trace")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RINGFENCE_HOME", str(home))
        if module_database_url:
            mp.setenv("RINGFENCE_DATABASE_URL", module_database_url)
        else:
            mp.delenv("RINGFENCE_DATABASE_URL", raising=False)
        context.services.cache_clear()
        svc = build(Settings(home=home))
        svc.prepare()
        copies = {}
        with transaction(svc.sessions) as session:
            catalogue.init_organisation(session, "lab")
            release = catalogue.publish(
                session,
                svc.blobs,
                demo_hf_dir(),
                model="smollm2",
                version="1.0",
            )
            simulate_recipients(session, release, 1000, actor="test")
        for email in (ALICE, BOB):
            with transaction(svc.sessions) as session:
                release = catalogue.get_release(session, REF)
                out = root / email.split("@")[0]
                fingerprint.make_copy(
                    session, svc.blobs, svc.secrets, release, email, out, actor="test"
                )
                copies[email] = out
        yield Lab(home, svc, copies, formats.config(demo_hf_dir()))
        context.services.cache_clear()


def trace(lab: Lab, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    from ringfence.cli import context

    context.services.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RINGFENCE_HOME", str(lab.home))
        capsys.readouterr()
        code = run(["trace", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith("{") else {}


def accused(result: dict) -> set[str]:
    return {a["recipient"] for a in result["accused"]}


def test_exact_copy_is_named_by_its_hash(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    from ringfence.accounts.models import User
    from ringfence.catalogue.services import get_release
    from ringfence.db import transaction
    from ringfence.distribution.models import RecipientFileHash, RecipientManifest
    from ringfence.tracing.suspect import file_sha256

    copy = lab.copies[ALICE] / "model.safetensors"
    with transaction(lab.services.sessions) as session:
        user = User(email=ALICE, name="Alice")
        session.add(user)
        session.flush()
        release = get_release(session, REF)
        digest = file_sha256(copy)
        session.add(
            RecipientManifest(
                release_id=release.id,
                user_id=user.id,
                state="ready",
                files={"model.safetensors": digest},
            )
        )
        # what distribution writes with a ready manifest, and the trace looks up
        session.add(
            RecipientFileHash(
                sha256=digest, release_id=release.id, user_id=user.id, path="model.safetensors"
            )
        )
    code, result = trace(lab, capsys, str(copy))
    assert code == 0
    assert result["exact_match"] is True
    assert accused(result) == {ALICE}
    assert result["release"] == REF


def test_q4_0_gguf_of_one_copy(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    leaked = formats.write_gguf(
        formats.load_dir(lab.copies[BOB]), tmp_path / "leak.Q4_0.gguf", lab.cfg, "Q4_0"
    )
    report = tmp_path / "report.html"
    code, result = trace(lab, capsys, str(leaked), "--report", str(report))
    assert code == 0
    assert accused(result) == {BOB}
    assert result["accused"][0]["p_value"] <= result["bound"] == 1e-9
    assert result["exact_match"] is False and result["release"] == REF
    assert "data:image/png;base64," in report.read_text()


def test_permuted_neurons_and_heads(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    tensors = transforms.permute_mlp(formats.load_dir(lab.copies[ALICE]), rng)
    tensors = transforms.permute_heads(tensors, rng, lab.cfg["heads"], lab.cfg["kv_heads"])
    leaked = formats.write_st(tensors, tmp_path / "model.safetensors")
    code, result = trace(lab, capsys, str(leaked), "--release", REF)
    assert code == 0
    assert accused(result) == {ALICE}
    assert any("permuted back" in step for step in result["alignment"])


def test_two_colluders_averaged_then_q4_0(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mixed = transforms.average([formats.load_dir(lab.copies[e]) for e in (ALICE, BOB)])
    leaked = formats.write_gguf(mixed, tmp_path / "merged.gguf", lab.cfg, "Q4_0")
    code, result = trace(lab, capsys, str(leaked))
    assert code == 0
    assert accused(result) == {ALICE, BOB}
    assert not any("screened" in step for step in result["alignment"])
    # the prefix screen a trace against many recipients uses, here made to bite at 1,002
    from ringfence.fingerprint import accuse

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(accuse, "SCREEN_KEEP", 50)
        code, screened = trace(lab, capsys, str(leaked), "--release", REF)
    assert code == 0
    assert accused(screened) == {ALICE, BOB}
    step = next(s for s in screened["alignment"] if "screened" in s)
    assert step.startswith("screened 1,002 recipients on the first 16,448 code symbols")
    assert step.endswith("the best 50 scored on all 49,344")
    # the same full scores and p-values (the union bound still over all 1,002) for those kept
    for mine, theirs in zip(screened["accused"], result["accused"], strict=True):
        assert mine["score"] == pytest.approx(theirs["score"])
        assert mine["p_value"] == pytest.approx(theirs["p_value"])


def test_pytorch_checkpoint_of_half_the_layers(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    half = transforms.first_shard(formats.load_dir(lab.copies[BOB]), lab.cfg["layers"])
    leaked = formats.write_torch(half, tmp_path / "pytorch_model.bin")
    code, result = trace(lab, capsys, str(leaked), "--release", REF)
    assert code == 0
    assert accused(result) == {BOB}
    assert any(step.startswith("subset:") for step in result["alignment"])


def test_unrelated_weights_accuse_nobody(
    lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    original = formats.load_dir(lab.copies[ALICE])
    rng = np.random.default_rng(3)
    unrelated = {
        n: rng.normal(0, float(v.std()) or 1.0, v.shape).astype(np.float32)
        for n, v in list(original.items())[:20]
    }
    leaked = formats.write_st(unrelated, tmp_path / "model.safetensors")
    code, result = trace(lab, capsys, str(leaked))
    assert code == 1
    assert result == {} or result["accused"] == []


def test_bad_input_exits_2(lab: Lab, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    code, _ = trace(lab, capsys, str(junk))
    assert code == 2
