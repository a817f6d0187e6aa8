"""Format adapters for weights files: strict readers giving one tensor index for every format."""

from ringfence.formats.index import TensorInfo, WeightsIndex, read_index, sniff_format

__all__ = ["TensorInfo", "WeightsIndex", "read_index", "sniff_format"]
