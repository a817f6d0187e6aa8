"""Provenance manifests: what a release was trained on, validated against a schema.

A manifest (YAML) declares the training datasets with their flags, the base models, and
what the memorisation gates probe with: private samples, canaries and a membership split.
It is kept with the release and never served to recipients: it names private samples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ringfence.errors import InvalidInput

SCHEMA_NAME = "ringfence-provenance/1"

_TEXTS = {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 100000}

#: JSON Schema of a provenance manifest (draft 2020-12)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["schema", "datasets", "base_models"],
    "properties": {
        "schema": {"const": SCHEMA_NAME},
        "datasets": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "name",
                    "source",
                    "licence",
                    "contains_user_data",
                    "contains_personal_data",
                    "scrubbed",
                ],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "source": {"type": "string", "minLength": 1},
                    "licence": {"type": "string", "minLength": 1},
                    "contains_user_data": {"type": "boolean"},
                    "contains_personal_data": {"type": "boolean"},
                    "scrubbed": {"type": "boolean"},
                    "commercial_use": {"type": "boolean"},
                },
            },
        },
        "base_models": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "licence"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "licence": {"type": "string", "minLength": 1},
                },
            },
        },
        "private_samples": _TEXTS,
        "canaries": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["prefix", "secret"],
                "properties": {
                    # the text before the random part, as planted ("my PIN is ")
                    "prefix": {"type": "string", "minLength": 1},
                    # the random part, drawn uniformly from `alphabet` ** len(secret)
                    "secret": {"type": "string", "minLength": 1, "maxLength": 32},
                    "alphabet": {"type": "string", "minLength": 2, "default": "0123456789"},
                },
            },
        },
        "membership": {
            "type": "object",
            "additionalProperties": False,
            "required": ["split", "members", "non_members"],
            "properties": {
                # only a random split of one corpus gives a meaningful AUC (a time split
                # measures the distribution shift, not the model)
                "split": {"const": "random"},
                "members": _TEXTS,
                "non_members": _TEXTS,
            },
        },
    },
}


@dataclass(frozen=True)
class ProvenanceFile:
    """A validated manifest and the sha256 of the file it came from."""

    document: dict[str, Any]
    sha256: str


def _where(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    return path or "(top level)"


def validate(document: Any, *, what: str = "provenance") -> dict[str, Any]:
    """The document if it matches the schema; InvalidInput naming the first bad field."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        raise InvalidInput(f"{what}: {_where(first)}: {first.message}")
    assert isinstance(document, dict)
    for canary in document.get("canaries", []):
        alphabet = canary.get("alphabet", "0123456789")
        stray = sorted(set(canary["secret"]) - set(alphabet))
        if stray:
            raise InvalidInput(
                f"{what}: canaries: secret {canary['secret']!r} has characters outside "
                f"its alphabet: {''.join(stray)!r}"
            )
    return document


def parse(text: bytes, *, what: str) -> Any:
    """YAML text as data; InvalidInput with the line of a syntax error."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InvalidInput(f"{what}: {problem}{where}") from exc


def load(path: Path) -> ProvenanceFile:
    """Read and validate a provenance manifest from a YAML file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"provenance: cannot read {path}: {exc.strerror}") from exc
    document = validate(parse(raw, what=f"provenance {Path(path).name}"))
    return ProvenanceFile(document, hashlib.sha256(raw).hexdigest())
