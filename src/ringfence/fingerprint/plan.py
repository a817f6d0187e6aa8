"""Which tensors of a weights file carry the fingerprint, and whether a release has room for it.

Only matrices are touched: 2-D tensors (linear layers, embeddings) with at least
`MIN_ELEMENTS` elements and both sides ≥ 16. Norms, biases and small tensors are left alone:
they are few weights with a large effect each. A matrix in a type we cannot mark is refused
rather than passed through unmarked, since an unmarked copy would be an untraceable one.

Capacity: every code symbol must be spread over at least `MIN_CARRIER_PER_SYMBOL` (4,096)
carrier weights, of which one in 2^d changes (256 at the default density 1/16), so that a
symbol still reads after Q4_0 re-quantisation adds noise of ~8.5% of the weights' std
(FIELD-NOTES): one bf16 ulp is ~0.6% of std, √256 · 0.6/8.5 ≈ 1.1 standard deviations per
symbol before the code's own redundancy (the demo model has twice that: 8,177 per symbol).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ringfence.errors import CapacityError, UnsupportedFormat
from ringfence.fingerprint import carrier
from ringfence.fingerprint.code import CodeParams
from ringfence.formats.index import TensorInfo, WeightsIndex

#: the types a fingerprint can be embedded in, per format
SUPPORTED = {
    "safetensors": ("BF16", "F16", "F32"),
    "gguf": ("BF16", "F16", "F32", "Q8_0"),
}
MIN_ELEMENTS = 65536
MIN_SIDE = 16
MIN_CARRIER_PER_SYMBOL = 4096
#: a release's code is at most this many times the least length its parameters need: scoring
#: time grows with the length (3x keeps a trace against 10^6 recipients within a minute)
MAX_LENGTH_FACTOR = 3
#: the spread of each symbol of a code longer than the least: half the minimum, since the
#: least code already gives the guarantee and the extra symbols only add margin
FITTED_CARRIER_PER_SYMBOL = 2048


@dataclass(frozen=True)
class CarrierTensor:
    """A tensor that carries part of the code, with its secret carrier seed."""

    name: str
    dtype: str
    numel: int
    begin: int
    end: int
    seed: int


@dataclass(frozen=True)
class FingerprintPlan:
    """How one weights file is fingerprinted for a release (secret: holds carrier seeds)."""

    code_length: int
    density_log2: int
    tensors: tuple[CarrierTensor, ...]

    @property
    def carrier_weights(self) -> int:
        """Number of weights in carrying tensors."""
        return sum(t.numel for t in self.tensors)


def is_carrier_candidate(tensor: TensorInfo) -> bool:
    """Whether a tensor is a matrix big enough to carry code symbols."""
    return len(tensor.shape) == 2 and min(tensor.shape) >= MIN_SIDE and tensor.numel >= MIN_ELEMENTS


def carrier_tensors(index: WeightsIndex) -> list[TensorInfo]:
    """The tensors of a file that will carry the code; refuses matrices of unsupported types."""
    supported = SUPPORTED.get(index.format, ())
    chosen: list[TensorInfo] = []
    refused: dict[str, list[str]] = {}
    for tensor in index.tensors:
        if not is_carrier_candidate(tensor):
            continue
        if tensor.dtype in supported:
            chosen.append(tensor)
        else:
            refused.setdefault(tensor.dtype, []).append(tensor.name)
    if refused:
        kinds = ", ".join(
            f"{dtype} ({len(names)} tensors, e.g. {names[0]})"
            for dtype, names in sorted(refused.items())
        )
        raise UnsupportedFormat(
            f"cannot fingerprint {index.format} matrices of type {kinds}",
            hint=f"publish {index.format} weights in one of {', '.join(supported)}",
        )
    return chosen


def required_weights(code_length: int) -> int:
    """How many carrier weights a code of this length needs."""
    return code_length * MIN_CARRIER_PER_SYMBOL


def carrier_weights(indexes: Sequence[WeightsIndex]) -> int:
    """How many weights of these files' matrices can carry the code."""
    return sum(t.numel for index in indexes for t in carrier_tensors(index))


def fitted_length(indexes: Sequence[WeightsIndex], params: CodeParams) -> int:
    """The code length a new release gets: as many symbols as its matrices carry at
    `FITTED_CARRIER_PER_SYMBOL` each (a multiple of 64), between the least length its
    parameters need and `MAX_LENGTH_FACTOR` times that.

    A longer code lifts every colluder's z at the same threshold (by √(m / least) where the
    symbols read cleanly, less where the attack's noise dominates; see `fingerprint.code`).
    The demo model (134M carrier weights) gets 49,344 symbols, 3x the least 16,448: measured
    on SmolLM2, twice the least took the weakest 8-colluder trial (median, then Q4_0) from
    1.23x the threshold to 1.50x, three times to the figure in BENCHMARKS.md.
    """
    least = params.least_length
    fits = carrier_weights(indexes) // FITTED_CARRIER_PER_SYMBOL // carrier.BLOCK * carrier.BLOCK
    return max(least, min(fits, MAX_LENGTH_FACTOR * least))


def check_capacity(indexes: Sequence[WeightsIndex], params: CodeParams | None = None) -> None:
    """Refuse a release whose matrices are too few to carry the code (`CapacityError`).

    Raises `UnsupportedFormat` for a matrix in a type a fingerprint cannot be embedded in.
    """
    params = params or CodeParams()
    has = carrier_weights(indexes)
    needs = required_weights(params.design.length)
    if has < needs:
        raise CapacityError(
            f"the release's matrices are too small to carry a fingerprint for "
            f"{params.max_recipients:,} recipients and {params.max_colluders} colluders "
            f"({params.design.length:,} code symbols): has {has:,} carrier weights, "
            f"needs {needs:,}",
            hint=f"only 2-D matrices of at least {MIN_ELEMENTS:,} weights carry the code; "
            "publish a larger model",
        )


def build_plan(
    index: WeightsIndex, key: bytes, params: CodeParams | None = None
) -> FingerprintPlan:
    """The plan for one weights file under a release key (carrier seeds keyed by tensor name)."""
    params = params or CodeParams()
    tensors = tuple(
        CarrierTensor(
            name=t.name,
            dtype=t.dtype,
            numel=t.numel,
            begin=t.begin,
            end=t.end,
            seed=carrier.seed(key, f"carrier:{t.name}"),
        )
        for t in carrier_tensors(index)
    )
    return FingerprintPlan(
        code_length=params.design.length, density_log2=params.density_log2, tensors=tensors
    )
