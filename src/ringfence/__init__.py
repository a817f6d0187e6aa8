"""ringfence: release model weights to the right people, and know whose copy leaked."""

__version__ = "0.1.0"
