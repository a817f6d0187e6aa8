"""A release keeps the density it was published with: new releases 1/16, older ones 1/8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from ringfence.catalogue import services as catalogue
from ringfence.db import transaction
from ringfence.fingerprint import carrier
from ringfence.fingerprint import services as fingerprint
from ringfence.wiring import Services
from tests.conftest import TINY_CODE


def _changed_fraction(original: Path, copy: Path) -> float:
    before, after = load_file(original), load_file(copy)
    changed = total = 0
    for name in ("model.layers.0.mlp.up_proj.weight", "model.layers.3.mlp.down_proj.weight"):
        changed += int(np.count_nonzero(before[name] != after[name]))
        total += before[name].size
    return changed / total


def test_new_releases_use_1_in_16_and_a_1_in_8_release_keeps_its_bytes(
    services: Services, tiny_model: Path, tmp_path: Path
) -> None:
    with transaction(services.sessions) as s:
        catalogue.init_organisation(s, "lab")
        for version in ("1.0", "2.0"):
            catalogue.publish(
                s, services.blobs, tiny_model, model="tiny", version=version, fingerprint=TINY_CODE
            )
        new = catalogue.get_release(s, "tiny@1.0")
        assert new.fingerprint_density_log2 == carrier.DENSITY_LOG2 == 4
        # what migration 0006 gives a release published before it
        catalogue.get_release(s, "tiny@2.0").fingerprint_density_log2 = 3

    weights = tiny_model / "model.safetensors"
    for ref, density in (("tiny@1.0", 4), ("tiny@2.0", 3)):
        with transaction(services.sessions) as s:
            release = catalogue.get_release(s, ref)
            assert fingerprint.release_params(release).density_log2 == density
            for email in ("ada@example.org", "bob@example.org"):
                fingerprint.make_copy(
                    s,
                    services.blobs,
                    services.secrets,
                    release,
                    email,
                    tmp_path / ref / email,
                    actor="test",
                )
            ada = tmp_path / ref / "ada@example.org" / "model.safetensors"
            fraction = _changed_fraction(weights, ada)
            assert 0.9 * 2.0**-density < fraction <= 2.0**-density
            ranked, _ = fingerprint.detect_copy(
                s, services.blobs, services.secrets, release, ada.parent
            )
        assert ranked[0][1] == "ada@example.org" and ranked[0][0].accused
        assert not ranked[1][0].accused
