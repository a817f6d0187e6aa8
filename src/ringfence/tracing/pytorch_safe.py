"""Reading PyTorch checkpoints without trusting them: weights only, in a fenced child process.

A pickle runs whatever code its author put in it, so it is never loaded in this process. A
child process with address-space, CPU-time and file-size limits (RLIMIT_AS / RLIMIT_CPU /
RLIMIT_FSIZE) opens it with `torch.load(weights_only=True)`, PyTorch's restricted unpickler
that rebuilds only tensors and plain containers and refuses every other global. The child
writes the tensors it found, as float32, to a safetensors file that this process then reads
with ringfence's strict reader. A checkpoint that names any other class, crashes the child or
exceeds a limit is refused with one line.

    tensors = read_checkpoint(Path("pytorch_model.bin"), Path(tmpdir))
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from ringfence.errors import MalformedFile, UnsafeFormat

#: the child's limits: CPU seconds, and address space on top of a few times the file size
CPU_SECONDS = 300
WALL_SECONDS = 600
BASE_ADDRESS_SPACE = 6 * 2**30

_CHILD = r"""
import json, sys
import numpy as np
import torch
from safetensors.numpy import save_file

source, target = sys.argv[1], sys.argv[2]
obj = torch.load(source, map_location="cpu", weights_only=True, mmap=False)
flat = {}

def walk(prefix, value, depth):
    if depth > 8:
        return
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and value.numel() > 0:
            flat[prefix] = value.detach().to(torch.float32).contiguous().numpy()
    elif isinstance(value, dict):
        for key, item in value.items():
            walk(f"{prefix}.{key}" if prefix else str(key), item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            walk(f"{prefix}.{i}" if prefix else str(i), item, depth + 1)

walk("", obj, 0)
save_file(flat, target)
print(json.dumps({"tensors": len(flat)}))
"""


def _limits(address_space: int) -> None:
    """Run in the child before exec: cap memory, CPU time and the size of files it writes."""
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_FSIZE, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def read_checkpoint(path: Path, workdir: Path) -> Path:
    """Convert a PyTorch checkpoint to a float32 safetensors file in `workdir`; return its path.

    Raises `UnsafeFormat` when the checkpoint holds anything but tensors and containers, and
    `MalformedFile` when it cannot be read within the limits.
    """
    path = Path(path)
    target = Path(workdir) / (path.name + ".safetensors")
    address_space = BASE_ADDRESS_SPACE + 4 * path.stat().st_size
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env["OMP_NUM_THREADS"] = "1"
    try:
        result = subprocess.run(
            [sys.executable, "-I", "-c", _CHILD, str(path), str(target)],
            capture_output=True,
            text=True,
            timeout=WALL_SECONDS,
            preexec_fn=lambda: _limits(address_space),
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise MalformedFile(
            f"{path.name} took more than {WALL_SECONDS} s to read as a PyTorch checkpoint",
            hint="convert it to safetensors and trace that",
        ) from exc
    if result.returncode != 0:
        err = result.stderr.strip().splitlines()
        last = err[-1] if err else f"exit status {result.returncode}"
        if "weights_only" in result.stderr or "Unsupported global" in result.stderr:
            raise UnsafeFormat(
                f"{path.name} holds objects other than tensors, which ringfence will not unpickle",
                hint="save only the state dict (tensors) or convert it to safetensors",
            )
        raise MalformedFile(
            f"{path.name} could not be read as a PyTorch checkpoint ({last[:120]})",
            hint="convert it to safetensors and trace that",
        )
    try:
        summary = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise MalformedFile(f"{path.name}: the checkpoint reader gave no answer") from exc
    if not summary.get("tensors"):
        raise MalformedFile(f"{path.name} holds no floating-point tensors")
    return target
