"""Uploaded suspect files land in a private scratch directory for as long as a trace runs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from ringfence.errors import InvalidInput


@contextmanager
def saved_upload(upload: UploadFile) -> Iterator[Path]:
    """The upload written to a scratch file (removed afterwards); an empty one is refused."""
    name = Path(upload.filename or "suspect").name or "suspect"
    workdir = Path(tempfile.mkdtemp(prefix="ringfence-incident-"))
    try:
        target = workdir / name
        with target.open("wb") as fh:
            shutil.copyfileobj(upload.file, fh, 8 << 20)
        if target.stat().st_size == 0:
            raise InvalidInput("the uploaded file is empty")
        yield target
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
