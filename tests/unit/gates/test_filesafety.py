"""File safety: a pickle anywhere, zips and nested zips included, fails the gate."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest

from ringfence.gates import filesafety
from tests.conftest import write_tiny_model

pytestmark = pytest.mark.no_database
HOSTILE = Path(__file__).parents[2] / "data" / "hostile"


def files_of(directory: Path) -> dict[str, Path]:
    return {p.relative_to(directory).as_posix(): p for p in directory.rglob("*") if p.is_file()}


def test_a_clean_release_passes(tmp_path: Path) -> None:
    outcome = filesafety.run(files_of(write_tiny_model(tmp_path / "m")), fail_cap="in-house")
    assert outcome.passed and outcome.cap == "public" and outcome.figures["unsafe"] == 0


def test_a_bare_pickle_fails(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "m")
    (model / "extra.bin").write_bytes((HOSTILE / "pickle_protocol2.bin").read_bytes())
    outcome = filesafety.run(files_of(model), fail_cap="in-house")
    assert not outcome.passed and outcome.cap == "in-house" and "extra.bin" in outcome.reason


def test_a_pickle_inside_a_nested_zip_fails(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "m")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("weights/blob", pickle.dumps({"a": 1}, protocol=4))
    with zipfile.ZipFile(model / "extras.zip", "w") as archive:
        archive.writestr("notes.txt", "nothing here")
        archive.writestr("inner.zip", inner.getvalue())
    outcome = filesafety.run(files_of(model), fail_cap="in-house")
    assert not outcome.passed
    assert "extras.zip!inner.zip!weights/blob is a pickle" in outcome.reason
