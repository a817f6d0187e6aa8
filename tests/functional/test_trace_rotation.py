"""`trace` through a QuaRot-style copy: norms folded, the residual stream rotated, 4-bit quantised.

A small model (with norm scales that are not ones, so that folding them changes every reader)
is published, one recipient's fingerprinted copy is made as she would download it, and the
leak is her copy rotated by a random orthogonal matrix, then Q4_0-quantised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bench.attacks import formats, transforms
from bench.attacks import rotation as attack
from safetensors.numpy import load_file

from ringfence.catalogue import services as catalogue
from ringfence.db import transaction
from ringfence.fingerprint import services as fingerprint
from ringfence.fingerprint.code import CodeParams
from ringfence.fingerprint.plan import MAX_LENGTH_FACTOR
from ringfence.tracing import services as tracing
from ringfence.wiring import Services
from tests.conftest import write_tiny_model

LEAKER = "leaker@x.org"


def _model(directory: Path) -> Path:
    """The tiny test model with both norms per layer, their scales drawn in [0.5, 1.5]."""
    # sixteen times the MLP width of the default: room for a longer code (see the test)
    write_tiny_model(directory, intermediate=16384)
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    rng = np.random.default_rng(11)
    hidden = tensors["model.norm.weight"].shape[0]
    for i in range(4):
        for norm in ("input_layernorm", "post_attention_layernorm"):
            scale = rng.uniform(0.5, 1.5, hidden).astype(np.float32)
            tensors[f"model.layers.{i}.{norm}.weight"] = scale
    # bf16 as releases are: a fingerprint of one f32 step would not survive any quantisation
    formats.write_st(dict(tensors), path, "BF16")
    return directory


def test_a_rotated_then_4_bit_quantised_copy_names_its_recipient(
    services: Services, tmp_path: Path
) -> None:
    # a code longer than TINY_CODE's: a 128-symbol code reads z ~ 9 from an exact copy, too
    # near the threshold (~5.5) once Q4_0 has taken its share
    with transaction(services.sessions) as s:
        catalogue.init_organisation(s, "lab")
        catalogue.publish(
            s,
            services.blobs,
            _model(tmp_path / "tiny"),
            model="tiny",
            version="1.0",
            fingerprint=CodeParams(max_recipients=100, max_colluders=2, false_accusation=1e-3),
        )
    with transaction(services.sessions) as s:
        release = catalogue.get_release(s, "tiny@1.0")
        # publish stored the length fitted to the matrices: the cap, 3x the least
        params = fingerprint.release_params(release)
        assert release.fingerprint_code_length == params.design.length
        assert params.design.length == MAX_LENGTH_FACTOR * params.least_length
        fingerprint.simulate_recipients(s, release, 40, actor="test")
        fingerprint.make_copy(
            s, services.blobs, services.secrets, release, LEAKER, tmp_path / "copy", actor="test"
        )
    copy = formats.load_dir(tmp_path / "copy")
    q = attack.random_orthogonal(copy["model.norm.weight"].shape[0], np.random.default_rng(12))
    leak = transforms.quantise(attack.rotate(copy, q), "Q4_0")
    path = formats.write_st(leak, tmp_path / "leak" / "model.safetensors", "F32")

    with transaction(services.sessions) as s:
        result = tracing.trace(services, s, [path])
    assert [a.recipient for a in result.accused] == [LEAKER], (
        result.threshold_z,
        [(c["recipient"], round(c["z"], 1)) for c in result.candidates[:3]],
    )
    assert any("residual-stream rotation undone" in step for step in result.alignment)
    assert any("norms folded" in step for step in result.alignment)
