"""Fuzzing the safetensors and GGUF readers: every input reads consistently or is refused cleanly.

A bounded run for `make test` (a few hundred inputs per generator); bench/fuzz_bench.py feeds
the same generators and oracle 10^6 inputs.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.formats import fuzzing

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """One scratch folder for the module: hypothesis calls each test hundreds of times."""
    with tempfile.TemporaryDirectory(prefix="ringfence-fuzz-") as name:
        yield Path(name)


@pytest.mark.parametrize("target", sorted(fuzzing.TARGETS))
@FUZZ
@given(data=st.data())
def test_reader_reads_consistently_or_refuses_cleanly(
    folder: Path, target: str, data: st.DataObject
) -> None:
    generate, reader = fuzzing.TARGETS[target]
    raw = generate(fuzzing.HypothesisChoices(data))
    fuzzing.check(reader, raw, folder)


@pytest.mark.parametrize("reader", ["safetensors", "gguf"])
def test_the_generators_reach_past_the_first_checks(folder: Path, reader: str) -> None:
    # A fuzzer whose inputs all fail the magic or the length check tests nothing deeper.
    generate = fuzzing.safetensors_input if reader == "safetensors" else fuzzing.gguf_input
    choices = fuzzing.RandomChoices(random.Random(12))
    read = sum(fuzzing.check(reader, generate(choices), folder) for _ in range(300))
    assert 30 <= read <= 270
