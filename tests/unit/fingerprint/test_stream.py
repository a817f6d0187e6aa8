"""Embedding and streaming: every supported type, ranges, headers, determinism, refusals."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.errors import CapacityError, UnsupportedFormat
from ringfence.fingerprint import accuse, code, plan, read, stream
from ringfence.formats.index import read_index
from ringfence.formats.safetensors import bf16_words, write_safetensors

KEY = b"release-key".ljust(32, b"\0")
PARAMS = code.CodeParams(max_recipients=1000, max_colluders=2, false_accusation=1e-6)


def _normal(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 0.02).astype(np.float32)


@pytest.fixture(scope="module")
def safetensors_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    write_safetensors(
        path,
        {
            "embed.weight": bf16_words(_normal((300, 257), 1)),
            "norm.weight": np.ones(257, dtype=np.float32),
            "mlp.weight": _normal((260, 300), 2).astype(np.float16),
            "out.weight": _normal((256, 300), 3),
            "small.weight": _normal((8, 8), 4),
        },
        dtypes={"embed.weight": "BF16"},
    )
    return path


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "model.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    q8 = gguf.quants.quantize(_normal((256, 320), 5), gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.ffn_up.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(320, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_down.weight", _normal((320, 256), 6).astype(np.float16))
    writer.add_tensor("output.weight", _normal((256, 288), 7))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _whole(
    path: Path, recipient: int, params: code.CodeParams = PARAMS
) -> tuple[bytes, plan.FingerprintPlan]:
    index = read_index(path)
    p = plan.build_plan(index, KEY, params)
    bits = code.codeword(KEY, recipient, code.thresholds(KEY, p.code_length, PARAMS.cutoff))
    return b"".join(stream.fingerprinted_bytes(path, p, bits)), p


@pytest.mark.parametrize("name", ["safetensors_file", "gguf_file"])
def test_only_carrier_tensor_data_changes(name: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(name)
    original = path.read_bytes()
    index = read_index(path)
    copy, p = _whole(path, 3)
    assert len(copy) == len(original)
    assert copy[: index.data_offset] == original[: index.data_offset]  # header byte for byte
    carriers = {t.name for t in p.tensors}
    assert carriers == {t.name for t in index.tensors if t.numel >= 65536}
    assert {t.dtype for t in p.tensors} >= (
        {"BF16", "F16", "F32"} if name.startswith("s") else {"Q8_0", "F16", "F32"}
    )
    for t in index.tensors:
        same = copy[t.begin : t.end] == original[t.begin : t.end]
        assert same == (t.name not in carriers), t.name
    assert copy == _whole(path, 3)[0]  # deterministic
    assert copy != _whole(path, 4)[0]  # distinct recipients differ


@pytest.mark.parametrize("density", [3, 4])
@pytest.mark.parametrize("name", ["safetensors_file", "gguf_file"])
def test_changes_are_one_step_on_one_weight_in_2_to_the_density(
    name: str, density: int, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(name)
    original = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    params = code.CodeParams(PARAMS.max_recipients, PARAMS.max_colluders, 1e-6, density)
    copy, p = _whole(path, 9, params)
    assert p.density_log2 == density
    fingerprinted = np.frombuffer(copy, dtype=np.uint8)
    for t in p.tensors:
        before = read.decode(t.dtype, original[t.begin : t.end])
        after = read.decode(t.dtype, fingerprinted[t.begin : t.end])
        changed = before != after
        # a few elements are left alone (Q8_0 quants at ±127, zeros); a cut block adds a few
        assert 0.88 * 2.0**-density < changed.mean() < 1.01 * 2.0**-density
        rel = np.abs(after - before)[changed] / np.abs(before[changed]).clip(1e-12)
        if t.dtype != "Q8_0":
            assert rel.max() < 2**-6  # one bf16 ulp of the value at most


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_range_equals_the_slice_of_the_whole(
    data: st.DataObject, safetensors_file: Path, gguf_file: Path
) -> None:
    path = data.draw(st.sampled_from([safetensors_file, gguf_file]))
    whole, p = _whole(path, 5)
    start = data.draw(st.integers(0, len(whole)))
    end = data.draw(st.integers(start, len(whole)))
    chunk = data.draw(st.sampled_from([7, 34 * 3, 4096, stream.CHUNK]))
    bits = code.codeword(KEY, 5, code.thresholds(KEY, p.code_length, PARAMS.cutoff))
    part = b"".join(stream.fingerprinted_bytes(path, p, bits, start, end, chunk=chunk))
    assert part == whole[start:end]


@pytest.mark.parametrize("name", ["safetensors_file", "gguf_file"])
def test_detector_reads_the_codeword_back(name: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(name)
    original = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    copy, p = _whole(path, 11)
    fingerprinted = np.frombuffer(copy, dtype=np.uint8)
    evidence = read.SymbolEvidence.empty(p.code_length)
    for t in p.tensors:
        suspect = read.decode(t.dtype, fingerprinted[t.begin : t.end])
        evidence.add(
            read.tensor_evidence(
                t.dtype, original[t.begin : t.end], suspect, t.seed, p.code_length, p.density_log2
            )
        )
    y = read.soft_symbols(evidence).symbols
    limits = code.thresholds(KEY, p.code_length, PARAMS.cutoff)
    ids = np.arange(1000)
    verdict = accuse.decide(
        accuse.score_all(KEY, limits, y, ids), ids, limits, y, bound=PARAMS.false_accusation
    )
    best, *others = verdict.candidates
    assert best.index == 11 and best.accused
    assert best.z > verdict.threshold_z
    assert not any(c.accused for c in others)


def test_capacity_is_checked_with_has_and_needs(safetensors_file: Path) -> None:
    index = read_index(safetensors_file)
    needs = plan.required_weights(code.CodeParams().design.length)
    with pytest.raises(CapacityError, match=rf"has 231,900 carrier weights, needs {needs:,}"):
        plan.check_capacity([index])  # defaults: 10^6 recipients, 8 colluders
    assert needs == 16448 * 4096
    plan.check_capacity([index, index, index], code.CodeParams(10, 1, 1e-2))


def test_a_release_gets_the_longest_code_its_matrices_carry(safetensors_file: Path) -> None:
    index = read_index(safetensors_file)  # 231,900 carrier weights: 113 symbols at 2,048
    small = code.CodeParams(10, 1, 1e-2)
    assert small.least_length == 128
    assert plan.fitted_length([index], small) == 128  # fits fewer: the least (as before)
    assert plan.fitted_length([index] * 2, small) == 192  # 226 symbols' worth, to 64s
    assert plan.fitted_length([index] * 5, small) == 3 * 128  # at most 3x the least
    bigger = plan.build_plan(index, KEY, code.CodeParams(10, 1, 1e-2, length=256))
    assert bigger.code_length == 256


def test_unsupported_matrix_types_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "q4.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    q4 = gguf.quants.quantize(_normal((256, 320), 5), gguf.GGMLQuantizationType.Q4_1)
    writer.add_tensor("blk.0.ffn_up.weight", q4, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedFormat, match="Q4_1"):
        plan.build_plan(read_index(path), KEY, PARAMS)


def test_zeros_and_non_finite_values_are_left_alone() -> None:
    raw = bf16_words(np.array([0.0, -0.0, np.inf, -np.inf, np.nan] * 64 * 8, dtype=np.float32))
    out = np.empty_like(raw)
    from ringfence.fingerprint.embed import embed_float

    bits = np.ones(64, dtype=bool)
    embed_float(raw, "BF16", 0, 42, bits, out, 3)
    np.testing.assert_array_equal(out, raw)
