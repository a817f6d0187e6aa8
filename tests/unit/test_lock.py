"""requirements.lock pins, with hashes, everything pyproject.toml asks for, and the CPU torch."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# pyproject pins torch exactly; the build that lies on disk is this one, every other downloads CUDA.
CPU_TORCH = "2.13.0+cpu"


def _declared() -> list[Requirement]:
    """Every requirement pyproject.toml names: base, the dev and eval extras, the build system."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    names = [
        *project["project"]["dependencies"],
        *extras["dev"],
        *extras["eval"],
        *project["build-system"]["requires"],
    ]
    return [Requirement(name) for name in names]


def _entries() -> list[str]:
    """The lock's requirement lines, each joined with its backslash-continued hash lines."""
    entries: list[str] = []
    current = ""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            entries.append(current.strip())
            current = ""
    return entries


def _pins() -> dict[str, tuple[Requirement, list[str]]]:
    """Each locked package by canonical name: its requirement and its hashes."""
    pins: dict[str, tuple[Requirement, list[str]]] = {}
    for entry in _entries():
        requirement, *options = entry.split()
        hashes = [o.removeprefix("--hash=") for o in options if o.startswith("--hash=sha256:")]
        assert len(hashes) == len(options), f"only hashes may follow a pin: {entry[:80]}"
        parsed = Requirement(requirement)
        pins[canonicalize_name(parsed.name)] = (parsed, hashes)
    return pins


def _pinned_version(requirement: Requirement) -> str:
    """The one exact version a lock line pins (fails for a range or a second clause)."""
    specifiers = list(requirement.specifier)
    assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not exact: {requirement}"
    return specifiers[0].version


def test_every_declared_dependency_is_locked_at_an_allowed_exact_version() -> None:
    pins = _pins()
    for declared in _declared():
        name = canonicalize_name(declared.name)
        assert name in pins, f"{declared} is in pyproject.toml but not in requirements.lock"
        version = _pinned_version(pins[name][0])
        # A raised lower bound without `make lock` leaves the lock below it: this says so.
        assert declared.specifier.contains(Version(version), prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside pyproject's {declared}; "
            "run `make lock`"
        )


def test_every_pin_is_exact_and_hashed() -> None:
    # pip installs the lock in hash-checking mode: one line without a hash refuses the whole lock.
    for name, (requirement, hashes) in _pins().items():
        _pinned_version(requirement)
        assert hashes, f"{name} has no --hash in requirements.lock"
        assert not requirement.extras and requirement.marker is None, f"not plain: {requirement}"


def test_torch_is_the_cpu_build_on_disk_and_nothing_pulls_cuda() -> None:
    pins = _pins()
    assert _pinned_version(pins["torch"][0]) == CPU_TORCH
    cuda = sorted(n for n in pins if n.startswith("nvidia-") or n in {"triton", "pytorch-triton"})
    assert not cuda, f"requirements.lock pulls CUDA packages: {cuda}"
